//! End-to-end checks of the `test-camera` binary, with ffmpeg/ffprobe as
//! RTSP clients. Needs `cargo build --workspace` (or at least
//! `cargo build -p ringfence-tests`) and ffmpeg installed.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use ringfence_tests::{
    CameraOpts, MountSpec, ProbePacket, TestCamera, probe_packets, probe_rtsp_codec,
    run_with_timeout,
};

fn small(m: MountSpec) -> MountSpec {
    m.size(320, 240)
}

fn opts(mounts: Vec<MountSpec>) -> CameraOpts {
    CameraOpts {
        clip_secs: 2,
        ..CameraOpts::with_mounts(mounts)
    }
}

/// `ffmpeg -rtsp_transport tcp -i URL -t secs -c copy out.mkv`, returns the
/// packets recorded.
fn record(url: &str, secs: u32, out: &std::path::Path) -> Vec<ProbePacket> {
    let (o, _) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
            .args(["-rtsp_transport", "tcp", "-timeout", "10000000", "-i", url])
            .args(["-t", &secs.to_string(), "-c", "copy"])
            .arg(out),
        Duration::from_secs(u64::from(secs) + 20),
    )
    .expect("ffmpeg run");
    assert!(
        o.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    probe_packets(out.to_str().unwrap()).expect("ffprobe recorded file")
}

/// Frames keep coming at ~fps, timestamps never go back, the clip loop is
/// invisible.
fn check_continuous(packets: &[ProbePacket], secs: f64, fps: f64, what: &str) {
    let pts: Vec<f64> = packets.iter().filter_map(|p| p.pts).collect();
    assert!(
        pts.len() as f64 >= secs * fps * 0.85,
        "{what}: only {} frames in {secs} s",
        pts.len()
    );
    for w in pts.windows(2) {
        assert!(
            w[1] >= w[0],
            "{what}: timestamp went backwards {} -> {}",
            w[0],
            w[1]
        );
        assert!(
            w[1] - w[0] <= 0.25,
            "{what}: gap of {:.3} s at {}",
            w[1] - w[0],
            w[0]
        );
    }
    let span = pts.last().unwrap() - pts.first().unwrap();
    assert!(
        span >= secs - 0.5,
        "{what}: timestamps span only {span:.2} s"
    );
    // 1 key frame per second, several loops of the 2 s clip.
    let keys = packets.iter().filter(|p| p.key).count();
    assert!(keys as f64 >= secs - 1.0, "{what}: only {keys} key frames");
}

#[test]
fn h264_and_h265_mounts_probe_with_right_codec() {
    let cam = TestCamera::start(&opts(vec![
        small(MountSpec::h264("avc")),
        small(MountSpec::h265("hevc")),
    ]))
    .unwrap();
    assert_eq!(probe_rtsp_codec(&cam.url("avc")).unwrap(), "h264");
    assert_eq!(probe_rtsp_codec(&cam.url("hevc")).unwrap(), "hevc");
}

#[test]
fn concurrent_clients_get_continuous_timestamps_across_loops() {
    let cam = TestCamera::start(&opts(vec![
        small(MountSpec::h264("cam1")),
        small(MountSpec::h265("cam2")),
    ]))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secs = 5;
    let jobs: Vec<_> = [("cam1", "a"), ("cam1", "b"), ("cam2", "c")]
        .into_iter()
        .map(|(mount, file)| {
            let url = cam.url(mount);
            let out = dir.path().join(format!("{file}.mkv"));
            thread::spawn(move || (format!("{mount}/{file}"), record(&url, secs, &out)))
        })
        .collect();
    for j in jobs {
        let (what, packets) = j.join().unwrap();
        check_continuous(&packets, f64::from(secs), 25.0, &what);
    }
}

#[test]
fn authentication_is_enforced() {
    let cam = TestCamera::start(&CameraOpts {
        user: Some("alice".into()),
        password: Some("s3cret-pw".into()),
        ..opts(vec![small(MountSpec::h264("cam1"))])
    })
    .unwrap();
    let err = probe_rtsp_codec(&cam.url("cam1")).unwrap_err();
    assert!(
        format!("{err:#}").contains("401"),
        "unexpected error: {err:#}"
    );
    let wrong = cam.url("cam1").replace("rtsp://", "rtsp://alice:nope@");
    assert!(probe_rtsp_codec(&wrong).is_err());
    assert_eq!(
        probe_rtsp_codec(&cam.url_with_credentials("cam1")).unwrap(),
        "h264"
    );
}

#[test]
fn sigusr1_drops_clients_and_restart_keeps_port() {
    let mut cam = TestCamera::start(&opts(vec![small(MountSpec::h264("cam1"))])).unwrap();
    let url = cam.url("cam1");
    let port = cam.port();

    // A long-running client; SIGUSR1 must end its stream early.
    let client = {
        let url = url.clone();
        thread::spawn(move || {
            run_with_timeout(
                Command::new("ffmpeg")
                    .args(["-hide_banner", "-nostdin", "-v", "error"])
                    .args(["-rtsp_transport", "tcp", "-timeout", "5000000", "-i", &url])
                    .args(["-t", "30", "-c", "copy", "-f", "null", "-"]),
                Duration::from_secs(40),
            )
            .expect("ffmpeg")
        })
    };
    thread::sleep(Duration::from_secs(2));
    let dropped_at = Instant::now();
    cam.drop_clients().unwrap();
    let (_, ran) = client.join().unwrap();
    assert!(
        ran < Duration::from_secs(12) && dropped_at.elapsed() < Duration::from_secs(8),
        "client kept streaming after SIGUSR1 (ran {ran:?})"
    );
    // The camera still serves new clients.
    assert_eq!(probe_rtsp_codec(&url).unwrap(), "h264");

    // Stop (clean exit 0) and restart on the same port.
    let status = cam.stop().unwrap().expect("was running");
    assert!(status.success(), "camera exit status {status}");
    assert!(probe_rtsp_codec(&url).is_err(), "camera still answering");
    cam.restart().unwrap();
    assert_eq!(cam.port(), port);
    assert_eq!(cam.url("cam1"), url);
    assert_eq!(probe_rtsp_codec(&url).unwrap(), "h264");
}

#[test]
fn bad_mount_spec_fails_cleanly() {
    let o = Command::new(ringfence_tests::bin_path("test-camera"))
        .args(["--mount", "name=x,codec=vp8"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown codec"));
}
