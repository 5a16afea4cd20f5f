//! Storage health: is the disk that holds the footage still fit to hold it?
//!
//! The box records at a site nobody walks into, so the first sign of a dying disk must
//! reach IT from afar, before footage is lost: footage that was never written is
//! evidence that never existed, and a segment written to a failing disk may not read
//! back when a court asks for it. What the operator learns, for the file system that
//! holds the store:
//!
//! - **fill** (`statvfs`): used, available and total bytes. The ring keeps itself
//!   below its `max_bytes` and above `min_free_bytes`; a file system filling beyond
//!   that means something else is eating the disk, and the ring will soon delete
//!   footage early or stop recording.
//! - **read-only now** (`/proc/self/mountinfo`, the mount whose mount point is the
//!   longest prefix of the store's path; `ro` in its per-mount *or* its super-block
//!   options, since ext4's `errors=remount-ro` flips only the latter): the recorder can
//!   no longer write a single frame.
//! - **I/O errors**: the SCSI/SATA device's `ioerr_cnt` (`/sys/block/<disk>/device/`)
//!   and ext4's `errors_count` (`/sys/fs/ext4/<dev>/`): errors the kernel saw since
//!   boot (or, for ext4, since the file system recorded its first error).
//! - **SMART** (`smartctl --json -a /dev/<disk>`): the drive's own verdict, its
//!   temperature and hours, reallocated and pending sectors (ATA), endurance used and
//!   media errors (NVMe), and the meaning of smartctl's exit-status bits
//!   ([`smart::exit_bits`]).
//!
//! Each finding that needs a person becomes an [`Alarm`] in the [`StorageReport`], which
//! is serialisable (serde) for the viewer-api's health endpoint and whose numbers feed
//! Prometheus gauges. No SMART (`smartctl` not installed; a virtio disk, an SD card or
//! eMMC) is "not available", never an alarm: such a box simply has less to say. What
//! the probe could not find out where it should have is [`Alarm::Unknown`], because a
//! health check that silently says nothing looks exactly like a healthy disk.
//!
//! [`LinuxStorage`] is the Linux backend. It reads `/proc` and `/sys` under a root
//! directory and runs `smartctl` through a [`CommandRunner`], so its tests use a fake
//! tree and canned smartctl JSON (`hardware/tests/fixtures/smartctl/`, their origin
//! in the README there); `statvfs` is always the real system call. [`Simulated`] gives
//! the callers' tests a report they set by hand, with the same alarm rules.
//!
//! A probe blocks (smartctl can take seconds on a busy disk, see [`SystemCommands`]):
//! call it from a thread of its own, not from the async runtime.
//!
//! smartctl opens the raw disk: it needs read access to `/dev/<disk>` and, for ATA
//! pass-through, `CAP_SYS_RAWIO`. A service user without them gets "Permission denied",
//! which is reported as [`Alarm::Unknown`] (the disk may well have SMART; the probe
//! may not ask), so the unit must grant them or the [`CommandRunner`] must go through
//! a privileged helper.

mod linux;
pub mod smart;

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use linux::{CommandOutput, CommandRunner, LinuxStorage, SystemCommands};
pub use smart::{Smart, SmartData};

/// Where a storage health report comes from.
pub trait StorageHealth: Send + Sync {
    /// Looks at the store's file system and disk now. Never fails: what cannot be
    /// found out is an [`Alarm::Unknown`] in the report.
    fn probe(&self) -> StorageReport;
}

/// A shared probe: a test keeps one handle to change the simulated disk while a
/// watcher probes it through the other.
impl<T: StorageHealth + ?Sized> StorageHealth for std::sync::Arc<T> {
    fn probe(&self) -> StorageReport {
        (**self).probe()
    }
}

/// When a finding becomes an alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// [`Alarm::AlmostFull`] at or above this share of the file system used.
    pub almost_full_percent: u8,
    /// [`Alarm::AlmostFull`] also when fewer bytes than this are available (the
    /// recorder's `min_free_bytes` is a natural value); 0 turns this rule off.
    pub min_available_bytes: u64,
    /// A SMART warning at or above this share of an SSD's rated endurance used.
    pub wear_percent: u8,
    /// A SMART warning at or above this drive temperature.
    pub max_temperature_celsius: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            almost_full_percent: 95,
            min_available_bytes: 0,
            wear_percent: 90,
            max_temperature_celsius: 60,
        }
    }
}

/// How urgent an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Plan a visit: the disk is wearing, warm or filling.
    Warning,
    /// Footage is being lost or soon will be: go now.
    Critical,
}

/// A finding that needs a person.
///
/// Serialised with its kind as a tag: `{"kind":"io_errors","count":3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alarm {
    /// The store's file system is mounted read-only: nothing can be recorded.
    ReadOnly,
    /// The kernel counted I/O errors on the store's disk or file system.
    IoErrors { count: u64 },
    /// The drive's SMART health verdict is "failing".
    SmartFailed,
    /// SMART shows wear, damage or heat short of failure.
    SmartWarning { what: String },
    /// The file system is (nearly) full.
    AlmostFull { used_percent: u8 },
    /// Something the probe should have found out and could not.
    Unknown { reason: String },
}

