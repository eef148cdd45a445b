//! `ask status`: what an index holds and which models built it; with
//! `--check`, whether it is whole and up to date.

use std::io::Write;

use anyhow::{Context, Result};
use ask_ingest::discover::candidate;
use ask_ingest::PathKey;
use ask_store::{disk_usage, FileRecord, IndexLock, LockError, Store, WhenBusy};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::{rfc3339, Run};
use crate::cli::StatusArgs;
use crate::config::Config;
use crate::exit::Exit;

#[derive(Serialize)]
struct Status {
    index: String,
    path: String,
    home: String,
    files: usize,
    failed: usize,
    chunks: usize,
    bytes: u64,
    encoder: String,
    backend: ask_embed::Backend,
    dim: usize,
    chunk_tokens: usize,
    chunk_overlap: usize,
    created_at: String,
    indexed_at: Option<String>,
    /// The files and folders `ask index` with no path brings up to date.
    roots: Vec<ask_store::Root>,
    /// Paths inside them that `ask forget` removed, which those runs pass over.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    forgotten: Vec<PathKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<Check>,
}

/// What `--check` found.
#[derive(Serialize)]
struct Check {
    /// Every chunk belongs to a recorded file, and every recorded file
    /// has exactly its chunks.
    whole: bool,
    /// What disagrees: unrecorded, mismatched and duplicated files.
    #[serde(flatten)]
    found: ask_store::Check,
    /// Indexed files whose size or modification time differ on disk.
    changed: Vec<PathKey>,
    /// Indexed files that are no longer on disk.
    gone: Vec<PathKey>,
    /// Indexed files that could not be looked at (with why).
    unreadable: Vec<String>,
    /// Files below the recorded roots that are not indexed yet (none
    /// looked for when the index records no roots).
    new: Vec<PathKey>,
}

/// Compares each record with its file on disk, as `ask index` would.
fn on_disk(records: &std::collections::HashMap<PathKey, FileRecord>, check: &mut Check) {
    let mut records: Vec<&FileRecord> = records.values().collect();
    records.sort_by(|a, b| a.path.cmp(&b.path));
    for r in records {
        let path = r.path.to_path();
        match std::fs::metadata(&path) {
            Ok(m) => {
                let c = candidate(&path, &m);
                if c.size != r.size || c.mtime_ns != r.mtime_ns {
                    check.changed.push(r.path.clone());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => check.gone.push(r.path.clone()),
            Err(e) => check.unreadable.push(format!("{}: {e}", r.path)),
        }
    }
}

/// Up to ten of `paths`, one per line, indented, and how many more.
fn some(out: &mut impl Write, paths: &[impl std::fmt::Display]) -> std::io::Result<()> {
    for p in paths.iter().take(10) {
        writeln!(out, "                {p}")?;
    }
    if paths.len() > 10 {
        writeln!(out, "                … and {} more", paths.len() - 10)?;
    }
    Ok(())
}

/// `what:` and [`some`] of `paths`, when there are any.
fn headed(out: &mut impl Write, what: &str, paths: &[impl std::fmt::Display]) -> std::io::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    writeln!(out, "              {what}:")?;
    some(out, paths)
}

/// How a root is walked, after its path: nothing for the defaults.
fn shown(walk: &ask_ingest::WalkOptions) -> String {
    let flags = super::index::walk_flags(walk);
    if flags.is_empty() { String::new() } else { format!("  ({})", flags.join(" ")) }
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[u]) }
}

/// What the index of `cfg` holds, with `check`'s findings if any.
fn status(cfg: &Config, rt: &Runtime, meta: &ask_store::IndexMeta, store: &Store, check: Option<Check>) -> Result<Status> {
    let counts = rt.block_on(store.counts())?;
    Ok(Status {
        index: cfg.index_name.clone(),
        path: cfg.index_dir.display().to_string(),
        home: cfg.home.display().to_string(),
        files: counts.files,
        failed: counts.failed,
        chunks: counts.chunks,
        bytes: disk_usage(&cfg.index_dir),
        encoder: meta.encoder.clone(),
        backend: meta.backend,
        dim: meta.dim,
        chunk_tokens: meta.chunk_tokens,
        chunk_overlap: meta.chunk_overlap,
        created_at: rfc3339(meta.created_at_s),
        indexed_at: meta.indexed_at_s.map(rfc3339),
        roots: meta.roots.clone(),
        forgotten: meta.forgotten.clone(),
        check,
    })
}

/// `ask status --all`: one line (or JSON object) per index under
/// `<home>/indexes`, by name; the configured one is marked. An index that
/// cannot be read is reported and the others still listed (exit 1).
fn all(json: bool, cfg: &Config, rt: &Runtime) -> Result<Exit> {
    let dir = cfg.home.join("indexes");
    let names = super::index_names(cfg).with_context(|| format!("cannot list {}", dir.display()))?;
    // A folder without index.json holds no index (yet).
    let names: Vec<String> = names.into_iter().filter(|n| dir.join(n).join("index.json").is_file()).collect();
    let mut out = std::io::stdout().lock();
    if names.is_empty() {
        if !json {
            writeln!(out, "no indexes in {} yet; `ask index PATH` makes one", dir.display())?;
        }
        return Ok(Exit::Success);
    }
    let mut failed = false;
    let mut rows: Vec<[String; 6]> = Vec::new();
    for name in &names {
        let one = cfg.with_index(name).and_then(|c| {
            let meta = super::index_meta(&c)?;
            let store = rt.block_on(Store::open(&c.index_dir))?;
            status(&c, rt, &meta, &store, None)
        });
        match one {
            Ok(s) if json => {
                serde_json::to_writer(&mut out, &s)?;
                writeln!(out)?;
            }
            Ok(s) => {
                let mark = if *name == cfg.index_name { "*" } else { "" };
                rows.push([
                    format!("{name}{mark}"),
                    s.files.to_string(),
                    s.chunks.to_string(),
                    human_bytes(s.bytes),
                    s.encoder,
                    s.indexed_at.unwrap_or_else(|| "never".into()),
                ]);
            }
            Err(e) => {
                eprintln!("ask: index '{name}': {e:#}");
                failed = true;
            }
        }
    }
    if !json {
        for line in super::columns(["INDEX", "FILES", "CHUNKS", "SIZE", "ENCODER", "LAST INDEXED"], &rows) {
            writeln!(out, "{line}")?;
        }
        if names.contains(&cfg.index_name) {
            writeln!(out, "(* the index commands use: --index, ASK_INDEX or the config file)")?;
        }
    }
    Ok(if failed { Exit::Error } else { Exit::Success })
}

