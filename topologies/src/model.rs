//! The topology model: regions, stores and their members, as written in a
//! topology file. These are plain data types; parsing with source locations
//! lives in `parse.rs`, rules in `check.rs`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A whole topology file: the regions of one system and its replicated stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Name of the system this topology describes.
    pub name: String,
    /// Every region a member may live in.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Every replicated source-of-truth store.
    #[serde(default)]
    pub stores: Vec<Store>,
    /// Headroom, in percent of the total load, that the survivors of a
    /// region loss should keep; topocheck warns below it (see `capacity.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_margin_percent: Option<f64>,
}

/// A region (data centre, cloud region) hosting members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Unique region name, referenced by members.
    pub name: String,
    /// What the region is for.
    pub role: RegionRole,
    /// How much load the region can carry, in the topology's own units
    /// (requests/s, cores…); the same units as `load`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
    /// How much load the region carries now, in the units of `capacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
}

/// The intended role of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionRole {
    /// The region where primaries are preferred.
    Primary,
    /// A region that can take over.
    Secondary,
    /// Hosts tie-breakers (arbiters) only.
    Witness,
}

/// The kind of datastore a store is; selects the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// MongoDB replica set.
    Mongodb,
    /// PostgreSQL streaming replication.
    Postgres,
    /// Azure Cosmos DB multi-region account.
    Cosmosdb,
    /// EventStoreDB cluster.
    Eventstoredb,
    /// Redis replication, optionally managed by Sentinel.
    Redis,
}

impl StoreKind {
    /// The lowercase name used in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Mongodb => "mongodb",
            StoreKind::Postgres => "postgres",
            StoreKind::Cosmosdb => "cosmosdb",
            StoreKind::Eventstoredb => "eventstoredb",
            StoreKind::Redis => "redis",
        }
    }

    /// Whether members elect their primary among themselves by majority vote.
    pub fn elects(self) -> bool {
        matches!(self, StoreKind::Mongodb | StoreKind::Eventstoredb)
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replicated store and its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// Unique store name.
    pub name: String,
    /// Which kind of datastore this is.
    pub kind: StoreKind,
    /// Stores that must be promoted before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Largest replication lag, in bytes of WAL/oplog, that a promotion target
    /// may have without the operator accepting data loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_bytes: Option<u64>,
    /// Largest replication lag, in milliseconds, that a promotion target may
    /// have without the operator accepting data loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_ms: Option<u64>,
    /// How the controller connects; secrets are referenced, never inlined.
    #[serde(default)]
    pub connection: Connection,
    /// Store-kind specific settings (election timing and the like).
    #[serde(default)]
    pub settings: Settings,
    /// The store's members.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Free-form labels a safety policy can select stores by (`pii`, `payments`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Store {
    /// Members located in `region`.
    pub fn members_in<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.members.iter().filter(move |m| m.region == region)
    }

    /// Look a member up by name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// Connection settings shared by every member of a store.
///
/// Secrets are never written in the file: `password_env` and `key_env` name
/// environment variables that hold them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// User name to log in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Database to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// TLS mode: `disable`, `prefer` or `require`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// Path to a PEM bundle of CA certificates: when set, the server
    /// certificate is verified against it, host name included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// Connect timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// MongoDB replica set name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<String>,
    /// Service endpoint (Cosmos DB account / ARM endpoint, EventStoreDB HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Environment variable holding an access key or token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// Azure: the account's management plane (ARM) and identity (cosmosdb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureConnection>,
}

/// How a Cosmos DB controller reaches Azure Resource Manager and Microsoft
/// Entra ID (`[stores.connection.azure]`). Secrets are referenced by
/// environment variable or file, never inlined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConnection {
    /// Full ARM resource id of the database account
    /// (`/subscriptions/…/resourceGroups/…/providers/Microsoft.DocumentDB/databaseAccounts/…`).
    pub account: String,
    /// ARM endpoint (default `https://management.azure.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_endpoint: Option<String>,
    /// How to get ARM tokens: `client_secret` (default when `client_id` and a
    /// secret are set), `workload_identity`, `managed_identity`, `azure_cli`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Entra ID authority host (default `https://login.microsoftonline.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// Directory (tenant) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Application (client) id of the service principal or managed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// File holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<String>,
    /// File holding the account's master key (instead of `key_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Azure location name of each topology region, e.g.
    /// `{ chicago = "North Central US" }`; a region not listed is its own
    /// location name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, String>,
}

