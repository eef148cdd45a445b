//! `ask watch`: the index kept up to date as files change.
//!
//! File events (inotify on Linux, FSEvents and ReadDirectoryChangesW
//! elsewhere, through `notify`) only say *that* something changed: each
//! burst of them, once it settles, is applied as one incremental update of
//! every watched root, the very pass `ask index` makes. Ignore rules,
//! deletions, moves (embeddings reused by content hash), editors' atomic
//! saves and a lost event queue (inotify's overflow) then all come out
//! right without a rule of their own, and the cost of a batch is a walk
//! that opens only the files that changed. The writer lock is held only
//! while a batch is written, so a cron `ask index` can still run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ask_pipeline::index::{self, LazyEncoder};
use ask_pipeline::{Encoder, Event, Progress, Writer};
use ask_store::{Root, WhenBusy};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::runtime::Runtime;

use super::index::{advise, line, recorded_roots, waiting_notice, Report};
use super::Run;
use crate::cli::WatchArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::Ui;

/// A batch is applied at the latest this long after its first event,
/// however busy the folders stay (a long `git checkout`).
const MAX_BATCH_DELAY: Duration = Duration::from_secs(5);
/// How often a wait for events looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// What ended a wait for events.
enum Next {
    /// A burst of changes, settled: apply it.
    Batch,
    /// No change for `--unload-after` seconds.
    Idle,
    /// Ctrl-C, SIGTERM, or the watcher is gone.
    Stop,
}

/// Prints what an update reports as failing; a watcher shows no bars.
struct Errors<'a>(&'a Ui);

impl Progress for Errors<'_> {
    fn event(&mut self, event: Event<'_>) {
        if let Event::Failed(why) = event {
            self.0.error(why);
        }
    }
}

/// Set by Ctrl-C (a second one exits at once) or SIGTERM.
fn stop_flag(rt: &Runtime) -> Arc<AtomicBool> {
    let flag = super::interrupt_flag(rt);
    let set = flag.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            set.store(true, Ordering::SeqCst);
        }
    });
    flag
}

/// Whether an event can change what the index should hold: not a read,
/// not inside ask's own data (the index being written), and at or below a
/// root (the roots' parents are watched too, for a root made again, and
/// report their other entries).
fn matters(event: &notify::Result<notify::Event>, own: &Path, roots: &[PathBuf]) -> bool {
    match event {
        // An error (a queue overflow among them) may hide a change: rescan.
        Err(_) => true,
        Ok(e) if matches!(e.kind, EventKind::Access(_)) => false,
        Ok(e) => {
            e.need_rescan()
                || e.paths.is_empty()
                || e.paths.iter().any(|p| !p.starts_with(own) && roots.iter().any(|r| p.starts_with(r)))
        }
    }
}

/// What a root is on disk (device and inode), if it exists.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Watches each root as it is now: a root deleted and made again is
/// another inode, which the old watch does not see. `watched` holds what
/// each root was when it was last watched; an error names the root that
/// cannot be watched.
fn rewatch(watcher: &mut impl Watcher, roots: &[PathBuf], watched: &mut [Option<(u64, u64)>]) -> Result<()> {
    for (root, was) in roots.iter().zip(watched.iter_mut()) {
        let now = identity(root);
        if now == *was {
            continue;
        }
        if was.is_some() {
            let _ = watcher.unwatch(root); // gone with its inode, or about to be replaced
        }
        if now.is_some() {
            watcher.watch(root, RecursiveMode::Recursive).map_err(|e| watch_error(e, root))?;
        }
        *was = now;
    }
    Ok(())
}

/// The fix for a watch that could not be set up.
fn watch_error(e: notify::Error, path: &Path) -> anyhow::Error {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => anyhow::anyhow!(
            "{}: the system's limit of watched folders is reached; raise it, for example with \
             `sudo sysctl fs.inotify.max_user_watches=524288`",
            path.display()
        ),
        _ => anyhow::Error::new(e).context(format!("cannot watch {}", path.display())),
    }
}

impl WatchArgs {
    /// One incremental update of every root; prints it when it changed
    /// something (and, with --json, the first one always). The first
    /// update of paths the user named walks forgotten paths among them
    /// again, as `ask index PATH` does.
    fn apply(&self, cfg: &Config, roots: &[Root], encoder: &mut LazyEncoder, ui: &Ui, first: bool) -> Result<()> {
        let mut waiting = waiting_notice(cfg);
        let info = encoder.info().clone();
        let summary = Writer::open(&cfg.index_dir, &info, self.what.options(cfg), WhenBusy::Wait(&mut waiting))
            .and_then(|mut writer| {
                if first && !self.paths.is_empty() {
                    writer.remember(roots);
                }
                writer.update_roots(roots, encoder, &mut Errors(ui))
            })
            .map_err(|e| advise(e, cfg))?;
        let changed = summary.new + summary.changed + summary.removed + summary.failed > 0;
        if self.json && (first || changed) {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &Report { index: &cfg.index_name, summary: &summary })?;
            writeln!(out)?;
            out.flush()?;
        } else if changed {
            ui.info(&line(&cfg.index_name, &summary));
        }
        Ok(())
    }

    /// Waits for the next burst of events that matter, and for it to
    /// settle; or, when `idle` is given, for that long without one.
    fn next_batch(&self, events: &Receiver<notify::Result<notify::Event>>, own: &Path, roots: &[PathBuf], stop: &AtomicBool, idle: Option<Duration>) -> Next {
        let waiting = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Next::Stop;
            }
            if idle.is_some_and(|d| waiting.elapsed() >= d) {
                return Next::Idle;
            }
            match events.recv_timeout(POLL) {
                Ok(event) if matters(&event, own, roots) => break,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Next::Stop,
            }
        }
        let settle = self.settle_ms.map_or(self.settle, Duration::from_millis);
        let first = Instant::now();
        loop {
            let left = MAX_BATCH_DELAY.saturating_sub(first.elapsed());
            if left.is_zero() || stop.load(Ordering::SeqCst) {
                return Next::Batch;
            }
            // Quiet for `settle`, or no more events to come: apply.
            if events.recv_timeout(settle.min(left)).is_err() {
                return Next::Batch;
            }
        }
    }
}

