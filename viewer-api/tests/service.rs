//! The recorder's service as the viewer-api meets it: what it answers without an
//! access-log entry and what it refuses, what it journals, what it will sign, and whom
//! it answers at all. (Two Unix users: `tests/tests/two_users.rs`.)

mod common;

use std::sync::Arc;

use recorder::catalog::Catalog;
use recorder::checkpoint::LogRef;
use recorder::clock::ManualClock;
use recorder::segment::Codec;
use recorder::service::{Client, ErrorKind, Request, Served, Service};
use serde_json::json;
use viewer_api::playback::{self, FootageSource};
use viewer_api::recorder_side::{RecorderSide, SideError};
use viewer_api::remote::{RemoteRecorder, RemoteSource};

const T0: i64 = 1_750_000_000_000;

fn entry(seq: i64) -> LogRef {
    LogRef {
        seq,
        hash: format!("{seq:064x}"),
    }
}

struct Store {
    _dir: tempfile::TempDir,
    config: recorder::config::Config,
    written: Vec<common::Written>,
    client: Arc<Client>,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let config = common::store_config(dir.path(), "", "", "");
    recorder::store::init(&config, &recorder::store::key_provider(&config)).unwrap();
    let cat = Catalog::open(&config.storage.path).unwrap();
    let (avcc, frames) = viewer_api::testdata::h264_frames(6, 25, 25).unwrap();
    let feed = common::Feed {
        params: common::codec_params(Codec::H264, avcc),
        fps: 25,
        segment_secs: 2,
        frame: |n: i64| {
            let f = &frames[n as usize % frames.len()];
            (f.key, f.data.clone())
        },
    };
    let written = feed.record(&config, &cat, "gate", T0, T0 + 6_000);
    let clock = Arc::new(ManualClock::new(T0 + 60_000));
    let client = common::service(&config, clock);
    Store {
        _dir: dir,
        config,
        written,
        client,
    }
}

fn served(client: &Client) -> Vec<Served> {
    client
        .call(&Request::Served {
            after_id: 0,
            limit: 100,
        })
        .unwrap()
}

