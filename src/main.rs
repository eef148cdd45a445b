//! `ask`: a thin binary over the ingest, model and store crates.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod config;
mod exit;
mod filters;
mod hyperlink;
mod progress;

use std::process::ExitCode;


use crate::cmd::Run;
use crate::exit::Exit;

/// mimalloc reuses freed memory where glibc's malloc returns every large
/// tensor to the kernel and faults fresh zeroed pages in for the next one:
/// 15% of the encoder's time went to page faults, and 256-token inputs
/// embed 30% faster with it (crates/ask-embed/examples/embed-bench.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Everything ask creates is its owner's alone (files 0600, folders 0700),
/// whatever the umask it was started with: an index, its lock and
/// metadata, eval's scratch corpus and the tables LanceDB writes hold the
/// user's text.
fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// ONNX Runtime's own builds (the onnxruntime wheel's library, which ask's
/// set-up fetches) carry Microsoft's telemetry client: on load it writes a
/// device id and an event store (`~/.cache/Microsoft/DeveloperTools/
/// .onnxruntime/deviceid`, `onnxruntime.db`), and it knows an address to
/// send events to. ask opens no socket either way (the offline tests), but
/// an identifier and an event log have no place beside private mail; the
/// library reads ORT_DISABLE_TELEMETRY and then writes neither.
fn no_telemetry() {
    // Set before any thread is started (the first thing main does), so
    // nothing reads the environment while it changes.
    std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
}

/// The temporary folder of this process, inside ask's data directory:
/// the libraries' scratch files (LanceDB's full-text index builder spills
/// the terms of the user's text into a temporary folder) stay out of a
/// shared /tmp, and what a killed run left is found and removed. Removed
/// when dropped; folders of processes no longer alive are removed when
/// the next one starts.
struct PrivateTemp(Option<std::path::PathBuf>);

impl PrivateTemp {
    fn new(home: &std::path::Path) -> PrivateTemp {
        let root = home.join("tmp");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let pid = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
                if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = root.join(std::process::id().to_string());
        if std::fs::create_dir_all(&dir).is_err() {
            return PrivateTemp(None); // a read-only home: the system's stays
        }
        // Set before any thread is started (run() calls this before it
        // builds the runtime), so nothing reads the environment meanwhile.
        std::env::set_var("TMPDIR", &dir);
        PrivateTemp(Some(dir))
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn main() -> ExitCode {
    ask_engine::memory::keep_freed();
    private_files();
    no_telemetry();
    ask_ingest::extract::silence_extractor_panics();
    let cli = parse();
    match run(&cli) {
        Ok(exit) => exit.into(),
        Err(err) if is_broken_pipe(&err) => Exit::Success.into(),
        Err(err) if err.downcast_ref::<exit::Usage>().is_some() => {
            use clap::CommandFactory;
            cli::Cli::command().error(clap::error::ErrorKind::ArgumentConflict, err.to_string()).exit()
        }
        Err(err) => {
            match advice(&err) {
                Some(advice) => eprintln!("ask: {}; {advice}", message(&err)),
                None => eprintln!("ask: {}", message(&err)),
            }
            Exit::Error.into()
        }
    }
}

/// The command line, refusing `--index` and `--embed-model` where they
/// would do nothing (clap's usage error, exit 2). The environment's
/// ASK_INDEX and ASK_EMBED_MODEL are for every command and never refused.
fn parse() -> cli::Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some((name, sub)) = matches.subcommand() {
        if let Some(flag) = unused_global(name, |id| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine)) {
            let message = format!("{flag} does nothing for `ask {name}`: leave it out");
            cli::Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message).exit();
        }
    }
    cli
}

/// A global flag given on the command line (`given` by argument id) to a
/// command that does not use it.
fn unused_global(command: &str, given: impl Fn(&str) -> bool) -> Option<&'static str> {
    if !matches!(command, "man" | "completions" | "models") {
        return None;
    }
    [("index", "--index"), ("embed_model", "--embed-model")].into_iter().find(|(id, _)| given(id)).map(|(_, flag)| flag)
}

fn run(cli: &cli::Cli) -> anyhow::Result<Exit> {
    // Neither needs a configuration, nor may a broken one stop them.
    match &cli.command {
        cli::Command::Completions(args) => return cmd::shell::completions(args),
        cli::Command::Man(args) => return cmd::shell::man(args),
        _ => {}
    }
    let cfg = config::Config::resolve(&cli.global)?;
    let _tmp = PrivateTemp::new(&cfg.home);
    let rt = ask_store::runtime()?;
    cli.command.run(&cfg, &rt)
}

/// A first `ask index` run builds the full-text index when it finishes, so
/// BM25 search fails while one is under way (dense and hybrid search work
/// from the first committed slice on).
const NO_TEXT_INDEX: &str = "an `ask index` run builds it as it finishes (start one if none is under way); meanwhile search with --mode dense or hybrid";

