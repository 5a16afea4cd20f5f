//! The bundle as evidence: verified with standard tools, tampering rejected, gaps and
//! codec changes stated, its footage kept while the job runs.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_camera_export_verifies_with_standard_tools_and_tampering_is_rejected() {
    let env = env();
    let pia = env.token("pia").await;
    let (from, to) = (T0 + 5_500, T0 + 15_200);
    let (id, zip) = env.export(&pia, &["gate", "hall"], from, to).await;

    // the access log has the request, the completion and the download, each one entry
    // per camera, so the subject-access report of each camera finds them
    for (action, cameras) in [
        ("export.request", vec!["gate", "hall"]),
        ("export.done", vec!["gate", "hall"]),
        ("export.download", vec!["gate", "hall"]),
    ] {
        let e = env.entries(action);
        let logged: Vec<&str> = e.iter().filter_map(|x| x.camera.as_deref()).collect();
        assert_eq!(logged, cameras, "{action}");
        for x in &e {
            assert_eq!(x.actor, "pia");
            assert_eq!(x.case.as_deref(), Some("CASE-2026-17"));
            assert_eq!((x.from_ms, x.to_ms), (Some(from), Some(to)), "{action}");
            assert!(x.outcome.starts_with("allowed"), "{}", x.outcome);
        }
    }

    // sealed at rest: no plaintext zip, no spool left
    let files: Vec<_> = std::fs::read_dir(common::state_dir(&env.config).join(export::DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let sealed = std::fs::read(&files[0]).unwrap();
    assert!(!sealed.windows(13).any(|w| w == b"manifest.json"));
    assert!(!sealed.windows(4).any(|w| w == b"PK\x03\x04"));

    let out = env.dir.path().join("unzipped");
    std::fs::create_dir(&out).unwrap();
    let mut names = unzip(&zip, &out);
    names.sort();
    assert_eq!(
        names,
        [
            "VERIFY.txt",
            "device.pub.pem",
            "gate.mp4",
            "hall.mp4",
            "manifest.json",
            "manifest.sig"
        ]
    );
    // openssl, as VERIFY.txt says
    let (ok, text) = sh(Command::new("openssl")
        .current_dir(&out)
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "device.pub.pem",
            "-rawin",
        ])
        .args(["-in", "manifest.json", "-sigfile", "manifest.sig"]));
    assert!(
        ok && text.contains("Signature Verified Successfully"),
        "{text}"
    );
    let readme = std::fs::read_to_string(out.join("VERIFY.txt")).unwrap();
    assert!(readme.contains("openssl pkeyutl -verify") && readme.contains("sha256sum"));
    // the device key is the one the API publishes
    let pem = env
        .send(
            Request::get("/api/v1/device-key")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(pem.status, StatusCode::OK);
    assert_eq!(pem.body, std::fs::read(out.join("device.pub.pem")).unwrap());
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m.export_id, id);
    assert_eq!(
        (m.case.as_str(), m.exported_by.as_str()),
        ("CASE-2026-17", "pia")
    );
    assert_eq!((m.from.clone(), m.to.clone()), (rfc3339(from), rfc3339(to)));
    assert!(m.device.id.starts_with("rf-"));
    // sha256sum, as VERIFY.txt says
    let (ok, sums) = sh(Command::new("sha256sum")
        .current_dir(&out)
        .args(["gate.mp4", "hall.mp4"]));
    assert!(ok, "{sums}");
    for f in &m.files {
        assert!(
            sums.contains(&format!("{}  {}", f.sha256, f.name)),
            "{sums}"
        );
        assert_eq!(f.bytes, std::fs::metadata(out.join(&f.name)).unwrap().len());
    }
    // every MP4 decodes, with exactly the stored frames of the range
    for (cam, codec) in [("gate", "h264"), ("hall", "hevc")] {
        let path = out.join(format!("{cam}.mp4"));
        let frames = check_with_ffmpeg(&path).unwrap_or_else(|e| panic!("{cam}: {e}"));
        let want = stored_frames(&env, cam, from, to);
        assert_eq!(frames, want, "{cam}");
        let c = m.cameras.iter().find(|c| c.id == cam).unwrap();
        assert_eq!(c.frames, want);
        assert_eq!(
            c.codec.as_deref(),
            Some(if cam == "gate" { "h264" } else { "h265" })
        );
        // starts at the key frame at or before `from`: T0+5 s (a key frame per second)
        assert_eq!(c.first_frame.as_deref(), Some(rfc3339(T0 + 5_000).as_str()));
        assert_eq!(
            viewer_api::testdata::probe_codec(&path)
                .unwrap()
                .split(',')
                .next(),
            Some(codec)
        );
        // the recording's wall-clock start is in the file's metadata
        let (_, tags) = sh(Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format_tags", "-of", "json"])
            .arg(&path));
        assert!(tags.contains("2026-01-01T00:00:05"), "{cam}: {tags}");
    }
    // source segments with their recorded hashes, as the catalog has them
    let rows = Footage::open(&env.config)
        .unwrap()
        .segments("gate", from, to)
        .unwrap();
    for r in &rows {
        let s = m
            .segments
            .iter()
            .find(|s| s.id == r.id.to_string())
            .unwrap();
        assert_eq!(s.sha256, r.sha256);
        assert!(s.sha256.as_ref().is_some_and(|h| h.len() == 64));
    }
    assert!(m.gaps.is_empty(), "{:?}", m.gaps);

    // verify-export's checker: the bundle passes ...
    let rep = verify_bytes(env.dir.path(), &zip, None);
    assert!(rep.ok, "{:#?}", rep.lines);
    let pin = String::from_utf8(pem.body.clone()).unwrap();
    assert!(verify_bytes(env.dir.path(), &zip, Some(&pin)).ok);
    // ... a flipped byte in any file does not
    for name in [
        "gate.mp4",
        "hall.mp4",
        "manifest.json",
        "manifest.sig",
        "device.pub.pem",
    ] {
        let bad = rezip(&zip, |n, mut v| {
            if n == name {
                let i = v.len() / 2;
                v[i] ^= 0x01;
            }
            v
        });
        let rep = verify_bytes(env.dir.path(), &bad, None);
        assert!(!rep.ok, "flipped byte in {name} accepted");
    }
    // a changed manifest (even re-serialised cleanly) does not
    let bad = rezip(&zip, |n, v| {
        if n == "manifest.json" {
            String::from_utf8(v)
                .unwrap()
                .replace("CASE-2026-17", "CASE-2026-18")
                .into_bytes()
        } else {
            v
        }
    });
    assert!(!verify_bytes(env.dir.path(), &bad, None).ok);
    // a manifest signed by another key does not (with or without its key swapped in)
    let other = MemorySigner::random();
    let msg = std::fs::read(out.join("manifest.json")).unwrap();
    let sig = other.sign(&msg).to_vec();
    let other_pem = hardware::signing::public_key_pem(&other.public_key());
    let resigned = rezip(&zip, |n, v| match n {
        "manifest.sig" => sig.clone(),
        _ => v,
    });
    assert!(!verify_bytes(env.dir.path(), &resigned, None).ok);
    let swapped = rezip(&zip, |n, v| match n {
        "manifest.sig" => sig.clone(),
        "device.pub.pem" => other_pem.clone().into_bytes(),
        _ => v,
    });
    let rep = verify_bytes(env.dir.path(), &swapped, None);
    assert!(!rep.ok, "{:#?}", rep.lines);
    assert!(!verify_bytes(env.dir.path(), &swapped, Some(&pin)).ok);
    // openssl agrees about the foreign signature
    std::fs::write(out.join("manifest.sig"), &sig).unwrap();
    let (ok, _) = sh(Command::new("openssl")
        .current_dir(&out)
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "device.pub.pem",
            "-rawin",
        ])
        .args(["-in", "manifest.json", "-sigfile", "manifest.sig"]));
    assert!(!ok);
    // an added file is refused too
    let mut extra = zip::ZipWriter::new_append(std::io::Cursor::new(zip.clone())).unwrap();
    extra
        .start_file("extra.mp4", zip::write::SimpleFileOptions::default())
        .unwrap();
    extra.write_all(b"x").unwrap();
    let extra = extra.finish().unwrap().into_inner();
    assert!(!verify_bytes(env.dir.path(), &extra, None).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_over_a_gap_lists_the_gap() {
    let env = env();
    let pia = env.token("pia").await;
    let (from, to) = (T0 + 15_000, T0 + 31_000);
    let (_, zip) = env.export(&pia, &["gate"], from, to).await;
    let out = env.dir.path().join("gap");
    std::fs::create_dir(&out).unwrap();
    unzip(&zip, &out);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m.gaps.len(), 1, "{:?}", m.gaps);
    assert_eq!(m.gaps[0].reason, "camera offline");
    assert_eq!(m.gaps[0].from, rfc3339(GAP.0));
    assert_eq!(m.gaps[0].to.as_deref(), Some(rfc3339(GAP.1).as_str()));
    let frames = check_with_ffmpeg(&out.join("gate.mp4")).unwrap();
    assert_eq!(frames, stored_frames(&env, "gate", from, to));
    assert_eq!(frames as i64, (GAP.0 - from + to - GAP.1) * FPS / 1000);
    // the file's timeline keeps the gap: its duration is the wall-clock span
    let (_, d) = sh(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(out.join("gate.mp4")));
    let secs: f64 = d.trim().parse().unwrap();
    assert!((secs - 16.0).abs() < 0.2, "{secs}");
    assert!(verify_bytes(env.dir.path(), &zip, None).ok);
}

