//! The API in-process: an in-memory store, a manual clock, real SQLite files.

#[path = "../common/mod.rs"]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use common::{Api, Env, PW, Person, Resp, t};
use viewer_api::playback::{GapInfo, MemorySource};
use viewer_api::policy::Role;
use viewer_api::testdata;

const T0: i64 = 1_700_000_000_000; // recording starts here
const NOW: i64 = T0 + 3_600_000;

const PEOPLE: &[Person] = &[
    ("pia", Role::Police, Some(&["gate"])),
    ("paul", Role::Police, None),
    ("ivan", Role::It, None),
    ("carl", Role::Contractor, None),
    ("ada", Role::Auditor, None),
];

/// gate and hall: 4 s from T0, then gate is offline until T0+10 s; roof: 4 s, a 6 s gap,
/// 4 s more.
fn source() -> MemorySource {
    let (params, frames) = testdata::h264_track(4, 25, 25).expect("ffmpeg");
    let mut src = testdata::memory_source(&["gate", "hall", "roof"]);
    src.gaps.insert(
        "gate".to_string(),
        vec![GapInfo {
            from_ms: T0 + 4_000,
            to_ms: Some(T0 + 10_000),
            reason: "camera offline".into(),
        }],
    );
    for cam in ["gate", "hall"] {
        src.add_segment(cam, params.clone(), testdata::chunks(&frames, T0, None));
    }
    // roof: 4 s, a 6 s gap, 4 s more
    for start in [T0, T0 + 10_000] {
        src.add_segment(
            "roof",
            params.clone(),
            testdata::chunks(&frames, start, None),
        );
    }
    src
}

fn env() -> Env {
    Api::new(NOW, PEOPLE).viewings().build(source())
}

impl Env {
    async fn login(&self, user: &str, pw: &str) -> Resp {
        self.send(common::login_req(user, pw)).await
    }
}

fn video_uri(cam: &str, from: i64, to: i64, extra: &str) -> String {
    format!(
        "/api/v1/cameras/{cam}/video.mp4?from={}&to={}{extra}",
        t(from),
        t(to)
    )
}

fn grant_body(from: i64, until: i64) -> Value {
    json!({
        "user": "carl", "cameras": ["gate"], "from": t(from), "until": t(until),
        "allow": ["playback"], "playback_from": t(T0), "playback_to": t(T0 + 2_000),
        "ticket": "CHG-1001"
    })
}

mod footage;
mod sign_in;
mod viewings;
