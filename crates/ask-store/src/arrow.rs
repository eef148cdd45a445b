//! Arrow schemas of the two tables and conversions to and from records.

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::{ChunkRecord, FileRecord, FileStatus, Kind, Mail, Passage, PathKey};

pub(crate) const HIT_COLUMNS: [&str; 7] = ["path", "chunk", "kind", "text", "line_start", "line_end", "page"];

/// Columns added for documents inside files (mail messages) and for reuse
/// of embeddings by content hash. Indexes made before them get them as
/// all-null columns when next opened for writing; readers do without.
pub(crate) const DOC_COLUMNS: [&str; 7] = ["doc_hash", "msg_key", "subject", "sender", "recipients", "sent", "message_id"];

pub(crate) fn doc_fields() -> Vec<Field> {
    DOC_COLUMNS.iter().map(|name| Field::new(*name, DataType::Utf8, true)).collect()
}

pub(crate) fn chunks_schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("chunk", DataType::UInt32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("line_start", DataType::UInt32, false),
        Field::new("line_end", DataType::UInt32, false),
        Field::new("page", DataType::UInt32, true),
        Field::new("byte_start", DataType::UInt64, false),
        Field::new("byte_end", DataType::UInt64, false),
        Field::new("mtime_ns", DataType::Int64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim as i32),
            false,
        ),
    ]
    .into_iter()
    .chain(doc_fields())
    .collect::<Vec<_>>()))
}

pub(crate) fn files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("mtime_ns", DataType::Int64, false),
        Field::new("hash", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("chunks", DataType::UInt32, false),
        Field::new("indexed_at", DataType::Int64, false),
    ]))
}

pub(crate) fn vector_dim(schema: &Schema) -> Option<usize> {
    match schema.field_with_name("vector").ok()?.data_type() {
        DataType::FixedSizeList(_, n) => Some(*n as usize),
        _ => None,
    }
}

pub(crate) fn chunks_batch(dim: usize, chunks: &[ChunkRecord]) -> Result<RecordBatch, ArrowError> {
    let mut vectors = FixedSizeListBuilder::with_capacity(
        Float32Builder::with_capacity(chunks.len() * dim),
        dim as i32,
        chunks.len(),
    )
    .with_field(Arc::new(Field::new("item", DataType::Float32, true)));
    for c in chunks {
        if c.vector.len() != dim {
            return Err(ArrowError::InvalidArgumentError(format!(
                "vector of {} dimensions for a {dim}-dimensional index",
                c.vector.len()
            )));
        }
        vectors.values().append_slice(&c.vector);
        vectors.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.passage.path.as_str()))),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.passage.chunk))),
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.passage.kind.as_str()))),
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.passage.text.as_str()))),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.passage.line_start))),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.passage.line_end))),
        Arc::new(UInt32Array::from_iter(chunks.iter().map(|c| c.passage.page))),
        Arc::new(UInt64Array::from_iter_values(chunks.iter().map(|c| c.byte_start))),
        Arc::new(UInt64Array::from_iter_values(chunks.iter().map(|c| c.byte_end))),
        Arc::new(Int64Array::from_iter_values(chunks.iter().map(|c| c.date_ns))),
        Arc::new(vectors.finish()),
        Arc::new(StringArray::from_iter(chunks.iter().map(|c| Some(c.doc_hash.as_str())))),
        message_column(chunks, |m| Some(m.key.as_str())),
        message_column(chunks, |m| m.subject.as_deref()),
        message_column(chunks, |m| m.from.as_deref()),
        message_column(chunks, |m| m.to.as_deref()),
        message_column(chunks, |m| m.date_rfc3339.as_deref()),
        message_column(chunks, |m| m.message_id.as_deref()),
    ];
    RecordBatch::try_new(chunks_schema(dim), columns)
}

/// One message field of every chunk (null for chunks of other documents).
fn message_column(chunks: &[ChunkRecord], field: impl Fn(&Mail) -> Option<&str>) -> ArrayRef {
    Arc::new(StringArray::from_iter(chunks.iter().map(|c| c.passage.message.as_ref().and_then(&field))))
}

pub(crate) fn files_batch(files: &[FileRecord]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.path.as_str()))),
        Arc::new(UInt64Array::from_iter_values(files.iter().map(|f| f.size))),
        Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.mtime_ns))),
        Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.hash.as_str()))),
        Arc::new(StringArray::from_iter(files.iter().map(|f| f.kind.map(Kind::as_str)))),
        Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.status.as_str()))),
        Arc::new(StringArray::from_iter(files.iter().map(|f| f.error.as_deref()))),
        Arc::new(UInt32Array::from_iter_values(files.iter().map(|f| f.chunks))),
        Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.indexed_at_ms))),
    ];
    RecordBatch::try_new(files_schema(), columns)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("missing column {name}"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has type {:?}", batch.column_by_name(name).unwrap().data_type()))
}

/// A u32 column of a batch, by name.
pub(crate) fn u32_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a UInt32Array, String> {
    column::<UInt32Array>(batch, name)
}

