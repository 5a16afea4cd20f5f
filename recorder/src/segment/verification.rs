//! Verify and recover: read a whole file and authenticate every chunk, and close a cut
//! one at its last authentic chunk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

#[cfg(doc)]
use super::SegmentWriter;
use super::codec::{self, DecodeError};
use super::error::malformed;
use super::index::{TrailerAcc, check_final};
use super::sealing::{Sealer, sha256_finish};
use super::stream::{ChunkStream, open_read};
use super::writer::{fsync_dir, parent_dir};
use super::{
    CHUNK_HDR_LEN, CodecParams, DataKey, FLAG_FINAL, RECOVERY_INDEX, SegmentError, SegmentId,
    TAG_LEN, Trailer,
};

/// Read buffer of [`scan`], and block size of [`tail_is_zero`], in bytes.
const SCAN_BUF_BYTES: usize = 64 << 10;

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    /// File size as read.
    pub bytes: u64,
    /// SHA-256 of the whole file as read.
    pub sha256: [u8; 32],
    /// Length of the authentic prefix: the end of the last chunk that authenticated
    /// (and decoded). 0 if not even the parameters chunk did.
    pub valid_len: u64,
    /// The FINAL chunk was found, authentic, matching, and last in the file.
    pub finalised: bool,
    /// That FINAL chunk was written by [`recover`], not by [`SegmentWriter::finish`].
    pub recovered: bool,
    pub params: Option<CodecParams>,
    pub start_unix_ms: Option<i64>,
    /// Authentic chunks, including the parameters and FINAL chunks.
    pub chunks: u64,
    /// Authentic GOP chunks.
    pub gops: u64,
    /// Computed from the authentic GOP chunks: equal to the stored trailer when
    /// `finalised`, and the one [`recover`] writes for a cut file.
    pub trailer: Trailer,
    /// The first problem found, if any (for a cut file: [`SegmentError::Cut`]).
    pub error: Option<SegmentError>,
}

