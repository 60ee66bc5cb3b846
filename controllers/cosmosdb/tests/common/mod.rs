//! A simulated account and a controller for it.

#![allow(dead_code)]

use serde_json::json;
use switchyard_cosmosdb::data::DataPlane;
use switchyard_cosmosdb::secret::Secret;
use switchyard_cosmosdb::CosmosController;
use switchyard_lab::cosmossim::{CosmosSim, CosmosSimSpec};
use switchyard_topology::Store;

/// The collection the tests write to.
pub const COLL: &str = "dbs/lab/colls/items";

pub struct Lab {
    pub sim: CosmosSim,
    /// The controller inside the standard layers, as the coordinator runs it.
    pub ctl: std::sync::Arc<dyn switchyard_controller::Controller>,
    pub store: Store,
    pub dir: tempfile::TempDir,
    data: DataPlane,
}

impl Lab {
    pub async fn start(spec: CosmosSimSpec) -> Lab {
        let sim = CosmosSim::start(spec).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let store = sim.store(dir.path()).await.expect("store");
        let ctl = switchyard_controller::layered(
            CosmosController::from_store(&store).expect("controller builds"),
        );
        let ca = dir.path().join(format!("{}-ca.pem", store.name));
        let http = switchyard_cosmosdb::http_client(ca.to_str()).unwrap();
        Lab {
            sim,
            ctl,
            store,
            dir,
            data: DataPlane::new(http),
        }
    }

    pub async fn three(store: &str) -> Lab {
        Lab::start(CosmosSimSpec::for_regions(
            store,
            &["east", "west", "south"],
        ))
        .await
    }

    fn key(&self) -> Secret {
        Secret::new(self.sim.key())
    }

    /// The region ARM names the write region.
    pub async fn write_region(&self) -> String {
        self.sim
            .write_regions()
            .await
            .unwrap()
            .0
            .expect("a write region")
    }

    /// Create document `id` through `region`'s endpoint; the HTTP status.
    pub async fn write_via(&self, region: &str, id: &str) -> u16 {
        let ep = self.sim.regional_endpoint(region).unwrap().to_string();
        self.data
            .create_document(&self.key(), &ep, COLL, &json!({"id": id}))
            .await
            .expect("data plane answers")
    }

    /// Whether `region` holds document `id`.
    pub async fn has(&self, region: &str, id: &str) -> bool {
        let ep = self.sim.regional_endpoint(region).unwrap().to_string();
        self.data
            .read_document(&self.key(), &ep, COLL, id)
            .await
            .expect("data plane answers")
            .is_some()
    }
}
