//! Gates: rules that must hold before a plan starts and between its stages,
//! in the spirit of AWS ARC's safety rules. A failing gate stops the
//! execution before anything of the next stage is issued and names the rule;
//! before the first stage that means nothing was touched.
//!
//! - `capacity` (built in, whenever the topology declares capacity): the
//!   regions left serving after the move can carry the whole load — the same
//!   N+1 arithmetic as topocheck's TC107, for the regions this execution
//!   moves primaries away from (`switchyard_topology::capacity`);
//! - `min_healthy_regions = K`: at least K regions healthy after the move;
//! - `flap_damping_s = N`: no other execution that changed a store ended in
//!   the last N seconds (a GTM failover delay: a blip must not flip regions);
//! - `failback_delay_s = N`: a move back to the primary region only once that
//!   region has been observed healthy, continuously, for N seconds (a GTM
//!   failback delay), from the region health log;
//! - `[[gates.check]]`: an operator command or an HTTP GET, with a timeout and
//!   an expected answer (Netflix's stream-starts metric is one).
//!
//! Every evaluation is journaled (`type = "gate"`).

use crate::journal::{now_ms, summarize, ExecutionStatus, JournalStore, Record};
use crate::stage_hook::run_command;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use switchyard_controller::Role;
use switchyard_topology::{capacity, RegionRole, Topology};

pub use crate::service::Observations;

/// Default time an external check may take.
pub const DEFAULT_CHECK_TIMEOUT_MS: u64 = 10_000;

/// Default largest gap between two health samples of a region that still
/// counts as continuous observation.
pub const DEFAULT_HEALTH_MAX_GAP_S: u64 = 120;

/// The `[gates]` table of the safety policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    /// At least this many regions healthy after the move.
    #[serde(default)]
    pub min_healthy_regions: Option<usize>,
    /// No other execution that changed a store ended in the last N seconds.
    #[serde(default)]
    pub flap_damping_s: Option<u64>,
    /// Fail back to the primary region only after it has been healthy for N seconds.
    #[serde(default)]
    pub failback_delay_s: Option<u64>,
    /// Two health samples further apart than this break a region's healthy
    /// run: nobody looked in between.
    #[serde(default = "default_gap")]
    pub health_max_gap_s: u64,
    /// External checks.
    #[serde(default)]
    pub check: Vec<ExternalCheck>,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy {
            min_healthy_regions: None,
            flap_damping_s: None,
            failback_delay_s: None,
            health_max_gap_s: DEFAULT_HEALTH_MAX_GAP_S,
            check: vec![],
        }
    }
}

fn default_gap() -> u64 {
    DEFAULT_HEALTH_MAX_GAP_S
}

fn default_check_timeout() -> u64 {
    DEFAULT_CHECK_TIMEOUT_MS
}

fn default_status() -> u16 {
    200
}

fn yes() -> bool {
    true
}

/// One `[[gates.check]]`: a command or an HTTP GET and the answer expected.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalCheck {
    /// Name used in messages and the journal.
    pub name: String,
    /// Run by `sh -c` with the execution's facts in `SWITCHYARD_*`.
    #[serde(default)]
    pub command: Option<String>,
    /// URL to GET (http or https).
    #[serde(default)]
    pub http_get: Option<String>,
    /// Give up (and fail) after this many milliseconds.
    #[serde(default = "default_check_timeout")]
    pub timeout_ms: u64,
    /// Command: the exit status expected.
    #[serde(default)]
    pub expect_exit: i32,
    /// HTTP: the status expected.
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// Text the command's stdout or the response body must contain.
    #[serde(default)]
    pub expect_body: Option<String>,
    /// Also evaluated before every stage after the first (default true).
    #[serde(default = "yes")]
    pub between_stages: bool,
}

