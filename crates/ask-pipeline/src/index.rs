//! Keeping an index up to date with folders: walk, read, chunk, embed,
//! commit, incrementally.
//!
//! [`Writer::open`] takes the index's lock and holds it until dropped, so
//! a watcher can keep one writer and call [`Writer::update`] again and
//! again. Each update has two threads: a producer reads, hashes, extracts
//! and chunks files; the caller's thread embeds chunks in batches and
//! commits them. A bounded channel between them keeps memory flat on a
//! large tree and lets extraction overlap with the model's forward passes.
//!
//! Unchanged files (same size and mtime as recorded) are never opened, and
//! the encoder is loaded only when some chunk needs embedding
//! ([`Encoder::load`]), so an hourly run over an unchanged tree costs a
//! directory walk.
//!
//! Crash safety: a file's chunks are committed before its `files` row
//! (the store's ordering rule), and a file with more than
//! [`Options::commit_every`] chunks (a large mailbox) is committed a slice
//! of whole documents at a time. A killed run loses at most one slice; the
//! next run reuses every document already stored, found by content hash.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ask_ingest::chunk::ChunkError;
use ask_ingest::discover::{self, WalkEvent, WalkOptions};
use ask_ingest::PathKey;
use ask_ingest::{content_hash, extract, kind, Candidate, Chunk, Chunker};
use ask_embed::EncoderInfo;
use ask_engine::ModelError;
use ask_store::{ChunkRecord, EncoderMismatch, FileRecord, FileStatus, IndexLock, IndexMeta, LockError, Passage, Root, Store, StoreError, WhenBusy};
use serde::Serialize;
use tokenizers::Tokenizer;
use tokio::runtime::Runtime;

mod encoder;
mod pass;
mod read;
mod roots;
mod scan;

pub use encoder::{Encoder, LazyEncoder};
pub use roots::{forget, roots, unindexed, walked, Forgotten};
use pass::Pass;
use roots::{excluded, record_roots};
#[cfg(test)]
use pass::slices;
#[cfg(test)]
use read::{prepare, Content, Prepared};

/// Default chunk size, in tokens of the encoder's tokenizer.
pub const CHUNK_TOKENS: usize = 256;
/// Default tokens shared by consecutive chunks.
pub const CHUNK_OVERLAP: usize = 32;
/// Default number of chunks embedded and committed together: large enough
/// that LanceDB commits stay few, small enough that a killed run loses
/// little work.
pub const COMMIT_EVERY: usize = 512;
/// Table versions younger than this survive pruning, so a concurrent
/// reader never finds its snapshot's files gone.
const KEEP_VERSIONS: Duration = Duration::from_secs(60);

/// A file in the index directory while a run is under way: one that finds
/// it left by a run that did not finish checks the index first.
const UNFINISHED: &str = "unfinished";

/// How to index.
#[derive(Debug, Clone)]
pub struct Options {
    /// What the walk includes.
    pub walk: WalkOptions,
    /// Chunk size in tokens (held to what the encoder reads).
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    pub chunk_overlap: usize,
    /// Chunks (or files) embedded and committed together.
    pub commit_every: usize,
    /// Folders never indexed, whatever the roots (ask's own indexes and models).
    pub exclude: Vec<PathBuf>,
    /// Delete what the index holds first, under its lock, and build it
    /// anew (a damaged index, or another encoder or chunk size).
    pub rebuild: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            walk: WalkOptions::default(),
            chunk_tokens: CHUNK_TOKENS,
            chunk_overlap: CHUNK_OVERLAP,
            commit_every: COMMIT_EVERY,
            exclude: Vec::new(),
            rebuild: false,
        }
    }
}

/// What an update did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Files indexed for the first time.
    pub new: usize,
    /// Known files whose content changed.
    pub changed: usize,
    /// Known files left as they were (or only touched).
    pub unchanged: usize,
    /// Files gone from disk, and so from the index.
    pub removed: usize,
    /// Files and folders that could not be indexed (each reported by [`Event::Failed`]).
    pub failed: usize,
    /// Files left out: over the size limit, or not a document.
    pub skipped: usize,
    /// Chunks embedded in this run.
    pub chunks: usize,
    /// Chunks stored again from an earlier run's embeddings, because their
    /// document was already indexed (a message of a grown mbox, a moved file).
    pub reused: usize,
    /// Tokens the encoder read.
    pub tokens: usize,
    /// The whole update, in seconds.
    pub seconds: f64,
    /// Time spent embedding, in seconds.
    pub embed_seconds: f64,
}

