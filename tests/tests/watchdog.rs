//! Both services speak systemd's notification protocol (issue 11): READY once serving,
//! WATCHDOG pings at half the period systemd sets (while every part shows life: see
//! `hardware::watchdog`), STOPPING on a clean stop. A fake `NOTIFY_SOCKET` stands in
//! for systemd.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringfence_tests::bin_path;
use ringfence_tests::procs::{Proc, Site};

/// Notices received on `sock` until `until` holds of them (at most 30 s).
fn receive(sock: &UnixDatagram, what: &str, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    while !until(&got) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {what}; got {got:?}"
        );
        let mut buf = [0u8; 512];
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    got
}

fn spawn(site: &Site, bin: &str, sub: &str, sock: &std::path::Path) -> Proc {
    let log = std::fs::File::create(site.dir.path().join(format!("{bin}-{sub}.log"))).unwrap();
    Proc(
        Command::new(bin_path(bin))
            .args([sub, "--config"])
            .arg(&site.config)
            .env("NOTIFY_SOCKET", sock)
            .env("WATCHDOG_USEC", "1000000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn the_recorder_and_the_viewer_api_report_ready_ping_the_watchdog_and_say_stopping() {
    let site = Site::new(10, "");
    site.init();
    let rec_sock = site.dir.path().join("notify-recorder.sock");
    let rec = UnixDatagram::bind(&rec_sock).unwrap();
    let recorder = spawn(&site, "recorder", "run", &rec_sock);
    let got = receive(&rec, "READY and two pings from the recorder", |g| {
        g.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2
    });
    assert_eq!(got[0], "READY=1", "{got:?}");
    assert!(
        got.contains(&"STATUS=recording 2 cameras".to_string()),
        "{got:?}"
    );

    let api_sock = site.dir.path().join("notify-api.sock");
    let api = UnixDatagram::bind(&api_sock).unwrap();
    let server = spawn(&site, "viewer-api", "serve", &api_sock);
    let got = receive(&api, "READY and a ping from the viewer-api", |g| {
        g.iter().any(|l| l == "WATCHDOG=1")
    });
    assert_eq!(got[0], "READY=1", "{got:?}");
    // READY comes once it listens.
    std::net::TcpStream::connect(("127.0.0.1", site.port)).expect("listening when ready");

    server.stop();
    receive(&api, "STOPPING from the viewer-api", |g| {
        g.iter().any(|l| l == "STOPPING=1")
    });
    recorder.stop();
    receive(&rec, "STOPPING from the recorder", |g| {
        g.iter().any(|l| l == "STOPPING=1")
    });
}