impl GatePolicy {
    /// Problems a parser cannot see, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        if self.min_healthy_regions == Some(0) {
            out.push((
                "gates.min_healthy_regions".into(),
                "0 regions is no rule; remove it or say at least 1".into(),
            ));
        }
        if self.health_max_gap_s == 0 {
            out.push((
                "gates.health_max_gap_s".into(),
                "must be at least 1 second".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.check.iter().enumerate() {
            let at = |f: &str| format!("gates.check[{i}].{f}");
            match (&c.command, &c.http_get) {
                (Some(_), Some(_)) => out.push((
                    at("http_get"),
                    "a check is either a `command` or an `http_get`, not both".into(),
                )),
                (None, None) => out.push((
                    at("name"),
                    format!("check `{}` needs a `command` or an `http_get`", c.name),
                )),
                (None, Some(url))
                    if !(url.starts_with("http://") || url.starts_with("https://")) =>
                {
                    out.push((at("http_get"), format!("`{url}` is not an http(s) URL")))
                }
                _ => {}
            }
            if c.timeout_ms == 0 {
                out.push((
                    at("timeout_ms"),
                    "a check needs a timeout of at least 1 ms".into(),
                ));
            }
            if !names.insert(c.name.as_str()) {
                out.push((at("name"), format!("two checks are named `{}`", c.name)));
            }
        }
        out
    }
}

/// One gate evaluation (journaled as `type = "gate"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GateRecord {
    /// When it was decided.
    pub at_ms: u64,
    /// Stage it guards (0-based in memory, written from 1 like every stage
    /// number; the first stage's gates are "before the plan starts").
    #[serde(with = "crate::journal::one_based")]
    #[schemars(with = "usize")]
    pub stage: usize,
    /// The rule: `capacity`, `min_healthy_regions`, `flap_damping`,
    /// `failback_delay`, `check:<name>`.
    pub rule: String,
    /// Whether it held.
    pub passed: bool,
    /// The evidence, in words.
    pub detail: String,
}

/// What a gate evaluation before the first stage knows about the move.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Move {
    /// Region every store should end up primary in.
    pub to: String,
    /// Regions the moved stores are primary in now (the ones being left).
    pub from: Vec<String>,
    /// A forced failover: the regions left are treated as lost.
    pub forced: bool,
    /// The stores the plan changes.
    pub stores: Vec<String>,
}

/// Whether every member the topology places in `region` is observed
/// healthy: reachable, in a known role, and (for a follower) receiving.
/// A store that cannot be observed makes each of its regions unhealthy:
/// health that cannot be observed is not assumed. `Err` says why not.
pub fn region_health(t: &Topology, observed: &Observations, region: &str) -> Result<(), String> {
    let mut members = 0;
    for s in &t.stores {
        let here: Vec<&str> = s.members_in(region).map(|m| m.name.as_str()).collect();
        if here.is_empty() {
            continue;
        }
        members += here.len();
        let Some((_, o)) = observed.iter().find(|(n, _)| *n == s.name) else {
            return Err(format!("store `{}` was not observed", s.name));
        };
        let st = o
            .as_ref()
            .map_err(|e| format!("store `{}` cannot be observed: {e}", s.name))?;
        for name in here {
            let Some(m) = st.members.iter().find(|m| m.name == name) else {
                return Err(format!("{name} ({}) is not in its observation", s.name));
            };
            if !m.reachable || matches!(m.role, Role::Down | Role::Unknown) {
                return Err(format!(
                    "{name} ({}) is {}",
                    s.name,
                    if m.reachable {
                        m.role.to_string()
                    } else {
                        "unreachable".into()
                    }
                ));
            }
            if m.replicating == Some(false) {
                return Err(format!("{name} ({}) receives no replication", s.name));
            }
        }
    }
    if members == 0 {
        return Err("no member of any store is placed there".into());
    }
    Ok(())
}

/// Where each moved store is primary now: its observed (newest) primary's
/// region; for a store with no observed primary, the regions holding its
/// unreachable members (the ones a forced failover leaves behind).
pub fn source_regions(
    t: &Topology,
    observed: &Observations,
    stores: &[String],
    to: &str,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    for name in stores {
        let Some((_, Ok(st))) = observed.iter().find(|(n, _)| n == name) else {
            continue;
        };
        match st.newest_primary() {
            Some(p) if p.region != to => {
                out.insert(p.region.clone());
            }
            Some(_) => {}
            None => {
                for m in st.members.iter().filter(|m| !m.reachable && m.region != to) {
                    out.insert(m.region.clone());
                }
            }
        }
    }
    // Declaration order, as every message names regions.
    t.regions
        .iter()
        .filter(|r| out.contains(&r.name))
        .map(|r| r.name.clone())
        .collect()
}

/// The region health log: one JSON line per region per observation, so that
/// "healthy for N seconds" is a fact someone observed, not an assumption.
pub const HEALTH_LOG: &str = "region-health.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HealthSample {
    at_ms: u64,
    region: String,
    healthy: bool,
}

