//! `ask`: a thin binary over the ingest, model and store crates.

mod cli;
mod cmd;
mod config;
mod exit;
mod filters;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::cmd::Run;
use crate::exit::Exit;

/// mimalloc reuses freed memory where glibc's malloc returns every large
/// tensor to the kernel and faults fresh zeroed pages in for the next one:
/// 15% of the encoder's time went to page faults, and 256-token inputs
/// embed 30% faster with it (crates/ask-model/examples/embed-bench.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ask_ingest::extract::silence_extractor_panics();
    let cli = cli::Cli::parse();
    match run(&cli) {
        Ok(exit) => exit.into(),
        Err(err) if is_broken_pipe(&err) => Exit::Success.into(),
        Err(err) => {
            eprintln!("ask: {err:#}");
            Exit::Error.into()
        }
    }
}

fn run(cli: &cli::Cli) -> anyhow::Result<Exit> {
    let cfg = config::Config::resolve(&cli.global)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    cli.command.run(&cfg, &rt)
}

/// `ask search x | head -1` closes our stdout early: that is success, not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}
