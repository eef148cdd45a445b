//! `ask index`: walk, extract, chunk, embed, store, incrementally.
//!
//! The pipeline has two threads. A producer reads, hashes, extracts and
//! chunks files; the main thread embeds chunks in batches and commits them.
//! A bounded channel between them keeps memory flat on a large tree and lets
//! extraction overlap with the model's forward passes.
//!
//! Unchanged files (same size and mtime as recorded) are never opened, and
//! the encoder is loaded only when some chunk needs embedding, so an hourly
//! cron run over an unchanged tree costs a directory walk.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ask_ingest::discover::{self, WalkEvent, WalkOptions};
use ask_ingest::{content_hash, extract, kind, Candidate, Chunk, Chunker};
use ask_model::embed::{load_tokenizer, probe};
use ask_model::Embedder;
use ask_store::{ChunkRecord, FileRecord, IndexLock, IndexMeta, LockError, Store, WhenBusy};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::{now_secs, Run};
use crate::cli::IndexArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::Ui;

/// Table versions younger than this survive pruning, so a concurrent
/// `ask search` never finds its snapshot's files gone.
const KEEP_VERSIONS: Duration = Duration::from_secs(60);

/// The run's outcome, printed as a line or as JSON.
#[derive(Debug, Default, Serialize)]
struct Summary {
    index: String,
    new: usize,
    changed: usize,
    unchanged: usize,
    removed: usize,
    failed: usize,
    skipped: usize,
    /// Chunks embedded in this run.
    chunks: usize,
    /// Chunks stored again from an earlier run's embeddings, because their
    /// document was already indexed (a message of a grown mbox, a moved file).
    reused: usize,
    tokens: usize,
    seconds: f64,
    embed_seconds: f64,
}

