//! The on-disk index: one LanceDB database directory per index, with a
//! `chunks` table (text, location, vector) and a `files` table (path, size,
//! mtime, hash, status) that makes re-indexing incremental.
//!
//! Crash safety comes from LanceDB's versioned commits plus an ordering rule:
//! a file's chunks are written first and its `files` row last, so the row is
//! the commit marker. A run killed in between leaves a file whose row is
//! missing or stale; the next run re-indexes it, replacing whatever chunks
//! the dead run left. Nothing already committed is lost.
#![deny(missing_docs)]

mod arrow;
pub mod lock;
pub mod meta;
mod indexes;
pub mod search;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::SchemaRef;
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::{CompactionOptions, Duration, OptimizeAction};
use lancedb::Table;

pub use lock::{IndexLock, LockError, WhenBusy};
pub use meta::{EncoderMismatch, IndexMeta, Root};
pub use indexes::IndexWork;
pub use search::{Filter, Mode, Request};
/// LanceDB's caches of index files, shared by the stores opened with
/// [`Store::open_shared`]; [`session`] makes one.
pub use lancedb::Session;

/// Bytes a [`session`] keeps of index files (full-text and vector
/// indexes): far more than 100,000 chunks need (tens of MB), and bounded,
/// since entries of versions a running `ask index` has replaced stay
/// until they are evicted (LanceDB's own default is 6 GiB).
pub const SESSION_INDEX_CACHE_BYTES: usize = 1 << 30;
/// Bytes a [`session`] keeps of file metadata (LanceDB's default: 1 GiB).
pub const SESSION_METADATA_CACHE_BYTES: usize = 256 << 20;

/// A cache for [`Store::open_shared`], bounded by
/// [`SESSION_INDEX_CACHE_BYTES`] and [`SESSION_METADATA_CACHE_BYTES`].
pub fn session() -> Arc<Session> {
    Arc::new(Session::new(SESSION_INDEX_CACHE_BYTES, SESSION_METADATA_CACHE_BYTES, Default::default()))
}
pub use ask_ingest::{Kind, Mail};

const CHUNKS: &str = "chunks";
const FILES: &str = "files";

/// Errors from the store. Each names the index directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No index has been created at this location yet.
    #[error("no index at {0}")]
    Missing(PathBuf),
    /// The index was built with a different embedding model.
    #[error("index at {dir} holds {have}-dimensional vectors but the encoder makes {want}")]
    Dimension {
        /// The index directory.
        dir: PathBuf,
        /// Dimension in the index.
        have: usize,
        /// Dimension of the encoder in use.
        want: usize,
    },
    /// The database failed (LanceDB's error, kept as a source rather than
    /// a public type of this crate).
    #[error("index at {dir}")]
    Lance {
        /// The index directory.
        dir: PathBuf,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Arrow data did not have the expected shape.
    #[error("index at {dir}: unexpected data: {message}")]
    Data {
        /// The index directory.
        dir: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A path glob of a filter that ask cannot match.
    #[error("'{glob}': character classes and alternatives ({found}…) are not supported in path globs; use * and ?")]
    Glob {
        /// The glob.
        glob: String,
        /// The character that starts what is not supported.
        found: char,
    },
    /// A search by sender in an index written before mail headers were
    /// stored (the next `ask index` run adds them).
    #[error("index at {0} predates mail headers")]
    NoMailHeaders(PathBuf),
    /// A BM25 search in an index that has no full-text index yet (the next
    /// `ask index` run builds it).
    #[error("index at {0} has no full-text index yet")]
    NoTextIndex(PathBuf),
    /// A search that ranks by meaning was given no query vector.
    #[error("{0} search needs the query's vector")]
    NeedsVector(&'static str),
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What became of a file the index knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Indexed: its chunks are searchable.
    Ok,
    /// Could not be extracted ([`FileRecord::error`] says why).
    Failed,
    /// Not a document ask reads, or over the size limit.
    Skipped,
}

impl FileStatus {
    /// The name stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Ok => "ok",
            FileStatus::Failed => "failed",
            FileStatus::Skipped => "skipped",
        }
    }

    /// The status a `status` column value names.
    pub fn parse(s: &str) -> Option<FileStatus> {
        [FileStatus::Ok, FileStatus::Failed, FileStatus::Skipped].into_iter().find(|k| k.as_str() == s)
    }
}

/// What the index knows about one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    /// The file's path (absolute).
    pub path: String,
    /// Size in bytes when indexed.
    pub size: u64,
    /// Modification time (ns since the epoch) when indexed.
    pub mtime_ns: i64,
    /// Content hash (BLAKE3 hex).
    pub hash: String,
    /// Document kind, if it was recognised.
    pub kind: Option<Kind>,
    /// Indexed, failed or skipped.
    pub status: FileStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How many chunks it has in the index.
    pub chunks: u32,
    /// When it was indexed (ms since the epoch).
    pub indexed_at_ms: i64,
}

/// A chunk as search finds it and as it is stored: where it sits and what
/// it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// The file's path.
    pub path: String,
    /// Position of the chunk in its file (0-based).
    pub chunk: u32,
    /// Document kind.
    pub kind: Kind,
    /// The chunk's text.
    pub text: String,
    /// First line (1-based).
    pub line_start: u32,
    /// Last line (1-based, inclusive).
    pub line_end: u32,
    /// Page (1-based) for paged formats.
    pub page: Option<u32>,
    /// The message, when the chunk is part of an e-mail.
    pub message: Option<Mail>,
}

/// A stored chunk as read back for its neighbours: the passage and where
/// it lies in its section (`byte_start..byte_end`), to join it with the
/// chunks beside it without repeating their overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// What it says and where.
    pub passage: Passage,
    /// Byte range start within its section.
    pub byte_start: u64,
    /// Byte range end (exclusive).
    pub byte_end: u64,
}