/// A string column of a batch, by name.
pub(crate) fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    column::<StringArray>(batch, name)
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_owned())
}

/// The message of row `i`, when the batch has the message columns and the
/// row is a message. Its date in seconds is read back from its RFC 3339
/// form, its hash from the row's `doc_hash`.
fn read_message(batch: &RecordBatch, i: usize) -> Result<Option<Mail>, String> {
    if batch.column_by_name("msg_key").is_none() {
        return Ok(None);
    }
    let col = |name: &str| column::<StringArray>(batch, name);
    let Some(key) = opt_str(col("msg_key")?, i) else { return Ok(None) };
    let date_rfc3339 = opt_str(col("sent")?, i);
    let hash = match batch.column_by_name("doc_hash") {
        Some(_) => opt_str(col("doc_hash")?, i).unwrap_or_default(),
        None => String::new(),
    };
    Ok(Some(Mail {
        key,
        hash,
        subject: opt_str(col("subject")?, i),
        from: opt_str(col("sender")?, i),
        to: opt_str(col("recipients")?, i),
        date: date_rfc3339.as_deref().and_then(Mail::parse_date),
        date_rfc3339,
        message_id: opt_str(col("message_id")?, i),
    }))
}

/// The columns every read of chunks needs ([`HIT_COLUMNS`]).
struct HitColumns<'a> {
    path: &'a StringArray,
    chunk: &'a UInt32Array,
    kind: &'a StringArray,
    text: &'a StringArray,
    line_start: &'a UInt32Array,
    line_end: &'a UInt32Array,
    page: &'a UInt32Array,
}

impl<'a> HitColumns<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self, String> {
        Ok(HitColumns {
            path: column(batch, "path")?,
            chunk: column(batch, "chunk")?,
            kind: column(batch, "kind")?,
            text: column(batch, "text")?,
            line_start: column(batch, "line_start")?,
            line_end: column(batch, "line_end")?,
            page: column(batch, "page")?,
        })
    }

    /// Row `i` as a passage.
    fn passage(&self, batch: &RecordBatch, i: usize) -> Result<Passage, String> {
        let kind = self.kind.value(i);
        Ok(Passage {
            path: PathKey::stored(self.path.value(i).to_owned()),
            chunk: self.chunk.value(i),
            kind: Kind::parse(kind).ok_or_else(|| format!("unknown kind '{kind}'"))?,
            text: self.text.value(i).to_owned(),
            line_start: self.line_start.value(i),
            line_end: self.line_end.value(i),
            page: (!self.page.is_null(i)).then(|| self.page.value(i)),
            message: read_message(batch, i)?,
        })
    }
}

/// Chunk rows as passages with their byte ranges ([`HIT_COLUMNS`], the
/// message columns when present, `byte_start`, `byte_end`).
pub(crate) fn read_spans(batch: &RecordBatch) -> Result<Vec<crate::Span>, String> {
    let c = HitColumns::new(batch)?;
    let byte_start = column::<UInt64Array>(batch, "byte_start")?;
    let byte_end = column::<UInt64Array>(batch, "byte_end")?;
    (0..batch.num_rows())
        .map(|i| Ok(crate::Span { passage: c.passage(batch, i)?, byte_start: byte_start.value(i), byte_end: byte_end.value(i) }))
        .collect()
}

/// Whole chunk rows, vectors included (for reusing their embeddings).
pub(crate) fn read_chunks(batch: &RecordBatch, dim: usize) -> Result<Vec<ChunkRecord>, String> {
    let c = HitColumns::new(batch)?;
    let byte_start = column::<UInt64Array>(batch, "byte_start")?;
    let byte_end = column::<UInt64Array>(batch, "byte_end")?;
    let mtime = column::<Int64Array>(batch, "mtime_ns")?;
    let doc_hash = column::<StringArray>(batch, "doc_hash")?;
    let vectors = read_vectors(batch, dim)?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(ChunkRecord {
                passage: c.passage(batch, i)?,
                byte_start: byte_start.value(i),
                byte_end: byte_end.value(i),
                date_ns: mtime.value(i),
                vector: vectors[i * dim..(i + 1) * dim].to_vec(),
                doc_hash: opt_str(doc_hash, i).unwrap_or_default(),
            })
        })
        .collect()
}

