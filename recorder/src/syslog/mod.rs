//! Forwarding off the box: the access log's entries and its signed checkpoints sent to
//! the State's log collector as syslog over TLS (RFC 5424 messages, RFC 5425 framing).
//!
//! The checkpoints make cutting or rewriting the log detectable on the box; a copy
//! kept by someone else makes it detectable even if the whole box is taken. Each
//! process forwards what it owns: the viewer-api its log's entries, the recorder the
//! checkpoints it signed (so a compromised viewer-api cannot hold them back).
//!
//! Delivery is at least once, in order, and survives restarts and outages: each
//! forwarder keeps a cursor file (the last record written to the collector) and, after
//! any break, starts again after it. RFC 5425 has no acknowledgement, so records in
//! flight when the collector dies unannounced can be lost; a collector restart is seen
//! before the next batch (its TLS close), and every later checkpoint names the log's
//! head, so a hole in what was received is visible at the collector.
//!
//! Each message carries every field the entry's hash covers, so the collector can
//! recompute the chain (`viewer-api/src/audit/mod.rs`, `entry_hash`) without the box.

mod forward;

pub use forward::{Feed, Forwarder, Status};

use std::path::PathBuf;

use serde::Deserialize;

/// `[syslog]`: where the access log and its checkpoints are forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The collector, `host:port` (RFC 5425's port is 6514).
    pub address: String,
    /// The CA certificate(s), PEM, that the collector's certificate must chain to.
    pub ca_file: PathBuf,
    /// The name the collector's certificate must carry; default the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// This box's certificate and key (PEM) when the collector authenticates senders.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The HOSTNAME field; default the system's host name.
    #[serde(default)]
    pub hostname: Option<String>,
}

impl SyslogConfig {
    pub fn validate(&self) -> Result<(), String> {
        let (host, port) = self
            .address
            .rsplit_once(':')
            .ok_or_else(|| format!("syslog.address = {:?} needs host:port", self.address))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!(
                "syslog.address = {:?} needs host:port with a port 1..=65535",
                self.address
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("syslog: give client_cert and client_key together, or neither".into());
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 255 || !h.bytes().all(|b| (33..=126).contains(&b)))
        {
            return Err(format!(
                "syslog.hostname = {h:?} must be 1 to 255 printable ASCII characters"
            ));
        }
        Ok(())
    }

    /// The name checked in the collector's certificate.
    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or_else(|| {
            let host = self.address.rsplit_once(':').map_or("", |(h, _)| h);
            host.trim_start_matches('[').trim_end_matches(']')
        })
    }
}

/// RFC 5424 facility "log audit".
pub const FACILITY_LOG_AUDIT: u8 = 13;
/// Our structured-data IDs carry RFC 5612's enterprise number for documentation:
/// Ringfence has none of its own.
pub const ENTERPRISE: &str = "32473";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning = 4,
    Notice = 5,
    Informational = 6,
}

/// One record to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub time_unix_ms: i64,
    pub severity: Severity,
    /// MSGID, e.g. `access`, `checkpoint`.
    pub msgid: &'static str,
    /// The structured data's name, before `@` and the enterprise number.
    pub sd_name: &'static str,
    /// Its parameters, in order; absent fields are left out (absent ≠ empty).
    pub params: Vec<(&'static str, String)>,
    /// The free text, for people reading the collector.
    pub text: String,
}

/// Who sends: the header fields that do not change between messages.
#[derive(Debug, Clone)]
pub struct Origin {
    pub hostname: String,
    pub app_name: &'static str,
    pub procid: u32,
}

impl Origin {
    pub fn new(config: &SyslogConfig, app_name: &'static str) -> Origin {
        let hostname = config.hostname.clone().unwrap_or_else(|| {
            let h = rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned();
            header_field(&h, 255)
        });
        Origin {
            hostname,
            app_name,
            procid: std::process::id(),
        }
    }
}

