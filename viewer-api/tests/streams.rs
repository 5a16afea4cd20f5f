//! Footage streams are bounded (issue 9, finding 4): per user and in total, refused
//! with 429 beyond; a client that stops reading loses its stream, and unread streams
//! hold no thread that sign-in needs.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use tower::ServiceExt;

use common::{Api, Env, Person, t};
use viewer_api::policy::Role;
use viewer_api::streams::{StreamLimits, Streams};

const T0: i64 = 1_772_366_400_000; // 2026-03-01T12:00:00Z
const PEOPLE: &[Person] = &[
    ("ivan", Role::It, None),
    ("iris", Role::It, None),
    ("olga", Role::It, None),
];

/// gate recorded for 4 s from T0; the clock just after it (so live view finds it
/// recording).
fn env() -> Env {
    let src = common::memory_footage(&["gate"], &["gate"], 4, T0);
    Api::new(T0 + 5_000, PEOPLE)
        .audit_busy(Duration::from_secs(30))
        .viewings()
        .build(src)
}

fn live_uri() -> String {
    "/api/v1/cameras/gate/live.mp4?purpose=incident".into()
}

fn video_uri() -> String {
    format!(
        "/api/v1/cameras/gate/video.mp4?from={}&to={}&purpose=incident",
        t(T0),
        t(T0 + 4_000)
    )
}

/// The answer to a GET, its body left unread.
async fn open(env: &Env, tok: &str, uri: &str) -> Response {
    let mut req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {tok}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        format!("{}:5555", env.client)
            .parse::<SocketAddr>()
            .unwrap(),
    ));
    env.app.clone().oneshot(req).await.unwrap()
}

fn streams(env: &Env) -> &Arc<Streams> {
    &env.state.streams
}

/// 600 live and video streams opened at once by one user and never read: 8 run, the
/// others get 429 (JSON error, Retry-After, logged as refused), and another user's
/// sign-in still answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_unread_streams_leave_sign_in_working() {
    let env = env();
    let ivan = env.token("ivan").await;
    let began = Instant::now();
    let answers: Vec<Response> = futures::stream::iter(0..600)
        .map(|i| {
            let (env, ivan) = (&env, &ivan);
            async move {
                let uri = if i % 2 == 0 { live_uri() } else { video_uri() };
                open(env, ivan, &uri).await
            }
        })
        .buffer_unordered(600)
        .collect()
        .await;
    let ok: Vec<&Response> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .collect();
    assert_eq!(ok.len(), 8, "8 streams per user");
    let mut refused = 0;
    for r in answers.iter().filter(|r| r.status() != StatusCode::OK) {
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        refused += 1;
    }
    assert_eq!(refused, 592);
    assert_eq!(streams(&env).running_for_name(&env, "ivan"), 8);
    eprintln!("600 requests answered in {:?}", began.elapsed());

    // With the 8 streams still open and unread, others sign in and are served.
    let began = Instant::now();
    let olga = env.token("olga").await;
    let signed_in = began.elapsed();
    assert!(
        signed_in < Duration::from_secs(2),
        "sign-in took {signed_in:?}"
    );
    eprintln!("sign-in with 8 unread streams open: {signed_in:?}");
    let r = open(&env, &olga, &live_uri()).await;
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);

    // The refusals are in the access log as such, with why.
    let denied: Vec<_> = env
        .entries("playback")
        .into_iter()
        .chain(env.entries("live"))
        .filter(|e| e.actor == "ivan" && e.outcome.starts_with("denied"))
        .collect();
    assert_eq!(denied.len(), 592);
    assert!(denied[0].outcome.contains("too many footage streams"));
    // The error says what to do.
    let body = answers
        .into_iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .unwrap()
        .into_body();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("at most 8 at once per user"),
        "{v}"
    );
}

