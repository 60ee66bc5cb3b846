//! A Consul simulator: the KV store, sessions and transactions of Consul's
//! HTTP API (`/v1/kv`, `/v1/session`, `/v1/txn`), with blocking queries and
//! `X-Consul-Index`, on a real socket, for the Consul coordination backend.
//! Consul cannot run here; this follows its public documentation and, where
//! the documentation is thin, its state store (see `docs/consulsim.md` for
//! what is modelled, what is not, and the sources).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = switchyard_lab::consulsim::ConsulSim::start("127.0.0.1").await?;
//! println!("consul://{}", sim.address());
//! # Ok(()) }
//! ```
//!
//! One server, one datacenter (`dc1`), one node (the agent's); ACL tokens
//! are accepted and ignored. The state lives in memory and dies with the
//! simulator.
//!
//! On `SWITCHYARD_BACKING=compose`, [`ConsulSim::start`] attaches to
//! docker-compose.yml's three real Consul servers instead (reset from empty
//! volumes, reached at `consul-east`'s address, [`ConsulSim::index`] and
//! [`ConsulSim::sessions`] read over Consul's HTTP API): the same tests, a
//! real Consul. See [`crate::backing`].

pub mod state;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use state::{Behavior, Entry, KvOp, Session, State};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Name of the simulated agent's node (sessions default to it).
pub const NODE: &str = "consulsim";
/// Consul's `kv_max_value_size` default.
const KV_MAX_VALUE: usize = 512 * 1024;
/// Consul's limit on operations in one transaction.
const TXN_MAX_OPS: usize = 128;

struct Shared {
    state: Mutex<State>,
    /// Bumped after every change, to wake blocking queries.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = (s.index, s.kv.len(), s.sessions.len());
        let out = f(&mut s);
        let after = (s.index, s.kv.len(), s.sessions.len());
        drop(s);
        if before != after {
            self.changed.send_modify(|v| *v += 1);
        }
        out
    }
}

/// A running simulator; stopped on drop.
pub struct ConsulSim {
    addr: SocketAddr,
    /// `None` when attached to compose's real Consul servers.
    shared: Option<Arc<Shared>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _compose_lock: Option<std::fs::File>,
}

impl ConsulSim {
    /// Listen on a free port of `host` and serve until dropped.
    pub async fn start(host: &str) -> anyhow::Result<ConsulSim> {
        if let Some(project) = crate::backing::Backing::compose()? {
            return Self::attach(project, host).await;
        }
        let listener = TcpListener::bind((host, 0)).await?;
        let addr = listener.local_addr()?;
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            changed,
        });
        let reaper = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    shared.with(|s| s.reap(Instant::now()));
                }
            })
        };
        let server = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let svc =
                            hyper::service::service_fn(move |req| handle(shared.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            })
        };
        Ok(ConsulSim {
            addr,
            shared: Some(shared),
            tasks: vec![reaper, server],
            _compose_lock: None,
        })
    }

    /// The compose backing: docker-compose.yml's Consul servers, reset from
    /// empty volumes (Compose waits for their health check: a Raft leader),
    /// reached at the first one's address. Listening on another host than
    /// 127.0.0.1 (a network namespace's veth) is [`crate::backing::Unsupported`].
    async fn attach(project: &crate::backing::Compose, host: &str) -> anyhow::Result<ConsulSim> {
        use crate::backing::{ServiceKind, Unsupported};
        if host != "127.0.0.1" {
            return Err(Unsupported(format!(
                "Consul listening on {host}; docker-compose.yml's servers have fixed addresses"
            ))
            .into());
        }
        let services = project.services().await?;
        let found = services.of(ServiceKind::Consul);
        let Some(first) = found.first() else {
            anyhow::bail!("docker-compose.yml has no Consul service");
        };
        let addr: SocketAddr = first
            .addr
            .parse()
            .map_err(|e| anyhow::anyhow!("{} ({}): {e}", first.name, first.addr))?;
        let lock = project.lock("consul")?;
        let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
        project.reset(&names).await?;
        Ok(ConsulSim {
            addr,
            shared: None,
            tasks: Vec::new(),
            _compose_lock: Some(lock),
        })
    }

    /// `HOST:PORT` it listens on.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The current Raft index (for tests).
    pub fn index(&self) -> u64 {
        match &self.shared {
            Some(shared) => shared.with(|s| s.index),
            None => real_get(self.addr, "/v1/kv/?recurse")
                .map(|(index, _)| index)
                .unwrap_or_else(|e| panic!("Consul at {}: {e}", self.addr)),
        }
    }

    /// Number of live sessions (for tests).
    pub fn sessions(&self) -> usize {
        match &self.shared {
            Some(shared) => shared.with(|s| s.sessions.len()),
            None => real_get(self.addr, "/v1/session/list")
                .and_then(|(_, body)| {
                    serde_json::from_str::<Vec<serde_json::Value>>(&body)
                        .map(|v| v.len())
                        .map_err(|e| anyhow::anyhow!("/v1/session/list: {e}"))
                })
                .unwrap_or_else(|e| panic!("Consul at {}: {e}", self.addr)),
        }
    }
}