impl Run for WatchArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let ui = Ui::new(cfg.quiet, false);
        let targets = if self.paths.is_empty() {
            self.what.refuse_walk_flags(cfg, "ask watch")?;
            recorded_roots(cfg)?
        } else {
            index::walked(&index::roots(&self.paths).context("invalid path")?, &self.what.options(cfg).walk)
        };
        let roots: Vec<PathBuf> = targets.iter().map(|r| r.path.to_path()).collect();
        if let Some(missing) = roots.iter().find(|r| !r.exists()) {
            anyhow::bail!("{}: no such file or directory (`ask index` with no PATH forgets a recorded one that is gone)", missing.display());
        }
        let stop = stop_flag(rt);
        let (tx, events) = channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .context("cannot watch files on this system")?;
        let mut watched = vec![None; roots.len()];
        rewatch(&mut watcher, &roots, &mut watched)?;
        // A root's parent, without its other folders, so that a root that
        // is deleted and made again is seen; where it cannot be watched, a
        // root made again is seen only at the next start.
        for parent in roots.iter().filter_map(|r| r.parent()) {
            if !roots.iter().any(|r| parent.starts_with(r)) {
                let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
            }
        }
        let own = cfg.home.canonicalize().unwrap_or_else(|_| cfg.home.clone());
        let mut encoder = LazyEncoder::new(&cfg.embed_model).context("cannot use the encoder")?;
        // First what changed while nobody watched, then each burst.
        self.apply(cfg, &targets, &mut encoder, &ui, true)?;
        let unload_after = (!self.unload_after.is_zero()).then_some(self.unload_after);
        loop {
            // An idle spell ends a wait only while there is an encoder to free.
            match self.next_batch(&events, &own, &roots, &stop, unload_after.filter(|_| encoder.is_loaded())) {
                Next::Stop => break,
                // Idle: the encoder's memory back until the next change.
                Next::Idle => {
                    if encoder.unload() {
                        ask_engine::memory::release_freed();
                        if self.json {
                            use std::io::Write;
                            let mut out = std::io::stdout().lock();
                            serde_json::to_writer(&mut out, &serde_json::json!({"index": cfg.index_name, "unloaded": "encoder"}))?;
                            writeln!(out)?;
                            out.flush()?;
                        }
                    }
                }
                Next::Batch => {
                    if let Err(e) = rewatch(&mut watcher, &roots, &mut watched) {
                        ui.error(&format!("{e:#}"));
                    }
                    self.apply(cfg, &targets, &mut encoder, &ui, false)?;
                }
            }
        }
        Ok(Exit::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, path: &str) -> notify::Result<notify::Event> {
        Ok(notify::Event::new(kind).add_path(PathBuf::from(path)))
    }

    #[test]
    fn reads_and_ask_s_own_writes_start_no_batch() {
        use notify::event::{AccessKind, CreateKind, ModifyKind};
        let own = Path::new("/home/me/.local/share/ask");
        let roots = [PathBuf::from("/home/me/notes"), PathBuf::from("/home/me")];
        assert!(matters(&event(EventKind::Create(CreateKind::File), "/home/me/notes/a.md"), own, &roots));
        assert!(!matters(&event(EventKind::Access(AccessKind::Any), "/home/me/notes/a.md"), own, &roots));
        assert!(!matters(&event(EventKind::Modify(ModifyKind::Any), "/home/me/.local/share/ask/indexes/default/x"), own, &roots));
        assert!(matters(&Err(notify::Error::generic("queue overflow")), own, &roots));
    }

    #[test]
    fn events_beside_a_root_start_no_batch_but_the_root_made_again_does() {
        use notify::event::{CreateKind, ModifyKind};
        let own = Path::new("/home/me/.local/share/ask");
        let roots = [PathBuf::from("/home/me/notes")];
        // The parent is watched: its other entries are not the index's.
        assert!(!matters(&event(EventKind::Modify(ModifyKind::Any), "/home/me/.bash_history"), own, &roots));
        assert!(!matters(&event(EventKind::Create(CreateKind::Folder), "/home/me/notes-old"), own, &roots));
        assert!(matters(&event(EventKind::Create(CreateKind::Folder), "/home/me/notes"), own, &roots));
    }
}
