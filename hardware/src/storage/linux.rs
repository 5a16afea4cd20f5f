//! The Linux backend: `statvfs`, `/proc/self/mountinfo`, sysfs and `smartctl`.
//!
//! `/proc` and `/sys` are read under a root directory (`/` on the box, a fake tree in
//! tests) and smartctl runs through a [`CommandRunner`] (canned output in tests).
//! From the store's mount to its disk: the mount's `major:minor` names
//! `/sys/dev/block/M:m`, a link to the device's sysfs directory; a partition's
//! directory (it has a `partition` file) sits inside its disk's; a device-mapper device
//! (LUKS, LVM) with exactly one device in `slaves/` is followed down to it.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{IoErrorCount, Mount, Smart, StorageHealth, StorageReport, Thresholds, smart};
use crate::storage::{Alarm, Fill};

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// `None` when a signal ended it.
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
}

/// Runs a program (smartctl) and returns its output. `Err` with
/// [`io::ErrorKind::NotFound`] means the program is not installed.
pub trait CommandRunner: Send + Sync {
    fn run(&self, program: &str, args: &[&str]) -> io::Result<CommandOutput>;
}

/// Runs programs for real, ending any that outlives `timeout` (a disk that hangs on a
/// SMART command must not hang the health check).
#[derive(Debug, Clone)]
pub struct SystemCommands {
    pub timeout: Duration,
}

impl Default for SystemCommands {
    fn default() -> Self {
        SystemCommands {
            timeout: Duration::from_secs(30),
        }
    }
}

impl CommandRunner for SystemCommands {
    fn run(&self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env("LC_ALL", "C")
            .spawn()?;
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{program} took longer than {:?}", self.timeout),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = reader.join().unwrap_or_default();
        Ok(CommandOutput {
            exit_code: status.code(),
            stdout,
        })
    }
}

/// The store's storage health, read from the running system.
#[derive(Clone)]
pub struct LinuxStorage {
    store_path: PathBuf,
    root: PathBuf,
    runner: Arc<dyn CommandRunner>,
    smartctl: String,
    thresholds: Thresholds,
}

impl std::fmt::Debug for LinuxStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxStorage")
            .field("store_path", &self.store_path)
            .field("root", &self.root)
            .field("smartctl", &self.smartctl)
            .finish_non_exhaustive()
    }
}

impl LinuxStorage {
    /// The health of the file system and disk holding `store_path`, read from `/proc`,
    /// `/sys` and `smartctl` (found on `PATH`).
    pub fn new(store_path: impl Into<PathBuf>) -> LinuxStorage {
        LinuxStorage {
            store_path: store_path.into(),
            root: PathBuf::from("/"),
            runner: Arc::new(SystemCommands::default()),
            smartctl: "smartctl".into(),
            thresholds: Thresholds::default(),
        }
    }

    /// Reads `proc/` and `sys/` under `root` instead of `/` (tests).
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> LinuxStorage {
        self.root = root.into();
        self
    }

    pub fn with_runner(mut self, runner: Arc<dyn CommandRunner>) -> LinuxStorage {
        self.runner = runner;
        self
    }

    /// The smartctl program (a name on `PATH` or a path).
    pub fn with_smartctl(mut self, program: impl Into<String>) -> LinuxStorage {
        self.smartctl = program.into();
        self
    }

    pub fn with_thresholds(mut self, t: Thresholds) -> LinuxStorage {
        self.thresholds = t;
        self
    }

    fn under_root(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn smart(&self, disk: &str) -> Smart {
        let dev = format!("/dev/{disk}");
        match self.runner.run(&self.smartctl, &["--json", "-a", &dev]) {
            Ok(out) => smart::parse(&dev, out.exit_code, &out.stdout),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Smart::NotAvailable {
                reason: format!("{} is not installed", self.smartctl),
            },
            Err(e) => Smart::Unreadable {
                reason: format!("{} {dev}: {e}", self.smartctl),
            },
        }
    }

    /// The sysfs directory of a block device named in `/sys/dev/block` (`8:2`) or
    /// `/sys/class/block` (`sda2`), resolved.
    fn block_dir(&self, link: &str) -> Option<PathBuf> {
        std::fs::canonicalize(self.under_root(link)).ok()
    }

    /// From the file system's block device to the disk whose SMART to read.
    fn disk_of(&self, dev_dir: &Path) -> Result<PathBuf, String> {
        let mut dir = dev_dir.to_path_buf();
        for _ in 0..8 {
            if dir.join("partition").exists() {
                return dir
                    .parent()
                    .map(Path::to_path_buf)
                    .ok_or_else(|| format!("{} has no parent disk", dir.display()));
            }
            let slaves: Vec<String> = std::fs::read_dir(dir.join("slaves"))
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            match slaves.as_slice() {
                [] => return Ok(dir),
                [one] => {
                    dir = self
                        .block_dir(&format!("/sys/class/block/{one}"))
                        .ok_or_else(|| format!("no sysfs entry for {one}"))?;
                }
                many => {
                    return Err(format!(
                        "{} spans {} devices ({}); their SMART is not read",
                        name_of(&dir),
                        many.len(),
                        many.join(", ")
                    ));
                }
            }
        }
        Err(format!("{}: too many stacked devices", dev_dir.display()))
    }

    fn io_errors(
        &self,
        fs_dev: &str,
        disk: Option<&str>,
        report: &mut StorageReport,
    ) -> Vec<Alarm> {
        let mut unknown = Vec::new();
        let mut counters = Vec::new();
        if let Some(disk) = disk {
            counters.push(format!("/sys/block/{disk}/device/ioerr_cnt"));
        }
        counters.push(format!("/sys/fs/ext4/{fs_dev}/errors_count"));
        for c in counters {
            let text = match std::fs::read_to_string(self.under_root(&c)) {
                Ok(t) => t,
                // Not SCSI/SATA, or not ext4: no such counter.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    unknown.push(Alarm::Unknown {
                        reason: format!("{c}: {e}"),
                    });
                    continue;
                }
            };
            match parse_counter(&text) {
                Some(count) => report.io_errors.push(IoErrorCount { source: c, count }),
                None => unknown.push(Alarm::Unknown {
                    reason: format!("{c}: not a number: {:?}", text.trim()),
                }),
            }
        }
        unknown
    }
}

