//! Controller configuration, built and validated from a topology store.

use crate::error::MongoError;
use std::fmt;
use std::time::Duration;
use switchyard_controller::SecretVars;
use switchyard_topology::{Store, StoreKind};

/// One member as the controller needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSpec {
    /// Member name from the topology.
    pub name: String,
    /// Region.
    pub region: String,
    /// `host:port` exactly as in the replica set config.
    pub host: String,
    /// Host part.
    pub hostname: String,
    /// Port.
    pub port: u16,
    /// Priority from the topology (the baseline MakeSticky builds on).
    pub priority: f64,
    /// May become primary.
    pub electable: bool,
    /// Arbiter.
    pub arbiter: bool,
}

/// Validated settings for a [`crate::MongoController`].
#[derive(Clone)]
pub struct MongoConfig {
    /// Store name.
    pub store: String,
    /// Replica set name (`connection.replica_set`).
    pub replica_set: String,
    /// Members in topology order.
    pub members: Vec<MemberSpec>,
    /// User for SCRAM authentication, if any.
    pub user: Option<String>,
    /// Password read from `connection.password_env` (never printed).
    pub(crate) password: Option<String>,
    /// Authentication database.
    pub auth_source: String,
    /// Connect / server-selection timeout for one member.
    pub connect_timeout: Duration,
    /// `secondaryCatchUpPeriodSecs` for planned step-downs.
    pub catch_up: Duration,
    /// The replica set's election timeout (for waits).
    pub election_timeout: Duration,
    /// Lag bound in milliseconds.
    pub max_lag_ms: Option<u64>,
    /// Lag bound in bytes (oplog entries have no byte offsets; see docs).
    pub max_lag_bytes: Option<u64>,
    /// Database that receives the verification write of a switchover.
    pub verify_database: String,
}

// Hand-written: the password must never reach logs.
impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("store", &self.store)
            .field("replica_set", &self.replica_set)
            .field("members", &self.members)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_source", &self.auth_source)
            .field("connect_timeout", &self.connect_timeout)
            .field("catch_up", &self.catch_up)
            .field("election_timeout", &self.election_timeout)
            .field("max_lag_ms", &self.max_lag_ms)
            .field("max_lag_bytes", &self.max_lag_bytes)
            .field("verify_database", &self.verify_database)
            .finish()
    }
}

/// Builds a [`MongoConfig`] from a topology store; every check happens in
/// [`MongoConfigBuilder::build`].
#[derive(Debug, Clone)]
pub struct MongoConfigBuilder {
    store: Store,
    env: SecretVars,
}

impl MongoConfigBuilder {
    /// Start from a topology store.
    pub fn new(store: &Store) -> Self {
        MongoConfigBuilder {
            store: store.clone(),
            env: SecretVars::process(),
        }
    }

    /// Read secrets from these variables instead of the process environment (tests).
    pub fn env(mut self, vars: Vec<(String, String)>) -> Self {
        self.env = SecretVars::given(vars);
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<MongoConfig, MongoError> {
        let s = &self.store;
        let cfg_err = |field: &str, msg: String| MongoError::Config {
            field: format!("stores.{}.{field}", s.name),
            message: msg,
        };
        if s.kind != StoreKind::Mongodb {
            return Err(cfg_err("kind", format!("is {}, expected mongodb", s.kind)));
        }
        let replica_set = s.connection.replica_set.clone().ok_or_else(|| {
            cfg_err(
                "connection.replica_set",
                "is required for a MongoDB replica set".into(),
            )
        })?;
        if s.members.is_empty() {
            return Err(cfg_err("members", "needs at least one member".into()));
        }
        let mut members = Vec::new();
        for (i, m) in s.members.iter().enumerate() {
            let host = m.host.clone().ok_or_else(|| {
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
            members.push(MemberSpec {
                name: m.name.clone(),
                region: m.region.clone(),
                hostname: m.hostname().unwrap_or("").to_string(),
                host,
                port,
                priority: m.priority,
                electable: m.electable(),
                arbiter: m.arbiter,
            });
        }
        let password = match &s.connection.password_env {
            Some(var) => Some(self.env.get(var).ok_or_else(|| {
                cfg_err(
                    "connection.password_env",
                    format!("environment variable {var} is not set"),
                )
            })?),
            None => None,
        };
        if password.is_some() && s.connection.user.is_none() {
            return Err(cfg_err(
                "connection.user",
                "is required when password_env is set".into(),
            ));
        }
        Ok(MongoConfig {
            store: s.name.clone(),
            replica_set,
            members,
            user: s.connection.user.clone(),
            password,
            auth_source: s
                .connection
                .database
                .clone()
                .unwrap_or_else(|| "admin".into()),
            connect_timeout: Duration::from_millis(s.connection.connect_timeout_ms.unwrap_or(2000)),
            catch_up: Duration::from_secs(s.settings.catch_up_secs.unwrap_or(10)),
            election_timeout: Duration::from_millis(
                s.settings.election_timeout_ms.unwrap_or(10_000),
            ),
            max_lag_ms: s.max_lag_ms,
            max_lag_bytes: s.max_lag_bytes,
            verify_database: "switchyard".into(),
        })
    }
}

impl MongoConfig {
    /// Member by host string.
    pub fn by_host(&self, host: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.host == host)
    }
    /// Member by name.
    pub fn by_name(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_topology::{Connection, Member};

    fn store() -> Store {
        Store {
            tags: Vec::new(),
            name: "orders".into(),
            kind: StoreKind::Mongodb,
            depends_on: vec![],
            max_lag_bytes: None,
            max_lag_ms: Some(1000),
            connection: Connection {
                user: Some("sw".into()),
                password_env: Some("ORDERS_PW".into()),
                replica_set: Some("rs0".into()),
                ..Connection::default()
            },
            settings: Default::default(),
            members: vec![Member {
                name: "east-1".into(),
                host: Some("127.0.0.1:27017".into()),
                region: "east".into(),
                priority: 2.0,
                votes: 1,
                arbiter: false,
                hidden: false,
                read_only_replica: false,
                failover_priority: None,
                sentinel: false,
                hooks: Default::default(),
            }],
        }
    }

    #[test]
    fn password_is_read_from_env_and_redacted() {
        let cfg = MongoConfigBuilder::new(&store())
            .env(vec![("ORDERS_PW".into(), "hunter2-secret".into())])
            .build()
            .unwrap();
        assert_eq!(cfg.password.as_deref(), Some("hunter2-secret"));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = MongoConfigBuilder::new(&store())
            .env(vec![])
            .build()
            .unwrap_err();
        let e = err.into_error("orders");
        assert_eq!(e.kind(), switchyard_controller::ErrorKind::Config);
        assert!(
            e.message()
                .contains("stores.orders.connection.password_env"),
            "{e}"
        );

        let mut s = store();
        s.connection.replica_set = None;
        let e = MongoConfigBuilder::new(&s)
            .env(vec![("ORDERS_PW".into(), "x".into())])
            .build()
            .unwrap_err();
        assert!(e
            .into_error("orders")
            .message()
            .contains("connection.replica_set"));

        let mut s = store();
        s.members[0].host = Some("nohost".into());
        let e = MongoConfigBuilder::new(&s)
            .env(vec![("ORDERS_PW".into(), "x".into())])
            .build()
            .unwrap_err();
        assert!(e.into_error("orders").message().contains("members[0].host"));
    }
}
