//! What the two tables hold, as Rust values: file records, passages,
//! chunks to store, search hits, and what `ask status` counts and checks.

use ask_ingest::{Kind, Mail, PathKey};

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
    pub path: PathKey,
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
    pub path: PathKey,
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
    pub unrecorded: Vec<PathKey>,
    /// Recorded files whose chunks are not exactly chunks 0..n of the
    /// record's n (some missing, repeated or beyond n).
    pub mismatched: Vec<PathKey>,
    /// Files recorded more than once.
    pub duplicated: Vec<PathKey>,
}

impl Check {
    /// Nothing found.
    pub fn is_consistent(&self) -> bool {
        self.unrecorded.is_empty() && self.mismatched.is_empty() && self.duplicated.is_empty()
    }
}