impl Alarm {
    /// A stable name for metrics labels and the console (`read_only`, `io_errors`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Alarm::ReadOnly => "read_only",
            Alarm::IoErrors { .. } => "io_errors",
            Alarm::SmartFailed => "smart_failed",
            Alarm::SmartWarning { .. } => "smart_warning",
            Alarm::AlmostFull { .. } => "almost_full",
            Alarm::Unknown { .. } => "unknown",
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            Alarm::ReadOnly | Alarm::IoErrors { .. } | Alarm::SmartFailed => Severity::Critical,
            Alarm::SmartWarning { .. } | Alarm::AlmostFull { .. } | Alarm::Unknown { .. } => {
                Severity::Warning
            }
        }
    }
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alarm::ReadOnly => f.write_str("the store's file system is read-only"),
            Alarm::IoErrors { count } => write!(f, "{count} I/O errors on the store's disk"),
            Alarm::SmartFailed => f.write_str("the store's disk reports SMART health FAILED"),
            Alarm::SmartWarning { what } => write!(f, "SMART: {what}"),
            Alarm::AlmostFull { used_percent } => {
                write!(f, "the store's file system is {used_percent}% full")
            }
            Alarm::Unknown { reason } => write!(f, "storage health unknown: {reason}"),
        }
    }
}

/// How full the store's file system is (`statvfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// What an unprivileged writer can still use (excludes blocks reserved for root).
    pub available_bytes: u64,
    /// `used / (used + available)`, rounded up, as `df` reports it.
    pub used_percent: u8,
}

impl Fill {
    pub fn new(total_bytes: u64, used_bytes: u64, available_bytes: u64) -> Fill {
        let usable = used_bytes as u128 + available_bytes as u128;
        let used_percent = if usable == 0 {
            0
        } else {
            (used_bytes as u128 * 100).div_ceil(usable).min(100) as u8
        };
        Fill {
            total_bytes,
            used_bytes,
            available_bytes,
            used_percent,
        }
    }
}

/// The mount that holds the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// What was mounted (`/dev/sda2`, `/dev/mapper/data`, `tmpfs`).
    pub source: String,
    pub read_only: bool,
}

/// One of the kernel's error counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoErrorCount {
    /// Where the count was read (`/sys/block/sda/device/ioerr_cnt`).
    pub source: String,
    pub count: u64,
}

/// What a probe found, with the alarms that follow from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageReport {
    /// The store's path.
    pub path: PathBuf,
    pub fill: Option<Fill>,
    pub mount: Option<Mount>,
    /// The file system's block device (`sda2`, `nvme0n1p2`, `dm-0`), when it has one.
    pub block_device: Option<String>,
    /// The whole disk under it, whose SMART is read (`sda`, `nvme0n1`).
    pub disk: Option<String>,
    pub io_errors: Vec<IoErrorCount>,
    pub smart: Smart,
    pub alarms: Vec<Alarm>,
}

impl StorageReport {
    /// A report with nothing found yet (every field empty, SMART not available).
    pub fn empty(path: impl Into<PathBuf>) -> StorageReport {
        StorageReport {
            path: path.into(),
            fill: None,
            mount: None,
            block_device: None,
            disk: None,
            io_errors: Vec::new(),
            smart: Smart::NotAvailable {
                reason: "not probed".into(),
            },
            alarms: Vec::new(),
        }
    }

    /// No alarm.
    pub fn is_healthy(&self) -> bool {
        self.alarms.is_empty()
    }

    /// The most urgent alarm's severity, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.alarms.iter().map(Alarm::severity).max()
    }

    /// The sum of the kernel's error counters.
    pub fn io_error_count(&self) -> u64 {
        self.io_errors
            .iter()
            .fold(0u64, |a, c| a.saturating_add(c.count))
    }

    /// Appends the alarms that follow from the findings (fill, read-only, error
    /// counters, SMART), after any already there (the probe's [`Alarm::Unknown`]s).
    pub fn evaluate(&mut self, t: &Thresholds) {
        let mut alarms = Vec::new();
        if self.mount.as_ref().is_some_and(|m| m.read_only) {
            alarms.push(Alarm::ReadOnly);
        }
        let errors = self.io_error_count();
        if errors > 0 {
            alarms.push(Alarm::IoErrors { count: errors });
        }
        match &self.smart {
            Smart::Read(data) => alarms.extend(smart::alarms(data, t)),
            Smart::Unreadable { reason } => alarms.push(Alarm::Unknown {
                reason: format!("SMART: {reason}"),
            }),
            Smart::NotAvailable { .. } => {}
        }
        if let Some(fill) = &self.fill
            && (fill.used_percent >= t.almost_full_percent
                || fill.available_bytes < t.min_available_bytes)
        {
            alarms.push(Alarm::AlmostFull {
                used_percent: fill.used_percent,
            });
        }
        self.alarms.extend(alarms);
    }
}