impl StorageHealth for LinuxStorage {
    fn probe(&self) -> StorageReport {
        let path = std::fs::canonicalize(&self.store_path).unwrap_or(self.store_path.clone());
        let mut report = StorageReport::empty(&path);
        report.smart = Smart::NotAvailable {
            reason: "no block device found".into(),
        };
        let mut unknown = Vec::new();

        let mut statvfs_ro = false;
        match rustix::fs::statvfs(&path) {
            Ok(v) => {
                let frsize = v.f_frsize;
                report.fill = Some(Fill::new(
                    v.f_blocks.saturating_mul(frsize),
                    v.f_blocks.saturating_sub(v.f_bfree).saturating_mul(frsize),
                    v.f_bavail.saturating_mul(frsize),
                ));
                statvfs_ro = v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY);
            }
            Err(e) => unknown.push(Alarm::Unknown {
                reason: format!("statvfs {}: {e}", path.display()),
            }),
        }

        let mountinfo = self.under_root("/proc/self/mountinfo");
        let entry = match std::fs::read_to_string(&mountinfo) {
            Ok(text) => match mount_of(&parse_mountinfo(&text), &path) {
                Some(e) => Some(e.clone()),
                None => {
                    unknown.push(Alarm::Unknown {
                        reason: format!("no mount holds {}", path.display()),
                    });
                    None
                }
            },
            Err(e) => {
                unknown.push(Alarm::Unknown {
                    reason: format!("{}: {e}", mountinfo.display()),
                });
                None
            }
        };

        if let Some(entry) = entry {
            report.mount = Some(Mount {
                mount_point: entry.mount_point.clone(),
                fs_type: entry.fs_type.clone(),
                source: entry.source.clone(),
                read_only: entry.read_only || statvfs_ro,
            });
            let dev_dir = self
                .block_dir(&format!("/sys/dev/block/{}", entry.major_minor))
                .or_else(|| {
                    let name = entry.source.strip_prefix("/dev/")?.rsplit('/').next()?;
                    self.block_dir(&format!("/sys/class/block/{name}"))
                });
            match dev_dir {
                None => {
                    report.smart = Smart::NotAvailable {
                        reason: format!(
                            "{} ({}) is not on a block device",
                            entry.mount_point.display(),
                            entry.fs_type
                        ),
                    };
                }
                Some(dev_dir) => {
                    let fs_dev = name_of(&dev_dir);
                    report.block_device = Some(fs_dev.clone());
                    let disk = match self.disk_of(&dev_dir) {
                        Ok(d) => Some(name_of(&d)),
                        Err(reason) => {
                            report.smart = Smart::NotAvailable { reason };
                            None
                        }
                    };
                    unknown.extend(self.io_errors(&fs_dev, disk.as_deref(), &mut report));
                    if let Some(disk) = &disk {
                        report.smart = self.smart(disk);
                    }
                    report.disk = disk;
                }
            }
        }
        report.alarms = unknown;
        report.evaluate(&self.thresholds);
        report
    }
}

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `ioerr_cnt` is hexadecimal (`0x1f`), `errors_count` decimal.
fn parse_counter(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// One line of `/proc/self/mountinfo` (proc(5)), the fields used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub major_minor: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// `ro` in the per-mount options or in the super block's.
    pub read_only: bool,
}

/// The lines of mountinfo that parse; others (there should be none) are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // 36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if l.len() < 6 || r.len() < 3 {
        return None;
    }
    let has_ro = |opts: &str| opts.split(',').any(|o| o == "ro");
    Some(MountEntry {
        major_minor: l[2].to_string(),
        mount_point: PathBuf::from(unescape(l[4])),
        fs_type: unescape(r[0]),
        source: unescape(r[1]),
        read_only: has_ro(l[5]) || has_ro(r[2]),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path`: the longest mount point that is a prefix of it (by
/// components); of equal ones, the last listed (mounted on top).
pub(crate) fn mount_of<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    let mut best: Option<&MountEntry> = None;
    for e in entries {
        if path.starts_with(&e.mount_point)
            && best.is_none_or(|b| {
                e.mount_point.components().count() >= b.mount_point.components().count()
            })
        {
            best = Some(e);
        }
    }
    best
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
