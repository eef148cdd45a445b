//! `index.json`: which encoder and chunking an index was built with, and
//! when it was last updated. Written to a temporary file and renamed into
//! place, so a crash never leaves half a file.

use std::io::Write;
use std::path::Path;

use ask_ingest::PathKey;
use ask_embed::Backend;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// What an index was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMeta {
    /// Layout version of the index directory.
    pub format: u32,
    /// The encoder's name (its directory name).
    pub encoder: String,
    /// What computed the vectors: `candle` or `onnx` (indexes from before
    /// ONNX encoders have none, and were all built by candle).
    #[serde(default = "candle")]
    pub backend: Backend,
    /// Vector dimension.
    pub dim: usize,
    /// Chunk size in encoder tokens.
    pub chunk_tokens: usize,
    /// Chunk overlap in encoder tokens.
    pub chunk_overlap: usize,
    /// When the index was created (seconds since the epoch).
    #[serde(rename = "created_at")]
    pub created_at_s: i64,
    /// When a run last finished (seconds since the epoch).
    #[serde(rename = "indexed_at")]
    pub indexed_at_s: Option<i64>,
    /// The folders and files the index was asked to hold, each with the
    /// walk it was last indexed with: what `ask index` with no path brings
    /// up to date. Indexes from before roots were recorded have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<Root>,
    /// Paths inside a root that `ask forget` removed (path keys): the
    /// roots' walks pass over them until `ask index` names them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<PathKey>,
}

/// A folder or file an index holds, and how it is walked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Its absolute path's key.
    pub path: PathKey,
    /// Hidden files, symlinks, ignore files and the size limit.
    #[serde(flatten)]
    pub walk: ask_ingest::WalkOptions,
}

const FILE: &str = "index.json";

fn candle() -> Backend {
    Backend::Candle
}

/// An index built with one encoder, used with another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index was built with encoder {built} ({built_backend}, {built_dim} dims), not {given} ({given_backend}, {given_dim} dims)")]
pub struct EncoderMismatch {
    /// The encoder the index was built with.
    pub built: String,
    /// What computed its vectors.
    pub built_backend: Backend,
    /// Its vector dimension.
    pub built_dim: usize,
    /// The encoder given now.
    pub given: String,
    /// What computes its vectors.
    pub given_backend: Backend,
    /// Its vector dimension.
    pub given_dim: usize,
}

impl IndexMeta {
    /// Whether vectors of the encoder `name`, computed by `backend`, of
    /// `dim` dimensions, belong in this index: all three must be the
    /// index's own (an int8 ONNX export of a model is not its f32 weights).
    pub fn check_encoder(&self, name: &str, backend: Backend, dim: usize) -> Result<(), EncoderMismatch> {
        if self.encoder == name && self.backend == backend && self.dim == dim {
            return Ok(());
        }
        Err(EncoderMismatch {
            built: self.encoder.clone(),
            built_backend: self.backend,
            built_dim: self.dim,
            given: name.into(),
            given_backend: backend,
            given_dim: dim,
        })
    }

    /// Reads the metadata of the index in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<IndexMeta>, StoreError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError::Data {
                dir: dir.into(),
                message: format!("{}: {e}", path.display()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Deletes the metadata, if any.
    pub fn remove(dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Writes the metadata atomically.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
        let io = |source| StoreError::Io { path: path.clone(), source };
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("meta serialises")).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoder_matches_by_name_and_dimension() {
        let meta = IndexMeta {
            format: 1,
            encoder: "all-MiniLM-L6-v2".into(),
            backend: Backend::Candle,
            dim: 384,
            chunk_tokens: 256,
            chunk_overlap: 32,
            created_at_s: 0,
            indexed_at_s: None,
            roots: Vec::new(),
            forgotten: Vec::new(),
        };
        assert_eq!(meta.check_encoder("all-MiniLM-L6-v2", Backend::Candle, 384), Ok(()));
        let err = meta.check_encoder("all-mpnet-base-v2", Backend::Candle, 768).unwrap_err();
        assert_eq!(err.to_string(), "index was built with encoder all-MiniLM-L6-v2 (candle, 384 dims), not all-mpnet-base-v2 (candle, 768 dims)");
        assert!(meta.check_encoder("all-MiniLM-L6-v2", Backend::Candle, 768).is_err(), "same name, other dimension");
        assert!(meta.check_encoder("all-MiniLM-L6-v2", Backend::Onnx, 384).is_err(), "same name, other backend");
    }

    #[test]
    fn round_trip_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(IndexMeta::load(dir.path()).unwrap(), None);
        let meta = IndexMeta {
            format: 1,
            encoder: "enc".into(),
            backend: Backend::Onnx,
            dim: 3,
            chunk_tokens: 256,
            chunk_overlap: 32,
            created_at_s: 1,
            indexed_at_s: Some(2),
            roots: vec![Root {
                path: PathKey::of(Path::new("/home/me/notes")),
                walk: ask_ingest::WalkOptions { hidden: true, max_file_size: 10, ..Default::default() },
            }],
            forgotten: vec![PathKey::of(Path::new("/home/me/notes/private"))],
        };
        meta.save(dir.path()).unwrap();
        assert_eq!(IndexMeta::load(dir.path()).unwrap(), Some(meta));
        // An index from before ONNX encoders was built by candle.
        std::fs::write(
            dir.path().join(FILE),
            r#"{"format":1,"encoder":"all-MiniLM-L6-v2","dim":384,"chunk_tokens":256,"chunk_overlap":32,"created_at":1,"indexed_at":2}"#,
        )
        .unwrap();
        let old = IndexMeta::load(dir.path()).unwrap().unwrap();
        assert_eq!(old.backend, Backend::Candle);
        // ... and recorded no roots, and forgot nothing.
        assert_eq!(old.roots, []);
        assert!(old.forgotten.is_empty());
    }
}
