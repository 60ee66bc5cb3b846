//! `--candidate`: the member the operator chose to become primary, per store.
//!
//! A value is `MEMBER` (the store that owns a member of that name) or
//! `STORE=MEMBER` (needed only when two stores have members of the same
//! name); it may be given once per store. Stores without one choose as
//! always (the controller picks the best member of the target region).
//! Every value is checked against the topology before anything is
//! observed or touched: the member exists, is in the target region and can
//! be elected (not an arbiter, not priority 0, not hidden, not a read-only
//! replica or a Sentinel). What the stores show now (reachable, caught up,
//! following the right upstream) is the readiness check's business, on the
//! same member.

use std::collections::BTreeMap;
use switchyard_topology::suggest::did_you_mean;
use switchyard_topology::{Member, Topology};

/// The chosen member of each store that has one: store → member.
pub type Candidates = BTreeMap<String, String>;

/// A `--candidate` that cannot be honoured, with the member named and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandidateError {
    /// No store of the topology has a member of that name.
    #[error("--candidate {member}: no store has a member named `{member}`{hint}")]
    UnknownMember {
        /// The name given.
        member: String,
        /// ` (did you mean `x`?)`, or empty.
        hint: String,
    },
    /// `STORE=` names a store the topology does not have.
    #[error("--candidate {given}: unknown store `{store}` (the topology has: {known})")]
    UnknownStore {
        /// The value given.
        given: String,
        /// The store named.
        store: String,
        /// The topology's stores.
        known: String,
    },
    /// The store has no member of that name.
    #[error(
        "--candidate {given}: store `{store}` has no member named `{member}` (it has: {known})"
    )]
    NotInStore {
        /// The value given.
        given: String,
        /// The store.
        store: String,
        /// The member named.
        member: String,
        /// The store's members.
        known: String,
    },
    /// Several stores have a member of that name.
    #[error("--candidate {member}: stores {stores} all have a member named `{member}`; say which: --candidate STORE={member}")]
    Ambiguous {
        /// The member named.
        member: String,
        /// The stores that have it.
        stores: String,
    },
    /// Two candidates for one store.
    #[error("--candidate: two candidates for store `{store}`: `{first}` and `{second}`; give one per store")]
    Twice {
        /// The store.
        store: String,
        /// The first member given.
        first: String,
        /// The second member given.
        second: String,
    },
    /// The member is in another region than the target.
    #[error("--candidate {member}: member `{member}` of store `{store}` is in region `{region}`, not in the target region `{target}`")]
    NotInTarget {
        /// The member.
        member: String,
        /// Its store.
        store: String,
        /// Its region.
        region: String,
        /// The target region.
        target: String,
    },
    /// The execution does not move the member's store.
    #[error("--candidate {member}: store `{store}` is not moved by this execution; choose a member of a store it moves")]
    NotMoved {
        /// The member.
        member: String,
        /// Its store.
        store: String,
    },
    /// The member can never become primary.
    #[error("--candidate {member}: member `{member}` of store `{store}` cannot become primary: it is {why}")]
    NotElectable {
        /// The member.
        member: String,
        /// Its store.
        store: String,
        /// Why (`an arbiter`, `priority 0`, ...).
        why: &'static str,
    },
}

/// Why `m` can never be primary, or `None` when it can.
pub fn not_electable(m: &Member) -> Option<&'static str> {
    if m.arbiter {
        Some("an arbiter (it holds no data)")
    } else if m.sentinel {
        Some("a Sentinel (it holds no data)")
    } else if m.hidden {
        Some("hidden (`hidden = true`)")
    } else if m.read_only_replica {
        Some("a read-only replica (`read_only_replica = true`)")
    } else if m.priority <= 0.0 {
        Some("priority 0 (`priority = 0` never stands for election)")
    } else {
        None
    }
}

/// Resolve `--candidate` values against `topology` for a move to `target`.
pub fn resolve(
    topology: &Topology,
    target: &str,
    values: &[String],
) -> Result<Candidates, CandidateError> {
    resolve_by(topology, &|_| Some(target.to_string()), values)
}

