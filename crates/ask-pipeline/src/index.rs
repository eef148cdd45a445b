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
use ask_ingest::discover::{self, path_key, WalkEvent, WalkOptions};
use ask_ingest::{content_hash, extract, kind, Candidate, Chunk, Chunker};
use ask_model::{EncoderInfo, ModelError};
use ask_store::{ChunkRecord, EncoderMismatch, FileRecord, FileStatus, IndexLock, IndexMeta, LockError, Passage, Root, Store, StoreError, WhenBusy};
use serde::Serialize;
use tokenizers::Tokenizer;
use tokio::runtime::Runtime;

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

/// The sentence encoder an index is built with: its identity, the
/// tokenizer that measures chunks, and the embedding of passages.
pub trait Encoder {
    /// Name, dimensions and token limit, recorded in the index.
    fn info(&self) -> &EncoderInfo;
    /// The tokenizer chunks are measured with.
    fn tokenizer(&self) -> Result<Tokenizer, ModelError>;
    /// Makes ready to embed (loads the weights); called once, before the
    /// first [`Encoder::embed_passages`], and only when something needs
    /// embedding.
    fn load(&mut self) -> Result<(), ModelError> {
        Ok(())
    }
    /// One unit vector per text, and the tokens read.
    fn embed_passages(&mut self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize), ModelError>;
}

/// The encoder in a model directory, loaded on first use.
pub struct LazyEncoder {
    dir: PathBuf,
    info: EncoderInfo,
    model: Option<ask_model::Embedder>,
}

impl LazyEncoder {
    /// Reads the encoder's configuration in `dir` (cheap: no weights).
    pub fn new(dir: &Path) -> Result<LazyEncoder, ModelError> {
        let info = ask_model::embed::probe(dir)?;
        Ok(LazyEncoder { dir: dir.to_path_buf(), info, model: None })
    }

    /// Whether the weights are in memory.
    pub fn is_loaded(&self) -> bool {
        self.model.is_some()
    }

    /// Frees the weights, if loaded; the next text to embed loads them
    /// again. Returns whether there was anything to free.
    pub fn unload(&mut self) -> bool {
        self.model.take().is_some()
    }
}

impl Encoder for LazyEncoder {
    fn info(&self) -> &EncoderInfo {
        &self.info
    }

    fn tokenizer(&self) -> Result<Tokenizer, ModelError> {
        ask_model::embed::load_tokenizer(&self.dir)
    }

    fn load(&mut self) -> Result<(), ModelError> {
        if self.model.is_none() {
            self.model = Some(ask_model::Embedder::load(&self.dir)?);
        }
        Ok(())
    }

    fn embed_passages(&mut self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize), ModelError> {
        self.load()?;
        self.model.as_ref().expect("loaded above").embed_passages(texts)
    }
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
    /// The index could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// There is no index in this folder.
    #[error("no index at {0}")]
    NoIndex(PathBuf),
    /// A path to forget that the index holds nothing of.
    #[error("{0}: nothing indexed there (not an indexed file, a recorded folder or a path inside one)")]
    NotIndexed(PathBuf),
}

/// The one writer of an index, holding its lock until dropped.
pub struct Writer<'rt> {
    rt: &'rt Runtime,
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

/// The file of key `key` is the one of `root` (a key too) or inside it
/// (component-wise, so /a/bc is not below /a/b).
fn is_below(key: &str, root: &str) -> bool {
    Path::new(key).starts_with(root)
}

/// Paths as roots to walk: absolute, and with symlinks resolved so that
/// the same file always has the same key. A path that does not exist is
/// kept as given (made absolute): an update then forgets what was indexed
/// below it, or reports it.
pub fn roots(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| {
            let abs = std::path::absolute(p)?;
            Ok(abs.canonicalize().unwrap_or(abs))
        })
        .collect()
}

/// Roots from paths (see [`roots`]), all walked the same way.
pub fn walked(paths: &[PathBuf], walk: &WalkOptions) -> Vec<Root> {
    paths.iter().map(|p| Root { path: path_key(p), walk: walk.clone() }).collect()
}

/// Folders with symlinks resolved, as the walk reports paths below them
/// (a folder that cannot be resolved is kept as given).
fn canonical(dirs: &[PathBuf]) -> Vec<PathBuf> {
    dirs.iter().map(|d| d.canonicalize().unwrap_or_else(|_| d.clone())).collect()
}