/// One chunk to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    /// What it says and where.
    pub passage: Passage,
    /// Byte range start within its section.
    pub byte_start: u64,
    /// Byte range end.
    pub byte_end: u64,
    /// The document's date (ns since the epoch), what date filters test:
    /// a mail message's sent date, else its file's modification time.
    /// (Stored in the column `mtime_ns`, its name before mail support.)
    pub date_ns: i64,
    /// The embedding.
    pub vector: Vec<f32>,
    /// Content hash of the document the chunk was cut from (the file, or
    /// one message of a mailbox): chunks are reused, not re-embedded, when
    /// the same document turns up again (an mbox that grew, a renamed file).
    pub doc_hash: String,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// What was found and where.
    pub passage: Passage,
    /// The ranking score of the search mode (higher is better): cosine
    /// similarity for dense, BM25 for bm25, the fused score for hybrid.
    pub score: f32,
    /// Cosine similarity to the query, when the query had a vector.
    pub similarity: Option<f32>,
}

/// Counts for `ask status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Files indexed successfully.
    pub files: usize,
    /// Files that failed to extract.
    pub failed: usize,
    /// Chunks stored.
    pub chunks: usize,
}

/// Whether the chunks agree with the file records, for `ask status
/// --check`. A run stores a file's chunks before its record, so a run
/// stopped in between leaves a file in one of these lists; the next run
/// sees the file as new or changed and writes it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Paths that have chunks but no file record.
    pub unrecorded: Vec<String>,
    /// Recorded files whose chunks are not exactly chunks 0..n of the
    /// record's n (some missing, repeated or beyond n).
    pub mismatched: Vec<String>,
    /// Files recorded more than once.
    pub duplicated: Vec<String>,
}

impl Check {
    /// Nothing found.
    pub fn is_consistent(&self) -> bool {
        self.unrecorded.is_empty() && self.mismatched.is_empty() && self.duplicated.is_empty()
    }
}

/// An open index.
pub struct Store {
    dir: PathBuf,
    chunks: Table,
    files: Table,
    dim: usize,
    /// Whether the chunks table has a full-text index / an ANN vector index.
    text_index: AtomicBool,
    vector_index: AtomicBool,
    /// Whether the chunks table has the message and content-hash columns
    /// (indexes written by ask before mail support lack them until the
    /// next `ask index`).
    doc_columns: bool,
}

/// True when a LanceDB index exists at `dir`.
pub fn exists(dir: &Path) -> bool {
    dir.join(format!("{FILES}.lance")).exists()
}

fn lance_error(dir: &Path, source: lancedb::Error) -> StoreError {
    StoreError::Lance { dir: dir.to_path_buf(), source: Box::new(source) }
}

/// The index directory as the URI LanceDB takes, which must be UTF-8 (a
/// lossy conversion would name another directory).
fn uri(dir: &Path) -> Result<&str> {
    dir.to_str().ok_or_else(|| StoreError::Data { dir: dir.into(), message: "index path is not valid UTF-8".into() })
}

impl Store {
    fn lance(&self, source: lancedb::Error) -> StoreError {
        lance_error(&self.dir, source)
    }

    /// Opens the index at `dir`, creating it for `dim`-dimensional vectors
    /// if it does not exist yet.
    pub async fn open_or_create(dir: &Path, dim: usize) -> Result<Store> {
        let lance = |source| lance_error(dir, source);
        let conn = lancedb::connect(uri(dir)?).execute().await.map_err(lance)?;
        let names = conn.table_names().execute().await.map_err(lance)?;
        let chunks = if names.iter().any(|n| n == CHUNKS) {
            conn.open_table(CHUNKS).execute().await.map_err(lance)?
        } else {
            conn.create_empty_table(CHUNKS, arrow::chunks_schema(dim)).execute().await.map_err(lance)?
        };
        let files = if names.iter().any(|n| n == FILES) {
            conn.open_table(FILES).execute().await.map_err(lance)?
        } else {
            conn.create_empty_table(FILES, arrow::files_schema()).execute().await.map_err(lance)?
        };
        let schema = chunks.schema().await.map_err(lance)?;
        let have = arrow::vector_dim(&schema).unwrap_or(dim);
        if have != dim {
            return Err(StoreError::Dimension { dir: dir.into(), have, want: dim });
        }
        let missing: Vec<arrow_schema::Field> =
            arrow::doc_fields().into_iter().filter(|f| schema.field_with_name(f.name()).is_err()).collect();
        if !missing.is_empty() {
            // A metadata-only change: the old rows read as nulls.
            let added = Arc::new(arrow_schema::Schema::new(missing));
            chunks
                .add_columns()
                .transform(lancedb::table::NewColumnTransform::AllNulls(added))
                .execute()
                .await
                .map_err(lance)?;
        }
        // Every document column is there now, added or found.
        Store::new(dir, chunks, files, dim, true).await
    }

    /// `doc_columns`: whether the chunks table has every column of
    /// [`arrow::DOC_COLUMNS`], as its caller read from the schema.
    async fn new(dir: &Path, chunks: Table, files: Table, dim: usize, doc_columns: bool) -> Result<Store> {
        let store = Store {
            dir: dir.into(),
            chunks,
            files,
            dim,
            text_index: AtomicBool::new(false),
            vector_index: AtomicBool::new(false),
            doc_columns,
        };
        store.refresh_index_flags().await?;
        Ok(store)
    }

