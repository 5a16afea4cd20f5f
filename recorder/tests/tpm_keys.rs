//! `[keys] provider = "tpm"` (issue 11): the recorder's own commands create the KEK and
//! the signing key sealed by the TPM (a software TPM here, swtpm), find them again, and
//! refuse clearly when the boot chain changed. The sealing itself is tested in
//! `hardware::tpm`; this is the recorder using it.

use std::path::Path;
use std::process::Command;

use hardware::tpm::swtpm::Swtpm;
use tss_esapi::handles::PcrHandle;

fn config(dir: &Path, keys: &str) -> std::path::PathBuf {
    let path = dir.join("rf.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\npath = \"{}\"\n[keys]\nkek_file = \"{}\"\n{keys}\
             [[cameras]]\nid = \"gate\"\nurl = \"rtsp://127.0.0.1:1/a\"\n",
            dir.join("store").display(),
            dir.join("keys/kek").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    path
}

fn recorder(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recorder"))
        .args(args)
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_recorder_keeps_its_keys_sealed_by_the_tpm() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "provider = \"tpm\"\ntpm_tcti = \"{}\"\ntpm_pcrs = \"sha256:7\"\n",
            tpm.tcti()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let (ok, text) = recorder(&["init", "--config", cfg]);
    assert!(ok, "{text}");
    assert!(text.contains("TPM-sealed key file"), "{text}");
    // The files hold sealed blobs, not keys a stolen disk would give away.
    let kek = std::fs::read_to_string(dir.path().join("keys/kek")).unwrap();
    assert!(kek.starts_with("ringfence-tpm-kek-v1:sha256:7:"), "{kek}");
    let signing = std::fs::read_to_string(dir.path().join("keys/signing.key")).unwrap();
    assert!(
        signing.starts_with("ringfence-tpm-ed25519-v1:"),
        "{signing}"
    );

    // Found again: init again creates nothing, check opens the store with the key.
    let (ok, text) = recorder(&["init", "--config", cfg]);
    assert!(ok, "{text}");
    assert!(!text.contains("created key-encryption key"), "{text}");
    let (ok, text) = recorder(&["check", "--config", cfg]);
    assert!(ok, "{text}");

    // The same files read as plain key files are refused, not used.
    let plain = config(dir.path(), "");
    let (ok, text) = recorder(&["check", "--config", plain.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("not a Ringfence key file"), "{text}");

    // Another boot chain (PCR 7 extended, as a changed secure-boot state would): the
    // TPM keeps the key, and the recorder says why; the sealed files are untouched.
    let cfg = config(
        dir.path(),
        &format!("provider = \"tpm\"\ntpm_tcti = \"{}\"\n", tpm.tcti()),
    );
    tpm.extend(PcrHandle::Pcr7);
    let (ok, text) = recorder(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("boot chain changed"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keys/kek")).unwrap(),
        kek
    );
}

#[test]
fn tpm_settings_are_checked_when_the_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    for (keys, says) in [
        (
            "provider = \"tpm\"\ntpm_pcrs = \"sha1:7\"\n",
            "keys.tpm_pcrs",
        ),
        (
            "tpm_tcti = \"device:/dev/tpmrm0\"\n",
            "need keys.provider = \"tpm\"",
        ),
        ("provider = \"hsm\"\n", "unknown variant"),
    ] {
        let cfg = config(dir.path(), keys);
        let (ok, text) = recorder(&["check", "--config", cfg.to_str().unwrap()]);
        assert!(!ok, "{keys}");
        assert!(text.contains(says), "{keys}: {text}");
    }
    // No TPM where the TCTI points: a clear error, and no key file is written.
    let cfg = config(
        dir.path(),
        "provider = \"tpm\"\ntpm_tcti = \"swtpm:host=127.0.0.1,port=1\"\n",
    );
    let (ok, text) = recorder(&["init", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.to_lowercase().contains("tpm"), "{text}");
    assert!(!dir.path().join("keys/kek").exists());
}
