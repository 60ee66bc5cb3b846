//! The etcd backend (v3 API, through the `etcd-client` crate).
//!
//! Keys, under a prefix (default `/switchyard`):
//! - `P/leader`: the leader's [`Node`] as JSON, attached to its lease. The
//!   **fencing token** is this key's create revision: etcd's revision is one
//!   counter for the whole cluster, so each new leader key gets a revision
//!   greater than every earlier one, whichever server writes it.
//! - `P/executions/ID/SEQ` (SEQ zero-padded to 20 digits, so key order is
//!   sequence order): journal entry SEQ of execution ID.
//! - `P/execution-ids/ID`: written with entry 1, to list executions without
//!   reading journals.
//! - `P/running`: the running-execution record (JSON); its version is the
//!   key's mod revision.
//! - `P/token`: written (empty) by [`Coordinator::fresh_token`]; each
//!   write's revision is one execution's fencing token.
//!
//! Every write is one transaction whose first comparison is
//! `create_revision(P/leader) == token`: when the leader's lease expired or
//! was revoked, etcd deleted the key with it, and the write fails — a deposed
//! leader cannot write even where nobody has written since.
//!
//! The lease is renewed through the keep-alive stream every TTL/3; the
//! leadership's local deadline is `send time + TTL etcd granted`, so it
//! passes before etcd's own (which starts when etcd receives the renewal).

use crate::{
    CoordinationError, Coordinator, LeaderInfo, Leadership, LeaseKeeper, Node, Result,
    RunningExecution, Versioned,
};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use std::time::Duration;
use tokio::time::Instant;

/// How to reach etcd and lay out keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client endpoints, `HOST:PORT` (`http://` is added).
    pub endpoints: Vec<String>,
    /// Key prefix; servers cooperate only under the same prefix.
    pub prefix: String,
    /// Lease TTL requested (etcd may grant more; whole seconds, at least 1).
    pub ttl: Duration,
    /// Bound on each request, so a partitioned server fails instead of
    /// hanging.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Defaults: prefix `/switchyard`, TTL 10 s, requests 5 s.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            prefix: "/switchyard".into(),
            ttl: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A client of one etcd cluster (see the module documentation).
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    keys: crate::Keys,
    opts: EtcdOptions,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("opts", &self.opts).finish()
    }
}

impl Etcd {
    /// Connect (lazily: an unreachable cluster fails the first request, not
    /// this call, so a server can start while etcd is still coming up).
    pub async fn connect(opts: EtcdOptions) -> Result<Etcd> {
        if opts.endpoints.is_empty() {
            return Err(CoordinationError::Invalid {
                message: "etcd: no endpoints".into(),
            });
        }
        let urls: Vec<String> = opts
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let co = ConnectOptions::new()
            .with_connect_timeout(opts.request_timeout)
            .with_timeout(opts.request_timeout)
            // Detect a dead connection (partition) without waiting for TCP.
            .with_keep_alive(Duration::from_secs(2), opts.request_timeout)
            .with_keep_alive_while_idle(true);
        let client =
            Client::connect(urls, Some(co))
                .await
                .map_err(|e| CoordinationError::Unavailable {
                    backend: describe(&opts),
                    message: e.to_string(),
                })?;
        let keys = crate::Keys::new(&opts.prefix);
        Ok(Etcd { client, keys, opts })
    }

    /// The options in use.
    pub fn options(&self) -> &EtcdOptions {
        &self.opts
    }

    fn leader_key(&self) -> String {
        self.keys.leader()
    }

    fn entry_key(&self, execution: &str, seq: u64) -> String {
        self.keys.entry(execution, seq)
    }

    fn err(&self, e: etcd_client::Error) -> CoordinationError {
        use etcd_client::Error as E;
        match e {
            E::InvalidArgs(m) => CoordinationError::Invalid {
                message: format!("{}: {m}", self.describe()),
            },
            E::GRpcStatus(s) if s.code() == tonic::Code::InvalidArgument => {
                CoordinationError::Invalid {
                    message: format!("{}: {}", self.describe(), s.message()),
                }
            }
            E::GRpcStatus(s) if s.code() == tonic::Code::NotFound => CoordinationError::NotFound {
                what: format!("{}: {}", self.describe(), s.message()),
            },
            other => CoordinationError::Unavailable {
                backend: self.describe(),
                message: other.to_string(),
            },
        }
    }

