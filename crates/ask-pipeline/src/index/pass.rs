//! Reading, embedding and committing the files an update found, in
//! batches: a producer thread reads and chunks, the caller embeds and
//! commits.

use super::*;
use super::read::{prepare, Part, Prepared};

/// One update's reading and embedding of the files that need it.
pub(super) struct Pass<'a> {
    pub(super) writer: &'a Writer,
    pub(super) encoder: &'a mut dyn Encoder,
    pub(super) progress: &'a mut dyn Progress,
    pub(super) summary: Summary,
    /// Whether [`Encoder::load`] was called.
    pub(super) loaded: bool,
}

impl Pass<'_> {
    pub(super) fn process(&mut self, known: &HashMap<PathKey, FileRecord>, work: Vec<Candidate>) -> Result<(), IndexError> {
        let opts = &self.writer.options;
        let chunker = Chunker::new(self.encoder.tokenizer()?, opts.chunk_tokens, opts.chunk_overlap)?;
        let mut batch = Batch { limit: opts.commit_every.max(1), ..Default::default() };
        let max_size = opts.walk.max_file_size;
        let (rt, store) = (&self.writer.rt, &self.writer.store);

        std::thread::scope(|scope| -> Result<(), IndexError> {
            let (tx, rx) = sync_channel::<Prepared>(64);
            let chunker = &chunker;
            // A changed mailbox chunks only the messages the index does not
            // hold for it yet (a failed lookup just chunks them all).
            let stored_docs = |path: &PathKey| rt.block_on(store.doc_hashes(path)).unwrap_or_default();
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
    fn flush(&mut self, batch: &mut Batch, known: &HashMap<PathKey, FileRecord>) -> Result<(), IndexError> {
        let (rt, store) = (&self.writer.rt, &self.writer.store);
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
pub(super) fn slices(doc_ends: &[usize], limit: usize) -> Vec<usize> {
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

/// Files and chunks waiting to be embedded and committed together.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) files: Vec<FileRecord>,
    /// (index into `files`, one document of that file)
    pub(super) parts: Vec<(usize, Part)>,
    /// Chunks in `parts`.
    pub(super) chunks: usize,
    pub(super) touched: Vec<FileRecord>,
    /// Commit when this many chunks, or files, are waiting.
    pub(super) limit: usize,
}

impl Batch {
    pub(super) fn add(&mut self, record: FileRecord, parts: Vec<Part>) {
        let file = self.files.len();
        self.files.push(record);
        self.chunks += parts.iter().map(|p| p.chunks.len()).sum::<usize>();
        self.parts.extend(parts.into_iter().map(|p| (file, p)));
    }

    pub(super) fn full(&self) -> bool {
        self.chunks >= self.limit || self.files.len() + self.touched.len() >= self.limit
    }
}