pub(crate) fn read_files(batch: &RecordBatch) -> Result<Vec<FileRecord>, String> {
    let path = column::<StringArray>(batch, "path")?;
    let size = column::<UInt64Array>(batch, "size")?;
    let mtime = column::<Int64Array>(batch, "mtime_ns")?;
    let hash = column::<StringArray>(batch, "hash")?;
    let kind = column::<StringArray>(batch, "kind")?;
    let status = column::<StringArray>(batch, "status")?;
    let error = column::<StringArray>(batch, "error")?;
    let chunks = column::<UInt32Array>(batch, "chunks")?;
    let indexed_at = column::<Int64Array>(batch, "indexed_at")?;
    (0..batch.num_rows())
        .map(|i| {
            let status_name = status.value(i);
            let kind_name = opt_str(kind, i);
            Ok(FileRecord {
                path: PathKey::stored(path.value(i).to_owned()),
                size: size.value(i),
                mtime_ns: mtime.value(i),
                hash: hash.value(i).to_owned(),
                kind: match kind_name {
                    Some(k) => Some(Kind::parse(&k).ok_or_else(|| format!("unknown kind '{k}'"))?),
                    None => None,
                },
                status: FileStatus::parse(status_name).ok_or_else(|| format!("unknown file status '{status_name}'"))?,
                error: opt_str(error, i),
                chunks: chunks.value(i),
                indexed_at_ms: indexed_at.value(i),
            })
        })
        .collect()
}

/// A ranked row: what fusion, tie-breaking and feedback need, and the
/// passage when the list read it. Hybrid's candidate lists leave the
/// passage out and `Store::hits` reads it for the `k` rows that make the
/// cut: at 100,000 chunks that took about a quarter off hybrid's time
/// (docs/design.md, Retrieval), while single-mode lists, whose rows are the
/// answer, read it at once and save the second read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ranked {
    /// LanceDB's `_rowid`, valid for the table version that was searched.
    pub(crate) row: u64,
    pub(crate) path: String,
    pub(crate) chunk: u32,
    /// The ranking score (higher is better).
    pub(crate) score: f32,
    /// Cosine similarity to the query, when known.
    pub(crate) similarity: Option<f32>,
    /// The stored vector, when the list was asked for vectors; else empty.
    pub(crate) vector: Vec<f32>,
    /// The passage, when the list was asked for it.
    pub(crate) passage: Option<crate::Passage>,
}

/// Which score column a result batch carries.
#[derive(Clone, Copy)]
pub(crate) enum Score {
    /// `_distance` from a cosine vector search.
    Distance,
    /// `_score` from a BM25 full-text search.
    Bm25,
}

/// The columns a ranked list always reads: a row's identity. Lists read
/// [`HIT_COLUMNS`] too when their rows are the answer; hybrid's candidate
/// lists do not, and the winners' passages are read afterwards by row id.
pub(crate) const CANDIDATE_COLUMNS: [&str; 2] = ["path", "chunk"];

/// Ranked rows of a search result batch: `_rowid`, [`CANDIDATE_COLUMNS`],
/// the score column, with `dim` the vector, and with `passages` the whole
/// passage.
pub(crate) fn read_candidates(
    batch: &RecordBatch,
    score: Score,
    dim: Option<usize>,
    passages: bool,
) -> Result<Vec<Ranked>, String> {
    let row = column::<UInt64Array>(batch, "_rowid")?;
    let path = column::<StringArray>(batch, "path")?;
    let chunk = column::<UInt32Array>(batch, "chunk")?;
    let scores = column::<Float32Array>(batch, match score {
        Score::Distance => "_distance",
        Score::Bm25 => "_score",
    })?;
    let vectors = match dim {
        Some(dim) => Some((read_vectors(batch, dim)?, dim)),
        None => None,
    };
    let whole = if passages { Some(HitColumns::new(batch)?) } else { None };
    (0..batch.num_rows())
        .map(|i| {
            let (score, similarity) = match score {
                // Cosine distance is 1 - cosine similarity.
                Score::Distance => (1.0 - scores.value(i), Some(1.0 - scores.value(i))),
                Score::Bm25 => (scores.value(i), None),
            };
            Ok(Ranked {
                row: row.value(i),
                path: path.value(i).to_owned(),
                chunk: chunk.value(i),
                score,
                similarity,
                vector: vectors.as_ref().map(|(v, dim)| v[i * dim..(i + 1) * dim].to_vec()).unwrap_or_default(),
                passage: whole.as_ref().map(|c| c.passage(batch, i)).transpose()?,
            })
        })
        .collect()
}

/// The passages of a batch of whole hit rows ([`HIT_COLUMNS`], the message
/// columns when present, `_rowid`), each with its row id.
pub(crate) fn read_passages(batch: &RecordBatch) -> Result<Vec<(u64, Passage)>, String> {
    let c = HitColumns::new(batch)?;
    let row = column::<UInt64Array>(batch, "_rowid")?;
    (0..batch.num_rows()).map(|i| Ok((row.value(i), c.passage(batch, i)?))).collect()
}

/// The `vector` column, flattened (`dim` values per row).
pub(crate) fn read_vectors(batch: &RecordBatch, dim: usize) -> Result<Vec<f32>, String> {
    let list = column::<FixedSizeListArray>(batch, "vector")?;
    let values = list.values().as_any().downcast_ref::<Float32Array>().ok_or("vector values are not f32")?;
    if list.value_length() as usize != dim {
        return Err(format!("vectors of {} dimensions, expected {dim}", list.value_length()));
    }
    let start = list.offset() * dim;
    Ok(values.values()[start..start + list.len() * dim].to_vec())
}
