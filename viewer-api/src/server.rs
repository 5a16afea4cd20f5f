//! Starting the service: open the databases, load the store's key, set up TLS, serve.
//!
//! TLS is rustls (ring provider). With `tls_cert`/`tls_key` in `[api]` those are
//! used; otherwise a self-signed pair is generated once under `<storage.path>/tls/`
//! (key mode 0600) and reused, so the certificate a client pinned stays valid across
//! restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tracing::info;

use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::playback::FootageSource;
use crate::throttle::Throttle;
use crate::users::UserDb;

/// How long an access-log append waits for the file before the request fails (503).
pub const AUDIT_BUSY: Duration = Duration::from_secs(2);

pub fn ensure_store_dir(store: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(store)
        .with_context(|| format!("cannot create store {}", store.display()))
}

pub fn open_users(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<UserDb> {
    ensure_store_dir(settings.store())?;
    Ok(UserDb::open(
        &settings.users_db(),
        clock,
        UserDb::default_argon(),
    )?)
}

pub fn open_audit(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<AuditLog> {
    let path = settings.audit_db();
    if let Some(dir) = path.parent() {
        ensure_store_dir(dir)?;
    }
    Ok(AuditLog::open(&path, clock, AUDIT_BUSY)?)
}

/// The certificate and key files to use, generating a self-signed pair if needed.
pub fn tls_files(settings: &Settings) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(c), Some(k)) = (&settings.api.tls_cert, &settings.api.tls_key) {
        return Ok((c.clone(), k.clone()));
    }
    let dir = settings.store().join("tls");
    ensure_store_dir(&dir)?;
    let cert = dir.join("self-signed.crt");
    let key = dir.join("self-signed.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).context("cannot generate a certificate")?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&key)
            .with_context(|| format!("cannot write {}", key.display()))?;
        f.write_all(ck.key_pair.serialize_pem().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::write(&cert, ck.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    Ok((cert, key))
}

pub fn state(
    settings: &Settings,
    source: Arc<dyn FootageSource>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<AppState>> {
    Ok(Arc::new(AppState {
        users: Arc::new(open_users(settings, clock.clone())?),
        audit: Arc::new(open_audit(settings, clock.clone())?),
        source,
        throttle: Throttle::new(clock.clone(), api::default_login_delay()),
        clock,
        metrics: Arc::new(Metrics::new()),
        viewings: Default::default(),
    }))
}

/// `viewer-api serve`: runs until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let footage = recorder::footage::Footage::open(&settings.recorder)
        .context("cannot open the footage store")?;
    let source: Arc<dyn FootageSource> = Arc::new(crate::store::RecorderSource::new(footage));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = state(&settings, source, clock.clone())?;
    let exports = crate::export::Exports::from_settings(&settings, state.audit.clone(), clock)?;
    let _export_worker = exports.spawn_worker();
    let (cert, key) = tls_files(&settings)?;
    let tls = RustlsConfig::from_pem_file(&cert, &key)
        .await
        .with_context(|| {
            format!(
                "cannot load TLS certificate {} / key {}",
                cert.display(),
                key.display()
            )
        })?;
    let app = api::router(state.clone())
        .merge(crate::export::api::router(state.clone(), exports))
        .merge(crate::viewing::router(state.clone()))
        .merge(crate::preview::router(state.clone()))
        .merge(crate::admin::router(state.clone(), &settings))
        .merge(crate::web::router(&settings));
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let addr: SocketAddr = settings.api.addr;
    info!(%addr, "viewer-api listening (https)");
    axum_server::bind_rustls(addr, tls)
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .with_context(|| format!("cannot serve on {addr}"))?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
