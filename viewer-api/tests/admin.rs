//! Holds, system health, the deletion journal and the police's export list, in-process:
//! a real store (segments written by the recorder's segment writer into its catalog,
//! the recorder's retention deleting them), the real routers, a manual clock.

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

#[tokio::test]
async fn holds_by_role_create_list_release_and_logged() {
    let mut env = env().await;
    // Who may place a hold on gate with a case reference.
    for (user, want) in [
        ("pia", StatusCode::CREATED),
        ("pete", StatusCode::CREATED),
        ("paul", StatusCode::CREATED),
        ("ivan", StatusCode::FORBIDDEN),
        ("carl", StatusCode::FORBIDDEN),
        ("cody", StatusCode::FORBIDDEN),
        ("ada", StatusCode::FORBIDDEN),
    ] {
        let r = env
            .post(user, "/api/v1/holds", hold_body(&["gate"], Some("CASE-9")))
            .await;
        assert_eq!(
            r.status,
            want,
            "{user}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if want == StatusCode::FORBIDDEN {
            assert!(r.error().contains("may not hold.create"), "{}", r.error());
        }
    }
    let denied_creates = env
        .entries("hold.create")
        .iter()
        .filter(|e| e.outcome.starts_with("denied"))
        .count();
    assert_eq!(denied_creates, 4, "every denial is logged");

    // pia's hold: created, listed, released.
    let r = env
        .post(
            "pia",
            "/api/v1/holds",
            json!({"cameras": ["gate", "hall", "gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 20_000),
                   "case": " CASE-17 ", "until": rfc3339(NOW + 7_200_000)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let id = r.json()["id"].as_i64().unwrap();
    let logged = env.entries("hold.create");
    let e = logged.last().unwrap();
    assert_eq!(e.actor, "pia");
    assert_eq!(e.role, "police");
    assert_eq!(e.outcome, "allowed");
    assert_eq!(e.case.as_deref(), Some("CASE-17"));
    assert_eq!(e.camera.as_deref(), Some("gate,hall,gate"));
    assert_eq!((e.from_ms, e.to_ms), (Some(T0), Some(T0 + 20_000)));
    assert_eq!(e.client.as_deref(), Some("10.1.2.3"));
    // In the recorder's catalog, as the recorder's retention will read it.
    let cat = Catalog::open_read_only(&env.store).unwrap();
    let h = recorder::holds::get(&cat, id).unwrap().unwrap();
    assert_eq!(h.placed_by, "pia");
    assert_eq!(h.case_ref, "CASE-17");
    assert_eq!(
        h.cameras,
        recorder::holds::HoldCameras::Some(vec!["gate".into(), "hall".into()])
    );
    assert!(
        recorder::holds::active(&cat, NOW)
            .unwrap()
            .protects("hall", T0, T0 + 1000)
    );

    for user in ["pia", "ivan", "ada", "paul"] {
        let r = env.get(user, "/api/v1/holds").await;
        assert_eq!(r.status, StatusCode::OK, "{user}");
        let list = r.json();
        assert_eq!(list.as_array().unwrap().len(), 4, "{user}: {list}");
        let mine = list
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap();
        assert_eq!(
            *mine,
            json!({"id": id, "cameras": ["gate", "hall"], "from": rfc3339(T0), "to": rfc3339(T0 + 20_000),
                   "case": "CASE-17", "by": "pia", "until": rfc3339(NOW + 7_200_000),
                   "created": rfc3339(NOW), "status": "active"})
        );
    }
    for user in ["carl", "cody"] {
        assert_eq!(
            env.get(user, "/api/v1/holds").await.status,
            StatusCode::FORBIDDEN
        );
    }

    // Scope: pete (gate only) cannot hold hall, nor all cameras, and does not see a
    // hold on hall alone; paul (every camera) may hold all.
    let r = env
        .post(
            "pete",
            "/api/v1/holds",
            hold_body(&["hall"], Some("CASE-9")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.error().contains("outside the user's scope"),
        "{}",
        r.error()
    );
    let r = env
        .post("pete", "/api/v1/holds", hold_body(&["all"], Some("CASE-9")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json());
    let hall_only = env
        .post(
            "pia",
            "/api/v1/holds",
            hold_body(&["hall"], Some("CASE-20")),
        )
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let r = env
        .post(
            "paul",
            "/api/v1/holds",
            hold_body(&["all"], Some("CASE-21")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let all_id = r.json()["id"].as_i64().unwrap();
    let pete_sees = ids(&env.get("pete", "/api/v1/holds").await.json());
    assert!(pete_sees.contains(&id) && pete_sees.contains(&all_id));
    assert!(!pete_sees.contains(&hall_only), "{pete_sees:?}");
    assert!(ids(&env.get("ada", "/api/v1/holds").await.json()).contains(&hall_only));
    let all_hold = env.get("ada", "/api/v1/holds").await.json();
    let all_hold = all_hold
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == all_id)
        .unwrap()
        .clone();
    assert_eq!(all_hold["cameras"], json!(["all"]));
    assert_eq!(all_hold["until"], Value::Null);

    // Release: only the officer who placed it.
    let uri = format!("/api/v1/holds/{id}");
    for (user, why) in [
        ("pete", "only their own holds"),
        ("paul", "only their own holds"),
        ("ivan", "may not hold.release"),
        ("ada", "may not hold.release"),
        ("carl", "may not hold.release"),
    ] {
        let r = env.delete(user, &uri).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{user}");
        assert!(r.error().contains(why), "{user}: {}", r.error());
    }
    assert!(
        recorder::holds::get(&cat, id)
            .unwrap()
            .unwrap()
            .released_unix_ms
            .is_none()
    );
    env.clock.advance_ms(60_000);
    let r = env.delete("pia", &uri).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let h = recorder::holds::get(&cat, id).unwrap().unwrap();
    assert_eq!(h.released_by.as_deref(), Some("pia"));
    assert_eq!(h.released_unix_ms, Some(NOW + 60_000));
    let r = env.delete("pia", &uri).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("already released"), "{}", r.error());

    let released = env.entries("hold.release");
    let outcomes: Vec<(&str, &str)> = released
        .iter()
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(outcomes.len(), 7, "{outcomes:?}");
    assert!(outcomes[..5].iter().all(|(_, o)| o.starts_with("denied")));
    assert_eq!(outcomes[5], ("pia", "allowed"));
    assert!(
        outcomes[6]
            .1
            .starts_with("denied: this hold was already released")
    );
    let e = &released[5];
    assert_eq!(e.case.as_deref(), Some("CASE-17"));
    assert_eq!(e.camera.as_deref(), Some("gate,hall"));
    assert_eq!((e.from_ms, e.to_ms), (Some(T0), Some(T0 + 20_000)));
    assert!(
        e.purpose
            .as_deref()
            .unwrap()
            .contains(&format!("release hold {id}"))
    );
    assert_eq!(released[0].actor, "pete");

    // Released holds are listed only with all=true.
    assert!(!ids(&env.get("ivan", "/api/v1/holds").await.json()).contains(&id));
    let all = env.get("ivan", "/api/v1/holds?all=true").await.json();
    let h = all
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .unwrap();
    assert_eq!(h["status"], "released");
    assert_eq!(h["released_by"], "pia");
    assert_eq!(h["released"], rfc3339(NOW + 60_000));

    // A hold with an expiry shows as expired once it has passed.
    let r = env
        .post(
            "pia",
            "/api/v1/holds",
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 1000),
                   "case": "CASE-30", "until": rfc3339(NOW + 3_600_000)}),
        )
        .await;
    let short = r.json()["id"].as_i64().unwrap();
    env.clock.advance_ms(2 * 3_600_000);
    env.relogin().await;
    let list = env.get("ivan", "/api/v1/holds").await.json();
    let h = list
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == short)
        .unwrap();
    assert_eq!(h["status"], "expired");
}

#[tokio::test]
async fn hold_requests_with_bad_input_get_clear_4xx_and_are_logged() {
    let env = env().await;
    let before = env.entries("hold.create").len();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            hold_body(&["gate"], None),
            StatusCode::BAD_REQUEST,
            "case is required",
        ),
        (
            hold_body(&["gate"], Some("  ")),
            StatusCode::BAD_REQUEST,
            "case is required",
        ),
        (
            hold_body(&["gate"], Some(&"x".repeat(201))),
            StatusCode::BAD_REQUEST,
            "at most 200 bytes",
        ),
        (
            hold_body(&["gate"], Some(&"é".repeat(101))),
            StatusCode::BAD_REQUEST,
            "at most 200 bytes",
        ),
        (
            hold_body(&["gate"], Some("CASE\n1")),
            StatusCode::BAD_REQUEST,
            "without control characters",
        ),
        (
            hold_body(&[], Some("C-1")),
            StatusCode::BAD_REQUEST,
            "name 1 to",
        ),
        (
            hold_body(&["Gate!"], Some("C-1")),
            StatusCode::BAD_REQUEST,
            "invalid camera id",
        ),
        (
            hold_body(&["all", "gate"], Some("C-1")),
            StatusCode::BAD_REQUEST,
            "stands alone",
        ),
        (
            hold_body(&["roof"], Some("C-1")),
            StatusCode::NOT_FOUND,
            "unknown camera roof",
        ),
        (
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0), "case": "C-1"}),
            StatusCode::BAD_REQUEST,
            "to must be after from",
        ),
        (
            json!({"cameras": ["gate"], "from": "yesterday", "to": rfc3339(T0), "case": "C-1"}),
            StatusCode::BAD_REQUEST,
            "from:",
        ),
        (
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 1), "case": "C-1",
                   "until": rfc3339(NOW - 1)}),
            StatusCode::BAD_REQUEST,
            "until is already past",
        ),
        (
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 1), "case": "C-1",
                   "by": "someone-else"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            json!({"cameras": "gate"}),
            StatusCode::BAD_REQUEST,
            "invalid JSON body",
        ),
    ];
    let n = cases.len();
    for (body, status, msg) in cases {
        let r = env.post("pia", "/api/v1/holds", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.json());
        assert!(r.error().contains(msg), "{body}: {}", r.error());
    }
    let r = env
        .send(
            Request::post("/api/v1/holds")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", env.tokens["pia"]),
                )
                .body(Body::from(hold_body(&["gate"], Some("C-1")).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let logged = env.entries("hold.create");
    assert_eq!(logged.len() - before, n + 1, "every refusal is logged");
    assert!(
        logged[before..]
            .iter()
            .all(|e| e.outcome.starts_with("denied: ") && e.actor == "pia")
    );
    let cat = Catalog::open_read_only(&env.store).unwrap();
    assert!(
        recorder::holds::list(&cat).unwrap().is_empty(),
        "nothing was held"
    );

    for (uri, status, msg) in [
        (
            "/api/v1/holds/abc",
            StatusCode::BAD_REQUEST,
            "positive integer",
        ),
        (
            "/api/v1/holds/-3",
            StatusCode::BAD_REQUEST,
            "positive integer",
        ),
        ("/api/v1/holds/999", StatusCode::NOT_FOUND, "no such hold"),
    ] {
        let r = env.delete("pia", uri).await;
        assert_eq!(r.status, status, "{uri}");
        assert!(r.error().contains(msg), "{uri}: {}", r.error());
    }
    assert_eq!(env.entries("hold.release").len(), 3);
    let r = env.get("ivan", "/api/v1/holds?all=maybe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Without a session: nothing, and no decision to log.
    let r = env
        .send(Request::get("/api/v1/holds").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

fn camera<'a>(h: &'a Value, id: &str) -> &'a Value {
    h["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no camera {id} in {h}"))
}

fn camera_ids(h: &Value) -> Vec<&str> {
    h["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn health_matches_the_store_and_is_scoped_by_role() {
    let mut env = env().await;
    // Footage of a camera no longer configured (it has no camera row) still counts.
    let cat = Catalog::open(&env.store).unwrap();
    let old = record(&env.config, &cat, "old", T0 - 60_000, T0 - 56_000);
    env.written.extend(old);
    // Who sees which cameras, and the store-wide part.
    for (user, cams, store) in [
        ("ivan", vec!["gate", "hall", "old"], true),
        ("ada", vec!["gate", "hall", "old"], true),
        ("pia", vec!["gate", "hall"], true),
        ("paul", vec!["gate", "hall", "old"], true),
        ("pete", vec!["gate"], true),
        ("carl", vec!["gate"], false),
    ] {
        let r = env.get(user, "/api/v1/health").await;
        assert_eq!(r.status, StatusCode::OK, "{user}");
        let h = r.json();
        assert_eq!(camera_ids(&h), cams, "{user}");
        assert_eq!(h["store"].is_object(), store, "{user}: {h}");
        assert_eq!(h["now"], rfc3339(NOW));
    }
    let r = env.get("cody", "/api/v1/health").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().contains("active grant"), "{}", r.error());

    let h = env.get("ivan", "/api/v1/health").await.json();
    // The numbers are what was written: bytes (as in the catalog and on disk), the
    // oldest and newest footage, and the gap.
    let on_disk = |cam: &str| -> u64 {
        std::fs::read_dir(env.store.join("segments").join(cam))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    for cam in ["gate", "hall", "old"] {
        let w = env.written(cam);
        let bytes: u64 = w.iter().map(|w| w.bytes).sum();
        assert_eq!(bytes, on_disk(cam));
        let c = camera(&h, cam);
        assert_eq!(c["bytes"], bytes, "{cam}");
        assert_eq!(c["segments"], w.len(), "{cam}");
        let oldest = w.iter().map(|w| w.start).min().unwrap();
        let newest = w.iter().map(|w| w.end).max().unwrap();
        assert_eq!(c["oldest"], rfc3339(oldest), "{cam}");
        assert_eq!(c["newest"], rfc3339(newest), "{cam}");
        let days = ((NOW - oldest) as f64 / 86_400_000.0 * 100.0).round() / 100.0;
        assert_eq!(c["days_held"].as_f64().unwrap(), days);
    }
    let gate = camera(&h, "gate");
    assert_eq!(gate["name"], "Gate");
    assert_eq!(gate["state"], "recording");
    assert_eq!(gate["state_since"], rfc3339(GAP.1));
    assert_eq!(gate["state_reason"], Value::Null);
    assert_eq!(gate["retention_days"], 3.0);
    assert_eq!(
        gate["gaps_24h"],
        json!([{"from": rfc3339(GAP.0), "to": rfc3339(GAP.1), "reason": "camera offline"}])
    );
    let hall = camera(&h, "hall");
    assert_eq!(hall["state"], "offline");
    assert_eq!(hall["state_reason"], "connection refused");
    assert_eq!(hall["retention_days"], 30.0);
    assert_eq!(hall["gaps_24h"], json!([]));
    let old = camera(&h, "old");
    assert_eq!(
        (&old["name"], &old["state"]),
        (&json!("old"), &json!("unknown"))
    );
    let total: u64 = env.written.iter().map(|w| w.bytes).sum();
    let s = &h["store"];
    assert_eq!(s["bytes_used"], total);
    assert_eq!(s["max_bytes"], MAX_BYTES);
    assert_eq!(s["min_free_bytes"], 0);
    let fs = recorder::footage::file_system_space(&env.store).unwrap();
    assert_eq!(s["fs_size_bytes"], fs.size_bytes);
    assert!(s["fs_free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(s["holds_active"], 0);
    assert_eq!(
        s["retention"],
        Value::Null,
        "retention never ran on this store"
    );

    // Gaps older than a day drop out of the report.
    env.clock.set(GAP.1 + 24 * 3_600_000 + 1);
    env.relogin().await;
    let h = env.get("ivan", "/api/v1/health").await.json();
    assert_eq!(camera(&h, "gate")["gaps_24h"], json!([]));
    env.clock.set(NOW);
    env.relogin().await;

    // Held footage over the store's capacity: retention deletes nothing and raises its
    // alarm, which health shows with the hold count.
    let r = env
        .post(
            "paul",
            "/api/v1/holds",
            json!({"cameras": ["all"], "from": rfc3339(T0 - 60_000), "to": rfc3339(NOW), "case": "CASE-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let pass = env.retention_pass(policy(30 * 86_400_000, total / 2));
    assert_eq!(pass.deleted(), 0);
    assert!(!pass.alarms.is_empty());
    let h = env.get("ada", "/api/v1/health").await.json();
    assert_eq!(camera_ids(&h), ["gate", "hall", "old"]);
    let s = &h["store"];
    assert_eq!(s["holds_active"], 1);
    assert_eq!(s["bytes_used"], total, "nothing held was deleted");
    let ret = &s["retention"];
    assert_eq!(ret["alarm"], true, "{h}");
    assert_eq!(ret["alarms"].as_array().unwrap().len(), pass.alarms.len());
    assert_eq!(ret["clock_refused"], false);
    assert_eq!(ret["clock_refused_reason"], Value::Null);
    assert_eq!(ret["since"], rfc3339(NOW));

    // A clock that reads earlier than the footage makes retention refuse age deletion.
    env.clock.set(T0 - 3_600_000);
    let pass = env.retention_pass(policy(30 * 86_400_000, MAX_BYTES));
    assert!(pass.clock_refused.is_some());
    env.clock.set(NOW);
    let h = env.get("ivan", "/api/v1/health").await.json();
    let ret = &h["store"]["retention"];
    assert_eq!(ret["clock_refused"], true, "{h}");
    assert!(
        ret["clock_refused_reason"]
            .as_str()
            .unwrap()
            .contains("clock")
    );
}

#[tokio::test]
async fn journal_shows_deletions_to_it_and_auditor() {
    let env = env().await;
    // Hold hall; an age pass with a 1-minute retention then deletes all of gate.
    let r = env
        .post("pia", "/api/v1/holds", hold_body(&["hall"], Some("CASE-5")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let pass = env.retention_pass(policy(60_000, MAX_BYTES));
    let gate = env.written("gate");
    assert_eq!(pass.deleted_age as usize, gate.len());

    for (user, want) in [
        ("ivan", StatusCode::OK),
        ("ada", StatusCode::OK),
        ("pia", StatusCode::FORBIDDEN),
        ("paul", StatusCode::FORBIDDEN),
        ("carl", StatusCode::FORBIDDEN),
        ("cody", StatusCode::FORBIDDEN),
    ] {
        let r = env.get(user, "/api/v1/journal").await;
        assert_eq!(r.status, want, "{user}");
        if want == StatusCode::FORBIDDEN {
            assert!(r.error().contains("may not journal.read"), "{}", r.error());
        }
    }
    let j = env.get("ada", "/api/v1/journal").await.json();
    assert_eq!(j["more"], false);
    assert_eq!(j["next_before"], Value::Null);
    let entries = j["entries"].as_array().unwrap();
    assert_eq!(entries.len(), gate.len());
    // Newest first, each exactly the segment that was written.
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    for e in entries {
        let w = gate
            .iter()
            .find(|w| w.id.to_string() == e["segment"].as_str().unwrap())
            .unwrap_or_else(|| panic!("not a gate segment: {e}"));
        assert_eq!(e["camera"], "gate");
        assert_eq!(e["from"], rfc3339(w.start));
        assert_eq!(e["to"], rfc3339(w.end));
        assert_eq!(e["bytes"], w.bytes);
        assert_eq!(e["sha256"], w.sha256);
        assert_eq!(e["reason"], "age");
        assert_eq!(e["deleted_at"], rfc3339(NOW));
    }
    let hall = env.get("ivan", "/api/v1/journal?camera=hall").await.json();
    assert_eq!(hall["entries"], json!([]), "held footage was not deleted");
    let r = env
        .get("ivan", "/api/v1/journal?camera=gate&since=&before=&limit=")
        .await;
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), gate.len());

    // Pages: limit and the before cursor walk the whole journal once.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/journal?limit=3".to_string();
    loop {
        let p = env.get("ivan", &uri).await.json();
        let page: Vec<i64> = p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert!(page.len() <= 3);
        seen.extend(page);
        if p["more"] == false {
            assert_eq!(p["next_before"], Value::Null);
            break;
        }
        uri = format!("/api/v1/journal?limit=3&before={}", p["next_before"]);
    }
    assert_eq!(seen, seqs);
    let since = |t: i64| format!("/api/v1/journal?since={}", rfc3339(t));
    let r = env.get("ivan", &since(NOW + 1)).await.json();
    assert_eq!(r["entries"], json!([]));
    let r = env.get("ivan", &since(NOW)).await.json();
    assert_eq!(r["entries"].as_array().unwrap().len(), gate.len());

    for (q, msg) in [
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=1001", "limit must be 1 to 1000"),
        ("limit=ten", "limit must be 1 to 1000"),
        ("before=-1", "before must be a positive integer"),
        ("camera=Gate!", "invalid camera id"),
        ("since=yesterday", "since:"),
        ("color=red", "invalid query"),
    ] {
        let r = env.get("ada", &format!("/api/v1/journal?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.error().contains(msg), "{q}: {}", r.error());
    }

    // Health agrees: gate holds nothing any more, hall all it had.
    let h = env.get("ivan", "/api/v1/health").await.json();
    let g = camera(&h, "gate");
    assert_eq!(
        (g["bytes"].as_u64(), g["segments"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(g["oldest"], Value::Null);
    assert_eq!(g["days_held"], Value::Null);
    let hall_bytes: u64 = env.written("hall").iter().map(|w| w.bytes).sum();
    assert_eq!(camera(&h, "hall")["bytes"], hall_bytes);
    assert_eq!(h["store"]["bytes_used"], hall_bytes);
}

#[tokio::test]
async fn export_list_is_the_officers_own_and_its_hold_stays() {
    let env = env().await;
    let ask = |user: &'static str, cams: Vec<&'static str>, case: &'static str| {
        let env = &env;
        async move {
            let r = env
                .post(
                    user,
                    "/api/v1/exports",
                    json!({"cameras": cams, "from": rfc3339(T0), "to": rfc3339(T0 + 10_000),
                           "case": case, "reason": "burglary"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
            env.clock.advance_ms(1000);
            r.json()["id"].as_str().unwrap().to_string()
        }
    };
    let first = ask("pia", vec!["gate"], "CASE-1").await;
    let pauls = ask("paul", vec!["hall"], "CASE-2").await;
    let second = ask("pia", vec!["gate", "hall"], "CASE-3").await;

    let r = env.get("pia", "/api/v1/exports").await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let got: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![second.as_str(), first.as_str()], "newest first");
    let e = &list[0];
    assert_eq!(e["cameras"], json!(["gate", "hall"]));
    assert_eq!(e["from"], rfc3339(T0));
    assert_eq!(e["to"], rfc3339(T0 + 10_000));
    assert_eq!(e["case"], "CASE-3");
    assert_eq!(e["reason"], "burglary");
    assert_eq!(e["state"], "queued");
    assert_eq!(e["progress"], 0.0);
    assert_eq!(e["requested_by"], "pia");
    assert_eq!(e["created"], rfc3339(NOW + 2000));
    assert!(e.get("expires").is_none(), "not finished: no expiry yet");
    // The same shape as the status of one export.
    let one = env
        .get("pia", &format!("/api/v1/exports/{second}"))
        .await
        .json();
    assert_eq!(*e, one);

    let paul = env.get("paul", "/api/v1/exports").await.json();
    assert_eq!(ids_str(&paul), vec![pauls.as_str()]);
    assert_eq!(env.get("pete", "/api/v1/exports").await.json(), json!([]));
    for user in ["ivan", "carl", "cody", "ada"] {
        let r = env.get(user, "/api/v1/exports").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{user}");
        assert!(r.error().contains("may not see exports"), "{}", r.error());
    }

    // Each export's hold is listed, by the officer, and cannot be released while the
    // export has not finished.
    let holds = env.get("pia", "/api/v1/holds").await.json();
    let h = holds
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["case"] == "CASE-1")
        .unwrap();
    assert_eq!(h["by"], "pia");
    let r = env
        .delete("pia", &format!("/api/v1/holds/{}", h["id"]))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.error().contains(&format!("protects export {first}")),
        "{}",
        r.error()
    );
    let logged = env.entries("hold.release");
    assert!(
        logged
            .last()
            .unwrap()
            .outcome
            .starts_with("denied: this hold protects export")
    );
    let cat = Catalog::open_read_only(&env.store).unwrap();
    let id = h["id"].as_i64().unwrap();
    assert!(
        recorder::holds::get(&cat, id)
            .unwrap()
            .unwrap()
            .released_unix_ms
            .is_none()
    );
}

fn ids_str(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_clock_is_the_servers() {
    // The console shows the server's own time beside the cameras' state.
    let env = env().await;
    env.clock.set(NOW + 123);
    let h = env.get("ivan", "/api/v1/health").await.json();
    assert_eq!(h["now"], rfc3339(env.clock.now_unix_ms()));
}

/// Metrics are for those with the system-health right (a lower item of finding 11 of
/// issue 9: the recorder's were served to anyone on the box): the viewer-api's and the
/// recorder's, fetched through its service, in one exposition.
#[tokio::test]
async fn metrics_need_sign_in_and_include_the_recorders() {
    let env = env().await;
    let r = env
        .send(Request::get("/api/v1/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        env.get("carl", "/api/v1/metrics").await.status,
        StatusCode::FORBIDDEN
    );
    for user in ["ivan", "ada"] {
        let m = env.get(user, "/api/v1/metrics").await;
        assert_eq!(m.status, StatusCode::OK, "{user}");
        let text = String::from_utf8(m.body).unwrap();
        assert!(text.contains("ringfence_viewer_logins_total"), "{text}");
        assert!(text.contains("ringfence_store_bytes 1234"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains(common::PW));
    }
}
