//! The files and folders an index holds: paths made roots, the roots it
//! records, what is new below them, and forgetting.

use super::*;

/// Paths as roots to walk: absolute, and with symlinks resolved so that
/// the same file always has the same key. A path that does not exist is
/// kept as given (made absolute): an update then forgets what was indexed
/// below it, or reports it.
pub fn roots(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| {
            let abs = std::path::absolute(p)?;
            Ok(abs.canonicalize().unwrap_or(abs))
        })
        .collect()
}

/// Roots from paths (see [`roots`]), all walked the same way.
pub fn walked(paths: &[PathBuf], walk: &WalkOptions) -> Vec<Root> {
    paths.iter().map(|p| Root { path: PathKey::of(p), walk: walk.clone() }).collect()
}

/// Folders with symlinks resolved, as the walk reports paths below them
/// (a folder that cannot be resolved is kept as given).
fn canonical(dirs: &[PathBuf]) -> Vec<PathBuf> {
    dirs.iter().map(|d| d.canonicalize().unwrap_or_else(|_| d.clone())).collect()
}

/// Files below the roots `meta` records, each walked its own way, that an
/// update would read for the first time: not in `known`, not in a folder
/// of `exclude` (ask's own) and not below a forgotten path, as an update
/// passes them over. Sorted; files over a root's size limit are not
/// counted, as an update skips them.
pub fn unindexed(meta: &IndexMeta, known: &HashMap<PathKey, FileRecord>, exclude: &[PathBuf]) -> Vec<PathKey> {
    let exclude = excluded(exclude, meta);
    let mut new = std::collections::BTreeSet::new();
    for root in &meta.roots {
        discover::walk(&[root.path.to_path()], &root.walk, |event| {
            if let WalkEvent::File(c) = event {
                let key = PathKey::of(&c.path);
                if !known.contains_key(&key) && !exclude.iter().any(|d| c.path.starts_with(d)) {
                    new.insert(key);
                }
            }
        });
    }
    new.into_iter().collect()
}

/// What an update's walk passes over: the folders of `exclude` with their
/// symlinks resolved (as the walk reports paths below them), and the paths
/// `meta` records as forgotten.
pub(super) fn excluded(exclude: &[PathBuf], meta: &IndexMeta) -> Vec<PathBuf> {
    let mut out = canonical(exclude);
    out.extend(meta.forgotten.iter().map(PathKey::to_path));
    out
}

/// The roots an index records once an update of `given` (each with
/// whether it exists) is done. A given root replaces its own entry and
/// those below it; one inside a recorded root walked the same way adds
/// nothing (that root's walk covers it), while one walked another way
/// (`--hidden` for one subfolder, say) is kept beside it, and both walks
/// then run, a file seen by either staying indexed. A given root that is
/// gone is forgotten with those below it, as its files are.
pub(super) fn record_roots(recorded: &[Root], given: &[(Root, bool)]) -> Vec<Root> {
    let mut out = recorded.to_vec();
    for (root, exists) in given {
        let covered = out.iter().any(|r| r.path != root.path && root.path.is_in(&r.path) && r.walk == root.walk);
        if *exists && covered {
            continue;
        }
        out.retain(|r| !r.path.is_in(&root.path));
        if *exists {
            out.push(root.clone());
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// What [`forget`] removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Forgotten {
    /// Files removed from the index.
    pub files: usize,
    /// Their chunks.
    pub chunks: usize,
    /// Recorded roots no longer recorded: the paths and those below them.
    pub roots: Vec<PathKey>,
    /// Paths inside a recorded root, which its walks now pass over.
    pub passed_over: Vec<PathKey>,
}

/// Removes `paths` (files or folders) and whatever is indexed below them
/// from the index in `dir`, leaving the files alone. A recorded root at
/// or below a path is no longer recorded; a path inside a root that stays
/// is recorded as forgotten, and the root's walks (`ask index` with no
/// path, `ask watch`) pass over it until `ask index` names it again
/// ([`Writer::remember`]). A path the index holds nothing of is an error,
/// and then nothing is changed. The files go first and the record last:
/// a run killed in between leaves the roots recorded, so that the next
/// `ask index` brings the files back rather than losing track of them,
/// and `forget` can be run again.
pub fn forget(dir: &Path, paths: &[PathBuf], busy: WhenBusy) -> Result<Forgotten, IndexError> {
    let _lock = IndexLock::acquire(dir, busy)?;
    let rt = ask_store::runtime().map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
    let mut meta = IndexMeta::load(dir)?.ok_or_else(|| IndexError::NoIndex(dir.to_path_buf()))?;
    let store = rt.block_on(Store::open(dir))?;
    let known = rt.block_on(store.file_records())?;
    let resolved = roots(paths).map_err(|source| StoreError::Io { path: paths.first().cloned().unwrap_or_default(), source })?;
    let keys: Vec<PathKey> = resolved.iter().map(|p| PathKey::of(p)).collect();
    let mut out = Forgotten::default();
    for ((key, path), resolved) in keys.iter().zip(paths).zip(&resolved) {
        // Inside a root, only what exists (else it is most likely a typo).
        let inside = resolved.exists() && meta.roots.iter().any(|r| key.is_in(&r.path));
        let holds = known.keys().any(|k| k.is_in(key))
            || meta.roots.iter().any(|r| r.path.is_in(key))
            || inside
            || meta.forgotten.iter().any(|f| key.is_in(f));
        if !holds {
            return Err(IndexError::NotIndexed(path.clone()));
        }
    }
    let below = |k: &PathKey| keys.iter().any(|p| k.is_in(p));
    let mut gone: Vec<PathKey> = known.keys().filter(|k| below(k)).cloned().collect();
    gone.sort();
    out.files = gone.len();
    out.chunks = gone.iter().map(|k| known[k].chunks as usize).sum();
    if !gone.is_empty() {
        rt.block_on(store.remove_files(&gone))?;
        rt.block_on(store.optimize(KEEP_VERSIONS))?;
    }
    out.roots = meta.roots.iter().filter(|r| below(&r.path)).map(|r| r.path.clone()).collect();
    meta.roots.retain(|r| !below(&r.path));
    // Forgotten paths below a path forgotten now are covered by it.
    meta.forgotten.retain(|f| !below(f) || keys.contains(f));
    for key in &keys {
        let inside = meta.roots.iter().any(|r| key.is_in(&r.path));
        let covered = meta.forgotten.iter().any(|f| key.is_in(f));
        if inside && !covered {
            meta.forgotten.push(key.clone());
            out.passed_over.push(key.clone());
        }
    }
    meta.forgotten.sort();
    meta.save(dir)?;
    Ok(out)
}
