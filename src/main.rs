//! udp-reflector: parse, run, map errors to an exit status.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use udp_reflector::{
    bench::Verdict,
    cli::{BenchCommand, BenchTool, Cli, Command},
};

// mimalloc: workers allocate almost nothing on the hot path, but the
// reporter and the bench client do, from several threads; mimalloc keeps
// those allocations thread-local and off the workers' cache lines.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: clap prints them as usual.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("udp-reflector: {}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Some(Command::Bench(BenchCommand {
            tool: Some(BenchTool::Merge(m)),
            ..
        })) => udp_reflector::bench::merge::run(&m),
        Some(Command::Bench(BenchCommand { run: None, .. })) => {
            eprintln!("udp-reflector: bench needs --target HOST:PORT (or: bench merge FILE...)");
            return ExitCode::from(2);
        }
        Some(Command::Bench(BenchCommand {
            run: Some(args), ..
        })) => match udp_reflector::bench::run(&args) {
            Ok(Verdict::Pass) => Ok(()),
            Ok(Verdict::Fail(line)) => {
                // A run past --max-loss / --max-p99: status 1, not a usage error.
                eprintln!("{line}");
                return ExitCode::from(1);
            }
            Err(e) => Err(e),
        },
        Some(Command::Serve(args)) => run_serve(&args),
        None => run_serve(&cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-reflector: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_serve(args: &udp_reflector::cli::ServeArgs) -> Result<(), udp_reflector::Error> {
    let cfg = args.validate(std::io::stdout().is_terminal())?;
    if args.check {
        return udp_reflector::check::run(&cfg);
    }
    udp_reflector::runtime::serve(&cfg)
}

/// clap's message on one line: the error and what is valid, without the
/// usage block and the `--help` tip.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}
