//! Prometheus counters of the viewer-api, served at `/api/v1/metrics` to callers with
//! the system-health right. Counters only count: no user names, no camera ids of
//! requests, nothing from the footage.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub logins: Family<Labels, Counter>,
    pub footage_requests: Family<Labels, Counter>,
    pub footage_bytes: Counter,
    pub audit_failures: Counter,
    /// The access log's last sequence number (set when the metrics are read).
    pub access_log_seq: Gauge,
    syslog_connected: Gauge,
    syslog_forwarded_seq: Gauge,
    syslog: std::sync::OnceLock<std::sync::Arc<recorder::syslog::Status>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ringfence_viewer");
        let logins = Family::<Labels, Counter>::default();
        registry.register("logins", "Login attempts by outcome", logins.clone());
        let footage_requests = Family::<Labels, Counter>::default();
        registry.register(
            "footage_requests",
            "Footage requests by outcome (allowed, denied)",
            footage_requests.clone(),
        );
        let footage_bytes = Counter::default();
        registry.register(
            "footage_bytes",
            "Bytes of footage sent",
            footage_bytes.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "audit_append_failures",
            "Access-log entries that could not be written (requests refused)",
            audit_failures.clone(),
        );
        let access_log_seq = Gauge::default();
        registry.register(
            "access_log_seq",
            "The access log's last sequence number",
            access_log_seq.clone(),
        );
        let syslog_connected = Gauge::default();
        registry.register(
            "syslog_connected",
            "1 while connected to the log collector ([syslog]); 0 when not",
            syslog_connected.clone(),
        );
        let syslog_forwarded_seq = Gauge::default();
        registry.register(
            "syslog_forwarded_seq",
            "The last access-log entry sent to the log collector (alarm when it lags access_log_seq)",
            syslog_forwarded_seq.clone(),
        );
        Metrics {
            registry,
            logins,
            footage_requests,
            footage_bytes,
            audit_failures,
            access_log_seq,
            syslog_connected,
            syslog_forwarded_seq,
            syslog: std::sync::OnceLock::new(),
        }
    }

    /// Reports the forwarding of the access log from now on.
    pub fn set_syslog(&self, status: std::sync::Arc<recorder::syslog::Status>) {
        let _ = self.syslog.set(status);
    }

    pub fn syslog(&self) -> Option<&recorder::syslog::Status> {
        self.syslog.get().map(|s| s.as_ref())
    }

    pub fn encode(&self) -> String {
        if let Some(st) = self.syslog() {
            use std::sync::atomic::Ordering;
            self.syslog_connected
                .set(i64::from(st.connected.load(Ordering::SeqCst)));
            self.syslog_forwarded_seq
                .set(st.cursor.load(Ordering::SeqCst));
        }
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}