/// Files below `roots`, each walked its own way, that an update would
/// read for the first time: not in `known` and not in a folder of
/// `exclude` (ask's own). Sorted; files over a root's size limit are not
/// counted, as an update skips them.
pub fn unindexed(roots: &[Root], known: &HashMap<String, FileRecord>, exclude: &[PathBuf]) -> Vec<String> {
    let exclude = canonical(exclude);
    let mut new = std::collections::BTreeSet::new();
    for root in roots {
        discover::walk(&[discover::path_of_key(&root.path)], &root.walk, |event| {
            if let WalkEvent::File(c) = event {
                let key = path_key(&c.path);
                if !known.contains_key(&key) && !exclude.iter().any(|d| c.path.starts_with(d)) {
                    new.insert(key);
                }
            }
        });
    }
    new.into_iter().collect()
}

/// The roots an index records once an update of `given` (each with
/// whether it exists) is done. A given root replaces its own entry and
/// those below it; one inside a recorded root walked the same way adds
/// nothing (that root's walk covers it), while one walked another way
/// (`--hidden` for one subfolder, say) is kept beside it, and both walks
/// then run, a file seen by either staying indexed. A given root that is
/// gone is forgotten with those below it, as its files are.
fn record_roots(recorded: &[Root], given: &[(Root, bool)]) -> Vec<Root> {
    let mut out = recorded.to_vec();
    for (root, exists) in given {
        let covered = out.iter().any(|r| r.path != root.path && is_below(&root.path, &r.path) && r.walk == root.walk);
        if *exists && covered {
            continue;
        }
        out.retain(|r| !is_below(&r.path, &root.path));
        if *exists {
            out.push(root.clone());
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// What [`forget`] removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Forgotten {
    /// Files removed from the index.
    pub files: usize,
    /// Their chunks.
    pub chunks: usize,
    /// Recorded roots no longer recorded: the paths and those below them.
    pub roots: Vec<String>,
    /// Paths inside a recorded root, which its walks now pass over.
    pub passed_over: Vec<String>,
}

/// Removes `paths` (files or folders) and whatever is indexed below them
/// from the index in `dir`, leaving the files alone. A recorded root at
/// or below a path is no longer recorded; a path inside a root that stays
/// is recorded as forgotten, and the root's walks (`ask index` with no
/// path, `ask watch`) pass over it until `ask index` names it again
/// ([`Writer::remember`]). A path the index holds nothing of is an error,
/// and then nothing is changed. The files go first and the record last:
/// a run killed in between leaves the roots recorded, so that the next
/// `ask index` brings the files back rather than losing track of them,
/// and `forget` can be run again.
pub fn forget(rt: &Runtime, dir: &Path, paths: &[PathBuf], busy: WhenBusy) -> Result<Forgotten, IndexError> {
    let _lock = IndexLock::acquire(dir, busy)?;
    let mut meta = IndexMeta::load(dir)?.ok_or_else(|| IndexError::NoIndex(dir.to_path_buf()))?;
    let store = rt.block_on(Store::open(dir))?;
    let known = rt.block_on(store.file_records())?;
    let resolved = roots(paths).map_err(|source| StoreError::Io { path: paths.first().cloned().unwrap_or_default(), source })?;
    let keys: Vec<String> = resolved.iter().map(|p| path_key(p)).collect();
    let mut out = Forgotten::default();
    for ((key, path), resolved) in keys.iter().zip(paths).zip(&resolved) {
        // Inside a root, only what exists (else it is most likely a typo).
        let inside = resolved.exists() && meta.roots.iter().any(|r| is_below(key, &r.path));
        let holds = known.keys().any(|k| is_below(k, key))
            || meta.roots.iter().any(|r| is_below(&r.path, key))
            || inside
            || meta.forgotten.iter().any(|f| is_below(key, f));
        if !holds {
            return Err(IndexError::NotIndexed(path.clone()));
        }
    }
    let below = |k: &str| keys.iter().any(|p| is_below(k, p));
    let mut gone: Vec<String> = known.keys().filter(|k| below(k)).cloned().collect();
    gone.sort();
    out.files = gone.len();
    out.chunks = gone.iter().map(|k| known[k].chunks as usize).sum();
    if !gone.is_empty() {
        rt.block_on(store.remove_files(&gone))?;
        rt.block_on(store.optimize(KEEP_VERSIONS))?;
    }
    out.roots = meta.roots.iter().filter(|r| below(&r.path)).map(|r| r.path.clone()).collect();
    meta.roots.retain(|r| !below(&r.path));
    // Forgotten paths below a path forgotten now are covered by it.
    meta.forgotten.retain(|f| !below(f) || keys.contains(f));
    for key in &keys {
        let inside = meta.roots.iter().any(|r| is_below(key, &r.path));
        let covered = meta.forgotten.iter().any(|f| is_below(key, f));
        if inside && !covered {
            meta.forgotten.push(key.clone());
            out.passed_over.push(key.clone());
        }
    }
    meta.forgotten.sort();
    meta.save(dir)?;
    Ok(out)
}

impl<'rt> Writer<'rt> {
    /// Opens the index in `dir` for writing, creating it (owner-only) for
    /// `encoder` if needed. `busy` says what to do when another writer
    /// holds the index.
    pub fn open(rt: &'rt Runtime, dir: &Path, encoder: &EncoderInfo, mut options: Options, busy: WhenBusy) -> Result<Writer<'rt>, IndexError> {
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
                backend: encoder.backend.to_string(),
                dim: encoder.dim,
                chunk_tokens: options.chunk_tokens,
                chunk_overlap: options.chunk_overlap,
                created_at_s: now_secs(),
                indexed_at_s: None,
                roots: Vec::new(),
                forgotten: Vec::new(),
            },
        };
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
        self.meta.forgotten.retain(|f| !roots.iter().any(|r| is_below(f, &r.path) || is_below(&r.path, f)));
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
        let given: Vec<(Root, bool)> = roots.iter().map(|r| (r.clone(), discover::path_of_key(&r.path).exists())).collect();
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
    fn repair(&self, known: &mut HashMap<String, FileRecord>, summary: &mut Summary) -> Result<bool, IndexError> {
        let check = self.rt.block_on(self.store.check(known))?;
        let is_gone = |k: &String| matches!(std::fs::symlink_metadata(discover::path_of_key(k)), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        // Paths to forget, sorted, each with whether its file is gone.
        let mut forget: std::collections::BTreeMap<String, bool> = check.duplicated.into_iter().map(|p| (p.clone(), is_gone(&p))).collect();
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
        let forget: Vec<String> = forget.into_keys().collect();
        self.rt.block_on(self.store.remove_files(&forget))?;
        Ok(true)
    }

    /// Walks the roots: what to read, and what to remove.
    fn scan(&self, roots: &[Root], known: &HashMap<String, FileRecord>, progress: &mut dyn Progress, summary: &mut Summary) -> Scan {
        let mut work: Vec<Candidate> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut unreadable_dirs: Vec<PathBuf> = Vec::new();
        let mut walk_roots = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        let mut exclude = canonical(&self.options.exclude);
        exclude.extend(self.meta.forgotten.iter().map(|k| discover::path_of_key(k)));
        for root in roots {
            let path = discover::path_of_key(&root.path);
            if path.exists() {
                walk_roots.push((path, root));
            } else {
                // A root that is gone: forget what was indexed below it, or
                // report it if nothing was (most likely a typo).
                let below: Vec<String> = known.keys().filter(|k| is_below(k, &root.path)).cloned().collect();
                if below.is_empty() {
                    progress.event(Event::Failed(&format!("{}: no such file or directory", path.display())));
                    summary.failed += 1;
                } else {
                    removed.extend(below);
                }
            }
        }
        // One walk per root, each its own way; a file that two roots reach
        // (one inside the other) is taken once.
        for (path, root) in &walk_roots {
            let max_size = root.walk.max_file_size;
            discover::walk(std::slice::from_ref(path), &root.walk, |event| match event {
                WalkEvent::File(c) if exclude.iter().any(|d| c.path.starts_with(d)) => {}
                WalkEvent::File(c) => {
                    let key = path_key(&c.path);
                    let unchanged = known.get(&key).is_some_and(|r| r.size == c.size && r.mtime_ns == c.mtime_ns);
                    if !seen.insert(key) {
                        return;
                    }
                    if unchanged {
                        summary.unchanged += 1;
                    } else {
                        work.push(c);
                    }
                    if seen.len() % 1024 == 0 {
                        progress.event(Event::Scanning { files: seen.len() });
                    }
                }
                WalkEvent::TooLarge(c) => {
                    summary.skipped += 1;
                    let why = format!("{}: {} bytes is over the size limit ({max_size} bytes)", c.path.display(), c.size);
                    progress.event(Event::Skipped(&why));
                }
                WalkEvent::Error { path, message } => {
                    progress.event(Event::Failed(&message));
                    summary.failed += 1;
                    if let Some(p) = path {
                        unreadable_dirs.push(p);
                    }
                }
            });
        }
        let walk_roots: Vec<&str> = walk_roots.iter().map(|(_, r)| r.path.as_str()).collect();
        let unreadable_dirs: Vec<String> = unreadable_dirs.iter().map(|d| path_key(d)).collect();
        removed.extend(
            known
                .keys()
                .filter(|k| !seen.contains(*k))
                .filter(|k| walk_roots.iter().any(|r| is_below(k, r)))
                .filter(|k| !unreadable_dirs.iter().any(|d| is_below(k, d)))
                .cloned(),
        );
        removed.sort();
        removed.dedup();
        progress.event(Event::Reading { files: work.len() });
        Scan { work, removed }
    }
}

/// What a walk found to do.
struct Scan {
    /// New or changed files, to read.
    work: Vec<Candidate>,
    /// Known files gone from disk.
    removed: Vec<String>,
}

/// One update's reading and embedding of the files that need it.
struct Pass<'a, 'rt> {
    writer: &'a Writer<'rt>,
    encoder: &'a mut dyn Encoder,
    progress: &'a mut dyn Progress,
    summary: Summary,
    /// Whether [`Encoder::load`] was called.
    loaded: bool,
}

impl Pass<'_, '_> {
    fn process(&mut self, known: &HashMap<String, FileRecord>, work: Vec<Candidate>) -> Result<(), IndexError> {
        let opts = &self.writer.options;
        let chunker = Chunker::new(self.encoder.tokenizer()?, opts.chunk_tokens, opts.chunk_overlap)?;
        let mut batch = Batch { limit: opts.commit_every.max(1), ..Default::default() };
        let max_size = opts.walk.max_file_size;
        let (rt, store) = (self.writer.rt, &self.writer.store);

        std::thread::scope(|scope| -> Result<(), IndexError> {
            let (tx, rx) = sync_channel::<Prepared>(64);
            let chunker = &chunker;
            // A changed mailbox chunks only the messages the index does not
            // hold for it yet (a failed lookup just chunks them all).
            let stored_docs = |path: &str| rt.block_on(store.doc_hashes(path)).unwrap_or_default();
            scope.spawn(move || {
                for candidate in work {
                    let prepared = prepare(candidate, known, chunker, max_size, &stored_docs);
                    if tx.send(prepared).is_err() {
                        break; // the consumer stopped on an error
                    }
                }
            });
            for prepared in rx {
                self.progress.event(Event::Read);
                match prepared {
                    Prepared::Chunks { record, parts, is_new } => {
                        if is_new {
                            self.summary.new += 1
                        } else {
                            self.summary.changed += 1
                        }
                        batch.add(record, parts);
                    }
                    Prepared::Touched(record) => {
                        self.summary.unchanged += 1;
                        batch.touched.push(record);
                    }
                    // Every file seen counts once: a known file that now
                    // fails or is skipped counts as failed or skipped, not
                    // also as changed.
                    Prepared::NoChunks { record } => {
                        if record.status == FileStatus::Failed {
                            self.summary.failed += 1;
                            let why = format!("{}: {}", record.path, record.error.as_deref().unwrap_or("failed"));
                            self.progress.event(Event::Failed(&why));
                        } else {
                            self.summary.skipped += 1;
                        }
                        batch.add(record, Vec::new());
                    }
                    Prepared::Unreadable { path, reason } => {
                        self.summary.failed += 1;
                        self.progress.event(Event::Failed(&format!("{path}: {reason}")));
                    }
                }
                if batch.full() {
                    self.flush(&mut batch, known)?;
                }
            }
            self.flush(&mut batch, known)
        })
    }

    /// Embeds and commits what `batch` holds, and empties it.
    fn flush(&mut self, batch: &mut Batch, known: &HashMap<String, FileRecord>) -> Result<(), IndexError> {
        let (rt, store) = (self.writer.rt, &self.writer.store);
        if !batch.touched.is_empty() {
            rt.block_on(store.upsert_files(&batch.touched))?;
            batch.touched.clear();
        }
        if batch.files.is_empty() {
            return Ok(());
        }
        // Documents the index already holds (same content hash) keep their
        // stored chunks and vectors; only the rest is embedded.
        let hashes: Vec<&str> = batch.parts.iter().map(|(_, p)| p.hash.as_str()).collect();
        let stored = if hashes.is_empty() { HashMap::new() } else { rt.block_on(store.chunks_by_doc_hash(&hashes))? };
        let mut records: Vec<ChunkRecord> = Vec::new();
        let mut pending: Vec<(ChunkRecord, String)> = Vec::new(); // record without vector, text to embed
        // Where each document's chunks end in `pending`.
        let mut doc_ends: Vec<usize> = Vec::new();
        let mut next_chunk = vec![0u32; batch.files.len()];
        let mut redo = vec![false; batch.files.len()];
        for (file, part) in batch.parts.drain(..) {
            let f = &batch.files[file];
            let date_ns = part.date_ns.unwrap_or(f.mtime_ns);
            let kind = f.kind.expect("a file with documents has a kind");
            let reuse = stored.get(&part.hash).filter(|c| !c.is_empty()).cloned();
            if let Some(old) = reuse {
                self.summary.reused += old.len();
                for c in old {
                    let n = next_chunk[file];
                    next_chunk[file] += 1;
                    let passage = Passage { path: f.path.clone(), chunk: n, kind, message: part.message.clone(), ..c.passage };
                    records.push(ChunkRecord { passage, date_ns, ..c });
                }
                continue;
            }
            if part.stored {
                // Held when the file was read, gone now: this cannot happen
                // under the index lock, but if it did, the file's record is
                // made stale so that the next run reads it again in full.
                redo[file] = true;
                continue;
            }
            for chunk in part.chunks {
                let n = next_chunk[file];
                next_chunk[file] += 1;
                let record = ChunkRecord {
                    passage: Passage {
                        path: f.path.clone(),
                        chunk: n,
                        kind,
                        text: String::new(),
                        line_start: chunk.line_start,
                        line_end: chunk.line_end,
                        page: chunk.page,
                        message: part.message.clone(),
                    },
                    byte_start: chunk.byte_start as u64,
                    byte_end: chunk.byte_end as u64,
                    date_ns,
                    vector: Vec::new(),
                    doc_hash: part.hash.clone(),
                };
                pending.push((record, chunk.text));
            }
            if doc_ends.last() != Some(&pending.len()) {
                doc_ends.push(pending.len());
            }
        }
        for ((f, n), redo) in batch.files.iter_mut().zip(&next_chunk).zip(redo) {
            f.chunks = *n;
            if redo {
                f.hash.clear();
            }
        }
        // Every slice but the last is committed as soon as it is embedded:
        // a killed run then loses one slice, and the next run reuses the
        // documents already stored (by content hash) rather than starting
        // a large file over.
        let ends = slices(&doc_ends, batch.limit);
        let mut pending = pending.into_iter();
        let mut done = 0;
        for (i, &end) in ends.iter().enumerate() {
            let slice: Vec<(ChunkRecord, String)> = pending.by_ref().take(end - done).collect();
            let embedded = self.embed(slice)?;
            if i + 1 < ends.len() {
                rt.block_on(store.add_chunks(&embedded))?;
            }
            records.extend(embedded);
            done = end;
        }
        rt.block_on(store.write_files_known(&batch.files, &records, &|path| known.contains_key(path)))?;
        batch.files.clear();
        batch.chunks = 0;
        Ok(())
    }

    /// The records with their texts and vectors filled in.
    fn embed(&mut self, slice: Vec<(ChunkRecord, String)>) -> Result<Vec<ChunkRecord>, IndexError> {
        if !self.loaded {
            self.progress.event(Event::LoadingEncoder);
            self.encoder.load()?;
            self.loaded = true;
        }
        let texts: Vec<&str> = slice.iter().map(|(_, t)| t.as_str()).collect();
        let t = Instant::now();
        let (vectors, tokens) = self.encoder.embed_passages(&texts)?;
        let s = &mut self.summary;
        s.embed_seconds += t.elapsed().as_secs_f64();
        s.tokens += tokens;
        s.chunks += texts.len();
        let tokens_per_s = s.tokens as f64 / s.embed_seconds.max(1e-9);
        self.progress.event(Event::Embedded { chunks: s.chunks, tokens_per_s });
        Ok(slice.into_iter().zip(vectors).map(|((mut record, text), vector)| {
                record.passage.text = text;
                ChunkRecord { vector, ..record }
            }).collect())
    }
}

/// Where the slices of a batch's chunks end, given where its documents'
/// chunks end (`doc_ends`, increasing): whole documents while they fit in
/// `limit` chunks, and at least one document per slice.
fn slices(doc_ends: &[usize], limit: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for &e in doc_ends {
        if end > start && e - start > limit {
            out.push(end);
            start = end;
        }
        end = e;
    }
    if end > start {
        out.push(end);
    }
    out
}

/// One document of a file (the file itself, or one message of a mailbox), chunked.
struct Part {
    /// Content hash of the document: its chunks are reused when the index
    /// already holds a document with this hash.
    hash: String,
    /// The document's own date (a message's sent date), ns.
    date_ns: Option<i64>,
    message: Option<ask_ingest::Mail>,
    chunks: Vec<Chunk>,
    /// Left unchunked because the index already held this document for
    /// the same file (a message of a mailbox that grew): its stored chunks
    /// are reused.
    stored: bool,
}

/// What the producer made of one file.
enum Prepared {
    /// Extracted and chunked: needs embedding, or reuse of stored chunks.
    Chunks { record: FileRecord, parts: Vec<Part>, is_new: bool },
    /// Same bytes as recorded: only size/mtime are updated.
    Touched(FileRecord),
    /// Recorded without chunks: failed (with its reason) or skipped (not a document).
    NoChunks { record: FileRecord },
    /// Could not even be read; nothing is recorded so the next run retries.
    Unreadable { path: String, reason: String },
}

/// Files and chunks waiting to be embedded and committed together.
#[derive(Default)]
struct Batch {
    files: Vec<FileRecord>,
    /// (index into `files`, one document of that file)
    parts: Vec<(usize, Part)>,
    /// Chunks in `parts`.
    chunks: usize,
    touched: Vec<FileRecord>,
    /// Commit when this many chunks, or files, are waiting.
    limit: usize,
}

impl Batch {
    fn add(&mut self, record: FileRecord, parts: Vec<Part>) {
        let file = self.files.len();
        self.files.push(record);
        self.chunks += parts.iter().map(|p| p.chunks.len()).sum::<usize>();
        self.parts.extend(parts.into_iter().map(|p| (file, p)));
    }

    fn full(&self) -> bool {
        self.chunks >= self.limit || self.files.len() + self.touched.len() >= self.limit
    }
}

/// A file's content as [`prepare`] reads it.
enum Content {
    /// All its bytes.
    Whole(Vec<u8>),
    /// An mbox: only its first bytes are kept, its hash and size come from
    /// reading it through once, and its messages are read one at a time
    /// later, so a mailbox of gigabytes never sits in memory.
    Mailbox { head: Vec<u8>, hash: String, size: u64 },
}

impl Content {
    /// Reads a file whole, but never more than `max_size` + 1 bytes (or
    /// the head that tells a mailbox, if that is longer): the
    /// walk passed over files over the limit, yet one may have grown since
    /// (a log, a download), and reading it all would hold it all in
    /// memory. What comes back longer than `max_size` is skipped by size.
    /// A mailbox is streamed through the hash instead, whatever its size.
    fn read(path: &Path, max_size: u64) -> std::io::Result<Content> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut head = Vec::new();
        (&mut file).take(kind::HEAD_BYTES).read_to_end(&mut head)?;
        if kind::is_mbox(path, &head) {
            let (hash, size) = ask_ingest::content_hash_reader(head.as_slice().chain(file))?;
            return Ok(Content::Mailbox { head, hash, size });
        }
        let rest = (max_size + 1).saturating_sub(head.len() as u64);
        file.take(rest).read_to_end(&mut head)?;
        Ok(Content::Whole(head))
    }
}

/// Reads, hashes, classifies, extracts and chunks one file.
/// `stored_docs(path)` gives the document hashes the index holds for a file.
fn prepare(
    c: Candidate,
    known: &HashMap<String, FileRecord>,
    chunker: &Chunker,
    max_size: u64,
    stored_docs: &dyn Fn(&str) -> HashSet<String>,
) -> Prepared {
    let path = path_key(&c.path);
    // The mtime recorded is one from before the read: a write during or
    // after the read then makes the next run see another mtime and read
    // the file again. One taken after the read could belong to a write of
    // the same size that the read missed, and the file would pass for
    // unchanged with old text in the index.
    let mtime_ns = std::fs::metadata(&c.path).map(|m| discover::candidate(&c.path, &m).mtime_ns).unwrap_or(c.mtime_ns);
    let content = match Content::read(&c.path, max_size) {
        Ok(content) => content,
        Err(e) => return Prepared::Unreadable { path, reason: e.to_string() },
    };
    // Sizes from the read, not the earlier stat: the file may have changed since.
    let (hash, size, bytes) = match &content {
        Content::Whole(bytes) => (content_hash(bytes), bytes.len() as u64, bytes.as_slice()),
        Content::Mailbox { head, hash, size } => (hash.clone(), *size, head.as_slice()),
    };
    let old = known.get(&path);
    let is_new = old.is_none();
    if let Some(old) = old.filter(|o| o.hash == hash) {
        return Prepared::Touched(FileRecord { size, mtime_ns, ..old.clone() });
    }
    let mut record = FileRecord {
        path,
        size,
        mtime_ns,
        hash,
        kind: None,
        status: FileStatus::Ok,
        error: None,
        chunks: 0,
        indexed_at_ms: now_ms(),
    };
    let mailbox = matches!(content, Content::Mailbox { .. });
    if size > max_size && !mailbox {
        record.status = FileStatus::Skipped;
        return Prepared::NoChunks { record };
    }
    let kind = match kind::classify(&c.path, bytes) {
        Ok(Some(kind)) => kind,
        Ok(None) => {
            record.status = FileStatus::Skipped;
            return Prepared::NoChunks { record };
        }
        Err(reason) => {
            record.status = FileStatus::Failed;
            record.error = Some(reason.to_string());
            return Prepared::NoChunks { record };
        }
    };
    record.kind = Some(kind);
    let file_hash = record.hash.clone();
    let stored = if mailbox && !is_new { stored_docs(&record.path) } else { HashSet::new() };
    let part = |doc: extract::Document| part_of(kind, doc, &file_hash, chunker, &stored);
    let parts: Result<Vec<Part>, String> = match &content {
        Content::Whole(bytes) => extract::extract(kind, bytes).map(|docs| docs.into_iter().map(part).collect()).map_err(|e| e.to_string()),
        Content::Mailbox { .. } => match std::fs::File::open(&c.path) {
            Ok(file) => {
                let parts: Vec<Part> = extract::mbox_messages(std::io::BufReader::new(file), max_size).map(part).collect();
                if parts.is_empty() {
                    Err(extract::ExtractError::NoMessage.to_string())
                } else {
                    Ok(parts)
                }
            }
            Err(e) => Err(e.to_string()),
        },
    };
    match parts {
        Ok(parts) => {
            record.chunks = parts.iter().map(|p| p.chunks.len() as u32).sum();
            Prepared::Chunks { record, parts, is_new }
        }
        Err(e) => {
            record.status = FileStatus::Failed;
            record.error = Some(e);
            Prepared::NoChunks { record }
        }
    }
}

/// One document chunked (unless its hash is among `stored`), with what the
/// index stores beside its chunks: its own hash and, for a message, its
/// date and headers.
fn part_of(kind: kind::Kind, doc: extract::Document, file_hash: &str, chunker: &Chunker, stored: &HashSet<String>) -> Part {
    let known = doc.mail.as_ref().is_some_and(|m| stored.contains(&m.hash));
    let chunks = if known { Vec::new() } else { chunker.chunk(kind, &doc) };
    let (hash, date_ns) = match &doc.mail {
        Some(m) => (m.hash.clone(), m.date_ns()),
        None => (file_hash.to_owned(), None),
    };
    let message = doc.mail;
    Part { hash, date_ns, message, chunks, stored: known }
}

#[cfg(test)]
mod tests;
