//! Ringfence recorder: records RTSP cameras into encrypted, crash-safe segments and
//! owns the store's format; the viewer-api reads footage through this crate.
//!
//! The public modules are the interface the viewer-api uses: the configuration, the
//! local service (client and wire types), the types of footage, holds and the deletion
//! journal, checkpoints, the clock, and the SQLite opener every database shares. The
//! rest (the catalog's SQL, ingest, the writers, recovery, `check`) is private to the
//! recorder, so no other process can open a segment, unwrap a data key or write the
//! catalog by accident. The `testing` feature opens those internals to the workspace's
//! tests, which write stores directly; it is never built into a shipped binary.

/// Declares modules private to the crate, or public under the `testing` feature.
macro_rules! internal {
    ($($(#[$attr:meta])* $name:ident;)*) => {$(
        $(#[$attr])*
        #[cfg(feature = "testing")]
        pub mod $name;
        $(#[$attr])*
        #[cfg(not(feature = "testing"))]
        #[allow(dead_code, unused_imports)] // what only the tests call
        pub(crate) mod $name;
    )*};
}

pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod config;
pub mod devices;
pub mod footage;
pub mod metrics;
pub mod retention;
pub mod run;
pub mod segment;
pub mod service;
pub mod sqlite;
mod stop;
pub mod store;
pub mod syslog;

/// Diagnostics (never footage, secrets or access-log content) to standard error, which
/// systemd gives to journald: filtered by `RUST_LOG` (default `info`), coloured only on a
/// terminal. Both processes call it first thing, so the journal reads one format.
pub fn init_diagnostics() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

// Holds and the deletion journal are tables of the catalog; their types and calls are
// the viewer-api's too.
pub use catalog::{holds, journal};

internal! {
    camera_state;
    catalog;
    check;
    ingest;
    recovery;
    store_sync;
    writer;
}
