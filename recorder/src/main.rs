//! The `recorder` command: init, run, check.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use recorder::config::Config;
use recorder::{check, store};

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
    /// Decrypt and authenticate every segment and match files with the catalog.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
            recorder::run::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, json } => {
            let config = Config::load(&config)?;
            let keys = store::key_provider(&config);
            let kek = store::load_kek(&config, &keys)?;
            let ids: Vec<String> = config.cameras.iter().map(|c| c.id.clone()).collect();
            let report = check::check(&config.storage.path, &kek, &ids)
                .map_err(anyhow::Error::msg)
                .context("check failed")?;
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
    if r.problems.is_empty() {
        println!("OK: every segment authenticates and matches the catalog");
    } else {
        for p in &r.problems {
            println!("PROBLEM {}: {}", p.segment, p.problem);
        }
    }
}
