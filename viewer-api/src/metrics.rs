//! Prometheus counters of the viewer-api, served at `/api/v1/metrics` to callers with
//! the system-health right. Counters only count: no user names, no camera ids of
//! requests, nothing from the footage.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub logins: Family<Labels, Counter>,
    pub footage_requests: Family<Labels, Counter>,
    pub footage_bytes: Counter,
    pub audit_failures: Counter,
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
        Metrics {
            registry,
            logins,
            footage_requests,
            footage_bytes,
            audit_failures,
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}
