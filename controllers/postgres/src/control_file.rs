//! PostgreSQL's control file (`global/pg_control`), read in-process when
//! the member's data directory is on this host.
//!
//! The deferred fence needs the old primary's final position: the location
//! of its shutdown checkpoint, which `pg_controldata` prints once the server
//! has stopped. The same bytes are in `global/pg_control`, and they are
//! there *before* the server has finished stopping: the checkpointer writes
//! `state = shut down` with the shutdown checkpoint's location as soon as
//! that checkpoint is in the WAL. By then every client backend has exited
//! (the postmaster starts the shutdown checkpoint only once they have) and
//! no new session is admitted ("the database system is shutting down"), so
//! nothing can be acknowledged any more; what is left of the stop — the
//! walsenders handing the last record to the standbys, every child exiting,
//! the pid file going — can run off the critical path. Reading the file
//! also saves a hook process (`sh`, `pg_controldata`) per read.
//!
//! Only used when the directory is provably the member's own: the member's
//! address is on loopback, and the `postmaster.pid` in the directory the
//! server reported (`data_directory`) names that directory and the
//! member's port. Anything else — another host, a directory this process
//! may not read, an unknown control file version, a bad checksum — is
//! `None`, and the fence reads `pg_controldata` through the hooks as before.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use switchyard_controller::crc32c;
use switchyard_topology::Member;

/// `DBState::DB_SHUTDOWNED` (stable since PostgreSQL 9.0).
const DB_SHUTDOWNED: i32 = 1;
/// `DBState::DB_IN_PRODUCTION`.
const DB_IN_PRODUCTION: i32 = 6;

/// What the fence needs from `pg_control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControlFile {
    /// `state` (`pg_controldata`: "Database cluster state").
    state: i32,
    /// `checkPoint` ("Latest checkpoint location").
    pub(crate) checkpoint: u64,
    /// `checkPointCopy.ThisTimeLineID` ("Latest checkpoint's TimeLineID").
    pub(crate) timeline: u64,
}

impl ControlFile {
    /// The file's bytes, checked: a control file version whose leading
    /// fields sit where PostgreSQL 11 and later put them (`pg_control_version`
    /// ≥ 1100: `state` at 16, `checkPoint` at 32, `checkPointCopy` at 40 with
    /// its timeline at 48), and a CRC-32C over everything before the `crc`
    /// field that matches it. The `crc` field's offset differs between
    /// versions, so it is looked for (4-aligned, after the fields read
    /// here): a chance match of a 32-bit checksum is negligible, and
    /// without any match the bytes are not trusted (a torn read, another
    /// layout).
    pub(crate) fn parse(b: &[u8]) -> Option<ControlFile> {
        let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
        let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
        let version = u32_at(8)?;
        if !(1100..2000).contains(&version) {
            return None;
        }
        let crc_ok = (56..b.len().min(1024) - 4)
            .step_by(4)
            .any(|o| u32_at(o) == Some(crc32c(&b[..o])));
        if !crc_ok {
            return None;
        }
        Some(ControlFile {
            state: u32_at(16)? as i32,
            checkpoint: u64_at(32)?,
            timeline: u64::from(u32_at(48)?),
        })
    }

    /// A clean shutdown: the latest checkpoint is the shutdown checkpoint,
    /// the last record of the WAL.
    pub(crate) fn shut_down(&self) -> bool {
        self.state == DB_SHUTDOWNED
    }

    /// Running as a primary.
    fn in_production(&self) -> bool {
        self.state == DB_IN_PRODUCTION
    }
}

/// A running primary's data directory on this host.
#[derive(Debug, Clone)]
pub(crate) struct LocalDataDir {
    dir: PathBuf,
}

impl LocalDataDir {
    /// `data_directory` as `m`'s server reported it, if it is provably that
    /// server's and readable here (see the module docs), the server runs
    /// as a primary, and its control file parses.
    pub(crate) fn of_running_primary(m: &Member, data_directory: &str) -> Option<LocalDataDir> {
        let host = m.hostname()?;
        let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
        if !loopback {
            return None;
        }
        let dir = PathBuf::from(data_directory);
        // postmaster.pid: pid, data directory, start time, port, ...
        let pid_file = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
        let lines: Vec<&str> = pid_file.lines().collect();
        let same_dir = lines
            .get(1)
            .is_some_and(|d| Path::new(d.trim()) == dir.as_path());
        let same_port = lines
            .get(3)
            .and_then(|p| p.trim().parse::<u16>().ok())
            .is_some_and(|p| Some(p) == m.port());
        if !same_dir || !same_port {
            return None;
        }
        let local = LocalDataDir { dir };
        local.control_file()?.in_production().then_some(local)
    }

    /// The control file as it is now, `None` when unreadable or unchecked.
    pub(crate) fn control_file(&self) -> Option<ControlFile> {
        ControlFile::parse(&std::fs::read(self.dir.join("global/pg_control")).ok()?)
    }

    /// `standby.signal` is in place (whatever starts the server next starts
    /// it in recovery).
    pub(crate) fn standby_signal(&self) -> bool {
        self.dir.join("standby.signal").exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control file shaped like PostgreSQL 15's (`crc` at 288).
    fn file(state: i32, checkpoint: u64, timeline: u32) -> Vec<u8> {
        let mut b = vec![0u8; 8192];
        b[8..12].copy_from_slice(&1300u32.to_le_bytes());
        b[16..20].copy_from_slice(&state.to_le_bytes());
        b[32..40].copy_from_slice(&checkpoint.to_le_bytes());
        b[48..52].copy_from_slice(&timeline.to_le_bytes());
        let crc = crc32c(&b[..288]);
        b[288..292].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn reads_state_checkpoint_and_timeline_of_a_checked_file() {
        let cf = ControlFile::parse(&file(1, 0x302_AF80, 2)).unwrap();
        assert!(cf.shut_down());
        assert_eq!((cf.checkpoint, cf.timeline), (0x302_AF80, 2));
        assert!(ControlFile::parse(&file(6, 1, 1)).unwrap().in_production());
    }

    #[test]
    fn refuses_a_torn_or_foreign_file() {
        let mut torn = file(1, 0x302_AF80, 2);
        torn[33] ^= 1;
        assert_eq!(ControlFile::parse(&torn), None);
        let mut old = file(1, 0x302_AF80, 2);
        old[8..12].copy_from_slice(&1002u32.to_le_bytes());
        assert_eq!(ControlFile::parse(&old), None);
        assert_eq!(ControlFile::parse(&[0u8; 20]), None);
    }
}
