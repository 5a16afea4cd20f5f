//! The TPM providers against swtpm (a software TPM 2.0, one per test on free loopback
//! ports, its state in a temporary directory). swtpm missing is a failure, not a skip:
//! `make test` installs it (scripts/install-deps.sh).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use tss_esapi::handles::PcrHandle;

use super::*;
use crate::signing::verify_signature;

use super::swtpm::{Swtpm, free_port_pair};

fn kek_provider(tpm: &Swtpm, path: &Path) -> TpmKeyProvider {
    TpmKeyProvider::new(&tpm.tcti(), path, PcrSelection::default()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn kek_seals_unseals_and_never_overwrites() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/kek.sealed");
    let p = kek_provider(&tpm, &path);
    assert!(matches!(p.load(), Err(KeyError::Missing { .. })));
    assert!(p.create_if_absent().unwrap());
    assert_eq!(mode(&path), 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("ringfence-tpm-kek-v1:sha256:7:"), "{text}");
    assert_eq!(text.lines().count(), 1);
    let kek = p.load().unwrap();
    // The key is not in the file, in either byte order of hex.
    assert!(!text.contains(&hex::encode(kek.as_bytes())));
    assert_ne!(kek.as_bytes(), &[0u8; 32]);
    // No temporary file left beside it.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    // Never overwrites: the same file, the same key.
    assert!(!p.create_if_absent().unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    assert_eq!(p.load().unwrap().as_bytes(), kek.as_bytes());

    // Another provider (another process, a restart) over the same file and TPM.
    let again = kek_provider(&tpm, &path);
    assert_eq!(again.load().unwrap().as_bytes(), kek.as_bytes());
    assert!(!again.create_if_absent().unwrap());

    // A second key is another key.
    let other = kek_provider(&tpm, &dir.path().join("kek2"));
    assert!(other.create_if_absent().unwrap());
    assert_ne!(other.load().unwrap().as_bytes(), kek.as_bytes());

    let d = p.describe();
    assert!(d.contains("kek.sealed") && d.contains("sha256:7"), "{d}");
    assert!(!format!("{p:?}").contains(&hex::encode(kek.as_bytes())));
}

#[test]
fn pcr_change_refuses_to_unseal() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let kek = kek_provider(&tpm, &dir.path().join("kek"));
    let signing = TpmSigningKeyProvider::new(
        &tpm.tcti(),
        dir.path().join("signing"),
        PcrSelection::default(),
    )
    .unwrap();
    // A key sealed to PCR 16 (the debug PCR) only.
    let pcr16 = TpmKeyProvider::new(
        &tpm.tcti(),
        dir.path().join("kek16"),
        PcrSelection::sha256(&[16]).unwrap(),
    )
    .unwrap();
    assert!(kek.create_if_absent().unwrap());
    assert!(signing.create_if_absent().unwrap());
    assert!(pcr16.create_if_absent().unwrap());
    let k16 = pcr16.load().unwrap();
    kek.load().unwrap();
    signing.load().unwrap();

    // The secure boot state changes (PCR 7 extended): keys sealed to it stay sealed.
    tpm.extend(PcrHandle::Pcr7);
    let err = kek.load().unwrap_err();
    assert!(matches!(err, KeyError::PcrMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("sealed to other PCR values (sha256:7): the boot chain changed"),
        "{msg}"
    );
    let err = signing.load().err().expect("refused");
    assert!(matches!(err, KeyError::PcrMismatch { .. }), "{err:?}");
    // Refusing never rewrites the file.
    assert!(!kek.create_if_absent().unwrap());
    assert!(matches!(kek.load(), Err(KeyError::PcrMismatch { .. })));

    // The list is honoured: the PCR 16 key does not depend on PCR 7, but on PCR 16.
    assert_eq!(pcr16.load().unwrap().as_bytes(), k16.as_bytes());
    tpm.extend(PcrHandle::Pcr16);
    let err = pcr16.load().unwrap_err();
    assert!(err.to_string().contains("(sha256:16)"), "{err}");
}

#[test]
fn signing_key_seals_and_signs() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.sealed");
    let p = TpmSigningKeyProvider::new(&tpm.tcti(), &path, PcrSelection::default()).unwrap();
    assert!(matches!(p.load(), Err(KeyError::Missing { .. })));
    assert!(p.create_if_absent().unwrap());
    assert_eq!(mode(&path), 0o600);
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .starts_with("ringfence-tpm-ed25519-v1:sha256:7:")
    );
    let signer = p.load().unwrap();
    let pk = signer.public_key();
    let sig = signer.sign(b"manifest");
    assert!(verify_signature(&pk, b"manifest", &sig));
    assert!(!p.create_if_absent().unwrap());
    let again = TpmSigningKeyProvider::new(&tpm.tcti(), &path, PcrSelection::default()).unwrap();
    assert_eq!(again.load().unwrap().public_key(), pk);
    // A KEK provider does not take a signing key's file for its own.
    let as_kek = kek_provider(&tpm, &path);
    assert!(matches!(
        as_kek.load(),
        Err(KeyError::SealedMalformed { .. })
    ));
}

