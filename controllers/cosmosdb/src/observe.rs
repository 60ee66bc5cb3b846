//! What the controller sees: the ARM account and each regional data-plane
//! view, combined so that "primary in R" holds only when both planes agree.
//!
//! During a change of write region the data plane lists the old and the new
//! region as writable for a while, and ARM may already (or still) name
//! either. Until ARM's write region is the one region every reachable
//! regional endpoint lists as writable (for multi-region-write accounts:
//! until the writable sets match ARM's write locations), no member is
//! reported primary; the disagreement is in the members' `detail`.

use crate::arm::{same_location, Account};
use crate::data::DataAccount;
use crate::error::{CResult, CosmosError};
use crate::CosmosController;
use switchyard_controller::{MemberState, ObservedState, Role, StoreKind};

/// One observation of both planes.
#[derive(Debug)]
pub struct Snapshot {
    /// The ARM account.
    pub account: Account,
    /// Per configured location: its data-plane view, or why there is none.
    pub views: Vec<Result<DataAccount, String>>,
    /// The global endpoint's view, when one is configured and answered (it
    /// is routed to the write region, so it is silent while that is down).
    pub global: Option<DataAccount>,
}

impl Snapshot {
    /// ARM's write location names.
    pub fn arm_writes(&self) -> Vec<&str> {
        self.account
            .properties
            .write_locations
            .iter()
            .map(|l| l.location_name.as_str())
            .collect()
    }

    /// Multi-region writes.
    pub fn multi_write(&self) -> bool {
        self.account.properties.enable_multiple_write_locations
    }
}

fn names(v: &[crate::data::DataLocation]) -> Vec<String> {
    v.iter().map(|l| l.name.clone()).collect()
}

impl CosmosController {
    /// Read ARM, then every online location's regional endpoint at once.
    pub(crate) async fn snapshot(&self) -> CResult<Snapshot> {
        let account = self.arm.account().await?;
        let key = self.cfg.key.load("connection.key_env")?;
        let views = futures::future::join_all(self.cfg.locations.iter().map(|l| {
            let endpoint = account
                .properties
                .locations
                .iter()
                .find(|a| same_location(&a.location_name, &l.location))
                .and_then(|a| a.document_endpoint.clone());
            let offline = account.offline(&l.location);
            let data = &self.data;
            let key = &key;
            let location = l.location.clone();
            let store = self.cfg.store.as_str();
            async move {
                let _ = offline;
                let Some(ep) = endpoint else {
                    return Err(format!("ARM lists no location `{location}` on the account"));
                };
                data.account(key, &ep).await.map_err(|e| match e {
                    CosmosError::Transport { what, source } => format!("{what}: {source}"),
                    other => other.into_error(store).message().to_string(),
                })
            }
        }))
        .await;
        let global = match &self.cfg.global_endpoint {
            Some(ep) => self.data.account(&key, ep).await.ok(),
            None => None,
        };
        Ok(Snapshot {
            account,
            views,
            global,
        })
    }

    /// The observed state of a snapshot.
    pub(crate) fn to_state(&self, s: &Snapshot) -> ObservedState {
        let n = self.cfg.locations.len() as u32;
        let arm_writes = s.arm_writes();
        let multi = s.multi_write();
        let mut reachable_views: Vec<(&str, Vec<String>)> = self
            .cfg
            .locations
            .iter()
            .zip(&s.views)
            .filter(|(l, _)| !s.account.offline(&l.location))
            .filter_map(|(l, v)| {
                v.as_ref()
                    .ok()
                    .map(|d| (l.location.as_str(), names(&d.writable_locations)))
            })
            .collect();
        if let Some(g) = &s.global {
            reachable_views.push(("the global endpoint", names(&g.writable_locations)));
        }
        let same_set = |a: &[String], b: &[&str]| {
            a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| same_location(x, y)))
        };
        let agreed = !reachable_views.is_empty()
            && reachable_views
                .iter()
                .all(|(_, w)| same_set(w, &arm_writes));
        // The hub: failover priority 0 (the only write region unless multi-write).
        let hub = self
            .cfg
            .locations
            .iter()
            .find(|l| s.account.priority(&l.location) == Some(0));
        let hub_member = hub.map(|l| l.member.clone());
        let updating = s.account.updating();
        let members = self
            .cfg
            .locations
            .iter()
            .zip(&s.views)
            .map(|(l, view)| {
                let prio = s.account.priority(&l.location);
                let mut m = MemberState::unreachable(&l.member, &l.region, "");
                m.detail = None;
                m.priority = prio.map(|p| f64::from(n.saturating_sub(p)));
                let is_hub = hub.is_some_and(|h| h.member == l.member);
                let arm_write = arm_writes.iter().any(|w| same_location(w, &l.location));
                let offline = s.account.offline(&l.location);
                match view {
                    Err(why) if offline => {
                        m.detail = Some(format!("offline (offlineRegion); its endpoint does not answer: {why}"));
                    }
                    Err(why) => {
                        m.detail = Some(why.clone());
                    }
                    Ok(_) if offline => {
                        // Back, but not serving until onlineRegion: a move
                        // here (or Rejoin) brings it online first.
                        m.reachable = true;
                        m.awaits_rejoin = true;
                        m.role = Role::Secondary;
                        m.following = hub_member.clone();
                        m.detail = Some(
                            "offline (offlineRegion); its endpoint answers again: a move here or Rejoin brings it online (onlineRegion)"
                                .into(),
                        );
                    }
                    Ok(_) => {
                        m.reachable = true;
                        let listed_writable = reachable_views
                            .iter()
                            .filter(|(_, w)| w.iter().any(|x| same_location(x, &l.location)))
                            .map(|(at, _)| *at)
                            .collect::<Vec<_>>();
                        let primary = is_hub && arm_write && agreed;
                        m.role = if primary {
                            Role::Primary
                        } else if is_hub || (!multi && (arm_write || !listed_writable.is_empty())) {
                            // Write region on one plane only: a change of
                            // write region is under way.
                            let views: Vec<String> = reachable_views
                                .iter()
                                .map(|(at, w)| format!("{at} sees writable {w:?}"))
                                .collect();
                            m.detail = Some(format!(
                                "ARM write locations {arm_writes:?}; data plane: {}",
                                views.join(", ")
                            ));
                            Role::Unknown
                        } else {
                            m.following = hub_member.clone();
                            // Online in ARM and answering as a read region:
                            // the service replicates every write to it (no
                            // per-region stream state is exposed beyond
                            // that).
                            m.replicating = Some(true);
                            Role::Secondary
                        };
                    }
                }
                if updating {
                    let d = m.detail.take().map(|d| format!("; {d}")).unwrap_or_default();
                    m.detail = Some(format!("account provisioningState {:?}{d}", s.account.properties.provisioning_state.as_deref().unwrap_or("")));
                }
                m
            })
            .collect();
        ObservedState {
            store: self.cfg.store.clone(),
            kind: StoreKind::Cosmosdb,
            // Cosmos DB exposes no term or version of its write region.
            term: None,
            config_version: None,
            members,
        }
    }
}
