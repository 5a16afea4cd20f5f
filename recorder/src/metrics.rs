//! Prometheus metrics: how the site is watched from afar. A camera that stops, a disk
//! that fills or a writer that falls behind must show here before anyone asks.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CameraLabel {
    pub camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub camera: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeletionLabel {
    pub camera: String,
    /// `age`, `capacity` or `disk-full`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlarmLabel {
    /// `read_only`, `io_errors`, `smart_failed`, `smart_warning`, `almost_full`, `unknown`.
    pub kind: String,
}

/// The camera states, as exported and stored in the catalog.
pub const STATES: [&str; 3] = ["connecting", "recording", "offline"];

pub struct Metrics {
    registry: Registry,
    pub frames: Family<CameraLabel, Counter>,
    pub key_frames: Family<CameraLabel, Counter>,
    pub bytes_received: Family<CameraLabel, Counter>,
    pub bytes_written: Family<CameraLabel, Counter>,
    pub frames_dropped: Family<CameraLabel, Counter>,
    pub frames_stored: Family<CameraLabel, Counter>,
    pub reconnects: Family<CameraLabel, Counter>,
    pub write_errors: Family<CameraLabel, Counter>,
    pub segments_closed: Family<CameraLabel, Counter>,
    pub camera_state: Family<StateLabel, Gauge>,
    pub store_bytes: Gauge,
    pub write_seconds: Histogram,
    pub sync_seconds: Histogram,
    /// Retention (retention.rs): segments and bytes deleted, by camera and reason.
    pub segments_deleted: Family<DeletionLabel, Counter>,
    pub bytes_deleted: Family<DeletionLabel, Counter>,
    /// 1 while held footage alone keeps a scope over its capacity (nothing held is deleted).
    pub retention_alarm: Gauge,
    /// 1 while age retention refuses to act because the wall clock is not sane.
    pub retention_clock_refused: Gauge,
    pub holds_active: Gauge,
    /// The disk under the store (devices.rs): 1 per alarm kind in force.
    pub storage_alarm: Family<AlarmLabel, Gauge>,
    pub storage_used_percent: Gauge,
    pub storage_available_bytes: Gauge,
    pub storage_io_errors: Gauge,
    /// The case-open switch (devices.rs): 1 while an opening is latched.
    pub tamper_alarm: Gauge,
    /// 1 while the switch can be read.
    pub tamper_input_ok: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ringfence");
        let m = Metrics {
            frames: Family::default(),
            key_frames: Family::default(),
            bytes_received: Family::default(),
            bytes_written: Family::default(),
            frames_dropped: Family::default(),
            frames_stored: Family::default(),
            reconnects: Family::default(),
            write_errors: Family::default(),
            segments_closed: Family::default(),
            camera_state: Family::default(),
            store_bytes: Gauge::default(),
            write_seconds: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
            sync_seconds: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
            segments_deleted: Family::default(),
            bytes_deleted: Family::default(),
            retention_alarm: Gauge::default(),
            retention_clock_refused: Gauge::default(),
            holds_active: Gauge::default(),
            storage_alarm: Family::default(),
            storage_used_percent: Gauge::default(),
            storage_available_bytes: Gauge::default(),
            storage_io_errors: Gauge::default(),
            tamper_alarm: Gauge::default(),
            tamper_input_ok: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "frames",
            "Video frames received (from each session's first key frame)",
            m.frames.clone(),
        );
        registry.register(
            "frames_stored",
            "Frames written to segments",
            m.frames_stored.clone(),
        );
        registry.register("key_frames", "Key frames received", m.key_frames.clone());
        registry.register(
            "bytes_received",
            "Video bytes received from cameras",
            m.bytes_received.clone(),
        );
        registry.register(
            "bytes_written",
            "Segment bytes written to the store",
            m.bytes_written.clone(),
        );
        registry.register(
            "frames_dropped",
            "Frames received but not stored (writer behind or write failed)",
            m.frames_dropped.clone(),
        );
        registry.register(
            "reconnects",
            "Camera sessions that ended and were retried",
            m.reconnects.clone(),
        );
        registry.register(
            "write_errors",
            "Failed segment writes (e.g. disk full)",
            m.write_errors.clone(),
        );
        registry.register(
            "segments_closed",
            "Segments completed",
            m.segments_closed.clone(),
        );
        registry.register(
            "camera_state",
            "1 for the camera's current state",
            m.camera_state.clone(),
        );
        registry.register(
            "store_bytes",
            "Bytes of segments in the store",
            m.store_bytes.clone(),
        );
        registry.register(
            "write_seconds",
            "Latency of one chunk write",
            m.write_seconds.clone(),
        );
        registry.register(
            "sync_seconds",
            "Latency of one sync of the store's file system (syncfs), for every camera at once",
            m.sync_seconds.clone(),
        );
        registry.register(
            "segments_deleted",
            "Segments deleted by retention (reason: age, capacity, disk-full)",
            m.segments_deleted.clone(),
        );
        registry.register(
            "bytes_deleted",
            "Segment bytes deleted by retention",
            m.bytes_deleted.clone(),
        );
        registry.register(
            "retention_alarm",
            "1 while held footage alone exceeds a capacity limit",
            m.retention_alarm.clone(),
        );
        registry.register(
            "retention_clock_refused",
            "1 while age retention refuses to act on an insane wall clock",
            m.retention_clock_refused.clone(),
        );
        registry.register(
            "holds_active",
            "Legal holds in force",
            m.holds_active.clone(),
        );
        registry.register(
            "storage_alarm",
            "1 while the store's disk has this alarm (read_only, io_errors, smart_failed, smart_warning, almost_full, unknown)",
            m.storage_alarm.clone(),
        );
        registry.register(
            "storage_used_percent",
            "Share of the store's file system in use",
            m.storage_used_percent.clone(),
        );
        registry.register(
            "storage_available_bytes",
            "Bytes free for the recorder on the store's file system",
            m.storage_available_bytes.clone(),
        );
        registry.register(
            "storage_io_errors",
            "I/O errors the kernel counted on the store's disk and file system",
            m.storage_io_errors.clone(),
        );
        registry.register(
            "tamper_alarm",
            "1 while an opening of the case is latched (until an IT user acknowledges it)",
            m.tamper_alarm.clone(),
        );
        registry.register(
            "tamper_input_ok",
            "1 while the case-open switch can be read (absent where none is configured)",
            m.tamper_input_ok.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn set_state(&self, camera: &str, state: &str) {
        for s in STATES {
            self.camera_state
                .get_or_create(&StateLabel {
                    camera: camera.to_string(),
                    state: s.to_string(),
                })
                .set(i64::from(s == state));
        }
    }

    pub fn cam(camera: &str) -> CameraLabel {
        CameraLabel {
            camera: camera.to_string(),
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding to a String cannot fail");
        out
    }
}

/// Serves `/metrics` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::{Router, http::header, routing::get};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
