//! smartctl's `--json -a` output, read: the drive's verdict and the few numbers that
//! predict its death, and what smartctl's exit status says beside them.
//!
//! Read from smartctl 7.x's JSON (`json_format_version` 1): `smart_status.passed`,
//! `temperature.current`, `power_on_time.hours`; for ATA the raw values of attributes
//! 5 (reallocated), 197 (pending) and 198 (offline uncorrectable); for NVMe the health
//! log's `percentage_used`, `media_errors`, `critical_warning` and spare. Fields a
//! drive does not report stay `None`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Alarm, Thresholds};

/// smartctl's exit-status bits (smartctl(8), "EXIT STATUS").
pub mod exit_bits {
    /// Command line did not parse; also "Unable to detect device type" (no SMART).
    pub const COMMAND_LINE: i32 = 1 << 0;
    /// Device open failed, no IDENTIFY data, or the device sleeps.
    pub const DEVICE_OPEN: i32 = 1 << 1;
    /// Some SMART or other command failed, or a SMART structure's checksum is wrong.
    pub const COMMAND_FAILED: i32 = 1 << 2;
    /// The SMART status check returned "DISK FAILING".
    pub const DISK_FAILING: i32 = 1 << 3;
    /// Pre-failure attributes at or below their threshold now.
    pub const PREFAIL_AT_THRESHOLD: i32 = 1 << 4;
    /// "DISK OK", but some attributes were at or below their threshold in the past.
    pub const PAST_AT_THRESHOLD: i32 = 1 << 5;
    /// The device error log has records of errors.
    pub const ERROR_LOG: i32 = 1 << 6;
    /// The self-test log has records of errors (ATA: not outdated by a newer good test).
    pub const SELF_TEST_LOG: i32 = 1 << 7;
}

/// What SMART says of the store's disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Smart {
    /// No SMART to read here: smartctl is not installed, or the device has none (a
    /// virtio disk, an SD card, eMMC, a file system without a block device). Not an
    /// alarm.
    NotAvailable { reason: String },
    /// The disk should have answered and did not (smartctl crashed, timed out, printed
    /// no JSON, was refused permission): [`Alarm::Unknown`].
    Unreadable { reason: String },
    /// What the drive reported.
    Read(Box<SmartData>),
}

/// The drive's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartData {
    /// The device smartctl read (`/dev/sda`).
    pub device: String,
    /// `ATA`, `NVMe`, `SCSI`.
    pub protocol: Option<String>,
    pub model: Option<String>,
    /// The overall health self-assessment; `None` when the drive gave none.
    pub passed: Option<bool>,
    /// smartctl's exit status ([`exit_bits`]).
    pub exit_status: i32,
    pub temperature_celsius: Option<i64>,
    pub power_on_hours: Option<u64>,
    /// ATA attribute 5, raw.
    pub reallocated_sectors: Option<u64>,
    /// ATA attribute 197, raw.
    pub pending_sectors: Option<u64>,
    /// ATA attribute 198, raw.
    pub offline_uncorrectable_sectors: Option<u64>,
    /// NVMe `percentage_used`: the share of rated endurance used (may pass 100).
    pub wear_used_percent: Option<u64>,
    /// NVMe: unrecovered data-integrity errors.
    pub media_errors: Option<u64>,
    /// NVMe critical-warning bits (spare, temperature, reliability, read-only, backup).
    pub critical_warning: Option<u64>,
    pub available_spare_percent: Option<u64>,
    pub available_spare_threshold_percent: Option<u64>,
}

impl SmartData {
    fn is_nvme(&self) -> bool {
        self.protocol
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("nvme"))
    }
}

