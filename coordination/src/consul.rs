//! The Consul backend: KV, sessions and transactions over Consul's plain
//! HTTP API (reqwest). rs-consul was considered: it has key reads/writes and
//! a lock helper, but no session renew, destroy or info and no `/v1/txn`,
//! and every fenced write here is a transaction, so one HTTP client does it
//! all rather than two stacks side by side.
//!
//! Keys, under a prefix (default `switchyard`; Consul keys do not start
//! with `/`):
//! - `P/leader`: the lock. A server campaigns by creating a session (TTL,
//!   lock-delay, behavior `release`) and acquiring the key with it; the
//!   value is its [`Node`]. The **fencing token** is the key's `ModifyIndex`
//!   right after the acquisition: a Raft index, so every later acquisition
//!   (which writes the key again) gets a greater one, whichever server makes
//!   it. The key's `LockIndex` (acquisitions so far) is logged beside it.
//! - `P/executions/ID/SEQ`, `P/execution-ids/ID`, `P/running`, `P/token`:
//!   as for etcd; an execution's token is the `ModifyIndex` of its write
//!   to `P/token` (a Raft index, greater than every earlier one).
//!
//! Every write is a `/v1/txn` whose first operation is
//! `check-session` on `P/leader` with the leader's session: once the session
//! is invalidated (TTL lapsed, destroyed, node failed) the lock no longer
//! names it, and the write is rolled back.
//!
//! Consul's TTL is a lower bound: Consul invalidates a session only after
//! twice the TTL without a renewal, then refuses the lock to everyone for
//! the lock-delay. The leader's local deadline is `renewal sent + TTL`, so it
//! stops well before another server can win; the price is that a dead
//! leader's successor waits up to `2 × TTL + lock-delay`. A resigning leader
//! releases the key first (a plain release has no lock-delay), then
//! destroys its session.

use crate::{
    CoordinationError, Coordinator, LeaderInfo, Leadership, LeaseKeeper, Node, Result,
    RunningExecution, Versioned,
};
use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

/// How to reach Consul and lay out keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulOptions {
    /// Agent address, `HOST:PORT` (`http://` is added).
    pub address: String,
    /// Key prefix; servers cooperate only under the same prefix.
    pub prefix: String,
    /// Session TTL (Consul accepts 10 s to 24 h).
    pub ttl: Duration,
    /// Lock-delay of the session: after it is invalidated, nobody acquires
    /// the lock for this long.
    pub lock_delay: Duration,
    /// Bound on each request.
    pub request_timeout: Duration,
}

