//! Controller configuration, built and validated from a topology store.

use crate::error::RedisError;
use std::fmt;
use std::time::Duration;
use switchyard_controller::SecretVars;
use switchyard_topology::{Store, StoreKind};

/// One data member (master or replica) or Sentinel as the controller needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSpec {
    /// Member name from the topology.
    pub name: String,
    /// Region.
    pub region: String,
    /// Host part of `host`, exactly as replicas report their master
    /// (`master_host`) and the master its replicas (`ip=`).
    pub hostname: String,
    /// Port.
    pub port: u16,
    /// Promotion preference from the topology (higher is preferred, 0 never).
    pub priority: f64,
}

impl MemberSpec {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.hostname, self.port)
    }

    /// May be promoted.
    pub fn electable(&self) -> bool {
        self.priority > 0.0
    }
}

/// A password that never reaches `Debug` output.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Validated settings for a [`crate::RedisController`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Store name.
    pub store: String,
    /// Data members in topology order.
    pub members: Vec<MemberSpec>,
    /// Sentinels (`sentinel = true` members); empty when Switchyard alone
    /// fails the store over.
    pub sentinels: Vec<MemberSpec>,
    /// Name the Sentinels monitor the master under.
    pub master_name: String,
    /// ACL user, if any.
    pub user: Option<String>,
    /// Password from `connection.password_env` (never printed).
    pub(crate) password: Option<Secret>,
    /// Connect and per-command response timeout.
    pub connect_timeout: Duration,
    /// Lag bound in bytes of replication stream.
    pub max_lag_bytes: Option<u64>,
    /// How long a promotion (FAILOVER TO, SENTINEL FAILOVER) may take.
    pub failover_timeout: Duration,
    /// How long `CLIENT PAUSE WRITE` holds writers on a fenced master
    /// without Sentinel (with Sentinel: half its down-after-milliseconds).
    pub pause: Duration,
    /// Poll interval of the controller's own waits.
    pub poll: Duration,
}

impl RedisConfig {
    /// Whether Sentinel manages this store.
    pub fn sentinel_managed(&self) -> bool {
        !self.sentinels.is_empty()
    }

    /// Data member by name.
    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Data member by `host:port` as Redis reports it.
    pub fn by_addr(&self, host: &str, port: u16) -> Option<&MemberSpec> {
        self.members
            .iter()
            .find(|m| m.port == port && m.hostname.eq_ignore_ascii_case(host))
    }
}

/// Builds a [`RedisConfig`] from a topology store; every check happens in
/// [`RedisConfigBuilder::build`].
#[derive(Debug, Clone)]
pub struct RedisConfigBuilder {
    store: Store,
    env: SecretVars,
    failover_timeout: Duration,
    poll: Duration,
}

impl RedisConfigBuilder {
    /// Start from a topology store.
    pub fn new(store: &Store) -> Self {
        RedisConfigBuilder {
            store: store.clone(),
            env: SecretVars::process(),
            failover_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(20),
        }
    }

    /// Read secrets from these variables instead of the process environment (tests).
    pub fn env(mut self, vars: Vec<(String, String)>) -> Self {
        self.env = SecretVars::given(vars);
        self
    }

