//! What the integration tests share: the API in-process on a memory source (users,
//! access log, app state, routers, a manual clock), requests and their answers, and a
//! recorder store written with the recorder's own segment writer and catalog.
//!
//! Each test file says what differs (its people, its footage, its routers); the tests
//! themselves stay in their files.

// Each test file is its own crate and uses only part of this.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use recorder::catalog::{self, Catalog, ClosedSegment};
use recorder::config::Config;
use recorder::segment::{self, Codec, CodecParams, DataKey, Frame, Gop, SegmentId, SegmentWriter};
use recorder::service::{Client, Service, ServiceHandle};
use viewer_api::api::AppState;
use viewer_api::audit::{AuditLog, Entry, Filter};
use viewer_api::clock::{ManualClock, rfc3339};
use viewer_api::config::Settings;
use viewer_api::export::{Exports, Parts};
use viewer_api::metrics::Metrics;
use viewer_api::playback::{FootageSource, MemorySource};
use viewer_api::policy::Role;
use viewer_api::recorder_side::RecorderSide;
use viewer_api::remote::{RemoteRecorder, RemoteSource};
use viewer_api::testdata;
use viewer_api::throttle::Throttle;
use viewer_api::users::UserDb;

/// Every test user's password.
pub const PW: &str = "password-123";
/// The address requests come from, unless a test says otherwise.
pub const CLIENT: &str = "10.1.2.3";

pub fn t(ms: i64) -> String {
    rfc3339(ms)
}

// ---------------------------------------------------------------------------------------
// people

