//! The recorder and the viewer-api as two Unix users, as on the appliance: the
//! recorder (here root) owns the store and the keys; the viewer-api runs as `nobody`
//! (uid 65534) and still serves footage, through the recorder's service only. The
//! claims of the README's "What a compromise can do", tested as that user: it cannot
//! read a key, write the store or the catalog, or touch the recorder's journals; a
//! third user is refused by the service.
//!
//! Needs root (to run processes as other users); CI runs as root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringfence_tests::bin_path;
use ringfence_tests::procs::{Api, Proc, Site, now_ms, run_command};
use viewer_api::clock::rfc3339;

const VIEWER_UID: u32 = 65534;
const OTHER_UID: u32 = 65533;
const PW: &str = "two-users-pw-1";

/// `program args…` as `uid` (group `uid`, no supplementary groups).
fn as_user(uid: u32, program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        &uid.to_string(),
        "--regid",
        &uid.to_string(),
        "--clear-groups",
        "--",
    ])
    .arg(program)
    .args(args);
    c
}

/// Runs `sh -c script` as `uid`: whether it succeeded.
fn sh_as(uid: u32, script: &str) -> bool {
    as_user(uid, Path::new("/bin/sh"), &["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_api_as_another_user_serves_footage_but_cannot_touch_keys_or_store() {
    if !rustix_is_root() {
        eprintln!("SKIPPED: running processes as two users needs root");
        return;
    }
    let site = Site::new(10, &format!("\n[service]\nallow_uids = [{VIEWER_UID}]"));
    let dir = site.dir.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&site.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    site.init();
    let state = dir.join("viewer-api");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(VIEWER_UID), Some(VIEWER_UID)).unwrap();
    let _recorder = site.spawn("recorder", "run");

    let viewer = bin_path("viewer-api");
    let cfg = site.config.to_str().unwrap();
    let (code, _, err) = run_command(
        as_user(
            VIEWER_UID,
            &viewer,
            &[
                "user", "add", "--config", cfg, "--name", "pia", "--role", "police",
            ],
        ),
        Some(&format!("{PW}\n")),
    );
    assert_eq!(code, 0, "user add as nobody: {err}");
    let log = std::fs::File::create(dir.join("viewer-api-nobody.log")).unwrap();
    let server = Proc(
        as_user(VIEWER_UID, &viewer, &["serve", "--config", cfg])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let api = Api::new(site.port);
    api.wait_up(Duration::from_secs(20)).await;
    let pia = api.login("pia", PW).await;

    // Footage, once some is recorded, plays: through the service, as nobody.
    let started = now_ms();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let r = api
            .get(
                &pia,
                &format!(
                    "/api/v1/cameras/gate/video.mp4?from={}&to={}&case=CASE-2U",
                    rfc3339(started - 60_000).replace('+', "%2B"),
                    rfc3339(now_ms()).replace('+', "%2B"),
                ),
            )
            .await;
        if r.status == 200 && r.body.len() > 10_000 {
            break r.body;
        }
        assert!(
            Instant::now() < deadline,
            "no footage served to the viewer-api as nobody: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(&body[4..8], b"ftyp");

    // What the viewer-api's user cannot do.
    let store = dir.join("store");
    let kek = dir.join("kek");
    let signing = dir.join("signing.key");
    assert!(kek.exists() && signing.exists());
    assert!(sh_as(
        VIEWER_UID,
        &format!("test -r {}", state.join("users.sqlite").display())
    ));
    for f in [&kek, &signing] {
        assert!(
            !sh_as(VIEWER_UID, &format!("cat {} >/dev/null", f.display())),
            "{} readable",
            f.display()
        );
    }
    for f in [
        "catalog.sqlite",
        "served.sqlite",
        "checkpoints.jsonl",
        "new-file",
    ] {
        let p = store.join(f);
        assert!(
            !sh_as(VIEWER_UID, &format!(": >> {}", p.display())),
            "{} writable by the viewer-api's user",
            p.display()
        );
    }
    let segment = find_file(&store.join("segments")).expect("a segment file");
    assert!(!sh_as(VIEWER_UID, &format!("rm -f {}", segment.display())));
    assert!(segment.exists(), "the viewer-api's user deleted a segment");

    // A third user is refused by the service.
    let (code, out, err) = run_command(
        as_user(OTHER_UID, &viewer, &["audit", "verify", "--config", cfg]),
        None,
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("may not use the recorder service"), "{err}");

    // The viewer-api's own check of its log, anchored by the recorder, as nobody.
    server.stop();
    let (code, out, err) = run_command(
        as_user(VIEWER_UID, &viewer, &["audit", "verify", "--config", cfg]),
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checkpoint"), "{out}");
}

fn find_file(dir: &Path) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_file() {
            return Some(p);
        }
        if let Some(f) = find_file(&p) {
            return Some(f);
        }
    }
    None
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