/// One document of a file (the file itself, or one message of a mailbox), chunked.
struct Part {
    /// Content hash of the document: its chunks are reused when the index
    /// already holds a document with this hash.
    hash: String,
    /// The document's own date (a message's sent date), ns.
    date_ns: Option<i64>,
    message: Option<ask_store::Message>,
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

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn path_key(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Run for IndexArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let started = Instant::now();
        let ui = Ui::new(cfg.quiet, self.verbose);
        let mut summary = Summary { index: cfg.index_name.clone(), ..Default::default() };

        let roots = self.roots()?;
        let (info, _) = probe(&cfg.embed_model).context("cannot use the encoder")?;
        let chunk_tokens = self.chunk_tokens.min(info.max_tokens.saturating_sub(2)).max(1);
        if self.chunk_overlap >= chunk_tokens {
            anyhow::bail!("--chunk-overlap ({}) must be smaller than the chunk size ({chunk_tokens})", self.chunk_overlap);
        }

        cfg.create_index_dir()?;
        let mut waiting = |pid: &str| {
            if !cfg.quiet {
                eprintln!("ask: waiting for the `ask index` run (pid {pid}) that is writing to {}", cfg.index_dir.display());
            }
        };
        let busy = if self.wait { WhenBusy::Wait(&mut waiting) } else { WhenBusy::Fail };
        let _lock = match IndexLock::acquire(&cfg.index_dir, busy) {
            Ok(lock) => lock,
            Err(e @ LockError::Busy { .. }) => {
                ui.error(&format!("{e}; wait for it, or pass --wait"));
                return Ok(Exit::Busy);
            }
            Err(e) => return Err(e.into()),
        };

        let mut meta = match IndexMeta::load(&cfg.index_dir)? {
            Some(meta) => {
                if let Err(e) = meta.check_encoder(&info.name, info.dim) {
                    anyhow::bail!(
                        "{e} ('{}'); index into another index with --index NAME, or delete {} to rebuild",
                        cfg.index_name,
                        cfg.index_dir.display()
                    );
                }
                meta
            }
            None => IndexMeta {
                format: 1,
                encoder: info.name.clone(),
                dim: info.dim,
                chunk_tokens,
                chunk_overlap: self.chunk_overlap,
                created_at: now_secs(),
                indexed_at: None,
            },
        };

        let store = rt.block_on(Store::open_or_create(&cfg.index_dir, info.dim))?;
        if meta.indexed_at.is_none() {
            // A first run records its encoder now, not when it ends: what
            // it commits is searchable (and guarded against another
            // encoder) even if it is killed before it finishes.
            meta.save(&cfg.index_dir)?;
        }
        let known = rt.block_on(store.file_records())?;

        // Discover.
        let scan = ui.spinner("scanning");
        let opts = WalkOptions {
            hidden: self.hidden,
            follow_links: self.follow,
            no_ignore: self.no_ignore,
            max_file_size: self.max_file_size,
        };
        let mut work: Vec<Candidate> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut unreadable_dirs: Vec<PathBuf> = Vec::new();
        let mut walk_roots = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        // ask's own data (indexes, models) is never indexed, even with --hidden.
        let own_data = cfg.home.canonicalize().unwrap_or_else(|_| cfg.home.clone());
        for root in &roots {
            if root.exists() {
                walk_roots.push(root.clone());
            } else {
                // A root that is gone: forget what was indexed below it, or
                // report it if nothing was (most likely a typo).
                let below: Vec<String> = known.keys().filter(|k| is_below(Path::new(k), root)).cloned().collect();
                if below.is_empty() {
                    ui.error(&format!("{}: no such file or directory", root.display()));
                    summary.failed += 1;
                } else {
                    removed.extend(below);
                }
            }
        }
        discover::walk(&walk_roots, &opts, |event| match event {
            WalkEvent::File(c) if c.path.starts_with(&own_data) => {}
            WalkEvent::File(c) => {
                let key = path_key(&c.path);
                let unchanged = known.get(&key).is_some_and(|r| r.size == c.size && r.mtime_ns == c.mtime_ns);
                seen.insert(key);
                if unchanged {
                    summary.unchanged += 1;
                } else {
                    work.push(c);
                }
                if seen.len() % 1024 == 0 {
                    scan.set_message(format!("scanning: {} files", seen.len()));
                }
            }
            WalkEvent::TooLarge(c) => {
                summary.skipped += 1;
                ui.info(&format!(
                    "skipped {}: {} bytes is over --max-file-size ({} bytes)",
                    c.path.display(),
                    c.size,
                    self.max_file_size
                ));
            }
            WalkEvent::Error { path, message } => {
                ui.error(&message);
                summary.failed += 1;
                if let Some(p) = path {
                    unreadable_dirs.push(p);
                }
            }
        });
        scan.finish_and_clear();
        removed.extend(
            known
                .keys()
                .filter(|k| !seen.contains(*k))
                .filter(|k| walk_roots.iter().any(|r| is_below(Path::new(k), r)))
                .filter(|k| !unreadable_dirs.iter().any(|d| is_below(Path::new(k), d)))
                .cloned(),
        );
        removed.sort();
        removed.dedup();

        let mut wrote = false;
        if !work.is_empty() {
            wrote = true;
            self.process(cfg, rt, &ui, &store, &known, work, chunk_tokens, &mut summary)?;
        }
        if !removed.is_empty() {
            wrote = true;
            summary.removed = removed.len();
            rt.block_on(store.remove_files(&removed))?;
        }
        let spinner = ui.spinner("optimizing index");
        if wrote {
            rt.block_on(store.optimize(KEEP_VERSIONS))?;
        } else {
            // Nothing changed, but an index made by an older ask may still
            // lack its full-text index: this costs one manifest read when not.
            rt.block_on(store.ensure_indexes())?;
        }
        spinner.finish_and_clear();
        meta.indexed_at = Some(now_secs());
        meta.save(&cfg.index_dir)?;

        summary.seconds = started.elapsed().as_secs_f64();
        self.report(&ui, &summary)?;
        Ok(if self.strict && summary.failed > 0 { Exit::FilesFailed } else { Exit::Success })
    }
}