/// A user: name, role, and the cameras they may see (`None`: every camera).
pub type Person = (&'static str, Role, Option<&'static [&'static str]>);

/// A user database at `path` holding `people`, each with the password [`PW`].
pub fn users(
    path: &Path,
    clock: &Arc<ManualClock>,
    argon: argon2::Params,
    people: &[Person],
) -> UserDb {
    let users = UserDb::open(path, clock.clone(), argon).unwrap();
    for &(name, role, cameras) in people {
        let cameras = cameras.map(|c| c.iter().map(|c| c.to_string()).collect());
        users.add_user(name, role, cameras, PW).unwrap();
    }
    users
}

// ---------------------------------------------------------------------------------------
// the API on a memory source

/// `cameras` listed (recording), and `secs` seconds of H.264 (25 fps, a key frame
/// every second) from `start` for each of `recorded`.
pub fn memory_footage(cameras: &[&str], recorded: &[&str], secs: u32, start: i64) -> MemorySource {
    let (params, frames) = testdata::h264_track(secs, 25, 25).expect("ffmpeg");
    let src = testdata::memory_source(cameras);
    for cam in recorded {
        src.add_segment(cam, params.clone(), testdata::chunks(&frames, start, None));
    }
    src
}

/// How to build an [`Env`]: in a temporary directory `users.sqlite` with the people
/// given, `audit.sqlite`, the clock at `now`, the API router and the routers asked for.
pub struct Api {
    now: i64,
    people: &'static [Person],
    argon: argon2::Params,
    audit_busy: Duration,
    lockouts_kept: bool,
    viewings: bool,
    previews: bool,
    client: &'static str,
}

impl Api {
    /// By default: the test argon2 parameters, an access log that waits 200 ms when busy,
    /// login counters in memory, no throttle delay, the API router alone, requests from
    /// [`CLIENT`].
    pub fn new(now: i64, people: &'static [Person]) -> Api {
        Api {
            now,
            people,
            argon: UserDb::test_argon(),
            audit_busy: Duration::from_millis(200),
            lockouts_kept: false,
            viewings: false,
            previews: false,
            client: CLIENT,
        }
    }

    pub fn argon(self, argon: argon2::Params) -> Api {
        Api { argon, ..self }
    }

    /// How long the access log waits for a lock.
    pub fn audit_busy(self, audit_busy: Duration) -> Api {
        Api { audit_busy, ..self }
    }

    /// Login counters kept in the user database, as `viewer-api serve` keeps them.
    pub fn lockouts_kept(self) -> Api {
        Api {
            lockouts_kept: true,
            ..self
        }
    }

    /// With the viewings' router.
    pub fn viewings(self) -> Api {
        Api {
            viewings: true,
            ..self
        }
    }

    /// With the previews' router.
    pub fn previews(self) -> Api {
        Api {
            previews: true,
            ..self
        }
    }

    /// Requests from `client` (an IP address).
    pub fn client(self, client: &'static str) -> Api {
        Api { client, ..self }
    }

    pub fn build(self, source: impl FootageSource + 'static) -> Env {
        self.build_in(tempfile::tempdir().unwrap(), source)
    }

    /// [`Api::build`] in `dir`, made before (e.g. with a store in it).
    pub fn build_in(self, dir: tempfile::TempDir, source: impl FootageSource + 'static) -> Env {
        self.build_in_with(dir, |_| source)
    }

    /// Like [`build_in`](Self::build_in), the source made on the API's clock.
    pub fn build_in_with<S: FootageSource + 'static>(
        self,
        dir: tempfile::TempDir,
        source: impl FnOnce(&Arc<ManualClock>) -> S,
    ) -> Env {
        let clock = Arc::new(ManualClock::new(self.now));
        let source = source(&clock);
        let users = Arc::new(users(
            &dir.path().join("users.sqlite"),
            &clock,
            self.argon,
            self.people,
        ));
        let audit_path = dir.path().join("audit.sqlite");
        let audit = AuditLog::open(&audit_path, clock.clone(), self.audit_busy).unwrap();
        let throttle = if self.lockouts_kept {
            Throttle::persistent(clock.clone(), Duration::ZERO, users.clone()).unwrap()
        } else {
            Throttle::new(clock.clone(), Duration::ZERO)
        };
        let state = Arc::new(AppState {
            users,
            audit: Arc::new(audit),
            source: Arc::new(source),
            clock: clock.clone(),
            throttle,
            metrics: Arc::new(Metrics::new()),
            viewings: Default::default(),
            streams: Default::default(),
        });
        let mut app = viewer_api::api::router(state.clone());
        if self.viewings {
            app = app.merge(viewer_api::viewing::router(state.clone()));
        }
        if self.previews {
            app = app.merge(viewer_api::preview::router(state.clone()));
        }
        Env {
            dir,
            audit_path,
            clock,
            state,
            app,
            client: self.client,
        }
    }
}

/// The API in-process, built by [`Api`].
pub struct Env {
    pub dir: tempfile::TempDir,
    pub audit_path: PathBuf,
    pub clock: Arc<ManualClock>,
    pub state: Arc<AppState>,
    pub app: axum::Router,
    /// The address requests come from.
    pub client: &'static str,
}

impl Env {
    pub async fn send(&self, req: Request<Body>) -> Resp {
        send(&self.app, req, self.client).await
    }

    /// A session of `user` (password [`PW`]).
    pub async fn token(&self, user: &str) -> String {
        token(&self.app, self.client, user).await
    }

    pub async fn get(&self, tok: &str, uri: &str) -> Resp {
        self.send(request("GET", tok, uri, None)).await
    }

    pub async fn post(&self, tok: &str, uri: &str, body: Value) -> Resp {
        self.send(request("POST", tok, uri, Some(body))).await
    }

    pub async fn delete(&self, tok: &str, uri: &str) -> Resp {
        self.send(request("DELETE", tok, uri, None)).await
    }

    /// The access log's entries of `action`.
    pub fn entries(&self, action: &str) -> Vec<Entry> {
        entries(&self.state, action)
    }

    /// Entries in the access log, read from its file.
    pub fn audit_count(&self) -> i64 {
        rusqlite::Connection::open(&self.audit_path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    }
}

/// The access log's entries of `action`, oldest first.
pub fn entries(state: &AppState, action: &str) -> Vec<Entry> {
    state
        .audit
        .query(&Filter::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

// ---------------------------------------------------------------------------------------
// requests and answers

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The answer's `error` message; empty if it has none.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A header's value; empty if it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Sends `req` to `app` as if from `from` (an IP address) and reads the whole answer.
pub async fn send(app: &axum::Router, mut req: Request<Body>, from: &str) -> Resp {
    req.extensions_mut().insert(ConnectInfo(
        format!("{from}:5555").parse::<SocketAddr>().unwrap(),
    ));
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn login_req(user: &str, pw: &str) -> Request<Body> {
    Request::post("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"username": user, "password": pw}).to_string(),
        ))
        .unwrap()
}

/// Logs `user` in with [`PW`] (which must succeed) and returns the session token.
pub async fn token(app: &axum::Router, from: &str, user: &str) -> String {
    let r = send(app, login_req(user, PW), from).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{user}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["token"].as_str().unwrap().to_string()
}

/// A request with a bearer token, and a JSON body if there is one.
pub fn request(method: &str, tok: &str, uri: &str, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {tok}"));
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map(|v| Body::from(v.to_string())).unwrap_or_default();
    b.body(body).unwrap()
}

// ---------------------------------------------------------------------------------------
// a recorder store

/// A recorder config for a store in `dir/store`, its key in `dir/keys/kek`, with the
/// cameras gate and hall; `storage`, `gate` and `api` are more lines for those tables.
pub fn store_config(dir: &Path, storage: &str, gate: &str, api: &str) -> Config {
    let text = format!(
        "[storage]\npath = \"{}\"\n{storage}\
         [keys]\nkek_file = \"{}\"\n\
         [[cameras]]\nid = \"gate\"\nname = \"Gate\"\nurl = \"rtsp://127.0.0.1:1/a\"\n{gate}\
         [[cameras]]\nid = \"hall\"\nname = \"Hall\"\nurl = \"rtsp://127.0.0.1:1/b\"\n\
         [api]\naddr = \"127.0.0.1:0\"\n{api}",
        dir.join("store").display(),
        dir.join("keys/kek").display()
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

/// The recorder's service for the store of `config`, in this process on `clock` (one
/// per store, kept until the test process ends; its socket is in the test's directory),
/// and a client of it: what `viewer-api serve` talks to.
pub fn service(config: &Config, clock: Arc<dyn recorder::clock::Clock>) -> Arc<Client> {
    service_and_devices(config, clock).client
}

/// A store's service, and the simulated hardware it watches as `recorder run` watches
/// the real one: the disk under the store (healthy until a test changes it) and a
/// case-open switch (closed).
#[derive(Clone)]
pub struct Devices {
    pub client: Arc<Client>,
    pub disk: Arc<hardware::storage::Simulated>,
    pub case: hardware::tamper::SimulatedSwitch,
}

/// [`service`] with its [`Devices`].
pub fn service_and_devices(config: &Config, clock: Arc<dyn recorder::clock::Clock>) -> Devices {
    static RUNNING: std::sync::Mutex<Vec<(PathBuf, ServiceHandle, Devices)>> =
        std::sync::Mutex::new(Vec::new());
    let socket = config.service_socket();
    let mut running = RUNNING.lock().unwrap();
    if let Some((_, _, d)) = running.iter().find(|(p, _, _)| *p == socket) {
        return d.clone();
    }
    // with metrics, as `recorder run` has (what the viewer-api's metrics include)
    let metrics = Arc::new(recorder::metrics::Metrics::new());
    metrics.store_bytes.set(1234);
    let disk = Arc::new(hardware::storage::Simulated::new(&config.storage.path));
    let watch = recorder::devices::StorageWatch::with_probe(
        &config.storage.path,
        Box::new(disk.clone()),
        Duration::from_millis(50),
        Some(metrics.clone()),
    );
    let (case, input) = hardware::tamper::simulated(hardware::tamper::CaseState::Closed);
    let input = std::sync::Mutex::new(Some(input));
    let tamper = recorder::devices::TamperWatch::with_input(
        &config.storage.path,
        Box::new(move || {
            input
                .lock()
                .unwrap()
                .take()
                .map(|i| Box::new(i) as Box<dyn hardware::tamper::TamperInput>)
                .ok_or(hardware::tamper::TamperError::Closed)
        }),
        {
            let clock = clock.clone();
            Arc::new(move || clock.now_unix_ms())
        },
        Some(metrics.clone()),
        Duration::from_secs(3600),
    )
    .unwrap();
    let handle = Service::from_config(config, clock)
        .unwrap()
        .with_metrics(metrics)
        .with_storage(Arc::new(watch))
        .with_tamper(Arc::new(tamper))
        .listen(&socket)
        .unwrap();
    let devices = Devices {
        client: Arc::new(Client::new(&socket)),
        disk,
        case,
    };
    running.push((socket, handle, devices.clone()));
    devices
}

/// The store's footage through the recorder's service (see [`service`]).
pub fn remote_source(config: &Config, clock: &Arc<ManualClock>) -> RemoteSource {
    RemoteSource::new(service(config, clock.clone()))
}

/// The recorder side through its service (see [`service`]).
pub fn remote_recorder(config: &Config, clock: &Arc<ManualClock>) -> Arc<dyn RecorderSide> {
    Arc::new(RemoteRecorder::new(service(config, clock.clone())))
}

/// The viewer-api's state directory for the store of `config`, as `serve` makes it.
pub fn state_dir(config: &Config) -> PathBuf {
    Settings {
        api: viewer_api::config::parse_api(config.api.as_ref()).unwrap(),
        recorder: config.clone(),
    }
    .state_dir()
}

/// The exports of the store, signed with its device key.
pub fn exports(
    config: &Config,
    audit: Arc<AuditLog>,
    clock: &Arc<ManualClock>,
    ttl: Duration,
) -> Arc<Exports> {
    let state_dir = state_dir(config);
    std::fs::create_dir_all(&state_dir).unwrap();
    Exports::open(Parts {
        state_dir,
        key: hardware::Kek::random(),
        source: Arc::new(remote_source(config, clock)),
        recorder: remote_recorder(config, clock),
        audit,
        clock: clock.clone(),
        ttl,
    })
    .unwrap()
}

/// 320×240 video in `codec` with its decoder configuration record (avcC / hvcC).
pub fn codec_params(codec: Codec, extra_data: Vec<u8>) -> CodecParams {
    CodecParams {
        codec,
        extra_data,
        width: 320,
        height: 240,
        rfc6381: String::new(),
    }
}

/// A segment as written: what the catalog and the disk must then say.
#[derive(Debug, Clone)]
pub struct Written {
    pub id: SegmentId,
    pub camera: String,
    pub start: i64,
    pub end: i64,
    pub bytes: u64,
    pub sha256: String,
}

/// Footage to write into a store: `fps` frames a second in segments of `segment_secs`;
/// `frame(n)` is whether frame `n` of a recording is a key frame, and its data. A GOP
/// runs from a key frame to the next.
pub struct Feed<F> {
    pub params: CodecParams,
    pub fps: i64,
    pub segment_secs: i64,
    pub frame: F,
}

impl<F: Fn(i64) -> (bool, Vec<u8>)> Feed<F> {
    /// Writes `camera`'s footage from `from` to `to` (wall ms) into the store and its
    /// catalog.
    pub fn record(
        &self,
        cfg: &Config,
        cat: &Catalog,
        camera: &str,
        from: i64,
        to: i64,
    ) -> Vec<Written> {
        let kek = recorder::store::load_kek(cfg, &recorder::store::key_provider(cfg)).unwrap();
        let fps = self.fps;
        let dur = 90_000 / fps;
        let total = (to - from) * fps / 1000;
        let unix = |n: i64| from + n * 1000 / fps;
        let mut out = Vec::new();
        let mut n = 0i64;
        while n < total {
            let id = SegmentId::random();
            let key = DataKey::random();
            let start = unix(n);
            cat.insert_open_segment(
                id,
                camera,
                self.params.codec,
                start,
                n * dur,
                &segment::wrap_key(kek.as_bytes(), id, &key),
            )
            .unwrap();
            let path = catalog::segment_path(&cfg.storage.path, camera, id);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut w =
                SegmentWriter::create(&path, id, camera, &key, &self.params, start).unwrap();
            let first = n;
            while n < total && n - first < self.segment_secs * fps {
                let mut gop = Gop {
                    start_unix_ms: unix(n),
                    frames: vec![],
                };
                loop {
                    let (is_key, data) = (self.frame)(n);
                    gop.frames.push(Frame {
                        pts_90k: n * dur,
                        key: is_key,
                        data,
                    });
                    n += 1;
                    if n >= total || (self.frame)(n).0 {
                        break;
                    }
                }
                w.append_gop(&gop).unwrap();
            }
            let fin = w.finish().unwrap();
            let end = unix(n - 1);
            cat.close_segment(
                id,
                &ClosedSegment {
                    end_unix_ms: end,
                    start_90k: first * dur,
                    end_90k: (n - 1) * dur,
                    bytes: fin.bytes,
                    frames: fin.trailer.frames,
                    key_frames: fin.trailer.key_frames,
                    sha256: fin.sha256,
                },
                false,
            )
            .unwrap();
            out.push(Written {
                id,
                camera: camera.into(),
                start,
                end,
                bytes: fin.bytes,
                sha256: hex::encode(fin.sha256),
            });
        }
        out
    }
}