// Hand-written so that a future inline secret field can never leak through
// `{:?}`; the env var *names* are not secret and help debugging.
impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("user", &self.user)
            .field("database", &self.database)
            .field("password_env", &self.password_env)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("replica_set", &self.replica_set)
            .field("endpoint", &self.endpoint)
            .field("key_env", &self.key_env)
            .field("azure", &self.azure)
            .finish()
    }
}

/// Store-kind specific tuning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// MongoDB/EventStoreDB: election timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_ms: Option<u64>,
    /// MongoDB/EventStoreDB: heartbeat interval in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    /// MongoDB: `secondaryCatchUpPeriodSecs` used on planned step-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_secs: Option<u64>,
    /// Redis: the name the Sentinels monitor the master under (default:
    /// the store's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
    /// Redis: the quorum of `sentinel monitor` (default: a majority of the
    /// store's Sentinels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_quorum: Option<u32>,
}

/// One member (node, replica, account location) of a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Unique member name within the topology.
    pub name: String,
    /// `host:port`; not needed for cosmosdb locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Region the member lives in.
    pub region: String,
    /// Election / promotion preference; higher is preferred, 0 never elected.
    #[serde(default = "default_priority")]
    pub priority: f64,
    /// MongoDB: votes (0 or 1).
    #[serde(default = "default_votes")]
    pub votes: u32,
    /// MongoDB: an arbiter (votes, holds no data).
    #[serde(default)]
    pub arbiter: bool,
    /// MongoDB: hidden member (never primary, invisible to clients).
    #[serde(default)]
    pub hidden: bool,
    /// EventStoreDB: read-only replica (never votes, never promoted).
    #[serde(default)]
    pub read_only_replica: bool,
    /// Cosmos DB: failover priority, 0 is the write region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<u32>,
    /// Redis: a Sentinel (votes on failovers, holds no data, never primary).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sentinel: bool,
    /// Commands that need the host (stop, start as follower, rewind).
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
}

fn default_priority() -> f64 {
    1.0
}

fn default_votes() -> u32 {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Member {
    /// Whether this member may ever become primary (data-bearing, electable).
    pub fn electable(&self) -> bool {
        self.priority > 0.0
            && !self.arbiter
            && !self.hidden
            && !self.read_only_replica
            && !self.sentinel
    }

    /// Votes this member casts in elections (read-only replicas never vote).
    pub fn effective_votes(&self) -> u32 {
        if self.read_only_replica {
            0
        } else {
            self.votes
        }
    }

    /// Host part of `host`, if any.
    pub fn hostname(&self) -> Option<&str> {
        self.host
            .as_deref()
            .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h))
    }

    /// Port part of `host`, if any and numeric.
    pub fn port(&self) -> Option<u16> {
        self.host.as_deref()?.rsplit_once(':')?.1.parse().ok()
    }
}

/// Per-member host commands, as templates. Placeholders such as `{member}`,
/// `{host}`, `{port}`, `{primary_host}`, `{primary_port}` are filled by the
/// controller that runs them; see docs/topology.md.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Stop the member's server process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Start the member's server (as it is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Reconfigure and start the member as a follower of `{primary_host}:{primary_port}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_as_standby: Option<String>,
    /// Rewind a diverged former primary onto the new timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<String>,
    /// Timeout for any one hook, in milliseconds (default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Extra named hooks a controller may use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl Hooks {
    /// True when no hook is configured.
    pub fn is_empty(&self) -> bool {
        self.stop.is_none()
            && self.start.is_none()
            && self.start_as_standby.is_none()
            && self.rewind.is_none()
            && self.timeout_ms.is_none()
            && self.extra.is_empty()
    }
}

impl Topology {
    /// Look a store up by name.
    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores.iter().find(|s| s.name == name)
    }

    /// Look a region up by name.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Serialise back to TOML (used by the lab to write topology files).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("topology model always serialises")
    }
}