/// One `GET` of a real Consul's HTTP API: `X-Consul-Index` and the body.
fn real_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u64, String)> {
    let (code, head, body) = crate::backing::http(&addr.to_string(), "GET", path, &[], "")?;
    // A missing key prefix is 404 with the index all the same.
    if code != 200 && code != 404 {
        anyhow::bail!("{path}: HTTP {code}");
    }
    let index = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-consul-index")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| anyhow::anyhow!("{path}: no X-Consul-Index"))?;
    Ok((index, body))
}

impl Drop for ConsulSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("Content-Type", content_type.parse().expect("static header"));
    r
}

fn json(status: u16, v: &serde_json::Value) -> Resp {
    reply(status, "application/json", v.to_string())
}

fn text(status: u16, msg: impl Into<String>) -> Resp {
    reply(status, "text/plain; charset=utf-8", msg.into())
}

/// A query's metadata headers (`setMeta`): the index, and the leader facts
/// a single server always knows.
fn with_index(mut r: Resp, index: u64) -> Resp {
    let h = r.headers_mut();
    h.insert(
        "X-Consul-Index",
        index.max(1).to_string().parse().expect("digits"),
    );
    h.insert("X-Consul-KnownLeader", "true".parse().expect("static"));
    h.insert("X-Consul-LastContact", "0".parse().expect("static"));
    r
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `time.ParseDuration` for the units Consul users write.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(format!("time: invalid duration {s:?}"));
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("time: invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        total += num * unit;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Go's `Duration.String()` for whole and fractional seconds (`15s`, `1m0s`).
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let frac = d.subsec_nanos();
    if secs >= 60 {
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        if h > 0 {
            format!("{h}h{m}m{s}s")
        } else {
            format!("{m}m{s}s")
        }
    } else if frac == 0 {
        format!("{secs}s")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

fn entry_json(key: &str, e: &Entry, with_value: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "LockIndex": e.lock_index,
        "Key": key,
        "Flags": e.flags,
        "Value": if with_value && !e.value.is_empty() {
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(&e.value))
        } else {
            serde_json::Value::Null
        },
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    });
    if let Some(s) = &e.session {
        v["Session"] = serde_json::Value::String(s.clone());
    }
    v
}

