//! A lab cluster and the controller for it, as a conformance harness, and
//! helpers the tests share: a writer that counts a write as acknowledged
//! only when `WAIT 1` confirmed a replica has it.

#![allow(dead_code)]

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use switchyard::conformance::{Harness, HarnessError};
use switchyard_lab::redis::{RedisCluster, RedisClusterSpec};
use switchyard_redis::RedisController;

pub struct RedisFixture {
    pub cluster: RedisCluster,
    /// The controller inside the standard layers, as the coordinator runs it.
    pub ctl: std::sync::Arc<dyn switchyard_controller::Controller>,
    conns: Mutex<HashMap<String, MultiplexedConnection>>,
}

/// Connect to `host:port` (a [`switchyard_lab::redis::RedisNode::addr`])
/// with short timeouts.
pub async fn connect(addr: &str) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Duration::from_secs(1))
                .set_response_timeout(Duration::from_secs(3)),
        )
        .await
}

impl RedisFixture {
    pub async fn start(sentinels: bool) -> anyhow::Result<Self> {
        Self::start_with(sentinels, &[]).await
    }

    /// [`RedisFixture::start`] with one more replica in each of `extra`.
    pub async fn start_with(sentinels: bool, extra: &[&str]) -> anyhow::Result<Self> {
        let mut spec = RedisClusterSpec::new(["east", "west", "south"]);
        spec.sentinels = sentinels;
        spec.extra_replicas = extra.iter().map(|r| r.to_string()).collect();
        let cluster = RedisCluster::start(spec).await?;
        let ctl = switchyard_controller::layered(RedisController::from_store(cluster.store())?);
        Ok(RedisFixture {
            cluster,
            ctl,
            conns: Mutex::new(HashMap::new()),
        })
    }

    pub async fn conn(&self, addr: &str) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.conns.lock().unwrap().get(addr) {
            return Ok(c.clone());
        }
        let c = connect(addr).await?;
        self.conns
            .lock()
            .unwrap()
            .insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// The address of the member the controller observes as the only primary.
    pub async fn primary_addr(&self) -> Result<String, HarnessError> {
        let s = self.ctl.observe().await?;
        let p = s.primary().ok_or("no single primary")?;
        Ok(self.cluster.node(&p.name)?.addr())
    }

    /// Every member whose ROLE says master, asked directly.
    pub fn masters(&self) -> Vec<String> {
        self.cluster
            .data_members()
            .filter(|n| self.cluster.is_running(&n.name))
            .filter(|n| {
                self.cluster
                    .cmd(&n.name, &["ROLE"])
                    .is_ok_and(|r| r.starts_with("master"))
            })
            .map(|n| n.name.clone())
            .collect()
    }

    /// What every running Sentinel names as master (`ip:port`).
    pub fn sentinel_views(&self) -> Vec<String> {
        self.cluster
            .nodes()
            .iter()
            .filter(|n| n.sentinel && self.cluster.is_running(&n.name))
            .map(|n| {
                self.cluster
                    .cmd(
                        &n.name,
                        &[
                            "SENTINEL",
                            "GET-MASTER-ADDR-BY-NAME",
                            &self.cluster.store().name,
                        ],
                    )
                    .map(|r| r.replace('\n', ":"))
                    .unwrap_or_else(|e| format!("error: {e}"))
            })
            .collect()
    }
}

/// SET then `WAIT 1`: acknowledged only when a replica confirmed it.
pub async fn acked_set(
    c: &mut MultiplexedConnection,
    key: &str,
    value: &str,
) -> redis::RedisResult<bool> {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(c)
        .await?;
    let n: i64 = redis::cmd("WAIT").arg(1).arg(2000).query_async(c).await?;
    Ok(n >= 1)
}

#[async_trait]
impl Harness for RedisFixture {
    fn store(&self) -> switchyard_topology::Store {
        self.cluster.store().clone()
    }

    async fn write(&self, key: u64) -> Result<(), HarnessError> {
        let port = self.primary_addr().await?;
        let mut c = self.conn(&port).await?;
        let acked = match acked_set(&mut c, &format!("conformance:{key}"), "1").await {
            // Sentinel kills the clients of members it reconfigures.
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                self.conns.lock().unwrap().remove(&port);
                let mut c = self.conn(&port).await?;
                acked_set(&mut c, &format!("conformance:{key}"), "1").await?
            }
            other => other?,
        };
        if acked {
            Ok(())
        } else {
            Err(format!("write {key} not acknowledged by a replica (WAIT 1 returned 0)").into())
        }
    }

    async fn contains(&self, key: u64) -> Result<bool, HarnessError> {
        let port = self.primary_addr().await?;
        let get = redis::cmd("GET").arg(format!("conformance:{key}")).clone();
        let mut c = self.conn(&port).await?;
        let v: Option<String> = match get.query_async(&mut c).await {
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                self.conns.lock().unwrap().remove(&port);
                let mut c = self.conn(&port).await?;
                get.query_async(&mut c).await?
            }
            other => other?,
        };
        Ok(v.is_some())
    }

    async fn kill_member(&self, member: &str) -> Result<(), HarnessError> {
        let port = self.cluster.node(member)?.addr();
        self.conns.lock().unwrap().remove(&port);
        self.cluster.kill(member)?;
        Ok(())
    }

    async fn restart_member(&self, member: &str) -> Result<(), HarnessError> {
        self.cluster.restart(member).await?;
        Ok(())
    }

    /// `CLIENT PAUSE WRITE` on a replica holds its replication stream
    /// (it stays reachable for INFO); 2 MiB written on the master then
    /// put it beyond the lab's 1 MiB bound.
    async fn induce_lag(&self, region: &str) -> Result<bool, HarnessError> {
        let primary = self.primary_addr().await?;
        for n in self.cluster.data_members().filter(|n| n.region == region) {
            if n.addr() != primary {
                self.cluster
                    .cmd(&n.name, &["CLIENT", "PAUSE", "60000", "WRITE"])?;
            }
        }
        let mut c = self.conn(&primary).await?;
        redis::cmd("SET")
            .arg("conformance:lag-filler")
            .arg("x".repeat(2 << 20))
            .query_async::<()>(&mut c)
            .await?;
        Ok(true)
    }

    async fn clear_lag(&self, region: &str) -> Result<(), HarnessError> {
        for n in self.cluster.data_members().filter(|n| n.region == region) {
            self.cluster.cmd(&n.name, &["CLIENT", "UNPAUSE"])?;
        }
        Ok(())
    }
}
