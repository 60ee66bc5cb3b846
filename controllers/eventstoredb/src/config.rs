//! The controller's configuration, validated from a topology store.

use crate::error::EsdbError;
use std::fmt;
use std::time::Duration;
use switchyard_topology::Store;

/// One node of the cluster as the topology names it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Member name.
    pub name: String,
    /// `host:port` of the node's HTTP/gRPC endpoint, exactly as the node
    /// advertises it in gossip (`httpEndPointIp:httpEndPointPort`).
    pub host: String,
    /// Region.
    pub region: String,
    /// A read-only replica: never votes, never leads.
    pub read_only: bool,
    /// May lead (priority above 0 and not a read-only replica).
    pub electable: bool,
}

/// Validated configuration of one EventStoreDB store.
#[derive(Clone)]
pub struct EsdbConfig {
    /// Store name.
    pub store: String,
    /// Nodes in topology order.
    pub nodes: Vec<NodeSpec>,
    /// Talk TLS (`connection.tls = "require"` or an `https://` endpoint).
    pub tls: bool,
    /// User for basic authentication (`connection.user`).
    pub user: Option<String>,
    /// The password, read from the variable `connection.password_env` names.
    password: Option<String>,
    /// Per-request timeout (`connection.connect_timeout_ms`, default 2 s).
    pub timeout: Duration,
    /// `max_lag_bytes` of the store: a planned target must be within it.
    pub max_lag_bytes: Option<u64>,
    /// How long a planned switchover waits for the target to catch up and
    /// for the new leader (`settings.catch_up_secs`, default 30 s).
    pub catch_up: Duration,
}

impl fmt::Debug for EsdbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsdbConfig")
            .field("store", &self.store)
            .field("nodes", &self.nodes)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_lag_bytes", &self.max_lag_bytes)
            .field("catch_up", &self.catch_up)
            .finish()
    }
}

impl EsdbConfig {
    /// Validate a topology store of kind `eventstoredb`.
    pub fn from_store(store: &Store) -> Result<Self, EsdbError> {
        let mut nodes = Vec::new();
        for (i, m) in store.members.iter().enumerate() {
            let host = m.host.clone().ok_or_else(|| {
                EsdbError::config(
                    format!("stores.{}.members[{i}].host", store.name),
                    "is required: the node's HTTP/gRPC endpoint as HOST:PORT",
                )
            })?;
            if m.port().is_none() {
                return Err(EsdbError::config(
                    format!("stores.{}.members[{i}].host", store.name),
                    format!("`{host}` is not HOST:PORT"),
                ));
            }
            nodes.push(NodeSpec {
                name: m.name.clone(),
                host,
                region: m.region.clone(),
                read_only: m.read_only_replica,
                electable: m.electable(),
            });
        }
        if !nodes.iter().any(|n| !n.read_only) {
            return Err(EsdbError::config(
                format!("stores.{}.members", store.name),
                "needs at least one node that is not a read-only replica",
            ));
        }
        let c = &store.connection;
        let tls = c.tls.as_deref() == Some("require")
            || c.endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("https://"));
        let password = match &c.password_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                EsdbError::config(
                    format!("stores.{}.connection.password_env", store.name),
                    format!("names `{var}`, which is not set"),
                )
            })?),
            None => None,
        };
        Ok(EsdbConfig {
            store: store.name.clone(),
            nodes,
            tls,
            user: c.user.clone(),
            password,
            timeout: Duration::from_millis(c.connect_timeout_ms.unwrap_or(2000)),
            max_lag_bytes: store.max_lag_bytes,
            catch_up: Duration::from_secs(store.settings.catch_up_secs.unwrap_or(30)),
        })
    }

    /// Cluster size: voting nodes.
    pub fn cluster_size(&self) -> usize {
        self.nodes.iter().filter(|n| !n.read_only).count()
    }

    /// Votes needed to elect a leader or commit a write.
    pub fn quorum(&self) -> usize {
        self.cluster_size() / 2 + 1
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// Credentials for basic authentication, when configured.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        Some((
            self.user.as_deref()?,
            self.password.as_deref().unwrap_or(""),
        ))
    }

    /// A connection string for the official client: several hosts are
    /// gossip seeds (the client discovers the leader through them), one
    /// host is that node alone. (`kurrentdb+discover://` would treat only
    /// the first host as a DNS name to discover through.)
    pub(crate) fn connection_string(&self, hosts: &[&str]) -> String {
        let auth = match self.credentials() {
            Some((u, p)) => format!("{u}:{p}@"),
            None => String::new(),
        };
        let scheme = "kurrentdb";
        format!(
            "{scheme}://{auth}{}?tls={}&gossipTimeout={}&defaultDeadline={}",
            hosts.join(","),
            self.tls,
            self.timeout.as_millis(),
            self.timeout.as_millis() * 3
        )
    }
}
