//! The simulated Consul state store: KV entries, sessions, lock-delays and
//! the Raft index, with the semantics of Consul's `agent/consul/state`
//! (kvs.go, session.go, txn.go). Pure data: the HTTP layer and the TTL
//! reaper call into it under one lock, and every write gets the next index,
//! as a Raft log entry would.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Consul's cap on a session's lock-delay (`structs.MaxLockDelay`).
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// Session TTL bounds (`session_ttl_min` default, `structs.SessionTTLMax`).
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(10);
/// See [`SESSION_TTL_MIN`].
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(86_400);
/// Consul invalidates a session `TTL × 2` after its last renewal: the TTL is
/// a lower bound (`structs.SessionTTLMultiplier`).
pub const SESSION_TTL_MULTIPLIER: u32 = 2;

/// One KV entry (`structs.DirEntry`).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Index of the write that created it.
    pub create_index: u64,
    /// Index of the last write that changed it.
    pub modify_index: u64,
    /// Times it was acquired as a lock.
    pub lock_index: u64,
    /// Opaque client flags.
    pub flags: u64,
    /// The value.
    pub value: Vec<u8>,
    /// Session holding the lock, if any.
    pub session: Option<String>,
}

/// What happens to a session's locks when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Locks are released (the keys stay, without a session).
    Release,
    /// Locked keys are deleted.
    Delete,
}

impl Behavior {
    /// As Consul spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// One session (`structs.Session`).
#[derive(Debug, Clone)]
pub struct Session {
    /// UUID.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Node it belongs to.
    pub node: String,
    /// Node checks it is tied to (only `serfHealth` exists here).
    pub node_checks: Vec<String>,
    /// Lock-delay applied to its locks when it is invalidated.
    pub lock_delay: Duration,
    /// Release or delete.
    pub behavior: Behavior,
    /// The TTL as the client wrote it (`""`: none).
    pub ttl: String,
    /// Parsed TTL.
    pub ttl_dur: Option<Duration>,
    /// When the TTL timer fires (`TTL × 2` after the last renewal).
    pub expires: Option<Instant>,
    /// Index that created it.
    pub create_index: u64,
    /// Index that last changed it.
    pub modify_index: u64,
}

/// One transaction operation on KV (`structs.TxnKVOp`).
#[derive(Debug, Clone, Default)]
pub struct KvOp {
    /// `set`, `cas`, `lock`, …
    pub verb: String,
    /// Key.
    pub key: String,
    /// Value (decoded).
    pub value: Vec<u8>,
    /// Flags.
    pub flags: u64,
    /// Index for `cas`, `check-index`, `delete-cas`.
    pub index: u64,
    /// Session for `lock`, `unlock`, `check-session`.
    pub session: String,
}

/// The whole store.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The last Raft index used.
    pub index: u64,
    /// KV entries by key.
    pub kv: BTreeMap<String, Entry>,
    /// Delete index by deleted key (Consul's tombstones: a list's index never
    /// slides back when its newest key is deleted).
    pub tombstones: BTreeMap<String, u64>,
    /// Index of the last KV write (the `kvs` table index).
    pub kv_table_index: u64,
    /// Sessions by id.
    pub sessions: HashMap<String, Session>,
    /// Index of the last session write.
    pub session_table_index: u64,
    /// Lock-delay expiry by key.
    pub lock_delay: HashMap<String, Instant>,
}

impl State {
    /// A fresh store; index 1 is the "cluster bootstrapped" entry, so every
    /// index a client sees is at least 1.
    pub fn new() -> State {
        State {
            index: 1,
            kv_table_index: 1,
            session_table_index: 1,
            ..State::default()
        }
    }

    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// `kvsSetTxn`: write `key`, keeping its session unless `session` is
    /// `Some` (lock/unlock set it), no-op (index unchanged) if nothing changes.
    fn set_at(
        &mut self,
        idx: u64,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: Option<Option<String>>,
    ) {
        let existing = self.kv.get(key).cloned();
        let session = match session {
            Some(s) => s,
            None => existing.as_ref().and_then(|e| e.session.clone()),
        };
        let mut e = Entry {
            create_index: existing.as_ref().map_or(idx, |e| e.create_index),
            modify_index: idx,
            lock_index: existing.as_ref().map_or(0, |e| e.lock_index),
            flags,
            value,
            session,
        };
        if let Some(ex) = &existing {
            if ex.value == e.value && ex.flags == e.flags && ex.session == e.session {
                return;
            }
            e.lock_index = ex.lock_index;
        }
        self.tombstones.remove(key);
        self.kv.insert(key.to_string(), e);
        self.kv_table_index = idx;
    }

