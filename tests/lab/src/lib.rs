//! The lab: real local PostgreSQL clusters, real Redis replication with
//! Sentinel, real etcd, a Consul simulator, and protocol-level simulators of
//! stores that cannot run on these machines, for tests, demos and benchmarks.
pub mod backing;
pub mod consulsim;
pub mod cosmossim;
pub mod esdbsim;
pub mod etcd;
pub mod mongosim;
pub mod netns;
pub mod postgres;
pub mod python_client;
pub mod redis;

/// Regions for a lab topology: the first primary, the others secondary.
pub fn regions_first_primary(names: &[String]) -> Vec<switchyard_topology::Region> {
    use switchyard_topology::{Region, RegionRole};
    names
        .iter()
        .enumerate()
        .map(|(i, r)| Region {
            capacity: None,
            load: None,
            name: r.clone(),
            role: if i == 0 {
                RegionRole::Primary
            } else {
                RegionRole::Secondary
            },
        })
        .collect()
}
