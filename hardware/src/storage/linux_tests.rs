use super::*;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::sync::Mutex;

const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw
30 27 8:3 / /var/lib/ringfence rw,noatime shared:12 - ext4 /dev/sda3 rw,errors=remount-ro
31 27 0:30 / /var/lib/ringfence\\040old rw - tmpfs tmpfs rw
32 27 259:2 / /srv/nvme rw,relatime - ext4 /dev/nvme0n1p2 rw
33 27 253:0 / /srv/crypt rw,relatime - ext4 /dev/mapper/data rw
34 27 179:2 / /srv/sd rw,relatime - ext4 /dev/mmcblk0p2 rw
";

#[test]
fn mountinfo_longest_prefix_and_escapes() {
    let e = parse_mountinfo(MOUNTINFO);
    assert_eq!(e.len(), 7);
    let m = |p: &str| mount_of(&e, Path::new(p)).unwrap().mount_point.clone();
    assert_eq!(
        m("/var/lib/ringfence/segments/gate"),
        PathBuf::from("/var/lib/ringfence")
    );
    assert_eq!(m("/var/lib/ringfence"), PathBuf::from("/var/lib/ringfence"));
    // A prefix of the string but not of the components.
    assert_eq!(m("/var/lib/ringfence2"), PathBuf::from("/"));
    assert_eq!(
        m("/var/lib/ringfence old/x"),
        PathBuf::from("/var/lib/ringfence old")
    );
    assert_eq!(mount_of(&e, Path::new("relative")), None);
    // Over-mounted: the last one listed is on top.
    let e2 = parse_mountinfo(
        "40 27 8:3 / /data rw - ext4 /dev/sda3 rw\n41 40 0:50 / /data ro - tmpfs tmpfs ro\n",
    );
    let top = mount_of(&e2, Path::new("/data/x")).unwrap();
    assert_eq!(top.fs_type, "tmpfs");
    assert!(top.read_only);
}

#[test]
fn read_only_in_either_option_set() {
    let e = parse_mountinfo(
        "1 0 8:1 / /a ro,relatime - ext4 /dev/sda1 rw\n\
         2 0 8:2 / /b rw,relatime - ext4 /dev/sda2 ro,errors=remount-ro\n\
         3 0 8:3 / /c rw,relatime - ext4 /dev/sda3 rw,errors=remount-ro\n\
         4 0 8:4 / /d rw,relatime - vfat /dev/sda4 rw,errors=romount\n",
    );
    let ro: Vec<bool> = e.iter().map(|e| e.read_only).collect();
    assert_eq!(ro, [true, true, false, false]);
}

#[test]
fn counters_hex_and_decimal() {
    assert_eq!(parse_counter("0x1f\n"), Some(31));
    assert_eq!(parse_counter("0x0"), Some(0));
    assert_eq!(parse_counter("12\n"), Some(12));
    assert_eq!(parse_counter("lots"), None);
}

/// Canned smartctl answers by device; records what was asked.
#[derive(Default)]
struct Canned {
    answers: HashMap<String, (Option<i32>, Vec<u8>)>,
    asked: Mutex<Vec<String>>,
    missing: bool,
}

impl CommandRunner for Canned {
    fn run(&self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("{program} {}", args.join(" ")));
        if self.missing {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let dev = args.last().unwrap();
        let (exit_code, stdout) = self
            .answers
            .get(*dev)
            .cloned()
            .unwrap_or((Some(1), b"{}".to_vec()));
        Ok(CommandOutput { exit_code, stdout })
    }
}

