//! Connections to members and Sentinels: one multiplexed connection per
//! address, reused across observations and dropped when it fails.

use crate::config::{MemberSpec, RedisConfig};
use crate::error::RedisError;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use std::collections::HashMap;
use std::sync::Mutex;

/// Cached connections, by member name.
pub(crate) struct Connections {
    user: Option<String>,
    password: Option<String>,
    timeout: std::time::Duration,
    cache: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl Connections {
    pub(crate) fn new(cfg: &RedisConfig) -> Self {
        Connections {
            user: cfg.user.clone(),
            password: cfg.password.as_ref().map(|p| p.0.clone()),
            timeout: cfg.connect_timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn connect(&self, m: &MemberSpec) -> Result<MultiplexedConnection, RedisError> {
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&m.name)
        {
            return Ok(c.clone());
        }
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(m.hostname.clone(), m.port),
            redis: RedisConnectionInfo {
                username: self.user.clone(),
                password: self.password.clone(),
                ..RedisConnectionInfo::default()
            },
        };
        let client_err = |source| RedisError::Client {
            member: m.name.clone(),
            what: format!("connecting to {}", m.addr()),
            source,
        };
        let client = Client::open(info).map_err(client_err)?;
        let conn = client
            .get_multiplexed_async_connection_with_config(
                &AsyncConnectionConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout),
            )
            .await
            .map_err(client_err)?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(m.name.clone(), conn.clone());
        Ok(conn)
    }

    /// Run one command on `m`. A failed link is forgotten so the next call
    /// reconnects (a restarted server is a new process on the same port);
    /// a cached link the server closed (Sentinel kills clients of the
    /// members it reconfigures) is replaced once at once.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        m: &MemberSpec,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let cached = self.is_cached(&m.name);
        match self.query_once(m, cmd).await {
            Err(RedisError::Client { source, .. }) if cached && link_failed(&source) => {
                self.query_once(m, cmd).await
            }
            other => other,
        }
    }

    fn is_cached(&self, name: &str) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    async fn query_once<T: redis::FromRedisValue>(
        &self,
        m: &MemberSpec,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let mut conn = self.connect(m).await?;
        match cmd.query_async::<T>(&mut conn).await {
            Ok(v) => Ok(v),
            Err(source) => {
                if link_failed(&source) {
                    self.forget(&m.name);
                }
                Err(RedisError::Client {
                    member: m.name.clone(),
                    what: describe(cmd),
                    source,
                })
            }
        }
    }

    pub(crate) fn forget(&self, name: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

fn link_failed(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// The command's name and sub-command for messages (never its arguments,
/// which may carry a password: `CONFIG SET masterauth ...`).
fn describe(cmd: &redis::Cmd) -> String {
    let parts: Vec<String> = cmd
        .args_iter()
        .take(2)
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).to_uppercase()),
            redis::Arg::Cursor => None,
        })
        .filter(|s| s.chars().all(|c| c.is_ascii_alphabetic() || c == '-'))
        .collect();
    parts.join(" ")
}
