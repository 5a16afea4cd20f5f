//! The viewer-api process: `serve`, user administration from the console, and
//! `audit verify`. Administration commands run on the box itself (root), read
//! passwords from standard input (never from arguments, which `ps` shows), and are
//! written to the access log like any other change of rights.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use viewer_api::audit::{self, NewEntry, VerifyError};
use viewer_api::clock::{Clock, SystemClock};
use viewer_api::config::Settings;
use viewer_api::policy::Role;
use viewer_api::server;

#[derive(Parser)]
#[command(
    name = "viewer-api",
    version,
    about = "Ringfence viewer API: role-based access to footage"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTPS API.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Check an export bundle (signature, hashes, MP4s) on any computer: needs only
    /// the bundle. Exit 0 when everything checks, 1 otherwise.
    VerifyExport {
        bundle: PathBuf,
        /// The device's public key (PEM) to require, e.g. from `GET /api/v1/device-key`.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// The access log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Benchmarks only: fill a store with hours of footage from an H.264 clip.
    #[cfg(feature = "testing")]
    #[command(hide = true)]
    BenchFill {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        camera: String,
        /// H.264 Annex B with access unit delimiters, a whole number of GOPs.
        #[arg(long)]
        clip: PathBuf,
        #[arg(long, default_value_t = 1920)]
        width: u32,
        #[arg(long, default_value_t = 1080)]
        height: u32,
        #[arg(long, default_value_t = 25)]
        fps: u32,
        #[arg(long, default_value_t = 4.0)]
        hours: f64,
        #[arg(long, default_value_t = 60)]
        segment_secs: u32,
        /// Where to list the segments written (start ms, end ms, path).
        #[arg(long)]
        manifest: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is read from standard input.
    Add {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// police, it, contractor or auditor
        #[arg(long)]
        role: Role,
        /// Limit police or a contractor to these cameras (comma-separated).
        #[arg(long, value_delimiter = ',')]
        cameras: Option<Vec<String>>,
    },
    List {
        #[arg(long)]
        config: PathBuf,
    },
    /// Disable a user and end their sessions.
    Disable {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Set a new password (from standard input) and end the user's sessions.
    Passwd {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Walk the hash chain and check it against the recorder's newest signed checkpoint:
    /// exit 0 if intact, 1 naming the first bad entry (or no checkpoint), 2 if the
    /// recorder's service cannot be reached.
    Verify {
        #[arg(long)]
        config: PathBuf,
    },
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        bail!("no password given on standard input");
    }
    Ok(pw)
}

fn console_entry(action: &str, purpose: String) -> NewEntry {
    NewEntry {
        actor: "console".into(),
        role: "admin".into(),
        action: action.into(),
        purpose: Some(purpose),
        client: Some("local".into()),
        outcome: "allowed".into(),
        ..Default::default()
    }
}

fn user_cmd(cmd: UserCmd) -> anyhow::Result<()> {
    let config = match &cmd {
        UserCmd::Add { config, .. }
        | UserCmd::List { config }
        | UserCmd::Disable { config, .. }
        | UserCmd::Passwd { config, .. } => config.clone(),
    };
    let settings = Settings::load(&config)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let users = server::open_users(&settings, clock.clone())?;
    // Changes are logged before they are made; a log that cannot be written stops them.
    let log = |action: &str, what: String| -> anyhow::Result<()> {
        server::open_audit(&settings, clock.clone())?
            .append(console_entry(action, what))
            .context("cannot write the access log; nothing changed")?;
        Ok(())
    };
    match cmd {
        UserCmd::Add {
            name,
            role,
            cameras,
            ..
        } => {
            let pw = read_password()?;
            viewer_api::users::check_password(&pw)?;
            if users.user(&name)?.is_some() {
                bail!("user {name:?} already exists");
            }
            let scope = cameras
                .as_ref()
                .map(|c| format!(" cameras {}", c.join(",")))
                .unwrap_or_default();
            log("user.add", format!("add user {name} role {role}{scope}"))?;
            users.add_user(&name, role, cameras, &pw)?;
            println!("added user {name} ({role})");
        }
        UserCmd::List { .. } => {
            for u in users.users()? {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.name,
                    u.role,
                    u.cameras.map(|c| c.join(",")).unwrap_or_else(|| "*".into()),
                    if u.disabled { "disabled" } else { "enabled" }
                );
            }
        }
        UserCmd::Disable { name, .. } => {
            if users.user(&name)?.is_none() {
                bail!("no such user {name:?}");
            }
            log("user.disable", format!("disable user {name}"))?;
            users.set_disabled(&name, true)?;
            println!("disabled user {name}");
        }
        UserCmd::Passwd { name, .. } => {
            let pw = read_password()?;
            viewer_api::users::check_password(&pw)?;
            if users.user(&name)?.is_none() {
                bail!("no such user {name:?}");
            }
            log("user.passwd", format!("new password for user {name}"))?;
            users.set_password(&name, &pw)?;
            println!("changed the password of {name}");
        }
    }
    Ok(())
}

/// Threads for blocking work (reads from the recorder's service, the access log's
/// commits, sign-in lookups): one per stream the API allows at once, and a few for the
/// rest. tokio's default (512) would let a burst of requests start hundreds of threads
/// on the box's two cores, beside the recorder.
const BLOCKING_THREADS: usize = viewer_api::streams::TOTAL + 16;

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { config } => {
            let settings = Settings::load(&config)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(BLOCKING_THREADS)
                .build()?
                .block_on(server::serve(settings))?;
        }
        Cmd::User { cmd } => user_cmd(cmd)?,
        Cmd::VerifyExport { bundle, key } => {
            let pinned = key
                .map(|k| {
                    std::fs::read_to_string(&k)
                        .with_context(|| format!("cannot read {}", k.display()))
                })
                .transpose()?;
            let report = viewer_api::export::verify::verify(&bundle, pinned.as_deref());
            for l in &report.lines {
                println!("{l}");
            }
            if report.ok {
                println!("export verified: {}", bundle.display());
            } else {
                println!("EXPORT REJECTED: {}", bundle.display());
                return Ok(ExitCode::from(1));
            }
        }
        #[cfg(feature = "testing")]
        Cmd::BenchFill {
            config,
            camera,
            clip,
            width,
            height,
            fps,
            hours,
            segment_secs,
            manifest,
        } => {
            let settings = Settings::load(&config)?;
            let clip =
                std::fs::read(&clip).with_context(|| format!("cannot read {}", clip.display()))?;
            let started = std::time::Instant::now();
            let f = viewer_api::benchfill::fill(
                &settings.recorder,
                &camera,
                &clip,
                (width, height),
                fps,
                hours,
                segment_secs,
                &manifest,
            )?;
            println!(
                "filled {} segments, {} bytes, {} .. {} in {:.1} s",
                f.segments,
                f.bytes,
                f.first_unix_ms,
                f.end_unix_ms,
                started.elapsed().as_secs_f64()
            );
        }
        Cmd::Audit {
            cmd: AuditCmd::Verify { config },
        } => {
            let settings = Settings::load(&config)?;
            // The newest checkpoint the recorder signed, and its key: without them the
            // log's end cannot be vouched for.
            let client = recorder::service::Client::new(settings.recorder_socket());
            let anchor = client
                .call::<Option<recorder::checkpoint::SignedCheckpoint>>(
                    &recorder::service::Request::LatestCheckpoint,
                )
                .and_then(|c| {
                    let pk: String = client.call(&recorder::service::Request::PublicKey)?;
                    Ok((c, pk))
                });
            let (checkpoint, pk) = match anchor {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("error: cannot get the access log's signed checkpoint: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let Some(checkpoint) = checkpoint else {
                println!(
                    "the recorder holds no signed checkpoint of the access log: its end cannot be vouched for"
                );
                return Ok(ExitCode::from(1));
            };
            let pk: [u8; 32] = hex::decode(pk)
                .ok()
                .and_then(|v| v.try_into().ok())
                .context("the recorder sent a malformed public key")?;
            let result = audit::verify_anchored(&settings.audit_db(), &checkpoint, &pk);
            if result.is_ok() {
                // Everything the recorder served must be in the log.
                let mut after_id = 0;
                let mut mismatches = Vec::new();
                loop {
                    let page: Vec<recorder::service::Served> =
                        match client.call(&recorder::service::Request::Served {
                            after_id,
                            limit: 5_000,
                        }) {
                            Ok(p) => p,
                            Err(e) => {
                                eprintln!("error: cannot read the recorder's served journal: {e}");
                                return Ok(ExitCode::from(2));
                            }
                        };
                    let Some(last) = page.last() else { break };
                    after_id = last.id;
                    mismatches.extend(audit::reconcile(&settings.audit_db(), &page)?);
                }
                if !mismatches.is_empty() {
                    for m in mismatches.iter().take(20) {
                        println!("{m}");
                    }
                    println!(
                        "{} thing(s) the recorder served are not in the access log",
                        mismatches.len()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            match result {
                Ok(n) => println!(
                    "access log intact: {n} entries; the recorder's checkpoint of entry {} ({}) matches",
                    checkpoint.checkpoint.seq,
                    viewer_api::clock::rfc3339(checkpoint.checkpoint.time_unix_ms)
                ),
                Err(VerifyError::Broken(b)) => {
                    println!("{b}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    recorder::init_diagnostics();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
