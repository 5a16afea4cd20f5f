//! Passwords: argon2id on a small pool of threads of its own (a login flood waits
//! there instead of taking the server's memory and threads), in constant time, and the
//! same cost for an unknown user as for a known one.

use super::*;

/// Work for the argon2 threads.
pub(super) type HashJob = Box<dyn FnOnce() + Send>;

thread_local! {
    /// A hashing thread's argon2 memory, allocated once and reused: 19 MiB per login
    /// through the allocator would be kept by it (fragmented), and grow the process.
    static ARGON_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The raw argon2 of `password` with `argon`'s parameters, in this thread's reused
/// memory (wiped after use).
pub(super) fn argon2_raw(
    argon: &Argon2<'_>,
    blocks: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    ARGON_MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < blocks {
            m.resize(blocks, argon2::Block::default());
        }
        let r = argon.hash_password_into_with_memory(password, salt, out, &mut m[..blocks]);
        m[..blocks].fill(argon2::Block::default());
        r
    })
}

/// Whether `password` matches the PHC string `stored` (argon2 only), in constant time.
pub(super) fn verify_phc(stored: &str, password: &[u8]) -> bool {
    let check = || -> Option<bool> {
        let parsed = PasswordHash::new(stored).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let mut out = Zeroizing::new(vec![0u8; expected.len()]);
        let argon = Argon2::new(algorithm, version, params.clone());
        argon2_raw(&argon, params.block_count(), password, salt, &mut out).ok()?;
        Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    };
    check().unwrap_or(false)
}

/// A new PHC string for `password` with `argon`'s parameters.
pub(super) fn hash_phc(argon: &Argon2<'_>, params: &Params, password: &[u8]) -> Option<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut raw = [0u8; 64];
    let raw = salt.as_salt().decode_b64(&mut raw).ok()?;
    let mut out = Zeroizing::new(vec![
        0u8;
        params
            .output_len()
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN)
    ]);
    argon2_raw(argon, params.block_count(), password, raw, &mut out).ok()?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(params).ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out).ok()?),
    };
    Some(phc.to_string())
}

/// What the argon2 threads did (for tests and metrics).
#[derive(Default)]
pub(super) struct HashStats {
    pub(super) in_flight: AtomicUsize,
    pub(super) peak: AtomicUsize,
    pub(super) done: AtomicU64,
}

/// One password hash in flight, counted.
pub(super) struct Hashing<'a>(&'a HashStats);

impl<'a> Hashing<'a> {
    pub(super) fn start(stats: &'a HashStats) -> Self {
        let n = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(n, Ordering::SeqCst);
        Hashing(stats)
    }
}

impl Drop for Hashing<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// The bounded argon2 pool: [`HASH_SLOTS`] threads taking jobs from one queue. They end
/// when the database is dropped (the queue closes).
pub(super) struct HashPool {
    pub(super) queue: Mutex<std::sync::mpsc::Sender<HashJob>>,
    pub(super) stats: Arc<HashStats>,
}

impl HashPool {
    pub(super) fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            match rx.recv() {
                                Ok(job) => job,
                                Err(_) => return,
                            }
                        };
                        // a panicking job must not take a hashing thread with it
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(HashPool {
            queue: Mutex::new(tx),
            stats: Arc::new(HashStats::default()),
        })
    }

    pub(super) fn submit(&self, job: HashJob) -> Result<(), UserError> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| UserError::Hash)
    }

    /// Runs `f` on a hashing thread, counted, and waits for it, blocking this thread.
    pub(super) fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stats = self.stats.clone();
        self.submit(Box::new(move || {
            let r = {
                let _counted = Hashing::start(&stats);
                f()
            };
            let _ = tx.send(r);
        }))?;
        rx.recv().map_err(|_| UserError::Hash)
    }

    /// Runs `f` on a hashing thread, counted; waits without holding a thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stats = self.stats.clone();
        self.submit(Box::new(move || {
            let r = {
                let _counted = Hashing::start(&stats);
                f()
            };
            let _ = tx.send(r);
        }))?;
        rx.await.map_err(|_| UserError::Hash)
    }
}

impl UserDb {
    /// The verification of `password` against the PHC string `stored`, to run on the
    /// hashing threads.
    pub(super) fn verify_job(
        &self,
        stored: String,
        password: Zeroizing<String>,
    ) -> impl FnOnce() -> bool + Send + 'static {
        move || verify_phc(&stored, password.as_bytes())
    }

    /// Hashes a new password on the hashing threads (blocking this thread meanwhile).
    pub(super) fn hash(&self, pw: &str) -> Result<String, UserError> {
        let (argon, params) = (self.argon.clone(), self.params.clone());
        let pw = Zeroizing::new(pw.to_string());
        self.pool
            .run_blocking(move || hash_phc(&argon, &params, pw.as_bytes()))?
            .ok_or(UserError::Hash)
    }

    /// Checks a password. `Ok(None)` for a wrong password, an unknown or a disabled
    /// user alike (the caller must not tell them apart to the client): each costs one
    /// argon2 verification with the same parameters (unknown names are checked against
    /// a hash made at open). Blocks this thread while the hashing threads work; async
    /// code uses [`UserDb::check_login_bounded`].
    pub fn check_login(&self, name: &str, password: &str) -> Result<Option<User>, UserError> {
        let found = self.login_lookup(name)?;
        let stored = self.stored_or_dummy(&found);
        let ok = self
            .pool
            .run_blocking(self.verify_job(stored, Zeroizing::new(password.to_string())))?;
        Ok(Self::login_result(found, ok))
    }

    /// [`UserDb::check_login`] for async code: the lookup on a blocking thread, the
    /// verification queued for the hashing threads without holding a thread.
    pub async fn check_login_bounded(
        self: &Arc<Self>,
        name: String,
        password: String,
    ) -> Result<Option<User>, UserError> {
        let password = Zeroizing::new(password);
        let this = self.clone();
        let found = tokio::task::spawn_blocking(move || this.login_lookup(&name))
            .await
            .map_err(|_| UserError::Hash)??;
        let stored = self.stored_or_dummy(&found);
        let ok = self.pool.run(self.verify_job(stored, password)).await?;
        Ok(Self::login_result(found, ok))
    }

    pub(super) fn login_lookup(&self, name: &str) -> Result<Option<(User, String)>, UserError> {
        if valid_user_name(name) {
            self.user_with_hash(name)
        } else {
            Ok(None)
        }
    }

    pub(super) fn stored_or_dummy(&self, found: &Option<(User, String)>) -> String {
        found
            .as_ref()
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| self.dummy_hash.clone())
    }

    pub(super) fn login_result(found: Option<(User, String)>, ok: bool) -> Option<User> {
        match found {
            Some((u, _)) if ok && !u.disabled => Some(u),
            _ => None,
        }
    }
}
