//! The one TOML file shared by the recorder and the viewer-api.
//!
//! Parsing is strict (`deny_unknown_fields`) because a typo in a retention or a camera
//! key must stop the box at install time, not silently record with defaults. The
//! `[api]` table belongs to the viewer-api, which validates it; the recorder only
//! tolerates it.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The longest any footage may be kept without a hold: the legal limit.
pub const MAX_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("camera {camera:?}: cannot read password_file {path}: {source}")]
    PasswordFile {
        camera: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub storage: StorageConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// The recorder's local service to the viewer-api (`recorder::service`).
    #[serde(default)]
    pub service: ServiceConfig,
    /// The log collector the access log and its checkpoints are forwarded to
    /// (`recorder::syslog`); none: kept on the box only.
    #[serde(default)]
    pub syslog: Option<crate::syslog::SyslogConfig>,
    /// `[tamper]`: the case-open switch (`chip`, `line_offset`, `active_low`, `bias`,
    /// `debounce_ms`); absent on boxes without one.
    #[serde(default)]
    pub tamper: Option<hardware::tamper::GpioSwitchConfig>,
    /// The viewer-api's section; validated by the viewer-api.
    #[serde(default)]
    pub api: Option<toml::Table>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub path: PathBuf,
    #[serde(default = "default_retention", with = "humantime_serde_compat")]
    pub retention: Duration,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    #[serde(default = "default_segment_secs")]
    pub segment_secs: u32,
    #[serde(default = "default_sync_interval_ms")]
    pub sync_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    #[serde(default = "default_kek_file")]
    pub kek_file: PathBuf,
    /// The device's Ed25519 export-signing key; default `signing.key` beside `kek_file`.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Where the keys are kept: `file` (root-only files) or `tpm` (the files hold the
    /// keys sealed by the box's TPM 2.0 to its boot chain; nothing else can open them).
    #[serde(default)]
    pub provider: KeyStorage,
    /// The TPM's TSS TCTI (`tpm` only); default `device:/dev/tpmrm0`.
    #[serde(default)]
    pub tpm_tcti: Option<String>,
    /// The PCRs the keys are sealed to (`tpm` only), e.g. `sha256:7` (the default: the
    /// secure boot state) or `sha256:0,2,4,7`.
    #[serde(default)]
    pub tpm_pcrs: Option<String>,
}

/// `[keys] provider`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStorage {
    #[default]
    File,
    Tpm,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            kek_file: default_kek_file(),
            signing_key_file: None,
            provider: KeyStorage::File,
            tpm_tcti: None,
            tpm_pcrs: None,
        }
    }
}

impl KeysConfig {
    /// Where the device signing key lives.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| {
            self.kek_file
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join("signing.key")
        })
    }
}

/// `[service]`: where the recorder answers the viewer-api, and whom it answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The Unix socket; default `recorder.sock` beside the store (in the store's
    /// parent directory, which the viewer-api's user must be able to enter).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Numeric user ids allowed to connect, besides the recorder's own (checked by
    /// the kernel's peer credentials, `SO_PEERCRED`): the viewer-api's user.
    #[serde(default)]
    pub allow_uids: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub addr: std::net::SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default, with = "humantime_serde_compat::option")]
    pub retention: Option<Duration>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

impl fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CameraConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("transport", &self.transport)
            .field("retention", &self.retention)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl CameraConfig {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// The retention that applies to this camera.
    pub fn effective_retention(&self, storage: &StorageConfig) -> Duration {
        self.retention.unwrap_or(storage.retention)
    }

    /// The password, read from `password_file` when given. Never logged.
    pub fn resolve_password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        if let Some(path) = &self.password_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
                    camera: self.id.clone(),
                    path: path.clone(),
                    source,
                })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(None)
    }
}

fn default_retention() -> Duration {
    MAX_RETENTION
}
fn default_max_bytes() -> u64 {
    2_000_000_000_000
}
fn default_min_free_bytes() -> u64 {
    1 << 30
}
fn default_segment_secs() -> u32 {
    60
}
fn default_sync_interval_ms() -> u64 {
    1000
}
fn default_kek_file() -> PathBuf {
    PathBuf::from("/etc/ringfence/kek")
}

/// humantime strings ("30d", "72h") for `Duration` fields.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration ({e})")))
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

impl Config {
    /// See [`ServiceConfig::socket`].
    pub fn service_socket(&self) -> PathBuf {
        self.service.socket.clone().unwrap_or_else(|| {
            let store = &self.storage.path;
            match store.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.join("recorder.sock"),
                _ => PathBuf::from("recorder.sock"),
            }
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.storage;
        if s.path.as_os_str().is_empty() {
            return Err("storage.path must not be empty".into());
        }
        check_retention("storage.retention", s.retention)?;
        if !(2..=300).contains(&s.segment_secs) {
            return Err(format!(
                "storage.segment_secs = {} is out of range 2..=300",
                s.segment_secs
            ));
        }
        if !(10..=60_000).contains(&s.sync_interval_ms) {
            return Err(format!(
                "storage.sync_interval_ms = {} is out of range 10..=60000",
                s.sync_interval_ms
            ));
        }
        if s.max_bytes == 0 {
            return Err("storage.max_bytes must be greater than 0".into());
        }
        let mut seen = HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            if !valid_camera_id(&c.id) {
                return Err(format!(
                    "cameras[{i}].id = {:?} is invalid: use 1 to 32 of a-z, 0-9 and -",
                    c.id
                ));
            }
            if !seen.insert(c.id.as_str()) {
                return Err(format!("duplicate camera id {:?}", c.id));
            }
            check_camera_url(&c.url).map_err(|m| format!("camera {:?}: url {m}", c.id))?;
            if c.password.is_some() && c.password_file.is_some() {
                return Err(format!(
                    "camera {:?}: give password or password_file, not both",
                    c.id
                ));
            }
            if (c.password.is_some() || c.password_file.is_some()) && c.username.is_none() {
                return Err(format!("camera {:?}: a password needs a username", c.id));
            }
            if let Some(r) = c.retention {
                check_retention(&format!("camera {:?} retention", c.id), r)?;
            }
            if c.max_bytes == Some(0) {
                return Err(format!(
                    "camera {:?}: max_bytes must be greater than 0",
                    c.id
                ));
            }
        }
        if let Some(s) = &self.syslog {
            s.validate()?;
        }
        self.validate_keys()?;
        if let Some(m) = &self.metrics
            && !m.addr.ip().is_loopback()
        {
            return Err(format!(
                "metrics.addr = {} must be a loopback address: it needs no sign-in; from afar, \
                 read the viewer-api's /api/v1/metrics (signed in), which includes the recorder's",
                m.addr
            ));
        }
        Ok(())
    }
}

