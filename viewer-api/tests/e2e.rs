//! End to end through a real `viewer-api serve` process over HTTPS, on a store written
//! with the recorder's own segment writer and catalog, plus the console commands and
//! `audit verify` against a tampered log.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use recorder::catalog::Catalog;
use recorder::config::Config;
use recorder::segment::{Codec, CodecParams};
use recorder::store;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_viewer-api");
const T0: i64 = 1_750_000_000_000;
const PW: &str = "e2e-password-1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16, audit_db: Option<&Path>) -> PathBuf {
    let mut text = format!(
        "[storage]\npath = \"{}\"\n[keys]\nkek_file = \"{}\"\n[[cameras]]\nid = \"gate\"\nname = \"Gate\"\nurl = \"rtsp://127.0.0.1:9/gate\"\n[[cameras]]\nid = \"hall\"\nurl = \"rtsp://127.0.0.1:9/hall\"\n[api]\naddr = \"127.0.0.1:{port}\"\n",
        dir.join("store").display(),
        dir.join("kek").display()
    );
    let name = match audit_db {
        Some(p) => {
            text += &format!("audit_db = \"{}\"\n", p.display());
            format!("config-{}.toml", p.file_stem().unwrap().to_string_lossy())
        }
        None => "config.toml".into(),
    };
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Initialises the store and records 4 s of `gate` as one segment.
fn record(config_path: &Path) {
    let config = Config::load(config_path).unwrap();
    store::init(&config, &store::key_provider(&config)).unwrap();
    let (avcc, frames) = viewer_api::testdata::h264_frames(4, 25, 25).unwrap();
    let feed = common::Feed {
        params: CodecParams {
            rfc6381: "avc1.4d401e".into(),
            ..common::codec_params(Codec::H264, avcc)
        },
        fps: 25,
        segment_secs: 4,
        frame: |n: i64| {
            let f = &frames[n as usize];
            (f.key, f.data.clone())
        },
    };
    let cat = Catalog::open(&config.storage.path).unwrap();
    feed.record(&config, &cat, "gate", T0, T0 + 4_000);
}

