//! `ask index`: the flags of [`ask_pipeline::index`], its progress on a
//! terminal, and its summary as a line or JSON.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use ask_ingest::chunk::ChunkError;
use ask_ingest::WalkOptions;
use ask_pipeline::index::{self, LazyEncoder};
use ask_pipeline::{Encoder, Event, IndexError, Options, Progress, Summary, Writer};
use ask_store::{LockError, Root, WhenBusy};
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::runtime::Runtime;

use super::Run;
use crate::cli::{IndexArgs, IndexingArgs};
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::Ui;

/// The run's outcome, printed as a line or as JSON.
#[derive(Serialize)]
pub(crate) struct Report<'a> {
    pub index: &'a str,
    #[serde(flatten)]
    pub summary: &'a Summary,
}

impl IndexArgs {
    /// The paths given, and with --stdin those read one per line.
    fn paths(&self) -> Result<Vec<PathBuf>> {
        let mut paths = self.paths.clone();
        if self.stdin {
            for line in std::io::stdin().lock().lines() {
                let line = line.context("cannot read paths from standard input")?;
                let line = line.trim_end_matches('\r');
                if !line.is_empty() {
                    paths.push(PathBuf::from(line));
                }
            }
        }
        Ok(paths)
    }
}

impl IndexingArgs {
    /// The library's options from the flags.
    pub(crate) fn options(&self, cfg: &Config) -> Options {
        Options {
            walk: WalkOptions {
                hidden: self.hidden,
                follow_links: self.follow,
                no_ignore: self.no_ignore,
                max_file_size: self.max_file_size,
            },
            chunk_tokens: self.chunk_tokens,
            chunk_overlap: self.chunk_overlap,
            commit_every: self.commit_every,
            // ask's own data (indexes, models) is never indexed, even with --hidden.
            exclude: vec![cfg.home.clone()],
            rebuild: false,
        }
    }
}

impl Run for IndexArgs {
    fn run(&self, cfg: &Config, _: &Runtime) -> Result<Exit> {
        let ui = Ui::new(cfg.quiet, self.verbose);
        let options = Options { rebuild: self.rebuild, ..self.what.options(cfg) };
        let paths = self.paths()?;
        let named = !paths.is_empty() || self.stdin;
        let roots = if named {
            index::walked(&index::roots(&paths).context("invalid path")?, &options.walk)
        } else {
            self.what.refuse_walk_flags(cfg, "ask index")?;
            recorded_roots(cfg)?
        };
        let mut waiting = waiting_notice(cfg);
        let busy = if self.wait { WhenBusy::Wait(&mut waiting) } else { WhenBusy::Fail };
        let summary = match update(cfg, options, &roots, named, busy, &ui)? {
            Ok(summary) => summary,
            Err(exit) => return Ok(exit),
        };
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &Report { index: &cfg.index_name, summary: &summary })?;
            writeln!(out)?;
        }
        ui.info(&line(&cfg.index_name, &summary));
        Ok(if self.strict && summary.failed > 0 { Exit::FilesFailed } else { Exit::Success })
    }
}

impl IndexingArgs {
    /// With no PATH, each recorded root is walked as it was recorded: a
    /// walk flag would be silently ignored, so it is a usage error (exit 2).
    pub(crate) fn refuse_walk_flags(&self, cfg: &Config, command: &str) -> Result<()> {
        let given = walk_flags(&self.options(cfg).walk);
        if let Some(first) = given.first() {
            return Err(crate::exit::Usage(format!(
                "{} apply to the PATHs named; with no PATH, `{command}` walks each recorded file and folder as it was last indexed \
                 (`ask status` shows how): name the folder to change that, as in `{command} {first} ~/notes`",
                given.join(", ")
            ))
            .into());
        }
        Ok(())
    }
}

/// The files and folders the configured index records, or an error saying
/// how to give it some.
pub(crate) fn recorded_roots(cfg: &Config) -> Result<Vec<Root>> {
    let meta = super::index_meta(cfg)?;
    if meta.roots.is_empty() {
        anyhow::bail!(
            "no PATH given, and index '{}' records no files or folders (an index made by an older ask has none); \
             run `ask index PATH` once, and later runs without PATH bring PATH up to date",
            cfg.index_name
        );
    }
    Ok(meta.roots)
}

/// The flags that ask for `walk` (none for the defaults): what `ask
/// status` shows for each root, and what a run with no PATH refuses.
pub(crate) fn walk_flags(walk: &WalkOptions) -> Vec<String> {
    let mut flags: Vec<String> = [(walk.hidden, "--hidden"), (walk.follow_links, "--follow"), (walk.no_ignore, "--no-ignore")]
        .into_iter()
        .filter_map(|(on, flag)| on.then(|| flag.to_owned()))
        .collect();
    if walk.max_file_size != WalkOptions::default().max_file_size {
        flags.push(format!("--max-file-size {}", walk.max_file_size));
    }
    flags
}