/// What an update reports as it goes, for a progress display.
#[derive(Debug)]
pub enum Event<'a> {
    /// The walk has seen this many files so far (sent every 1024).
    Scanning {
        /// Files seen.
        files: usize,
    },
    /// The walk is done: this many new or changed files are read next.
    Reading {
        /// Files to read.
        files: usize,
    },
    /// One of those files is done.
    Read,
    /// A file or folder could not be indexed; the message names it.
    Failed(&'a str),
    /// A file was left out on purpose; the message names it and says why.
    Skipped(&'a str),
    /// The encoder is being loaded (the first chunk needs embedding).
    LoadingEncoder,
    /// Chunks embedded so far in this update, and the rate.
    Embedded {
        /// Chunks embedded.
        chunks: usize,
        /// Encoder tokens per second, over the update.
        tokens_per_s: f64,
    },
    /// All files are done; the index is being compacted.
    Optimizing,
}

/// Receives [`Event`]s.
pub trait Progress {
    /// Called on the updating thread.
    fn event(&mut self, event: Event<'_>);
}

/// Ignores every event.
impl Progress for () {
    fn event(&mut self, _: Event<'_>) {}
}

/// Why an update could not run or stopped. Single files that fail are not
/// errors: they are counted in [`Summary::failed`] and reported by
/// [`Event::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The options do not make chunks.
    #[error(transparent)]
    Chunking(#[from] ChunkError),
    /// The index is locked by another writer, or its lock file is unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The index was built with another encoder.
    #[error("{source} (index at {dir})")]
    EncoderMismatch {
        /// The index directory.
        dir: PathBuf,
        /// What differs.
        source: EncoderMismatch,
    },
    /// The encoder could not be loaded or failed.
    #[error("encoder: {0}")]
    Encoder(#[from] ModelError),
    /// The index could not be read or written. Not transparent: the
    /// [`StoreError`] stays a link of the error's chain, where a caller
    /// finds it by type.
    #[error("the index could not be read or written")]
    Store(#[from] StoreError),
    /// There is no index in this folder.
    #[error("no index at {0}")]
    NoIndex(PathBuf),
    /// A path to forget that the index holds nothing of.
    #[error("{0}: nothing indexed there (not an indexed file, a recorded folder or a path inside one)")]
    NotIndexed(PathBuf),
}

/// The one writer of an index, holding its lock until dropped. It owns the
/// runtime its store calls run on, so a caller needs none: indexing is
/// synchronous work (walking, reading, embedding) with store calls between.
pub struct Writer {
    rt: Runtime,
    dir: PathBuf,
    store: Store,
    meta: IndexMeta,
    options: Options,
    _lock: IndexLock,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}


impl Writer {
    /// Opens the index in `dir` for writing, creating it (owner-only) for
    /// `encoder` if needed. `busy` says what to do when another writer
    /// holds the index.
    pub fn open(dir: &Path, encoder: &EncoderInfo, mut options: Options, busy: WhenBusy) -> Result<Writer, IndexError> {
        options.chunk_tokens = options.chunk_tokens.min(encoder.max_tokens.saturating_sub(2)).max(1);
        if options.chunk_overlap >= options.chunk_tokens {
            return Err(ChunkError::Overlap { overlap: options.chunk_overlap, size: options.chunk_tokens }.into());
        }
        ask_store::create_private_dir(dir)?;
        let lock = IndexLock::acquire(dir, busy)?;
        if options.rebuild {
            ask_store::remove_index_data(dir)?;
        }
        let meta = match IndexMeta::load(dir)? {
            Some(meta) => {
                crate::warm::check_encoder(&meta, encoder)
                    .map_err(|source| IndexError::EncoderMismatch { dir: dir.to_path_buf(), source })?;
                meta
            }
            None => IndexMeta {
                format: 1,
                encoder: encoder.name.clone(),
                backend: encoder.backend,
                dim: encoder.dim,
                chunk_tokens: options.chunk_tokens,
                chunk_overlap: options.chunk_overlap,
                created_at_s: now_secs(),
                indexed_at_s: None,
                roots: Vec::new(),
                forgotten: Vec::new(),
            },
        };
        let rt = ask_store::runtime().map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        let store = rt.block_on(Store::open_or_create(dir, encoder.dim))?;
        if meta.indexed_at_s.is_none() {
            // A first run records its encoder now, not when it ends: what
            // it commits is searchable (and guarded against another
            // encoder) even if it is killed before it finishes.
            meta.save(dir)?;
        }
        Ok(Writer { rt, dir: dir.to_path_buf(), store, meta, options, _lock: lock })
    }

    /// Brings the index up to date with `roots` (files or folders; see
    /// [`roots`]): new and changed files are indexed, files gone from
    /// below a root are removed, files elsewhere are left alone.
    pub fn update(&mut self, roots: &[PathBuf], encoder: &mut dyn Encoder, progress: &mut dyn Progress) -> Result<Summary, IndexError> {
        let roots = walked(roots, &self.options.walk);
        self.remember(&roots);
        self.update_roots(&roots, encoder, progress)
    }

    /// Paths named again after [`forget`]: a forgotten path at, above or
    /// below one of `roots` is walked again from this update on. For
    /// paths the user names, not for the recorded roots that `ask index`
    /// with no path walks (which would undo every forget).
    pub fn remember(&mut self, roots: &[Root]) {
        self.meta.forgotten.retain(|f| !roots.iter().any(|r| f.is_in(&r.path) || r.path.is_in(f)));
    }

    /// As [`Writer::update`], each root walked its own way: how `ask index`
    /// with no path brings the roots the index records ([`IndexMeta::roots`])
    /// up to date. The roots are recorded (see `record_roots`) when the update
    /// is done.
    pub fn update_roots(&mut self, roots: &[Root], encoder: &mut dyn Encoder, progress: &mut dyn Progress) -> Result<Summary, IndexError> {
        let started = Instant::now();
        let mut summary = Summary::default();
        let mut known = self.rt.block_on(self.store.file_records())?;
        let marker = self.dir.join(UNFINISHED);
        let mut wrote = false;
        // A run that did not finish, or tables that disagree with the
        // records however that came about (a copied or restored table, a
        // disk fault), are checked and repaired first.
        if marker.exists() || !self.rt.block_on(self.store.counts_agree(&known))? {
            wrote = self.repair(&mut known, &mut summary)?;
        }
        std::fs::write(&marker, b"").map_err(|source| StoreError::Io { path: marker.clone(), source })?;
        let scan = self.scan(roots, &known, progress, &mut summary);

        if !scan.work.is_empty() {
            wrote = true;
            let mut pass = Pass { writer: self, encoder, progress, summary, loaded: false };
            pass.process(&known, scan.work)?;
            summary = pass.summary;
        }
        if !scan.removed.is_empty() {
            wrote = true;
            summary.removed = scan.removed.len();
            self.rt.block_on(self.store.remove_files(&scan.removed))?;
        }
        progress.event(Event::Optimizing);
        // A run killed after its removals but before its optimize leaves
        // removed rows that BM25's statistics still count: finish that.
        if wrote || self.rt.block_on(self.store.has_removed_rows())? {
            self.rt.block_on(self.store.optimize(KEEP_VERSIONS))?;
        } else {
            // Nothing changed, but an index made by an older ask may still
            // lack its full-text index: this costs one manifest read when not.
            self.rt.block_on(self.store.ensure_indexes())?;
        }
        self.meta.indexed_at_s = Some(now_secs());
        let given: Vec<(Root, bool)> = roots.iter().map(|r| (r.clone(), r.path.to_path().exists())).collect();
        self.meta.roots = record_roots(&self.meta.roots, &given);
        self.meta.save(&self.dir)?;
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(StoreError::Io { path: marker, source: e }.into()),
            _ => {}
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// After a run that did not finish (or when the tables' counts
    /// disagree with the records): a file whose chunks were stored
    /// but not its record (the record is written last) has chunks that no
    /// record owns. They are kept for the next pass over the file, which
    /// reuses their vectors, unless the file is gone: then no pass would
    /// ever remove them, and they are removed now. A file whose chunks do
    /// not match its record is read again (its record in `known` no longer
    /// matches the disk), and a file recorded twice is forgotten and read
    /// as new; either is removed if it is gone. True if anything was
    /// removed.
    fn repair(&self, known: &mut HashMap<PathKey, FileRecord>, summary: &mut Summary) -> Result<bool, IndexError> {
        let check = self.rt.block_on(self.store.check(known))?;
        let is_gone = |k: &PathKey| matches!(std::fs::symlink_metadata(k.to_path()), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        // Paths to forget, sorted, each with whether its file is gone.
        let mut forget: std::collections::BTreeMap<PathKey, bool> = check.duplicated.into_iter().map(|p| (p.clone(), is_gone(&p))).collect();
        for path in check.mismatched {
            let gone = is_gone(&path);
            match known.get_mut(&path) {
                Some(r) if !gone => r.mtime_ns = i64::MIN,
                _ => {
                    forget.insert(path, gone);
                }
            }
        }
        forget.extend(check.unrecorded.into_iter().filter(is_gone).map(|p| (p, true)));
        if forget.is_empty() {
            return Ok(false);
        }
        for path in forget.keys() {
            known.remove(path);
        }
        // Files counted as removed: those gone, not those read again.
        summary.removed += forget.values().filter(|&&gone| gone).count();
        let forget: Vec<PathKey> = forget.into_keys().collect();
        self.rt.block_on(self.store.remove_files(&forget))?;
        Ok(true)
    }

}

#[cfg(test)]
mod tests;