fn session_json(s: &Session) -> serde_json::Value {
    serde_json::json!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay.as_nanos() as u64,
        "Behavior": s.behavior.as_str(),
        "TTL": s.ttl,
        "NodeChecks": s.node_checks,
        "ServiceChecks": serde_json::Value::Null,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

/// `?index=&wait=`: `Some((min_index, deadline))` for a blocking query.
/// A bad `index` or `wait` is a 400 with the returned message.
fn blocking(q: &HashMap<String, String>) -> Result<Option<(u64, Instant)>, String> {
    let Some(index) = q.get("index") else {
        return Ok(None);
    };
    let index: u64 = index
        .parse()
        .map_err(|_| format!("Invalid index: {index:?}"))?;
    if index == 0 {
        return Ok(None);
    }
    let wait = match q.get("wait") {
        Some(w) => parse_duration(w).map_err(|e| format!("Invalid wait time: {e}"))?,
        None => Duration::from_secs(300),
    }
    .min(Duration::from_secs(600));
    // Consul adds up to wait/16 of jitter so that waiters spread out.
    let jitter = wait.as_nanos() as u64 / 16;
    let extra = if jitter == 0 {
        0
    } else {
        u64::from(uuid::Uuid::new_v4().as_u128() as u32) % jitter
    };
    Ok(Some((
        index,
        Instant::now() + wait + Duration::from_nanos(extra),
    )))
}

/// Run `read` until its index passes the client's, or the wait ends
/// (`blockingQuery`: a return is no guarantee of a change).
async fn block<T>(
    shared: &Shared,
    q: &HashMap<String, String>,
    read: impl Fn(&State) -> (u64, T),
) -> Result<(u64, T), String> {
    let b = blocking(q)?;
    let mut rx = shared.changed.subscribe();
    loop {
        let (idx, v) = {
            let s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            read(&s)
        };
        let idx = idx.max(1);
        match b {
            Some((min, deadline)) if idx <= min && Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = tokio::time::timeout(left, rx.changed()).await;
            }
            _ => return Ok((idx, v)),
        }
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let q = query(&parts.uri);
    let m = &parts.method;
    let r = if let Some(key) = path.strip_prefix("/v1/kv/") {
        kv(&shared, m, &decode(key), &q, body).await
    } else if path == "/v1/kv" {
        kv(&shared, m, "", &q, body).await
    } else if let Some(rest) = path.strip_prefix("/v1/session/") {
        session(&shared, m, rest, &q, &body).await
    } else if path == "/v1/txn" {
        if m != Method::PUT {
            text(405, format!("method {m} not allowed"))
        } else {
            txn(&shared, &body)
        }
    } else if path == "/v1/status/leader" && m == Method::GET {
        json(200, &serde_json::json!("127.0.0.1:8300"))
    } else if path == "/v1/status/peers" && m == Method::GET {
        json(200, &serde_json::json!(["127.0.0.1:8300"]))
    } else {
        text(404, "404 page not found")
    };
    Ok(r)
}

/// `validateKVKey` of current Consul: no leading `/`, only `a-zA-Z0-9,-_./`,
/// no traversal.
fn validate_key(key: &str) -> Result<(), String> {
    if key.starts_with('/') {
        return Err("key must not begin with a '/'".into());
    }
    if let Some((i, c)) = key
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || ",-_./".contains(*c)))
    {
        return Err(format!(
            "key contains invalid character '{c}' at position {i}. Only alphanumeric characters and ,-_./ are allowed"
        ));
    }
    if key.contains("../") {
        return Err("key contains path traversal sequence".into());
    }
    Ok(())
}

fn conflicting(q: &HashMap<String, String>, flags: &[&str]) -> bool {
    flags.iter().filter(|f| q.contains_key(**f)).count() > 1
}

