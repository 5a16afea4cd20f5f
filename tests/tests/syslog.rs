//! The access log forwarded off the box: every entry (by the viewer-api) and every
//! signed checkpoint (by the recorder) reaches a real rsyslogd over TLS (RFC 5425),
//! carrying enough for the collector to check the chain and the signatures without
//! the box; an outage of the collector loses nothing; a collector whose certificate
//! does not chain to the configured CA receives nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use recorder::syslog::{Feed, Forwarder, Message, Severity, SyslogConfig};
use ringfence_tests::collector::{Collector, Received};
use ringfence_tests::procs::{Api, Site, add_user, now_ms};
use viewer_api::audit::{AuditLog, Entry, entry_hash};
use viewer_api::clock::{SystemClock, rfc3339};

const PW: &str = "syslog-test-pw-1";

/// The entry a received `access` message describes, rebuilt from it alone.
fn entry_of(r: &Received) -> Entry {
    let p = |k: &str| r.param(k).map(str::to_string);
    let n = |k: &str| r.param(k).map(|v| v.parse::<i64>().unwrap());
    Entry {
        seq: n("seq").unwrap(),
        at_ms: n("at_ms").unwrap(),
        actor: p("actor").unwrap(),
        role: p("role").unwrap(),
        action: p("action").unwrap(),
        camera: p("camera"),
        from_ms: n("from_ms"),
        to_ms: n("to_ms"),
        purpose: p("purpose"),
        case: p("case"),
        client: p("client"),
        outcome: p("outcome").unwrap(),
        prev_hash: p("prev").unwrap(),
        hash: p("hash").unwrap(),
    }
}

fn access(received: &[Received]) -> Vec<Entry> {
    received
        .iter()
        .filter(|r| r.msgid == "access")
        .map(entry_of)
        .collect()
}

fn max_seq(received: &[Received]) -> i64 {
    access(received).iter().map(|e| e.seq).max().unwrap_or(0)
}

