//! One file read, hashed, extracted and chunked, with what the index
//! already stores of it.

use super::*;

/// One document of a file (the file itself, or one message of a mailbox), chunked.
pub(super) struct Part {
    /// Content hash of the document: its chunks are reused when the index
    /// already holds a document with this hash.
    pub(super) hash: String,
    /// The document's own date (a message's sent date), ns.
    pub(super) date_ns: Option<i64>,
    pub(super) message: Option<ask_ingest::Mail>,
    pub(super) chunks: Vec<Chunk>,
    /// Left unchunked because the index already held this document for
    /// the same file (a message of a mailbox that grew): its stored chunks
    /// are reused.
    pub(super) stored: bool,
}

/// What the producer made of one file.
pub(super) enum Prepared {
    /// Extracted and chunked: needs embedding, or reuse of stored chunks.
    Chunks { record: FileRecord, parts: Vec<Part>, is_new: bool },
    /// Same bytes as recorded: only size/mtime are updated.
    Touched(FileRecord),
    /// Recorded without chunks: failed (with its reason) or skipped (not a document).
    NoChunks { record: FileRecord },
    /// Could not even be read; nothing is recorded so the next run retries.
    Unreadable { path: PathKey, reason: String },
}

/// A file's content as [`prepare`] reads it.
pub(super) enum Content {
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
    pub(super) fn read(path: &Path, max_size: u64) -> std::io::Result<Content> {
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
pub(super) fn prepare(
    c: Candidate,
    known: &HashMap<PathKey, FileRecord>,
    chunker: &Chunker,
    max_size: u64,
    stored_docs: &dyn Fn(&PathKey) -> HashSet<String>,
) -> Prepared {
    let path = PathKey::of(&c.path);
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
pub(super) fn part_of(kind: kind::Kind, doc: extract::Document, file_hash: &str, chunker: &Chunker, stored: &HashSet<String>) -> Part {
    let known = doc.mail.as_ref().is_some_and(|m| stored.contains(&m.hash));
    let chunks = if known { Vec::new() } else { chunker.chunk(kind, &doc) };
    let (hash, date_ns) = match &doc.mail {
        Some(m) => (m.hash.clone(), m.date_ns()),
        None => (file_hash.to_owned(), None),
    };
    let message = doc.mail;
    Part { hash, date_ns, message, chunks, stored: known }
}