async fn kv(
    shared: &Shared,
    m: &Method,
    key: &str,
    q: &HashMap<String, String>,
    body: Bytes,
) -> Resp {
    if !key.is_empty() {
        if let Err(e) = validate_key(key) {
            return text(400, e);
        }
    }
    let key = key.to_string();
    match *m {
        Method::GET => {
            let keys = q.contains_key("keys");
            let recurse = q.contains_key("recurse") || keys;
            if key.is_empty() && !recurse {
                return text(400, "Missing key name");
            }
            let sep = q.get("separator").or_else(|| q.get("seperator")).cloned();
            let r = block(shared, q, |s| {
                if recurse {
                    let (idx, entries) = s.kv_list(&key);
                    (idx, entries)
                } else {
                    match s.kv.get(&key) {
                        Some(e) => (e.modify_index, vec![(key.clone(), e.clone())]),
                        None => (s.kv_get_index(), Vec::new()),
                    }
                }
            })
            .await;
            let (idx, entries) = match r {
                Ok(v) => v,
                Err(msg) => return text(400, msg),
            };
            if keys {
                let mut out: Vec<String> = Vec::new();
                for (k, _) in &entries {
                    let shown = match &sep {
                        Some(sep) if !sep.is_empty() => match k[key.len()..].find(sep.as_str()) {
                            Some(i) => k[..key.len() + i + sep.len()].to_string(),
                            None => k.clone(),
                        },
                        _ => k.clone(),
                    };
                    if out.last() != Some(&shown) {
                        out.push(shown);
                    }
                }
                if out.is_empty() && !key.is_empty() {
                    return with_index(text(404, ""), idx);
                }
                return with_index(json(200, &serde_json::json!(out)), idx);
            }
            if entries.is_empty() {
                return with_index(text(404, ""), idx);
            }
            if q.contains_key("raw") && !recurse {
                let mut r = reply(200, "text/plain", entries[0].1.value.clone());
                r.headers_mut()
                    .insert("X-Content-Type-Options", "nosniff".parse().expect("static"));
                return with_index(r, idx);
            }
            let v: Vec<serde_json::Value> = entries
                .iter()
                .map(|(k, e)| entry_json(k, e, true))
                .collect();
            with_index(json(200, &serde_json::Value::Array(v)), idx)
        }
        Method::PUT => {
            if key.is_empty() {
                return text(400, "Missing key name");
            }
            if conflicting(q, &["cas", "acquire", "release"]) {
                return text(
                    400,
                    "Conflicting flags: cas, acquire and release are exclusive\n",
                );
            }
            if body.len() > KV_MAX_VALUE {
                return text(
                    413,
                    format!(
                        "Request body({} bytes) too large, max size: {KV_MAX_VALUE} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
                        body.len()
                    ),
                );
            }
            let flags = match q.get("flags").map(|f| f.parse::<u64>()) {
                None => 0,
                Some(Ok(f)) => f,
                Some(Err(e)) => return text(500, e.to_string()),
            };
            let value = body.to_vec();
            let now = Instant::now();
            let r: Result<bool, String> = if let Some(sid) = q.get("acquire") {
                shared.with(|s| s.kv_lock(&key, value, flags, sid, now))
            } else if let Some(sid) = q.get("release") {
                shared.with(|s| s.kv_unlock(&key, value, flags, sid))
            } else if let Some(cas) = q.get("cas") {
                match cas.parse::<u64>() {
                    Ok(c) => Ok(shared.with(|s| s.kv_cas(&key, value, flags, c))),
                    Err(e) => Err(e.to_string()),
                }
            } else {
                shared.with(|s| s.kv_set(&key, value, flags));
                Ok(true)
            };
            match r {
                Ok(b) => json(200, &serde_json::json!(b)),
                Err(e) => text(500, e),
            }
        }
        Method::DELETE => {
            if conflicting(q, &["recurse", "cas"]) {
                return text(400, "Conflicting flags: recurse and cas are exclusive\n");
            }
            let recurse = q.contains_key("recurse");
            if key.is_empty() && !recurse {
                return text(400, "Missing key name");
            }
            if let Some(cas) = q.get("cas") {
                return match cas.parse::<u64>() {
                    Ok(c) => json(
                        200,
                        &serde_json::json!(shared.with(|s| s.kv_delete_cas(&key, c))),
                    ),
                    Err(e) => text(500, e.to_string()),
                };
            }
            shared.with(|s| s.kv_delete(&key, recurse));
            json(200, &serde_json::json!(true))
        }
        _ => text(405, format!("method {m} not allowed")),
    }
}

