//! Finding the files to index, with the `ignore` crate (ripgrep's walker):
//! .gitignore/.ignore honoured even outside a git repository, hidden files
//! skipped unless asked for, symlinks followed only on request and loops
//! detected, oversized files set aside before they are read (all but
//! mailboxes, which are read a message at a time). Maildir++
//! subfolders (`~/Maildir/.Sent`) are hidden folders by name but mail by
//! nature, so they are walked like visible ones.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// How to walk. Serialised as an index records it for each of its roots
/// (see `ask_store::IndexMeta::roots`), a field it lacks taking its default.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WalkOptions {
    /// Include hidden files and directories.
    pub hidden: bool,
    /// Follow symbolic links (loops are detected and reported).
    pub follow_links: bool,
    /// Do not read .gitignore, .ignore and git's exclude files.
    pub no_ignore: bool,
    /// Files larger than this many bytes are skipped, but for mbox files
    /// (whose messages are held to it one by one).
    pub max_file_size: u64,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions { hidden: false, follow_links: false, no_ignore: false, max_file_size: 50_000_000 }
    }
}

/// Marks a byte of a file name that is not UTF-8 in a [`PathKey`].
pub const NOT_UTF8: char = '\u{FFFD}';

/// A path as the index stores it and looks files up by: the path itself
/// when it is UTF-8, as nearly every path is. A byte that is not UTF-8 (a
/// Latin-1 name copied from an old disk, say) is written as [`NOT_UTF8`]
/// and its two hex digits (`café.txt` in Latin-1 is `caf\u{FFFD}E9.txt`),
/// and a [`NOT_UTF8`] in the name as two of them, so that two files never
/// share a key: replacing such bytes by U+FFFD alone, as a lossy conversion
/// does, gave `caf\xE9.txt` and `caf\xE8.txt` one key, and each run
/// indexed one of them over the other.
///
/// A type of its own, so that a key is never a display string or a path
/// made with `to_string_lossy`, and a path is never compared to a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PathKey(String);

impl PathKey {
    /// The key of path `p`.
    pub fn of(p: &Path) -> PathKey {
        #[cfg(unix)]
        {
            use std::fmt::Write;
            use std::os::unix::ffi::OsStrExt;
            let bytes = p.as_os_str().as_bytes();
            if let Ok(s) = std::str::from_utf8(bytes) {
                if !s.contains(NOT_UTF8) {
                    return PathKey(s.to_owned());
                }
            }
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c == NOT_UTF8 {
                        out.push(NOT_UTF8);
                    }
                    out.push(c);
                }
                for b in chunk.invalid() {
                    let _ = write!(out, "{NOT_UTF8}{b:02X}");
                }
            }
            PathKey(out)
        }
        #[cfg(not(unix))]
        PathKey(p.to_string_lossy().into_owned())
    }

    /// A key as the index stored it (made by [`PathKey::of`] when it was
    /// written).
    pub fn stored(key: String) -> PathKey {
        PathKey(key)
    }

    /// The key's text, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's text, as stored.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The path the key was made from.
    pub fn to_path(&self) -> PathBuf {
        let key = self.0.as_str();
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            if !key.contains(NOT_UTF8) {
                return PathBuf::from(key);
            }
            let mut bytes = Vec::with_capacity(key.len());
            let mut chars = key.chars().peekable();
            while let Some(c) = chars.next() {
                if c == NOT_UTF8 {
                    if chars.peek() == Some(&NOT_UTF8) {
                        chars.next();
                    } else {
                        let hex: String = chars.clone().take(2).collect();
                        if hex.len() == 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            bytes.push(u8::from_str_radix(&hex, 16).expect("two hex digits"));
                            chars.nth(1);
                            continue;
                        }
                    }
                }
                bytes.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            PathBuf::from(std::ffi::OsString::from_vec(bytes))
        }
        #[cfg(not(unix))]
        PathBuf::from(key)
    }

    /// Whether the key names `dir` or a path below it (component-wise, so
    /// /a/bc is not in /a/b).
    pub fn is_in(&self, dir: &PathKey) -> bool {
        Path::new(&self.0).starts_with(&dir.0)
    }
}

