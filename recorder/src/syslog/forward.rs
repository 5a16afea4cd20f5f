//! The forwarder: one thread per process that keeps a TLS connection to the collector
//! and sends, in order, whatever its feed has after the cursor.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tracing::{info, warn};

use super::{Message, Origin, SyslogConfig, format_5424, frame};
use crate::stop::Stop;

/// What a forwarder sends: records in order, each with the cursor value that stands
/// for "everything up to and including this one was sent".
pub trait Feed: Send + 'static {
    fn after(&mut self, cursor: i64, limit: usize) -> anyhow::Result<Vec<(i64, Message)>>;
}

/// How the forwarder is doing, for metrics and health.
#[derive(Debug, Default)]
pub struct Status {
    pub connected: AtomicBool,
    /// Records written to the collector since start.
    pub forwarded: AtomicU64,
    /// The cursor of the last record written.
    pub cursor: AtomicI64,
    pub last_error: Mutex<Option<String>>,
}

impl Status {
    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

const BATCH: usize = 256;
const POLL: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping forwarder still tries to deliver what is pending.
const DRAIN: Duration = Duration::from_secs(5);

pub struct Forwarder {
    status: Arc<Status>,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

struct Worker {
    config: Arc<rustls::ClientConfig>,
    address: String,
    server_name: ServerName<'static>,
    origin: Origin,
    cursor_file: PathBuf,
    feed: Box<dyn Feed>,
    status: Arc<Status>,
    stop: Arc<Stop>,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Forwarder {
    /// Starts forwarding `feed` as `app_name`, resuming after the cursor kept in
    /// `cursor_file` (from the beginning when there is none). Fails at once on what a
    /// retry cannot mend: unreadable certificates or keys, a bad server name.
    pub fn start(
        config: &SyslogConfig,
        app_name: &'static str,
        cursor_file: PathBuf,
        feed: Box<dyn Feed>,
    ) -> anyhow::Result<Forwarder> {
        let tls = client_config(config)?;
        let server_name = ServerName::try_from(config.server_name().to_string())
            .map_err(|e| anyhow::anyhow!("syslog: server name {:?}: {e}", config.server_name()))?;
        let cursor = read_cursor(&cursor_file)?;
        let status = Arc::new(Status::default());
        status.cursor.store(cursor, Ordering::SeqCst);
        let stop = Arc::new(Stop::default());
        let mut w = Worker {
            config: Arc::new(tls),
            address: config.address.clone(),
            server_name,
            origin: Origin::new(config, app_name),
            cursor_file,
            feed,
            status: status.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("syslog".into())
            .spawn(move || w.run())?;
        info!(collector = %config.address, "forwarding to the log collector");
        Ok(Forwarder {
            status,
            stop,
            thread: Some(thread),
        })
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Delivers what is pending (for at most a few seconds) and stops.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.finish();
    }
}

fn client_config(c: &SyslogConfig) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&c.ca_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("syslog.ca_file {}: {e}", c.ca_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "syslog.ca_file {}: no certificate in it",
            c.ca_file.display()
        );
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("syslog.ca_file {}: {e}", c.ca_file.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(match (&c.client_cert, &c.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("syslog.client_cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("syslog.client_key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| anyhow::anyhow!("syslog: client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    })
}

fn read_cursor(path: &Path) -> anyhow::Result<i64> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("syslog cursor {}: not a number", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow::anyhow!("syslog cursor {}: {e}", path.display())),
    }
}

/// Replaces the cursor file (no fsync: a cursor lost in a crash only sends again what
/// the collector already has).
fn write_cursor(path: &Path, cursor: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{cursor}\n"))?;
    std::fs::rename(&tmp, path)
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.is_set()
    }

    /// Waits `d`, or less if asked to stop.
    fn wait(&self, d: Duration) {
        self.stop.sleep(d);
    }

    fn run(&mut self) {
        let mut conn: Option<Tls> = None;
        let mut backoff = Duration::from_secs(1);
        let mut drain_until: Option<std::time::Instant> = None;
        loop {
            if self.stopping() && drain_until.is_none() {
                drain_until = Some(std::time::Instant::now() + DRAIN);
            }
            if drain_until.is_some_and(|t| std::time::Instant::now() > t) {
                return;
            }
            let cursor = self.status.cursor.load(Ordering::SeqCst);
            let batch = match self.feed.after(cursor, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    self.status
                        .set_error(Some(format!("reading what to forward: {e}")));
                    warn!(error = %e, "syslog: cannot read what to forward");
                    if drain_until.is_some() {
                        return;
                    }
                    self.wait(MAX_BACKOFF);
                    continue;
                }
            };
            if batch.is_empty() {
                if drain_until.is_some() {
                    return;
                }
                self.wait(POLL);
                continue;
            }
            // A collector that closed since the last batch is found here, before the
            // batch is written into a dead connection.
            if conn.as_mut().is_some_and(peer_closed) {
                conn = None;
            }
            if conn.is_none() {
                match self.connect() {
                    Ok(c) => {
                        info!(collector = %self.address, "connected to the log collector");
                        conn = Some(c);
                        backoff = Duration::from_secs(1);
                        self.status.connected.store(true, Ordering::SeqCst);
                    }
                    Err(e) => {
                        self.failed(format!("cannot connect to {}: {e}", self.address));
                        if drain_until.is_some() {
                            return;
                        }
                        self.wait(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let mut bytes = Vec::new();
            for (_, m) in &batch {
                frame(&format_5424(m, &self.origin), &mut bytes);
            }
            match c.write_all(&bytes).and_then(|()| c.flush()) {
                Ok(()) => {
                    let last = batch.last().map_or(cursor, |(k, _)| *k);
                    self.status.cursor.store(last, Ordering::SeqCst);
                    self.status
                        .forwarded
                        .fetch_add(batch.len() as u64, Ordering::SeqCst);
                    self.status.set_error(None);
                    if let Err(e) = write_cursor(&self.cursor_file, last) {
                        warn!(error = %e, file = %self.cursor_file.display(), "syslog: cannot keep the cursor");
                    }
                }
                Err(e) => {
                    conn = None;
                    self.failed(format!("sending to {}: {e}", self.address));
                }
            }
        }
    }

    fn failed(&self, e: String) {
        if self.status.connected.swap(false, Ordering::SeqCst)
            || self.status.last_error.lock().is_ok_and(|l| l.is_none())
        {
            warn!(error = %e, "syslog: the log collector is unreachable; records are kept until it is back");
        }
        self.status.set_error(Some(e));
    }

    fn connect(&self) -> anyhow::Result<Tls> {
        let addr = self
            .address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        tcp.set_write_timeout(Some(WRITE_TIMEOUT))?;
        tcp.set_read_timeout(Some(WRITE_TIMEOUT))?;
        let _ = tcp.set_nodelay(true);
        let conn = rustls::ClientConnection::new(self.config.clone(), self.server_name.clone())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // Complete the handshake now, so a certificate refused is a connection error
        // and nothing is counted as sent.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }
}

/// Whether the collector closed the connection (or it broke): a read that does not
/// block finds the end of the stream, a TLS alert or an error.
fn peer_closed(c: &mut Tls) -> bool {
    if c.sock.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 512];
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    closed || c.sock.set_nonblocking(false).is_err()
}