fn cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn wait_up(base: &str, server: &mut Server) {
    let c = client();
    let start = Instant::now();
    loop {
        if let Ok(r) = c.get(format!("{base}/api/v1/openapi.json")).send().await
            && r.status() == 200
        {
            return;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("viewer-api exited: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "viewer-api did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn t(ms: i64) -> String {
    viewer_api::clock::rfc3339(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_end_to_end_and_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, None);
    let cfg = config.to_str().unwrap();
    record(&config);
    // The recorder's side: its service, in this process (the viewer-api reaches the
    // store only through it).
    let recorder_config = Config::load(&config).unwrap();
    let _service = recorder::service::Service::from_config(
        &recorder_config,
        std::sync::Arc::new(recorder::clock::SystemClock),
    )
    .unwrap()
    .listen(&recorder_config.service_socket())
    .unwrap();

    // console: users
    let (code, _, err) = cli(
        &[
            "user",
            "add",
            "--config",
            cfg,
            "--name",
            "pia",
            "--role",
            "police",
            "--cameras",
            "gate",
        ],
        Some(&format!("{PW}\n")),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        &[
            "user", "add", "--config", cfg, "--name", "ivan", "--role", "it",
        ],
        Some(&format!("{PW}\n")),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = cli(
        &[
            "user", "add", "--config", cfg, "--name", "bad", "--role", "king",
        ],
        Some("whatever-1\n"),
    );
    assert_ne!(code, 0);
    let (code, _, err) = cli(
        &[
            "user", "add", "--config", cfg, "--name", "short", "--role", "it",
        ],
        Some("abc\n"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("at least"), "{err}");
    let (code, out, _) = cli(&["user", "list", "--config", cfg], None);
    assert_eq!(code, 0);
    assert!(out.contains("pia\tpolice\tgate\tenabled"), "{out}");
    assert!(!out.contains(PW));
    let users_db = std::fs::read(dir.path().join("viewer-api/users.sqlite")).unwrap();
    assert!(
        !String::from_utf8_lossy(&users_db).contains(PW),
        "password stored in clear"
    );

    let mut server = Server(
        Command::new(BIN)
            .args(["serve", "--config", cfg])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let base = format!("https://127.0.0.1:{port}");
    wait_up(&base, &mut server).await;
    assert!(dir.path().join("viewer-api/tls/self-signed.crt").exists());
    let c = client();

    // plain HTTP is not served
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );

    let r = c
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "pia", "password": "wrong-one-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "pia", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = format!("Bearer {tok}");

    assert_eq!(
        c.get(format!("{base}/api/v1/cameras"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let cams: Value = c
        .get(format!("{base}/api/v1/cameras"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cams,
        json!([{"id": "gate", "name": "Gate", "state": "unknown", "since": null, "reason": null}])
    );

    let rec: Value = c
        .get(format!(
            "{base}/api/v1/cameras/gate/recordings?from={}&to={}",
            t(T0 - 60_000),
            t(T0 + 60_000)
        ))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["spans"][0]["from"], t(T0));

    let uri = format!(
        "{base}/api/v1/cameras/gate/video.mp4?from={}&to={}",
        t(T0 + 500),
        t(T0 + 3_000)
    );
    assert_eq!(
        c.get(&uri)
            .header("authorization", &auth)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let r = c
        .get(format!("{uri}&case=CASE-E2E"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let mp4 = dir.path().join("out.mp4");
    std::fs::write(&mp4, &body).unwrap();
    assert_eq!(viewer_api::testdata::check_with_ffmpeg(&mp4).unwrap(), 75);
    let r = c
        .get(format!("{uri}&case=CASE-E2E"))
        .header("authorization", &auth)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), body.slice(100..200));

    let r = c
        .get(format!(
            "{base}/api/v1/cameras/hall/video.mp4?from={}&to={}&case=X",
            t(T0),
            t(T0 + 1000)
        ))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let err: Value = r.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("scope"));

    // A graceful stop: the recorder checkpoints the log's head.
    Command::new("kill")
        .arg(server.0.id().to_string())
        .status()
        .unwrap();
    assert!(server.0.wait().unwrap().success());
    drop(server);

    // audit verify: intact and anchored, then changed / deleted / inserted on copies
    let (code, out, err) = cli(&["audit", "verify", "--config", cfg], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checkpoint of entry"), "{out}");
    let audit = dir.path().join("viewer-api/audit.sqlite");
    {
        let conn = rusqlite::Connection::open(&audit).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert!(n >= 8, "{n}");
        let logged: i64 = conn
            .query_row("SELECT COUNT(*) FROM entries WHERE action='playback' AND case_ref='CASE-E2E' AND outcome='allowed' AND client='127.0.0.1'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logged, 2);
    }
    let tamper: [(&str, &str, &str); 3] = [
        ("changed", "UPDATE entries SET case_ref = 'OTHER' WHERE seq = 4", "entry 4"),
        ("deleted", "DELETE FROM entries WHERE seq = 3", "entry 3"),
        (
            "inserted",
            "UPDATE entries SET seq = seq + 100 WHERE seq >= 5; UPDATE entries SET seq = seq - 99 WHERE seq >= 105;
             INSERT INTO entries (seq, at_ms, actor, role, action, outcome, prev_hash, hash) SELECT 5, at_ms, 'ghost', 'it', 'playback', 'allowed', hash, hash FROM entries WHERE seq = 4",
            "entry 5",
        ),
    ];
    let last: i64 = rusqlite::Connection::open(&audit)
        .unwrap()
        .query_row("SELECT MAX(seq) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert!(
        out.contains(&format!("checkpoint of entry {last} ")),
        "the checkpoint at shutdown covers the whole log: {out}"
    );
    // Footage the recorder served for an entry the log does not have: a mismatch.
    {
        let client = recorder::service::Client::new(recorder_config.service_socket());
        let segs: Vec<recorder::service::SegmentWire> = client
            .call(&recorder::service::Request::Segments {
                camera: "gate".into(),
                from_ms: T0,
                to_ms: T0 + 4_000,
            })
            .unwrap();
        let mut s = client
            .open_segment(&recorder::service::Request::Open {
                camera: "gate".into(),
                segment: segs[0].id.clone(),
                entry: recorder::checkpoint::LogRef {
                    seq: 3,
                    hash: "ab".repeat(32),
                },
            })
            .unwrap();
        let mut buf = Vec::new();
        s.next_gop(&mut buf).unwrap();
        drop(s);
        let (code, out, err) = cli(&["audit", "verify", "--config", cfg], None);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            out.contains("for access-log entry 3, which the log does not have"),
            "{out}"
        );
    }
    for (name, sql, want) in tamper {
        let copy = dir.path().join(format!("{name}.sqlite"));
        std::fs::copy(&audit, &copy).unwrap();
        std::fs::copy(
            dir.path().join("viewer-api/audit.sqlite.head"),
            dir.path().join(format!("{name}.sqlite.head")),
        )
        .unwrap();
        rusqlite::Connection::open(&copy)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        let cfg2 = write_config(dir.path(), port, Some(&copy));
        let (code, out, err) = cli(
            &["audit", "verify", "--config", cfg2.to_str().unwrap()],
            None,
        );
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(out.contains(want), "{name}: {out}");
    }

    // The attacks that the chain alone missed: the end cut off and the head file
    // removed; one user's entries removed or rewritten and the chain recomputed. The recorder's
    // signed checkpoint catches both.
    let recompute = |path: &Path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        let log = viewer_api::audit::AuditLog::open(
            path,
            std::sync::Arc::new(viewer_api::clock::SystemClock),
            Duration::from_secs(1),
        )
        .unwrap();
        let entries = log.query(&viewer_api::audit::Filter::default()).unwrap();
        let mut prev = entries[0].prev_hash.clone();
        for (i, mut e) in entries.into_iter().enumerate() {
            let old = e.seq;
            e.seq = i as i64 + 1;
            e.prev_hash = prev.clone();
            e.hash = viewer_api::audit::entry_hash(&e);
            conn.execute(
                "UPDATE entries SET seq = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                rusqlite::params![e.seq, e.prev_hash, e.hash, old],
            )
            .unwrap();
            prev = e.hash;
        }
    };
    type Attack<'a> = (&'a str, &'a str, &'a dyn Fn(&Path), &'a str);
    let attacks: [Attack; 3] = [
        (
            "cut",
            "DELETE FROM entries WHERE seq > (SELECT MAX(seq) - 3 FROM entries)",
            &|_| {},
            "removed from the end",
        ),
        (
            "removed-and-rechained",
            "DELETE FROM entries WHERE actor = 'pia'",
            &recompute,
            "removed from the end",
        ),
        (
            "rewritten-and-rechained",
            "UPDATE entries SET actor = 'ivan' WHERE actor = 'pia'",
            &recompute,
            "rewritten",
        ),
    ];
    for (name, sql, then, want) in attacks {
        let copy = dir.path().join(format!("{name}.sqlite"));
        std::fs::copy(&audit, &copy).unwrap();
        // (no head file: the attacker removed it)
        rusqlite::Connection::open(&copy)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        then(&copy);
        let cfg2 = write_config(dir.path(), port, Some(&copy));
        let (code, out, err) = cli(
            &["audit", "verify", "--config", cfg2.to_str().unwrap()],
            None,
        );
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(out.contains(want), "{name}: {out}");
    }
}