impl ConsulOptions {
    /// Defaults: prefix `switchyard`, TTL 10 s (Consul's minimum),
    /// lock-delay 1 s, requests 5 s.
    pub fn new(address: impl Into<String>) -> Self {
        ConsulOptions {
            address: address.into(),
            prefix: "switchyard".into(),
            ttl: Duration::from_secs(10),
            lock_delay: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A client of one Consul agent (see the module documentation).
#[derive(Clone)]
pub struct Consul {
    http: reqwest::Client,
    base: String,
    keys: crate::Keys,
    opts: ConsulOptions,
}

impl std::fmt::Debug for Consul {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consul").field("opts", &self.opts).finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvEntry {
    key: String,
    #[serde(default)]
    value: Option<String>,
    modify_index: u64,
    #[serde(default)]
    lock_index: u64,
    #[serde(default)]
    session: Option<String>,
}

impl KvEntry {
    fn bytes(&self) -> Result<Vec<u8>> {
        match &self.value {
            None => Ok(Vec::new()),
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| CoordinationError::Invalid {
                    message: format!("consul: value of {}: {e}", self.key),
                }),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnError {
    op_index: usize,
    what: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResult {
    #[serde(rename = "KV", default)]
    kv: Option<KvEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnReply {
    #[serde(default)]
    errors: Option<Vec<TxnError>>,
    #[serde(default)]
    results: Option<Vec<TxnResult>>,
}

/// What a transaction came to.
enum Txn {
    /// Applied; the KV entries it answered with (a `set` answers with the
    /// entry as written, its `ModifyIndex` included).
    Applied(Vec<KvEntry>),
    /// Rolled back: the first failed operation and why.
    RolledBack(usize, String),
}

fn kv_op(verb: &str, key: &str) -> serde_json::Value {
    serde_json::json!({ "KV": { "Verb": verb, "Key": key } })
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

impl Consul {
    /// A client of the agent at `opts.address` (no request is made yet).
    pub fn new(opts: ConsulOptions) -> Result<Consul> {
        if opts.ttl < Duration::from_secs(10) {
            return Err(CoordinationError::Invalid {
                message: format!(
                    "consul: session TTL {:?} is below Consul's minimum of 10 s",
                    opts.ttl
                ),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .connect_timeout(opts.request_timeout)
            .build()
            .map_err(|e| CoordinationError::Invalid {
                message: format!("consul: HTTP client: {e}"),
            })?;
        let base = if opts.address.contains("://") {
            opts.address.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", opts.address)
        };
        // Consul keys never start with `/`.
        let keys = crate::Keys::new(opts.prefix.trim_start_matches('/'));
        Ok(Consul {
            http,
            base,
            keys,
            opts,
        })
    }

    /// The options in use.
    pub fn options(&self) -> &ConsulOptions {
        &self.opts
    }

    fn leader_key(&self) -> String {
        self.keys.leader()
    }

    fn entry_key(&self, execution: &str, seq: u64) -> String {
        self.keys.entry(execution, seq)
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> CoordinationError {
        CoordinationError::Unavailable {
            backend: self.describe(),
            message: message.to_string(),
        }
    }

    /// One request; the status and body. Transport failures (refused,
    /// timeout) are `Unavailable`; HTTP statuses are the caller's to judge.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| self.unavailable(e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unavailable(e))?;
        Ok((status, bytes.to_vec()))
    }

    /// A request expected to answer 200 (or 404 when `allow_404`).
    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        allow_404: bool,
    ) -> Result<Option<Vec<u8>>> {
        let (status, bytes) = self.call(method, path, body).await?;
        match status {
            200 => Ok(Some(bytes)),
            404 if allow_404 => Ok(None),
            s => Err(self.unavailable(format!(
                "{path}: HTTP {s}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ))),
        }
    }

    async fn get_entries(&self, path: &str) -> Result<Vec<KvEntry>> {
        match self.ok(reqwest::Method::GET, path, None, true).await? {
            None => Ok(Vec::new()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| CoordinationError::Invalid {
                message: format!("{}: {path}: {e}", self.describe()),
            }),
        }
    }

    async fn txn(&self, ops: &[serde_json::Value]) -> Result<Txn> {
        let body = serde_json::to_vec(ops).map_err(|e| CoordinationError::Invalid {
            message: e.to_string(),
        })?;
        let (status, bytes) = self
            .call(reqwest::Method::PUT, "/v1/txn", Some(body))
            .await?;
        match status {
            200 => {
                let r: TxnReply =
                    serde_json::from_slice(&bytes).map_err(|e| CoordinationError::Invalid {
                        message: format!("{}: /v1/txn: {e}", self.describe()),
                    })?;
                Ok(Txn::Applied(
                    r.results
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|r| r.kv)
                        .collect(),
                ))
            }
            409 => {
                let r: TxnReply =
                    serde_json::from_slice(&bytes).map_err(|e| CoordinationError::Invalid {
                        message: format!("{}: /v1/txn: {e}", self.describe()),
                    })?;
                let first = r
                    .errors
                    .unwrap_or_default()
                    .into_iter()
                    .min_by_key(|e| e.op_index)
                    .map_or((0, "rolled back".to_string()), |e| (e.op_index, e.what));
                Ok(Txn::RolledBack(first.0, first.1))
            }
            s => Err(self.unavailable(format!(
                "/v1/txn: HTTP {s}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ))),
        }
    }

    /// `txn`, again while Consul cannot be reached, within twice the request
    /// timeout; says whether it was retried (an earlier attempt may have
    /// applied).
    async fn txn_retry(&self, ops: &[serde_json::Value]) -> Result<(Txn, bool)> {
        let deadline = Instant::now() + self.opts.request_timeout * 2;
        let mut retried = false;
        loop {
            match self.txn(ops).await {
                Ok(t) => return Ok((t, retried)),
                Err(e) if e.is_temporary() && Instant::now() < deadline => {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn check_leader(&self, l: &Leadership) -> serde_json::Value {
        serde_json::json!({ "KV": {
            "Verb": "check-session", "Key": self.leader_key(), "Session": l.lease_id()
        }})
    }

    fn deposed(&self, l: &Leadership, what: &str) -> CoordinationError {
        let reason = format!("the lock is not held by our session any more ({what})");
        l.lose(reason.clone());
        l.not_leader(reason)
    }

    async fn destroy_session(&self, id: &str) {
        let _ = self
            .call(
                reqwest::Method::PUT,
                &format!("/v1/session/destroy/{id}"),
                None,
            )
            .await;
    }

    async fn release(&self, id: &str) {
        // A plain release first: it applies no lock-delay, so a successor
        // can take the lock at once; destroying the session afterwards
        // finds nothing left to invalidate.
        let _ = self
            .call(
                reqwest::Method::PUT,
                &format!("/v1/kv/{}?release={id}", self.leader_key()),
                None,
            )
            .await;
        self.destroy_session(id).await;
    }
}

/// Renew the session every TTL/3 until it is lost or released.
async fn renew(c: Consul, session: String, keeper: LeaseKeeper, ttl: Duration) {
    let every = ttl / 3;
    loop {
        let sent = Instant::now();
        let bound = keeper.remaining().min(every * 2);
        let path = format!("/v1/session/renew/{session}");
        let r = tokio::select! {
            r = tokio::time::timeout(bound, c.call(reqwest::Method::PUT, &path, None)) => r,
            () = keeper.released() => break,
        };
        let mut failed = false;
        match r {
            Ok(Ok((200, _))) => keeper.renewed(sent, ttl),
            Ok(Ok((404, _))) => {
                keeper.lose("consul: the session was invalidated (renew answered 404)");
                break;
            }
            _ => {
                tracing::warn!(%session, "consul session renew failed; retrying until the lease lapses");
                failed = true;
            }
        }
        let pause = if failed {
            Duration::from_millis(200)
        } else {
            every
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = keeper.released() => break,
            () = keeper.lost() => break,
        }
    }
    if keeper.is_released() {
        c.release(&session).await;
    } else {
        // Lost without resigning (lapsed or invalidated): make sure the
        // session is gone rather than left to Consul's timer.
        c.destroy_session(&session).await;
    }
}

#[async_trait]
impl Coordinator for Consul {
    fn describe(&self) -> String {
        format!("consul://{}", self.opts.address)
    }

    fn lease_ttl(&self) -> Duration {
        self.opts.ttl
    }

    async fn try_campaign(&self, me: &Node) -> Result<Option<Leadership>> {
        let sent = Instant::now();
        let create = serde_json::json!({
            "Name": format!("switchyard {}", me.name),
            "TTL": format!("{}s", self.opts.ttl.as_secs()),
            "LockDelay": format!("{}ms", self.opts.lock_delay.as_millis()),
            "Behavior": "release",
        });
        let body = self
            .ok(
                reqwest::Method::PUT,
                "/v1/session/create",
                Some(create.to_string().into_bytes()),
                false,
            )
            .await?
            .unwrap_or_default();
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let session = serde_json::from_slice::<Created>(&body)
            .map_err(|e| CoordinationError::Invalid {
                message: format!("{}: session/create: {e}", self.describe()),
            })?
            .id;
        let value = serde_json::to_vec(me).map_err(|e| CoordinationError::Invalid {
            message: e.to_string(),
        })?;
        let acquired = self
            .call(
                reqwest::Method::PUT,
                &format!("/v1/kv/{}?acquire={session}", self.leader_key()),
                Some(value),
            )
            .await;
        let won = matches!(&acquired, Ok((200, b)) if b.as_slice().trim_ascii() == b"true");
        if !won {
            self.destroy_session(&session).await;
            return match acquired {
                Ok((200, _)) => Ok(None),
                Ok((s, b)) => Err(self.unavailable(format!(
                    "acquire: HTTP {s}: {}",
                    String::from_utf8_lossy(&b).trim()
                ))),
                Err(e) => Err(e),
            };
        }
        let entry = self
            .get_entries(&format!("/v1/kv/{}", self.leader_key()))
            .await?
            .into_iter()
            .next();
        let Some(entry) = entry.filter(|e| e.session.as_deref() == Some(session.as_str())) else {
            // Lost between acquiring and reading (invalidated already).
            self.destroy_session(&session).await;
            return Ok(None);
        };
        tracing::info!(
            session = %session,
            lock_index = entry.lock_index,
            token = entry.modify_index,
            "consul: leadership acquired"
        );
        let (leadership, keeper) = Leadership::new(
            entry.modify_index,
            me.clone(),
            self.describe(),
            session.clone(),
            Some((self.opts.ttl, sent)),
        );
        tokio::spawn(renew(self.clone(), session, keeper, self.opts.ttl));
        Ok(Some(leadership))
    }

    async fn resign(&self, leadership: Leadership) -> Result<()> {
        leadership.release();
        self.release(leadership.lease_id()).await;
        Ok(())
    }

    async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let entry = self
            .get_entries(&format!("/v1/kv/{}", self.leader_key()))
            .await?
            .into_iter()
            .next();
        let Some(e) = entry.filter(|e| e.session.is_some()) else {
            return Ok(None);
        };
        let node =
            serde_json::from_slice(&e.bytes()?).map_err(|err| CoordinationError::Invalid {
                message: format!("{}: {}: {err}", self.describe(), e.key),
            })?;
        Ok(Some(LeaderInfo {
            node,
            token: e.modify_index,
        }))
    }

    async fn fresh_token(&self, leadership: &Leadership) -> Result<u64> {
        let key = self.keys.token();
        // Consul skips a write that changes nothing (same value, flags and
        // session), index included: each write names its session and a
        // nonce, so every one is applied at a new index.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let value = format!("{} {nonce} {n}", leadership.lease_id());
        let ops = [
            self.check_leader(leadership),
            serde_json::json!({ "KV": { "Verb": "set", "Key": key, "Value": b64(value.as_bytes()) } }),
        ];
        // A retried attempt that had applied only wastes an index: the
        // token is this attempt's, greater still.
        match self.txn_retry(&ops).await?.0 {
            Txn::Applied(entries) => entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.modify_index)
                .filter(|i| *i > 0)
                .ok_or_else(|| CoordinationError::Invalid {
                    message: format!(
                        "{}: /v1/txn answered the write of {key} without its ModifyIndex",
                        self.describe()
                    ),
                }),
            Txn::RolledBack(0, what) => Err(self.deposed(leadership, &what)),
            Txn::RolledBack(_, what) => Err(self.unavailable(format!("/v1/txn: {what}"))),
        }
    }

    async fn append(
        &self,
        leadership: &Leadership,
        execution: &str,
        seq: u64,
        entry: &[u8],
    ) -> Result<()> {
        if seq == 0 {
            return Err(CoordinationError::Invalid {
                message: "journal entries are numbered from 1".into(),
            });
        }
        let key = self.entry_key(execution, seq);
        let mut ops = vec![self.check_leader(leadership)];
        if seq > 1 {
            ops.push(kv_op("get", &self.entry_key(execution, seq - 1)));
        }
        let cas_at = ops.len();
        ops.push(serde_json::json!({ "KV": {
            "Verb": "cas", "Key": key, "Index": 0, "Value": b64(entry)
        }}));
        if seq == 1 {
            ops.push(serde_json::json!({ "KV": {
                "Verb": "set", "Key": self.keys.key(&format!("execution-ids/{execution}")), "Value": ""
            }}));
        }
        let (r, retried) = self.txn_retry(&ops).await?;
        let (at, what) = match r {
            Txn::Applied(_) => return Ok(()),
            Txn::RolledBack(at, what) => (at, what),
        };
        if at == cas_at && retried {
            // An attempt whose answer was lost may have written it.
            let stored = self.get_entries(&format!("/v1/kv/{key}")).await?;
            if let Some(e) = stored.first() {
                if e.bytes()? == entry {
                    return Ok(());
                }
            }
        }
        if at == 0 {
            return Err(self.deposed(leadership, &what));
        }
        Err(CoordinationError::SeqTaken {
            execution: execution.into(),
            seq,
            reason: if at == cas_at {
                "entry exists".into()
            } else {
                format!("entry {} missing", seq - 1)
            },
        })
    }

    async fn entries(&self, execution: &str) -> Result<Vec<Vec<u8>>> {
        let prefix = self.keys.entries(execution);
        let mut list = self
            .get_entries(&format!("/v1/kv/{prefix}?recurse"))
            .await?;
        if list.is_empty() {
            return Err(CoordinationError::NotFound {
                what: format!("execution {execution}"),
            });
        }
        list.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let want = self.entry_key(execution, i as u64 + 1);
            if e.key != want {
                return Err(CoordinationError::Invalid {
                    message: format!(
                        "{}: journal of {execution}: expected key {want}, found {}",
                        self.describe(),
                        e.key
                    ),
                });
            }
            out.push(e.bytes()?);
        }
        Ok(out)
    }

    async fn executions(&self) -> Result<Vec<String>> {
        let prefix = self.keys.ids();
        let Some(body) = self
            .ok(
                reqwest::Method::GET,
                &format!("/v1/kv/{prefix}?keys"),
                None,
                true,
            )
            .await?
        else {
            return Ok(Vec::new());
        };
        let keys: Vec<String> =
            serde_json::from_slice(&body).map_err(|e| CoordinationError::Invalid {
                message: format!("{}: {prefix}: {e}", self.describe()),
            })?;
        let mut ids: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn running(&self) -> Result<Option<Versioned<RunningExecution>>> {
        let key = self.keys.running();
        let Some(e) = self
            .get_entries(&format!("/v1/kv/{key}"))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let value =
            serde_json::from_slice(&e.bytes()?).map_err(|err| CoordinationError::Invalid {
                message: format!("{}: {key}: {err}", self.describe()),
            })?;
        Ok(Some(Versioned {
            value,
            version: e.modify_index,
        }))
    }

    async fn swap_running(
        &self,
        leadership: &Leadership,
        expected: Option<u64>,
        new: Option<&RunningExecution>,
    ) -> Result<()> {
        let key = self.keys.running();
        let mut ops = vec![self.check_leader(leadership)];
        ops.push(match expected {
            None => kv_op("check-not-exists", &key),
            Some(v) => {
                serde_json::json!({ "KV": { "Verb": "check-index", "Key": key, "Index": v } })
            }
        });
        ops.push(match new {
            Some(r) => {
                let v = serde_json::to_vec(r).map_err(|e| CoordinationError::Invalid {
                    message: e.to_string(),
                })?;
                serde_json::json!({ "KV": { "Verb": "set", "Key": key, "Value": b64(&v) } })
            }
            None => kv_op("delete", &key),
        });
        // A retried swap that had in fact applied reports `Changed`; the
        // caller re-reads the record and finds its own write.
        match self.txn_retry(&ops).await?.0 {
            Txn::Applied(_) => Ok(()),
            Txn::RolledBack(0, what) => Err(self.deposed(leadership, &what)),
            Txn::RolledBack(_, _) => Err(CoordinationError::Changed {
                what: "running-execution record".into(),
            }),
        }
    }
}