/// `path` is `root` or inside it (component-wise, so /a/bc is not below /a/b).
fn is_below(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

impl IndexArgs {
    /// The roots to walk, absolute and with symlinks in the root resolved so
    /// that the same file always has the same key.
    fn roots(&self) -> Result<Vec<PathBuf>> {
        let mut raw: Vec<PathBuf> = self.paths.clone();
        if self.stdin {
            for line in std::io::stdin().lock().lines() {
                let line = line.context("cannot read paths from standard input")?;
                let line = line.trim_end_matches('\r');
                if !line.is_empty() {
                    raw.push(PathBuf::from(line));
                }
            }
        }
        let mut roots = Vec::new();
        for p in raw {
            let abs = std::path::absolute(&p).with_context(|| format!("{}: invalid path", p.display()))?;
            roots.push(abs.canonicalize().unwrap_or(abs));
        }
        Ok(roots)
    }

    #[allow(clippy::too_many_arguments)]
    fn process(
        &self,
        cfg: &Config,
        rt: &Runtime,
        ui: &Ui,
        store: &Store,
        known: &HashMap<String, FileRecord>,
        work: Vec<Candidate>,
        chunk_tokens: usize,
        summary: &mut Summary,
    ) -> Result<()> {
        let tokenizer = load_tokenizer(&cfg.embed_model)?;
        let chunker = Chunker::new(tokenizer, chunk_tokens, self.chunk_overlap)?;
        let bar = ui.bar(work.len() as u64, "files");
        let mut embedder: Option<Embedder> = None;
        // Chunks embedded and committed together (--commit-every, 512 by
        // default): large enough that LanceDB commits stay few, small enough
        // that a killed run loses little work.
        let mut batch = Batch { limit: self.commit_every.max(1), ..Default::default() };
        let max_size = self.max_file_size;

        std::thread::scope(|scope| -> Result<()> {
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
                bar.inc(1);
                match prepared {
                    Prepared::Chunks { record, parts, is_new } => {
                        if is_new { summary.new += 1 } else { summary.changed += 1 }
                        batch.add(record, parts);
                    }
                    Prepared::Touched(record) => {
                        summary.unchanged += 1;
                        batch.touched.push(record);
                    }
                    // Every file seen counts once: a known file that now
                    // fails or is skipped counts as failed or skipped, not
                    // also as changed.
                    Prepared::NoChunks { record } => {
                        if record.status == "failed" {
                            summary.failed += 1;
                            ui.error(&format!("{}: {}", record.path, record.error.as_deref().unwrap_or("failed")));
                        } else {
                            summary.skipped += 1;
                        }
                        batch.add(record, Vec::new());
                    }
                    Prepared::Unreadable { path, reason } => {
                        summary.failed += 1;
                        ui.error(&format!("{path}: {reason}"));
                    }
                }
                if batch.full() {
                    self.flush(cfg, rt, store, &mut embedder, &mut batch, summary, &bar)?;
                }
            }
            self.flush(cfg, rt, store, &mut embedder, &mut batch, summary, &bar)
        })?;
        bar.finish_and_clear();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn flush(
        &self,
        cfg: &Config,
        rt: &Runtime,
        store: &Store,
        embedder: &mut Option<Embedder>,
        batch: &mut Batch,
        summary: &mut Summary,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
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
            let mtime_ns = part.date_ns.unwrap_or(f.mtime_ns);
            let reuse = stored.get(&part.hash).filter(|c| !c.is_empty()).cloned();
            if let Some(old) = reuse {
                summary.reused += old.len();
                for c in old {
                    let n = next_chunk[file];
                    next_chunk[file] += 1;
                    records.push(ChunkRecord {
                        path: f.path.clone(),
                        chunk: n,
                        kind: f.kind.clone().unwrap_or_default(),
                        mtime_ns,
                        message: part.message.clone(),
                        ..c
                    });
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
                    path: f.path.clone(),
                    chunk: n,
                    kind: f.kind.clone().unwrap_or_default(),
                    text: String::new(),
                    line_start: chunk.line_start,
                    line_end: chunk.line_end,
                    page: chunk.page,
                    byte_start: chunk.byte_start as u64,
                    byte_end: chunk.byte_end as u64,
                    mtime_ns,
                    vector: Vec::new(),
                    doc_hash: part.hash.clone(),
                    message: part.message.clone(),
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
        // Embedded a slice of whole documents (about --commit-every chunks)
        // at a time. A file with more (a large mailbox) gets each finished
        // slice committed before the next begins: a killed run then loses
        // one slice, and the next run reuses the documents already stored
        // (by content hash), rather than starting the file over.
        let total = pending.len();
        let mut pending = pending.into_iter();
        let mut ends = doc_ends.into_iter().peekable();
        let mut done = 0;
        while done < total {
            // Whole documents while they fit in a slice, and at least one.
            let mut end = done;
            while let Some(&e) = ends.peek() {
                if end > done && e - done > batch.limit {
                    break;
                }
                end = e;
                ends.next();
            }
            let slice: Vec<(ChunkRecord, String)> = pending.by_ref().take(end - done).collect();
            if embedder.is_none() {
                bar.set_message("loading encoder");
                *embedder = Some(Embedder::load(&cfg.embed_model).context("cannot load the encoder")?);
            }
            let model = embedder.as_ref().expect("just loaded");
            let texts: Vec<&str> = slice.iter().map(|(_, t)| t.as_str()).collect();
            let t = Instant::now();
            let (vectors, tokens) = model.embed_passages(&texts)?;
            summary.embed_seconds += t.elapsed().as_secs_f64();
            summary.tokens += tokens;
            summary.chunks += texts.len();
            let embedded: Vec<ChunkRecord> = slice
                .into_iter()
                .zip(vectors)
                .map(|((record, text), vector)| ChunkRecord { text, vector, ..record })
                .collect();
            if end < total {
                rt.block_on(store.add_chunks(&embedded))?;
            }
            records.extend(embedded);
            done = end;
            let rate = summary.tokens as f64 / summary.embed_seconds.max(1e-9);
            bar.set_message(format!("{} chunks, {rate:.0} tokens/s", summary.chunks));
        }
        rt.block_on(store.write_files(&batch.files, &records))?;
        batch.files.clear();
        batch.chunks = 0;
        Ok(())
    }

    fn report(&self, ui: &Ui, s: &Summary) -> Result<()> {
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, s)?;
            writeln!(out)?;
        }
        ui.info(&format!(
            "{}: {} new, {} changed, {} unchanged, {} removed, {} failed, {} skipped; {} chunks embedded{} in {:.1}s",
            s.index,
            s.new,
            s.changed,
            s.unchanged,
            s.removed,
            s.failed,
            s.skipped,
            s.chunks,
            if s.reused > 0 { format!(", {} reused", s.reused) } else { String::new() },
            s.seconds
        ));
        Ok(())
    }
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
    fn read(path: &Path) -> std::io::Result<Content> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut head = Vec::new();
        (&mut file).take(kind::HEAD_BYTES).read_to_end(&mut head)?;
        if kind::is_mbox(path, &head) {
            let (hash, size) = ask_ingest::content_hash_reader(head.as_slice().chain(file))?;
            return Ok(Content::Mailbox { head, hash, size });
        }
        file.read_to_end(&mut head)?;
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
    let content = match Content::read(&c.path) {
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
    let mtime_ns = std::fs::metadata(&c.path).map(|m| discover::candidate(&c.path, &m).mtime_ns).unwrap_or(c.mtime_ns);
    if let Some(old) = old.filter(|o| o.hash == hash) {
        return Prepared::Touched(FileRecord { size, mtime_ns, ..old.clone() });
    }
    let mut record = FileRecord {
        path,
        size,
        mtime_ns,
        hash,
        kind: None,
        status: "ok".into(),
        error: None,
        chunks: 0,
        indexed_at: now_ms(),
    };
    let mailbox = matches!(content, Content::Mailbox { .. });
    if size > max_size && !mailbox {
        record.status = "skipped".into();
        return Prepared::NoChunks { record };
    }
    let kind = match kind::classify(&c.path, bytes) {
        Ok(Some(kind)) => kind,
        Ok(None) => {
            record.status = "skipped".into();
            return Prepared::NoChunks { record };
        }
        Err(reason) => {
            record.status = "failed".into();
            record.error = Some(reason.into());
            return Prepared::NoChunks { record };
        }
    };
    record.kind = Some(kind.as_str().into());
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
            record.status = "failed".into();
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
    let (hash, date_ns, message) = match doc.mail {
        Some(m) => (
            m.hash.clone(),
            m.date_ns(),
            Some(ask_store::Message {
                key: m.key,
                subject: m.subject,
                from: m.from,
                to: m.to,
                date: m.date_rfc3339,
                message_id: m.message_id,
            }),
        ),
        None => (file_hash.to_owned(), None, None),
    };
    Part { hash, date_ns, message, chunks, stored: known }
}
