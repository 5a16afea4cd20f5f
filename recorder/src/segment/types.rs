//! The small public types of the format: a segment's id, its codec and codec
//! parameters, its data key, the frames and GOPs it holds, and its trailer.

use std::fmt;
use std::str::FromStr;

use ring::aead::LessSafeKey;
use zeroize::Zeroizing;

use super::sealing::{aes_256_gcm, os_random};
use super::{KEY_LEN, SegmentError};

/// A segment's 128-bit random identity; names the file and binds its chunks and key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub [u8; 16]);

impl SegmentId {
    pub fn random() -> Self {
        SegmentId(os_random())
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({self})")
    }
}

impl FromStr for SegmentId {
    type Err = SegmentError;
    /// Exactly 32 hex digits (either case; [`Display`](fmt::Display) writes lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 16];
        if s.len() != 32 || hex::decode_to_slice(s, &mut id).is_err() {
            return Err(SegmentError::InvalidInput(
                "a segment id is 32 hexadecimal digits".into(),
            ));
        }
        Ok(SegmentId(id))
    }
}

impl serde::Serialize for SegmentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SegmentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Video codec of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = SegmentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "h264" => Ok(Codec::H264),
            "h265" => Ok(Codec::H265),
            _ => Err(SegmentError::InvalidInput(
                "unknown codec (expected \"h264\" or \"h265\")".into(),
            )),
        }
    }
}

/// A segment's AES-256 data key. Wiped from memory on drop; never printed.
#[derive(Clone)]
pub struct DataKey(pub(super) Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A fresh key from the operating system's random number generator.
    pub fn random() -> Self {
        DataKey(Zeroizing::new(os_random()))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(super) fn cipher(&self) -> LessSafeKey {
        aes_256_gcm(&self.0)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a player needs to decode the stream; stored encrypted in chunk 0.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodecParams {
    pub codec: Codec,
    /// avcC / hvcC decoder configuration record.
    pub extra_data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// e.g. `avc1.640028`, for MSE / MP4 export.
    pub rfc6381: String,
}

/// One access unit, AVC-style length-prefixed NAL units as given by the depacketizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub pts_90k: i64,
    pub key: bool,
    pub data: Vec<u8>,
}

/// A run of frames sealed as one chunk, normally key frame + followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gop {
    /// Wall time of the first frame.
    pub start_unix_ms: i64,
    pub frames: Vec<Frame>,
}

/// Summary of a segment, stored in its FINAL chunk.
///
/// `first_unix_ms` is the first GOP's start; `last_unix_ms` is the last GOP's start plus
/// the media time from its first to its last frame (not counting the last frame's
/// duration, which is unknown). With no GOP at all, both are the segment's start time
/// and both pts are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Trailer {
    pub frames: u64,
    pub key_frames: u64,
    pub first_pts_90k: i64,
    pub last_pts_90k: i64,
    pub first_unix_ms: i64,
    pub last_unix_ms: i64,
}