    /// Opens an existing index for reading.
    pub async fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, None).await
    }

    /// Opens an existing index for reading at its latest version, reusing
    /// what `session` already holds of its files (the full-text and vector
    /// indexes, file metadata) rather than reading them again: for a
    /// process that serves many requests and opens the index for each, so
    /// that it sees what a running `ask index` commits.
    pub async fn open_shared(dir: &Path, session: &Arc<Session>) -> Result<Store> {
        Store::open_with(dir, Some(session)).await
    }

    async fn open_with(dir: &Path, session: Option<&Arc<Session>>) -> Result<Store> {
        if !exists(dir) {
            return Err(StoreError::Missing(dir.into()));
        }
        let lance = |source| lance_error(dir, source);
        let mut connect = lancedb::connect(uri(dir)?);
        if let Some(session) = session {
            connect = connect.session(session.clone());
        }
        let conn = connect.execute().await.map_err(lance)?;
        let chunks = conn.open_table(CHUNKS).execute().await.map_err(lance)?;
        let files = conn.open_table(FILES).execute().await.map_err(lance)?;
        let schema = chunks.schema().await.map_err(lance)?;
        let dim = arrow::vector_dim(&schema).ok_or_else(|| StoreError::Data {
            dir: dir.into(),
            message: "chunks table has no vector column".into(),
        })?;
        let doc_columns = arrow::DOC_COLUMNS.iter().all(|c| schema.field_with_name(c).is_ok());
        Store::new(dir, chunks, files, dim, doc_columns).await
    }

    /// Every file the index knows, by path.
    pub async fn file_records(&self) -> Result<HashMap<String, FileRecord>> {
        let batches = self.rows(self.files.query()).await?;
        let mut out = HashMap::new();
        for batch in &batches {
            for rec in arrow::read_files(batch).map_err(|message| self.data(message))? {
                out.insert(rec.path.clone(), rec);
            }
        }
        Ok(out)
    }

    /// Compares every chunk's path and number with the file records
    /// (`records`, from [`Store::file_records`]); reads no text or vector.
    pub async fn check(&self, records: &HashMap<String, FileRecord>) -> Result<Check> {
        let mut numbers: HashMap<String, Vec<u32>> = HashMap::new();
        for batch in self.rows(self.chunks.query().select(Select::columns(&["path", "chunk"]))).await? {
            let paths = arrow::string_column(&batch, "path").map_err(|m| self.data(m))?;
            let chunks = arrow::u32_column(&batch, "chunk").map_err(|m| self.data(m))?;
            for (path, chunk) in paths.iter().zip(chunks.iter()) {
                let (Some(path), Some(chunk)) = (path, chunk) else { return Err(self.data("a chunk without path or number".into())) };
                numbers.entry(path.to_owned()).or_default().push(chunk);
            }
        }
        let mut check = Check::default();
        for (path, ids) in &mut numbers {
            let Some(rec) = records.get(path) else {
                check.unrecorded.push(path.clone());
                continue;
            };
            ids.sort_unstable();
            if !ids.iter().copied().eq(0..rec.chunks) {
                check.mismatched.push(path.clone());
            }
        }
        // Files recorded with chunks that have none at all.
        check.mismatched.extend(records.values().filter(|r| r.chunks > 0 && !numbers.contains_key(&r.path)).map(|r| r.path.clone()));
        // `records` holds one record per path: look for more only when
        // the table has more rows than that.
        if self.files.count_rows(None).await.map_err(|e| self.lance(e))? != records.len() {
            let mut seen = HashSet::new();
            for batch in self.rows(self.files.query().select(Select::columns(&["path"]))).await? {
                for path in arrow::string_column(&batch, "path").map_err(|m| self.data(m))?.iter().flatten() {
                    if !seen.insert(path.to_owned()) {
                        check.duplicated.push(path.to_owned());
                    }
                }
            }
            check.duplicated.sort();
            check.duplicated.dedup();
        }
        check.unrecorded.sort();
        check.mismatched.sort();
        Ok(check)
    }

    /// Whether the tables' row counts agree with `records` (from
    /// [`Store::file_records`]): one file row per record, and as many
    /// chunk rows as the records count. Two counts from the tables'
    /// metadata, so every run can afford it; a disagreement is what
    /// [`Store::check`] then names.
    pub async fn counts_agree(&self, records: &HashMap<String, FileRecord>) -> Result<bool> {
        let chunks: u64 = records.values().map(|r| u64::from(r.chunks)).sum();
        let chunk_rows = self.chunks.count_rows(None).await.map_err(|e| self.lance(e))?;
        let file_rows = self.files.count_rows(None).await.map_err(|e| self.lance(e))?;
        Ok(chunk_rows as u64 == chunks && file_rows == records.len())
    }

    /// Runs a plain (unranked) query to the end.
    async fn rows(&self, query: lancedb::query::Query) -> Result<Vec<RecordBatch>> {
        query.execute().await.map_err(|e| self.lance(e))?.try_collect().await.map_err(|e| self.lance(e))
    }

    fn data(&self, message: String) -> StoreError {
        StoreError::Data { dir: self.dir.clone(), message }
    }

    /// Replaces everything stored for `files` with `chunks`, then records
    /// the files. The file rows are written last: they mark the work done.
    pub async fn write_files(&self, files: &[FileRecord], chunks: &[ChunkRecord]) -> Result<()> {
        self.write_files_known(files, chunks, &|_| true).await
    }

    /// [`Store::write_files`], told which paths the files table may hold a
    /// record of (`recorded`): the records of the others are appended
    /// rather than merged, which spares a join with the whole table per
    /// commit (a first run over 100,000 files made 196 of them). Their
    /// chunks are replaced all the same: a killed run may have left some.
    pub async fn write_files_known(&self, files: &[FileRecord], chunks: &[ChunkRecord], recorded: &dyn Fn(&str) -> bool) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        self.delete_chunks(&paths).await?;
        self.add_chunks(chunks).await?;
        let (old, new): (Vec<FileRecord>, Vec<FileRecord>) = files.iter().cloned().partition(|f| recorded(&f.path));
        if !new.is_empty() {
            let batch = arrow::files_batch(&new).map_err(|e| self.data(e.to_string()))?;
            self.files.add(batch).execute().await.map_err(|e| self.lance(e))?;
        }
        self.upsert_files(&old).await
    }

    /// Adds chunks without touching what their files already have: the
    /// embedded documents of a large file, committed as they are done so
    /// that a killed run loses little. The file's next [`Store::write_files`]
    /// replaces them with its full set; until then they are found by
    /// [`Store::chunks_by_doc_hash`] (and by search).
    pub async fn add_chunks(&self, chunks: &[ChunkRecord]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let batch = arrow::chunks_batch(self.dim, chunks).map_err(|e| self.data(e.to_string()))?;
        self.chunks.add(batch).execute().await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// The content hashes of the documents stored for one file (the
    /// messages of a mailbox): a changed mailbox needs to chunk only the
    /// messages not among them.
    pub async fn doc_hashes(&self, path: &str) -> Result<HashSet<String>> {
        if !self.doc_columns {
            return Ok(HashSet::new());
        }
        let query = self.chunks.query().only_if(in_list("path", &[path])).select(Select::columns(&["doc_hash"]));
        let mut out = HashSet::new();
        for batch in self.rows(query).await? {
            let hashes = arrow::string_column(&batch, "doc_hash").map_err(|m| self.data(m))?;
            out.extend(hashes.iter().flatten().map(str::to_owned));
        }
        Ok(out)
    }

    /// The stored chunks `first..=last` of each `(path, first, last)`, in no
    /// particular order: the neighbours of retrieved chunks, read through
    /// the `path` index.
    pub async fn spans(&self, wanted: &[(&str, u32, u32)]) -> Result<Vec<Span>> {
        let mut out = Vec::new();
        for group in wanted.chunks(64) {
            let predicate = group
                .iter()
                .map(|(path, first, last)| format!("({} AND chunk >= {first} AND chunk <= {last})", in_list("path", &[path])))
                .collect::<Vec<_>>()
                .join(" OR ");
            let mut columns = self.passage_columns();
            columns.extend(["byte_start", "byte_end"]);
            let query = self.chunks.query().only_if(predicate).select(Select::columns(&columns));
            for batch in self.rows(query).await? {
                out.extend(arrow::read_spans(&batch).map_err(|m| self.data(m))?);
            }
        }
        Ok(out)
    }

    /// Stored chunks of documents with these content hashes, vectors
    /// included, grouped by hash and in chunk order: what a re-run needs to
    /// store a document it has seen before without embedding it again.
    pub async fn chunks_by_doc_hash(&self, hashes: &[&str]) -> Result<HashMap<String, Vec<ChunkRecord>>> {
        let mut out: HashMap<String, Vec<ChunkRecord>> = HashMap::new();
        if hashes.is_empty() || !self.doc_columns {
            return Ok(out);
        }
        for group in hashes.chunks(500) {
            let batches = self.rows(self.chunks.query().only_if(in_list("doc_hash", group))).await?;
            for batch in &batches {
                for rec in arrow::read_chunks(batch, self.dim).map_err(|m| self.data(m))? {
                    out.entry(rec.doc_hash.clone()).or_default().push(rec);
                }
            }
        }
        // The same document may be stored under two paths (a copy): keep
        // one path's chunks per hash.
        for chunks in out.values_mut() {
            let first = chunks.iter().map(|c| c.passage.path.clone()).min().unwrap_or_default();
            chunks.retain(|c| c.passage.path == first);
            chunks.sort_by_key(|c| c.passage.chunk);
        }
        Ok(out)
    }

    /// Updates file rows only (a touched file whose content did not change).
    pub async fn upsert_files(&self, files: &[FileRecord]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let batch = arrow::files_batch(files).map_err(|e| self.data(e.to_string()))?;
        let schema: SchemaRef = batch.schema();
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
        let mut merge = self.files.merge_insert(&["path"]);
        merge.when_matched_update_all(None).when_not_matched_insert_all();
        merge.execute(Box::new(reader)).await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// Removes files and their chunks.
    pub async fn remove_files(&self, paths: &[String]) -> Result<()> {
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        for group in paths.chunks(500) {
            self.delete_chunks(group).await?;
            self.files.delete(&in_list("path", group)).await.map_err(|e| self.lance(e))?;
        }
        Ok(())
    }

    async fn delete_chunks(&self, paths: &[&str]) -> Result<()> {
        for group in paths.chunks(500) {
            self.chunks.delete(&in_list("path", group)).await.map_err(|e| self.lance(e))?;
        }
        Ok(())
    }

    /// How many files and chunks the index holds.
    pub async fn counts(&self) -> Result<Counts> {
        let chunks = self.chunks.count_rows(None).await.map_err(|e| self.lance(e))?;
        let files = self.files.count_rows(Some(format!("status = '{}'", FileStatus::Ok.as_str()))).await.map_err(|e| self.lance(e))?;
        let failed = self.files.count_rows(Some(format!("status = '{}'", FileStatus::Failed.as_str()))).await.map_err(|e| self.lance(e))?;
        Ok(Counts { files, failed, chunks })
    }

    /// Whether the chunks table still holds removed rows that compaction
    /// has not yet rewritten away: a run killed between its removals and
    /// its [`Store::optimize`] leaves them, and the next run must finish
    /// that work even when nothing else changed.
    pub async fn has_removed_rows(&self) -> Result<bool> {
        let stats = self.chunks.stats().await.map_err(|e| self.lance(e))?;
        Ok(stats.num_deleted_rows.unwrap_or(0) > 0)
    }

    /// Merges small fragments left by incremental runs and drops table
    /// versions older than `keep`, so the directory does not grow with
    /// every run, then brings the search indexes up to date
    /// ([`Store::ensure_indexes`]). Callers hold the index lock.
    ///
    /// Every fragment of the chunks table with a removed row is rewritten
    /// (LanceDB's default waits until a tenth of a fragment is gone): the
    /// full-text index keeps counting removed rows in BM25's statistics
    /// (document count, mean length, document frequencies) until the rows
    /// are materialized away, so BM25 would rank an index kept up to date
    /// otherwise than one built afresh from the same files.
    pub async fn optimize(&self, keep: std::time::Duration) -> Result<IndexWork> {
        let keep = Duration::from_std(keep).unwrap_or(Duration::zero());
        for (table, materialize_deletions_threshold) in [(&self.chunks, 0.0), (&self.files, CompactionOptions::default().materialize_deletions_threshold)] {
            let options = CompactionOptions { materialize_deletions_threshold, ..CompactionOptions::default() };
            table
                .optimize(OptimizeAction::Compact { options, remap_options: None })
                .await
                .map_err(|e| self.lance(e))?;
            table
                .optimize(OptimizeAction::Prune {
                    older_than: Some(keep),
                    delete_unverified: Some(false),
                    error_if_tagged_old_versions: None,
                })
                .await
                .map_err(|e| self.lance(e))?;
        }
        self.ensure_indexes().await
    }
}

/// `column IN ('a', 'b')` with SQL string quoting (a quote is doubled).
fn in_list(column: &str, values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{}'", v.replace('\'', "''"))).collect();
    format!("{column} IN ({})", quoted.join(", "))
}