/// The device-wide cap: users together get at most `total` streams.
#[tokio::test]
async fn the_total_cap_holds_across_users() {
    let env = env();
    streams(&env).set_limits(StreamLimits {
        per_user: 8,
        total: 10,
        ..StreamLimits::default()
    });
    let mut open_ones = Vec::new();
    for user in ["ivan", "iris"] {
        let tok = env.token(user).await;
        for _ in 0..5 {
            let r = open(&env, &tok, &video_uri()).await;
            assert_eq!(r.status(), StatusCode::OK);
            open_ones.push(r);
        }
    }
    let olga = env.token("olga").await;
    let r = open(&env, &olga, &live_uri()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("at most 10 at once"));
    // One ends (its client went away): olga gets its place.
    drop(open_ones.pop());
    wait_until(|| streams(&env).running() == 9).await;
    let r = open(&env, &olga, &live_uri()).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A stream read to its end frees its place, and so does one whose client went away.
#[tokio::test]
async fn a_stream_that_ends_frees_its_permit() {
    let env = env();
    let ivan = env.token("ivan").await;
    let full = env.get(&ivan, &video_uri()).await;
    assert_eq!(full.status, StatusCode::OK);
    assert!(full.body.len() > 10_000);
    wait_until(|| streams(&env).running() == 0).await;
    // an export of all 8 places, all read to their ends, then 8 more
    for _ in 0..2 {
        let mut all = Vec::new();
        for _ in 0..8 {
            let r = open(&env, &ivan, &video_uri()).await;
            assert_eq!(r.status(), StatusCode::OK);
            all.push(r);
        }
        assert_eq!(
            open(&env, &ivan, &video_uri()).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        for r in all {
            let len = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap()
                .len();
            assert_eq!(len, full.body.len());
        }
        wait_until(|| streams(&env).running() == 0).await;
    }
    // a live view dropped by its client
    let r = open(&env, &ivan, &live_uri()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(streams(&env).running(), 1);
    drop(r);
    wait_until(|| streams(&env).running() == 0).await;
    wait_until(|| !env.entries("live.end").is_empty()).await;
    assert_eq!(
        env.entries("live.end")[0].outcome,
        "allowed; ended by the client"
    );
}

/// A client that takes nothing for 30 s loses its stream: the place comes back, the
/// body ends in an error (not as if complete), and the live view's end is logged.
/// Paused time: the 30 s pass without being waited for.
#[tokio::test(start_paused = true)]
async fn a_stalled_reader_is_dropped_and_its_permit_comes_back() {
    let env = env();
    streams(&env).set_limits(StreamLimits {
        per_user: 2,
        ..StreamLimits::default()
    });
    let ivan = env.token("ivan").await;
    let live = open(&env, &ivan, &live_uri()).await;
    let video = open(&env, &ivan, &video_uri()).await;
    assert_eq!(
        (live.status(), video.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(
        open(&env, &ivan, &live_uri()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // 29 s unread: still theirs
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(streams(&env).running_for_name(&env, "ivan"), 2);
    // past 30 s: both dropped
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_until(|| streams(&env).running() == 0).await;
    let r = open(&env, &ivan, &live_uri()).await;
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    // The stalled body gives what was queued, then an error.
    let mut body = video.into_body().into_data_stream();
    let mut error = None;
    while let Some(piece) = body.next().await {
        if let Err(e) = piece {
            error = Some(e.to_string());
            break;
        }
    }
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("stopped reading"),
        "{error:?}"
    );
    wait_until(|| {
        env.entries("live.end")
            .iter()
            .any(|e| e.outcome == "allowed; ended: the client stopped reading")
    })
    .await;
    drop(live);
}

/// A reader that keeps taking pieces, however slowly, keeps its stream.
#[tokio::test(start_paused = true)]
async fn a_slow_reader_keeps_its_stream() {
    let env = env();
    let ivan = env.token("ivan").await;
    let r = open(&env, &ivan, &video_uri()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.into_body().into_data_stream();
    let mut len = 0;
    while let Some(piece) = body.next().await {
        len += piece.unwrap().len();
        assert_eq!(streams(&env).running(), 1);
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    assert!(len > 10_000);
    drop(body);
    wait_until(|| streams(&env).running() == 0).await;
}

/// Polls `f` (the stream's task runs meanwhile) for at most a few seconds of real
/// work.
async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

trait ByName {
    fn running_for_name(&self, env: &Env, name: &str) -> usize;
}

impl ByName for Arc<Streams> {
    fn running_for_name(&self, env: &Env, name: &str) -> usize {
        let id = env.state.users.user(name).unwrap().unwrap().id;
        self.running_for(id)
    }
}

/// At most so many connections per client address: one more is closed at once (before
/// its TLS handshake), and a place comes back when a connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    use std::io::Read;
    use viewer_api::conns::PerAddress;
    use viewer_api::server::{self, ConnLimits};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let tls = server::load_tls(&cert_path, &key_path).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
    let handle = axum_server::Handle::new();
    // Long handshake and header limits: only the cap can close a connection quickly.
    let limits = ConnLimits {
        tls_handshake: Duration::from_secs(20),
        header_read: Duration::from_secs(20),
    };
    let per_address = PerAddress::new(3);
    let serving = tokio::spawn(server::run_https_with(
        listener,
        tls,
        app,
        handle.clone(),
        limits,
        per_address.clone(),
    ));
    let held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    wait_until(|| per_address.open_from("127.0.0.1") == 3).await;

    // the 4th: closed at once
    let fourth = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        let r = s.read(&mut [0u8; 16]);
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        t.elapsed()
    })
    .await
    .unwrap();
    assert!(fourth < Duration::from_secs(2), "closed after {fourth:?}");
    eprintln!("a connection over the cap: closed after {fourth:?}");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/ok", addr.port());
    assert!(client.get(&url).send().await.is_err());

    // one closes: its place comes back
    let mut held = held;
    drop(held.pop());
    wait_until(|| per_address.open_from("127.0.0.1") == 2).await;
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(held);
    handle.shutdown();
    let _ = serving.await;
}