/// Reads smartctl's output for `device`. `exit_code` is the process's (`None` when a
/// signal ended it).
pub fn parse(device: &str, exit_code: Option<i32>, stdout: &[u8]) -> Smart {
    let Some(code) = exit_code else {
        return Smart::Unreadable {
            reason: format!("smartctl {device} was ended by a signal"),
        };
    };
    let json: Value = match serde_json::from_slice(stdout) {
        Ok(v) => v,
        Err(e) => {
            return Smart::Unreadable {
                reason: format!("smartctl {device} (exit status {code}) printed no JSON: {e}"),
            };
        }
    };
    let messages: Vec<&str> = json
        .pointer("/smartctl/messages")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("string").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let said = if messages.is_empty() {
        format!("exit status {code}")
    } else {
        messages.join("; ")
    };
    let has_health = json.get("smart_status").is_some()
        || json.get("ata_smart_attributes").is_some()
        || json.get("nvme_smart_health_information_log").is_some();
    if json.pointer("/smart_support/available") == Some(&Value::Bool(false)) {
        return Smart::NotAvailable {
            reason: format!("{device} has no SMART"),
        };
    }
    if !has_health {
        if messages.iter().any(|m| m.contains("Permission denied")) {
            // EACCES: the disk may well have SMART; this process may not ask.
            return Smart::Unreadable { reason: said };
        }
        if code & (exit_bits::COMMAND_LINE | exit_bits::DEVICE_OPEN) != 0 {
            // "Unable to detect device type" (virtio, SD, eMMC) or a device that takes
            // no SMART commands at all.
            return Smart::NotAvailable { reason: said };
        }
        return Smart::Unreadable {
            reason: format!("smartctl {device} reported no health data ({said})"),
        };
    }
    let u = |p: &str| json.pointer(p).and_then(Value::as_u64);
    let s = |p: &str| json.pointer(p).and_then(Value::as_str).map(str::to_string);
    let attr = |id: u64| {
        json.pointer("/ata_smart_attributes/table")
            .and_then(Value::as_array)?
            .iter()
            .find(|a| a.get("id").and_then(Value::as_u64) == Some(id))?
            .pointer("/raw/value")
            .and_then(Value::as_u64)
    };
    let nvme = "/nvme_smart_health_information_log";
    SmartData {
        device: s("/device/name").unwrap_or_else(|| device.to_string()),
        protocol: s("/device/protocol"),
        model: s("/model_name"),
        passed: json
            .pointer("/smart_status/passed")
            .and_then(Value::as_bool),
        exit_status: code,
        temperature_celsius: json
            .pointer("/temperature/current")
            .and_then(Value::as_i64)
            .or_else(|| json.pointer(&format!("{nvme}/temperature"))?.as_i64()),
        power_on_hours: u("/power_on_time/hours").or_else(|| u(&format!("{nvme}/power_on_hours"))),
        reallocated_sectors: attr(5),
        pending_sectors: attr(197),
        offline_uncorrectable_sectors: attr(198),
        wear_used_percent: u(&format!("{nvme}/percentage_used")),
        media_errors: u(&format!("{nvme}/media_errors")),
        critical_warning: u(&format!("{nvme}/critical_warning")),
        available_spare_percent: u(&format!("{nvme}/available_spare")),
        available_spare_threshold_percent: u(&format!("{nvme}/available_spare_threshold")),
    }
    .into()
}

impl From<SmartData> for Smart {
    fn from(d: SmartData) -> Smart {
        Smart::Read(Box::new(d))
    }
}

