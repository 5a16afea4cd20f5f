//! A software TPM 2.0 (swtpm) for tests, here and in the workspace's end-to-end tests
//! (feature `testing`): one per test on free loopback ports, its state in a temporary
//! directory. swtpm missing is a failure, not a skip: `make test` installs it.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tss_esapi::{
    Context,
    handles::PcrHandle,
    interface_types::{algorithm::HashingAlgorithm, session_handles::AuthSession},
    structures::{Digest, DigestValues},
    tcti_ldr::TctiNameConf,
};

/// A running swtpm; killed, and its state removed, on drop.
pub struct Swtpm {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Swtpm {
    /// Starts one on free loopback ports; panics (with what to install) if it cannot.
    pub fn start() -> Swtpm {
        let mut last = String::new();
        for _ in 0..10 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let port = free_port_pair();
            let log = dir.path().join("swtpm.log");
            let spawned = Command::new("swtpm")
                .arg("socket")
                .arg("--tpm2")
                .arg("--server")
                .arg(format!("type=tcp,bindaddr=127.0.0.1,port={port}"))
                .arg("--ctrl")
                .arg(format!("type=tcp,bindaddr=127.0.0.1,port={}", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", dir.path().display()))
                .arg("--flags")
                .arg("not-need-init,startup-clear")
                .arg("--log")
                .arg(format!("file={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match spawned {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                    "swtpm is not installed, and the TPM tests need it: run `bash scripts/install-deps.sh` \
                     (Debian packages swtpm, swtpm-tools, tpm2-tools, libtss2-dev) or `make test`"
                ),
                Err(e) => panic!("cannot start swtpm: {e}"),
            };
            let mut tpm = Swtpm { child, port, dir };
            match tpm.wait_ready() {
                Ok(()) => return tpm,
                // Most likely a port taken between the check and the bind: try others.
                Err(e) => last = e,
            }
        }
        panic!("swtpm did not start: {last}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = fs::read_to_string(self.dir.path().join("swtpm.log")).unwrap_or_default();
                return Err(format!("swtpm exited ({status}): {log}"));
            }
            let both = [self.port, self.port + 1]
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if both {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("no answer on its ports within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCTI that reaches it.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Extends a PCR of the SHA-256 bank, as a boot component would.
    pub fn extend(&self, pcr: PcrHandle) {
        let mut ctx = Context::new(TctiNameConf::from_str(&self.tcti()).unwrap()).unwrap();
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(vec![0x42; 32]).unwrap(),
        );
        ctx.execute_with_session(Some(AuthSession::Password), |c| c.pcr_extend(pcr, values))
            .expect("PCR extend");
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port P with P and P+1 free on loopback (swtpm's TCTI takes the control channel
/// on the port after the server's).
pub fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let p = l.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}