/// Whether the error is a full disk (ENOSPC), however deep LanceDB and the
/// object store wrapped it.
fn disk_full(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.raw_os_error() == Some(28) || io.kind() == std::io::ErrorKind::StorageFull))
        || err.root_cause().to_string().contains("No space left on device")
}

/// The error as one line: each link of the chain, except that under the
/// store's own context (which names the index) only the root cause is
/// said, since LanceDB's errors repeat their sources in their own text
/// ("lance error: LanceError(IO): X, file.rs:190: LanceError(IO): X, …: X").
fn message(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for e in err.chain() {
        if matches!(e.downcast_ref::<ask_store::StoreError>(), Some(ask_store::StoreError::Lance { .. })) {
            parts.push(e.to_string());
            parts.push(err.root_cause().to_string());
            break;
        }
        parts.push(e.to_string());
    }
    parts.join(": ")
}

/// How to get models, from a clone of ask's source or with the binary alone.
const FETCH_MODELS: &str = "run scripts/fetch-models in ask's source folder (it places the default models), or give a model's path: --model FILE.gguf, --embed-model DIR";

/// What the user can do about an error the libraries report: they say
/// what happened; which command or flag mends it is the binary's to say.
fn advice(err: &anyhow::Error) -> Option<&'static str> {
    use ask_store::StoreError;
    if disk_full(err) {
        return Some("free some space and run the command again: what an `ask index` run committed before the disk filled is kept, and the next run adds the rest");
    }
    err.chain().find_map(|e| {
        if let Some(e) = e.downcast_ref::<ask_store::StoreError>() {
            return match e {
                StoreError::NoMailHeaders(_) => Some("run `ask index` on it once to add them"),
                StoreError::NoTextIndex(_) => Some(NO_TEXT_INDEX),
                StoreError::Lance { .. } => Some("if the index's files were damaged, `ask index --rebuild PATH...` builds it anew from your files"),
                _ => None,
            };
        }
        match e.downcast_ref::<ask_engine::ModelError>() {
            Some(ask_engine::ModelError::Missing { .. }) => Some(FETCH_MODELS),
            Some(ask_engine::ModelError::UnknownModel { known, .. }) if known.is_empty() => Some(FETCH_MODELS),
            Some(ask_engine::ModelError::UnknownModel { .. }) => Some("`ask models` lists every model ask can use, by the names --model takes"),
            Some(ask_engine::ModelError::Runtime { .. }) => {
                Some("run scripts/fetch-models --onnx, or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.24 or newer")
            }
            _ => None,
        }
    })
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

#[cfg(test)]
mod tests {
    #[test]
    fn advice_is_found_under_the_context_the_commands_add() {
        let missing = ask_engine::ModelError::Missing { path: "/m/config.json".into(), what: "encoder config" };
        let err = anyhow::Error::new(missing).context("cannot use the encoder");
        assert!(super::advice(&err).is_some_and(|a| a.contains("scripts/fetch-models") && a.contains("--embed-model DIR")));
        // A name nothing answers to: where models come from when none is
        // anywhere, else the command that lists them.
        let unknown = |known: Vec<String>| anyhow::Error::new(ask_engine::ModelError::UnknownModel { spec: "llama9".into(), searched: "/m".into(), known });
        assert!(super::advice(&unknown(vec![])).is_some_and(|a| a.contains("scripts/fetch-models")));
        assert!(super::advice(&unknown(vec!["smollm2".into()])).is_some_and(|a| a.contains("`ask models`")));
        let err = anyhow::Error::new(ask_store::StoreError::NoTextIndex("/i".into()));
        assert_eq!(super::advice(&err), Some(super::NO_TEXT_INDEX));
        assert_eq!(super::advice(&anyhow::anyhow!("the query is empty")), None);
    }

    /// An error whose text repeats its source's, as LanceDB's do.
    #[derive(Debug)]
    struct Nested(std::io::Error);
    impl std::fmt::Display for Nested {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "LanceError(IO): {}, writer.rs:190: LanceError(IO): {}", self.0, self.0)
        }
    }
    impl std::error::Error for Nested {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_full_disk_is_said_once_with_what_to_do() {
        let full = std::io::Error::from_raw_os_error(28);
        let store = ask_store::StoreError::Lance { dir: "/i".into(), source: Box::new(Nested(full)) };
        let err = anyhow::Error::new(store).context("cannot index");
        let text = super::message(&err);
        assert!(text.starts_with("cannot index: index at /i: No space left on device"), "{text}");
        assert_eq!(text.matches("No space left").count(), 1, "{text}");
        assert!(super::advice(&err).unwrap().starts_with("free some space"));
        // Other chains print every link.
        let plain = anyhow::anyhow!("the query is empty").context("cannot search");
        assert_eq!(super::message(&plain), "cannot search: the query is empty");
    }
}