impl std::fmt::Display for PathKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key is its stored text: `key == "/notes/a.md"`.
impl PartialEq<str> for PathKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PathKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::borrow::Borrow<str> for PathKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A regular file found by the walk, with the metadata that decides whether
/// it changed since the last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The path as found (absolute when the root was).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// One thing the walk reports.
#[derive(Debug)]
pub enum WalkEvent {
    /// A file to consider.
    File(Candidate),
    /// A file over the size limit.
    TooLarge(Candidate),
    /// Something could not be read. `path` is the file or directory involved,
    /// when known: files previously indexed below it must not be treated as
    /// deleted.
    Error {
        /// The path the error is about.
        path: Option<PathBuf>,
        /// What went wrong, for the user.
        message: String,
    },
}

/// Reads the metadata the index compares against.
pub fn candidate(path: &Path, meta: &std::fs::Metadata) -> Candidate {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Candidate { path: path.to_path_buf(), size: meta.len(), mtime_ns }
}

/// Walks `roots` and calls `f` for every file and every error, in a stable
/// (sorted by file name) order.
pub fn walk(roots: &[PathBuf], opts: &WalkOptions, mut f: impl FnMut(WalkEvent)) {
    let Some((first, rest)) = roots.split_first() else { return };
    let mut builder = ignore::WalkBuilder::new(first);
    for root in rest {
        builder.add(root);
    }
    let respect = !opts.no_ignore;
    let hidden = opts.hidden;
    builder
        // Hidden entries are filtered here rather than by `ignore`, so that
        // Maildir++ subfolders can be let through.
        .hidden(false)
        .filter_entry(move |e| hidden || !is_hidden(e.file_name()) || is_maildir_subfolder(e))
        .follow_links(opts.follow_links)
        .ignore(respect)
        .git_ignore(respect)
        .git_global(respect)
        .git_exclude(respect)
        .parents(respect)
        .require_git(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    for entry in builder.build() {
        match entry {
            Err(err) => f(WalkEvent::Error { path: error_path(&err), message: err.to_string() }),
            Ok(entry) => {
                let Some(file_type) = entry.file_type() else { continue };
                // Without --follow, a symlink is neither a file nor a directory to us.
                if !file_type.is_file() {
                    continue;
                }
                match entry.metadata() {
                    Ok(meta) => {
                        let c = candidate(entry.path(), &meta);
                        // A mailbox is read a message at a time: the limit
                        // applies to each message, not to the whole.
                        if c.size > opts.max_file_size && !crate::kind::is_mbox_file(&c.path) {
                            f(WalkEvent::TooLarge(c));
                        } else {
                            f(WalkEvent::File(c));
                        }
                    }
                    Err(err) => f(WalkEvent::Error {
                        path: Some(entry.path().to_path_buf()),
                        message: err.to_string(),
                    }),
                }
            }
        }
    }
}

/// A name starting with a dot, as `ignore` and ls treat hidden.
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// A Maildir++ subfolder: a folder `.Name` holding `cur`, `new` and `tmp`,
/// inside a Maildir (which holds them too).
fn is_maildir_subfolder(e: &ignore::DirEntry) -> bool {
    let is_maildir = |dir: &Path| ["cur", "new", "tmp"].iter().all(|d| dir.join(d).is_dir());
    e.file_type().is_some_and(|t| t.is_dir()) && is_maildir(e.path()) && e.path().parent().is_some_and(is_maildir)
}

fn error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } => error_path(err),
        ignore::Error::WithLineNumber { err, .. } => error_path(err),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(root: &Path, opts: &WalkOptions) -> (Vec<String>, usize) {
        let mut files = Vec::new();
        let mut errors = 0;
        walk(&[root.to_path_buf()], opts, |e| match e {
            WalkEvent::File(c) => {
                files.push(c.path.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            }
            WalkEvent::TooLarge(_) => {}
            WalkEvent::Error { .. } => errors += 1,
        });
        (files, errors)
    }

    #[cfg(unix)]
    #[test]
    fn path_keys_keep_utf8_paths_and_tell_other_bytes_apart() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let p = |b: &[u8]| PathBuf::from(OsStr::from_bytes(b));
        let key = |p: &Path| PathKey::of(p).into_string();
        assert_eq!(key(Path::new("/home/me/notes/café.md")), "/home/me/notes/café.md");
        let e9 = p(b"/docs/caf\xe9.txt");
        let e8 = p(b"/docs/caf\xe8.txt");
        assert_eq!(key(&e9), "/docs/caf\u{FFFD}E9.txt");
        assert_ne!(key(&e9), key(&e8));
        // A name that holds the marker itself cannot pass for a byte.
        let lookalike = Path::new("/docs/caf\u{FFFD}E9.txt");
        assert_ne!(key(lookalike), key(&e9));
        for path in [e9, e8, lookalike.to_path_buf(), p(b"/\xff\xfe/\xc3"), p("/a/\u{FFFD}\u{FFFD}b".as_bytes())] {
            assert_eq!(PathKey::of(&path).to_path(), path, "{}", path.display());
        }
        // A key keeps the path's directories, so a file below a root has a
        // key below the root's key.
        let root = p(b"/d\xe9");
        assert!(PathKey::of(&root.join("x.txt")).is_in(&PathKey::of(&root)));
        assert!(!PathKey::of(Path::new("/a/bc")).is_in(&PathKey::of(Path::new("/a/b"))));
    }

    #[test]
    fn honours_gitignore_without_git_and_hides_dotfiles() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join(".gitignore"), "skip.txt\n").unwrap();
        fs::write(root.join("keep.txt"), "a").unwrap();
        fs::write(root.join("skip.txt"), "b").unwrap();
        fs::create_dir(root.join(".secret")).unwrap();
        fs::write(root.join(".secret/x.txt"), "c").unwrap();
        let (files, _) = names(root, &WalkOptions::default());
        assert_eq!(files, vec!["keep.txt"]);
        let all = WalkOptions { hidden: true, no_ignore: true, ..Default::default() };
        let (files, _) = names(root, &all);
        assert_eq!(files, vec![".gitignore", ".secret/x.txt", "keep.txt", "skip.txt"]);
    }

    #[test]
    fn maildir_plus_subfolders_are_walked_other_hidden_folders_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["Maildir/cur", "Maildir/new", "Maildir/tmp", "Maildir/.Sent/cur", "Maildir/.Sent/new", "Maildir/.Sent/tmp"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        // Hidden, but not a Maildir: one lacks tmp/, one is not inside a Maildir.
        fs::create_dir_all(root.join("Maildir/.cache/cur")).unwrap();
        fs::create_dir_all(root.join("Maildir/.cache/new")).unwrap();
        for d in ["cur", "new", "tmp"] {
            fs::create_dir_all(root.join(".mail").join(d)).unwrap();
        }
        for f in ["Maildir/cur/1:2,S", "Maildir/.Sent/cur/2:2,S", "Maildir/.Sent/.hidden", "Maildir/.cache/cur/3", ".mail/cur/4"] {
            fs::write(root.join(f), "x").unwrap();
        }
        let (files, _) = names(root, &WalkOptions::default());
        assert_eq!(files, vec!["Maildir/.Sent/cur/2:2,S", "Maildir/cur/1:2,S"]);
        let all = WalkOptions { hidden: true, ..Default::default() };
        assert_eq!(names(root, &all).0.len(), 5);
    }

    #[test]
    fn symlink_loop_terminates_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("a")).unwrap();
        fs::write(root.join("a/f.txt"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("a/loop")).unwrap();
        let follow = WalkOptions { follow_links: true, ..Default::default() };
        let (files, errors) = names(root, &follow);
        assert_eq!(files, vec!["a/f.txt"]);
        assert_eq!(errors, 1, "the loop is reported once");
        let (files, errors) = names(root, &WalkOptions::default());
        assert_eq!((files, errors), (vec!["a/f.txt".to_string()], 0));
    }

    #[test]
    fn large_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("big.txt"), vec![b'a'; 100]).unwrap();
        let mut big = 0;
        let opts = WalkOptions { max_file_size: 10, ..Default::default() };
        walk(&[dir.path().to_path_buf()], &opts, |e| {
            if let WalkEvent::TooLarge(c) = e {
                assert_eq!(c.size, 100);
                big += 1;
            }
        });
        assert_eq!(big, 1);
    }
}