impl Config {
    fn validate_keys(&self) -> Result<(), String> {
        let k = &self.keys;
        if k.provider == KeyStorage::File {
            if k.tpm_tcti.is_some() || k.tpm_pcrs.is_some() {
                return Err("keys.tpm_tcti and keys.tpm_pcrs need keys.provider = \"tpm\"".into());
            }
            return Ok(());
        }
        #[cfg(feature = "tpm")]
        if let Some(p) = &k.tpm_pcrs {
            p.parse::<hardware::PcrSelection>()
                .map_err(|e| format!("keys.tpm_pcrs = {p:?}: {e}"))?;
        }
        #[cfg(not(feature = "tpm"))]
        return Err(
            "keys.provider = \"tpm\", but this recorder was built without TPM support (feature `tpm`)"
                .into(),
        );
        #[cfg(feature = "tpm")]
        Ok(())
    }
}

fn check_retention(what: &str, r: Duration) -> Result<(), String> {
    if r > MAX_RETENTION {
        return Err(format!(
            "{what} = {} exceeds the legal maximum of 30 days; footage may be kept longer only under a hold",
            humantime::format_duration(r)
        ));
    }
    if r < Duration::from_secs(3600) {
        return Err(format!(
            "{what} = {} is below the minimum of 1 hour",
            humantime::format_duration(r)
        ));
    }
    Ok(())
}

pub fn valid_camera_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_camera_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if url.scheme() != "rtsp" {
        return Err(format!(
            "has scheme {:?}; only rtsp:// is supported",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; put them in username and password".into());
    }
    Ok(url)
}

pub fn camera_url(c: &CameraConfig) -> url::Url {
    check_camera_url(&c.url).expect("validated at load")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[storage]
path = "/var/lib/ringfence"
retention = "30d"
max_bytes = 2000000000000
segment_secs = 60
sync_interval_ms = 1000
[keys]
kek_file = "/etc/ringfence/kek"
[metrics]
addr = "127.0.0.1:9810"
[[cameras]]
id = "entrance"
name = "Entrance hall"
url = "rtsp://10.0.0.21:554/stream1"
username = "viewer"
password = "secret"
transport = "tcp"
[[cameras]]
id = "gate"
url = "rtsp://10.0.0.22/s"
retention = "72h"
max_bytes = 500000000000
[api]
addr = "0.0.0.0:8443"
"#;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn contract_example_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.cameras.len(), 2);
        assert_eq!(c.storage.retention, MAX_RETENTION);
        assert_eq!(c.cameras[1].retention, Some(Duration::from_secs(72 * 3600)));
        assert_eq!(c.cameras[0].transport, Transport::Tcp);
        assert_eq!(c.storage.min_free_bytes, 1 << 30);
        assert!(!format!("{:?}", c.cameras[0]).contains("secret"));
    }

    #[test]
    fn bad_inputs_get_clear_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "max_bytes = 2000000000000",
                "max_bytes = 2000000000000\ncolour = 1",
                "unknown field `colour`",
            ),
            (
                "id = \"gate\"",
                "id = \"entrance\"",
                "duplicate camera id \"entrance\"",
            ),
            ("id = \"gate\"", "id = \"Gate!\"", "is invalid"),
            ("rtsp://10.0.0.22/s", "http://10.0.0.22/s", "only rtsp://"),
            (
                "rtsp://10.0.0.22/s",
                "rtsp://u:p@10.0.0.22/s",
                "must not carry credentials",
            ),
            ("rtsp://10.0.0.22/s", "not a url", "is not a valid URL"),
            (
                "retention = \"30d\"",
                "retention = \"31d\"",
                "storage.retention",
            ),
            (
                "retention = \"72h\"",
                "retention = \"40d\"",
                "camera \"gate\" retention",
            ),
            (
                "retention = \"30d\"",
                "retention = \"soon\"",
                "is not a duration",
            ),
            ("segment_secs = 60", "segment_secs = 1", "segment_secs"),
            (
                "addr = \"127.0.0.1:9810\"",
                "addr = \"0.0.0.0:9810\"",
                "must be a loopback address",
            ),
            (
                "[keys]",
                "[syslog]\naddress = \"logs.example\"\nca_file = \"/ca.pem\"\n[keys]",
                "needs host:port",
            ),
            (
                "[keys]",
                "[syslog]\naddress = \"logs.example:6514\"\n[keys]",
                "missing field `ca_file`",
            ),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let err = parse(&GOOD.replacen(from, to, 1)).unwrap_err();
            assert!(err.contains(want), "{to}: got {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