/// The fields of a session create body, matched case-insensitively as
/// Consul's decoder does.
fn field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a serde_json::Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn create_session(shared: &Shared, body: &[u8]) -> Resp {
    let mut s = Session {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        node: NODE.into(),
        node_checks: vec!["serfHealth".into()],
        lock_delay: Duration::from_secs(15),
        behavior: Behavior::Release,
        ttl: String::new(),
        ttl_dur: None,
        expires: None,
        create_index: 0,
        modify_index: 0,
    };
    if !body.is_empty() {
        let v: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return text(400, format!("Request decode failed: {e}")),
        };
        let Some(obj) = v.as_object() else {
            return text(400, "Request decode failed: expected a JSON object");
        };
        if let Some(n) = field(obj, "Name").and_then(|v| v.as_str()) {
            s.name = n.into();
        }
        if let Some(n) = field(obj, "Node").and_then(|v| v.as_str()) {
            if n != NODE {
                return text(500, "Missing node registration");
            }
        }
        for name in ["Checks", "NodeChecks"] {
            if let Some(c) = field(obj, name) {
                let checks: Vec<String> = c
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(bad) = checks.iter().find(|c| *c != "serfHealth") {
                    return text(500, format!("Missing check '{bad}' registration"));
                }
                s.node_checks = checks;
            }
        }
        if let Some(d) = field(obj, "LockDelay") {
            // FixupLockDelay: a string is a Go duration, a number is
            // nanoseconds; either below 1000 is taken as seconds.
            let nanos = match d {
                serde_json::Value::String(x) => match parse_duration(x) {
                    Ok(d) => d.as_nanos() as f64,
                    Err(e) => return text(400, format!("Request decode failed: {e}")),
                },
                serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0),
                _ => return text(400, "Request decode failed: LockDelay"),
            };
            let nanos = if nanos < 1000.0 { nanos * 1e9 } else { nanos };
            s.lock_delay = Duration::from_nanos(nanos as u64);
        }
        if let Some(b) = field(obj, "Behavior").and_then(|v| v.as_str()) {
            s.behavior = match b {
                "" | "release" => Behavior::Release,
                "delete" => Behavior::Delete,
                other => return text(500, format!("Invalid session behavior: {other}")),
            };
        }
        if let Some(t) = field(obj, "TTL").and_then(|v| v.as_str()) {
            if !t.is_empty() {
                let d = match parse_duration(t) {
                    Ok(d) => d,
                    Err(e) => return text(500, format!("Session TTL '{t}' invalid: {e}")),
                };
                if !d.is_zero() && (d < state::SESSION_TTL_MIN || d > state::SESSION_TTL_MAX) {
                    return text(
                        500,
                        format!(
                            "Invalid Session TTL '{}', must be between [{}={}]",
                            d.as_nanos(),
                            go_duration(state::SESSION_TTL_MIN),
                            "24h0m0s"
                        ),
                    );
                }
                s.ttl = t.to_string();
                s.ttl_dur = (!d.is_zero()).then_some(d);
            }
        }
    }
    let id = shared.with(|st| st.session_create(s, Instant::now()));
    json(200, &serde_json::json!({ "ID": id }))
}

