//! One writer per index: an advisory lock on `<index>/lock`.
//!
//! The kernel drops the lock when the process dies, however it dies, so a
//! killed run never leaves a stale lock behind. Readers (`ask search`) take
//! no lock: LanceDB's versioned commits give them a consistent snapshot.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another process (pid {pid}) is writing to the index at {dir}")]
    Busy {
        /// The index directory.
        dir: PathBuf,
        /// The pid recorded by the holder, if readable.
        pid: String,
    },
    /// The lock file could not be opened or locked.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A held index lock, released on drop.
#[derive(Debug)]
pub struct IndexLock {
    _file: File,
}

/// How [`IndexLock::acquire`] meets a lock another process holds.
pub enum WhenBusy<'a> {
    /// Returns [`LockError::Busy`].
    Fail,
    /// Calls the function with the holder's pid, then waits for the lock.
    Wait(&'a mut dyn FnMut(&str)),
}

impl IndexLock {
    /// Takes the lock on the index in `dir`; `busy` says what to do when
    /// another process holds it.
    pub fn acquire(dir: &Path, busy: WhenBusy) -> Result<IndexLock, LockError> {
        let path = dir.join("lock");
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                file.read_to_string(&mut pid).ok();
                let pid = match pid.trim() {
                    "" => "unknown".to_owned(),
                    p => p.to_owned(),
                };
                match busy {
                    WhenBusy::Fail => return Err(LockError::Busy { dir: dir.into(), pid }),
                    WhenBusy::Wait(waiting) => {
                        waiting(&pid);
                        file.lock().map_err(io)?;
                    }
                }
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(IndexLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = IndexLock::acquire(dir.path(), WhenBusy::Fail).unwrap();
        let err = IndexLock::acquire(dir.path(), WhenBusy::Fail).unwrap_err();
        assert!(matches!(&err, LockError::Busy { pid, .. } if *pid == std::process::id().to_string()), "{err}");
        drop(first);
        let mut waited = false;
        IndexLock::acquire(dir.path(), WhenBusy::Wait(&mut |_| waited = true)).unwrap();
        assert!(!waited, "a free lock is taken without waiting");
    }
}