impl VerifyReport {
    /// Complete, authentic, nothing extra: the state of a file `finish` or `recover` wrote.
    pub fn is_intact(&self) -> bool {
        self.finalised && self.error.is_none() && self.valid_len == self.bytes
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// What recover needs beyond the report.
struct Scan {
    report: VerifyReport,
    /// Trailer and index of the authentic GOP chunks.
    acc: TrailerAcc,
    last_index: u64,
    last_tag: [u8; TAG_LEN],
    /// The failure is a torn tail: a cut, or the last chunk in the file failing
    /// authentication.
    torn_tail: bool,
    sealer: Sealer,
}

/// Whether `file[from..to]` is all zero bytes: what some file systems show after a crash
/// for blocks allocated but never written.
fn tail_is_zero(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut block = vec![0u8; SCAN_BUF_BYTES];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(block.len() as u64) as usize;
        file.read_exact_at(&mut block[..n], pos)?;
        if block[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

fn scan(
    file: File,
    expect_id: SegmentId,
    expect_camera: &str,
    key: &DataKey,
) -> Result<Scan, SegmentError> {
    let mut s = ChunkStream::open(file, expect_id, expect_camera, key, true, SCAN_BUF_BYTES)?;
    let mut report = VerifyReport {
        bytes: 0,
        sha256: [0; 32],
        valid_len: 0,
        finalised: false,
        recovered: false,
        params: None,
        start_unix_ms: None,
        chunks: 0,
        gops: 0,
        trailer: Trailer::default(),
        error: None,
    };
    let mut acc = TrailerAcc::default();
    let mut last_good = (0u64, 0u64, [0u8; TAG_LEN]); // (valid_len, index, tag)

    let result = (|| -> Result<(), SegmentError> {
        let (params, start) = s.read_params()?;
        report.params = Some(params);
        report.start_unix_ms = Some(start);
        report.chunks = 1;
        last_good = (s.valid_len, 0, s.prev_tag);
        loop {
            let Some(meta) = s.next_chunk()? else {
                return Err(s.cut());
            };
            if meta.flags & FLAG_FINAL != 0 {
                check_final(s.plaintext(), &acc, start)?;
                report.chunks += 1;
                last_good = (s.valid_len, meta.index, s.prev_tag);
                report.finalised = true;
                report.recovered = meta.index >= RECOVERY_INDEX;
                return s.expect_eof();
            }
            let gop = codec::decode_gop(s.plaintext()).map_err(|e| malformed(meta.index, e))?;
            if gop.frames.is_empty() {
                return Err(malformed(meta.index, DecodeError("GOP without frames")));
            }
            acc.add(&gop, meta.at());
            report.chunks += 1;
            report.gops += 1;
            last_good = (s.valid_len, meta.index, s.prev_tag);
        }
    })();

    let mut torn_tail = false;
    if let Err(e) = result {
        if let SegmentError::Io(_) = e {
            return Err(e);
        }
        let file_end = s.pos + s.drain()?;
        torn_tail = match e {
            SegmentError::Cut { .. } => true,
            SegmentError::Auth { .. } => s.failed_chunk_end == Some(file_end),
            _ => false,
        };
        report.error = Some(e);
    }
    report.bytes = s.pos;
    report.valid_len = last_good.0;
    report.trailer = acc.trailer(report.start_unix_ms.unwrap_or(0));
    report.sha256 = sha256_finish(s.hasher.take().expect("hashing stream"));
    Ok(Scan {
        report,
        acc,
        last_index: last_good.1,
        last_tag: last_good.2,
        torn_tail,
        sealer: s.sealer,
    })
}

/// Reads the whole file and authenticates every chunk.
///
/// Returns `Err` only when the file cannot be attributed at all: I/O errors,
/// [`NotASegment`](SegmentError::NotASegment), an unsupported version, a
/// [`WrongSegment`](SegmentError::WrongSegment) header, or a file cut inside its clear
/// header (`Cut { valid_len: 0 }`). Every problem from the chunks on (wrong key,
/// tampering, cut) is in [`VerifyReport::error`], with what was authentic before it.
pub fn verify(
    path: &Path,
    expect_id: SegmentId,
    expect_camera: &str,
    key: &DataKey,
) -> Result<VerifyReport, SegmentError> {
    Ok(scan(open_read(path)?, expect_id, expect_camera, key)?.report)
}

/// Closes a cut segment: truncates it to the end of its last authentic chunk, appends a
/// FINAL trailer computed from the authentic GOPs, fsyncs file and directory, and returns
/// the new report (`is_intact()` holds).
///
/// Idempotent: an intact file is returned as is, and a re-run after a crash in the middle
/// redoes the same steps with the same bytes. Only call it on segments the catalog has
/// as open: a truncated finished file looks exactly like a cut one.
///
/// Refuses (returns the error, file untouched) when the damage is not a torn tail, i.e.
/// when a chunk in the middle of the file fails authentication or the structure is
/// broken: that is tampering or corruption for a human to look at, not a crash. When not
/// even the parameters chunk is authentic the error is `Cut { valid_len: 0 }` (the file
/// was cut before it held anything: safe to delete) or `Auth { chunk: 0 }` (wrong key
/// or altered file: keep it).
pub fn recover(
    path: &Path,
    expect_id: SegmentId,
    expect_camera: &str,
    key: &DataKey,
) -> Result<VerifyReport, SegmentError> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let scan = scan(file.try_clone()?, expect_id, expect_camera, key)?;
    let report = scan.report;
    if report.is_intact() {
        return Ok(report);
    }
    let error = report
        .error
        .unwrap_or_else(|| SegmentError::Malformed("segment is neither complete nor cut".into()));
    if report.finalised || !(scan.torn_tail || tail_is_zero(&file, report.valid_len, report.bytes)?)
    {
        return Err(error);
    }
    if report.params.is_none() {
        return Err(error);
    }
    // Rebuild the trailer chunk exactly as a previous (interrupted) run would have: same
    // plaintext, same recovery-space nonce, so repeating it is harmless.
    let mut buf = vec![0; CHUNK_HDR_LEN];
    scan.acc
        .final_plaintext(report.start_unix_ms.unwrap_or(0), &mut buf);
    let index = RECOVERY_INDEX | (scan.last_index + 1);
    scan.sealer
        .seal(index, FLAG_FINAL, &scan.last_tag, &mut buf)?;

    file.set_len(report.valid_len)?;
    file.write_all_at(&buf, report.valid_len)?;
    file.sync_all()?;
    fsync_dir(&parent_dir(path))?;

    let again = verify(path, expect_id, expect_camera, key)?;
    if !again.is_intact() {
        return Err(again.error.unwrap_or_else(|| {
            SegmentError::Malformed("recovered segment does not verify".into())
        }));
    }
    Ok(again)
}