/// A camera whose codec changes inside the range (a replaced camera, new firmware):
/// the export has one file per codec, every stored frame of the range in one of them,
/// each playable, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_change_inside_the_range_starts_a_second_file() {
    let env = env_recording(|config, cat| {
        record(config, cat, "gate", Codec::H264, T0, T0 + 10_000);
        record(config, cat, "gate", Codec::H265, T0 + 10_000, T0 + 20_000);
    });
    let pia = env.token("pia").await;
    let (from, to) = (T0 + 4_500, T0 + 16_000);
    let (_, zip) = env.export(&pia, &["gate"], from, to).await;
    let out = env.dir.path().join("parts");
    std::fs::create_dir(&out).unwrap();
    unzip(&zip, &out);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m.cameras[0].files, ["gate.mp4", "gate-part2.mp4"]);
    let first = check_with_ffmpeg(&out.join("gate.mp4")).unwrap();
    let second = check_with_ffmpeg(&out.join("gate-part2.mp4")).unwrap();
    assert_eq!(first as i64, (T0 + 10_000 - (T0 + 4_000)) * FPS / 1000);
    assert_eq!(first + second, stored_frames(&env, "gate", from, to));
    assert_eq!(m.cameras[0].frames, first + second);
    assert!(verify_bytes(env.dir.path(), &zip, None).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footage_due_for_deletion_survives_while_the_job_runs() {
    use recorder::retention::{Policy, Retention};
    let env = env();
    let pia = env.token("pia").await;
    // Retention of 30 min at NOW (T0 + 1 h): every segment is due for deletion.
    let wall = Arc::new(recorder::clock::ManualClock::new(NOW));
    let mono = Arc::new(recorder::clock::ManualClock::new(0));
    let policy = Policy {
        retention_ms: 30 * 60 * 1000,
        camera_retention_ms: Default::default(),
        max_bytes: u64::MAX / 4,
        camera_max_bytes: Default::default(),
        min_free_bytes: 0,
    };
    let ret = Arc::new(Mutex::new(
        Retention::new(&env.store, policy, wall.clone(), mono.clone(), None).unwrap(),
    ));
    let (from, to) = (T0 + 2_000, T0 + 9_000);
    let r = env
        .post(
            &pia,
            json!({"cameras": ["gate"], "from": rfc3339(from), "to": rfc3339(to),
                   "case": "CASE-9", "reason": "assault"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let want = stored_frames(&env, "gate", from, to);
    // A retention pass runs after each segment the job reads.
    let deleted = Arc::new(Mutex::new(0u64));
    {
        let (ret, deleted, wall, mono) = (ret.clone(), deleted.clone(), wall.clone(), mono.clone());
        *env.exports.after_segment.lock().unwrap() = Some(Box::new(move |_| {
            wall.advance_ms(1_000);
            mono.advance_ms(1_000);
            let rep = ret.lock().unwrap().pass().unwrap();
            *deleted.lock().unwrap() += rep.deleted();
        }));
    }
    assert_eq!(env.exports.run_pending(), 1);
    let s = env.get(&pia, &format!("/api/v1/exports/{id}")).await.json();
    assert_eq!(s["state"], "done", "{s}");
    assert!(*deleted.lock().unwrap() > 10, "retention deleted nothing");
    let d = env
        .get(&pia, &format!("/api/v1/exports/{id}/download"))
        .await;
    let out = env.dir.path().join("held");
    std::fs::create_dir(&out).unwrap();
    unzip(&d.body, &out);
    assert_eq!(check_with_ffmpeg(&out.join("gate.mp4")).unwrap(), want);
    // the hold went with the job: the next pass deletes the footage
    let cat = Catalog::open(&env.store).unwrap();
    let holds = recorder::holds::list(&cat).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].case_ref, "CASE-9");
    assert_eq!(holds[0].placed_by, "pia");
    assert!(holds[0].released_unix_ms.is_some());
    *env.exports.after_segment.lock().unwrap() = None;
    wall.advance_ms(1_000);
    mono.advance_ms(1_000);
    ret.lock().unwrap().pass().unwrap();
    assert!(cat.segments(Some("gate")).unwrap().is_empty());
}
