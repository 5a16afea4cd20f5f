//! The `recorder` command: init, run, serve, check, holds, journal. It lives in the
//! library so that the recorder's internals (catalog, recovery, check) stay private to
//! the crate; `main.rs` only calls [`main`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::{check, store};

#[derive(Parser)]
#[command(
    name = "recorder",
    version,
    about = "Ringfence recorder: RTSP cameras into encrypted segments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the store and the key-encryption key when absent (never replaces a key).
    Init {
        #[arg(long)]
        config: PathBuf,
    },
    /// Record every configured camera until SIGINT or SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Only the local service to the viewer-api (footage, holds, signatures), without
    /// recording: for a store being examined, and for tests. Runs until SIGINT/SIGTERM.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Decrypt and authenticate every segment and match files with the catalog.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Legal holds: footage that retention must keep, for a case.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// The deletion journal: every deleted segment, when and why (kept one year).
    Journal {
        #[arg(long)]
        config: PathBuf,
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
        /// Only this camera.
        #[arg(long)]
        camera: Option<String>,
        /// Only deletions at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
enum HoldCommand {
    /// Place a hold; prints its id.
    Add {
        #[arg(long)]
        config: PathBuf,
        /// A camera id, or `all` (repeat for several cameras).
        #[arg(long = "camera", required = true)]
        cameras: Vec<String>,
        /// Start of the held footage (RFC 3339).
        #[arg(long)]
        from: String,
        /// End of the held footage (RFC 3339).
        #[arg(long)]
        to: String,
        /// Case reference.
        #[arg(long)]
        case: String,
        /// Who places the hold.
        #[arg(long)]
        by: String,
        /// When the hold expires by itself (RFC 3339); without it, only release ends it.
        #[arg(long)]
        until: Option<String>,
    },
    /// List holds (active and expired; released ones with --all).
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        /// Include released holds.
        #[arg(long)]
        all: bool,
    },
    /// Release a hold: its footage falls under the normal retention rules again.
    Release {
        #[arg(long)]
        config: PathBuf,
        id: i64,
        #[arg(long)]
        by: String,
    },
}

/// Opens the catalog of an initialised store (for hold and journal commands).
fn open_catalog(config: &Config) -> anyhow::Result<crate::catalog::Catalog> {
    let store = &config.storage.path;
    if !store.join(crate::catalog::CATALOG_FILE).exists() {
        anyhow::bail!(
            "store {} was never initialised; run `recorder init --config <file>` first",
            store.display()
        );
    }
    Ok(crate::catalog::Catalog::open(store)?)
}

fn parse_time(what: &str, s: &str) -> anyhow::Result<i64> {
    crate::clock::parse_rfc3339(s).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
}

