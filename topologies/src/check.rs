//! `topocheck`'s rules: structure (names, references, dependencies), survival
//! of region losses, and per-kind limits. Pure: takes a parsed topology and
//! its source map, returns diagnostics; rendering is elsewhere.

use crate::diagnostic::Diagnostic;
use crate::model::{Member, RegionRole, Store, StoreKind, Topology};
use crate::parse::Parsed;
use crate::quorum::{majority, worst_loss};
use crate::rules;
use crate::source_map::SourceMap;
use crate::suggest::did_you_mean;
use std::collections::{HashMap, HashSet};

/// How strict the survival checks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Number of regions that may be lost at the same time (default 1).
    pub tolerate: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { tolerate: 1 }
    }
}

/// Most secondary labels on one diagnostic; more would drown the message.
const MAX_LABELS: usize = 6;

/// Run every rule on a parsed file. Diagnostics are ordered by position.
pub fn check(parsed: &Parsed, opts: &CheckOptions) -> Vec<Diagnostic> {
    check_topology(&parsed.topology, &parsed.source_map, opts)
}

/// Run every rule on a topology whose locations are in `sm` (an empty map
/// puts every diagnostic at offset 0).
pub fn check_topology(t: &Topology, sm: &SourceMap, opts: &CheckOptions) -> Vec<Diagnostic> {
    let mut c = Checker {
        t,
        sm,
        opts,
        out: Vec::new(),
        roles: HashMap::new(),
    };
    c.regions();
    c.names_and_hosts();
    for (si, store) in t.stores.iter().enumerate() {
        c.store(si, store);
    }
    c.dependencies();
    let mut out = c.out;
    out.extend(crate::capacity::diagnostics(t, sm, opts));
    out.sort_by_key(|d| d.primary.as_ref().map_or(0, |l| l.span.start));
    out
}

struct Checker<'a> {
    t: &'a Topology,
    sm: &'a SourceMap,
    opts: &'a CheckOptions,
    out: Vec<Diagnostic>,
    /// Role of each declared region (first declaration wins).
    roles: HashMap<&'a str, RegionRole>,
}

fn mpath(si: usize, mi: usize, field: &str) -> String {
    if field.is_empty() {
        format!("stores[{si}].members[{mi}]")
    } else {
        format!("stores[{si}].members[{mi}].{field}")
    }
}

fn spath(si: usize, field: &str) -> String {
    format!("stores[{si}].{field}")
}