/// [`resolve`] where each store has a target of its own (`target_of`: a
/// rollback returns every store to the region it started in); `None`: the
/// execution does not move that store, so no member of it can be chosen.
pub fn resolve_by(
    topology: &Topology,
    target_of: &dyn Fn(&str) -> Option<String>,
    values: &[String],
) -> Result<Candidates, CandidateError> {
    let mut out = Candidates::new();
    for given in values {
        let (store, member) = match given.split_once('=') {
            Some((store, member)) => {
                let s = topology
                    .store(store)
                    .ok_or_else(|| CandidateError::UnknownStore {
                        given: given.clone(),
                        store: store.into(),
                        known: names(topology.stores.iter().map(|s| s.name.as_str())),
                    })?;
                if s.member(member).is_none() {
                    return Err(CandidateError::NotInStore {
                        given: given.clone(),
                        store: store.into(),
                        member: member.into(),
                        known: names(s.members.iter().map(|m| m.name.as_str())),
                    });
                }
                (store.to_string(), member.to_string())
            }
            None => {
                let owners: Vec<&str> = topology
                    .stores
                    .iter()
                    .filter(|s| s.member(given).is_some())
                    .map(|s| s.name.as_str())
                    .collect();
                match owners.as_slice() {
                    [one] => (one.to_string(), given.clone()),
                    [] => {
                        let all = topology
                            .stores
                            .iter()
                            .flat_map(|s| s.members.iter().map(|m| m.name.as_str()));
                        return Err(CandidateError::UnknownMember {
                            member: given.clone(),
                            hint: did_you_mean(given, all)
                                .map(|m| format!(" (did you mean `{m}`?)"))
                                .unwrap_or_default(),
                        });
                    }
                    many => {
                        return Err(CandidateError::Ambiguous {
                            member: given.clone(),
                            stores: many.join(", "),
                        })
                    }
                }
            }
        };
        let Some(target) = target_of(&store) else {
            return Err(CandidateError::NotMoved { member, store });
        };
        check(topology, &store, &member, &target)?;
        if let Some(first) = out.get(&store) {
            if first != &member {
                return Err(CandidateError::Twice {
                    store,
                    first: first.clone(),
                    second: member,
                });
            }
        }
        out.insert(store, member);
    }
    Ok(out)
}

/// Check that `member` of `store` can be promoted in `target` (the plan
/// validator calls this for hand-written plans too). The store is known.
pub fn check(
    topology: &Topology,
    store: &str,
    member: &str,
    target: &str,
) -> Result<(), CandidateError> {
    let s = topology
        .store(store)
        .ok_or_else(|| CandidateError::UnknownStore {
            given: format!("{store}={member}"),
            store: store.into(),
            known: names(topology.stores.iter().map(|s| s.name.as_str())),
        })?;
    let m = s.member(member).ok_or_else(|| CandidateError::NotInStore {
        given: format!("{store}={member}"),
        store: store.into(),
        member: member.into(),
        known: names(s.members.iter().map(|m| m.name.as_str())),
    })?;
    if m.region != target {
        return Err(CandidateError::NotInTarget {
            member: member.into(),
            store: store.into(),
            region: m.region.clone(),
            target: target.into(),
        });
    }
    if let Some(why) = not_electable(m) {
        return Err(CandidateError::NotElectable {
            member: member.into(),
            store: store.into(),
            why,
        });
    }
    Ok(())
}

fn names<'a>(v: impl Iterator<Item = &'a str>) -> String {
    v.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let text = r#"
name = "lab"
[[regions]]
name = "east"
role = "primary"
[[regions]]
name = "west"
role = "secondary"
[[regions]]
name = "witness"
role = "witness"

[[stores]]
name = "orders"
kind = "postgres"
[[stores.members]]
name = "pg-east"
region = "east"
[[stores.members]]
name = "pg-west"
region = "west"
[[stores.members]]
name = "pg-west-2"
region = "west"
[[stores.members]]
name = "pg-west-ro"
region = "west"
priority = 0

[[stores]]
name = "catalog"
kind = "mongodb"
[[stores.members]]
name = "m-east"
region = "east"
[[stores.members]]
name = "m-west"
region = "west"
[[stores.members]]
name = "pg-west"
region = "west"
hidden = true
priority = 0
votes = 0
[[stores.members]]
name = "m-arb"
region = "witness"
arbiter = true
"#;
        switchyard_topology::parse_str("lab.toml", text).unwrap()
    }

    fn err(values: &[&str]) -> String {
        let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        resolve(&topology(), "west", &v).unwrap_err().to_string()
    }

    #[test]
    fn a_member_names_its_store() {
        let v = vec!["pg-west-2".to_string(), "catalog=m-west".to_string()];
        let c = resolve(&topology(), "west", &v).unwrap();
        assert_eq!(
            c,
            Candidates::from([
                ("orders".into(), "pg-west-2".into()),
                ("catalog".into(), "m-west".into())
            ])
        );
    }

    #[test]
    fn every_refusal_names_the_member_and_why() {
        assert_eq!(
            err(&["pg-wset-2"]),
            "--candidate pg-wset-2: no store has a member named `pg-wset-2` (did you mean `pg-west-2`?)"
        );
        assert_eq!(
            err(&["pg-east"]),
            "--candidate pg-east: member `pg-east` of store `orders` is in region `east`, not in the target region `west`"
        );
        assert!(
            err(&["pg-west-ro"])
                .contains("`pg-west-ro` of store `orders` cannot become primary: it is priority 0"),
            "{}",
            err(&["pg-west-ro"])
        );
        let arb = resolve(&topology(), "witness", &["m-arb".to_string()]).unwrap_err();
        assert!(arb.to_string().contains("it is an arbiter"), "{arb}");
        assert!(err(&["pg-west"]).contains("say which: --candidate STORE=pg-west"));
        assert!(err(&["catalog=pg-west"]).contains("it is hidden"));
        assert!(err(&["billing=x"]).contains("unknown store `billing`"));
        assert!(err(&["orders=m-west"]).contains("store `orders` has no member named `m-west`"));
        assert!(err(&["pg-west-2", "orders=pg-west"]).contains("two candidates for store `orders`"));
    }
}
