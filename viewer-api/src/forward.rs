//! The access log's entries as forwarded to the State's log collector (see
//! `recorder::syslog` for the transport and why). Every field the entry's hash covers
//! is a structured-data parameter, absent fields left out, so the collector can check
//! the chain on its own: `hash` is `entry_hash` of the others and `prev` is the hash
//! of the entry before.

use std::sync::Arc;

use recorder::syslog::{Feed, Message, Severity};

use crate::audit::{AuditLog, Entry};

pub struct AuditFeed(pub Arc<AuditLog>);

impl Feed for AuditFeed {
    fn after(&mut self, cursor: i64, limit: usize) -> anyhow::Result<Vec<(i64, Message)>> {
        Ok(self
            .0
            .after(cursor, limit)?
            .iter()
            .map(|e| (e.seq, entry_message(e)))
            .collect())
    }
}

pub fn entry_message(e: &Entry) -> Message {
    let mut params = vec![
        ("seq", e.seq.to_string()),
        ("at_ms", e.at_ms.to_string()),
        ("actor", e.actor.clone()),
        ("role", e.role.clone()),
        ("action", e.action.clone()),
    ];
    let optional = [
        ("camera", e.camera.clone()),
        ("from_ms", e.from_ms.map(|v| v.to_string())),
        ("to_ms", e.to_ms.map(|v| v.to_string())),
        ("purpose", e.purpose.clone()),
        ("case", e.case.clone()),
        ("client", e.client.clone()),
    ];
    params.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    params.extend([
        ("outcome", e.outcome.clone()),
        ("prev", e.prev_hash.clone()),
        ("hash", e.hash.clone()),
    ]);
    let mut text = format!("{} ({}) {}", e.actor, e.role, e.action);
    if let Some(c) = &e.camera {
        text += &format!(" camera {c}");
    }
    text += &format!(": {}", e.outcome);
    Message {
        time_unix_ms: e.at_ms,
        severity: if e.outcome == "allowed" {
            Severity::Notice
        } else {
            Severity::Warning
        },
        msgid: "access",
        sd_name: "access",
        params,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_entry_carries_every_hashed_field_and_leaves_absent_ones_out() {
        let mut e = Entry {
            seq: 3,
            at_ms: 1_764_806_400_000,
            actor: "alice".into(),
            role: "police".into(),
            action: "video.view".into(),
            camera: Some("gate".into()),
            from_ms: Some(1),
            to_ms: Some(2),
            purpose: None,
            case: Some(String::new()),
            client: Some("127.0.0.1".into()),
            outcome: "allowed".into(),
            prev_hash: "00".repeat(32),
            hash: String::new(),
        };
        e.hash = crate::audit::entry_hash(&e);
        let m = entry_message(&e);
        let get = |k: &str| {
            m.params
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
        };
        // Rebuild the entry from the message alone: the hash must come out the same.
        let back = Entry {
            seq: get("seq").unwrap().parse().unwrap(),
            at_ms: get("at_ms").unwrap().parse().unwrap(),
            actor: get("actor").unwrap(),
            role: get("role").unwrap(),
            action: get("action").unwrap(),
            camera: get("camera"),
            from_ms: get("from_ms").map(|v| v.parse().unwrap()),
            to_ms: get("to_ms").map(|v| v.parse().unwrap()),
            purpose: get("purpose"),
            case: get("case"),
            client: get("client"),
            outcome: get("outcome").unwrap(),
            prev_hash: get("prev").unwrap(),
            hash: String::new(),
        };
        assert_eq!(crate::audit::entry_hash(&back), e.hash);
        assert_eq!(get("hash").unwrap(), e.hash);
        assert_eq!(get("purpose"), None, "absent stays absent");
        assert_eq!(get("case").as_deref(), Some(""), "empty stays empty");
        assert_eq!(m.severity, Severity::Notice);
        e.outcome = "denied".into();
        assert_eq!(entry_message(&e).severity, Severity::Warning);
    }
}
