//! The footage bytes of an index, read chunk by chunk with the next segment opened
//! ahead, so a stream never waits on a segment boundary.

use super::*;

/// How many chunks before the end of a segment [`read_payload`] opens the next one.
pub(super) const PREFETCH_GOPS: usize = 4;

/// Reads the payload (sample bytes) from chunk `first_gop` on, calling `sink` with
/// each GOP's bytes in order until it returns false. Checks every frame's size against
/// the index: footage that changed underneath fails with [`SourceError::Changed`].
///
/// Chunks whose place in the file is known ([`GopLoc::loc`]) are read directly, each
/// decrypted once, and their bytes passed on without copying; the others are read in
/// order from the start of their segment.
pub fn read_payload(
    src: &dyn FootageSource,
    index: &FrameIndex,
    first_gop: usize,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<(), SourceError> {
    let mut sample_base: usize = index.gops[..first_gop.min(index.gops.len())]
        .iter()
        .map(|g| g.frames)
        .sum();
    let mut g = first_gop;
    // The next segment's stream, opened a few chunks before it is needed so that its
    // first chunks are being read from disk meanwhile.
    let mut next: Option<(usize, Box<dyn GopStream>)> = None;
    while g < index.gops.len() {
        let seg = index.gops[g].segment;
        let mut stream = match next.take() {
            Some((s, stream)) if s == seg => stream,
            _ => src.open(&index.camera, &index.segments[seg])?,
        };
        let mut ordinal = 0;
        while g < index.gops.len() && index.gops[g].segment == seg {
            let want = index.gops[g];
            let soon = &index.gops[g..(g + PREFETCH_GOPS).min(index.gops.len())];
            if next.is_none()
                && let Some(f) = soon.iter().find(|x| x.segment != seg)
                && let Some(loc) = &f.loc
            {
                let mut s = src.open(&index.camera, &index.segments[f.segment])?;
                s.will_read(loc);
                next = Some((f.segment, s));
            }
            let expected = &index.samples[sample_base..sample_base + want.frames];
            let buf = match &want.loc {
                Some(loc) => {
                    let chunk = stream.read_at(loc)?;
                    if chunk.frames.len() < want.frames
                        || chunk
                            .frames
                            .iter()
                            .zip(expected)
                            .any(|(f, s)| f.size != s.size)
                    {
                        return Err(SourceError::Changed);
                    }
                    let len: usize = expected.iter().map(|s| s.size as usize).sum();
                    if chunk.data.len() < len {
                        return Err(SourceError::Changed);
                    }
                    chunk.data.slice(..len)
                }
                None => {
                    let gop = loop {
                        let Some(gop) = stream.next_gop()? else {
                            return Err(SourceError::Changed);
                        };
                        ordinal += 1;
                        if ordinal - 1 == want.ordinal {
                            break gop;
                        }
                    };
                    if gop.frames.len() < want.frames {
                        return Err(SourceError::Changed);
                    }
                    let len: usize = expected.iter().map(|s| s.size as usize).sum();
                    let mut buf = Vec::with_capacity(len);
                    for (f, s) in gop.frames.iter().zip(expected) {
                        if f.data.len() != s.size as usize {
                            return Err(SourceError::Changed);
                        }
                        buf.extend_from_slice(&f.data);
                    }
                    Bytes::from(buf)
                }
            };
            sample_base += want.frames;
            g += 1;
            if !sink(buf) {
                return Ok(());
            }
        }
    }
    Ok(())
}
