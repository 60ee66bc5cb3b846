//! Driver clients: one direct connection per member (to see each member's
//! own view, even a partitioned one) and one replica-set client (for the
//! verification write, which must follow the primary like an application).

use crate::config::{MemberSpec, MongoConfig};
use crate::error::MongoError;
use bson::Document;
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use mongodb::Client;
use std::time::Duration;
use switchyard_controller::ErrorKind;
use tokio::sync::OnceCell;

/// Lazily created driver clients (creating one spawns monitor tasks, which
/// needs a runtime; the constructor may run outside one).
#[derive(Debug)]
pub struct Connections {
    direct: Vec<OnceCell<Client>>,
    set: OnceCell<Client>,
}

impl Connections {
    /// Empty cells for every member.
    pub fn new(cfg: &MongoConfig) -> Self {
        Connections {
            direct: cfg.members.iter().map(|_| OnceCell::new()).collect(),
            set: OnceCell::new(),
        }
    }

    fn base_options(cfg: &MongoConfig, hosts: Vec<ServerAddress>) -> ClientOptions {
        let mut o = ClientOptions::default();
        o.hosts = hosts;
        o.app_name = Some("switchyard".into());
        o.connect_timeout = Some(cfg.connect_timeout);
        o.server_selection_timeout = Some(cfg.connect_timeout);
        o.heartbeat_freq = Some(Duration::from_millis(500));
        if let Some(user) = &cfg.user {
            let mut c = Credential::default();
            c.username = Some(user.clone());
            c.password = cfg.password.clone();
            c.source = Some(cfg.auth_source.clone());
            o.credential = Some(c);
        }
        o
    }

    fn address(m: &MemberSpec) -> ServerAddress {
        ServerAddress::Tcp {
            host: m.hostname.clone(),
            port: Some(m.port),
        }
    }

    /// Direct client of member `i`.
    pub async fn member(&self, cfg: &MongoConfig, i: usize) -> Result<&Client, MongoError> {
        self.direct[i]
            .get_or_try_init(|| async {
                let mut o = Self::base_options(cfg, vec![Self::address(&cfg.members[i])]);
                o.direct_connection = Some(true);
                Client::with_options(o)
                    .map_err(|e| MongoError::driver(e).member(&cfg.members[i].name))
            })
            .await
    }

    /// Replica-set client (all members as seeds).
    pub async fn set(&self, cfg: &MongoConfig) -> Result<&Client, MongoError> {
        self.set
            .get_or_try_init(|| async {
                let mut o = Self::base_options(
                    cfg,
                    cfg.members
                        .iter()
                        .filter(|m| !m.arbiter)
                        .map(Self::address)
                        .collect(),
                );
                o.repl_set_name = Some(cfg.replica_set.clone());
                o.server_selection_timeout = Some(cfg.connect_timeout.max(Duration::from_secs(5)));
                Client::with_options(o).map_err(MongoError::driver)
            })
            .await
    }

    /// Shut every client created so far down (`Client::shutdown`, not
    /// waiting for operations in flight), so that their monitors and pool
    /// workers end while the runtime still runs: dropped by a runtime that is
    /// shutting down, the driver's connection requester panics
    /// (`connection_requester.rs: SendError`). Bounded in time; afterwards
    /// every operation through these clients fails.
    pub async fn shutdown(&self) {
        let clients: Vec<Client> = self
            .direct
            .iter()
            .chain(std::iter::once(&self.set))
            .filter_map(|c| c.get().cloned())
            .collect();
        let all = futures::future::join_all(
            clients
                .into_iter()
                .map(|c| async move { c.shutdown().immediate(true).await }),
        );
        if tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .is_err()
        {
            tracing::warn!("MongoDB clients did not shut down within 5 s");
        }
    }

    /// Run an admin command on member `i`, bounded in time.
    pub async fn admin(
        &self,
        cfg: &MongoConfig,
        i: usize,
        cmd: Document,
        limit: Duration,
    ) -> Result<Document, MongoError> {
        let name = cfg.members[i].name.clone();
        let client = self.member(cfg, i).await?;
        match tokio::time::timeout(limit, client.database("admin").run_command(cmd)).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(MongoError::driver(e).member(&name)),
            Err(_) => Err(MongoError::new(
                ErrorKind::Unreachable,
                format!("no answer within {limit:?}"),
            )
            .member(&name)),
        }
    }
}
