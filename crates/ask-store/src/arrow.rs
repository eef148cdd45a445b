//! Arrow schemas of the two tables and conversions to and from records.

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::{ChunkRecord, FileRecord, Hit};

pub(crate) const HIT_COLUMNS: [&str; 7] = ["path", "chunk", "kind", "text", "line_start", "line_end", "page"];

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
    ]))
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
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.path.as_str()))),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.chunk))),
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.kind.as_str()))),
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.text.as_str()))),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.line_start))),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.line_end))),
        Arc::new(UInt32Array::from_iter(chunks.iter().map(|c| c.page))),
        Arc::new(UInt64Array::from_iter_values(chunks.iter().map(|c| c.byte_start))),
        Arc::new(UInt64Array::from_iter_values(chunks.iter().map(|c| c.byte_end))),
        Arc::new(Int64Array::from_iter_values(chunks.iter().map(|c| c.mtime_ns))),
        Arc::new(vectors.finish()),
    ];
    RecordBatch::try_new(chunks_schema(dim), columns)
}

pub(crate) fn files_batch(files: &[FileRecord]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.path.as_str()))),
        Arc::new(UInt64Array::from_iter_values(files.iter().map(|f| f.size))),
        Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.mtime_ns))),
        Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.hash.as_str()))),
        Arc::new(StringArray::from_iter(files.iter().map(|f| f.kind.as_deref()))),
        Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.status.as_str()))),
        Arc::new(StringArray::from_iter(files.iter().map(|f| f.error.as_deref()))),
        Arc::new(UInt32Array::from_iter_values(files.iter().map(|f| f.chunks))),
        Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.indexed_at))),
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

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_owned())
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
    Ok((0..batch.num_rows())
        .map(|i| FileRecord {
            path: path.value(i).to_owned(),
            size: size.value(i),
            mtime_ns: mtime.value(i),
            hash: hash.value(i).to_owned(),
            kind: opt_str(kind, i),
            status: status.value(i).to_owned(),
            error: opt_str(error, i),
            chunks: chunks.value(i),
            indexed_at: indexed_at.value(i),
        })
        .collect())
}

/// Which score column a result batch carries.
#[derive(Clone, Copy)]
pub(crate) enum Score {
    /// `_distance` from a cosine vector search.
    Distance,
    /// `_score` from a BM25 full-text search.
    Bm25,
}

pub(crate) fn read_hits(batch: &RecordBatch, score: Score) -> Result<Vec<Hit>, String> {
    let path = column::<StringArray>(batch, "path")?;
    let chunk = column::<UInt32Array>(batch, "chunk")?;
    let kind = column::<StringArray>(batch, "kind")?;
    let text = column::<StringArray>(batch, "text")?;
    let line_start = column::<UInt32Array>(batch, "line_start")?;
    let line_end = column::<UInt32Array>(batch, "line_end")?;
    let page = column::<UInt32Array>(batch, "page")?;
    let scores = column::<Float32Array>(batch, match score {
        Score::Distance => "_distance",
        Score::Bm25 => "_score",
    })?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let (score, similarity) = match score {
                // Cosine distance is 1 - cosine similarity.
                Score::Distance => (1.0 - scores.value(i), Some(1.0 - scores.value(i))),
                Score::Bm25 => (scores.value(i), None),
            };
            Hit {
                path: path.value(i).to_owned(),
                chunk: chunk.value(i),
                kind: kind.value(i).to_owned(),
                text: text.value(i).to_owned(),
                line_start: line_start.value(i),
                line_end: line_end.value(i),
                page: (!page.is_null(i)).then(|| page.value(i)),
                score,
                similarity,
            }
        })
        .collect())
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
