//! A simulated cluster with the controller and an independent client.
#![allow(dead_code)]

use kurrentdb::{AppendToStreamOptions, Client, EventData, ReadStreamOptions, StreamState};
use std::time::Duration;
use switchyard_eventstoredb::EsdbController;
use switchyard_lab::esdbsim::{EsdbSim, EsdbSimSpec};

/// Simulator, controller and a client of the cluster.
pub struct Lab {
    pub sim: EsdbSim,
    /// The controller inside the standard layers, as the coordinator runs it.
    pub ctl: std::sync::Arc<dyn switchyard_controller::Controller>,
    /// The store as a topology declares it.
    pub store: switchyard_topology::Store,
    client: std::sync::Mutex<std::sync::Arc<Client>>,
}

impl Lab {
    /// One node per region of `east,west,south`; `max_lag_bytes` bound.
    pub async fn start(max_lag_bytes: u64) -> Lab {
        Self::start_with(max_lag_bytes, false).await
    }

    /// [`Lab::start`], with a second node in south when `two_in_south`
    /// (two promotion candidates there, for `--candidate`). Not in west:
    /// the lag cases hold west back, and with west's two nodes behind, the
    /// other two of four are no quorum for an append.
    pub async fn start_with(max_lag_bytes: u64, two_in_south: bool) -> Lab {
        let regions: Vec<String> = ["east", "west", "south"].map(String::from).to_vec();
        let mut spec = EsdbSimSpec::for_regions("ledger", &regions);
        if two_in_south {
            let mut n = spec.nodes[2].clone();
            n.name = "ledger-south-2".into();
            spec.nodes.push(n);
        }
        let sim = EsdbSim::start(spec).await.expect("simulator starts");
        sim.wait_for_leader_in("east", Duration::from_secs(30))
            .await
            .expect("a leader in east");
        let mut store = sim.store();
        store.max_lag_bytes = Some(max_lag_bytes);
        store.settings.catch_up_secs = Some(30);
        let ctl = switchyard_controller::layered(
            EsdbController::from_store(&store).expect("valid store"),
        );
        let client = std::sync::Mutex::new(std::sync::Arc::new(new_client(&sim)));
        Lab {
            sim,
            ctl,
            store,
            client,
        }
    }

    /// The current client of the cluster.
    pub fn client(&self) -> std::sync::Arc<Client> {
        self.client.lock().unwrap().clone()
    }

    /// Replace the client after a failure: kurrentdb 1.2 re-selects a node
    /// only after a not-leader error, so after a dead leader it needs a new
    /// client to discover the new one.
    fn reset(&self) {
        *self.client.lock().unwrap() = std::sync::Arc::new(new_client(&self.sim));
    }

    /// Append one event with a given id, retrying while the cluster elects;
    /// `Ok` only once the leader acknowledged it.
    pub async fn append(&self, stream: &str, id: uuid::Uuid, size: usize) -> Result<(), String> {
        let ev = EventData::binary("test", vec![b'x'; size].into()).id(id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self
                .client()
                .append_to_stream(
                    stream,
                    &AppendToStreamOptions::default().stream_state(StreamState::Any),
                    ev.clone(),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(kurrentdb::Error::NotLeaderException(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(_) if tokio::time::Instant::now() < deadline => {
                    self.reset();
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(format!("append {id}: {e}")),
            }
        }
    }

    /// One append attempt, without retries (a not-leader answer or an
    /// election in progress is an error; the client is replaced after a
    /// failure other than not-leader).
    pub async fn append_once(&self, stream: &str, id: uuid::Uuid) -> Result<(), String> {
        let ev = EventData::binary("test", b"payload".to_vec().into()).id(id);
        match self
            .client()
            .append_to_stream(
                stream,
                &AppendToStreamOptions::default().stream_state(StreamState::Any),
                ev,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e @ kurrentdb::Error::NotLeaderException(_)) => Err(e.to_string()),
            Err(e) => {
                self.reset();
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(e.to_string())
            }
        }
    }

    /// Every event id of `stream` as the leader returns them.
    pub async fn read_ids(&self, stream: &str) -> Result<Vec<uuid::Uuid>, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let client = self.client();
            let r = async {
                let mut s = client
                    .read_stream(stream, &ReadStreamOptions::default().requires_leader(true))
                    .await?;
                let mut ids = Vec::new();
                loop {
                    match s.next().await {
                        Ok(Some(e)) => ids.push(e.get_original_event().id),
                        Ok(None) => return Ok(ids),
                        Err(kurrentdb::Error::ResourceNotFound) => return Ok(ids),
                        Err(e) => return Err(e),
                    }
                }
            }
            .await;
            match r {
                Ok(ids) => return Ok(ids),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    self.reset();
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(format!("read {stream}: {e}")),
            }
        }
    }
}

fn new_client(sim: &EsdbSim) -> Client {
    Client::new(sim.connection_string().parse().expect("connection string")).expect("client")
}

/// A deterministic event id for a key.
pub fn id_for(key: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x5157_0000_0000_0000_0000_0000_0000_0000 | u128::from(key))
}