#[test]
fn footage_leaves_only_for_a_log_entry_and_every_read_is_journaled() {
    let s = store();
    let src: Arc<dyn FootageSource> = Arc::new(RemoteSource::new(s.client.clone()));
    // Listing and indexing need no entry: that is how a request is decided and logged.
    assert_eq!(src.cameras().unwrap().len(), 2);
    let index = playback::build_index(src.as_ref(), "gate", T0 + 1_000, T0 + 3_000)
        .unwrap()
        .expect("footage in range");
    // Reading the frames does.
    let err = src.open("gate", &index.segments[0]).err().unwrap();
    assert!(err.to_string().contains("access-log entry"), "{err}");
    let mut bytes = 0usize;
    let r = playback::read_payload(src.as_ref(), &index, 0, &mut |b| {
        bytes += b.len();
        true
    });
    assert!(r.is_err(), "payload read without an entry");
    assert_eq!(bytes, 0);
    assert!(served(&s.client).is_empty(), "nothing was served");

    // A request made for entry 7 reads, and the recorder says so.
    let logged = playback::for_entry(&src, entry(7));
    let mut total = 0u64;
    playback::read_payload(logged.as_ref(), &index, 0, &mut |b| {
        total += b.len() as u64;
        true
    })
    .unwrap();
    assert!(total > 0);
    let rows = served(&s.client);
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r.entry, entry(7));
        assert_eq!(r.op, "read");
        assert_eq!(r.camera.as_deref(), Some("gate"));
    }
    let segs: Vec<_> = index.segments.iter().map(|k| k.key.clone()).collect();
    for r in &rows {
        assert!(segs.contains(r.segment.as_ref().unwrap()), "{r:?}");
    }
    // Every frame byte sent is counted against the entry.
    let journaled: u64 = rows.iter().map(|r| r.bytes).sum();
    let frames: u64 = index.samples.iter().map(|f| u64::from(f.size)).sum();
    assert_eq!(journaled, frames);

    // An entry must look like one.
    for bad in [
        LogRef::default(),
        LogRef {
            seq: 3,
            hash: "not-a-hash".into(),
        },
    ] {
        let e = s
            .client
            .open_segment(&Request::Open {
                camera: "gate".into(),
                segment: segs[0].clone(),
                entry: bad,
            })
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Refused);
    }
    // A segment of another camera, or none, is not found.
    let e = s
        .client
        .open_segment(&Request::Open {
            camera: "hall".into(),
            segment: segs[0].clone(),
            entry: entry(8),
        })
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[test]
fn a_manifest_is_signed_only_for_footage_read_for_its_entry_as_stored() {
    let s = store();
    let rec = RemoteRecorder::new(s.client.clone());
    let pk = rec.public_key().unwrap();
    let seg = &s.written[0];
    let manifest = |sha: &str, bytes: u64| {
        serde_json::to_vec(&json!({
            "format": "ringfence-export",
            "segments": [{"camera": "gate", "id": seg.id.to_string(), "start": "", "end": "",
                          "bytes": bytes, "sha256": sha}],
        }))
        .unwrap()
    };
    let good = manifest(&seg.sha256, seg.bytes);
    // Not read for this entry (nor any): refused.
    let e = rec.sign_manifest(&entry(9), &good).unwrap_err();
    assert!(
        matches!(&e, SideError::Refused(m) if m.contains("not read")),
        "{e}"
    );
    // Read for entry 9, then signed for entry 9; not for entry 10.
    let src: Arc<dyn FootageSource> = Arc::new(RemoteSource::new(s.client.clone()));
    let key = src
        .segments("gate", seg.start, seg.end)
        .unwrap()
        .into_iter()
        .find(|k| k.key == seg.id.to_string())
        .unwrap();
    let mut stream = playback::for_entry(&src, entry(9))
        .open("gate", &key)
        .unwrap();
    while stream.next_gop().unwrap().is_some() {}
    let sig = rec.sign_manifest(&entry(9), &good).unwrap();
    assert!(hardware::signing::verify_signature(&pk, &good, &sig));
    assert!(matches!(
        rec.sign_manifest(&entry(10), &good),
        Err(SideError::Refused(_))
    ));
    // A manifest that misstates the stored segment, names one that does not exist, or
    // names none: refused.
    let wrong_hash = manifest(&"0".repeat(64), seg.bytes);
    let wrong_size = manifest(&seg.sha256, seg.bytes + 1);
    for bad in [wrong_hash, wrong_size] {
        let e = rec.sign_manifest(&entry(9), &bad).unwrap_err();
        assert!(
            matches!(&e, SideError::Refused(m) if m.contains("not as the manifest says")),
            "{e}"
        );
    }
    let ghost = serde_json::to_vec(&json!({"segments": [{"camera": "gate",
        "id": "00000000000000000000000000000000", "bytes": 1, "sha256": null}]}))
    .unwrap();
    assert!(matches!(
        rec.sign_manifest(&entry(9), &ghost),
        Err(SideError::Refused(_))
    ));
    let empty = serde_json::to_vec(&json!({"segments": []})).unwrap();
    assert!(matches!(
        rec.sign_manifest(&entry(9), &empty),
        Err(SideError::Refused(_))
    ));
    // The journal has the signature, with the manifest's digest.
    let signs: Vec<_> = served(&s.client)
        .into_iter()
        .filter(|r| r.op == "sign")
        .collect();
    assert_eq!(signs.len(), 1);
    assert_eq!(signs[0].entry, entry(9));
}

#[test]
fn holds_are_journaled_with_their_entry_and_a_user_not_allowed_gets_nothing() {
    let s = store();
    let rec = RemoteRecorder::new(s.client.clone());
    let id = rec
        .add_hold(
            &entry(4),
            &recorder::holds::NewHold {
                cameras: recorder::holds::HoldCameras::All,
                from_unix_ms: T0,
                to_unix_ms: T0 + 1_000,
                case_ref: "C-1".into(),
                placed_by: "pia".into(),
                until_unix_ms: None,
            },
            0,
        )
        .unwrap();
    rec.release_hold(&entry(5), id, "ivan", 0).unwrap();
    assert!(matches!(
        rec.release_hold(&entry(6), id, "ivan", 0),
        Err(SideError::AlreadyReleased { .. })
    ));
    let ops: Vec<_> = served(&s.client)
        .into_iter()
        .map(|r| (r.op, r.entry.seq, r.detail))
        .collect();
    assert_eq!(
        ops,
        [
            ("hold.add".to_string(), 4, Some(id.to_string())),
            ("hold.release".to_string(), 5, Some(id.to_string())),
        ]
    );

    // The same store's service answering no user but, say, uid 4242: this process
    // (another uid) gets a refusal and nothing else.
    let socket = s.config.storage.path.parent().unwrap().join("strict.sock");
    let footage = recorder::footage::Footage::new(
        s.config.storage.path.clone(),
        recorder::store::load_kek(&s.config, &recorder::store::key_provider(&s.config)).unwrap(),
    );
    let _strict = Service::new(
        footage,
        Err("no key".into()),
        vec![4242],
        Arc::new(ManualClock::new(T0)),
    )
    .unwrap()
    .listen(&socket)
    .unwrap();
    let c = Client::new(&socket);
    let e = c.call::<serde_json::Value>(&Request::Cameras).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    assert!(e.message.contains("may not use"), "{e}");
}