fn hold_command(command: HoldCommand) -> anyhow::Result<ExitCode> {
    use crate::clock::{Clock, SystemClock};
    use crate::holds;
    let now = SystemClock.now_unix_ms();
    match command {
        HoldCommand::Add {
            config,
            cameras,
            from,
            to,
            case,
            by,
            until,
        } => {
            let config = Config::load(&config)?;
            let cameras = if cameras.iter().any(|c| c == "all") {
                if cameras.len() > 1 {
                    anyhow::bail!("--camera all covers every camera; give it alone");
                }
                holds::HoldCameras::All
            } else {
                for c in &cameras {
                    if !config.cameras.iter().any(|k| &k.id == c) {
                        anyhow::bail!("--camera {c:?} is not a configured camera");
                    }
                }
                let mut c = cameras;
                c.sort();
                c.dedup();
                holds::HoldCameras::Some(c)
            };
            let hold = holds::NewHold {
                cameras,
                from_unix_ms: parse_time("from", &from)?,
                to_unix_ms: parse_time("to", &to)?,
                case_ref: case,
                placed_by: by,
                until_unix_ms: until
                    .as_deref()
                    .map(|u| parse_time("until", u))
                    .transpose()?,
            };
            let cat = open_catalog(&config)?;
            let id = holds::add(&cat, &hold, now)?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        HoldCommand::List { config, json, all } => {
            let config = Config::load(&config)?;
            let cat = open_catalog(&config)?;
            let list: Vec<_> = holds::list(&cat)?
                .into_iter()
                .filter(|h| all || h.released_unix_ms.is_none())
                .map(|h| h.to_json(now))
                .collect();
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else if list.is_empty() {
                println!("no holds");
            } else {
                for h in &list {
                    println!(
                        "hold {} [{}] cameras {} from {} to {} case {:?} by {} until {} created {}{}",
                        h.id,
                        h.status,
                        h.cameras.join(","),
                        h.from,
                        h.to,
                        h.case,
                        h.by,
                        h.until.as_deref().unwrap_or("release"),
                        h.created,
                        h.released
                            .as_ref()
                            .map(|r| format!(
                                " released {r} by {}",
                                h.released_by.as_deref().unwrap_or("?")
                            ))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HoldCommand::Release { config, id, by } => {
            let config = Config::load(&config)?;
            let cat = open_catalog(&config)?;
            holds::release(&cat, id, &by, now)?;
            println!("hold {id} released");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Frames of at least this size get a mapping of their own (see [`fix_mmap_threshold`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;

/// glibc's allocator raises its mmap threshold to the size of the largest mapped block
/// freed. After the first large key frame, every frame is then carved from the heap, and
/// the heap, fragmented by frames of every size freed on the writer threads, is not
/// given back: at 16 cameras the recorder kept about 4 MiB more than it used. With the
/// threshold fixed (glibc's default, without the raising), frames of 128 KiB and more
/// get mappings of their own, returned to the system as soon as they are written.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_mmap_threshold() {
    // SAFETY: mallopt only changes the allocator's settings, and this runs first in
    // main, before any other thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
}

pub fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fix_mmap_threshold();
    crate::init_diagnostics();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("recorder: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init { config } => {
            let config = Config::load(&config)?;
            let keys = store::key_provider(&config);
            for line in store::init(&config, &keys)? {
                println!("{line}");
            }
            println!("store {} is ready", config.storage.path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let config = Config::load(&config)?;
            crate::run::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            let clock = std::sync::Arc::new(crate::clock::SystemClock);
            let storage = std::sync::Arc::new(crate::devices::StorageWatch::start(&config, None));
            let service = crate::service::Service::from_config(&config, clock)?
                .with_storage(storage)
                .listen(&config.service_socket())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let _watchdog = crate::run::watch(
                    hardware::watchdog::Heartbeats::new(hardware::watchdog::mono_ms()),
                    "serving footage to the viewer-api",
                );
                let mut term = signal(SignalKind::terminate())?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                anyhow::Ok(())
            })?;
            drop(service);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, json } => {
            let config = Config::load(&config)?;
            let keys = store::key_provider(&config);
            let kek = store::load_kek(&config, &keys)?;
            let ids: Vec<String> = config.cameras.iter().map(|c| c.id.clone()).collect();
            let report = check::check(&config.storage.path, &kek, &ids).context("check failed")?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_report(&report);
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Hold { command } => hold_command(command),
        Command::Journal {
            config,
            json,
            camera,
            since,
        } => {
            let config = Config::load(&config)?;
            let since = since
                .as_deref()
                .map(|s| parse_time("since", s))
                .transpose()?;
            let cat = open_catalog(&config)?;
            let entries = crate::journal::entries(&cat, camera.as_deref(), since)?;
            if json {
                let list: Vec<_> = entries.iter().map(|e| e.to_json()).collect();
                println!("{}", serde_json::to_string(&list)?);
            } else if entries.is_empty() {
                println!("no deletions journaled");
            } else {
                for e in entries.iter().map(|e| e.to_json()) {
                    println!(
                        "{} deleted {} camera {} {} .. {} {} bytes sha256 {} ({})",
                        e.deleted_at,
                        e.segment,
                        e.camera,
                        e.from,
                        e.to,
                        e.bytes,
                        e.sha256.as_deref().unwrap_or("-"),
                        e.reason
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(r: &check::CheckReport) {
    for c in &r.cameras {
        println!(
            "camera {}: {} segments, {} frames ({} key), {} bytes, {} .. {}",
            c.id,
            c.segments,
            c.frames,
            c.key_frames,
            c.bytes,
            c.first.as_deref().unwrap_or("-"),
            c.last.as_deref().unwrap_or("-"),
        );
        for g in &c.gaps {
            println!(
                "  gap {} .. {}: {}",
                g.from,
                g.to.as_deref().unwrap_or("now"),
                g.reason
            );
        }
    }
    println!("recovered segments: {}", r.recovered_segments);
    if let Some(ret) = &r.retention {
        println!(
            "retention ({}): {} holds in force",
            ret.updated, ret.holds_active
        );
        for a in &ret.alarms {
            println!("ALARM retention: {a}");
        }
        if let Some(c) = &ret.clock_refused {
            println!("WARNING retention: not deleting by age: {c}");
        }
    }
    if r.problems.is_empty() {
        println!("OK: every segment authenticates and matches the catalog");
    } else {
        for p in &r.problems {
            println!("PROBLEM {}: {}", p.segment, p.problem);
        }
    }
}
