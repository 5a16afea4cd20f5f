//! Holds, system health, the deletion journal and the police's export list, in-process:
//! a real store (segments written by the recorder's segment writer into its catalog,
//! the recorder's retention deleting them), the real routers, a manual clock.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use common::{CLIENT, Feed, Person, Resp, Written};
use recorder::catalog::Catalog;
use recorder::config::Config;
use recorder::retention::{Policy, Retention};
use recorder::segment::Codec;
use viewer_api::api::AppState;
use viewer_api::audit::Entry;
use viewer_api::clock::{Clock, ManualClock, rfc3339};
use viewer_api::config::Settings;
use viewer_api::policy::Role;
use viewer_api::users::{NewGrant, UserDb};

/// 2026-01-01T00:00:00Z: recording starts here.
const T0: i64 = 1_767_225_600_000;
const NOW: i64 = T0 + 3_600_000;
const FPS: i64 = 10;
/// gate is offline from T0+20 s to T0+26 s.
const GAP: (i64, i64) = (T0 + 20_000, T0 + 26_000);
const MAX_BYTES: u64 = 5_000_000_000;

struct Env {
    _dir: tempfile::TempDir,
    store: PathBuf,
    config: Config,
    clock: Arc<ManualClock>,
    app: axum::Router,
    state: Arc<AppState>,
    written: Vec<Written>,
    tokens: HashMap<String, String>,
}

/// Writes `camera`'s footage from `from` to `to` (wall ms) in 2 s segments of made-up
/// frames (nothing here decodes them).
fn record(cfg: &Config, cat: &Catalog, camera: &str, from: i64, to: i64) -> Vec<Written> {
    let feed = Feed {
        params: common::codec_params(Codec::H264, vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe0, 0x00]),
        fps: FPS,
        segment_secs: 2,
        // a key frame every second
        frame: |n: i64| {
            (
                n % FPS == 0,
                vec![(n % 251) as u8; 700 + (n % 13) as usize * 50],
            )
        },
    };
    feed.record(cfg, cat, camera, from, to)
}

/// Users: pia (police: gate, hall), pete (police: gate), paul (police, every camera),
/// ivan (it), carl (contractor with a grant for gate), cody (contractor, no grant),
/// ada (auditor).
const PEOPLE: &[Person] = &[
    ("pia", Role::Police, Some(&["gate", "hall"])),
    ("pete", Role::Police, Some(&["gate"])),
    ("paul", Role::Police, None),
    ("ivan", Role::It, None),
    ("carl", Role::Contractor, None),
    ("cody", Role::Contractor, None),
    ("ada", Role::Auditor, None),
];

/// The store (gate and hall recorded, gate offline in GAP), the service's state as
/// `viewer-api serve` builds it, the API, export and admin routers, everyone logged in.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = common::store_config(
        dir.path(),
        &format!("max_bytes = {MAX_BYTES}\nmin_free_bytes = 0\n"),
        "retention = \"72h\"\n",
        "",
    );
    let store = config.storage.path.clone();
    recorder::store::init(&config, &recorder::store::key_provider(&config)).unwrap();
    let cat = Catalog::open(&store).unwrap();
    let mut written = record(&config, &cat, "gate", T0, GAP.0);
    let g = cat.open_gap("gate", GAP.0, "camera offline").unwrap();
    cat.close_gap(g, GAP.1).unwrap();
    written.extend(record(&config, &cat, "gate", GAP.1, T0 + 40_000));
    written.extend(record(&config, &cat, "hall", T0 + 10_000, T0 + 30_000));
    cat.set_camera_state("gate", "recording", None, GAP.1)
        .unwrap();
    cat.set_camera_state("hall", "offline", Some("connection refused"), T0 + 30_000)
        .unwrap();

    let settings = Settings {
        api: viewer_api::config::parse_api(config.api.as_ref()).unwrap(),
        recorder: config.clone(),
    };
    let clock = Arc::new(ManualClock::new(NOW));
    std::fs::create_dir_all(settings.state_dir()).unwrap();
    let users = common::users(&settings.users_db(), &clock, UserDb::test_argon(), PEOPLE);
    users
        .add_grant(
            &NewGrant {
                user: "carl".into(),
                cameras: vec!["gate".into()],
                from_ms: NOW - 3_600_000,
                until_ms: NOW + 24 * 3_600_000,
                live: true,
                playback: false,
                playback_from_ms: None,
                playback_to_ms: None,
                ticket: "CHG-7".into(),
            },
            "ivan",
        )
        .unwrap();
    drop(users);
    let source = Arc::new(common::remote_source(&config, &clock));
    let state = viewer_api::server::state(&settings, source, clock.clone()).unwrap();
    let exports = common::exports(
        &config,
        state.audit.clone(),
        &clock,
        Duration::from_secs(3600),
    );
    let app = viewer_api::api::router(state.clone())
        .merge(viewer_api::export::api::router(state.clone(), exports))
        .merge(viewer_api::admin::router(
            state.clone(),
            &settings,
            common::remote_recorder(&config, &clock),
        ));
    let mut env = Env {
        _dir: dir,
        store,
        config,
        clock,
        app,
        state,
        written,
        tokens: HashMap::new(),
    };
    env.relogin().await;
    env
}

impl Env {
    async fn send(&self, req: Request<Body>) -> Resp {
        common::send(&self.app, req, CLIENT).await
    }

    /// Logs everyone in again (sessions end after 15 idle minutes of the test clock).
    async fn relogin(&mut self) {
        for (u, ..) in PEOPLE {
            let tok = self.login(u).await;
            self.tokens.insert(u.to_string(), tok);
        }
    }

    async fn login(&self, user: &str) -> String {
        common::token(&self.app, CLIENT, user).await
    }

    async fn call(&self, user: &str, method: &str, uri: &str, body: Option<Value>) -> Resp {
        self.send(common::request(method, &self.tokens[user], uri, body))
            .await
    }

    async fn get(&self, user: &str, uri: &str) -> Resp {
        self.call(user, "GET", uri, None).await
    }

    async fn post(&self, user: &str, uri: &str, body: Value) -> Resp {
        self.call(user, "POST", uri, Some(body)).await
    }

    async fn delete(&self, user: &str, uri: &str) -> Resp {
        self.call(user, "DELETE", uri, None).await
    }

    fn entries(&self, action: &str) -> Vec<Entry> {
        common::entries(&self.state, action)
    }

    fn written(&self, camera: &str) -> Vec<&Written> {
        self.written.iter().filter(|w| w.camera == camera).collect()
    }

    /// One retention pass of the recorder over the store, at the test clock's time.
    fn retention_pass(&self, policy: Policy) -> recorder::retention::PassReport {
        let mono = Arc::new(ManualClock::new(0));
        let mut r = Retention::new(&self.store, policy, self.clock.clone(), mono, None).unwrap();
        r.set_reserve_bytes(0);
        r.set_free_space_fn(|_| Ok(u64::MAX / 2));
        r.pass().unwrap()
    }
}

fn policy(retention_ms: i64, max_bytes: u64) -> Policy {
    Policy {
        retention_ms,
        camera_retention_ms: HashMap::new(),
        max_bytes,
        camera_max_bytes: HashMap::new(),
        min_free_bytes: 0,
    }
}

fn hold_body(cameras: &[&str], case: Option<&str>) -> Value {
    let mut v = json!({"cameras": cameras, "from": rfc3339(T0), "to": rfc3339(T0 + 30_000)});
    if let Some(c) = case {
        v["case"] = json!(c);
    }
    v
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_i64().unwrap())
        .collect()
}

mod health;
mod holds;
