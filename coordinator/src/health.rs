//! Health: what `switchyard state` claims about every member and store, and
//! why. A member is healthy only when each claim was observed: it answers,
//! a primary is the only writable one and not fenced, a follower replicates
//! from the right upstream right now and is within the store's lag bound.
//! When a claim cannot be observed the verdict is *unknown*, never healthy.

use serde::Serialize;
use switchyard_controller::{MemberState, Notation, ObservedState, Role};
use switchyard_topology::{Store, StoreKind, Topology};

/// One member's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "health", content = "reason")]
pub enum Verdict {
    /// Every claim observed to hold.
    Healthy,
    /// A claim observed not to hold; the reason says which.
    Unhealthy(String),
    /// A claim that could not be observed; the reason says which.
    Unknown(String),
}

impl Verdict {
    /// `healthy`, `unhealthy` or `unknown`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Unhealthy(_) => "unhealthy",
            Verdict::Unknown(_) => "unknown",
        }
    }

    /// Why not healthy.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Healthy => None,
            Verdict::Unhealthy(r) | Verdict::Unknown(r) => Some(r),
        }
    }
}

/// One member: the observation and the verdict on it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MemberHealth {
    /// Member name.
    pub member: String,
    /// Region from the topology.
    pub region: String,
    /// Observed role.
    #[schemars(with = "String")]
    pub role: Role,
    /// Verdict (`health`) and its `reason`.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Position in the store's own notation, when observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Lag in bytes, when measured (followers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// Lag in milliseconds, when measured (followers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// What the store itself says about the member (state, replay paused…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One store's verdict.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StoreHealth {
    /// Store name.
    pub store: String,
    /// Store kind.
    #[schemars(with = "String")]
    pub kind: StoreKind,
    /// The single writable primary (`None` with none, or with a split brain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Region of that primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    /// Every writable member when there is more than one (split brain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_brain: Vec<String>,
    /// The store's own term (timeline, term; EventStoreDB: epoch) with its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_term: Option<String>,
    /// Members observed healthy.
    pub healthy_members: usize,
    /// Members in the store.
    pub members_total: usize,
    /// What is wrong with the store as a whole, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Per member.
    pub members: Vec<MemberHealth>,
}

impl StoreHealth {
    /// One writable primary and every member healthy.
    pub fn is_healthy(&self) -> bool {
        self.problem.is_none() && self.healthy_members == self.members_total
    }

    /// One line: the primary (or what is wrong), the store's own term, and
    /// how many members are healthy.
    pub fn summary(&self) -> String {
        let head = match (&self.primary, &self.primary_region) {
            (Some(p), Some(r)) if self.problem.is_none() => format!("primary {p} in {r}"),
            _ => self.problem.clone().unwrap_or_default(),
        };
        format!(
            "{head}{}, {}/{} members healthy",
            self.store_term
                .as_deref()
                .map_or(String::new(), |t| format!(", store's {t}")),
            self.healthy_members,
            self.members_total
        )
    }
}

/// `1.5 MiB`, `812 B`: sizes as people read them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The verdict on a follower's lag against the store's bounds. Without a
/// bound there is nothing to hold it to; with one, an unmeasured lag is
/// unknown and never within it.
fn lag_verdict(m: &MemberState, store: Option<&Store>) -> Verdict {
    let (max_bytes, max_ms) = store.map_or((None, None), |s| (s.max_lag_bytes, s.max_lag_ms));
    let lag = m.lag.unwrap_or_default();
    if let Some(b) = max_bytes {
        match lag.bytes {
            Some(l) if l > b => {
                return Verdict::Unhealthy(format!(
                    "{} behind, over the {} bound (max_lag_bytes)",
                    bytes(l),
                    bytes(b)
                ))
            }
            Some(_) => {}
            None => {
                return Verdict::Unknown(format!(
                    "lag in bytes not measured; the bound is {} (max_lag_bytes)",
                    bytes(b)
                ))
            }
        }
    }
    if let Some(b) = max_ms {
        match lag.millis {
            Some(l) if l > b => {
                return Verdict::Unhealthy(format!(
                    "{l} ms behind, over the {b} ms bound (max_lag_ms)"
                ))
            }
            Some(_) => {}
            None => {
                return Verdict::Unknown(format!(
                    "lag in time not measured; the bound is {b} ms (max_lag_ms)"
                ))
            }
        }
    }
    Verdict::Healthy
}

/// Stores whose followers may replicate from another follower (MongoDB's
/// chained replication picks a sync source among the secondaries).
fn chains(kind: StoreKind) -> bool {
    kind == StoreKind::Mongodb
}

