//! One module per subcommand (zoxide's layout); the enum dispatches through
//! [`Run`].

mod chat;
mod conversations;
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
            Command::Conversations(args) => args.run(cfg, rt),
            Command::Chat(args) => args.run(cfg, rt),
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

/// The folders under `<home>/indexes`, by name (none when there is no such
/// folder yet): what `ask status --all` and `ask serve`'s models list.
pub(crate) fn index_names(cfg: &Config) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(cfg.home.join("indexes")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = entries.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    Ok(names)
}

/// Rows of cells as aligned columns two spaces apart, the first row
/// `head`; the last column is not padded. What `ask models` and `ask status
/// --all` print.
pub(crate) fn columns<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> Vec<String> {
    let widths: [usize; N] = std::array::from_fn(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].chars().count()]).max().unwrap_or(0));
    let line = |cells: [&str; N]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        l
    };
    std::iter::once(line(head)).chain(rows.iter().map(|r| line(std::array::from_fn(|i| r[i].as_str())))).collect()
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

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_on_the_widest_cell_and_leave_the_last_unpadded() {
        let rows = [["notes".to_owned(), "12".to_owned(), "all-MiniLM".to_owned()], ["a".to_owned(), "1034".to_owned(), "x".to_owned()]];
        assert_eq!(super::columns(["INDEX", "FILES", "ENCODER"], &rows), ["INDEX  FILES  ENCODER", "notes  12     all-MiniLM", "a      1034   x"]);
    }
}
