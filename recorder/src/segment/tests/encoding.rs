//! Encoding properties of the index and frame metadata.

use super::*;

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        any::<i64>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(pts_90k, key, data)| Frame { pts_90k, key, data })
}

proptest! {
    #[test]
    fn varint_round_trips(v in any::<u64>()) {
        let mut b = Vec::new();
        codec::put_varint(&mut b, v);
        prop_assert!(b.len() <= 10);
        let mut c = Cur::new(&b);
        prop_assert_eq!(c.varint().unwrap(), v);
        prop_assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn zigzag_round_trips(v in any::<i64>()) {
        prop_assert_eq!(codec::unzigzag(codec::zigzag(v)), v);
    }

    #[test]
    fn index_round_trips(
        start in any::<i64>(),
        metas in proptest::collection::vec((any::<i64>(), any::<bool>(), any::<u64>()), 0..200),
    ) {
        let metas: Vec<FrameMeta> = metas
            .into_iter()
            .map(|(pts_90k, key, size)| FrameMeta { pts_90k, key, size })
            .collect();
        let mut b = Vec::new();
        codec::encode_index(&mut b, start, metas.len(), metas.iter().copied());
        let mut c = Cur::new(&b);
        let (s2, m2) = codec::decode_index(&mut c).unwrap();
        prop_assert_eq!(s2, start);
        prop_assert_eq!(m2, metas);
        prop_assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn gop_round_trips(start in any::<i64>(), frames in proptest::collection::vec(arb_frame(), 0..50)) {
        let gop = Gop { start_unix_ms: start, frames };
        let mut b = Vec::new();
        codec::encode_gop(&mut b, &gop);
        prop_assert_eq!(codec::decode_gop(&b).unwrap(), gop);
    }

    #[test]
    fn params_round_trip(
        h265 in any::<bool>(),
        extra_data in proptest::collection::vec(any::<u8>(), 0..300),
        width in any::<u32>(),
        height in any::<u32>(),
        rfc6381 in ".{0,40}",
        start in any::<i64>(),
    ) {
        let p = CodecParams { codec: if h265 { Codec::H265 } else { Codec::H264 }, extra_data, width, height, rfc6381 };
        let mut b = Vec::new();
        codec::encode_params(&mut b, &p, start);
        prop_assert_eq!(codec::decode_params(&b).unwrap(), (p, start));
    }

    #[test]
    fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = codec::decode_gop(&b);
        let _ = codec::decode_params(&b);
        let _ = codec::decode_trailer(&b);
        let _ = codec::decode_final(&b);
        let _ = codec::decode_index(&mut Cur::new(&b));
        let _ = Cur::new(&b).varint();
    }

    #[test]
    fn mutated_gop_plaintext_never_panics(
        start in any::<i64>(),
        frames in proptest::collection::vec(arb_frame(), 1..10),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = Vec::new();
        codec::encode_gop(&mut b, &Gop { start_unix_ms: start, frames });
        let i = pos.index(b.len());
        b[i] = byte;
        let _ = codec::decode_gop(&b);
        let _ = codec::decode_gop(&b[..cut.index(b.len())]);
    }
}

#[test]
fn varint_rejects_bad_encodings() {
    let cases: &[&[u8]] = &[
        &[],
        &[0x80],
        &[0x80, 0x00],                                                 // non-canonical
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // > 64 bits
        &[0xff; 11],
    ];
    for c in cases {
        assert!(Cur::new(c).varint().is_err(), "{c:?}");
    }
    let mut c = Cur::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert_eq!(c.varint().unwrap(), u64::MAX);
}
