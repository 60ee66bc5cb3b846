//! One execution at a time, and a fencing token for every holder.
//!
//! A lock alone is not a fence: a coordinator that lost its lock must not keep
//! issuing promotions. So every acquisition bumps a monotonically increasing
//! [`FencingToken`] that travels with each operation ([`switchyard_controller::OpContext`])
//! and into the journal, and the driver asks [`LockGuard::still_held`] before
//! journaling each intent. [`FileLock`] is the embedded default (an exclusive
//! `flock` on `<state-dir>/lock`); Consul sessions or etcd leases implement
//! the same traits.

use crate::journal::sync_dir;
use fs4::fs_std::FileExt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use switchyard_controller::FencingToken;

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another coordinator holds it.
    #[error("another execution holds the lock ({holder}); wait for it, or `switchyard resume`/`abort` it once it stopped")]
    Held {
        /// What the holder wrote about itself (pid, command, start time).
        holder: String,
    },
    /// The lock backend failed.
    #[error("lock {path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

/// A held lock. Dropping it releases the lock.
pub trait LockGuard: Send + Sync {
    /// The fencing token of this acquisition (strictly greater than every
    /// earlier one).
    fn token(&self) -> FencingToken;
    /// Whether the lock is still ours (a lease-based backend can lose it).
    /// Asked before each intent is journaled.
    fn still_held(&self) -> bool;
    /// A signal that fires the moment the lock is lost, so the driver
    /// abandons operations in flight instead of finding out at the next
    /// intent. `None` for a lock that is never lost while the process lives
    /// (the `flock`).
    fn lost_signal(&self) -> Option<tokio_util::sync::CancellationToken> {
        None
    }
}

/// A lock backend.
pub trait Lock: Send + Sync {
    /// Take the lock without waiting; `holder` describes us to whoever is refused.
    fn try_acquire(&self, holder: &str) -> Result<Box<dyn LockGuard>, LockError>;
}

/// An exclusive `flock` on `<state-dir>/lock`, with the fencing token's
/// counter in `<state-dir>/fencing-token` (versions before the rename kept it
/// in `<state-dir>/epoch`, which is still read).
#[derive(Debug, Clone)]
pub struct FileLock {
    dir: PathBuf,
}

impl FileLock {
    /// A lock in `state_dir` (created if missing).
    pub fn new(state_dir: &Path) -> Result<Self, LockError> {
        fs::create_dir_all(state_dir).map_err(|e| io_err(state_dir, e))?;
        Ok(FileLock {
            dir: state_dir.to_path_buf(),
        })
    }
}

fn io_err(path: &Path, source: io::Error) -> LockError {
    LockError::Io {
        path: path.display().to_string(),
        source,
    }
}

struct FileLockGuard {
    // Held for its flock; the kernel releases it when the file closes,
    // including when the process is killed.
    _file: File,
    token: FencingToken,
}

impl LockGuard for FileLockGuard {
    fn token(&self) -> FencingToken {
        self.token
    }
    fn still_held(&self) -> bool {
        true
    }
}

impl Lock for FileLock {
    fn try_acquire(&self, holder: &str) -> Result<Box<dyn LockGuard>, LockError> {
        let path = self.dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                return Err(LockError::Held {
                    holder: if who.trim().is_empty() {
                        "holder unknown".into()
                    } else {
                        who.trim().to_string()
                    },
                });
            }
            Err(e) => return Err(io_err(&path, e)),
        }
        let token = bump_token(&self.dir)?;
        file.set_len(0).map_err(|e| io_err(&path, e))?;
        file.write_all(format!("{holder}, fencing token {token}\n").as_bytes())
            .map_err(|e| io_err(&path, e))?;
        Ok(Box::new(FileLockGuard { _file: file, token }))
    }
}

impl FileLock {
    /// The fencing token of the latest acquisition (0 before the first): a
    /// holder whose token differs has been superseded.
    pub fn current_token(&self) -> Result<FencingToken, LockError> {
        read_token(&self.dir).map(FencingToken)
    }

    /// Bump the fencing token again, for a holder of the lock that needs a
    /// fresh one (the file backend's [`fresh_token`]); the caller holds the
    /// lock.
    ///
    /// [`fresh_token`]: switchyard_coordination::Coordinator::fresh_token
    pub(crate) fn bump_token(&self) -> Result<FencingToken, LockError> {
        bump_token(&self.dir)
    }

    /// Whether some process holds the lock now. Probes with a shared
    /// `flock`, which an exclusive holder refuses, and bumps no token.
    pub fn is_held(&self) -> Result<bool, LockError> {
        let path = self.dir.join("lock");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path, e)),
        };
        match FileExt::try_lock_shared(&file) {
            Ok(true) => {
                let _ = FileExt::unlock(&file);
                Ok(false)
            }
            Ok(false) => Ok(true),
            Err(e) => Err(io_err(&path, e)),
        }
    }
}

/// The counter's file.
const TOKEN_FILE: &str = "fencing-token";
/// Where versions before the rename kept it.
const LEGACY_TOKEN_FILE: &str = "epoch";

/// The latest token handed out: the higher of the counter and the legacy
/// file, so a state directory written by an older version never hands out a
/// token again.
fn read_token(dir: &Path) -> Result<u64, LockError> {
    Ok(read_counter(dir, TOKEN_FILE)?.max(read_counter(dir, LEGACY_TOKEN_FILE)?))
}

fn read_counter(dir: &Path, name: &str) -> Result<u64, LockError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| {
            io_err(
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad fencing token counter: {e}"),
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Read, increment and durably store the token (caller holds the lock).
fn bump_token(dir: &Path) -> Result<FencingToken, LockError> {
    let next = read_token(dir)? + 1;
    let path = dir.join(TOKEN_FILE);
    let tmp = dir.join("fencing-token.tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(format!("{next}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir).map_err(|e| io_err(dir, e))?;
    Ok(FencingToken(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_and_token_grows() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::new(dir.path()).unwrap();
        let g1 = lock.try_acquire("pid 1").unwrap();
        assert_eq!(g1.token(), FencingToken(1));
        // flock is per open file description, so a second open in the same
        // process is refused just like another process would be.
        match lock.try_acquire("pid 2") {
            Err(LockError::Held { holder }) => {
                assert!(holder.contains("pid 1, fencing token 1"), "{holder}")
            }
            other => panic!("expected Held, got {:?}", other.map(|g| g.token())),
        }
        drop(g1);
        let g2 = lock.try_acquire("pid 3").unwrap();
        assert_eq!(g2.token(), FencingToken(2));
    }

    /// A state directory an older version used keeps its counter in
    /// `epoch`: the next token is above it, never a repeat.
    #[test]
    fn a_legacy_counter_is_continued() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("epoch"), "41\n").unwrap();
        let lock = FileLock::new(dir.path()).unwrap();
        assert_eq!(lock.current_token().unwrap(), FencingToken(41));
        let g = lock.try_acquire("pid 1").unwrap();
        assert_eq!(g.token(), FencingToken(42));
        drop(g);
        assert_eq!(
            fs::read_to_string(dir.path().join("fencing-token")).unwrap(),
            "42\n"
        );
        assert_eq!(lock.try_acquire("pid 2").unwrap().token(), FencingToken(43));
    }
}