async fn view(api: &Api, auth: &str, case: &str) {
    let started = now_ms();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api
            .get(
                auth,
                &format!(
                    "/api/v1/cameras/gate/video.mp4?from={}&to={}&case={case}",
                    rfc3339(started - 60_000).replace('+', "%2B"),
                    rfc3339(now_ms()).replace('+', "%2B"),
                ),
            )
            .await;
        if r.status == 200 && r.body.len() > 1_000 {
            return;
        }
        assert!(Instant::now() < deadline, "no footage: {}", r.status);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `/api/v1/health`'s `log_forwarding` once `ok` holds of it (at most 30 s).
async fn health_until(
    api: &Api,
    auth: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.get(auth, "/api/v1/health").await;
        assert_eq!(r.status, 200);
        let f = r.json()["log_forwarding"].clone();
        if ok(&f) {
            return f;
        }
        assert!(Instant::now() < deadline, "log_forwarding stays {f}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_and_checkpoints_reach_rsyslog_and_survive_its_outage() {
    let Some(mut collector) = Collector::start() else {
        panic!("rsyslogd is missing: scripts/install-deps.sh installs rsyslog and rsyslog-gnutls");
    };
    let site = Site::new(10, &collector.config_section());
    site.init();
    let _recorder = site.spawn("recorder", "run");
    add_user(&site.config, "pia", "police", None, PW);
    add_user(&site.config, "ivan", "it", None, PW);
    let server = site.spawn("viewer-api", "serve");
    let api = Api::new(site.port);
    api.wait_up(Duration::from_secs(20)).await;
    let pia = api.login("pia", PW).await;
    view(&api, &pia, "CASE-SYSLOG-1").await;

    let audit_path = site.dir.path().join("viewer-api/audit.sqlite");
    let audit = AuditLog::open(&audit_path, Arc::new(SystemClock), Duration::from_secs(5)).unwrap();
    let head = audit.head().unwrap().unwrap().0;
    collector.wait_until(Duration::from_secs(20), "the first entries", |r| {
        max_seq(r) >= head
    });

    let ivan = api.login("ivan", PW).await;
    let forwarding = health_until(&api, &ivan, |f| f["connected"] == true).await;
    assert!(
        forwarding["forwarded_seq"].as_i64().unwrap() >= head,
        "{forwarding}"
    );

    // The collector goes away: IT sees it in the health report and the metrics, and
    // what is logged meanwhile is delivered when it is back.
    collector.stop();
    let _ = api.login("pia", PW).await;
    view(&api, &pia, "CASE-SYSLOG-2").await;
    let during = audit.head().unwrap().unwrap().0;
    assert!(during > head);
    let forwarding = health_until(&api, &ivan, |f| f["connected"] == false).await;
    assert!(
        forwarding["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{forwarding}"
    );
    let metrics = String::from_utf8(api.get(&ivan, "/api/v1/metrics").await.body).unwrap();
    assert!(
        metrics.contains("ringfence_viewer_syslog_connected 0"),
        "{metrics}"
    );
    collector.restart();
    collector.wait_until(
        Duration::from_secs(60),
        "the entries logged during the outage",
        |r| max_seq(r) >= during,
    );
    health_until(&api, &ivan, |f| {
        f["connected"] == true && f["last_error"].is_null()
    })
    .await;

    // At shutdown the viewer-api has its head checkpointed; the recorder forwards it.
    server.stop();
    let (last_seq, last_hash) = audit.head().unwrap().unwrap();
    let received = collector.wait_until(Duration::from_secs(20), "the shutdown checkpoint", |r| {
        r.iter()
            .any(|m| m.msgid == "checkpoint" && m.param("seq") == Some(&last_seq.to_string()))
    });

    // Every entry arrived, in order, and the collector can check the chain by itself.
    let mut got = access(&received);
    got.dedup_by_key(|e| e.seq);
    let local = audit.after(0, 100_000).unwrap();
    assert_eq!(
        got, local,
        "what the collector has is the log, entry for entry"
    );
    let mut prev = "0".repeat(64);
    for e in &got {
        assert_eq!(e.prev_hash, prev, "entry {} does not follow", e.seq);
        assert_eq!(
            entry_hash(e),
            e.hash,
            "entry {} does not hash to its hash",
            e.seq
        );
        prev = e.hash.clone();
    }
    assert!(
        got.iter()
            .any(|e| e.case.as_deref() == Some("CASE-SYSLOG-2"))
    );
    for m in received.iter().filter(|m| m.msgid == "access") {
        assert_eq!(m.app_name, "ringfence-api");
        assert_eq!(m.hostname, "ringfence-test");
        assert_eq!(m.sd_id, "access@32473");
        assert_eq!(m.pri / 8, 13, "facility log audit");
    }

    // The checkpoints verify with the device's key and vouch for the log's head.
    let config = recorder::config::Config::load(&site.config).unwrap();
    let device_key = {
        use hardware::signing::SigningKeyProvider;
        recorder::store::signing_key_provider(&config)
            .load()
            .unwrap()
            .public_key()
    };
    let checkpoints: Vec<&Received> = received
        .iter()
        .filter(|m| m.msgid == "checkpoint")
        .collect();
    assert!(!checkpoints.is_empty());
    for m in &checkpoints {
        assert_eq!(m.app_name, "ringfence-recorder");
        assert_eq!(m.param("key"), Some(hex::encode(device_key).as_str()));
        let c = recorder::checkpoint::SignedCheckpoint {
            checkpoint: recorder::checkpoint::Checkpoint {
                seq: m.param("seq").unwrap().parse().unwrap(),
                hash: m.param("hash").unwrap().to_string(),
                time_unix_ms: m.param("time_unix_ms").unwrap().parse().unwrap(),
            },
            signature: m.param("signature").unwrap().to_string(),
        };
        assert!(c.verify(&device_key), "checkpoint {:?} does not verify", c);
        let entry = got.iter().find(|e| e.seq == c.checkpoint.seq).unwrap();
        assert_eq!(entry.hash, c.checkpoint.hash);
    }
    let last = checkpoints.last().unwrap();
    assert_eq!(last.param("hash"), Some(last_hash.as_str()));
}

/// Numbered test messages.
struct Numbered(i64);

impl Feed for Numbered {
    fn after(&mut self, cursor: i64, limit: usize) -> anyhow::Result<Vec<(i64, Message)>> {
        Ok((cursor + 1..=self.0)
            .take(limit)
            .map(|i| {
                (
                    i,
                    Message {
                        time_unix_ms: 1_764_806_400_000 + i,
                        severity: Severity::Notice,
                        msgid: "test",
                        sd_name: "test",
                        params: vec![("n", i.to_string())],
                        text: format!("message {i}"),
                    },
                )
            })
            .collect())
    }
}

fn numbers(received: &[Received]) -> Vec<i64> {
    received
        .iter()
        .map(|r| r.param("n").unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_restarted_forwarder_resumes_after_its_cursor_and_an_unknown_ca_gets_nothing() {
    let Some(collector) = Collector::start() else {
        panic!("rsyslogd is missing: scripts/install-deps.sh installs rsyslog and rsyslog-gnutls");
    };
    let dir = tempfile::tempdir().unwrap();
    let config = SyslogConfig {
        address: format!("127.0.0.1:{}", collector.port),
        ca_file: collector.ca_file(),
        server_name: None,
        client_cert: None,
        client_key: None,
        hostname: None,
    };
    let cursor = dir.path().join("cursor");
    let f = Forwarder::start(
        &config,
        "ringfence-test",
        cursor.clone(),
        Box::new(Numbered(3)),
    )
    .unwrap();
    collector.wait_until(Duration::from_secs(20), "3 messages", |r| r.len() >= 3);
    f.stop();
    assert_eq!(std::fs::read_to_string(&cursor).unwrap().trim(), "3");
    let f = Forwarder::start(
        &config,
        "ringfence-test",
        cursor.clone(),
        Box::new(Numbered(5)),
    )
    .unwrap();
    let r = collector.wait_until(Duration::from_secs(20), "5 messages", |r| r.len() >= 5);
    f.stop();
    assert_eq!(
        numbers(&r),
        vec![1, 2, 3, 4, 5],
        "nothing sent twice, nothing left out"
    );

    // A collector whose certificate the configured CA did not issue is not trusted.
    let other = dir.path().join("other-ca.pem");
    std::fs::write(
        &other,
        ringfence_tests::collector::issue("Someone else's CA").0,
    )
    .unwrap();
    let f = Forwarder::start(
        &SyslogConfig {
            ca_file: other,
            ..config.clone()
        },
        "ringfence-test",
        dir.path().join("cursor-2"),
        Box::new(Numbered(2)),
    )
    .unwrap();
    let status = f.status();
    let start = Instant::now();
    while status.last_error.lock().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no error reported"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let error = status.last_error.lock().unwrap().clone().unwrap();
    assert!(error.contains("certificate"), "{error}");
    f.stop();
    assert_eq!(numbers(&collector.received()), vec![1, 2, 3, 4, 5]);

    // A CA file that does not exist is refused at start, with its name.
    let e = Forwarder::start(
        &SyslogConfig {
            ca_file: dir.path().join("missing.pem"),
            ..config
        },
        "ringfence-test",
        dir.path().join("cursor-3"),
        Box::new(Numbered(1)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("missing.pem"), "{e}");
}
