//! A real log collector for end-to-end tests: `rsyslogd` receiving syslog over TLS
//! (RFC 5425) on loopback with a CA and certificate made for the test, writing each
//! message it receives, as received, to a file the test reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::Proc;

pub struct Collector {
    pub dir: tempfile::TempDir,
    pub port: u16,
    proc: Option<Proc>,
}

/// One message as the collector received it (RFC 5424, parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub pri: u16,
    pub hostname: String,
    pub app_name: String,
    pub msgid: String,
    pub sd_id: String,
    pub params: Vec<(String, String)>,
    pub text: String,
}

impl Received {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A CA and a certificate it issued for `localhost` and 127.0.0.1: (CA PEM,
/// certificate PEM, key PEM).
pub fn issue(ca_name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

impl Collector {
    /// Starts rsyslogd on a free port; `None` when rsyslogd is not installed.
    pub fn start() -> Option<Collector> {
        if !Path::new("/usr/sbin/rsyslogd").exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = issue("Ringfence test collector CA");
        std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        let mut c = Collector {
            dir,
            port: crate::free_port(),
            proc: None,
        };
        c.restart();
        Some(c)
    }

    /// The CA the collector's certificate chains to.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A `[syslog]` section forwarding here.
    pub fn config_section(&self) -> String {
        format!(
            "\n[syslog]\naddress = \"127.0.0.1:{}\"\nca_file = \"{}\"\nhostname = \"ringfence-test\"\n",
            self.port,
            self.ca_file().display()
        )
    }

    /// Starts (again) on the same port, with the same certificate and output file.
    pub fn restart(&mut self) {
        self.stop();
        let d = self.dir.path().display();
        let conf = format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"64k\"\n\
               DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\"\n\
               DefaultNetstreamDriverCertFile=\"{d}/server.pem\" DefaultNetstreamDriverKeyFile=\"{d}/server.key\")\n\
             module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{d}/received.log\" template=\"raw\")\n",
            port = self.port
        );
        std::fs::write(self.dir.path().join("rsyslog.conf"), conf).unwrap();
        let log = std::fs::File::create(self.dir.path().join("rsyslogd.out")).unwrap();
        let mut p = Proc(
            Command::new("/usr/sbin/rsyslogd")
                .arg("-n")
                .arg("-f")
                .arg(self.dir.path().join("rsyslog.conf"))
                .arg("-i")
                .arg(self.dir.path().join("rsyslogd.pid"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(s)) = p.0.try_wait() {
                panic!(
                    "rsyslogd exited ({s}): {}",
                    std::fs::read_to_string(self.dir.path().join("rsyslogd.out"))
                        .unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "rsyslogd did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(p);
    }

    /// Stops rsyslogd (what it received stays in its file).
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        std::fs::read_to_string(self.dir.path().join("received.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| parse_5424(l).unwrap_or_else(|| panic!("not RFC 5424: {l:?}")))
            .collect()
    }

    /// Waits until `done` holds of what was received (at most `timeout`).
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let r = self.received();
            if done(&r) {
                return r;
            }
            assert!(
                start.elapsed() < timeout,
                "the collector did not receive {what} within {timeout:?}; it has {} messages: {:#?}",
                r.len(),
                r.iter().rev().take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Parses `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [ID k="v" …] MSG` (one SD element).
pub fn parse_5424(line: &str) -> Option<Received> {
    let rest = line.strip_prefix('<')?;
    let (pri, rest) = rest.split_once('>')?;
    let rest = rest.strip_prefix("1 ")?;
    let mut fields = rest.splitn(6, ' ');
    let _time = fields.next()?;
    let hostname = fields.next()?.to_string();
    let app_name = fields.next()?.to_string();
    let _procid = fields.next()?;
    let msgid = fields.next()?.to_string();
    let sd = fields.next()?.strip_prefix('[')?;
    let (sd_id, mut sd) = sd
        .split_once(' ')
        .unwrap_or((sd.trim_end_matches(']'), "]"));
    let mut params = Vec::new();
    loop {
        sd = sd.trim_start_matches(' ');
        if let Some(r) = sd.strip_prefix(']') {
            sd = r;
            break;
        }
        let (name, r) = sd.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => value.push(chars.next()?.1),
                '"' => break i,
                c => value.push(c),
            }
        };
        params.push((name.to_string(), value));
        sd = &r[end + 1..];
    }
    let text = sd
        .strip_prefix(' ')
        .unwrap_or(sd)
        .trim_start_matches('\u{feff}')
        .to_string();
    Some(Received {
        pri: pri.parse().ok()?,
        hostname,
        app_name,
        msgid,
        sd_id: sd_id.to_string(),
        params,
        text,
    })
}
