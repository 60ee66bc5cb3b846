//! Shared test plumbing: a simulator, a controller on it, an app client.
#![allow(dead_code)]

use bson::{doc, Document};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::Client;
use std::time::Duration;
use switchyard_controller::Controller;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};
use switchyard_mongodb::MongoController;

pub struct Lab {
    pub sim: MongoSim,
    /// The controller inside the standard layers, as the coordinator runs it.
    pub ctl: std::sync::Arc<dyn switchyard_controller::Controller>,
    /// The store as a topology declares it.
    pub store: switchyard_topology::Store,
    pub app: Client,
}

impl Lab {
    /// The acceptance layout (2 east + 2 west + arbiter), primary settled in east.
    pub async fn start(max_lag_ms: u64) -> Lab {
        let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rs0"))
            .await
            .expect("simulator starts");
        sim.wait_for_primary_in("east", Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("no primary in east:\n{}", sim.describe()));
        let mut store = sim.store();
        store.max_lag_ms = Some(max_lag_ms);
        let ctl = switchyard_controller::layered(
            MongoController::from_store(&store).expect("controller builds"),
        );
        let mut opts = ClientOptions::parse(sim.uri()).await.expect("uri");
        opts.server_selection_timeout = Some(Duration::from_secs(30));
        opts.heartbeat_freq = Some(Duration::from_millis(500));
        let app = Client::with_options(opts).expect("client");
        Lab {
            sim,
            ctl,
            store,
            app,
        }
    }

    pub fn coll(&self) -> mongodb::Collection<Document> {
        self.app.database("app").collection("records")
    }

    pub async fn write_majority(&self, key: i64) -> mongodb::error::Result<()> {
        self.coll()
            .insert_one(doc! { "_id": key })
            .write_concern(WriteConcern::majority())
            .await
            .map(|_| ())
    }

    pub async fn contains(&self, key: i64) -> mongodb::error::Result<bool> {
        Ok(self.coll().find_one(doc! { "_id": key }).await?.is_some())
    }

    pub async fn primary_region(&self) -> Option<String> {
        self.ctl
            .observe()
            .await
            .ok()?
            .primary_region()
            .map(str::to_string)
    }
}