/// A header field as RFC 5424 allows it: printable ASCII without spaces, at most
/// `max` bytes, `-` when nothing is left.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() { "-".into() } else { f }
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3).
fn escape_param(v: &str, out: &mut String) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The RFC 5424 message (without framing).
pub fn format_5424(m: &Message, origin: &Origin) -> String {
    let pri = u16::from(FACILITY_LOG_AUDIT) * 8 + m.severity as u16;
    let time = chrono::DateTime::from_timestamp_millis(m.time_unix_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let mut s = format!(
        "<{pri}>1 {time} {} {} {} {} [{}@{ENTERPRISE}",
        header_field(&origin.hostname, 255),
        header_field(origin.app_name, 48),
        origin.procid,
        header_field(m.msgid, 32),
        m.sd_name,
    );
    for (name, value) in &m.params {
        s.push(' ');
        s.push_str(name);
        s.push_str("=\"");
        escape_param(value, &mut s);
        s.push('"');
    }
    s.push(']');
    if !m.text.is_empty() {
        // UTF-8 text is marked by a BOM (RFC 5424 §6.4).
        s.push_str(" \u{feff}");
        s.extend(m.text.chars().map(|c| if c.is_control() { ' ' } else { c }));
    }
    s
}

/// RFC 5425 octet-counting framing: `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// A signed checkpoint as forwarded by the recorder: `key` is the device's public key
/// (hex) the signature verifies with.
pub fn checkpoint_message(
    c: &crate::checkpoint::SignedCheckpoint,
    public_key: &[u8; 32],
) -> Message {
    let k = &c.checkpoint;
    Message {
        time_unix_ms: k.time_unix_ms,
        severity: Severity::Informational,
        msgid: "checkpoint",
        sd_name: "checkpoint",
        params: vec![
            ("seq", k.seq.to_string()),
            ("hash", k.hash.clone()),
            ("time_unix_ms", k.time_unix_ms.to_string()),
            ("signature", c.signature.clone()),
            ("key", hex::encode(public_key)),
        ],
        text: format!("access log checkpoint: entry {} has hash {}", k.seq, k.hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            hostname: "box 1".into(),
            app_name: "ringfence-api",
            procid: 42,
        }
    }

    #[test]
    fn a_message_is_rfc5424_with_escaped_parameters_and_octet_counted() {
        let m = Message {
            time_unix_ms: 1_764_806_400_123,
            severity: Severity::Notice,
            msgid: "access",
            sd_name: "access",
            params: vec![
                ("seq", "7".into()),
                ("purpose", r#"a "quote" \ and ] é"#.into()),
            ],
            text: "alice viewed gate\n(forged line)".into(),
        };
        let s = format_5424(&m, &origin());
        assert_eq!(
            s,
            "<109>1 2025-12-04T00:00:00.123Z box1 ringfence-api 42 access \
             [access@32473 seq=\"7\" purpose=\"a \\\"quote\\\" \\\\ and \\] é\"] \
             \u{feff}alice viewed gate (forged line)"
        );
        let mut framed = Vec::new();
        frame(&s, &mut framed);
        let (len, rest) = std::str::from_utf8(&framed)
            .unwrap()
            .split_once(' ')
            .unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert_eq!(rest, s);
    }

    #[test]
    fn config_errors_are_named() {
        let mut c = SyslogConfig {
            address: "collector.example:6514".into(),
            ca_file: "/etc/ca.pem".into(),
            server_name: None,
            client_cert: None,
            client_key: None,
            hostname: None,
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.server_name(), "collector.example");
        c.address = "[::1]:6514".into();
        assert_eq!(c.server_name(), "::1");
        c.address = "collector.example".into();
        assert!(c.validate().unwrap_err().contains("host:port"));
        c.address = "collector.example:0".into();
        assert!(c.validate().unwrap_err().contains("port"));
        c.address = "collector.example:6514".into();
        c.client_cert = Some("/etc/c.pem".into());
        assert!(c.validate().unwrap_err().contains("together"));
        c.client_cert = None;
        c.hostname = Some("a b".into());
        assert!(c.validate().unwrap_err().contains("printable"));
    }
}