    /// How long a promotion may take (default 30 s).
    pub fn failover_timeout(mut self, t: Duration) -> Self {
        self.failover_timeout = t;
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<RedisConfig, RedisError> {
        let s = &self.store;
        let cfg_err = |field: &str, msg: String| RedisError::Config {
            field: format!("stores.{}.{field}", s.name),
            message: msg,
        };
        if s.kind != StoreKind::Redis {
            return Err(cfg_err("kind", format!("is {}, expected redis", s.kind)));
        }
        if s.max_lag_ms.is_some() {
            return Err(cfg_err(
                "max_lag_ms",
                "cannot be enforced for redis: the replication stream carries no timestamps, \
                 so a replica's delay in time is not observable; use max_lag_bytes"
                    .into(),
            ));
        }
        let mut members = Vec::new();
        let mut sentinels = Vec::new();
        for (i, m) in s.members.iter().enumerate() {
            let host = m.host.as_deref().ok_or_else(|| {
                cfg_err(
                    &format!("members[{i}].host"),
                    "is required (host:port)".into(),
                )
            })?;
            let port = m.port().ok_or_else(|| {
                cfg_err(
                    &format!("members[{i}].host"),
                    format!("{host:?} has no numeric port"),
                )
            })?;
            let spec = MemberSpec {
                name: m.name.clone(),
                region: m.region.clone(),
                hostname: m.hostname().unwrap_or("").to_string(),
                port,
                priority: m.priority,
            };
            if m.sentinel {
                sentinels.push(spec);
            } else {
                members.push(spec);
            }
        }
        if members.is_empty() {
            return Err(cfg_err(
                "members",
                "needs at least one data member (sentinel = false)".into(),
            ));
        }
        let password = match &s.connection.password_env {
            Some(var) => Some(Secret(self.env.get(var).ok_or_else(|| {
                cfg_err(
                    "connection.password_env",
                    format!("environment variable {var} is not set"),
                )
            })?)),
            None => None,
        };
        if let Some(tls) = s.connection.tls.as_deref().filter(|t| *t != "disable") {
            return Err(cfg_err(
                "connection.tls",
                format!("{tls:?} is not supported by the redis controller yet; use \"disable\""),
            ));
        }
        if s.settings.sentinel_master.is_some() && sentinels.is_empty() {
            return Err(cfg_err(
                "settings.sentinel_master",
                "is set but the store has no member with sentinel = true".into(),
            ));
        }
        Ok(RedisConfig {
            store: s.name.clone(),
            members,
            sentinels,
            master_name: s
                .settings
                .sentinel_master
                .clone()
                .unwrap_or_else(|| s.name.clone()),
            user: s.connection.user.clone(),
            password,
            connect_timeout: Duration::from_millis(s.connection.connect_timeout_ms.unwrap_or(2000)),
            max_lag_bytes: s.max_lag_bytes,
            failover_timeout: self.failover_timeout,
            pause: Duration::from_secs(10),
            poll: self.poll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_topology::{Connection, Member};

    fn member(name: &str, port: u16, sentinel: bool) -> Member {
        Member {
            name: name.into(),
            host: Some(format!("127.0.0.1:{port}")),
            region: "east".into(),
            priority: 1.0,
            votes: 1,
            arbiter: false,
            hidden: false,
            read_only_replica: false,
            failover_priority: None,
            sentinel,
            hooks: Default::default(),
        }
    }

    fn store() -> Store {
        Store {
            tags: Vec::new(),
            name: "sessions".into(),
            kind: StoreKind::Redis,
            depends_on: vec![],
            max_lag_bytes: Some(1 << 20),
            max_lag_ms: None,
            connection: Connection {
                password_env: Some("SESSIONS_PW".into()),
                ..Connection::default()
            },
            settings: Default::default(),
            members: vec![member("r1", 6379, false), member("s1", 26379, true)],
        }
    }

    #[test]
    fn password_is_read_from_env_and_redacted() {
        let cfg = RedisConfigBuilder::new(&store())
            .env(vec![("SESSIONS_PW".into(), "hunter2-secret".into())])
            .build()
            .unwrap();
        assert_eq!(
            cfg.password.as_ref().map(|p| p.0.as_str()),
            Some("hunter2-secret")
        );
        assert!(cfg.sentinel_managed());
        assert_eq!(cfg.master_name, "sessions");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn errors_name_the_field() {
        let e = RedisConfigBuilder::new(&store())
            .env(vec![])
            .build()
            .unwrap_err()
            .into_error("sessions");
        assert_eq!(e.kind(), switchyard_controller::ErrorKind::Config);
        assert!(
            e.message()
                .contains("stores.sessions.connection.password_env"),
            "{e}"
        );
        let mut s = store();
        s.connection.password_env = None;
        s.max_lag_ms = Some(100);
        let e = RedisConfigBuilder::new(&s)
            .build()
            .unwrap_err()
            .into_error("sessions");
        assert!(e.message().contains("stores.sessions.max_lag_ms"), "{e}");
        let mut s = store();
        s.connection.password_env = None;
        s.members[0].host = Some("nohost".into());
        let e = RedisConfigBuilder::new(&s)
            .build()
            .unwrap_err()
            .into_error("sessions");
        assert!(e.message().contains("members[0].host"), "{e}");
        let mut s = store();
        s.connection.password_env = None;
        s.members.remove(0);
        let e = RedisConfigBuilder::new(&s)
            .build()
            .unwrap_err()
            .into_error("sessions");
        assert!(e.message().contains("at least one data member"), "{e}");
    }
}