fn member_verdict(s: &ObservedState, m: &MemberState, store: Option<&Store>) -> Verdict {
    if !m.reachable || m.role == Role::Down {
        return Verdict::Unhealthy(format!(
            "unreachable{}",
            m.detail
                .as_deref()
                .map_or(String::new(), |d| format!(": {d}"))
        ));
    }
    let primaries: Vec<&MemberState> = s.primaries().collect();
    match m.role {
        Role::Down => Verdict::Unhealthy("down".into()),
        Role::Unknown => Verdict::Unknown(format!(
            "in a state switchyard cannot classify{}",
            m.detail
                .as_deref()
                .map_or(String::new(), |d| format!(": {d}"))
        )),
        Role::Primary if primaries.len() > 1 => {
            let newest = s.newest_primary().map(|p| p.name.as_str());
            Verdict::Unhealthy(if Some(m.name.as_str()) == newest {
                format!(
                    "one of {} writable primaries (split brain); this one is on the newest history",
                    primaries.len()
                )
            } else {
                format!(
                    "stale primary still writable (split brain); the newest is {}",
                    newest.unwrap_or("?")
                )
            })
        }
        Role::Primary if m.fenced => Verdict::Unhealthy("fenced: refuses writes".into()),
        Role::Primary => Verdict::Healthy,
        Role::Arbiter => Verdict::Healthy,
        Role::Secondary | Role::ReadOnly => {
            if m.fenced {
                return Verdict::Unhealthy("fenced".into());
            }
            let Some(primary) = s.newest_primary() else {
                return Verdict::Unhealthy("no primary to replicate from".into());
            };
            if m.replicating == Some(false) {
                return Verdict::Unhealthy(format!(
                    "receives nothing{}",
                    m.detail
                        .as_deref()
                        .map_or(String::new(), |d| format!(": {d}"))
                ));
            }
            match m.following.as_deref() {
                Some(f) if f == primary.name => {}
                Some(f) if primaries.iter().any(|p| p.name == f) => {
                    return Verdict::Unhealthy(format!(
                        "replicates from stale primary {f}, not from {}",
                        primary.name
                    ))
                }
                Some(f) if chains(s.kind) => {
                    let upstream_ok = s.member(f).is_some_and(|u| {
                        u.reachable && matches!(u.role, Role::Secondary | Role::ReadOnly)
                    });
                    if !upstream_ok {
                        return Verdict::Unhealthy(format!(
                            "replicates from {f}, which is not a reachable secondary"
                        ));
                    }
                }
                Some(f) => {
                    return Verdict::Unhealthy(format!(
                        "replicates from {f}, not from the primary {}",
                        primary.name
                    ))
                }
                None if m.replicating == Some(true) => {}
                None => {
                    return Verdict::Unknown(format!(
                        "upstream not observed (should be {})",
                        primary.name
                    ))
                }
            }
            lag_verdict(m, store)
        }
    }
}

/// The verdict on one observed store, `store` being its topology entry.
pub fn assess(s: &ObservedState, store: Option<&Store>, notation: &Notation) -> StoreHealth {
    let members: Vec<MemberHealth> = s
        .members
        .iter()
        .map(|m| {
            let follower = matches!(m.role, Role::Secondary | Role::ReadOnly);
            MemberHealth {
                member: m.name.clone(),
                region: m.region.clone(),
                role: m.role,
                verdict: member_verdict(s, m, store),
                position: m.position.map(|p| notation.position(&p)),
                lag_bytes: m.lag.and_then(|l| l.bytes).filter(|_| follower),
                lag_ms: m.lag.and_then(|l| l.millis).filter(|_| follower),
                detail: m.detail.clone(),
            }
        })
        .collect();
    let writable: Vec<String> = s.primaries().map(|m| m.name.clone()).collect();
    let primary = s.primary();
    let problem = match (writable.len(), primary) {
        (0, _) => Some("no primary: nothing accepts writes".to_string()),
        (1, Some(p)) if p.fenced => Some(format!(
            "primary {} is fenced: nothing accepts writes",
            p.name
        )),
        (1, _) => None,
        (n, _) => {
            let newest = s.newest_primary().map(|m| m.name.as_str());
            let each: Vec<String> = s
                .primaries()
                .map(|m| {
                    format!(
                        "{} in {} on {} ({})",
                        m.name,
                        m.region,
                        m.position
                            .map_or(format!("{} ?", notation.term), |p| notation
                                .history(p.history)),
                        if Some(m.name.as_str()) == newest {
                            "newest"
                        } else {
                            "stale"
                        }
                    )
                })
                .collect();
            Some(format!(
                "SPLIT BRAIN: {n} writable primaries: {}; the next execution fences the stale ones",
                each.join(", ")
            ))
        }
    };
    StoreHealth {
        store: s.store.clone(),
        kind: s.kind,
        primary: primary.map(|p| p.name.clone()),
        primary_region: primary.map(|p| p.region.clone()),
        split_brain: if writable.len() > 1 {
            writable
        } else {
            Vec::new()
        },
        store_term: s.term.map(|t| notation.term(t)),
        healthy_members: members
            .iter()
            .filter(|m| m.verdict == Verdict::Healthy)
            .count(),
        members_total: members.len(),
        problem,
        members,
    }
}

