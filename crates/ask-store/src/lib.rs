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
#![forbid(unsafe_code)]

mod arrow;
mod error;
mod files;
mod indexes;
pub mod lock;
pub mod meta;
mod records;
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

pub use error::{Result, StoreError};
pub use files::{create_private_dir, disk_usage, exists, remove_index_data};
pub use lock::{IndexLock, LockError, WhenBusy};
pub use records::{Check, ChunkRecord, Counts, FileRecord, FileStatus, Hit, Passage, Span};
pub use meta::{EncoderMismatch, IndexMeta, Root};
pub use indexes::IndexWork;
pub use search::{Filter, Mode, Query, Request};
/// Bytes [`Caches`] keep of index files (full-text and vector indexes):
/// far more than 100,000 chunks need (tens of MB), and bounded, since
/// entries of versions a running `ask index` has replaced stay until they
/// are evicted (LanceDB's own default is 6 GiB).
pub const INDEX_CACHE_BYTES: usize = 1 << 30;
/// Bytes [`Caches`] keep of file metadata (LanceDB's default: 1 GiB).
pub const METADATA_CACHE_BYTES: usize = 256 << 20;

/// A runtime for the store's async calls, as ask runs them: two workers
/// (LanceDB's reads and writes overlap their I/O on them), timers and I/O on.
/// For a synchronous caller that owns its store; async callers bring their own.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

/// What a long-running process keeps of the indexes' files between the
/// stores it opens with [`Store::open_shared`] (LanceDB's session, which
/// stays inside this crate), bounded by [`INDEX_CACHE_BYTES`] and
/// [`METADATA_CACHE_BYTES`]. Cloning shares them.
#[derive(Clone)]
pub struct Caches(Arc<lancedb::Session>);

impl Caches {
    /// Empty caches.
    pub fn new() -> Caches {
        Caches(Arc::new(lancedb::Session::new(INDEX_CACHE_BYTES, METADATA_CACHE_BYTES, Default::default())))
    }
}

impl Default for Caches {
    fn default() -> Caches {
        Caches::new()
    }
}
pub use ask_ingest::{Kind, Mail, PathKey};

const CHUNKS: &str = "chunks";
const FILES: &str = "files";

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
    /// what `caches` already hold of its files (the full-text and vector
    /// indexes, file metadata) rather than reading them again: for a
    /// process that serves many requests and opens the index for each, so
    /// that it sees what a running `ask index` commits.
    pub async fn open_shared(dir: &Path, caches: &Caches) -> Result<Store> {
        Store::open_with(dir, Some(&caches.0)).await
    }

    async fn open_with(dir: &Path, session: Option<&Arc<lancedb::Session>>) -> Result<Store> {
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
    pub async fn file_records(&self) -> Result<HashMap<PathKey, FileRecord>> {
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
    pub async fn check(&self, records: &HashMap<PathKey, FileRecord>) -> Result<Check> {
        let mut numbers: HashMap<PathKey, Vec<u32>> = HashMap::new();
        for batch in self.rows(self.chunks.query().select(Select::columns(&["path", "chunk"]))).await? {
            let paths = arrow::string_column(&batch, "path").map_err(|m| self.data(m))?;
            let chunks = arrow::u32_column(&batch, "chunk").map_err(|m| self.data(m))?;
            for (path, chunk) in paths.iter().zip(chunks.iter()) {
                let (Some(path), Some(chunk)) = (path, chunk) else { return Err(self.data("a chunk without path or number".into())) };
                numbers.entry(PathKey::stored(path.to_owned())).or_default().push(chunk);
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
                        check.duplicated.push(PathKey::stored(path.to_owned()));
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
    pub async fn counts_agree(&self, records: &HashMap<PathKey, FileRecord>) -> Result<bool> {
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
    pub async fn write_files_known(&self, files: &[FileRecord], chunks: &[ChunkRecord], recorded: &dyn Fn(&PathKey) -> bool) -> Result<()> {
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
    pub async fn doc_hashes(&self, path: &PathKey) -> Result<HashSet<String>> {
        if !self.doc_columns {
            return Ok(HashSet::new());
        }
        let query = self.chunks.query().only_if(in_list("path", &[path.as_str()])).select(Select::columns(&["doc_hash"]));
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
            if let Some(first) = chunks.iter().map(|c| c.passage.path.clone()).min() {
                chunks.retain(|c| c.passage.path == first);
            }
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
    pub async fn remove_files(&self, paths: &[PathKey]) -> Result<()> {
        let paths: Vec<&str> = paths.iter().map(PathKey::as_str).collect();
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

#[cfg(test)]
mod tests;
