//! Starting the service: open the databases, load the store's key, set up TLS, serve.
//!
//! TLS is rustls (ring provider). With `tls_cert`/`tls_key` in `[api]` those are
//! used; otherwise a self-signed pair is generated once under `<storage.path>/tls/`
//! (key mode 0600, valid two years) and reused, so the certificate a client pinned
//! stays valid across restarts until it is renewed, 30 days before it ends.
//!
//! Connections ([`ConnLimits`], [`run_https`]): HTTP/1.1 only; a TLS handshake must be
//! done in 10 s and the request headers must follow within 20 s, after which (and 20 s
//! after an answer on an idle keep-alive connection) the connection is closed, so
//! connections that never finish their headers cannot pile up.

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
    ensure_store_dir(&settings.state_dir())?;
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

/// A generated self-signed certificate is valid this long ...
pub const CERT_VALID_DAYS: u64 = 730;
/// ... and replaced at start when fewer days than this remain.
pub const CERT_RENEW_DAYS: i64 = 30;

/// The certificate and key files to use, generating a self-signed pair if needed.
///
/// The generated certificate is valid for [`CERT_VALID_DAYS`] (two years) from the day
/// before it was made; its end is noted beside it (`self-signed.not-after`, unix
/// seconds) and a new pair is made at start when it is within [`CERT_RENEW_DAYS`] of
/// it, or when the note is missing (a pair from an older version, valid to 4096).
pub fn tls_files(settings: &Settings) -> anyhow::Result<(PathBuf, PathBuf)> {
    use chrono::Datelike;
    if let (Some(c), Some(k)) = (&settings.api.tls_cert, &settings.api.tls_key) {
        return Ok((c.clone(), k.clone()));
    }
    let dir = settings.state_dir().join("tls");
    ensure_store_dir(&dir)?;
    let cert = dir.join("self-signed.crt");
    let key = dir.join("self-signed.key");
    let note = dir.join("self-signed.not-after");
    let now = chrono::Utc::now();
    let not_after = std::fs::read_to_string(&note)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    let fresh = not_after.is_some_and(|t| t - now.timestamp() > CERT_RENEW_DAYS * 86_400);
    if cert.exists() && key.exists() && fresh {
        return Ok((cert, key));
    }
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut params =
        rcgen::CertificateParams::new(names).context("cannot generate a certificate")?;
    let today = now.date_naive();
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let first = today - chrono::Days::new(1);
    let last = today + chrono::Days::new(CERT_VALID_DAYS);
    params.not_before = ymd(first);
    params.not_after = ymd(last);
    let key_pair = rcgen::KeyPair::generate().context("cannot generate a key")?;
    let generated = params
        .self_signed(&key_pair)
        .context("cannot generate a certificate")?;
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
        f.write_all(key_pair.serialize_pem().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::write(&cert, generated.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    let end = last
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default();
    std::fs::write(&note, format!("{end}\n"))
        .with_context(|| format!("cannot write {}", note.display()))?;
    info!(cert = %cert.display(), until = %last, replaced = not_after.is_some() || cert.exists(),
          "generated a self-signed TLS certificate");
    Ok((cert, key))
}

/// Limits on connections that do not get on with it (finding 9 of issue 9).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A TLS handshake must be done within this.
    pub tls_handshake: Duration,
    /// After the handshake, and after each response (an idle keep-alive connection),
    /// the next request's headers must be complete within this.
    pub header_read: Duration,
}

impl Default for ConnLimits {
    /// 10 s for TLS, 20 s for the headers: a connection that has not sent its headers
    /// 30 s after it was accepted is closed, and an idle one 20 s after its last answer.
    fn default() -> Self {
        ConnLimits {
            tls_handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(20),
        }
    }
}

/// Loads the certificate and key for serving: HTTP/1.1 only (ALPN), since the header
/// and idle limits of [`ConnLimits`] are HTTP/1's.
pub async fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<RustlsConfig> {
    let tls = RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "cannot load TLS certificate {} / key {}",
                cert.display(),
                key.display()
            )
        })?;
    let mut config = (*tls.get_inner()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// Serves `app` over HTTPS on `listener` until `handle` shuts it down: HTTP/1.1 only,
/// TLS handshakes and request headers bounded by `limits`, idle keep-alive connections
/// closed after `limits.header_read`, at most [`crate::conns::PER_ADDRESS`]
/// connections per client address.
pub async fn run_https(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    app: axum::Router,
    handle: axum_server::Handle,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let per_address = crate::conns::PerAddress::new(crate::conns::PER_ADDRESS);
    run_https_with(listener, tls, app, handle, limits, per_address).await
}

/// [`run_https`] with the given count of connections per address.
pub async fn run_https_with(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    app: axum::Router,
    handle: axum_server::Handle,
    limits: ConnLimits,
    per_address: crate::conns::PerAddress,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
        .handshake_timeout(limits.tls_handshake)
        .acceptor(per_address);
    let mut server = axum_server::from_tcp(listener)
        .acceptor(acceptor)
        .handle(handle);
    // HTTP/2 has no header timeout in hyper: one protocol, with its limits.
    let builder = std::mem::replace(server.http_builder(), Builder::new(TokioExecutor::new()));
    *server.http_builder() = builder.http1_only();
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

pub fn state(
    settings: &Settings,
    source: Arc<dyn FootageSource>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<AppState>> {
    let users = Arc::new(open_users(settings, clock.clone())?);
    // Login counters kept in the user database: a restart forgets no lock-out.
    let throttle = Throttle::persistent(clock.clone(), api::default_login_delay(), users.clone())
        .map_err(|m| anyhow::anyhow!("cannot load the login counters: {m}"))?;
    Ok(Arc::new(AppState {
        users,
        audit: Arc::new(open_audit(settings, clock.clone())?),
        source,
        throttle,
        clock,
        metrics: Arc::new(Metrics::new()),
        viewings: Default::default(),
        streams: Default::default(),
    }))
}

/// `viewer-api serve`: runs until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Everything of the store, and every signature, through the recorder's service:
    // this process reads no key and opens no file of the store.
    let socket = settings.recorder_socket();
    let client = Arc::new(recorder::service::Client::new(&socket));
    if let Err(e) = client.call::<String>(&recorder::service::Request::PublicKey) {
        tracing::warn!(socket = %socket.display(), error = %e, "the recorder service does not answer yet; footage is unavailable until it does");
    }
    let source: Arc<dyn FootageSource> = Arc::new(crate::remote::RemoteSource::new(client.clone()));
    let recorder: Arc<dyn crate::recorder_side::RecorderSide> =
        Arc::new(crate::remote::RemoteRecorder::new(client.clone()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = state(&settings, source.clone(), clock.clone())?;
    let exports = crate::export::Exports::from_settings(
        &settings,
        state.audit.clone(),
        clock,
        source,
        recorder.clone(),
    )?;
    let _export_worker = exports.spawn_worker();
    tokio::spawn(crate::tamper::copy_forever(
        recorder.clone(),
        state.audit.clone(),
        settings.state_dir(),
    ));
    let (cert, key) = tls_files(&settings)?;
    let tls = load_tls(&cert, &key).await?;
    let app = api::router(state.clone())
        .merge(crate::export::api::router(state.clone(), exports))
        .merge(crate::viewing::router(state.clone()))
        .merge(crate::preview::router(state.clone()))
        .merge(crate::admin::router(state.clone(), &settings, recorder))
        .merge(crate::web::router(&settings));
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let addr: SocketAddr = settings.api.addr;
    info!(%addr, "viewer-api listening (https)");
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    tokio::spawn(crate::throttle::flush_refusals(state.clone()));
    // Ready for systemd; under its watchdog, pinged while this runtime shows life.
    let runtime_beat = recorder::run::watch(
        hardware::watchdog::Heartbeats::new(hardware::watchdog::mono_ms()),
        &format!("serving https on {addr}"),
    );
    let forwarder = match &settings.recorder.syslog {
        Some(c) => Some(recorder::syslog::Forwarder::start(
            c,
            "ringfence-api",
            settings.state_dir().join("syslog.cursor"),
            Box::new(crate::forward::AuditFeed(state.audit.clone())),
        )?),
        None => None,
    };
    if let Some(f) = &forwarder {
        state.metrics.set_syslog(f.status());
    }
    let anchor = {
        let (audit, client) = (state.audit.clone(), client.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            loop {
                tick.tick().await;
                let (a, c) = (audit.clone(), client.clone());
                let _ = tokio::task::spawn_blocking(move || checkpoint(&a, &c)).await;
            }
        })
    };
    run_https(listener, tls, app, handle, ConnLimits::default())
        .await
        .with_context(|| format!("cannot serve on {addr}"))?;
    // Refused logins counted but not yet in the access log.
    for e in state.throttle.summaries_all() {
        let _ = state.audit.append(e);
    }
    anchor.abort();
    runtime_beat.abort();
    {
        use hardware::watchdog::Notifier;
        let _ = hardware::watchdog::Systemd.notify(&hardware::watchdog::Notice::Stopping);
    }
    checkpoint(&state.audit, &client);
    if let Some(f) = forwarder {
        // The last entries still leave (for a few seconds at most).
        tokio::task::spawn_blocking(move || f.stop()).await?;
    }
    Ok(())
}

/// How often the access log's head is checkpointed by the recorder.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

/// Has the recorder sign a checkpoint of the access log's head (see
/// `recorder::checkpoint`); a refusal (the log went back) is logged loudly.
fn checkpoint(audit: &crate::audit::AuditLog, client: &recorder::service::Client) {
    let head = match audit.head() {
        Ok(Some((seq, hash))) => recorder::checkpoint::LogRef { seq, hash },
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the access log's head for a checkpoint");
            return;
        }
    };
    match client.call::<recorder::checkpoint::SignedCheckpoint>(
        &recorder::service::Request::Checkpoint { head },
    ) {
        Ok(c) => tracing::debug!(seq = c.checkpoint.seq, "access log checkpointed"),
        Err(e) if e.kind == recorder::service::ErrorKind::Refused => {
            tracing::error!(error = %e, "the recorder refused to checkpoint the access log")
        }
        Err(e) => tracing::warn!(error = %e, "cannot checkpoint the access log"),
    }
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
