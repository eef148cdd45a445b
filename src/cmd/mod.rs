//! One module per subcommand (zoxide's layout); the enum dispatches through
//! [`Run`].

mod forget;
mod index;
mod mcp;
mod models;
mod query;
mod search;
mod serve;
pub mod shell;
mod status;
mod summarize;
mod eval;
mod watch;

use anyhow::Result;
use tokio::runtime::Runtime;

use crate::cli::Command;
use crate::config::Config;
use crate::exit::Exit;

/// What every subcommand does.
pub trait Run {
    /// Runs the subcommand; errors that stop the run are returned, errors
    /// about single items are reported and reflected in the exit status.
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit>;
}

impl Run for Command {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        match self {
            Command::Index(args) => args.run(cfg, rt),
            Command::Search(args) => args.run(cfg, rt),
            Command::Query(args) => args.run(cfg, rt),
            Command::Status(args) => args.run(cfg, rt),
            Command::Models(args) => args.run(cfg, rt),
            Command::Mcp(args) => args.run(cfg, rt),
            Command::Serve(args) => args.run(cfg, rt),
            Command::Summarize(args) => args.run(cfg, rt),
            Command::Eval(args) => args.run(cfg, rt),
            Command::Watch(args) => args.run(cfg, rt),
            Command::Forget(args) => args.run(cfg, rt),
            Command::Completions(args) => shell::completions(args),
            Command::Man(args) => shell::man(args),
        }
    }
}

/// The metadata of the configured index, or an error telling the user how
/// to create it.
pub(crate) fn index_meta(cfg: &Config) -> Result<ask_store::IndexMeta> {
    match ask_store::IndexMeta::load(&cfg.index_dir)? {
        Some(meta) => Ok(meta),
        None => anyhow::bail!(
            "no index '{}' yet (looked in {}); run `ask index PATH` first",
            cfg.index_name,
            cfg.index_dir.display()
        ),
    }
}

/// RFC 3339 for a Unix time in seconds.
pub(crate) fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default()
}

/// Catches Ctrl-C while a model generates: the first press sets the flag
/// (generation stops after the current token, the text so far is kept and
/// the run exits 130); a second press exits at once.
pub fn interrupt_flag(rt: &Runtime) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            set.store(true, Ordering::SeqCst);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(Exit::Interrupted.code().into());
            }
        }
    });
    flag
}