    /// Run `f` (a request to etcd), again while it fails as unavailable,
    /// within twice the request timeout. etcd-client balances over every
    /// endpoint, including a dead member's, so one refused connection says
    /// nothing about the cluster. Callers whose request is not idempotent
    /// are told whether it was retried.
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<(T, bool)>
    where
        F: FnMut(Client) -> Fut + Send,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>> + Send,
        T: Send,
    {
        let deadline = Instant::now() + self.opts.request_timeout * 2;
        let mut retried = false;
        loop {
            match f(self.client.clone()).await {
                Ok(v) => return Ok((v, retried)),
                Err(e) => {
                    let e = self.err(e);
                    if !e.is_temporary() || Instant::now() >= deadline {
                        return Err(e);
                    }
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn get(&self, key: String, opts: Option<GetOptions>) -> Result<etcd_client::GetResponse> {
        self.retry(|mut c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.get(key, opts).await }
        })
        .await
        .map(|(r, _)| r)
    }

    async fn txn(&self, txn: Txn) -> Result<(etcd_client::TxnResponse, bool)> {
        self.retry(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Compare that `leadership` is still etcd's current one.
    fn is_current(&self, l: &Leadership) -> Compare {
        Compare::create_revision(self.leader_key(), CompareOp::Equal, token_i64(l.token()))
    }

    /// After a failed fenced transaction: was it the leadership?
    fn deposed(&self, l: &Leadership, resp: &TxnOpResponse) -> Option<CoordinationError> {
        let TxnOpResponse::Get(g) = resp else {
            return None;
        };
        let reason = match g.kvs().first() {
            None => "the leader key is gone (lease expired or revoked)".to_string(),
            Some(kv) if kv.create_revision() != token_i64(l.token()) => format!(
                "another leadership holds the leader key (token {})",
                kv.create_revision()
            ),
            Some(_) => return None,
        };
        l.lose(reason.clone());
        Some(l.not_leader(reason))
    }
}

fn token_i64(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn describe(o: &EtcdOptions) -> String {
    format!("etcd://{}", o.endpoints.join(","))
}

/// Renew the lease until it is lost or released; revoke it on release.
async fn keep_alive(mut client: Client, lease: i64, keeper: LeaseKeeper, ttl: Duration) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    let mut stream = None;
    loop {
        if keeper.is_lost() {
            break;
        }
        let sent = Instant::now();
        let step = async {
            if stream.is_none() {
                stream = Some(client.lease_keep_alive(lease).await?);
            }
            let (k, s) = stream.as_mut().expect("just set");
            k.keep_alive().await?;
            s.message().await
        };
        // Never wait past the local deadline: the watchdog fires then anyway.
        let bound = keeper.remaining().min(every * 2);
        let r = tokio::select! {
            r = tokio::time::timeout(bound, step) => r,
            () = keeper.released() => break,
        };
        match r {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                keeper.renewed(sent, Duration::from_secs(resp.ttl().unsigned_abs()));
            }
            Ok(Ok(Some(_))) => {
                keeper.lose("etcd: the lease expired or was revoked (keep-alive TTL 0)");
                break;
            }
            // Stream ended, error or timeout: reconnect at the next round.
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    lease,
                    "etcd keep-alive failed; retrying until the lease lapses"
                );
                stream = None;
            }
        }
        // After a failure, reconnect soon: the balancer may pick a live
        // member next time.
        let pause = if stream.is_some() {
            every
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = keeper.released() => break,
            () = keeper.lost() => break,
        }
    }
    // Released or lost: revoke, so a successor need not wait for the TTL
    // (harmless when etcd already expired it).
    let _ = tokio::time::timeout(Duration::from_secs(3), client.lease_revoke(lease)).await;
}

#[async_trait]
impl Coordinator for Etcd {
    fn describe(&self) -> String {
        describe(&self.opts)
    }

    fn lease_ttl(&self) -> Duration {
        self.opts.ttl
    }

