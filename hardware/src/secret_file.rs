//! A 256-bit secret kept in a root-only file as one text line, `<prefix><64 hex
//! digits>`: the file form shared by the KEK and the device signing key. Reading refuses
//! a file that others may read, or that is not exactly that line; creating never
//! replaces an existing file and syncs the file and its directory.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

pub(crate) enum SecretFileError {
    Missing,
    Malformed,
    TooOpen { mode: u32 },
    Io(io::Error),
}

pub(crate) fn read(path: &Path, prefix: &str) -> Result<Zeroizing<[u8; 32]>, SecretFileError> {
    // A key file is tiny; anything larger is not ours.
    let text = read_private_text(path, 256)?;
    let hex = text
        .trim_end()
        .strip_prefix(prefix)
        .ok_or(SecretFileError::Malformed)?;
    parse_hex32(hex).ok_or(SecretFileError::Malformed)
}

/// Writes `secret` unless the file exists; returns whether it wrote.
pub(crate) fn create_new(
    path: &Path,
    prefix: &str,
    secret: &[u8; 32],
) -> Result<bool, SecretFileError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir).map_err(SecretFileError::Io)?;
    }
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(SecretFileError::Io(e)),
    };
    let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 65));
    text.push_str(prefix);
    for b in secret {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        text.push(DIGITS[(b >> 4) as usize] as char);
        text.push(DIGITS[(b & 15) as usize] as char);
    }
    text.push('\n');
    file.write_all(text.as_bytes())
        .map_err(SecretFileError::Io)?;
    file.sync_all().map_err(SecretFileError::Io)?;
    if let Some(dir) = dir {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(SecretFileError::Io)?;
    }
    Ok(true)
}

/// Reads a small text file that only its owner may read (at most `max` bytes; longer
/// is `Malformed`).
pub(crate) fn read_private_text(
    path: &Path,
    max: u64,
) -> Result<Zeroizing<String>, SecretFileError> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SecretFileError::Missing),
        Err(e) => return Err(SecretFileError::Io(e)),
    };
    let mode = file
        .metadata()
        .map_err(SecretFileError::Io)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen { mode });
    }
    let mut text = Zeroizing::new(String::new());
    let n = Read::by_ref(&mut file)
        .take(max + 1)
        .read_to_string(&mut text)
        .map_err(|_| SecretFileError::Malformed)?;
    if n as u64 > max {
        return Err(SecretFileError::Malformed);
    }
    Ok(text)
}

/// Writes `text` as a new file of mode 0600 unless `path` exists; returns whether it
/// wrote. The text goes to a temporary file beside it first, synced, then is linked
/// into place (a link never replaces an existing file), so that a crash leaves either
/// no file or the whole one, never a cut one.
#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
pub(crate) fn create_new_text(path: &Path, text: &[u8]) -> Result<bool, SecretFileError> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(SecretFileError::Io)?;
    let name = path
        .file_name()
        .ok_or_else(|| SecretFileError::Io(io::Error::other("the path names no file")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text)?;
        file.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&tmp);
    let wrote = result.map_err(SecretFileError::Io)?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SecretFileError::Io)?;
    Ok(wrote)
}

fn parse_hex32(hex: &str) -> Option<Zeroizing<[u8; 32]>> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}