/// What a region is today: the stores whose primary it holds.
pub fn region_roles<'a>(
    topology: &'a Topology,
    stores: &[StoreHealth],
) -> Vec<(&'a str, Vec<String>)> {
    topology
        .regions
        .iter()
        .map(|r| {
            let held = stores
                .iter()
                .filter(|s| s.primary_region.as_deref() == Some(r.name.as_str()))
                .map(|s| s.store.clone())
                .collect();
            (r.name.as_str(), held)
        })
        .collect()
}

/// The heading of a region in `state`: what it is today, then what the
/// topology says it is for when that differs.
pub fn region_heading(topology: &Topology, region: &str, held: &[String], stores: usize) -> String {
    let configured = topology
        .region(region)
        .map(|r| format!("{:?}", r.role).to_lowercase())
        .unwrap_or_default();
    let today = match held.len() {
        0 => "primary of no store".to_string(),
        n if n == stores => "primary of every store".to_string(),
        _ => format!("primary of {}", held.join(", ")),
    };
    format!("{region} — {today} (topology role: {configured})")
}

/// An execution that stopped before its end: `state` leads with it, since
/// no other move should start until it is resumed or aborted.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Unfinished {
    /// Execution id.
    pub id: String,
    /// Plan title.
    pub plan: String,
    /// `unfinished` (interrupted) or `failed`.
    pub status: String,
}

