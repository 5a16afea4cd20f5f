//! Prints the storage health report for a path as JSON, as the health endpoint will
//! show it: `cargo run -p hardware --example storage_probe -- /var/lib/ringfence`.
//! (SMART needs the rights to open the disk: run as root to see it.)

use hardware::storage::{LinuxStorage, StorageHealth};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let report = LinuxStorage::new(path).probe();
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("a report serialises")
    );
    for a in &report.alarms {
        eprintln!("{:?}: {a}", a.severity());
    }
}