/// What is printed while another run holds the index (`--wait`, and
/// every batch of `ask watch`).
pub(crate) fn waiting_notice(cfg: &Config) -> impl FnMut(&str) + '_ {
    move |pid| {
        if !cfg.quiet {
            eprintln!("ask: waiting for the `ask index` run (pid {pid}) that is writing to {}", cfg.index_dir.display());
        }
    }
}

/// One update of the configured index (eval's scratch indexes too), with
/// its progress shown by `ui`. An index another run is writing to is
/// reported and gives [`Exit::Busy`].
/// `named`: the roots are paths the user gave (which walks forgotten paths
/// among them again), not the recorded ones.
pub(crate) fn update(cfg: &Config, options: Options, roots: &[Root], named: bool, busy: WhenBusy, ui: &Ui) -> Result<Result<Summary, Exit>> {
    let mut encoder = LazyEncoder::new(&cfg.embed_model).context("cannot use the encoder")?;
    let info = encoder.info().clone();
    let result = Writer::open(&cfg.index_dir, &info, options, busy).and_then(|mut writer| {
        if named {
            writer.remember(roots);
        }
        writer.update_roots(roots, &mut encoder, &mut Bars::new(ui))
    });
    match result {
        Ok(summary) => Ok(Ok(summary)),
        Err(IndexError::Lock(e @ LockError::Busy { .. })) => Ok(Err(held_elsewhere(&e, ui))),
        Err(e) => Err(advise(e, cfg)),
    }
}

/// Another run holds the index: said, with the flag that waits for it, and
/// exit code 75 for a script to retry (`ask index`, `ask forget`).
pub(crate) fn held_elsewhere(e: &LockError, ui: &Ui) -> Exit {
    ui.error(&format!("{e}; wait for it, or pass --wait"));
    Exit::Busy
}

/// The library's error, with what the user can do about it.
pub(crate) fn advise(e: IndexError, cfg: &Config) -> anyhow::Error {
    match e {
        IndexError::EncoderMismatch { source, .. } => anyhow::anyhow!(
            "{source} ('{}'); index into another index with --index NAME, or pass --rebuild to build it anew with this encoder",
            cfg.index_name,
        ),
        IndexError::Chunking(ChunkError::Overlap { overlap, size }) => {
            anyhow::anyhow!("--chunk-overlap ({overlap}) must be smaller than the chunk size ({size})")
        }
        IndexError::Encoder(e) => anyhow::Error::new(e).context("cannot load the encoder"),
        // The store's own words name the index and what failed.
        IndexError::Store(e) => e.into(),
        e => e.into(),
    }
}

/// `notes: 3 new, 1 changed, …; 12 chunks embedded in 1.2s`
pub(crate) fn line(index: &str, s: &Summary) -> String {
    format!(
        "{index}: {} new, {} changed, {} unchanged, {} removed, {} failed, {} skipped; {} chunks embedded{} in {:.1}s",
        s.new,
        s.changed,
        s.unchanged,
        s.removed,
        s.failed,
        s.skipped,
        s.chunks,
        if s.reused > 0 { format!(", {} reused", s.reused) } else { String::new() },
        s.seconds
    )
}

/// An update's progress on a terminal: a spinner while scanning, a bar
/// over the files read, a spinner while optimizing.
struct Bars<'a> {
    ui: &'a Ui,
    bar: Option<ProgressBar>,
}

impl<'a> Bars<'a> {
    fn new(ui: &'a Ui) -> Bars<'a> {
        Bars { ui, bar: Some(ui.spinner("scanning")) }
    }

    fn replace(&mut self, bar: Option<ProgressBar>) {
        if let Some(old) = std::mem::replace(&mut self.bar, bar) {
            old.finish_and_clear();
        }
    }
}

impl Progress for Bars<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Scanning { files } => self.bar.iter().for_each(|b| b.set_message(format!("scanning: {files} files"))),
            Event::Reading { files } => {
                if files > 0 {
                    self.ui.phase(&format!("reading {files} new or changed files"));
                }
                self.replace(Some(self.ui.bar(files as u64, "files")))
            }
            Event::Read => self.bar.iter().for_each(|b| b.inc(1)),
            Event::Failed(why) => self.ui.error(why),
            Event::Skipped(why) => self.ui.info(&format!("skipped {why}")),
            Event::LoadingEncoder => {
                self.ui.phase("loading the encoder");
                self.bar.iter().for_each(|b| b.set_message("loading encoder"))
            }
            Event::Embedded { chunks, tokens_per_s } => {
                self.bar.iter().for_each(|b| b.set_message(format!("{chunks} chunks, {tokens_per_s:.0} tokens/s")))
            }
            Event::Optimizing => {
                self.ui.phase("optimizing the index");
                self.replace(Some(self.ui.spinner("optimizing index")))
            }
        }
    }
}

impl Drop for Bars<'_> {
    fn drop(&mut self) {
        self.replace(None);
    }
}
