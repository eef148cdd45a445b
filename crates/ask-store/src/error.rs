//! The store's error type.

use std::path::PathBuf;

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
