//! The walk of an update: what to read and what to remove.

use super::*;

impl Writer {
    /// Walks the roots: what to read, and what to remove.
    pub(super) fn scan(&self, roots: &[Root], known: &HashMap<PathKey, FileRecord>, progress: &mut dyn Progress, summary: &mut Summary) -> Scan {
        let mut work: Vec<Candidate> = Vec::new();
        let mut seen: HashSet<PathKey> = HashSet::new();
        let mut unreadable_dirs: Vec<PathBuf> = Vec::new();
        let mut walk_roots = Vec::new();
        let mut removed: Vec<PathKey> = Vec::new();
        let exclude = excluded(&self.options.exclude, &self.meta);
        for root in roots {
            let path = root.path.to_path();
            if path.exists() {
                walk_roots.push((path, root));
            } else {
                // A root that is gone: forget what was indexed below it, or
                // report it if nothing was (most likely a typo).
                let below: Vec<PathKey> = known.keys().filter(|k| k.is_in(&root.path)).cloned().collect();
                if below.is_empty() {
                    progress.event(Event::Failed(&format!("{}: no such file or directory", path.display())));
                    summary.failed += 1;
                } else {
                    removed.extend(below);
                }
            }
        }
        // One walk per root, each its own way; a file that two roots reach
        // (one inside the other) is taken once.
        for (path, root) in &walk_roots {
            let max_size = root.walk.max_file_size;
            discover::walk(std::slice::from_ref(path), &root.walk, |event| match event {
                WalkEvent::File(c) if exclude.iter().any(|d| c.path.starts_with(d)) => {}
                WalkEvent::File(c) => {
                    let key = PathKey::of(&c.path);
                    let unchanged = known.get(&key).is_some_and(|r| r.size == c.size && r.mtime_ns == c.mtime_ns);
                    if !seen.insert(key) {
                        return;
                    }
                    if unchanged {
                        summary.unchanged += 1;
                    } else {
                        work.push(c);
                    }
                    if seen.len() % 1024 == 0 {
                        progress.event(Event::Scanning { files: seen.len() });
                    }
                }
                WalkEvent::TooLarge(c) => {
                    summary.skipped += 1;
                    let why = format!("{}: {} bytes is over the size limit ({max_size} bytes)", c.path.display(), c.size);
                    progress.event(Event::Skipped(&why));
                }
                WalkEvent::Error { path, message } => {
                    progress.event(Event::Failed(&message));
                    summary.failed += 1;
                    if let Some(p) = path {
                        unreadable_dirs.push(p);
                    }
                }
            });
        }
        let walk_roots: Vec<&PathKey> = walk_roots.iter().map(|(_, r)| &r.path).collect();
        let unreadable_dirs: Vec<PathKey> = unreadable_dirs.iter().map(|d| PathKey::of(d)).collect();
        removed.extend(
            known
                .keys()
                .filter(|k| !seen.contains(*k))
                .filter(|k| walk_roots.iter().any(|r| k.is_in(r)))
                .filter(|k| !unreadable_dirs.iter().any(|d| k.is_in(d)))
                .cloned(),
        );
        removed.sort();
        removed.dedup();
        progress.event(Event::Reading { files: work.len() });
        Scan { work, removed }
    }
}

/// What a walk found to do.
pub(super) struct Scan {
    /// New or changed files, to read.
    pub(super) work: Vec<Candidate>,
    /// Known files gone from disk.
    pub(super) removed: Vec<PathKey>,
}
