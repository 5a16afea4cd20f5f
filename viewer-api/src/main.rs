//! The viewer-api process. Its own issue builds the HTTPS API; until then it only
//! says so, so that `make run` and the workspace stay whole.
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "viewer-api",
    version,
    about = "Ringfence viewer API (not built yet)"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _ = Cli::parse();
    anyhow::bail!("viewer-api is not implemented yet: see the open issue for role-based access")
}
