//! The viewer-api's part of the shared TOML file: the `[api]` table, parsed strictly.
//!
//! The recorder's `Config` keeps `[api]` as a raw table so that each process validates
//! its own section; a typo here must stop the service at start, not fall back to a
//! default that might, say, listen on the wrong address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use recorder::config::Config;
use serde::Deserialize;

pub const DEFAULT_ADDR: &str = "0.0.0.0:8443";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The viewer-api's own state (users, sessions, the access log, exports, its TLS
    /// pair): a directory the recorder does not write; default `viewer-api` beside the
    /// store (`<parent of storage.path>/viewer-api`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The recorder's local service (Unix socket): footage, holds, health, signatures
    /// and log checkpoints all come through it; default
    /// the recorder's `[service] socket`.
    #[serde(default)]
    pub recorder_socket: Option<PathBuf>,
    /// The access log; default `<state_dir>/audit.sqlite`.
    #[serde(default)]
    pub audit_db: Option<PathBuf>,
    /// How long a finished export stays downloadable (humantime); default 7 days.
    #[serde(default)]
    pub export_ttl: Option<String>,
    /// The site's IANA time zone: the console shows times in it (UTC on hover).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// The console's time zone when `[api] time_zone` is not set.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Luxembourg";

impl ApiConfig {
    pub fn time_zone(&self) -> &str {
        self.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE)
    }

    /// `export_ttl`, parsed (validated by [`parse_api`]).
    pub fn export_ttl(&self) -> std::time::Duration {
        self.export_ttl
            .as_deref()
            .and_then(|s| humantime::parse_duration(s).ok())
            .unwrap_or(crate::export::DEFAULT_TTL)
    }
}

/// Everything the viewer-api takes from the config file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub recorder: Config,
    pub api: ApiConfig,
}

impl Settings {
    pub fn load(path: &Path) -> anyhow::Result<Settings> {
        let recorder = Config::load(path)?;
        let api = parse_api(recorder.api.as_ref())
            .map_err(|m| anyhow::anyhow!("config {}: [api] {m}", path.display()))?;
        Ok(Settings { recorder, api })
    }

    pub fn store(&self) -> &Path {
        &self.recorder.storage.path
    }

    /// The recorder service's socket: `[api] recorder_socket`, else the recorder's
    /// own `[service] socket`.
    pub fn recorder_socket(&self) -> PathBuf {
        self.api
            .recorder_socket
            .clone()
            .unwrap_or_else(|| self.recorder.service_socket())
    }

    /// See [`ApiConfig::state_dir`].
    pub fn state_dir(&self) -> PathBuf {
        self.api.state_dir.clone().unwrap_or_else(|| {
            let store = self.store();
            store
                .parent()
                .map(|p| p.join("viewer-api"))
                .unwrap_or_else(|| store.join("viewer-api"))
        })
    }

    pub fn users_db(&self) -> PathBuf {
        self.state_dir().join("users.sqlite")
    }

    pub fn audit_db(&self) -> PathBuf {
        self.api
            .audit_db
            .clone()
            .unwrap_or_else(|| self.state_dir().join("audit.sqlite"))
    }
}

pub fn parse_api(table: Option<&toml::Table>) -> Result<ApiConfig, String> {
    let Some(t) = table else {
        return Ok(ApiConfig {
            addr: DEFAULT_ADDR.parse().expect("valid default"),
            tls_cert: None,
            tls_key: None,
            state_dir: None,
            recorder_socket: None,
            audit_db: None,
            export_ttl: None,
            time_zone: None,
        });
    };
    let c = ApiConfig::deserialize(toml::Value::Table(t.clone()))
        .map_err(|e| e.to_string().trim_end().to_string())?;
    if c.tls_cert.is_some() != c.tls_key.is_some() {
        return Err(
            "give both tls_cert and tls_key, or neither (a self-signed pair is then made)".into(),
        );
    }
    if let Some(t) = &c.export_ttl {
        match humantime::parse_duration(t) {
            Ok(d) if d.as_secs() >= 60 && d <= crate::export::MAX_TTL => {}
            Ok(_) => return Err(format!("export_ttl = {t:?} must be between 1m and 30d")),
            Err(e) => return Err(format!("export_ttl = {t:?} is not a duration ({e})")),
        }
    }
    if let Some(tz) = &c.time_zone {
        let ok = !tz.is_empty()
            && tz.len() <= 64
            && tz
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_/+-".contains(ch));
        if !ok {
            return Err(format!(
                "time_zone = {tz:?} is not an IANA time zone name such as \"Europe/Luxembourg\""
            ));
        }
    }
    for p in [
        &c.tls_cert,
        &c.tls_key,
        &c.audit_db,
        &c.state_dir,
        &c.recorder_socket,
    ]
    .into_iter()
    .flatten()
    {
        if p.as_os_str().is_empty() {
            return Err("paths must not be empty".into());
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ApiConfig, String> {
        let t: toml::Table = toml::from_str(s).unwrap();
        parse_api(Some(&t))
    }

    #[test]
    fn contract_parses_and_typos_fail() {
        let c = parse(
            "addr = \"0.0.0.0:8443\"\ntls_cert = \"/etc/ringfence/tls.crt\"\ntls_key = \"/etc/ringfence/tls.key\"",
        )
        .unwrap();
        assert_eq!(c.addr.port(), 8443);
        assert!(parse("addr = \"0.0.0.0:8443\"\naudit_db = \"/x/a.sqlite\"").is_ok());
        assert!(
            parse("addr = \"0.0.0.0:8443\"\ntls_crt = \"x\"")
                .unwrap_err()
                .contains("tls_crt")
        );
        assert!(parse("addr = \"0.0.0.0:8443\"\ntls_cert = \"x\"").is_err());
        assert!(parse("addr = \"nowhere\"").is_err());
        assert!(parse("tls_cert = \"x\"\ntls_key = \"y\"").is_err());
        assert_eq!(parse_api(None).unwrap().addr.port(), 8443);
        assert_eq!(parse_api(None).unwrap().time_zone(), "Europe/Luxembourg");
        let c = parse("addr = \"0.0.0.0:8443\"\ntime_zone = \"America/New_York\"").unwrap();
        assert_eq!(c.time_zone(), "America/New_York");
        assert!(
            parse("addr = \"0.0.0.0:8443\"\ntime_zone = \"<script>\"")
                .unwrap_err()
                .contains("time_zone")
        );
    }
}