    async fn try_campaign(&self, me: &Node) -> Result<Option<Leadership>> {
        let sent = Instant::now();
        let ttl_secs = self.opts.ttl.as_secs().max(1) as i64;
        // A lease granted by an attempt whose answer was lost expires alone.
        let (grant, _) = self
            .retry(|mut c| async move { c.lease_grant(ttl_secs, None).await })
            .await?;
        let lease = grant.id();
        let value = serde_json::to_vec(me).map_err(|e| CoordinationError::Invalid {
            message: e.to_string(),
        })?;
        let key = self.leader_key();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut c = self.client.clone();
        let resp = match self.txn(txn).await {
            Ok((r, _)) => r,
            Err(e) => {
                let _ = c.lease_revoke(lease).await;
                return Err(e);
            }
        };
        if !resp.succeeded() {
            // Also when a retried attempt had in fact won: revoking our
            // lease deletes the key it wrote, so no leader is left orphaned.
            let _ = c.lease_revoke(lease).await;
            return Ok(None);
        }
        // The put is the transaction's only write: its revision is the
        // leader key's create revision.
        let token = resp
            .header()
            .map(|h| h.revision())
            .filter(|r| *r > 0)
            .ok_or_else(|| CoordinationError::Invalid {
                message: format!(
                    "{}: transaction answered without a revision",
                    self.describe()
                ),
            })? as u64;
        let granted = Duration::from_secs(grant.ttl().max(1).unsigned_abs());
        let (leadership, keeper) = Leadership::new(
            token,
            me.clone(),
            self.describe(),
            format!("{lease:x}"),
            Some((granted, sent)),
        );
        tokio::spawn(keep_alive(self.client.clone(), lease, keeper, granted));
        Ok(Some(leadership))
    }

    async fn resign(&self, leadership: Leadership) -> Result<()> {
        leadership.release();
        let lease = i64::from_str_radix(leadership.lease_id(), 16).map_err(|e| {
            CoordinationError::Invalid {
                message: format!("etcd lease id {:?}: {e}", leadership.lease_id()),
            }
        })?;
        match self
            .retry(|mut c| async move { c.lease_revoke(lease).await })
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (expired, or the keep-alive task revoked it first).
            Err(CoordinationError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let resp = self.get(self.leader_key(), None).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let node: Node =
            serde_json::from_slice(kv.value()).map_err(|e| CoordinationError::Invalid {
                message: format!("{}: {}: {e}", self.describe(), self.leader_key()),
            })?;
        Ok(Some(LeaderInfo {
            node,
            token: kv.create_revision().unsigned_abs(),
        }))
    }

    async fn fresh_token(&self, leadership: &Leadership) -> Result<u64> {
        let txn = Txn::new()
            .when([self.is_current(leadership)])
            .and_then([TxnOp::put(self.keys.token(), Vec::new(), None)])
            .or_else([TxnOp::get(self.leader_key(), None)]);
        // A retried attempt that had applied only wastes a revision: the
        // token is this attempt's, greater still.
        let (resp, _) = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(resp
                .op_responses()
                .first()
                .and_then(|r| self.deposed(leadership, r))
                .unwrap_or_else(|| leadership.not_leader("the leader key changed")));
        }
        // The put is the transaction's only write: the header's revision is
        // the one it created, greater than every earlier one in the cluster.
        resp.header()
            .map(|h| h.revision())
            .filter(|r| *r > 0)
            .map(i64::unsigned_abs)
            .ok_or_else(|| CoordinationError::Invalid {
                message: format!(
                    "{}: transaction answered without a revision",
                    self.describe()
                ),
            })
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
        let mut when = vec![
            self.is_current(leadership),
            Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        ];
        let mut then = vec![TxnOp::put(key.clone(), entry.to_vec(), None)];
        let prev = (seq > 1).then(|| self.entry_key(execution, seq - 1));
        match &prev {
            Some(p) => when.push(Compare::create_revision(p.clone(), CompareOp::Greater, 0)),
            None => then.push(TxnOp::put(
                self.keys.key(&format!("execution-ids/{execution}")),
                Vec::new(),
                None,
            )),
        }
        let mut otherwise = vec![
            TxnOp::get(self.leader_key(), None),
            TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
        ];
        if let Some(p) = prev {
            otherwise.push(TxnOp::get(p, Some(GetOptions::new().with_keys_only())));
        }
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let (resp, retried) = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(());
        }
        let ops = resp.op_responses();
        let exists = matches!(ops.get(1), Some(TxnOpResponse::Get(g)) if !g.kvs().is_empty());
        if exists && retried {
            // An attempt whose answer was lost may have written it: ours if
            // the stored bytes are ours.
            let stored = self.get(self.entry_key(execution, seq), None).await?;
            if stored.kvs().first().map(|kv| kv.value()) == Some(entry) {
                return Ok(());
            }
        }
        if let Some(e) = ops.first().and_then(|r| self.deposed(leadership, r)) {
            return Err(e);
        }
        Err(CoordinationError::SeqTaken {
            execution: execution.into(),
            seq,
            reason: if exists {
                "entry exists".into()
            } else {
                format!("entry {} missing", seq - 1)
            },
        })
    }