fn join_regions(names: &[&str]) -> String {
    match names {
        [] => "no region".to_string(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn fmt_priority(p: f64) -> String {
    if p.fract() == 0.0 && p.abs() < 1e15 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

impl<'a> Checker<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    fn at(&self, path: &str) -> std::ops::Range<usize> {
        self.sm.locate(path)
    }

    fn regions(&mut self) {
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut primaries = Vec::new();
        for (ri, r) in self.t.regions.iter().enumerate() {
            let path = format!("regions[{ri}].name");
            if let Some(&fi) = first.get(r.name.as_str()) {
                let d = Diagnostic::new(
                    &rules::DUPLICATE_REGION,
                    format!("region `{}` is declared twice", r.name),
                    self.at(&path),
                    &path,
                )
                .label("declared again here")
                .secondary(
                    self.at(&format!("regions[{fi}].name")),
                    format!("regions[{fi}].name"),
                    "first declared here",
                );
                self.push(d);
                continue;
            }
            first.insert(&r.name, ri);
            self.roles.insert(&r.name, r.role);
            if r.role == RegionRole::Primary {
                primaries.push(ri);
            }
        }
        match primaries.as_slice() {
            [_] => {}
            [] => {
                let (span, field) = if !self.t.regions.is_empty() {
                    (self.at("regions[0].role"), "regions[0].role".to_string())
                } else {
                    (self.at("name"), "name".to_string())
                };
                let d = Diagnostic::new(
                    &rules::PRIMARY_REGION,
                    "no region has role `primary`",
                    span,
                    field,
                )
                .label("no primary region in this topology");
                self.push(d);
            }
            [first_p, rest @ ..] => {
                for &ri in rest {
                    let path = format!("regions[{ri}].role");
                    let d = Diagnostic::new(
                        &rules::PRIMARY_REGION,
                        format!(
                            "regions `{}` and `{}` both have role `primary`",
                            self.t.regions[*first_p].name, self.t.regions[ri].name
                        ),
                        self.at(&path),
                        &path,
                    )
                    .label("second primary region")
                    .secondary(
                        self.at(&format!("regions[{first_p}].role")),
                        format!("regions[{first_p}].role"),
                        "first primary region",
                    );
                    self.push(d);
                }
            }
        }
    }

    /// Uniqueness of store names, member names and hosts across the topology.
    fn names_and_hosts(&mut self) {
        let mut stores: HashMap<&str, usize> = HashMap::new();
        let mut members: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut hosts: HashMap<String, (usize, usize)> = HashMap::new();
        for (si, s) in self.t.stores.iter().enumerate() {
            if let Some(&fi) = stores.get(s.name.as_str()) {
                let p = spath(si, "name");
                let d = Diagnostic::new(
                    &rules::DUPLICATE_STORE,
                    format!("store `{}` is defined twice", s.name),
                    self.at(&p),
                    &p,
                )
                .label("defined again here")
                .secondary(
                    self.at(&spath(fi, "name")),
                    spath(fi, "name"),
                    "first defined here",
                )
                .store(&s.name);
                self.push(d);
            } else {
                stores.insert(&s.name, si);
            }
            for (mi, m) in s.members.iter().enumerate() {
                if let Some(&(fs, fm)) = members.get(m.name.as_str()) {
                    let p = mpath(si, mi, "name");
                    let d = Diagnostic::new(
                        &rules::DUPLICATE_MEMBER,
                        format!("member `{}` is defined twice", m.name),
                        self.at(&p),
                        &p,
                    )
                    .label("defined again here")
                    .secondary(
                        self.at(&mpath(fs, fm, "name")),
                        mpath(fs, fm, "name"),
                        "first defined here",
                    )
                    .store(&s.name)
                    .member(&m.name);
                    self.push(d);
                } else {
                    members.insert(&m.name, (si, mi));
                }
                if let Some(host) = &m.host {
                    let key = host.trim().to_ascii_lowercase();
                    if let Some(&(fs, fm)) = hosts.get(&key) {
                        let p = mpath(si, mi, "host");
                        let d = Diagnostic::new(
                            &rules::DUPLICATE_HOST,
                            format!(
                                "host `{host}` of member `{}` is also used by member `{}`",
                                m.name, self.t.stores[fs].members[fm].name
                            ),
                            self.at(&p),
                            &p,
                        )
                        .label("used again here")
                        .secondary(
                            self.at(&mpath(fs, fm, "host")),
                            mpath(fs, fm, "host"),
                            "first used here",
                        )
                        .store(&s.name)
                        .member(&m.name);
                        self.push(d);
                    } else {
                        hosts.insert(key, (si, mi));
                    }
                }
            }
        }
    }

    fn store(&mut self, si: usize, s: &'a Store) {
        if s.members.is_empty() {
            let p = spath(si, "name");
            let d = Diagnostic::new(
                &rules::EMPTY_STORE,
                format!("store `{}` has no members", s.name),
                self.at(&p),
                &p,
            )
            .label("no [[stores.members]] for this store")
            .store(&s.name);
            self.push(d);
            return;
        }
        for (mi, m) in s.members.iter().enumerate() {
            self.member(si, s, mi, m);
        }
        match s.kind {
            StoreKind::Mongodb => self.mongodb_limits(si, s),
            StoreKind::Cosmosdb => self.cosmos_priorities(si, s),
            StoreKind::Redis => self.sentinel_quorum(si, s),
            _ => {}
        }
        self.survival(si, s);
        self.primary_preference(si, s);
    }

    fn member(&mut self, si: usize, s: &Store, mi: usize, m: &Member) {
        let kind = s.kind;
        // Region must exist; witness regions hold tie-breakers only.
        match self.roles.get(m.region.as_str()) {
            None => {
                let p = mpath(si, mi, "region");
                let known: Vec<&str> = self.t.regions.iter().map(|r| r.name.as_str()).collect();
                let note = if known.is_empty() {
                    "no regions are declared".to_string()
                } else {
                    format!("declared regions: {}", known.join(", "))
                };
                let mut d = Diagnostic::new(
                    &rules::UNKNOWN_REGION,
                    format!("member `{}` is in unknown region `{}`", m.name, m.region),
                    self.at(&p),
                    &p,
                )
                .label("not declared under [[regions]]")
                .note(note)
                .store(&s.name)
                .member(&m.name);
                if let Some(meant) = did_you_mean(&m.region, known.iter().copied()) {
                    d = d.label(format!("did you mean `{meant}`?")).help(format!(
                        "write `region = \"{meant}\"`, or declare `{}` under [[regions]]",
                        m.region
                    ));
                }
                self.push(d);
            }
            Some(RegionRole::Witness) if !m.arbiter && !m.sentinel => {
                let p = mpath(si, mi, "region");
                let d = Diagnostic::new(
                    &rules::WITNESS_DATA,
                    format!(
                        "member `{}` holds data but is in witness region `{}`",
                        m.name, m.region
                    ),
                    self.at(&p),
                    &p,
                )
                .label("witness regions host arbiters only")
                .store(&s.name)
                .member(&m.name);
                self.push(d);
            }
            Some(_) => {}
        }
        if m.host.is_none() && kind != StoreKind::Cosmosdb {
            let p = mpath(si, mi, "name");
            let d = Diagnostic::new(
                &rules::MISSING_HOST,
                format!(
                    "member `{}` of {kind} store `{}` has no `host`",
                    m.name, s.name
                ),
                self.at(&p),
                mpath(si, mi, "host"),
            )
            .label("this member needs `host = \"name:port\"`")
            .store(&s.name)
            .member(&m.name);
            self.push(d);
        }
        // Priority range.
        let prio_bad = !m.priority.is_finite()
            || m.priority < 0.0
            || (kind == StoreKind::Mongodb && m.priority > 1000.0);
        if prio_bad {
            let p = mpath(si, mi, "priority");
            let d = Diagnostic::new(
                &rules::INVALID_PRIORITY,
                format!("member `{}` has invalid priority {}", m.name, m.priority),
                self.at(&p),
                &p,
            )
            .label("must be between 0 and 1000")
            .store(&s.name)
            .member(&m.name);
            self.push(d);
        }
        self.not_applicable(si, s, mi, m);
        match kind {
            StoreKind::Mongodb => {
                if m.arbiter && (m.priority != 0.0 || m.votes != 1) {
                    let field = if m.priority != 0.0 {
                        "priority"
                    } else {
                        "votes"
                    };
                    let p = mpath(si, mi, field);
                    let got = format!(
                        "priority {} and {}",
                        fmt_priority(m.priority),
                        plural(u64::from(m.votes), "vote", "votes")
                    );
                    let d = Diagnostic::new(
                        &rules::ARBITER_CONFIG,
                        format!(
                            "arbiter `{}` has {got}; an arbiter has priority 0 and 1 vote",
                            m.name
                        ),
                        self.at(&p),
                        &p,
                    )
                    .label(if self.sm.is_written(&p) {
                        "must be 0 for priority, 1 for votes"
                    } else {
                        "priority defaults to 1: write `priority = 0`"
                    })
                    .store(&s.name)
                    .member(&m.name);
                    self.push(d);
                }
                if m.votes > 1 {
                    let p = mpath(si, mi, "votes");
                    let d = Diagnostic::new(
                        &rules::INVALID_VOTES,
                        format!(
                            "member `{}` has {} votes; MongoDB members have 0 or 1",
                            m.name, m.votes
                        ),
                        self.at(&p),
                        &p,
                    )
                    .label("must be 0 or 1")
                    .store(&s.name)
                    .member(&m.name);
                    self.push(d);
                } else if m.votes == 0 && m.priority > 0.0 && !m.arbiter {
                    let p = mpath(si, mi, "votes");
                    let d = Diagnostic::new(
                        &rules::INVALID_VOTES,
                        format!(
                            "non-voting member `{}` has priority {}; it must be 0",
                            m.name,
                            fmt_priority(m.priority)
                        ),
                        self.at(&p),
                        &p,
                    )
                    .label("non-voting members need `priority = 0`")
                    .store(&s.name)
                    .member(&m.name);
                    self.push(d);
                }
                if m.hidden && m.priority != 0.0 && !m.arbiter {
                    let p = mpath(si, mi, "priority");
                    let d = Diagnostic::new(
                        &rules::HIDDEN_PRIORITY,
                        format!(
                            "hidden member `{}` has priority {}; it must be 0",
                            m.name,
                            fmt_priority(m.priority)
                        ),
                        self.at(&p),
                        &p,
                    )
                    .label(if self.sm.is_written(&p) {
                        "must be 0"
                    } else {
                        "priority defaults to 1: write `priority = 0`"
                    })
                    .store(&s.name)
                    .member(&m.name);
                    self.push(d);
                }
            }
            StoreKind::Eventstoredb if m.votes != 1 && !m.read_only_replica => {
                let p = mpath(si, mi, "votes");
                let d = Diagnostic::new(
                    &rules::INVALID_VOTES,
                    format!("EventStoreDB node `{}` has {} votes; every node that is not a read-only replica has exactly 1", m.name, m.votes),
                    self.at(&p),
                    &p,
                )
                .label("must be 1")
                .help("remove `votes`, or make the node a read-only replica (`read_only_replica = true`)")
                .store(&s.name)
                .member(&m.name);
                self.push(d);
            }
            _ => {}
        }
    }

    fn not_applicable(&mut self, si: usize, s: &Store, mi: usize, m: &Member) {
        let kind = s.kind;
        let mut fields: Vec<(&str, &str)> = Vec::new();
        if m.arbiter && kind != StoreKind::Mongodb {
            fields.push(("arbiter", "mongodb"));
        }
        if m.hidden && kind != StoreKind::Mongodb {
            fields.push(("hidden", "mongodb"));
        }
        if m.read_only_replica && kind != StoreKind::Eventstoredb {
            fields.push(("read_only_replica", "eventstoredb"));
        }
        if m.failover_priority.is_some() && kind != StoreKind::Cosmosdb {
            fields.push(("failover_priority", "cosmosdb"));
        }
        if m.sentinel && kind != StoreKind::Redis {
            fields.push(("sentinel", "redis"));
        }
        if m.votes != 1 && !kind.elects() {
            fields.push(("votes", "mongodb and eventstoredb"));
        }
        for (field, applies) in fields {
            let p = mpath(si, mi, field);
            let d = Diagnostic::new(
                &rules::FIELD_NOT_APPLICABLE,
                format!("`{field}` has no effect on a {kind} member (it applies to {applies})"),
                self.sm.locate_key(&p),
                &p,
            )
            .label("ignored for this store kind")
            .store(&s.name)
            .member(&m.name);
            self.push(d);
        }
    }

    fn mongodb_limits(&mut self, si: usize, s: &Store) {
        let name_path = spath(si, "name");
        let voters = s.members.iter().filter(|m| m.effective_votes() > 0).count();
        if voters > 7 {
            let d = Diagnostic::new(
                &rules::TOO_MANY_VOTERS,
                format!(
                    "replica set `{}` has {voters} voting members; MongoDB allows at most 7",
                    s.name
                ),
                self.at(&name_path),
                &name_path,
            )
            .label(format!("{} too many", voters - 7))
            .store(&s.name);
            self.push(d);
        }
        if s.members.len() > 50 {
            let d = Diagnostic::new(
                &rules::TOO_MANY_MEMBERS,
                format!(
                    "replica set `{}` has {} members; MongoDB allows at most 50",
                    s.name,
                    s.members.len()
                ),
                self.at(&name_path),
                &name_path,
            )
            .store(&s.name);
            self.push(d);
        }
        let arbiters: Vec<usize> = (0..s.members.len())
            .filter(|&i| s.members[i].arbiter)
            .collect();
        if arbiters.len() > 1 {
            let p = mpath(si, arbiters[1], "arbiter");
            let mut d = Diagnostic::new(
                &rules::MULTIPLE_ARBITERS,
                format!(
                    "replica set `{}` has {} arbiters; use at most one",
                    s.name,
                    arbiters.len()
                ),
                self.at(&p),
                &p,
            )
            .label("another arbiter")
            .store(&s.name);
            let p0 = mpath(si, arbiters[0], "arbiter");
            d = d.secondary(self.at(&p0), p0, "first arbiter");
            self.push(d);
        }
    }

    fn cosmos_priorities(&mut self, si: usize, s: &Store) {
        let n = s.members.len();
        let mut seen: HashMap<u32, usize> = HashMap::new();
        for (mi, m) in s.members.iter().enumerate() {
            let Some(fp) = m.failover_priority else {
                let p = mpath(si, mi, "failover_priority");
                let d = Diagnostic::new(
                    &rules::COSMOS_PRIORITIES,
                    format!(
                        "location `{}` of Cosmos DB account `{}` has no failover_priority",
                        m.name, s.name
                    ),
                    self.at(&mpath(si, mi, "name")),
                    &p,
                )
                .label("add `failover_priority`")
                .store(&s.name)
                .member(&m.name);
                self.push(d);
                continue;
            };
            let p = mpath(si, mi, "failover_priority");
            if let Some(&first) = seen.get(&fp) {
                let fpth = mpath(si, first, "failover_priority");
                let d = Diagnostic::new(
                    &rules::COSMOS_PRIORITIES,
                    format!(
                        "failover_priority {fp} of `{}` is also used by `{}`",
                        m.name, s.members[first].name
                    ),
                    self.at(&p),
                    &p,
                )
                .label("duplicate")
                .secondary(self.at(&fpth), fpth, "first used here")
                .store(&s.name)
                .member(&m.name);
                self.push(d);
                continue;
            }
            seen.insert(fp, mi);
            if fp as usize >= n {
                let d = Diagnostic::new(
                    &rules::COSMOS_PRIORITIES,
                    format!(
                        "failover_priority {fp} of `{}` is out of range: account `{}` has {n} locations, so priorities are 0..{}",
                        m.name,
                        s.name,
                        n - 1
                    ),
                    self.at(&p),
                    &p,
                )
                .label(format!("must be between 0 and {}", n - 1))
                .store(&s.name)
                .member(&m.name);
                self.push(d);
            }
        }
    }

    /// A Sentinel-managed Redis store fails over only when a Sentinel gathers
    /// the votes of `max(quorum, majority of all Sentinels)` Sentinels.
    fn sentinel_quorum(&mut self, si: usize, s: &'a Store) {
        let regions = self.store_regions(s);
        let sentinels = self.tally(s, &regions, |m| u64::from(m.sentinel));
        let total: u64 = sentinels.iter().sum();
        if total == 0 {
            return;
        }
        let quorum = s
            .settings
            .sentinel_quorum
            .map_or(majority(total), u64::from);
        let need = quorum.max(majority(total));
        let (path, quorum_text) = if s.settings.sentinel_quorum.is_some() {
            (
                spath(si, "settings.sentinel_quorum"),
                format!("quorum {quorum}"),
            )
        } else {
            (spath(si, "name"), format!("quorum {quorum} (default)"))
        };
        let by_region: Vec<String> = regions
            .iter()
            .zip(&sentinels)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let arithmetic = format!(
            "a failover needs {need} Sentinels: the larger of the {quorum_text} and a majority of {total} ({})",
            majority(total)
        );
        if total < need {
            let d = Diagnostic::new(
                &rules::SENTINEL_QUORUM_LOST,
                format!(
                    "store `{}` has {} and {quorum_text}; no failover can ever be authorised",
                    s.name,
                    plural(total, "Sentinel", "Sentinels")
                ),
                self.at(&path),
                &path,
            )
            .label(arithmetic)
            .store(&s.name);
            self.push(d);
            return;
        }
        let (lost_idx, lost) = worst_loss(&sentinels, self.opts.tolerate);
        let left = total - lost;
        if left >= need {
            return;
        }
        let lost_names: Vec<&str> = lost_idx.iter().map(|&i| regions[i]).collect();
        let d = Diagnostic::new(
            &rules::SENTINEL_QUORUM_LOST,
            format!(
                "store `{}`: losing {} leaves {left} of {total} Sentinels; {arithmetic}",
                s.name,
                join_regions(&lost_names)
            ),
            self.at(&path),
            &path,
        )
        .label(format!(
            "Sentinels cannot fail over after losing {}",
            join_regions(&lost_names)
        ))
        .note(format!("Sentinels by region: {}", by_region.join(", ")))
        .store(&s.name);
        let d = self.member_labels(d, si, s, &lost_names, |m| {
            m.sentinel
                .then(|| format!("Sentinel lost with {}", m.region))
        });
        self.push(d);
    }

    /// Regions in which the store has members, in declaration order (undeclared ones after).
    fn store_regions(&self, s: &'a Store) -> Vec<&'a str> {
        let mut out: Vec<&'a str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for r in &self.t.regions {
            if s.members.iter().any(|m| m.region == r.name) && seen.insert(&r.name) {
                out.push(&r.name);
            }
        }
        for m in &s.members {
            if seen.insert(&m.region) {
                out.push(&m.region);
            }
        }
        out
    }

    fn tally(&self, s: &Store, regions: &[&str], f: impl Fn(&Member) -> u64) -> Vec<u64> {
        let idx: HashMap<&str, usize> = regions.iter().enumerate().map(|(i, r)| (*r, i)).collect();
        let mut out = vec![0u64; regions.len()];
        for m in &s.members {
            out[idx[m.region.as_str()]] += f(m);
        }
        out
    }

    fn member_labels(
        &self,
        d: Diagnostic,
        si: usize,
        s: &Store,
        lost: &[&str],
        pick: impl Fn(&Member) -> Option<String>,
    ) -> Diagnostic {
        let mut d = d;
        let mut shown = 0;
        let mut hidden = 0;
        for (mi, m) in s.members.iter().enumerate() {
            if !lost.contains(&m.region.as_str()) {
                continue;
            }
            if let Some(text) = pick(m) {
                if shown < MAX_LABELS {
                    let p = mpath(si, mi, "region");
                    d = d.secondary(self.at(&p), p, text);
                    shown += 1;
                } else {
                    hidden += 1;
                }
            }
        }
        if hidden > 0 {
            d = d.note(format!(
                "{hidden} more members in the lost regions are not shown"
            ));
        }
        d
    }

    fn survival(&mut self, si: usize, s: &'a Store) {
        let n = self.opts.tolerate;
        let regions = self.store_regions(s);
        let name_path = spath(si, "name");
        let mut majority_broken = false;

        if s.kind.elects() {
            let votes = self.tally(s, &regions, |m| u64::from(m.effective_votes()));
            let total: u64 = votes.iter().sum();
            let need = majority(total);
            if total == 0 {
                majority_broken = true;
                let d = Diagnostic::new(
                    &rules::MAJORITY_LOST,
                    format!(
                        "store `{}` has no voting members; it can never elect a primary",
                        s.name
                    ),
                    self.at(&name_path),
                    &name_path,
                )
                .label("0 votes")
                .store(&s.name);
                self.push(d);
            } else {
                let (lost_idx, lost) = worst_loss(&votes, n);
                let left = total - lost;
                if left < need {
                    majority_broken = true;
                    let lost_names: Vec<&str> = lost_idx.iter().map(|&i| regions[i]).collect();
                    let by_region: Vec<String> = regions
                        .iter()
                        .zip(&votes)
                        .map(|(r, v)| format!("{r} {v}"))
                        .collect();
                    let mut d = Diagnostic::new(
                        &rules::MAJORITY_LOST,
                        format!(
                            "store `{}`: losing {} leaves {left} of {total} votes; a majority needs {need}",
                            s.name,
                            join_regions(&lost_names)
                        ),
                        self.at(&name_path),
                        &name_path,
                    )
                    .label(format!("cannot elect a primary after losing {}", join_regions(&lost_names)))
                    .note(format!("votes by region: {}", by_region.join(", ")))
                    .store(&s.name);
                    if n == 1 {
                        for (i, r) in regions.iter().enumerate() {
                            if lost_idx.contains(&i) {
                                continue;
                            }
                            let l = total - votes[i];
                            if l < need {
                                d = d.note(format!("losing {r} also leaves {l} of {total} votes"));
                            }
                        }
                    }
                    let d = self.member_labels(d, si, s, &lost_names, |m| {
                        let v = u64::from(m.effective_votes());
                        (v > 0).then(|| {
                            format!("{} lost with {}", plural(v, "vote", "votes"), m.region)
                        })
                    });
                    self.push(d);
                }
            }
            if total > 0 && total % 2 == 0 {
                let d = Diagnostic::new(
                    &rules::EVEN_VOTERS,
                    format!(
                        "store `{}` has {total} votes; an even number tolerates no more failures than {}",
                        s.name,
                        total - 1
                    ),
                    self.at(&name_path),
                    &name_path,
                )
                .label(format!("{total} votes"))
                .store(&s.name);
                self.push(d);
            }
            // The calculated majority for w:"majority" is the smaller of the
            // voting majority and the number of data-bearing voting members.
            if s.kind == StoreKind::Mongodb && !majority_broken && total > 0 {
                let data_voters = self.tally(s, &regions, |m| {
                    u64::from(m.effective_votes() > 0 && !m.arbiter)
                });
                let dv_total: u64 = data_voters.iter().sum();
                let w = need.min(dv_total);
                let (lost_idx, lost) = worst_loss(&data_voters, n);
                if dv_total > 0 && dv_total - lost < w {
                    let lost_names: Vec<&str> = lost_idx.iter().map(|&i| regions[i]).collect();
                    let left = dv_total - lost;
                    let d = Diagnostic::new(
                        &rules::MAJORITY_WRITES_UNAVAILABLE,
                        format!(
                            "store `{}`: losing {} leaves {} of {dv_total} data-bearing voting members; w:\"majority\" writes need {w}",
                            s.name,
                            join_regions(&lost_names),
                            left
                        ),
                        self.at(&name_path),
                        &name_path,
                    )
                    .label("a primary can still be elected, but majority writes cannot be acknowledged")
                    .store(&s.name);
                    let d = self.member_labels(d, si, s, &lost_names, |m| {
                        (m.effective_votes() > 0 && !m.arbiter)
                            .then(|| format!("data-bearing voter lost with {}", m.region))
                    });
                    self.push(d);
                }
            }
        }

        // Some member that can become primary must survive.
        let electable = self.tally(s, &regions, |m| u64::from(m.electable()));
        let holders: Vec<&str> = regions
            .iter()
            .zip(&electable)
            .filter(|(_, &e)| e > 0)
            .map(|(r, _)| *r)
            .collect();
        let what = match s.kind {
            StoreKind::Postgres => "no standby that can be promoted",
            StoreKind::Cosmosdb => "no account location that can take writes",
            _ => "no member that can become primary",
        };
        let help = match s.kind {
            StoreKind::Postgres => "add a streaming standby with priority > 0 in another region",
            StoreKind::Cosmosdb => "add another account location (with priority > 0) in another region",
            StoreKind::Mongodb => "add a member with priority > 0 that is neither arbiter nor hidden in another region",
            StoreKind::Eventstoredb => "add a node that is not a read-only replica, with priority > 0, in another region",
            StoreKind::Redis => "add a Redis replica (not a Sentinel) with priority > 0 in another region",
        };
        if holders.is_empty() {
            let d = Diagnostic::new(
                &rules::NO_PROMOTABLE_SURVIVOR,
                format!("store `{}` has {what}, even with every region up", s.name),
                self.at(&name_path),
                &name_path,
            )
            .label("no member with priority > 0 that can hold the primary role")
            .help(help)
            .store(&s.name);
            self.push(d);
        } else if holders.len() <= n {
            let mut d = Diagnostic::new(
                &rules::NO_PROMOTABLE_SURVIVOR,
                format!(
                    "store `{}`: losing {} leaves {what}",
                    s.name,
                    join_regions(&holders)
                ),
                self.at(&name_path),
                &name_path,
            )
            .label(format!(
                "every member that can become primary is in {}",
                join_regions(&holders)
            ))
            .help(help)
            .store(&s.name);
            d = self.member_labels(d, si, s, &holders, |m| {
                m.electable()
                    .then(|| format!("can become primary, lost with {}", m.region))
            });
            self.push(d);
        }
    }

    fn primary_preference(&mut self, si: usize, s: &Store) {
        let primaries: Vec<&str> = self
            .t
            .regions
            .iter()
            .filter(|r| r.role == RegionRole::Primary)
            .map(|r| r.name.as_str())
            .collect();
        let [primary] = primaries.as_slice() else {
            return;
        };
        if s.kind == StoreKind::Cosmosdb {
            if let Some((mi, m)) = s
                .members
                .iter()
                .enumerate()
                .find(|(_, m)| m.failover_priority == Some(0))
            {
                if m.region != *primary {
                    let p = mpath(si, mi, "failover_priority");
                    let d = Diagnostic::new(
                        &rules::PRIMARY_PRIORITY_ELSEWHERE,
                        format!(
                            "the write region of `{}` (failover_priority 0) is `{}`, not the primary region `{primary}`",
                            s.name, m.region
                        ),
                        self.at(&p),
                        &p,
                    )
                    .label(format!("write region in {}", m.region))
                    .help(format!("give the location in `{primary}` failover_priority 0"))
                    .store(&s.name)
                    .member(&m.name);
                    self.push(d);
                }
            }
            return;
        }
        let top = s
            .members
            .iter()
            .filter(|m| m.electable())
            .map(|m| m.priority)
            .fold(f64::NEG_INFINITY, f64::max);
        if !top.is_finite() {
            return;
        }
        let outside: Vec<usize> = (0..s.members.len())
            .filter(|&i| {
                let m = &s.members[i];
                m.electable() && m.priority == top && m.region != *primary
            })
            .collect();
        if outside.is_empty() {
            return;
        }
        let first = &s.members[outside[0]];
        let name_path = spath(si, "name");
        let mut d = Diagnostic::new(
            &rules::PRIMARY_PRIORITY_ELSEWHERE,
            format!(
                "store `{}`: the highest priority ({}) is held by `{}` in `{}`, outside the primary region `{primary}`",
                s.name,
                fmt_priority(top),
                first.name,
                first.region
            ),
            self.at(&name_path),
            &name_path,
        )
        .label("primary may settle outside the primary region")
        .help(format!("give the members in `{primary}` a strictly higher priority than any other member"))
        .store(&s.name);
        for &mi in outside.iter().take(MAX_LABELS) {
            let p = mpath(si, mi, "priority");
            let m = &s.members[mi];
            d = d.secondary(
                self.at(&p),
                p,
                format!("priority {} in {}", fmt_priority(m.priority), m.region),
            );
        }
        self.push(d);
    }

    fn dependencies(&mut self) {
        let t = self.t;
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (si, s) in t.stores.iter().enumerate() {
            index.entry(s.name.as_str()).or_insert(si);
        }
        // Edges store → dependency, with the depends_on position for labels.
        let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); t.stores.len()];
        for (si, s) in t.stores.iter().enumerate() {
            for (k, dep) in s.depends_on.iter().enumerate() {
                match index.get(dep.as_str()) {
                    Some(&di) => {
                        if index.get(s.name.as_str()) == Some(&si) {
                            edges[si].push((di, k));
                        }
                    }
                    None => {
                        let p = spath(si, &format!("depends_on[{k}]"));
                        let known: Vec<&str> = t.stores.iter().map(|s| s.name.as_str()).collect();
                        let d = Diagnostic::new(
                            &rules::UNKNOWN_DEPENDENCY,
                            format!("store `{}` depends on unknown store `{dep}`", s.name),
                            self.at(&p),
                            &p,
                        )
                        .label("no store has this name")
                        .note(format!("stores in this file: {}", known.join(", ")))
                        .store(&s.name);
                        let d = match did_you_mean(dep, known.iter().copied()) {
                            Some(meant) => d
                                .label(format!("did you mean `{meant}`?"))
                                .help(format!("depend on `{meant}`")),
                            None => d,
                        };
                        self.push(d);
                    }
                }
            }
        }
        for cycle in find_cycles(&edges) {
            // cycle: [(store, depends_on index of the edge to the next store)]
            let names: Vec<&str> = cycle
                .iter()
                .map(|&(s, _)| t.stores[s].name.as_str())
                .chain([t.stores[cycle[0].0].name.as_str()])
                .collect();
            let (s0, k0) = cycle[0];
            let p0 = spath(s0, &format!("depends_on[{k0}]"));
            let mut d = Diagnostic::new(
                &rules::DEPENDENCY_CYCLE,
                format!("dependency cycle: {}", names.join(" -> ")),
                self.at(&p0),
                &p0,
            )
            .label(format!("`{}` depends on `{}`", names[0], names[1]))
            .note("`a -> b` means store a depends on b: b must be promoted first")
            .store(&t.stores[s0].name);
            for (i, &(s, k)) in cycle.iter().enumerate().skip(1) {
                let p = spath(s, &format!("depends_on[{k}]"));
                d = d.secondary(
                    self.at(&p),
                    p,
                    format!("`{}` depends on `{}`", names[i], names[i + 1]),
                );
            }
            self.push(d);
        }
    }
}