impl Run for StatusArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        if self.all {
            return all(self.json, cfg, rt);
        }
        let meta = super::index_meta(cfg)?;
        // The writer's lock, so that no run changes the index while it is
        // compared with itself.
        let _lock = match self.check.then(|| IndexLock::acquire(&cfg.index_dir, WhenBusy::Fail)).transpose() {
            Ok(lock) => lock,
            Err(e @ LockError::Busy { .. }) => {
                eprintln!("ask: {e}; check again when it is done");
                return Ok(Exit::Busy);
            }
            Err(e) => return Err(e.into()),
        };
        let store = rt.block_on(Store::open(&cfg.index_dir))?;
        let check = if self.check {
            let records = rt.block_on(store.file_records())?;
            let found = rt.block_on(store.check(&records))?;
            let mut check = Check {
                whole: found.is_consistent(),
                found,
                changed: Vec::new(),
                gone: Vec::new(),
                unreadable: Vec::new(),
                new: ask_pipeline::index::unindexed(&meta, &records, std::slice::from_ref(&cfg.home)),
            };
            on_disk(&records, &mut check);
            Some(check)
        } else {
            None
        };
        let status = status(cfg, rt, &meta, &store, check)?;
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, &status)?;
            writeln!(out)?;
        } else {
            writeln!(out, "index:        {} ({})", status.index, status.path)?;
            writeln!(out, "files:        {} indexed, {} failed", status.files, status.failed)?;
            writeln!(out, "chunks:       {}", status.chunks)?;
            writeln!(out, "size on disk: {}", human_bytes(status.bytes))?;
            writeln!(
                out,
                "encoder:      {} ({}, {} dims, chunks of {} tokens, {} overlap)",
                status.encoder, status.backend, status.dim, status.chunk_tokens, status.chunk_overlap
            )?;
            writeln!(out, "created:      {}", status.created_at)?;
            writeln!(out, "last indexed: {}", status.indexed_at.as_deref().unwrap_or("never"))?;
            if status.roots.is_empty() {
                writeln!(out, "roots:        none recorded (the next `ask index PATH` records PATH)")?;
            }
            for (i, root) in status.roots.iter().enumerate() {
                writeln!(out, "{}{}{}", if i == 0 { "roots:        " } else { "              " }, root.path, shown(&root.walk))?;
            }
            for (i, path) in status.forgotten.iter().enumerate() {
                writeln!(out, "{}{path}", if i == 0 { "forgotten:    " } else { "              " })?;
            }
            if let Some(c) = &status.check {
                if c.whole {
                    writeln!(out, "check:        whole: every chunk belongs to its file's record, every record has its chunks")?;
                } else {
                    writeln!(out, "check:        NOT whole (left by a run that was stopped; the next `ask index` over these files repairs it):")?;
                    if !c.found.unrecorded.is_empty() {
                        writeln!(out, "              {} with chunks but no record:", c.found.unrecorded.len())?;
                        some(&mut out, &c.found.unrecorded)?;
                    }
                    if !c.found.mismatched.is_empty() {
                        writeln!(out, "              {} whose chunks do not match the record:", c.found.mismatched.len())?;
                        some(&mut out, &c.found.mismatched)?;
                    }
                    if !c.found.duplicated.is_empty() {
                        writeln!(out, "              {} recorded more than once:", c.found.duplicated.len())?;
                        some(&mut out, &c.found.duplicated)?;
                    }
                }
                if c.changed.is_empty() && c.gone.is_empty() && c.unreadable.is_empty() && c.new.is_empty() {
                    let new = if status.roots.is_empty() { "" } else { ", and every file below the roots is indexed" };
                    writeln!(out, "on disk:      every indexed file is as it was indexed{new}")?;
                } else {
                    writeln!(
                        out,
                        "on disk:      {} new, {} changed, {} gone, {} unreadable since indexed (`ask index` updates the index)",
                        c.new.len(),
                        c.changed.len(),
                        c.gone.len(),
                        c.unreadable.len()
                    )?;
                    headed(&mut out, "new", &c.new)?;
                    headed(&mut out, "changed", &c.changed)?;
                    headed(&mut out, "gone", &c.gone)?;
                    headed(&mut out, "unreadable", &c.unreadable)?;
                }
            }
        }
        if status.check.as_ref().is_some_and(|c| !c.whole) {
            return Ok(Exit::CheckFailed);
        }
        Ok(Exit::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, shown};

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }

    #[test]
    fn a_root_walked_the_default_way_shows_no_flags() {
        let mut walk = ask_ingest::WalkOptions::default();
        assert_eq!(shown(&walk), "");
        walk.hidden = true;
        walk.max_file_size = 500_000;
        assert_eq!(shown(&walk), "  (--hidden --max-file-size 500000)");
    }
}