fn fixture(name: &str) -> Vec<u8> {
    fs::read(format!(
        "{}/tests/fixtures/smartctl/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A fake /proc and /sys: the store (a real directory, so statvfs works) is
/// mounted from `source` (`major:minor`), whose sysfs entries `build` lays out.
struct Tree {
    root: tempfile::TempDir,
    store: PathBuf,
}

impl Tree {
    fn new(mount_line: impl Fn(&Path) -> String) -> Tree {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("store");
        fs::create_dir_all(&store).unwrap();
        let store = fs::canonicalize(&store).unwrap();
        fs::create_dir_all(root.path().join("proc/self")).unwrap();
        fs::write(
            root.path().join("proc/self/mountinfo"),
            format!(
                "27 1 0:99 / / rw,relatime - ext4 /dev/root rw\n{}\n",
                mount_line(&store)
            ),
        )
        .unwrap();
        Tree { root, store }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// `sys/devices/<path>` as a directory, linked from `sys/dev/block/<mm>` and
    /// `sys/class/block/<name>` (and `sys/block/<name>` for a whole disk).
    fn block(&self, path: &str, mm: &str) {
        let dir = self.p(&format!("sys/devices/{path}"));
        fs::create_dir_all(&dir).unwrap();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        for link in [
            format!("sys/dev/block/{mm}"),
            format!("sys/class/block/{name}"),
        ] {
            let l = self.p(&link);
            fs::create_dir_all(l.parent().unwrap()).unwrap();
            symlink(&dir, l).unwrap();
        }
        // A whole disk's directory sits in a `block/` directory; a partition's in
        // its disk's.
        if dir.parent().unwrap().file_name().unwrap() == "block" {
            let l = self.p(&format!("sys/block/{name}"));
            fs::create_dir_all(l.parent().unwrap()).unwrap();
            symlink(&dir, l).unwrap();
        }
    }

    fn storage(&self, runner: Canned) -> (LinuxStorage, Arc<Canned>) {
        let runner = Arc::new(runner);
        // The store is a real directory of whatever disk the tests run on, whose
        // fill is not theirs to judge (the development VM's is 100 % by df's
        // measure): no AlmostFull unless a test asks for it.
        let s = LinuxStorage::new(&self.store)
            .with_root(self.root.path())
            .with_runner(runner.clone())
            .with_thresholds(NO_FILL_ALARM);
        (s, runner)
    }
}

const NO_FILL_ALARM: Thresholds = Thresholds {
    almost_full_percent: 101,
    min_available_bytes: 0,
    wear_percent: 90,
    max_temperature_celsius: 60,
};

const SATA: &str = "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda";

fn sata_tree(opts: &str, super_opts: &str) -> Tree {
    let t = Tree::new(|store| {
        format!(
            "30 27 8:3 / {} {opts} - ext4 /dev/sda3 {super_opts}",
            store.display()
        )
    });
    t.block(SATA, "8:0");
    t.block(&format!("{SATA}/sda3"), "8:3");
    t.write(&format!("sys/devices/{SATA}/sda3/partition"), "3\n");
    t.write(&format!("sys/devices/{SATA}/device/ioerr_cnt"), "0x0\n");
    t.write("sys/fs/ext4/sda3/errors_count", "0\n");
    t
}

#[test]
fn healthy_sata_ssd() {
    let t = sata_tree("rw,noatime", "rw,errors=remount-ro");
    let mut c = Canned::default();
    c.answers
        .insert("/dev/sda".into(), (Some(0), fixture("ata-ssd.json")));
    let (s, runner) = t.storage(c);
    let r = s.probe();
    assert!(r.is_healthy(), "{:?}", r.alarms);
    assert_eq!(r.path, t.store);
    let m = r.mount.as_ref().unwrap();
    assert_eq!(m.mount_point, t.store);
    assert_eq!(m.source, "/dev/sda3");
    assert!(!m.read_only);
    assert_eq!(r.block_device.as_deref(), Some("sda3"));
    assert_eq!(r.disk.as_deref(), Some("sda"));
    let fill = r.fill.unwrap();
    assert!(fill.total_bytes > 0 && fill.used_bytes <= fill.total_bytes);
    assert_eq!(
        r.io_errors,
        vec![
            IoErrorCount {
                source: "/sys/block/sda/device/ioerr_cnt".into(),
                count: 0
            },
            IoErrorCount {
                source: "/sys/fs/ext4/sda3/errors_count".into(),
                count: 0
            },
        ]
    );
    let Smart::Read(d) = &r.smart else {
        panic!("{:?}", r.smart)
    };
    assert_eq!(d.power_on_hours, Some(8761));
    assert_eq!(
        *runner.asked.lock().unwrap(),
        ["smartctl --json -a /dev/sda"]
    );
}

#[test]
fn remounted_read_only_with_errors() {
    // ext4 errors=remount-ro: the super block turns ro, the mount's own flags not.
    let t = sata_tree("rw,noatime", "ro,errors=remount-ro");
    t.write(&format!("sys/devices/{SATA}/device/ioerr_cnt"), "0x1a\n");
    t.write("sys/fs/ext4/sda3/errors_count", "3\n");
    let mut c = Canned::default();
    c.answers.insert(
        "/dev/sda".into(),
        (Some(216), fixture("ata-hdd-failing.json")),
    );
    let (s, _) = t.storage(c);
    let r = s.probe();
    assert!(r.mount.as_ref().unwrap().read_only);
    assert_eq!(r.io_error_count(), 29);
    assert_eq!(
        &r.alarms[..3],
        &[
            Alarm::ReadOnly,
            Alarm::IoErrors { count: 29 },
            Alarm::SmartFailed
        ]
    );
    assert!(
        r.alarms[3..]
            .iter()
            .all(|a| matches!(a, Alarm::SmartWarning { .. }))
    );
    assert_eq!(r.worst(), Some(crate::storage::Severity::Critical));
}

#[test]
fn nvme_partition_reads_the_namespace() {
    let t = Tree::new(|store| {
        format!(
            "32 27 259:2 / {} rw,relatime - ext4 /dev/nvme0n1p2 rw",
            store.display()
        )
    });
    let ns = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1";
    t.block(ns, "259:0");
    t.block(&format!("{ns}/nvme0n1p2"), "259:2");
    t.write(&format!("sys/devices/{ns}/nvme0n1p2/partition"), "2\n");
    let mut c = Canned::default();
    c.answers
        .insert("/dev/nvme0n1".into(), (Some(64), fixture("nvme.json")));
    let (s, _) = t.storage(c);
    let r = s.probe();
    assert_eq!(r.disk.as_deref(), Some("nvme0n1"));
    assert!(r.is_healthy(), "{:?}", r.alarms);
    // No ioerr_cnt on NVMe; no ext4 directory in this tree: no counters.
    assert!(r.io_errors.is_empty());
}

#[test]
fn luks_on_a_partition_is_followed_to_its_disk() {
    let t = Tree::new(|store| {
        format!(
            "33 27 253:0 / {} rw,relatime - ext4 /dev/mapper/data rw",
            store.display()
        )
    });
    t.block(SATA, "8:0");
    t.block(&format!("{SATA}/sda3"), "8:3");
    t.write(&format!("sys/devices/{SATA}/sda3/partition"), "3\n");
    t.block("virtual/block/dm-0", "253:0");
    fs::create_dir_all(t.p("sys/devices/virtual/block/dm-0/slaves")).unwrap();
    symlink(
        t.p(&format!("sys/devices/{SATA}/sda3")),
        t.p("sys/devices/virtual/block/dm-0/slaves/sda3"),
    )
    .unwrap();
    t.write("sys/fs/ext4/dm-0/errors_count", "0\n");
    let mut c = Canned::default();
    c.answers
        .insert("/dev/sda".into(), (Some(0), fixture("ata-ssd.json")));
    let (s, _) = t.storage(c);
    let r = s.probe();
    assert_eq!(r.block_device.as_deref(), Some("dm-0"));
    assert_eq!(r.disk.as_deref(), Some("sda"));
    assert!(matches!(r.smart, Smart::Read(_)));
    assert_eq!(r.io_errors[0].source, "/sys/fs/ext4/dm-0/errors_count");
}

#[test]
fn no_smart_is_not_an_alarm() {
    // An SD card: smartctl cannot tell its type.
    let t = Tree::new(|store| {
        format!(
            "34 27 179:2 / {} rw,relatime - ext4 /dev/mmcblk0p2 rw",
            store.display()
        )
    });
    let sd = "platform/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0";
    t.block(sd, "179:0");
    t.block(&format!("{sd}/mmcblk0p2"), "179:2");
    t.write(&format!("sys/devices/{sd}/mmcblk0p2/partition"), "2\n");
    let virtio = String::from_utf8(fixture("virtio-no-smart.json"))
        .unwrap()
        .replace("/dev/vda", "/dev/mmcblk0");
    let mut c = Canned::default();
    c.answers
        .insert("/dev/mmcblk0".into(), (Some(1), virtio.into_bytes()));
    let (s, _) = t.storage(c);
    let r = s.probe();
    assert!(r.is_healthy(), "{:?}", r.alarms);
    assert_eq!(
        r.smart,
        Smart::NotAvailable {
            reason: "/dev/mmcblk0: Unable to detect device type".into()
        }
    );

    // smartctl not installed.
    let t = sata_tree("rw", "rw");
    let (s, runner) = t.storage(Canned {
        missing: true,
        ..Canned::default()
    });
    let r = s.probe();
    assert!(r.is_healthy(), "{:?}", r.alarms);
    assert_eq!(
        r.smart,
        Smart::NotAvailable {
            reason: "smartctl is not installed".into()
        }
    );
    assert_eq!(runner.asked.lock().unwrap().len(), 1);
}

#[test]
fn a_store_on_tmpfs_has_no_disk() {
    let t = Tree::new(|store| format!("31 27 0:30 / {} rw - tmpfs tmpfs rw", store.display()));
    let (s, runner) = t.storage(Canned::default());
    let r = s.probe();
    assert!(r.is_healthy(), "{:?}", r.alarms);
    assert_eq!(r.disk, None);
    assert!(matches!(r.smart, Smart::NotAvailable { .. }));
    assert!(runner.asked.lock().unwrap().is_empty());
}

#[test]
fn what_cannot_be_read_is_unknown() {
    // No mountinfo at all; a store path that does not exist.
    let root = tempfile::tempdir().unwrap();
    let s = LinuxStorage::new(root.path().join("nowhere"))
        .with_root(root.path())
        .with_thresholds(NO_FILL_ALARM)
        .with_runner(Arc::new(Canned::default()));
    let r = s.probe();
    let kinds: Vec<&str> = r.alarms.iter().map(Alarm::kind).collect();
    assert_eq!(kinds, ["unknown", "unknown"], "{:?}", r.alarms);
    assert!(r.alarms[0].to_string().contains("statvfs"));
    assert!(r.alarms[1].to_string().contains("mountinfo"));

    // A garbled counter, and smartctl printing no JSON.
    let t = sata_tree("rw", "rw");
    t.write(&format!("sys/devices/{SATA}/device/ioerr_cnt"), "garbage\n");
    let mut c = Canned::default();
    c.answers
        .insert("/dev/sda".into(), (Some(2), b"smartctl: oops".to_vec()));
    let (s, _) = t.storage(c);
    let r = s.probe();
    let kinds: Vec<&str> = r.alarms.iter().map(Alarm::kind).collect();
    assert_eq!(kinds, ["unknown", "unknown"], "{:?}", r.alarms);
    assert!(r.alarms[0].to_string().contains("ioerr_cnt: not a number"));
    assert!(r.alarms[1].to_string().contains("printed no JSON"));
}

#[test]
fn almost_full_follows_the_threshold() {
    let t = sata_tree("rw", "rw");
    let mut c = Canned::default();
    c.answers
        .insert("/dev/sda".into(), (Some(0), fixture("ata-ssd.json")));
    let (s, _) = t.storage(c);
    let s = s.with_thresholds(Thresholds {
        almost_full_percent: 0,
        ..Thresholds::default()
    });
    let r = s.probe();
    let used = r.fill.unwrap().used_percent;
    assert_eq!(r.alarms, vec![Alarm::AlmostFull { used_percent: used }]);
}

/// The real system, as far as this machine has one: whatever holds the temporary
/// directory is found in the real mountinfo, its fill is read, and the real
/// smartctl (installed by scripts/install-deps.sh) reads its disk. On the
/// development VM that is a virtio disk: SMART not available, no alarm.
#[test]
fn the_real_system_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let r = LinuxStorage::new(dir.path())
        .with_thresholds(NO_FILL_ALARM)
        .probe();
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    assert!(r.fill.is_some() && r.mount.is_some(), "{r:?}");
    assert!(
        !r.alarms.iter().any(|a| matches!(a, Alarm::Unknown { .. })),
        "{:?}",
        r.alarms
    );
}

#[test]
fn system_commands_report_exit_status_and_timeouts() {
    let run = SystemCommands::default();
    let out = run
        .run("sh", &["-c", "printf '{\"a\":1}'; exit 216"])
        .unwrap();
    assert_eq!(out.exit_code, Some(216));
    assert_eq!(out.stdout, b"{\"a\":1}");
    let e = run.run("ringfence-no-such-program", &[]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let slow = SystemCommands {
        timeout: Duration::from_millis(100),
    };
    let e = slow.run("sleep", &["10"]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
}
