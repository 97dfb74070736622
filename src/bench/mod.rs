//! `udp-reflector bench`: a load generator for any UDP echo server.

use clap::Args;

use crate::Error;

/// Flags of `bench` (to be completed).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Echo server to drive, ADDR:PORT.
    #[arg(long)]
    pub target: std::net::SocketAddr,
}

/// Runs the load generator and prints its report.
pub fn run(_args: &BenchArgs) -> Result<(), Error> {
    Err(Error::Invalid { flag: "bench", reason: "not yet implemented".into() })
}
