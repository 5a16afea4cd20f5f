//! The shipped Prometheus alert rules (`image/monitoring/ringfence-alerts.yml`) name
//! only metrics that exist: a renamed metric must not leave an alert that can never
//! fire.

use std::collections::BTreeSet;

/// The metric names of an exposition (from its `# TYPE` lines, with the suffixes a
/// counter's or histogram's samples carry).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            for suffix in ["", "_total", "_bucket", "_sum", "_count", "_created"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[test]
fn every_metric_an_alert_names_exists() {
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../image/monitoring/ringfence-alerts.yml"),
    )
    .unwrap();
    // Families with labels are shown once they have a child: one camera's.
    let rec = recorder::metrics::Metrics::new();
    let cam = recorder::metrics::Metrics::cam("gate");
    rec.set_state("gate", "recording");
    let _ = rec.frames_dropped.get_or_create(&cam);
    let _ = rec.write_errors.get_or_create(&cam);
    let _ = rec
        .storage_alarm
        .get_or_create(&recorder::metrics::AlarmLabel {
            kind: "read_only".into(),
        });
    let mut known = exposed(&rec.encode());
    known.extend(exposed(&viewer_api::metrics::Metrics::new().encode()));
    assert!(
        known.contains("ringfence_frames_dropped_total"),
        "{known:?}"
    );
    let mut named = BTreeSet::new();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        let mut rest = line;
        while let Some(i) = rest.find("ringfence_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            named.insert(name);
        }
    }
    assert!(named.len() >= 8, "{named:?}");
    for name in &named {
        assert!(
            known.contains(name),
            "alert rule names unknown metric {name}"
        );
    }
}
