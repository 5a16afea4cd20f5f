//! Keys: wrapping, the standard AES-256-GCM the format promises, nothing secret in
//! debug output or errors.

use super::*;

#[test]
fn key_wrapping() {
    let kek = [9u8; 32];
    let id = SegmentId::random();
    let key = DataKey::random();
    let w = wrap_key(&kek, id, &key);
    assert_eq!(w.len(), 60);
    assert_ne!(w, wrap_key(&kek, id, &key), "fresh nonce each time");
    assert_eq!(unwrap_key(&kek, id, &w).unwrap().as_bytes(), key.as_bytes());
    assert!(matches!(
        unwrap_key(&[8; 32], id, &w),
        Err(SegmentError::KeyUnwrap)
    ));
    assert!(matches!(
        unwrap_key(&kek, SegmentId::random(), &w),
        Err(SegmentError::KeyUnwrap)
    ));
    for i in 0..w.len() {
        let mut b = w.clone();
        b[i] ^= 4;
        assert!(matches!(
            unwrap_key(&kek, id, &b),
            Err(SegmentError::KeyUnwrap)
        ));
    }
    assert!(matches!(
        unwrap_key(&kek, id, &w[..59]),
        Err(SegmentError::KeyUnwrap)
    ));
    assert!(!w.windows(8).any(|x| x == &key.as_bytes()[..8]));
}

/// The format is plain AES-256-GCM as documented in the module: an independent
/// implementation (RustCrypto's aes-gcm and sha2, which wrote segments before ring did)
/// opens every chunk the writer seals and the keys it wraps, and the writer's code opens
/// keys aes-gcm wraps. So stores written before and after the switch read the same.
#[test]
fn chunks_and_wrapped_keys_are_standard_aes_256_gcm() {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use sha2::Digest;
    let s = write_seg(Codec::H264, gops(3, 5, 300));
    let b = std::fs::read(&s.path).unwrap();
    let header_len = usize::from(u16::from_be_bytes([b[10], b[11]]));
    let header_hash: [u8; 32] = sha2::Sha256::digest(&b[..header_len]).into();
    let prefix = &b[28..32];
    let cipher = aes_gcm::Aes256Gcm::new(s.key.as_bytes().into());
    let mut prev_tag = [0u8; TAG_LEN];
    let mut opened = 0;
    for (start, end) in chunk_spans(&b) {
        let c = &b[start..end];
        let index = u64::from_be_bytes(c[4..12].try_into().unwrap());
        let flags = c[12];
        let len = u32::from_be_bytes(c[13..17].try_into().unwrap()) as usize;
        let mut aad = header_hash.to_vec();
        aad.extend_from_slice(&c[4..17]);
        aad.extend_from_slice(&prev_tag);
        if flags & FLAG_FINAL != 0 {
            aad.extend_from_slice(&c[CHUNK_HDR_LEN + len + TAG_LEN..]);
        }
        let mut nonce = prefix.to_vec();
        nonce.extend_from_slice(&index.to_be_bytes());
        let mut plain = c[CHUNK_HDR_LEN..CHUNK_HDR_LEN + len].to_vec();
        let tag = &c[CHUNK_HDR_LEN + len..CHUNK_HDR_LEN + len + TAG_LEN];
        cipher
            .decrypt_in_place_detached(
                aes_gcm::Nonce::from_slice(&nonce),
                &aad,
                &mut plain,
                aes_gcm::Tag::from_slice(tag),
            )
            .unwrap_or_else(|_| panic!("chunk {index} does not open with aes-gcm"));
        if index == 1 {
            assert_eq!(codec::decode_gop(&plain).unwrap(), s.gops[0]);
        }
        prev_tag = tag.try_into().unwrap();
        opened += 1;
    }
    assert_eq!(opened, 5, "parameters, three GOPs, FINAL");

    let kek = [5u8; 32];
    let kek_cipher = aes_gcm::Aes256Gcm::new((&kek).into());
    let w = wrap_key(&kek, s.id, &s.key);
    let mut k = w[12..44].to_vec();
    kek_cipher
        .decrypt_in_place_detached(
            aes_gcm::Nonce::from_slice(&w[..12]),
            &s.id.0,
            &mut k,
            aes_gcm::Tag::from_slice(&w[44..]),
        )
        .unwrap();
    assert_eq!(&k[..], s.key.as_bytes());
    let nonce = [3u8; 12];
    let mut ct = s.key.as_bytes().to_vec();
    let tag = kek_cipher
        .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&nonce), &s.id.0, &mut ct)
        .unwrap();
    let mut theirs = nonce.to_vec();
    theirs.extend_from_slice(&ct);
    theirs.extend_from_slice(&tag);
    assert_eq!(
        unwrap_key(&kek, s.id, &theirs).unwrap().as_bytes(),
        s.key.as_bytes()
    );
}

#[test]
fn no_key_material_in_debug_or_errors() {
    let key = DataKey::from_bytes([0xab; 32]);
    let dbg = format!("{key:?}");
    assert!(
        !dbg.to_lowercase().contains("abab") && !dbg.contains("171"),
        "{dbg}"
    );
    let s = small_seg();
    let w_dbg = format!(
        "{:?}",
        SegmentReader::open(&s.path, s.id, CAM, &s.key).unwrap()
    );
    let hex_key = hex::encode(s.key.as_bytes());
    assert!(!w_dbg.contains(&hex_key[..16]));
    let e = SegmentReader::open(&s.path, s.id, CAM, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "chunk 0 failed authentication: wrong key, or the file was altered or corrupted"
    );
}

#[test]
fn ids_and_codecs_parse() {
    let id = SegmentId::random();
    let s = id.to_string();
    assert_eq!(s.len(), 32);
    assert_eq!(s, s.to_lowercase());
    assert_eq!(s.parse::<SegmentId>().unwrap(), id);
    assert_eq!(s.to_uppercase().parse::<SegmentId>().unwrap(), id);
    assert!("xyz".parse::<SegmentId>().is_err());
    assert!(s[..31].parse::<SegmentId>().is_err());
    assert_eq!(format!("{id:?}"), format!("SegmentId({s})"));
    assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
    assert_eq!(
        serde_json::from_str::<SegmentId>(&format!("\"{s}\"")).unwrap(),
        id
    );
    for c in [Codec::H264, Codec::H265] {
        assert_eq!(c.as_str().parse::<Codec>().unwrap(), c);
    }
    assert!("vp9".parse::<Codec>().is_err());
    assert_ne!(DataKey::random().as_bytes(), DataKey::random().as_bytes());
}