/// The alarms a drive's report raises.
pub fn alarms(d: &SmartData, t: &Thresholds) -> Vec<Alarm> {
    let mut out = Vec::new();
    let bit = |b: i32| d.exit_status & b != 0;
    let mut warn = |what: String| out.push(Alarm::SmartWarning { what });
    let failed = d.passed == Some(false) || bit(exit_bits::DISK_FAILING);
    if bit(exit_bits::PREFAIL_AT_THRESHOLD) {
        warn("a pre-failure attribute is at or below its threshold".into());
    }
    if bit(exit_bits::PAST_AT_THRESHOLD) {
        warn("an attribute was at or below its threshold in the past".into());
    }
    // NVMe drives log many harmless errors (e.g. an unsupported log page asked for);
    // their media errors are what count, below.
    if bit(exit_bits::ERROR_LOG) && !d.is_nvme() {
        warn("the device error log has records of errors".into());
    }
    if bit(exit_bits::SELF_TEST_LOG) {
        warn("the self-test log records a failed test".into());
    }
    if let Some(n) = d.reallocated_sectors.filter(|&n| n > 0) {
        warn(format!("{n} reallocated sectors"));
    }
    if let Some(n) = d.pending_sectors.filter(|&n| n > 0) {
        warn(format!("{n} sectors pending reallocation"));
    }
    if let Some(n) = d.offline_uncorrectable_sectors.filter(|&n| n > 0) {
        warn(format!("{n} uncorrectable sectors"));
    }
    if let Some(p) = d
        .wear_used_percent
        .filter(|&p| p >= u64::from(t.wear_percent))
    {
        warn(format!("{p}% of the rated endurance used"));
    }
    if let Some(n) = d.media_errors.filter(|&n| n > 0) {
        warn(format!("{n} media errors"));
    }
    if let Some(w) = d.critical_warning.filter(|&w| w != 0) {
        warn(format!("NVMe critical warning 0x{w:02x}"));
    }
    if let (Some(spare), Some(min)) = (
        d.available_spare_percent,
        d.available_spare_threshold_percent,
    ) && spare < min
    {
        warn(format!(
            "available spare {spare}% below its threshold {min}%"
        ));
    }
    if let Some(c) = d
        .temperature_celsius
        .filter(|&c| c >= t.max_temperature_celsius)
    {
        warn(format!("temperature {c} °C"));
    }
    if failed {
        out.insert(0, Alarm::SmartFailed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/smartctl/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn read(name: &str, code: i32) -> SmartData {
        match parse("/dev/x", Some(code), &fixture(name)) {
            Smart::Read(d) => *d,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn healthy_ata_ssd() {
        let d = read("ata-ssd.json", 0);
        assert_eq!(d.device, "/dev/sda");
        assert_eq!(d.protocol.as_deref(), Some("ATA"));
        assert_eq!(d.model.as_deref(), Some("FIXTURE SSD 512GB"));
        assert_eq!(d.passed, Some(true));
        assert_eq!(d.temperature_celsius, Some(38));
        assert_eq!(d.power_on_hours, Some(8761));
        assert_eq!(d.reallocated_sectors, Some(0));
        assert_eq!(d.pending_sectors, Some(0));
        assert_eq!(d.wear_used_percent, None);
        assert!(alarms(&d, &Thresholds::default()).is_empty());
    }

    #[test]
    fn healthy_nvme_with_benign_error_log() {
        // num_err_log_entries 112 makes smartctl set bit 6 on many NVMe drives.
        let d = read("nvme.json", exit_bits::ERROR_LOG);
        assert_eq!(d.protocol.as_deref(), Some("NVMe"));
        assert_eq!(d.wear_used_percent, Some(3));
        assert_eq!(d.media_errors, Some(0));
        assert_eq!(d.power_on_hours, Some(5120));
        assert_eq!(d.temperature_celsius, Some(41));
        assert_eq!(d.available_spare_percent, Some(100));
        assert!(alarms(&d, &Thresholds::default()).is_empty());
    }

    #[test]
    fn worn_nvme_warns() {
        let mut j: Value = serde_json::from_slice(&fixture("nvme.json")).unwrap();
        let log = &mut j["nvme_smart_health_information_log"];
        log["percentage_used"] = 93.into();
        log["media_errors"] = 2.into();
        log["critical_warning"] = 1.into();
        log["available_spare"] = 8.into();
        j["temperature"]["current"] = 71.into();
        let Smart::Read(d) = parse("/dev/nvme0n1", Some(0), &serde_json::to_vec(&j).unwrap())
        else {
            panic!()
        };
        let what: Vec<String> = alarms(&d, &Thresholds::default())
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            what,
            [
                "SMART: 93% of the rated endurance used",
                "SMART: 2 media errors",
                "SMART: NVMe critical warning 0x01",
                "SMART: available spare 8% below its threshold 10%",
                "SMART: temperature 71 °C",
            ]
        );
    }

    #[test]
    fn failing_disk() {
        let d = read("ata-hdd-failing.json", 216);
        assert_eq!(d.passed, Some(false));
        assert_eq!(d.reallocated_sectors, Some(1872));
        assert_eq!(d.pending_sectors, Some(64));
        assert_eq!(d.offline_uncorrectable_sectors, Some(12));
        let a = alarms(&d, &Thresholds::default());
        assert_eq!(a[0], Alarm::SmartFailed);
        let what: Vec<String> = a[1..].iter().map(|a| a.to_string()).collect();
        assert_eq!(
            what,
            [
                "SMART: a pre-failure attribute is at or below its threshold",
                "SMART: the device error log has records of errors",
                "SMART: the self-test log records a failed test",
                "SMART: 1872 reallocated sectors",
                "SMART: 64 sectors pending reallocation",
                "SMART: 12 uncorrectable sectors",
            ]
        );
    }

    #[test]
    fn failing_bit_alone_is_a_failure() {
        // Some bridges lose smart_status; the exit status still says "DISK FAILING".
        let mut d = read("ata-ssd.json", exit_bits::DISK_FAILING);
        d.passed = None;
        assert_eq!(alarms(&d, &Thresholds::default()), vec![Alarm::SmartFailed]);
    }

    #[test]
    fn no_smart_is_not_available() {
        // Captured from smartctl 7.3 on a virtio disk.
        match parse("/dev/vda", Some(1), &fixture("virtio-no-smart.json")) {
            Smart::NotAvailable { reason } => {
                assert_eq!(reason, "/dev/vda: Unable to detect device type")
            }
            other => panic!("{other:?}"),
        }
        let no_support = br#"{"smartctl":{"exit_status":4},"smart_support":{"available":false}}"#;
        assert!(matches!(
            parse("/dev/mmcblk0", Some(4), no_support),
            Smart::NotAvailable { .. }
        ));
    }

    #[test]
    fn what_cannot_be_read_is_unreadable() {
        assert!(matches!(
            parse("/dev/sda", None, b""),
            Smart::Unreadable { .. }
        ));
        let Smart::Unreadable { reason } = parse("/dev/sda", Some(2), b"Segmentation fault") else {
            panic!()
        };
        assert!(reason.contains("printed no JSON"), "{reason}");
        let denied = br#"{"smartctl":{"messages":[{"string":"Smartctl open device: /dev/sda failed: Permission denied","severity":"error"}],"exit_status":2}}"#;
        let Smart::Unreadable { reason } = parse("/dev/sda", Some(2), denied) else {
            panic!()
        };
        assert!(reason.contains("Permission denied"));
        let nothing = br#"{"smartctl":{"exit_status":4}}"#;
        assert!(matches!(
            parse("/dev/sda", Some(4), nothing),
            Smart::Unreadable { .. }
        ));
    }
}
