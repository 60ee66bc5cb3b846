//! Store kind → controller. The only place that knows which crate implements
//! which kind of store; everything else in the coordinator speaks the
//! [`Controller`] contract.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use switchyard_controller::{Capability, Controller, Notation};
use switchyard_topology::{Store, StoreKind, Topology};

/// A store whose controller could not be built.
#[derive(Debug, thiserror::Error)]
#[error("store `{store}` ({kind}): {message}")]
pub struct RegistryError {
    /// Store name.
    pub store: String,
    /// Store kind.
    pub kind: StoreKind,
    /// Why.
    pub message: String,
}

/// Build the controller for one store, inside the standard layers
/// ([`switchyard_controller::layers::standard`]: tracing span, error
/// policy, capability gating, fencing). Construction validates the store's
/// configuration; it does not connect.
pub fn controller_for(store: &Store) -> Result<Arc<dyn Controller>, RegistryError> {
    controller_in(store, None)
}

/// Like [`controller_for`], keeping the store's last-known state (the
/// evidence a later forced failover estimates its loss from) in `state_dir`.
pub fn controller_in(
    store: &Store,
    state_dir: Option<&Path>,
) -> Result<Arc<dyn Controller>, RegistryError> {
    bare_controller_in(store, state_dir).map(switchyard_controller::layers::standard)
}

/// The controller alone, without layers.
fn bare_controller_in(
    store: &Store,
    state_dir: Option<&Path>,
) -> Result<Arc<dyn Controller>, RegistryError> {
    let err = |message: String| RegistryError {
        store: store.name.clone(),
        kind: store.kind,
        message,
    };
    match store.kind {
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => {
            let mut b = switchyard_postgres::PostgresController::builder(store);
            if let Some(dir) = state_dir {
                b = b.state_dir(dir);
            }
            b.build()
                .map(|c| Arc::new(c) as Arc<dyn Controller>)
                .map_err(|e| err(e.to_string()))
        }
        #[cfg(feature = "mongodb")]
        StoreKind::Mongodb => switchyard_mongodb::MongoController::from_store_in(store, state_dir)
            .map(|c| Arc::new(c) as Arc<dyn Controller>)
            .map_err(|e| err(e.to_string())),
        #[cfg(feature = "cosmosdb")]
        StoreKind::Cosmosdb => switchyard_cosmosdb::CosmosController::from_store(store)
            .map(|c| Arc::new(c) as Arc<dyn Controller>)
            .map_err(|e| err(e.to_string())),
        #[cfg(feature = "eventstoredb")]
        StoreKind::Eventstoredb => switchyard_eventstoredb::EsdbController::from_store(store)
            .map(|c| Arc::new(c) as Arc<dyn Controller>)
            .map_err(|e| err(e.to_string())),
        #[cfg(feature = "redis")]
        StoreKind::Redis => switchyard_redis::RedisController::from_store_in(store, state_dir)
            .map(|c| Arc::new(c) as Arc<dyn Controller>)
            .map_err(|e| err(e.to_string())),
        // Reachable only in a build without one of the features above.
        #[allow(unreachable_patterns)]
        other => Err(err(format!(
            "this build of switchyard has no {other} controller (cargo feature `{other}`)"
        ))),
    }
}

/// How stores of `kind` write positions and name their term, for printing
/// without a controller at hand (a report read back from a journal). The
/// same constant each controller returns from [`Controller::notation`].
pub fn notation(kind: StoreKind) -> Notation {
    match kind {
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => switchyard_postgres::NOTATION,
        #[cfg(feature = "mongodb")]
        StoreKind::Mongodb => switchyard_mongodb::NOTATION,
        #[cfg(feature = "cosmosdb")]
        StoreKind::Cosmosdb => switchyard_cosmosdb::NOTATION,
        #[cfg(feature = "eventstoredb")]
        StoreKind::Eventstoredb => switchyard_eventstoredb::NOTATION,
        #[cfg(feature = "redis")]
        StoreKind::Redis => switchyard_redis::NOTATION,
        #[allow(unreachable_patterns)]
        _ => Notation::PLAIN,
    }
}

/// Controllers for every store of a topology, by store name.
pub fn controllers_for(
    topology: &Topology,
) -> Result<BTreeMap<String, Arc<dyn Controller>>, RegistryError> {
    controllers_in(topology, None)
}

/// Controllers for every store, keeping last-known states in `state_dir`.
pub fn controllers_in(
    topology: &Topology,
    state_dir: Option<&Path>,
) -> Result<BTreeMap<String, Arc<dyn Controller>>, RegistryError> {
    topology
        .stores
        .iter()
        .map(|s| Ok((s.name.clone(), controller_in(s, state_dir)?)))
        .collect()
}

/// The capability of every controller, by store name.
pub fn capabilities(
    controllers: &BTreeMap<String, Arc<dyn Controller>>,
) -> BTreeMap<String, Capability> {
    controllers
        .iter()
        .map(|(n, c)| (n.clone(), c.capability()))
        .collect()
}