    async fn entries(&self, execution: &str) -> Result<Vec<Vec<u8>>> {
        let prefix = self.keys.entries(execution);
        let resp = self
            .get(
                prefix,
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Key, SortOrder::Ascend),
                ),
            )
            .await?;
        if resp.kvs().is_empty() {
            return Err(CoordinationError::NotFound {
                what: format!("execution {execution}"),
            });
        }
        let mut out = Vec::with_capacity(resp.kvs().len());
        for (i, kv) in resp.kvs().iter().enumerate() {
            // Appends are gap-free by construction; a gap means someone
            // wrote these keys by hand: say so rather than renumber.
            let want = self.entry_key(execution, i as u64 + 1);
            if kv.key() != want.as_bytes() {
                return Err(CoordinationError::Invalid {
                    message: format!(
                        "{}: journal of {execution}: expected key {want}, found {}",
                        self.describe(),
                        String::from_utf8_lossy(kv.key())
                    ),
                });
            }
            out.push(kv.value().to_vec());
        }
        Ok(out)
    }

    async fn executions(&self) -> Result<Vec<String>> {
        let prefix = self.keys.ids();
        let resp = self
            .get(
                prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_sort(SortTarget::Key, SortOrder::Ascend),
                ),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                std::str::from_utf8(kv.key())
                    .ok()
                    .and_then(|k| k.strip_prefix(&prefix))
                    .map(str::to_string)
            })
            .collect())
    }

    async fn running(&self) -> Result<Option<Versioned<RunningExecution>>> {
        let resp = self.get(self.keys.running(), None).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let value = serde_json::from_slice(kv.value()).map_err(|e| CoordinationError::Invalid {
            message: format!("{}: {}: {e}", self.describe(), self.keys.running()),
        })?;
        Ok(Some(Versioned {
            value,
            version: kv.mod_revision().unsigned_abs(),
        }))
    }

    async fn swap_running(
        &self,
        leadership: &Leadership,
        expected: Option<u64>,
        new: Option<&RunningExecution>,
    ) -> Result<()> {
        let key = self.keys.running();
        let unchanged = match expected {
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            Some(v) => Compare::mod_revision(key.clone(), CompareOp::Equal, token_i64(v)),
        };
        let op = match new {
            Some(r) => TxnOp::put(
                key,
                serde_json::to_vec(r).map_err(|e| CoordinationError::Invalid {
                    message: e.to_string(),
                })?,
                None,
            ),
            None => TxnOp::delete(key, None),
        };
        let txn = Txn::new()
            .when([self.is_current(leadership), unchanged])
            .and_then([op])
            .or_else([TxnOp::get(self.leader_key(), None)]);
        // A retried swap that had in fact applied reports `Changed`; the
        // caller re-reads the record, which then shows its own write.
        let (resp, _) = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(());
        }
        if let Some(e) = resp
            .op_responses()
            .first()
            .and_then(|r| self.deposed(leadership, r))
        {
            return Err(e);
        }
        Err(CoordinationError::Changed {
            what: "running-execution record".into(),
        })
    }
}