/// Append one health sample per region to the log in `state_dir`. Best
/// effort: a lost sample only makes the failback gate stricter.
pub fn record_health(state_dir: &Path, t: &Topology, observed: &Observations) {
    let at_ms = now_ms();
    let mut lines = String::new();
    for r in &t.regions {
        let healthy = region_health(t, observed, &r.name).is_ok();
        if let Ok(l) = serde_json::to_string(&HealthSample {
            at_ms,
            region: r.name.clone(),
            healthy,
        }) {
            lines.push_str(&l);
            lines.push('\n');
        }
    }
    let _ = std::fs::create_dir_all(state_dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(HEALTH_LOG))
    {
        let _ = f.write_all(lines.as_bytes());
    }
}

/// Since when `region` has been healthy without a break, by the log: the
/// earliest sample of the latest run of healthy samples no two of which are
/// more than `max_gap_ms` apart. `None` when the latest sample is not healthy.
pub fn healthy_since(state_dir: &Path, region: &str, max_gap_ms: u64) -> Option<u64> {
    let text = std::fs::read_to_string(state_dir.join(HEALTH_LOG)).ok()?;
    let mut samples: Vec<(u64, bool)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<HealthSample>(l).ok())
        .filter(|s| s.region == region)
        .map(|s| (s.at_ms, s.healthy))
        .collect();
    samples.sort_by_key(|s| s.0);
    let mut since = None;
    let mut later: Option<u64> = None;
    for &(at, healthy) in samples.iter().rev() {
        if !healthy || later.is_some_and(|l| l - at > max_gap_ms) {
            break;
        }
        since = Some(at);
        later = Some(at);
    }
    since
}