    fn delete_at(&mut self, idx: u64, key: &str) {
        if self.kv.remove(key).is_some() {
            self.tombstones.insert(key.to_string(), idx);
            self.kv_table_index = idx;
        }
    }

    /// The index a single-key read reports (Consul: the KV table's index).
    pub fn kv_get_index(&self) -> u64 {
        self.kv_table_index.max(1)
    }

    /// Entries under `prefix` and the index a list reports: the highest
    /// modify index among them or among tombstones under the prefix, else
    /// the table index (`kvsListTxn`).
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<(String, Entry)>) {
        let entries: Vec<(String, Entry)> = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        let mut lindex = entries
            .iter()
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        if prefix.is_empty() {
            lindex = self.kv_table_index;
        } else {
            let g = self
                .tombstones
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, i)| *i)
                .max()
                .unwrap_or(0);
            lindex = lindex.max(g);
        }
        let idx = if lindex != 0 {
            lindex
        } else {
            self.kv_table_index
        };
        (idx.max(1), entries)
    }

    /// What a blocking query on `key` (or the prefix) waits to change: the
    /// highest index touching it, including deletions.
    pub fn watch_index(&self, key: &str, prefix: bool) -> u64 {
        if prefix {
            return self.kv_list(key).0;
        }
        self.kv
            .get(key)
            .map(|e| e.modify_index)
            .or_else(|| self.tombstones.get(key).copied())
            .unwrap_or(0)
    }

    /// `PUT /v1/kv/key` (plain set).
    pub fn kv_set(&mut self, key: &str, value: Vec<u8>, flags: u64) {
        let idx = self.next_index();
        self.set_at(idx, key, value, flags, None);
    }

    /// `?cas=N`: set only if the key's modify index is `cas` (0: absent).
    pub fn kv_cas(&mut self, key: &str, value: Vec<u8>, flags: u64, cas: u64) -> bool {
        let ok = match self.kv.get(key) {
            None => cas == 0,
            Some(e) => cas != 0 && e.modify_index == cas,
        };
        if ok {
            let idx = self.next_index();
            self.set_at(idx, key, value, flags, None);
        }
        ok
    }

    /// Whether `key` is under a lock-delay now (`KVSLockDelay`): checked by
    /// the endpoint before a lock, so a refused acquire writes nothing.
    pub fn lock_delayed(&self, key: &str, now: Instant) -> bool {
        self.lock_delay.get(key).is_some_and(|t| *t > now)
    }

    /// `?acquire=SESSION` (`kvsLockTxn`): `Err` for an unknown session.
    pub fn kv_lock(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
        now: Instant,
    ) -> Result<bool, String> {
        if self.lock_delayed(key, now) {
            return Ok(false);
        }
        self.check_lock(key, session)?;
        let idx = self.next_index();
        Ok(self.lock_at(idx, key, value, flags, session))
    }

    fn check_lock(&self, key: &str, session: &str) -> Result<(), String> {
        if session.is_empty() {
            return Err("missing session".into());
        }
        if !self.sessions.contains_key(session) {
            return Err(format!("invalid session {session:?}"));
        }
        let _ = key;
        Ok(())
    }

    fn lock_at(&mut self, idx: u64, key: &str, value: Vec<u8>, flags: u64, session: &str) -> bool {
        let (create_index, lock_index) = match self.kv.get(key) {
            Some(e) if e.session.as_deref() == Some(session) => (e.create_index, e.lock_index),
            Some(e) if e.session.is_some() => return false,
            Some(e) => (e.create_index, e.lock_index + 1),
            None => (idx, 1),
        };
        self.tombstones.remove(key);
        self.kv.insert(
            key.to_string(),
            Entry {
                create_index,
                modify_index: idx,
                lock_index,
                flags,
                value,
                session: Some(session.to_string()),
            },
        );
        self.kv_table_index = idx;
        true
    }

    /// `?release=SESSION` (`kvsUnlockTxn`): only the holder releases; no
    /// lock-delay (that applies on invalidation only).
    pub fn kv_unlock(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
    ) -> Result<bool, String> {
        if session.is_empty() {
            return Err("missing session".into());
        }
        match self.kv.get(key) {
            Some(e) if e.session.as_deref() == Some(session) => {}
            _ => return Ok(false),
        }
        let idx = self.next_index();
        self.unlock_at(idx, key, value, flags);
        Ok(true)
    }

    fn unlock_at(&mut self, idx: u64, key: &str, value: Vec<u8>, flags: u64) {
        if let Some(e) = self.kv.get_mut(key) {
            e.session = None;
            e.value = value;
            e.flags = flags;
            e.modify_index = idx;
            self.kv_table_index = idx;
        }
    }

    /// `DELETE /v1/kv/key` (`?recurse` deletes the prefix).
    pub fn kv_delete(&mut self, key: &str, recurse: bool) {
        let keys: Vec<String> = if recurse {
            self.kv_list(key).1.into_iter().map(|(k, _)| k).collect()
        } else {
            vec![key.to_string()]
        };
        if keys.iter().any(|k| self.kv.contains_key(k)) {
            let idx = self.next_index();
            for k in keys {
                self.delete_at(idx, &k);
            }
        }
    }

    /// `DELETE ?cas=N`: delete if the modify index is `N`; true when the
    /// key is absent (`kvsDeleteCASTxn`).
    pub fn kv_delete_cas(&mut self, key: &str, cas: u64) -> bool {
        match self.kv.get(key) {
            None => true,
            Some(e) if e.modify_index != cas => false,
            Some(_) => {
                let idx = self.next_index();
                self.delete_at(idx, key);
                true
            }
        }
    }

    /// Create a session (validated by the caller).
    pub fn session_create(&mut self, mut s: Session, now: Instant) -> String {
        let idx = self.next_index();
        s.create_index = idx;
        s.modify_index = idx;
        s.expires = s.ttl_dur.map(|t| now + t * SESSION_TTL_MULTIPLIER);
        let id = s.id.clone();
        self.sessions.insert(id.clone(), s);
        self.session_table_index = idx;
        id
    }

    /// `session/renew`: reset the TTL timer (`TTL × 2` from now). Not a
    /// Raft write in Consul: no index moves.
    pub fn session_renew(&mut self, id: &str, now: Instant) -> Option<Session> {
        let s = self.sessions.get_mut(id)?;
        s.expires = s.ttl_dur.map(|t| now + t * SESSION_TTL_MULTIPLIER);
        Some(s.clone())
    }

    /// Destroy (or invalidate) a session: its locks are released or deleted
    /// per its behavior, and each gets the session's lock-delay
    /// (`deleteSessionTxn`). Idempotent.
    pub fn session_destroy(&mut self, id: &str, now: Instant) {
        let Some(s) = self.sessions.remove(id) else {
            return;
        };
        let idx = self.next_index();
        self.session_table_index = idx;
        let delay = s.lock_delay.min(MAX_LOCK_DELAY);
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for k in held {
            match s.behavior {
                Behavior::Release => {
                    if let Some(e) = self.kv.get_mut(&k) {
                        e.session = None;
                        e.modify_index = idx;
                        self.kv_table_index = idx;
                    }
                }
                Behavior::Delete => self.delete_at(idx, &k),
            }
            if !delay.is_zero() {
                self.lock_delay.insert(k, now + delay);
            }
        }
    }

    /// Invalidate every session whose TTL timer fired.
    pub fn reap(&mut self, now: Instant) -> usize {
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.expires.is_some_and(|t| t <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in &expired {
            self.session_destroy(id, now);
        }
        expired.len()
    }

    /// `PUT /v1/txn` on KV operations: all or nothing, one index for every
    /// write (`TxnRW`). `Ok(results)` per operation that yields one (deletes
    /// yield none), or every failed operation as `(op index, what)`.
    #[allow(clippy::type_complexity)]
    pub fn txn(
        &mut self,
        ops: &[KvOp],
        now: Instant,
    ) -> Result<Vec<(String, Entry, bool)>, Vec<(usize, String)>> {
        let writes = ops.iter().any(|o| {
            !matches!(
                o.verb.as_str(),
                "get"
                    | "get-or-empty"
                    | "get-tree"
                    | "check-index"
                    | "check-session"
                    | "check-not-exists"
            )
        });
        let mut work = self.clone();
        let idx = if writes { work.index + 1 } else { work.index };
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let k = op.key.as_str();
            let r: Result<Option<(Entry, bool)>, String> = match op.verb.as_str() {
                "set" => {
                    work.set_at(idx, k, op.value.clone(), op.flags, None);
                    Ok(work.kv.get(k).cloned().map(|e| (e, false)))
                }
                "cas" => {
                    let ok = match work.kv.get(k) {
                        None => op.index == 0,
                        Some(e) => op.index != 0 && e.modify_index == op.index,
                    };
                    if ok {
                        work.set_at(idx, k, op.value.clone(), op.flags, None);
                        Ok(work.kv.get(k).cloned().map(|e| (e, false)))
                    } else {
                        Err(format!("failed to set key {k:?}, index is stale"))
                    }
                }
                "lock" => {
                    if work.lock_delayed(k, now) {
                        Err(format!("failed to lock key {k:?} due to lock delay"))
                    } else {
                        match work.check_lock(k, &op.session) {
                            Err(e) => Err(e),
                            Ok(())
                                if work.lock_at(
                                    idx,
                                    k,
                                    op.value.clone(),
                                    op.flags,
                                    &op.session,
                                ) =>
                            {
                                Ok(work.kv.get(k).cloned().map(|e| (e, false)))
                            }
                            Ok(()) => {
                                Err(format!("failed to lock key {k:?}, lock is already held"))
                            }
                        }
                    }
                }
                "unlock" => match work.kv.get(k) {
                    Some(e)
                        if !op.session.is_empty()
                            && e.session.as_deref() == Some(op.session.as_str()) =>
                    {
                        work.unlock_at(idx, k, op.value.clone(), op.flags);
                        Ok(work.kv.get(k).cloned().map(|e| (e, false)))
                    }
                    _ => Err(format!(
                        "failed to unlock key {k:?}, lock isn't held, or is held by another session"
                    )),
                },
                "get" => match work.kv.get(k) {
                    Some(e) => Ok(Some((e.clone(), true))),
                    None => Err(format!("key {k:?} doesn't exist")),
                },
                "get-or-empty" => Ok(Some(work.kv.get(k).cloned().map_or(
                    (
                        Entry {
                            create_index: 0,
                            modify_index: 0,
                            lock_index: 0,
                            flags: 0,
                            value: Vec::new(),
                            session: None,
                        },
                        false,
                    ),
                    |e| (e, true),
                ))),
                "get-tree" => {
                    for (key, e) in work.kv_list(k).1 {
                        results.push((key, e, true));
                    }
                    Ok(None)
                }
                "check-index" => match work.kv.get(k) {
                    None => Err(format!("failed to check index, key {k:?} doesn't exist")),
                    Some(e) if e.modify_index != op.index => Err(format!(
                        "failed index check for key {k:?}, current modify index {} != {}",
                        e.modify_index, op.index
                    )),
                    Some(e) => Ok(Some((e.clone(), false))),
                },
                "check-session" => match work.kv.get(k) {
                    None => Err(format!("failed to check session, key {k:?} doesn't exist")),
                    Some(e) if e.session.as_deref().unwrap_or("") != op.session => Err(format!(
                        "failed session check for key {k:?}, current session {:?} != {:?}",
                        e.session.as_deref().unwrap_or(""),
                        op.session
                    )),
                    Some(e) => Ok(Some((e.clone(), false))),
                },
                "check-not-exists" => match work.kv.get(k) {
                    Some(_) => Err(format!("key {k:?} exists")),
                    None => Ok(None),
                },
                "delete" => {
                    work.delete_at(idx, k);
                    Ok(None)
                }
                "delete-tree" => {
                    for (key, _) in work.kv_list(k).1 {
                        work.delete_at(idx, &key);
                    }
                    Ok(None)
                }
                "delete-cas" => match work.kv.get(k) {
                    Some(e) if e.modify_index != op.index => {
                        Err(format!("failed to delete key {k:?}, index is stale"))
                    }
                    Some(_) => {
                        work.delete_at(idx, k);
                        Ok(None)
                    }
                    None => Ok(None),
                },
                other => Err(format!("unknown KV verb {other:?}")),
            };
            match r {
                Ok(Some((e, with_value))) => results.push((k.to_string(), e, with_value)),
                Ok(None) => {}
                Err(what) => errors.push((i, what)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if writes {
            work.index = idx;
        }
        *self = work;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, ttl: Option<Duration>, delay: Duration, behavior: Behavior) -> Session {
        Session {
            id: id.into(),
            name: String::new(),
            node: "n".into(),
            node_checks: vec!["serfHealth".into()],
            lock_delay: delay,
            behavior,
            ttl: ttl.map(|t| format!("{}s", t.as_secs())).unwrap_or_default(),
            ttl_dur: ttl,
            expires: None,
            create_index: 0,
            modify_index: 0,
        }
    }

    #[test]
    fn lock_delay_on_invalidation_not_on_release() {
        let now = Instant::now();
        let mut s = State::new();
        s.session_create(
            session("a", None, Duration::from_secs(15), Behavior::Release),
            now,
        );
        s.session_create(
            session("b", None, Duration::from_secs(15), Behavior::Release),
            now,
        );
        assert!(s.kv_lock("k", b"1".to_vec(), 0, "a", now).unwrap());
        assert!(!s.kv_lock("k", b"2".to_vec(), 0, "b", now).unwrap(), "held");
        assert!(s.kv_unlock("k", b"1".to_vec(), 0, "a").unwrap());
        // A plain release: no lock-delay.
        assert!(s.kv_lock("k", b"2".to_vec(), 0, "b", now).unwrap());
        assert_eq!(s.kv["k"].lock_index, 2);
        // Invalidation: the lock is released with a lock-delay.
        s.session_destroy("b", now);
        assert_eq!(s.kv["k"].session, None);
        assert!(
            !s.kv_lock("k", b"3".to_vec(), 0, "a", now).unwrap(),
            "lock-delay"
        );
        assert!(s
            .kv_lock("k", b"3".to_vec(), 0, "a", now + Duration::from_secs(16))
            .unwrap());
    }

    #[test]
    fn ttl_is_a_lower_bound_and_delete_behavior_deletes() {
        let now = Instant::now();
        let mut s = State::new();
        s.session_create(
            session(
                "a",
                Some(Duration::from_secs(10)),
                Duration::ZERO,
                Behavior::Delete,
            ),
            now,
        );
        assert!(s.kv_lock("k", b"1".to_vec(), 0, "a", now).unwrap());
        assert_eq!(
            s.reap(now + Duration::from_secs(11)),
            0,
            "not before 2 x TTL"
        );
        assert_eq!(s.reap(now + Duration::from_secs(21)), 1);
        assert!(!s.kv.contains_key("k"));
    }

    #[test]
    fn txn_is_atomic_with_one_index() {
        let now = Instant::now();
        let mut s = State::new();
        let before = s.index;
        let op = |verb: &str, key: &str| KvOp {
            verb: verb.into(),
            key: key.into(),
            value: b"v".to_vec(),
            ..KvOp::default()
        };
        let r = s.txn(&[op("set", "a"), op("get", "missing")], now);
        assert_eq!(r.unwrap_err()[0].0, 1);
        assert!(!s.kv.contains_key("a"), "rolled back");
        assert_eq!(s.index, before);
        s.txn(&[op("set", "a"), op("set", "b")], now).unwrap();
        assert_eq!(s.kv["a"].modify_index, s.kv["b"].modify_index);
    }
}
