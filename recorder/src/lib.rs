//! Ringfence recorder: records RTSP cameras into encrypted, crash-safe segments and
//! owns the store's format; the viewer-api reads footage through this crate.

pub mod camera_state;
pub mod catalog;
pub mod check;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod footage;
pub mod holds;
pub mod ingest;
pub mod journal;
pub mod metrics;
pub mod recovery;
pub mod retention;
pub mod run;
pub mod segment;
pub mod service;
pub mod sqlite;
pub mod store;
pub mod syslog;
pub mod writer;
