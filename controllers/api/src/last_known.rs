//! Last-known state: what a controller saw the last time its store had a
//! reachable primary, kept as a file in the coordinator's state directory.
//!
//! A forced failover is decided after the primary died, often by a process
//! that never saw it alive (a fresh `switchyard failover --forced`). Without
//! evidence it can only refuse under a lag bound; with the record every
//! earlier observation left (`switchyard state`, a checkpoint, a monitor
//! running `state` every minute) it can estimate what promoting a standby
//! loses and say on what basis and how old that basis is.
//!
//! Each store has one file, `<state dir>/last-known/<store>.json`, replaced
//! atomically (temporary file + rename) on every observation that saw a
//! primary. It is evidence, not a journal: it is not fsynced, and a missing
//! or unreadable file only means "no evidence".

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A value and the wall-clock time (ms since the Unix epoch) it was observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded<T> {
    /// When the observation was made (coordinator's clock).
    pub at_ms: u64,
    /// What was observed.
    pub value: T,
}

impl<T> Recorded<T> {
    /// Record `value` as observed now.
    pub fn now(value: T) -> Self {
        Recorded {
            at_ms: now_ms(),
            value,
        }
    }

    /// Milliseconds since the observation (0 if the clock went backwards).
    pub fn age_ms(&self) -> u64 {
        now_ms().saturating_sub(self.at_ms)
    }
}

/// Where one store's last-known state lives (or nowhere, for a controller
/// built without a state directory: tests, libraries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastKnown {
    path: Option<PathBuf>,
}

impl LastKnown {
    /// Keep nothing on disk.
    pub fn none() -> Self {
        LastKnown { path: None }
    }

    /// [`LastKnown::in_dir`] when a state directory is given, else
    /// [`LastKnown::none`] (what `from_store_in` constructors take).
    pub fn in_state_dir(dir: Option<&Path>, store: &str) -> Self {
        dir.map_or_else(LastKnown::none, |d| LastKnown::in_dir(d, store))
    }

    /// `<dir>/last-known/<store>.json` (characters outside `[A-Za-z0-9._-]`
    /// in the store name become `_`).
    pub fn in_dir(dir: &Path, store: &str) -> Self {
        let file: String = store
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        LastKnown {
            path: Some(dir.join("last-known").join(format!("{file}.json"))),
        }
    }

    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Replace the record. Failures are logged and otherwise ignored: losing
    /// evidence makes a later forced failover more cautious, never less.
    pub fn save<T: Serialize>(&self, rec: &Recorded<T>) {
        let Some(path) = &self.path else { return };
        let write = || -> std::io::Result<()> {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
            let text = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!(file = %path.display(), error = %e, "cannot keep the last-known state");
        }
    }

    /// The last record, if there is a readable one.
    pub fn load<T: DeserializeOwned>(&self) -> Option<Recorded<T>> {
        let path = self.path.as_ref()?;
        let text = std::fs::read(path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable last-known state");
                None
            }
        }
    }
}

/// A store's last-known state as one controller holds it: this process's
/// newest record, and the state directory's (another process may have
/// written a newer one since).
#[derive(Debug)]
pub struct Remembered<T> {
    place: LastKnown,
    mine: std::sync::Mutex<Option<Recorded<T>>>,
}

impl<T: Serialize + DeserializeOwned + Clone> Remembered<T> {
    /// Remember records in `place` (or only in memory, for [`LastKnown::none`]).
    pub fn new(place: LastKnown) -> Self {
        Remembered {
            place,
            mine: std::sync::Mutex::new(None),
        }
    }

    /// Where records are kept.
    pub fn place(&self) -> &LastKnown {
        &self.place
    }

    /// Record `value` as observed now, in memory and in the state directory.
    pub fn record(&self, value: T) {
        let rec = Recorded::now(value);
        self.place.save(&rec);
        *self.mine.lock().unwrap_or_else(|e| e.into_inner()) = Some(rec);
    }

    /// The newer of this process's record and the state directory's.
    pub fn newest(&self) -> Option<Recorded<T>> {
        let mine = self.mine.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match (mine, self.place.load::<T>()) {
            (Some(a), Some(b)) => Some(if b.at_ms > a.at_ms { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A duration in ms for people: `850 ms`, `12.3 s`, `4 min 10 s`.
pub fn age_text(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ages() {
        let dir = std::env::temp_dir().join(format!("sy-lastknown-{}", std::process::id()));
        let lk = LastKnown::in_dir(&dir, "orders/eu");
        assert!(lk.path().unwrap().ends_with("last-known/orders_eu.json"));
        assert_eq!(lk.load::<u32>(), None);
        let rec = Recorded {
            at_ms: now_ms() - 1500,
            value: 7u32,
        };
        lk.save(&rec);
        let back = lk.load::<u32>().unwrap();
        assert_eq!(back, rec);
        assert!(back.age_ms() >= 1500);
        std::fs::write(lk.path().unwrap(), "not json").unwrap();
        assert_eq!(lk.load::<u32>(), None);
        LastKnown::none().save(&rec);
        assert_eq!(LastKnown::none().load::<u32>(), None);
        // A newer record written by another process wins over this one's.
        let mem = Remembered::new(lk.clone());
        mem.record(1u32);
        assert_eq!(mem.newest().unwrap().value, 1);
        lk.save(&Recorded {
            at_ms: now_ms() + 60_000,
            value: 2u32,
        });
        assert_eq!(mem.newest().unwrap().value, 2);
        assert_eq!(Remembered::<u32>::new(LastKnown::none()).newest(), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(age_text(850), "850 ms");
        assert_eq!(age_text(12_340), "12.3 s");
        assert_eq!(age_text(250_000), "4 min 10 s");
    }
}