/// Evaluate the gates that guard the start of a plan (`stage` 0), in order:
/// capacity, healthy regions, flap damping, failback delay, external checks.
/// `kind` exempts executions that undo or complete another (`abort`,
/// `rollback`, `drill-back`) from flap damping and the failback delay:
/// holding them back would keep the system in the state they repair.
#[allow(clippy::too_many_arguments)]
pub async fn before_start(
    policy: &GatePolicy,
    t: &Topology,
    observed: &Observations,
    mv: &Move,
    kind: &str,
    execution_id: &str,
    journals: &dyn JournalStore,
    state_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Vec<GateRecord> {
    let mut out = vec![];
    let mut gate = |rule: &str, result: Result<String, String>| {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        out.push(GateRecord {
            at_ms: now_ms(),
            stage: 0,
            rule: rule.into(),
            passed,
            detail,
        });
    };
    record_health(state_dir, t, observed);
    if capacity::declared(t) {
        gate("capacity", capacity_gate(t, mv));
    }
    if let Some(k) = policy.min_healthy_regions {
        gate(
            "min_healthy_regions",
            healthy_regions_gate(t, observed, mv, k),
        );
    }
    let exempt = matches!(kind, "abort" | "rollback" | "drill-back");
    let wants_history = policy.flap_damping_s.is_some() || policy.failback_delay_s.is_some();
    let history = if wants_history && !exempt {
        History::read(journals, execution_id)
    } else {
        Ok(History::default())
    };
    if let (Some(n), false) = (policy.flap_damping_s, exempt) {
        gate("flap_damping", flap_gate(&history, n));
    }
    if let (Some(n), false) = (policy.failback_delay_s, exempt) {
        if let Some(r) = failback_gate(t, mv, &history, state_dir, n, policy.health_max_gap_s) {
            gate("failback_delay", r);
        }
    }
    out.extend(external(policy, 0, env).await);
    out
}

/// The gates evaluated before a later stage: the external checks that say
/// `between_stages = true`.
pub async fn between_stages(
    policy: &GatePolicy,
    stage: usize,
    env: &BTreeMap<String, String>,
) -> Vec<GateRecord> {
    external(policy, stage, env).await
}

fn capacity_gate(t: &Topology, mv: &Move) -> Result<String, String> {
    if let Some(u) = capacity::undeclared(t).first() {
        return Err(format!(
            "region `{}` declares no `{}`: whether the regions left can carry the load cannot be judged",
            t.regions[u.region].name, u.field
        ));
    }
    let lost: Vec<&str> = mv.from.iter().map(String::as_str).collect();
    let v = capacity::after_losing(t, &lost);
    let text = if lost.is_empty() {
        format!(
            "no region is left: capacity {} for a load of {}",
            capacity::num(v.survivor_capacity),
            capacity::num(v.total_load)
        )
    } else {
        v.arithmetic()
    };
    if v.fits() {
        Ok(text)
    } else {
        Err(format!("moving to {}: {text}", mv.to))
    }
}

fn healthy_regions_gate(
    t: &Topology,
    observed: &Observations,
    mv: &Move,
    k: usize,
) -> Result<String, String> {
    let mut healthy = vec![];
    let mut not = vec![];
    for r in t
        .regions
        .iter()
        .filter(|r| r.role != RegionRole::Witness || region_health(t, observed, &r.name).is_ok())
    {
        if mv.forced && mv.from.contains(&r.name) {
            not.push(format!("{} (left by this forced failover)", r.name));
            continue;
        }
        match region_health(t, observed, &r.name) {
            Ok(()) => healthy.push(r.name.clone()),
            Err(why) => not.push(format!("{}: {why}", r.name)),
        }
    }
    let text = format!(
        "{} healthy after the move ({}); the policy needs at least {k}{}",
        healthy.len(),
        if healthy.is_empty() {
            "none".into()
        } else {
            healthy.join(", ")
        },
        if not.is_empty() {
            format!("; not healthy: {}", not.join("; "))
        } else {
            String::new()
        }
    );
    if healthy.len() >= k {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The execution history the history-based gates (flap damping, failback
/// delay) judge by: every other execution in the journal store the service
/// keeps — the state directory's files, or the coordination backend when
/// `serve` runs on etcd or Consul, so a server that has just become leader
/// sees what the previous leader did, not only its own executions.
#[derive(Debug, Default)]
pub struct History {
    /// `(id, records)` of every execution but the one being gated.
    executions: Vec<(String, Vec<Record>)>,
}

impl History {
    /// Read every journal in `journals` except `current`'s. A journal that
    /// cannot be read is skipped (a damaged one is reported by `executions`);
    /// a store that cannot be listed is an error: the gates then refuse.
    pub fn read(journals: &dyn JournalStore, current: &str) -> Result<History, String> {
        let ids = journals
            .list()
            .map_err(|e| format!("cannot list executions: {e}"))?;
        let executions = ids
            .into_iter()
            .filter(|id| id != current)
            .filter_map(|id| {
                let scan = journals.scan(&id).ok()?;
                Some((id, scan.records))
            })
            .collect();
        Ok(History { executions })
    }

    /// Executions that issued a mutating step, with their summaries.
    fn changed_stores(&self) -> impl Iterator<Item = (&str, &[Record], u64, ExecutionStatus)> {
        self.executions.iter().filter_map(|(id, recs)| {
            let changed = recs
                .iter()
                .any(|r| matches!(r, Record::Intent { op, .. } if op.is_mutating()));
            let sum = summarize(id, recs);
            changed.then_some((id.as_str(), recs.as_slice(), sum.last_at_ms, sum.status))
        })
    }

    /// The latest ended execution that changed a store: `(id, ended at)`.
    fn latest_change(&self) -> Option<(&str, u64)> {
        self.changed_stores()
            .filter(|(.., status)| {
                matches!(
                    status,
                    ExecutionStatus::Succeeded | ExecutionStatus::Aborted
                )
            })
            .map(|(id, _, at, _)| (id, at))
            .max_by_key(|(_, at)| *at)
    }

    /// The latest forced failover that left `region` and changed a store:
    /// `(id, last record at)`. A forced failover counts the regions it
    /// leaves as lost (its `regions_left` record names them), so it is an
    /// observation that `region` was not healthy then — whichever server
    /// made it.
    fn latest_forced_leave(&self, region: &str) -> Option<(&str, u64)> {
        self.changed_stores()
            .filter(|(_, recs, ..)| {
                let forced = recs.iter().any(|r| {
                    matches!(r, Record::Started { plan, .. } if plan.mode != crate::plan::Mode::Planned)
                });
                let left = recs.iter().any(|r| {
                    matches!(r, Record::Gate(g) if g.rule == crate::safety::REGIONS_LEFT
                        && g.detail.split(',').any(|x| x == region))
                });
                forced && left
            })
            .map(|(id, _, at, _)| (id, at))
            .max_by_key(|(_, at)| *at)
    }
}

fn flap_gate(history: &Result<History, String>, n: u64) -> Result<String, String> {
    let now = now_ms();
    let latest = history.as_ref().map_err(Clone::clone)?.latest_change();
    match latest {
        Some((id, at)) if now.saturating_sub(at) < n * 1000 => Err(format!(
            "execution {id} changed stores and ended {} s ago ({}); the policy wants {n} s between executions, so a blip cannot flip regions back and forth; retry after {}",
            now.saturating_sub(at) / 1000,
            crate::journal::format_ms(at),
            crate::journal::format_ms(at + n * 1000)
        )),
        Some((id, at)) => Ok(format!(
            "the latest execution that changed stores, {id}, ended {} s ago (at least {n} s)",
            now.saturating_sub(at) / 1000
        )),
        None => Ok("no earlier execution changed a store".into()),
    }
}

/// `None` when the move is not a failback (its target is not the primary
/// region). The healthy run is the region health log's, cut short by the
/// latest forced failover away from the region in the execution history.
fn failback_gate(
    t: &Topology,
    mv: &Move,
    history: &Result<History, String>,
    state_dir: &Path,
    n: u64,
    gap_s: u64,
) -> Option<Result<String, String>> {
    let primary = t.regions.iter().find(|r| r.role == RegionRole::Primary)?;
    if primary.name != mv.to || mv.from.is_empty() {
        return None;
    }
    let history = match history {
        Ok(h) => h,
        Err(e) => return Some(Err(e.clone())),
    };
    let now = now_ms();
    let left = history.latest_forced_leave(&mv.to);
    let logged = healthy_since(state_dir, &mv.to, gap_s * 1000);
    // A forced failover away from the region after the run began says it
    // was lost then: the run counts from that execution's end.
    let (since, cut) = match (logged, left) {
        (Some(s), Some((id, at))) if at > s => (Some(at), Some((id, at))),
        (s, _) => (s, None),
    };
    let basis = match cut {
        Some((id, at)) => format!(
            "execution {id} failed over away from it by force, ending {}, so it counts as lost until then",
            crate::journal::format_ms(at)
        ),
        None => format!("samples at most {gap_s} s apart in {HEALTH_LOG}"),
    };
    Some(match since {
        Some(since) if now.saturating_sub(since) >= n * 1000 => Ok(format!(
            "{} has been observed healthy since {} ({} s, at least {n} s; {basis})",
            mv.to,
            crate::journal::format_ms(since),
            now.saturating_sub(since) / 1000
        )),
        Some(since) => Err(format!(
            "failing back to {} needs it healthy for {n} s, but it has been observed healthy ({basis}) only since {}, {} s ago; `switchyard state` records a sample",
            mv.to,
            crate::journal::format_ms(since),
            now.saturating_sub(since) / 1000
        )),
        None => Err(format!(
            "failing back to {} needs it healthy for {n} s, but it is not observed healthy now",
            mv.to
        )),
    })
}

async fn external(
    policy: &GatePolicy,
    stage: usize,
    env: &BTreeMap<String, String>,
) -> Vec<GateRecord> {
    let mut out = vec![];
    for c in policy
        .check
        .iter()
        .filter(|c| stage == 0 || c.between_stages)
    {
        let result = match (&c.command, &c.http_get) {
            (Some(cmd), _) => command_check(c, cmd, env).await,
            (None, Some(url)) => http_check(c, url).await,
            (None, None) => Err("neither a command nor an http_get".into()),
        };
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        out.push(GateRecord {
            at_ms: now_ms(),
            stage,
            rule: format!("check:{}", c.name),
            passed,
            detail,
        });
    }
    out
}

async fn command_check(
    c: &ExternalCheck,
    cmd: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, String> {
    let r = run_command(cmd, env, Duration::from_millis(c.timeout_ms)).await;
    let what = r.describe(c.timeout_ms);
    if r.timed_out || r.spawn_error.is_some() || r.exit != Some(c.expect_exit) {
        return Err(format!("`{cmd}`: {what}; expected exit {}", c.expect_exit));
    }
    if let Some(want) = &c.expect_body {
        if !r.stdout.contains(want.as_str()) {
            return Err(format!(
                "`{cmd}`: {what}, but its output lacks `{want}` (it printed `{}`)",
                r.stdout.trim().chars().take(200).collect::<String>()
            ));
        }
    }
    Ok(format!("`{cmd}`: {what}"))
}

async fn http_check(c: &ExternalCheck, url: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(c.timeout_ms))
        .build()
        .map_err(|e| format!("GET {url}: cannot build a client: {e}"))?;
    let resp = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("GET {url}: no answer within {} ms", c.timeout_ms)
        } else {
            format!("GET {url}: {e}")
        }
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("GET {url}: status {status}, body unreadable: {e}"))?;
    if status != c.expect_status {
        return Err(format!(
            "GET {url}: status {status}, expected {}",
            c.expect_status
        ));
    }
    if let Some(want) = &c.expect_body {
        if !body.contains(want.as_str()) {
            return Err(format!(
                "GET {url}: status {status}, but the body lacks `{want}` (it was `{}`)",
                body.trim().chars().take(200).collect::<String>()
            ));
        }
    }
    Ok(format!("GET {url}: status {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Mode, Plan};

    /// A finished execution that left `from` for `to` in `mode`, its last
    /// record at `ended_ms`.
    fn left(id: &str, mode: Mode, from: &str, to: &str, ended_ms: u64) -> (String, Vec<Record>) {
        let op = switchyard_controller::Operation::Promote {
            target_region: to.into(),
            mode: mode.promote_mode(),
            candidate: None,
        };
        let recs = vec![
            Record::Started {
                execution_id: id.into(),
                fencing_token: switchyard_controller::FencingToken(1),
                at_ms: ended_ms - 1000,
                kind: "failover".into(),
                topology_file: "lab.toml".into(),
                store_kinds: Default::default(),
                plan: Plan {
                    on_failure: None,
                    version: 1,
                    name: format!("failover to {to}"),
                    topology: "lab".into(),
                    target_region: to.into(),
                    mode,
                    depends_on: Default::default(),
                    stages: vec![],
                },
            },
            Record::Gate(GateRecord {
                at_ms: ended_ms - 900,
                stage: 0,
                rule: crate::safety::REGIONS_LEFT.into(),
                passed: true,
                detail: from.into(),
            }),
            Record::Intent {
                seq: 1,
                stage: 0,
                step: 0,
                store: "orders".into(),
                op,
                fencing_token: switchyard_controller::FencingToken(1),
                at_ms: ended_ms - 800,
            },
            Record::Finished { at_ms: ended_ms },
        ];
        (id.into(), recs)
    }

    /// Whoever ran the forced failover away from the primary region (a
    /// previous leader, in the backend's history), the failback delay
    /// counts the region's healthy run from its end, though this server's
    /// own health log shows the region healthy for an hour.
    #[test]
    fn a_forced_failover_away_in_the_history_restarts_the_failback_delay() {
        let t = crate::planner::tests::topology(false);
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let mut log = String::new();
        for k in 0..=60u64 {
            log.push_str(&format!(
                "{{\"at_ms\":{},\"region\":\"east\",\"healthy\":true}}\n",
                now - 3_600_000 + k * 60_000
            ));
        }
        std::fs::write(dir.path().join(HEALTH_LOG), log).unwrap();
        let mv = Move {
            to: "east".into(),
            from: vec!["west".into()],
            forced: false,
            stores: vec!["orders".into()],
        };
        let gate = |h: History| failback_gate(&t, &mv, &Ok(h), dir.path(), 600, 120).unwrap();

        // The log alone: an hour of health.
        assert!(gate(History::default()).is_ok());
        // A planned move away ten seconds ago says nothing about health.
        let planned = History {
            executions: vec![left("p", Mode::Planned, "east", "west", now - 10_000)],
        };
        assert!(gate(planned).is_ok());
        // A forced one does: east was lost until it ended.
        let forced = History {
            executions: vec![left("f", Mode::Forced, "east", "west", now - 10_000)],
        };
        let why = gate(forced).unwrap_err();
        assert!(
            why.contains("failing back to east needs it healthy for 600 s")
                && why.contains("execution f failed over away from it by force"),
            "{why}"
        );
        // A history that cannot be read refuses, saying why.
        let e = failback_gate(
            &t,
            &mv,
            &Err("cannot list executions: x".into()),
            dir.path(),
            600,
            120,
        );
        assert_eq!(e, Some(Err("cannot list executions: x".into())));
    }
}
