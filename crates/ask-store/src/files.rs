//! The index directory on disk: whether it holds an index, deleting its
//! data for a rebuild, creating it private, its size.

use std::path::Path;

use crate::{meta, StoreError, Result, CHUNKS, FILES};

/// True when a LanceDB index exists at `dir`.
pub fn exists(dir: &Path) -> bool {
    dir.join(format!("{FILES}.lance")).exists()
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