#[test]
fn another_tpms_file_is_refused() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    assert!(kek_provider(&a, &path).create_if_absent().unwrap());
    let err = kek_provider(&b, &path).load().unwrap_err();
    assert!(matches!(err, KeyError::OtherTpm { .. }), "{err:?}");
    assert!(
        err.to_string().contains("was not sealed by this TPM"),
        "{err}"
    );
    // Still the key on its own TPM.
    kek_provider(&a, &path).load().unwrap();
    // And the other TPM never replaces it.
    let before = fs::read(&path).unwrap();
    assert!(!kek_provider(&b, &path).create_if_absent().unwrap());
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn malformed_or_altered_files_are_refused() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good");
    let p = kek_provider(&tpm, &good_path);
    assert!(p.create_if_absent().unwrap());
    let good = fs::read_to_string(&good_path).unwrap();
    let line = good.trim_end();
    let fields: Vec<&str> = line.split(':').collect();
    assert_eq!(fields.len(), 5, "{line}");
    let (public, private) = (fields[3], fields[4]);

    let path = dir.path().join("kek");
    let write = |text: &str| {
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    };
    let check = |text: &str| {
        write(text);
        let err = kek_provider(&tpm, &path).load().unwrap_err();
        assert!(
            matches!(err, KeyError::SealedMalformed { .. }),
            "{text:?}: {err:?}"
        );
        assert!(err.to_string().contains("ringfence-tpm-kek-v1:"), "{err}");
    };
    check("");
    check("not a key\n");
    // The file provider's form is not a sealed key.
    check(&format!("ringfence-kek-v1:{}\n", "ab".repeat(32)));
    check(&format!(
        "ringfence-tpm-kek-v2:sha256:7:{public}:{private}\n"
    ));
    check(&format!("ringfence-tpm-kek-v1:sha1:7:{public}:{private}\n"));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:24:{public}:{private}\n"
    ));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:7,7:{public}:{private}\n"
    ));
    check(&format!("ringfence-tpm-kek-v1:sha256:7:{public}\n"));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:7:{public}:{private}:00\n"
    ));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:7:{public}:{private}\n\n"
    ));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:7:{public}zz:{private}\n"
    ));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:7:{public}00:{private}\n"
    ));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:7:{}:{private}\n",
        &public[..20]
    ));
    check(&format!("ringfence-tpm-kek-v1:sha256:7::{private}\n"));
    check(&format!("ringfence-tpm-kek-v1:sha256:7:{public}:\n"));
    check(&format!(
        "ringfence-tpm-kek-v1:sha256:7:{public}:{private}{}\n",
        "0".repeat(4096)
    ));

    // Well-formed but altered: the TPM's integrity check refuses it, no key comes out.
    let mut altered = private.as_bytes().to_vec();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
    write(&format!(
        "ringfence-tpm-kek-v1:sha256:7:{public}:{}\n",
        String::from_utf8(altered).unwrap()
    ));
    let err = kek_provider(&tpm, &path).load().unwrap_err();
    assert!(matches!(err, KeyError::OtherTpm { .. }), "{err:?}");

    // Readable by others: refused before reading.
    write(&good);
    kek_provider(&tpm, &path).load().unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        kek_provider(&tpm, &path).load(),
        Err(KeyError::TooOpen { mode: 0o640, .. })
    ));
    // And none of these refusals touched the file.
    assert_eq!(fs::read_to_string(&path).unwrap(), good);
}

#[test]
fn no_tpm_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    let port = free_port_pair();
    let p = TpmKeyProvider::new(
        &format!("swtpm:host=127.0.0.1,port={port}"),
        &path,
        PcrSelection::default(),
    )
    .unwrap();
    let err = p.create_if_absent().unwrap_err();
    assert!(matches!(err, KeyError::Tpm { .. }), "{err:?}");
    assert!(err.to_string().contains("connecting to the TPM"), "{err}");
    assert!(!path.exists());
    let err = TpmKeyProvider::new("carrier-pigeon", &path, PcrSelection::default()).unwrap_err();
    assert!(err.to_string().contains("reading the TCTI"), "{err}");
}

#[test]
fn pcr_lists_parse_strictly() {
    assert_eq!(PcrSelection::default().to_string(), "sha256:7");
    let s = PcrSelection::from_str("sha256:0,2,4,7").unwrap();
    assert_eq!(s.pcrs(), &[0, 2, 4, 7]);
    assert_eq!(s.to_string(), "sha256:0,2,4,7");
    assert_eq!(PcrSelection::sha256(&[7, 0]).unwrap().pcrs(), &[0, 7]);
    for bad in [
        "",
        "7",
        "sha256:",
        "sha256:24",
        "sha256:7,7",
        "sha256:7,0",
        "sha256:07",
        "sha256: 7",
        "sha256:-1",
        "sha1:7",
        "sha256:7,",
        "SHA256:7",
    ] {
        assert!(PcrSelection::from_str(bad).is_err(), "{bad:?}");
    }
    assert!(PcrSelection::sha256(&[]).is_err());
    assert!(PcrSelection::sha256(&[24]).is_err());
    assert!(PcrSelection::sha256(&[3, 3]).is_err());
}
