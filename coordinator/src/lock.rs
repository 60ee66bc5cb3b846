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
    /// Wait until the token is durable where the backend keeps it: before
    /// any journal names it or any store sees it (a token lost in a crash
    /// would be handed out again). A backend that stores it durably before
    /// the guard exists returns at once.
    fn durable(&self) -> Result<(), String> {
        Ok(())
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
    /// The counter's write, in a thread of its own: its two fsyncs overlap
    /// with what the holder does next (the plan's observation) instead of
    /// preceding it. [`LockGuard::durable`] waits for it.
    stored: std::sync::Mutex<Stored>,
}

/// The token's durable write: in flight, then its result.
struct Stored {
    writing: Option<std::thread::JoinHandle<Result<(), LockError>>>,
    result: Result<(), String>,
}

impl FileLockGuard {
    fn settle(&self) -> Result<(), String> {
        let mut s = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = s.writing.take() {
            s.result = match h.join() {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the fencing token's write panicked".into()),
            };
        }
        s.result.clone()
    }
}

impl Drop for FileLockGuard {
    fn drop(&mut self) {
        // Before the flock goes (the file closes after this): the next
        // holder must read this token from the counter, never the one before.
        let _ = self.settle();
    }
}

impl LockGuard for FileLockGuard {
    fn token(&self) -> FencingToken {
        self.token
    }
    fn still_held(&self) -> bool {
        true
    }
    fn durable(&self) -> Result<(), String> {
        self.settle()
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
        // Only this holder writes the counter until the flock goes, and the
        // guard waits for the write before it lets go (see Drop).
        let token = FencingToken(read_token(&self.dir)? + 1);
        let dir = self.dir.clone();
        let write = std::thread::Builder::new()
            .name("fencing-token".into())
            .spawn(move || store_token(&dir, token))
            .map_err(|e| io_err(&self.dir, e))?;
        file.set_len(0).map_err(|e| io_err(&path, e))?;
        file.write_all(format!("{holder}, fencing token {token}\n").as_bytes())
            .map_err(|e| io_err(&path, e))?;
        Ok(Box::new(FileLockGuard {
            _file: file,
            token,
            stored: std::sync::Mutex::new(Stored {
                writing: Some(write),
                result: Ok(()),
            }),
        }))
    }
}

impl FileLock {
    /// The fencing token of the latest acquisition (0 before the first): a
    /// holder whose token differs has been superseded.
    pub fn current_token(&self) -> Result<FencingToken, LockError> {
        read_token(&self.dir).map(FencingToken)
    }

    /// Durably make `next` the counter's value, for a holder of the lock
    /// that needs a fresh token (the file backend's [`fresh_token`], written
    /// in the background); the caller holds the lock.
    ///
    /// [`fresh_token`]: switchyard_coordination::Coordinator::fresh_token
    pub(crate) fn store_token(&self, next: FencingToken) -> Result<(), LockError> {
        store_token(&self.dir, next)
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

/// Durably replace the counter with `next` (caller holds the lock).
fn store_token(dir: &Path, next: FencingToken) -> Result<(), LockError> {
    let next = next.get();
    let path = dir.join(TOKEN_FILE);
    let tmp = dir.join("fencing-token.tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(format!("{next}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir).map_err(|e| io_err(dir, e))
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
        // Written in the background; durable (and on disk) once asked.
        g2.durable().unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("fencing-token")).unwrap(),
            "2\n"
        );
        assert_eq!(lock.current_token().unwrap(), FencingToken(2));
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