/// `state` for people: what needs attention first (an unfinished
/// execution, split brains, stores without a writable primary), then every
/// region as it is today with its members and their verdicts, then one line
/// per store. With a `width`, member lines too long for it wrap under
/// their facts.
pub fn render_text(
    topology: &Topology,
    stores: &[(String, Result<StoreHealth, String>)],
    unfinished: Option<&Unfinished>,
    width: Option<usize>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(u) = unfinished {
        let _ = writeln!(
            out,
            "UNFINISHED EXECUTION {} ({}, {}): run `switchyard resume` or `switchyard abort` before anything else",
            u.id, u.plan, u.status
        );
    }
    let ok: Vec<&StoreHealth> = stores.iter().filter_map(|(_, s)| s.as_ref().ok()).collect();
    // Split brains first, then stores nothing can write to, then stores
    // that could not be observed at all: each is worse than a member down.
    for s in &ok {
        if !s.split_brain.is_empty() {
            let _ = writeln!(
                out,
                "{}: {}",
                s.store,
                s.problem.as_deref().unwrap_or("split brain")
            );
        }
    }
    for s in &ok {
        if let (true, Some(p)) = (s.split_brain.is_empty(), s.problem.as_deref()) {
            let line = match p.strip_prefix("no primary: ") {
                Some(rest) => format!("NO PRIMARY: {rest}"),
                None => format!("NO WRITABLE PRIMARY: {p}"),
            };
            let _ = writeln!(out, "{}: {line}", s.store);
        }
    }
    for (name, s) in stores {
        if let Err(e) = s {
            let _ = writeln!(out, "{name}: CANNOT OBSERVE: {e}");
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    let owned: Vec<StoreHealth> = ok.iter().map(|s| (*s).clone()).collect();
    let sw = ok
        .iter()
        .map(|s| s.store.chars().count())
        .max()
        .unwrap_or(0);
    let mw = ok
        .iter()
        .flat_map(|s| s.members.iter().map(|m| m.member.chars().count()))
        .max()
        .unwrap_or(0);
    for (region, held) in region_roles(topology, &owned) {
        let _ = writeln!(
            out,
            "{}",
            region_heading(topology, region, &held, topology.stores.len())
        );
        for s in &ok {
            for m in s.members.iter().filter(|m| m.region == region) {
                let lag = match (m.lag_bytes, m.lag_ms) {
                    (Some(b), Some(ms)) => format!("lag {} / {ms} ms", bytes(b)),
                    (Some(b), None) => format!("lag {}", bytes(b)),
                    (None, Some(ms)) => format!("lag {ms} ms"),
                    (None, None) if matches!(m.role, Role::Secondary | Role::ReadOnly) => {
                        "lag unknown".into()
                    }
                    (None, None) => String::new(),
                };
                // A Sentinel is observed as a voter without data; say what
                // it is rather than the role it shares with an arbiter.
                let sentinel = topology
                    .stores
                    .iter()
                    .find(|t| t.name == s.store)
                    .and_then(|t| t.member(&m.member))
                    .is_some_and(|t| t.sentinel);
                let role = if sentinel && m.role == Role::Arbiter {
                    "sentinel".to_string()
                } else {
                    m.role.to_string()
                };
                let line = format!(
                    "{:<mw$}  {:<9}  {}{}",
                    m.member,
                    role,
                    m.verdict.word(),
                    m.verdict
                        .reason()
                        .map_or(String::new(), |r| format!(": {r}")),
                );
                // Too long for the terminal: the reason goes on under the
                // facts column, not under the store's name.
                out.push_str(&crate::width::wrap(
                    &line,
                    &format!("  {:<sw$}  ", s.store),
                    &format!("  {:<sw$}    ", ""),
                    width.unwrap_or(usize::MAX),
                ));
                let facts: Vec<String> = [
                    m.position.as_deref().map(|p| format!("at {p}")),
                    (!lag.is_empty()).then_some(lag),
                    // What the store says, where it explains a verdict.
                    m.detail
                        .as_deref()
                        .filter(|d| m.verdict.reason().is_some_and(|r| !r.contains(*d)))
                        .map(|d| format!("store says: {d}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !facts.is_empty() {
                    let _ = writeln!(out, "  {:<sw$}  {}", "", facts.join("; "));
                }
            }
        }
    }
    out.push('\n');
    for (name, s) in stores {
        match s {
            Ok(s) => {
                let _ = writeln!(out, "{name:<10} {}", s.summary());
            }
            Err(e) => {
                let _ = writeln!(out, "{name:<10} cannot observe: {e}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_controller::{Lag, Position};

    fn member(name: &str, role: Role) -> MemberState {
        MemberState {
            name: name.into(),
            region: "east".into(),
            role,
            reachable: true,
            position: Some(Position {
                history: switchyard_controller::History(1),
                offset: 1,
            }),
            lag: None,
            following: None,
            replicating: None,
            fenced: false,
            priority: None,
            votes: None,
            detail: None,
            fence_evidence: None,
            awaits_rejoin: false,
        }
    }

    fn observed(members: Vec<MemberState>) -> ObservedState {
        ObservedState {
            store: "orders".into(),
            kind: StoreKind::Postgres,
            term: Some(switchyard_controller::Term(1)),
            config_version: None,
            members,
        }
    }

    #[test]
    fn byte_sizes_read_as_people_write_them() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(24 * 1024 * 1024), "24.0 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn a_fenced_primary_is_no_primary_and_an_unmeasured_lag_is_unknown() {
        let mut p = member("a", Role::Primary);
        p.fenced = true;
        let mut f = member("b", Role::Secondary);
        f.following = Some("a".into());
        let s = observed(vec![p, f]);
        let h = assess(&s, None, &Notation::PLAIN);
        assert!(h.problem.as_deref().unwrap().contains("fenced"));
        assert_eq!(h.members[0].verdict.word(), "unhealthy");
        // No bound: nothing to hold the lag to.
        assert_eq!(h.members[1].verdict, Verdict::Healthy);
        let mut store = switchyard_topology::Store {
            name: "orders".into(),
            kind: StoreKind::Postgres,
            depends_on: vec![],
            max_lag_bytes: Some(8 << 20),
            max_lag_ms: None,
            connection: Default::default(),
            settings: Default::default(),
            members: vec![],
            tags: vec![],
        };
        let h = assess(&s, Some(&store), &Notation::PLAIN);
        assert_eq!(h.members[1].verdict.word(), "unknown");
        let mut s2 = s.clone();
        s2.members[1].lag = Some(Lag {
            bytes: Some(24 << 20),
            millis: None,
        });
        let h = assess(&s2, Some(&store), &Notation::PLAIN);
        assert_eq!(
            h.members[1].verdict,
            Verdict::Unhealthy("24.0 MiB behind, over the 8.0 MiB bound (max_lag_bytes)".into())
        );
        store.max_lag_bytes = None;
        s2.members[1].following = Some("c".into());
        let h = assess(&s2, Some(&store), &Notation::PLAIN);
        assert_eq!(
            h.members[1].verdict,
            Verdict::Unhealthy("replicates from c, not from the primary a".into())
        );
    }
}