/// One cycle per strongly connected component that has one, as a list of
/// (node, edge label) where the edge leads to the next node. Iterative
/// Tarjan, so long dependency chains cannot overflow the stack.
fn find_cycles(edges: &[Vec<(usize, usize)>]) -> Vec<Vec<(usize, usize)>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comp = vec![usize::MAX; n];
    let mut comps: Vec<Vec<usize>> = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, ei)) = work.last() {
            if ei < edges[v].len() {
                let w = edges[v][ei].0;
                if let Some(top) = work.last_mut() {
                    top.1 += 1;
                }
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(u, _)) = work.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut c = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp[w] = comps.len();
                        c.push(w);
                        if w == v {
                            break;
                        }
                    }
                    comps.push(c);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (ci, c) in comps.iter().enumerate() {
        let start = *c.iter().min().expect("components are non-empty");
        let self_loop = edges[start].iter().find(|&&(w, _)| w == start);
        if c.len() == 1 {
            if let Some(&(_, k)) = self_loop {
                out.push(vec![(start, k)]);
            }
            continue;
        }
        // Shortest path back to `start` inside the component (BFS).
        let mut prev: HashMap<usize, (usize, usize)> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut found = None;
        'bfs: while let Some(v) = queue.pop_front() {
            for &(w, k) in &edges[v] {
                if comp[w] != ci {
                    continue;
                }
                if w == start {
                    found = Some((v, k));
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(w) {
                    e.insert((v, k));
                    queue.push_back(w);
                }
            }
        }
        let Some((last, last_k)) = found else {
            continue;
        };
        let mut path = vec![(last, last_k)];
        let mut v = last;
        while v != start {
            let (p, k) = prev[&v];
            path.push((p, k));
            v = p;
        }
        path.reverse();
        out.push(path);
    }
    out.sort_by_key(|c| c[0].0);
    out
}

#[cfg(test)]
mod tests {
    use super::find_cycles;

    #[test]
    fn finds_cycles_and_self_loops() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 0
        let edges = vec![
            vec![(1, 0)],
            vec![(2, 0)],
            vec![(0, 0)],
            vec![(3, 0)],
            vec![(0, 0)],
        ];
        let cycles = find_cycles(&edges);
        let nodes: Vec<Vec<usize>> = cycles
            .iter()
            .map(|c| c.iter().map(|&(n, _)| n).collect())
            .collect();
        assert_eq!(nodes, vec![vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn acyclic_has_none() {
        let edges = vec![vec![(1, 0), (2, 1)], vec![(2, 0)], vec![]];
        assert!(find_cycles(&edges).is_empty());
    }
}