/// A storage health source whose findings a test sets by hand; [`StorageHealth::probe`]
/// applies the same alarm rules as the Linux backend.
#[derive(Debug)]
pub struct Simulated {
    findings: Mutex<StorageReport>,
    thresholds: Thresholds,
}

impl Simulated {
    /// A healthy 1 TB disk, 40 % full, without SMART.
    pub fn new(path: impl Into<PathBuf>) -> Simulated {
        let mut r = StorageReport::empty(path);
        r.fill = Some(Fill::new(
            1_000_000_000_000,
            400_000_000_000,
            600_000_000_000,
        ));
        r.mount = Some(Mount {
            mount_point: PathBuf::from("/var/lib/ringfence"),
            fs_type: "ext4".into(),
            source: "/dev/sim0p1".into(),
            read_only: false,
        });
        r.block_device = Some("sim0p1".into());
        r.disk = Some("sim0".into());
        r.smart = Smart::NotAvailable {
            reason: "simulated disk".into(),
        };
        Simulated {
            findings: Mutex::new(r),
            thresholds: Thresholds::default(),
        }
    }

    pub fn with_thresholds(mut self, t: Thresholds) -> Simulated {
        self.thresholds = t;
        self
    }

    /// Changes the findings (any field but `alarms`, which the probe derives).
    pub fn set(&self, f: impl FnOnce(&mut StorageReport)) {
        f(&mut self.findings.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn set_fill(&self, total_bytes: u64, used_bytes: u64, available_bytes: u64) {
        self.set(|r| r.fill = Some(Fill::new(total_bytes, used_bytes, available_bytes)));
    }

    pub fn set_read_only(&self, read_only: bool) {
        self.set(|r| {
            if let Some(m) = r.mount.as_mut() {
                m.read_only = read_only;
            }
        });
    }

    pub fn set_io_errors(&self, count: u64) {
        self.set(|r| {
            r.io_errors = vec![IoErrorCount {
                source: "simulated".into(),
                count,
            }]
        });
    }

    pub fn set_smart(&self, smart: Smart) {
        self.set(|r| r.smart = smart);
    }
}

impl StorageHealth for Simulated {
    fn probe(&self) -> StorageReport {
        let mut r = self
            .findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        r.alarms.clear();
        r.evaluate(&self.thresholds);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_percent_is_dfs() {
        // ext4 reserves 5 % for root: used / (used + available), rounded up.
        let f = Fill::new(100_000, 50_001, 44_999);
        assert_eq!(f.used_percent, 53);
        assert_eq!(Fill::new(0, 0, 0).used_percent, 0);
        assert_eq!(Fill::new(10, 10, 0).used_percent, 100);
        assert_eq!(Fill::new(u64::MAX, u64::MAX, u64::MAX).used_percent, 50);
    }

    #[test]
    fn simulated_applies_the_alarm_rules() {
        let sim = Simulated::new("/var/lib/ringfence");
        let r = sim.probe();
        assert!(r.is_healthy(), "{:?}", r.alarms);
        assert_eq!(r.worst(), None);

        sim.set_fill(1000, 960, 40);
        sim.set_read_only(true);
        sim.set_io_errors(7);
        sim.set_smart(Smart::Unreadable {
            reason: "smartctl timed out".into(),
        });
        let r = sim.probe();
        assert_eq!(
            r.alarms,
            vec![
                Alarm::ReadOnly,
                Alarm::IoErrors { count: 7 },
                Alarm::Unknown {
                    reason: "SMART: smartctl timed out".into()
                },
                Alarm::AlmostFull { used_percent: 96 },
            ]
        );
        assert_eq!(r.worst(), Some(Severity::Critical));
        // Probing twice does not pile the alarms up.
        assert_eq!(sim.probe().alarms.len(), 4);
    }

    #[test]
    fn min_available_bytes_raises_almost_full_too() {
        let sim = Simulated::new("/s").with_thresholds(Thresholds {
            min_available_bytes: 1 << 30,
            ..Thresholds::default()
        });
        sim.set_fill(1 << 40, (1 << 40) - (1 << 29), 1 << 29);
        assert_eq!(
            sim.probe().alarms,
            vec![Alarm::AlmostFull { used_percent: 100 }]
        );
    }

    #[test]
    fn report_serialises_for_the_health_endpoint() {
        let sim = Simulated::new("/var/lib/ringfence");
        sim.set_io_errors(3);
        sim.set_fill(1000, 990, 10);
        let r = sim.probe();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["alarms"],
            serde_json::json!([
                {"kind": "io_errors", "count": 3},
                {"kind": "almost_full", "used_percent": 99}
            ])
        );
        assert_eq!(json["fill"]["used_bytes"], 990);
        assert_eq!(json["smart"]["state"], "not_available");
        let back: StorageReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.alarms[0].kind(), "io_errors");
        assert_eq!(r.alarms[0].to_string(), "3 I/O errors on the store's disk");
    }
}