/// Deletes what the index in `dir` holds (its tables, then its metadata),
/// for a rebuild; the directory and its lock stay. The caller holds the
/// index lock. A rebuild killed half-way leaves metadata without tables,
/// which the next run creates anew.
pub fn remove_index_data(dir: &Path) -> Result<()> {
    for table in [CHUNKS, FILES] {
        let path = dir.join(format!("{table}.lance"));
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path, source }),
        }
    }
    meta::IndexMeta::remove(dir)
}

/// Creates `dir` and any missing parents with mode 0700, and tightens `dir`
/// itself to 0700 if it already existed: an index holds private text.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| StoreError::Io { path: dir.to_path_buf(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Total size in bytes of the files below `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, chunks: u32) -> FileRecord {
        FileRecord {
            path: path.into(),
            size: 1,
            mtime_ns: 1,
            hash: "h".into(),
            kind: Some(Kind::Text),
            status: FileStatus::Ok,
            error: None,
            chunks,
            indexed_at_ms: 0,
        }
    }

    fn chunk(path: &str, n: u32, vector: [f32; 3]) -> ChunkRecord {
        let passage = Passage {
            path: path.into(),
            chunk: n,
            kind: Kind::Text,
            text: format!("{path} {n}"),
            line_start: n + 1,
            line_end: n + 1,
            page: None,
            message: None,
        };
        ChunkRecord { passage, byte_start: 0, byte_end: 1, date_ns: 1, vector: vector.to_vec(), doc_hash: format!("hash of {path}") }
    }

    /// Neighbours are read by path and chunk range: only the asked chunks of
    /// the asked files, with their byte ranges, a quote in a path included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_are_the_asked_chunks_of_the_asked_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        let mut chunks: Vec<ChunkRecord> = (0..5).map(|n| chunk("/a", n, [1., 0., 0.])).collect();
        chunks.extend((0..3).map(|n| chunk("/it's", n, [0., 1., 0.])));
        for c in &mut chunks {
            c.byte_start = 10 * c.passage.chunk as u64;
            c.byte_end = c.byte_start + 12;
        }
        store.write_files(&[file("/a", 5), file("/it's", 3)], &chunks).await.unwrap();
        let mut got: Vec<(String, u32, u64, u64)> = store
            .spans(&[("/a", 1, 2), ("/it's", 2, 9), ("/b", 0, 3)])
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.passage.path, s.passage.chunk, s.byte_start, s.byte_end))
            .collect();
        got.sort();
        assert_eq!(got, [("/a".into(), 1, 10, 22), ("/a".into(), 2, 20, 32), ("/it's".into(), 2, 20, 32)]);
        assert!(store.spans(&[]).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_search_replace_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        store
            .write_files(
                &[file("/a", 2), file("/it's", 1)],
                &[chunk("/a", 0, [1., 0., 0.]), chunk("/a", 1, [0., 1., 0.]), chunk("/it's", 0, [0., 0., 1.])],
            )
            .await
            .unwrap();
        let filter = Filter::default();
        let req = |v: &'static [f32]| Request { text: "", vector: Some(v), k: 2, mode: Mode::Dense, filter: &filter };
        let hits = store.search(&req(&[0., 0.9, 0.1])).await.unwrap();
        assert_eq!((hits[0].passage.path.as_str(), hits[0].passage.chunk), ("/a", 1));
        assert!(hits[0].score > hits[1].score);
        // Re-writing a file replaces its chunks rather than adding to them.
        store.write_files(&[file("/a", 1)], &[chunk("/a", 0, [1., 0., 0.])]).await.unwrap();
        assert_eq!(store.counts().await.unwrap(), Counts { files: 2, failed: 0, chunks: 2 });
        store.remove_files(&["/it's".to_string()]).await.unwrap();
        assert_eq!(store.counts().await.unwrap(), Counts { files: 1, failed: 0, chunks: 1 });
        assert_eq!(store.file_records().await.unwrap().keys().collect::<Vec<_>>(), vec!["/a"]);
        store.optimize(std::time::Duration::ZERO).await.unwrap();
        drop(store);
        let err = Store::open_or_create(dir.path(), 4).await.err().unwrap();
        assert!(matches!(err, StoreError::Dimension { have: 3, want: 4, .. }), "{err}");
        let reopened = Store::open(dir.path()).await.unwrap();
        assert_eq!(reopened.counts().await.unwrap().chunks, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_finds_chunks_and_records_that_disagree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        let mut failed = file("/failed", 0);
        failed.status = FileStatus::Failed;
        store.write_files(&[file("/a", 2), failed], &[chunk("/a", 0, [1., 0., 0.]), chunk("/a", 1, [0., 1., 0.])]).await.unwrap();
        let check = store.check(&store.file_records().await.unwrap()).await.unwrap();
        assert!(check.is_consistent(), "{check:?}");
        // What runs stopped midway could leave: chunks without a record,
        // a record of 3 chunks over chunks 0 and 2, one of 1 chunk with
        // none, one of 1 chunk with chunk 0 twice.
        store.add_chunks(&[chunk("/orphan", 0, [0., 0., 1.])]).await.unwrap();
        store.upsert_files(&[file("/gap", 3), file("/none", 1), file("/twice", 1)]).await.unwrap();
        store.add_chunks(&[chunk("/gap", 0, [1., 0., 0.]), chunk("/gap", 2, [1., 0., 0.])]).await.unwrap();
        store.add_chunks(&[chunk("/twice", 0, [1., 0., 0.]), chunk("/twice", 0, [1., 0., 0.])]).await.unwrap();
        let check = store.check(&store.file_records().await.unwrap()).await.unwrap();
        assert!(!check.is_consistent());
        assert_eq!(check.unrecorded, ["/orphan"]);
        assert_eq!(check.mismatched, ["/gap", "/none", "/twice"]);
        assert!(check.duplicated.is_empty());
        // A second record of one file (appended as if it were new).
        store.write_files_known(&[file("/a", 2)], &[chunk("/a", 0, [1., 0., 0.]), chunk("/a", 1, [0., 1., 0.])], &|_| false).await.unwrap();
        let check = store.check(&store.file_records().await.unwrap()).await.unwrap();
        assert_eq!(check.duplicated, ["/a"]);
        store.remove_files(&["/a".to_string()]).await.unwrap();
        // Writing the files again, as the next run does, makes it whole.
        store.write_files(&[file("/gap", 1), file("/none", 1), file("/twice", 1), file("/orphan", 1)], &[chunk("/gap", 0, [1., 0., 0.]), chunk("/none", 0, [1., 0., 0.]), chunk("/twice", 0, [1., 0., 0.]), chunk("/orphan", 0, [1., 0., 0.])]).await.unwrap();
        let check = store.check(&store.file_records().await.unwrap()).await.unwrap();
        assert!(check.is_consistent(), "{check:?}");
    }

    fn doc(path: &str, kind: Kind, date_ns: i64, text: &str, vector: [f32; 3]) -> (FileRecord, ChunkRecord) {
        let mut f = file(path, 1);
        f.kind = Some(kind);
        let mut c = chunk(path, 0, vector);
        c.passage.kind = kind;
        c.date_ns = date_ns;
        c.passage.text = text.into();
        (f, c)
    }

    async fn write(store: &Store, docs: Vec<(FileRecord, ChunkRecord)>) {
        let (files, chunks): (Vec<_>, Vec<_>) = docs.into_iter().unzip();
        store.write_files(&files, &chunks).await.unwrap();
    }

    fn paths(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.passage.path.as_str()).collect()
    }

    /// Many rows that score alike (copies of one text), written in opposite
    /// orders: which of them make the cut of k must not depend on the order
    /// (benches/kill-campaign found an index rebuilt after kills answering
    /// otherwise than a clean one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ties_at_the_cut_are_broken_by_path_whatever_the_row_order() {
        let names: Vec<String> = (0..40).map(|i| format!("/copy{i:02}")).collect();
        let mut results = Vec::new();
        for reversed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_or_create(dir.path(), 3).await.unwrap();
            let mut order: Vec<&String> = names.iter().collect();
            if reversed {
                order.reverse();
            }
            // One write per row: each in its own fragment, as runs leave them.
            for name in order {
                write(&store, vec![doc(name, Kind::Text, 1, "the harbour wall was mended in spring", [0.6, 0.8, 0.])]).await;
            }
            store.ensure_indexes().await.unwrap();
            let filter = Filter::default();
            let mut got = Vec::new();
            for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
                let req = Request { text: "harbour wall", vector: Some(&[0.6, 0.8, 0.]), k: 5, mode, filter: &filter };
                got.push(paths(&store.search(&req).await.unwrap()).into_iter().map(String::from).collect::<Vec<_>>());
            }
            results.push(got);
        }
        let first_five: Vec<String> = names[..5].to_vec();
        for (mode, got) in results[0].iter().enumerate() {
            assert_eq!(got, &first_five, "mode {mode}, rows in path order");
        }
        assert_eq!(results[0], results[1], "rows in reverse order");
    }

    /// BM25's corpus statistics (document count, mean length, document
    /// frequencies) must be those of the rows the table holds now: an index
    /// that was kept up to date through removals ranks and scores exactly
    /// like one built afresh from what remains (benches/kill-campaign found
    /// the scores of an incrementally kept index off).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bm25_scores_after_removals_equal_a_fresh_index() {
        let words = ["harbour", "wall", "spring", "garden", "budget", "boiler", "river", "school"];
        let text = |i: usize| (0..(3 + i % 5)).map(|j| words[(i * 7 + j * 3) % words.len()]).collect::<Vec<_>>().join(" ");
        let docs = |range: std::ops::Range<usize>| range.map(|i| doc(&format!("/d{i:03}"), Kind::Text, 1, &text(i), [1., 0., 0.])).collect::<Vec<_>>();
        let kept = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(kept.path(), 3).await.unwrap();
        write(&store, docs(0..60)).await;
        store.optimize(std::time::Duration::ZERO).await.unwrap();
        // Remove a few, add a few, as a run over a changed tree does.
        let gone: Vec<String> = (0..60).step_by(30).map(|i| format!("/d{i:03}")).collect();
        store.remove_files(&gone).await.unwrap();
        write(&store, docs(60..66)).await;
        store.optimize(std::time::Duration::ZERO).await.unwrap();

        let fresh = tempfile::tempdir().unwrap();
        let clean = Store::open_or_create(fresh.path(), 3).await.unwrap();
        let remaining: Vec<_> = docs(0..66).into_iter().filter(|(f, _)| !gone.contains(&f.path)).collect();
        write(&clean, remaining).await;
        clean.optimize(std::time::Duration::ZERO).await.unwrap();

        let filter = Filter::default();
        for q in ["harbour", "garden budget", "river school wall"] {
            let req = Request { text: q, vector: None, k: 20, mode: Mode::Bm25, filter: &filter };
            let scored = |hits: Vec<Hit>| hits.into_iter().map(|h| (h.passage.path, (h.score * 1e4).round() as i64)).collect::<Vec<_>>();
            assert_eq!(scored(store.search(&req).await.unwrap()), scored(clean.search(&req).await.unwrap()), "{q}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_text_search_matches_words_in_any_script_and_sees_new_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        write(
            &store,
            vec![
                doc("/en", Kind::Markdown, 1, "The deployment failed with ERR_CONN_RESET on Mondays.", [1., 0., 0.]),
                doc("/de", Kind::Text, 1, "Die Donaudampfschifffahrtsgesellschaft fuhr los.", [0., 1., 0.]),
                doc("/zh", Kind::Text, 1, "我喜欢北京的天气。", [0., 0., 1.]),
            ],
        )
        .await;
        assert!(!store.has_text_index());
        store.ensure_indexes().await.unwrap();
        assert!(store.has_text_index());
        let filter = Filter::default();
        let bm25 = |text: &'static str| Request { text, vector: None, k: 5, mode: Mode::Bm25, filter: &filter };
        // Stemming: "deployments" and "deployment" share a stem; an error
        // code matches whole.
        assert_eq!(paths(&store.search(&bm25("deployments")).await.unwrap()), ["/en"]);
        assert_eq!(paths(&store.search(&bm25("ERR_CONN_RESET")).await.unwrap()), ["/en"]);
        assert_eq!(paths(&store.search(&bm25("Donaudampfschifffahrtsgesellschaft")).await.unwrap()), ["/de"]);
        assert_eq!(paths(&store.search(&bm25("北京")).await.unwrap()), ["/zh"]);
        assert!(store.search(&bm25("nothing-here")).await.unwrap().is_empty());
        // A row written after the index was built is found before the next
        // optimize folds it in.
        write(&store, vec![doc("/late", Kind::Markdown, 1, "A late deployment note.", [1., 0., 0.])]).await;
        let mut late = paths(&store.search(&bm25("deployment")).await.unwrap()).into_iter().map(String::from).collect::<Vec<_>>();
        late.sort();
        assert_eq!(late, ["/en", "/late"]);
        // BM25 hits get their cosine similarity when the query has a vector.
        let req = Request { text: "北京", vector: Some(&[0., 0., 1.]), k: 5, mode: Mode::Bm25, filter: &filter };
        let hits = store.search(&req).await.unwrap();
        assert!((hits[0].similarity.unwrap() - 1.0).abs() < 1e-6);
    }

    /// Hybrid reads its winners' passages after fusion, by row id: each
    /// hit must carry the passage written for its path and chunk, in every
    /// mode, when rows sit in several fragments and rewrites have deleted
    /// rows before them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_mode_returns_the_passage_written_for_each_hit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        let text = |i: usize, version: u32| format!("tide table {i} for the harbour, version {version}");
        let entry = |i: usize, version: u32| {
            let (f, mut c) = doc(&format!("/tides/{i:02}.txt"), Kind::Text, 1, &text(i, version), [1., 0.1 * i as f32, 0.]);
            c.passage.line_start = 10 * i as u32 + version;
            c.passage.line_end = c.passage.line_start + 2;
            (f, c)
        };
        // One write per file, so each sits in its own fragment; then every
        // third file rewritten, which deletes its old row.
        for i in 0..12 {
            write(&store, vec![entry(i, 1)]).await;
        }
        for i in (0..12).step_by(3) {
            write(&store, vec![entry(i, 2)]).await;
        }
        store.ensure_indexes().await.unwrap();
        let filter = Filter::default();
        for mode in [Mode::Dense, Mode::Bm25, Mode::Hybrid] {
            let req = Request { text: "harbour tide table", vector: Some(&[1., 0.3, 0.]), k: 12, mode, filter: &filter };
            let hits = store.search(&req).await.unwrap();
            assert_eq!(hits.len(), 12, "{mode:?}");
            for hit in &hits {
                let i: usize = hit.passage.path["/tides/".len().."/tides/".len() + 2].parse().unwrap();
                let version = if i % 3 == 0 { 2 } else { 1 };
                assert_eq!(hit.passage.text, text(i, version), "{mode:?}");
                assert_eq!((hit.passage.line_start, hit.passage.line_end), (10 * i as u32 + version, 10 * i as u32 + version + 2));
                assert_eq!(hit.passage.kind, Kind::Text);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn filters_apply_inside_the_search() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        // Twenty Markdown files closer to the query than any PDF, then
        // three PDFs of different dates.
        let mut docs: Vec<_> = (0..20).map(|i| doc(&format!("/notes/n{i}.md"), Kind::Markdown, 10, "quarterly report", [1., 0.01 * i as f32, 0.])).collect();
        docs.push(doc("/papers/a_1.pdf", Kind::Pdf, 100, "quarterly report", [0., 1., 0.]));
        docs.push(doc("/papers/b.pdf", Kind::Pdf, 200, "quarterly report", [0., 1., 0.1]));
        docs.push(doc("/papers/c.pdf", Kind::Pdf, 300, "quarterly report", [0., 1., 0.2]));
        write(&store, docs).await;
        store.ensure_indexes().await.unwrap();
        for mode in [Mode::Dense, Mode::Bm25, Mode::Hybrid] {
            let search = |filter: Filter| {
                let store = &store;
                async move {
                    let req = Request { text: "quarterly report", vector: Some(&[1., 0., 0.]), k: 2, mode, filter: &filter };
                    let mut p: Vec<String> = paths(&store.search(&req).await.unwrap()).into_iter().map(String::from).collect();
                    p.sort();
                    p
                }
            };
            let pdf = Filter { kinds: vec![Kind::Pdf], ..Default::default() };
            assert_eq!(search(pdf.clone()).await.len(), 2, "{mode:?}: k hits when k match");
            let dated = Filter { since_ns: Some(150), until_ns: Some(300), ..pdf };
            assert_eq!(search(dated).await, ["/papers/b.pdf"], "{mode:?}");
            // `_` in a glob is a literal underscore, not LIKE's any-character.
            let glob = Filter { path_glob: Some("*/a_?.pdf".into()), ..Default::default() };
            assert_eq!(search(glob).await, ["/papers/a_1.pdf"], "{mode:?}");
            let none = Filter { path_glob: Some("/papers/b_pdf".into()), ..Default::default() };
            assert!(search(none).await.is_empty(), "{mode:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_narrow_filter_finds_all_its_rows_through_the_ann_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 8).await.unwrap();
        // 2,000 rows around 8 axis directions; the 10 "pdf" rows all lie
        // along an axis orthogonal to the query, far from its partitions.
        let mut files = Vec::new();
        let mut chunks = Vec::new();
        for i in 0..2000u32 {
            let path = format!("/d/{i}");
            let pdf = i % 200 == 0;
            let axis = if pdf { 7 } else { (i % 7) as usize };
            let mut v = [0.05f32 * ((i % 13) as f32 / 13.0); 8];
            v[axis] = 1.0;
            let mut f = file(&path, 1);
            f.kind = Some(if pdf { Kind::Pdf } else { Kind::Markdown });
            let mut c = chunk(&path, 0, [0.; 3]);
            c.passage.kind = f.kind.unwrap();
            files.push(f);
            c.vector = v.to_vec();
            chunks.push(c);
        }
        store.write_files(&files, &chunks).await.unwrap();
        let work = store.ensure_indexes_with(0).await.unwrap();
        assert_eq!(work.vector_trained, Some(2000));
        assert!(store.has_vector_index());
        let filter = Filter { kinds: vec![Kind::Pdf], ..Default::default() };
        let q = [1., 0., 0., 0., 0., 0., 0., 0.];
        let req = Request { text: "", vector: Some(&q), k: 10, mode: Mode::Dense, filter: &filter };
        assert_eq!(store.search(&req).await.unwrap().len(), 10);
        // The index is retrained only when the table has doubled.
        assert_eq!(store.ensure_indexes_with(0).await.unwrap().vector_trained, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_keep_their_headers_and_filter_by_sender() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        let message = |key: &str, hash: &str, from: &str| Mail {
            key: key.into(),
            hash: hash.into(),
            subject: Some(format!("about {key}")),
            from: Some(from.into()),
            to: Some("me@example.org".into()),
            // 2024-03-05T13:30:00Z, counted by hand: 19787 days.
            date: Some(19787 * 86400 + 13 * 3600 + 30 * 60),
            date_rfc3339: Some("2024-03-05T14:30:00+01:00".into()),
            message_id: Some(key.into()),
        };
        let mut a = chunk("/mail/inbox", 0, [1., 0., 0.]);
        a.passage.message = Some(message("m1@x", "h1", "Zoë Müller <zoe@example.org>"));
        a.doc_hash = "h1".into();
        let mut b = chunk("/mail/inbox", 1, [0.9, 0.1, 0.]);
        b.passage.message = Some(message("m2@x", "h2", "Bob <bob@example.org>"));
        b.doc_hash = "h2".into();
        store.write_files(&[file("/mail/inbox", 2), file("/notes", 1)], &[a.clone(), b, chunk("/notes", 0, [1., 0., 0.])]).await.unwrap();
        let filter = Filter { from: Some("ZOË".into()), ..Default::default() };
        let req = Request { text: "", vector: Some(&[1., 0., 0.]), k: 5, mode: Mode::Dense, filter: &filter };
        let hits = store.search(&req).await.unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].passage.message, a.passage.message);
        // A literal % in the pattern is no wildcard.
        let filter = Filter { from: Some("%".into()), ..Default::default() };
        let req = Request { filter: &filter, ..req };
        assert!(store.search(&req).await.unwrap().is_empty());
        // Chunks come back whole, by content hash, ready to be stored again.
        let reuse = store.chunks_by_doc_hash(&["h1", "nope"]).await.unwrap();
        assert_eq!(reuse.len(), 1);
        assert_eq!(reuse["h1"], vec![a]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_by_path_and_hash_use_their_indexes_and_see_rows_written_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path(), 3).await.unwrap();
        let (a0, a1, b0) = (chunk("/a", 0, [1., 0., 0.]), chunk("/a", 1, [0., 1., 0.]), chunk("/b", 0, [0., 0., 1.]));
        store.write_files(&[file("/a", 2), file("/b", 1)], &[a0.clone(), a1, b0]).await.unwrap();
        assert_eq!(store.ensure_indexes().await.unwrap().keys_created, 2);
        assert_eq!(store.ensure_indexes().await.unwrap().keys_created, 0, "made once");
        let plan = |column: &'static str, value: &'static str| {
            let query = store.chunks.query().only_if(in_list(column, &[value]));
            async move { query.explain_plan(true).await.unwrap() }
        };
        for (column, value) in [("path", "/a"), ("doc_hash", "hash of /a")] {
            let plan = plan(column, value).await;
            assert!(plan.contains("ScalarIndexQuery"), "{column}: {plan}");
        }
        // Rows written after the indexes were built, not yet folded in,
        // are found beside the indexed ones.
        store.write_files(&[file("/c", 1)], &[chunk("/c", 0, [1., 1., 0.])]).await.unwrap();
        assert_eq!(store.doc_hashes("/c").await.unwrap(), HashSet::from(["hash of /c".to_string()]));
        let found = store.chunks_by_doc_hash(&["hash of /a", "hash of /c"]).await.unwrap();
        assert_eq!((found["hash of /a"].len(), found["hash of /c"].len()), (2, 1));
        // Rewriting and removing files through the indexes.
        store.write_files(&[file("/a", 1)], &[a0.clone()]).await.unwrap();
        store.remove_files(&["/b".to_string()]).await.unwrap();
        assert_eq!(store.counts().await.unwrap(), Counts { files: 2, failed: 0, chunks: 2 });
        store.optimize(std::time::Duration::ZERO).await.unwrap();
        assert_eq!(store.chunks_by_doc_hash(&["hash of /a"]).await.unwrap()["hash of /a"], vec![a0]);
        assert!(store.doc_hashes("/b").await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_from_before_mail_support_is_upgraded_when_written() {
        let dir = tempfile::tempdir().unwrap();
        // The chunks table as ask wrote it before message columns existed.
        let full = arrow::chunks_schema(3);
        let old: Vec<arrow_schema::Field> =
            full.fields().iter().filter(|f| !arrow::DOC_COLUMNS.contains(&f.name().as_str())).map(|f| f.as_ref().clone()).collect();
        let conn = lancedb::connect(dir.path().to_str().unwrap()).execute().await.unwrap();
        conn.create_empty_table(CHUNKS, Arc::new(arrow_schema::Schema::new(old))).execute().await.unwrap();
        conn.create_empty_table(FILES, arrow::files_schema()).execute().await.unwrap();
        let reader = Store::open(dir.path()).await.unwrap();
        assert!(!reader.doc_columns);
        let filter = Filter::default();
        let req = Request { text: "", vector: Some(&[1., 0., 0.]), k: 5, mode: Mode::Dense, filter: &filter };
        assert!(reader.search(&req).await.unwrap().is_empty(), "an old index is still searchable");
        let writer = Store::open_or_create(dir.path(), 3).await.unwrap();
        assert!(writer.doc_columns);
        writer.write_files(&[file("/a", 1)], &[chunk("/a", 0, [1., 0., 0.])]).await.unwrap();
        assert_eq!(writer.search(&req).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn opening_a_missing_index_says_where_it_looked() {
        // What happened, and where; the advice (`ask index PATH`) is the
        // binary's to give.
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(&dir.path().join("nope")).await.err().unwrap().to_string();
        assert_eq!(err, format!("no index at {}", dir.path().join("nope").display()));
    }

    #[tokio::test]
    async fn a_path_that_is_not_utf8_is_refused_by_name_never_changed() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("index");
        Store::open_or_create(&good, 3).await.unwrap();
        let bad = dir.path().join(std::ffi::OsStr::from_bytes(b"ind\xffex"));
        std::fs::rename(&good, &bad).unwrap();
        for err in [Store::open(&bad).await.err().unwrap(), Store::open_or_create(&bad, 3).await.err().unwrap()] {
            assert!(err.to_string().contains("not valid UTF-8"), "{err}");
        }
    }

    #[test]
    fn private_dirs_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b");
        create_private_dir(&target).unwrap();
        for d in [dir.path().join("a"), target] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn quotes_are_doubled_in_predicates() {
        assert_eq!(in_list("path", &["/a/it's", "/b"]), "path IN ('/a/it''s', '/b')");
    }
}