async fn session(
    shared: &Shared,
    m: &Method,
    rest: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Resp {
    let (op, arg) = rest.split_once('/').unwrap_or((rest, ""));
    match (m.clone(), op) {
        (Method::PUT, "create") => create_session(shared, body),
        (Method::PUT, "destroy") => {
            if arg.is_empty() {
                return text(400, "Missing session");
            }
            shared.with(|s| s.session_destroy(arg, Instant::now()));
            json(200, &serde_json::json!(true))
        }
        (Method::PUT, "renew") => {
            if arg.is_empty() {
                return text(400, "Missing session");
            }
            match shared.with(|s| s.session_renew(arg, Instant::now())) {
                Some(sess) => json(200, &serde_json::json!([session_json(&sess)])),
                None => text(404, format!("Session id '{arg}' not found")),
            }
        }
        (Method::GET, "info" | "list" | "node") => {
            if op != "list" && arg.is_empty() {
                return text(
                    400,
                    if op == "info" {
                        "Missing session"
                    } else {
                        "Missing node name"
                    },
                );
            }
            let (op, arg) = (op.to_string(), arg.to_string());
            let r = block(shared, q, |s| {
                let v: Vec<serde_json::Value> = s
                    .sessions
                    .values()
                    .filter(|x| match op.as_str() {
                        "info" => x.id == arg,
                        "node" => x.node == arg,
                        _ => true,
                    })
                    .map(session_json)
                    .collect();
                (s.session_table_index, v)
            })
            .await;
            match r {
                Ok((idx, v)) => with_index(json(200, &serde_json::Value::Array(v)), idx),
                Err(msg) => text(400, msg),
            }
        }
        (Method::PUT | Method::GET, _) => text(404, "404 page not found"),
        _ => text(405, format!("method {m} not allowed")),
    }
}

fn txn(shared: &Shared, body: &[u8]) -> Resp {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return text(400, format!("Failed to parse body: {e}")),
    };
    let Some(list) = v.as_array() else {
        return text(400, "Failed to parse body: expected a list of operations");
    };
    if list.len() > TXN_MAX_OPS {
        return text(
            413,
            format!(
                "Transaction contains too many operations ({} > {TXN_MAX_OPS})",
                list.len()
            ),
        );
    }
    let mut ops = Vec::new();
    for (i, op) in list.iter().enumerate() {
        let Some(kv) = op
            .as_object()
            .and_then(|o| field(o, "KV"))
            .and_then(|k| k.as_object())
        else {
            return text(400, format!("Failed to parse body: operation {i} is not a KV operation (only KV is modelled)"));
        };
        let s = |n: &str| {
            field(kv, n)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let n = |n: &str| {
            field(kv, n)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let value = match field(kv, "Value").and_then(|v| v.as_str()) {
            None => Vec::new(),
            Some(b) => match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(v) => v,
                Err(e) => {
                    return text(
                        400,
                        format!("Failed to parse body: Value of operation {i}: {e}"),
                    )
                }
            },
        };
        if value.len() > KV_MAX_VALUE {
            return text(
                413,
                format!(
                    "Value for key {:?} is too large ({} > {KV_MAX_VALUE} bytes)",
                    s("Key"),
                    value.len()
                ),
            );
        }
        ops.push(KvOp {
            verb: s("Verb"),
            key: s("Key"),
            value,
            flags: n("Flags"),
            index: n("Index"),
            session: s("Session"),
        });
    }
    let now = Instant::now();
    match shared.with(|st| st.txn(&ops, now)) {
        Ok(results) => {
            let r: Vec<serde_json::Value> = results
                .iter()
                .map(
                    |(k, e, with_value)| serde_json::json!({ "KV": entry_json(k, e, *with_value) }),
                )
                .collect();
            json(
                200,
                &serde_json::json!({ "Results": r, "Errors": serde_json::Value::Null }),
            )
        }
        Err(errors) => {
            let e: Vec<serde_json::Value> = errors
                .iter()
                .map(|(i, what)| serde_json::json!({ "OpIndex": i, "What": what }))
                .collect();
            json(
                409,
                &serde_json::json!({ "Results": serde_json::Value::Null, "Errors": e }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("15").is_err());
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
    }

    #[test]
    fn keys_are_validated_as_consul_does() {
        assert!(validate_key("switchyard/leader").is_ok());
        assert!(validate_key("/x").is_err());
        assert!(validate_key("a b").is_err());
    }
}

#[cfg(test)]
mod compose_reads {
    use super::*;

    /// What the compose backing reads from a real Consul (the index and the
    /// session list, over HTTP/1.0) agrees with what the simulator holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_and_sessions_over_http_match_the_state() {
        let sim = ConsulSim::start("127.0.0.1").await.unwrap();
        let addr = sim.addr;
        let created = tokio::task::spawn_blocking(move || {
            crate::backing::http(
                &addr.to_string(),
                "PUT",
                "/v1/session/create",
                &[],
                r#"{"TTL": "30s"}"#,
            )
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(created.0, 200, "{created:?}");
        let (index, body) = tokio::task::spawn_blocking(move || real_get(addr, "/v1/session/list"))
            .await
            .unwrap()
            .unwrap();
        let listed: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(listed.len(), sim.sessions());
        assert_eq!(listed.len(), 1);
        assert!(index >= 1);
        let (kv_index, _) = tokio::task::spawn_blocking(move || real_get(addr, "/v1/kv/?recurse"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            kv_index >= 1,
            "a 404 for an empty store still carries X-Consul-Index"
        );
    }
}
