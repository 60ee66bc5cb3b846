//! The conformance suite: what every controller must pass against its own
//! backing (a real cluster, a protocol-level simulator checked by an
//! independent client, compose).
//!
//! It certifies what production runs: every case asks the application
//! [`Service`] for an execution — planned switchover, failback, forced
//! failover, drill, abort, rollback — over a one-store topology, so the
//! plan comes from the planner and the canonical sequences
//! ([`switchyard_controller::sequence`]), the executor and driver run it
//! (journal, fencing token, retries, checkpoints) and the controller is the
//! one the registry builds, inside the standard layers. The assertions are
//! made on what the stores show afterwards and on the journal (error kinds
//! as data, outcomes, the store's term at each checkpoint).
//!
//! A backing implements [`Harness`]: the store as a topology declares it,
//! and the few things only the backing can do (write a record through the
//! current primary, crash a member, make a region lag). Cases are selected
//! by [`Capability`]; a case that cannot apply is reported as skipped, never
//! as passed.
//!
//! ```ignore
//! let report = switchyard::conformance::run_all(&harness).await;
//! report.assert_passed();
//! ```
//!
//! Cases leave the store with exactly one primary, in the region it started
//! in, and every member following it, so they can run in any order on one
//! backing.

use crate::expectation::primary_in;
use crate::journal::{OpResult, Record};
use crate::plan::{CheckpointEntry, Mode, Plan, PlanOp, Stage, Step};
use crate::service::{
    Discard, Drilled, Finished, Outcome, PlanRequest, Service, ServiceError, StartRequest,
};
use async_trait::async_trait;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_controller::{
    Capability, Controller, ControllerExt, ErrorKind, ObservedState, Operation, Role,
};
use switchyard_topology::{Region, RegionRole, Store, Topology};

/// Errors a harness reports (backing-specific; the suite only prints them).
pub type HarnessError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a backing provides to the suite. Keep implementations small: the
/// suite does everything else through the service, as an operator would.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test, as a topology file declares it. The suite
    /// builds its controller from this with the registry, as production
    /// does.
    fn store(&self) -> Store;

    /// Write one record with `key` through the current primary and return
    /// once the store acknowledged it (the store's normal durability).
    async fn write(&self, key: u64) -> Result<(), HarnessError>;

    /// Whether the current primary holds the record `key`.
    async fn contains(&self, key: u64) -> Result<bool, HarnessError>;

    /// Crash `member` (SIGKILL or the closest equivalent). It stays down
    /// until [`Harness::restart_member`].
    async fn kill_member(&self, member: &str) -> Result<(), HarnessError>;

    /// Bring a killed member back as it was configured (a host reboot).
    async fn restart_member(&self, member: &str) -> Result<(), HarnessError>;

    /// Make every promotion candidate in `region` lag beyond the store's
    /// bound. `Ok(false)`: this backing cannot (the case is skipped).
    async fn induce_lag(&self, region: &str) -> Result<bool, HarnessError> {
        let _ = region;
        Ok(false)
    }

    /// Undo [`Harness::induce_lag`]; the region catches up afterwards.
    async fn clear_lag(&self, region: &str) -> Result<(), HarnessError> {
        let _ = region;
        Ok(())
    }
}

/// Suite settings.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// How long the suite's own waits (the store settling, a member coming
    /// back) may take.
    pub timeout: Duration,
    /// Poll interval of the suite's waits.
    pub poll: Duration,
    /// Stage timeout of every plan (the planner stretches it for stores
    /// whose operations take minutes).
    pub stage_timeout_ms: u64,
    /// How long a target may take to replay the fenced primary's position.
    pub catch_up_timeout_ms: u64,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        SuiteConfig {
            timeout: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            stage_timeout_ms: crate::plan::DEFAULT_STAGE_TIMEOUT_MS,
            catch_up_timeout_ms: 60_000,
        }
    }
}

/// A case's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every assertion held.
    Passed,
    /// The case does not apply to this controller (reason).
    Skipped(String),
    /// An assertion failed or an execution did not end as it must (what
    /// happened).
    Failed(String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Case name (the function name).
    pub name: &'static str,
    /// Verdict.
    pub verdict: Verdict,
    /// How long it took.
    pub elapsed: Duration,
}

/// Every case's result.
#[derive(Debug, Clone, Default)]
pub struct SuiteReport {
    /// Results in the order run.
    pub cases: Vec<CaseReport>,
}

impl SuiteReport {
    /// Cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Failed(_)))
    }

    /// Names of the cases that passed.
    pub fn passed(&self) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|c| c.verdict == Verdict::Passed)
            .map(|c| c.name)
            .collect()
    }

    /// Panic with the whole report when any case failed.
    pub fn assert_passed(&self) {
        assert!(
            self.failures().next().is_none(),
            "conformance failed:\n{self}"
        );
    }

    /// Panic unless every case passed (none failed, none skipped).
    pub fn assert_all_passed(&self) {
        assert!(
            self.cases.iter().all(|c| c.verdict == Verdict::Passed),
            "conformance: not every case passed:\n{self}"
        );
    }
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            let v = match &c.verdict {
                Verdict::Passed => "passed".to_string(),
                Verdict::Skipped(r) => format!("skipped: {r}"),
                Verdict::Failed(r) => format!("FAILED: {r}"),
            };
            writeln!(f, "{:<42} {:>8.2?}  {v}", c.name, c.elapsed)?;
        }
        Ok(())
    }
}

type CaseResult = Result<Verdict, String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// The service over a one-store topology, in a state directory of its own.
pub struct Suite<'h> {
    h: &'h dyn Harness,
    cfg: SuiteConfig,
    service: Service,
    ctl: Arc<dyn Controller>,
    cap: Capability,
    /// The region the primary was in when the suite started; every case
    /// leaves it there.
    origin: String,
    dir: PathBuf,
}

impl Drop for Suite<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The topology a backing's store is planned in: its regions, in the order
/// its members name them, the first preferred; a region of arbiters only is
/// a witness.
pub fn topology_for(store: &Store) -> Topology {
    let mut regions: Vec<Region> = vec![];
    for m in &store.members {
        if regions.iter().any(|r| r.name == m.region) {
            continue;
        }
        let witness = store
            .members
            .iter()
            .filter(|x| x.region == m.region)
            .all(|x| x.arbiter);
        regions.push(Region {
            name: m.region.clone(),
            role: if witness {
                RegionRole::Witness
            } else if regions.is_empty() {
                RegionRole::Primary
            } else {
                RegionRole::Secondary
            },
            capacity: None,
            load: None,
        });
    }
    Topology {
        name: "conformance".into(),
        regions,
        stores: vec![store.clone()],
        capacity_margin_percent: None,
    }
}

impl<'h> Suite<'h> {
    /// A service over the harness's store, with its journals, lock and
    /// topology file in a fresh temporary directory (removed on drop).
    pub async fn new(h: &'h dyn Harness, cfg: SuiteConfig) -> Result<Suite<'h>, String> {
        let store = h.store();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-conformance-{}-{}-{nanos}",
            store.name,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let topology = topology_for(&store);
        let file = dir.join("topology.toml");
        let text = toml::to_string(&topology).map_err(|e| format!("topology as TOML: {e}"))?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        let service = Service::new(file, topology, dir.join("state"));
        let ctl = service
            .controllers()
            .map_err(|e| e.to_string())?
            .get(&store.name)
            .cloned()
            .ok_or("the registry built no controller for the store")?;
        let cap = ctl.capability();
        let mut suite = Suite {
            h,
            cfg,
            service,
            ctl,
            cap,
            origin: String::new(),
            dir,
        };
        let s = suite.settle().await?;
        suite.origin = s.primary_region().ok_or("no primary region")?.to_string();
        Ok(suite)
    }

    /// The service the cases run their executions through.
    pub fn service(&self) -> &Service {
        &self.service
    }

    fn store(&self) -> &str {
        self.ctl.store()
    }

    /// Wait until the store has exactly one primary and every member is
    /// reachable and in a follower role (or the primary).
    async fn settle(&self) -> Result<ObservedState, String> {
        self.ctl
            .wait_until(self.cfg.timeout, self.cfg.poll, healthy)
            .await
            .map_err(|e| format!("store did not settle (one primary, all members following): {e}"))
    }

    fn request(&self, to: &str, mode: Mode) -> PlanRequest {
        PlanRequest {
            to: to.into(),
            mode,
            stage_timeout_ms: self.cfg.stage_timeout_ms,
            catch_up_timeout_ms: self.cfg.catch_up_timeout_ms,
            candidates: vec![],
        }
    }

    /// The topology's electable members of `region`.
    fn electable_in(&self, region: &str) -> Vec<String> {
        self.service
            .topology()
            .stores
            .iter()
            .flat_map(|s| s.members_in(region))
            .filter(|m| m.electable())
            .map(|m| m.name.clone())
            .collect()
    }

    /// Plan and run a failover of the store to `to` through the service.
    async fn failover(&self, to: &str, mode: Mode) -> Result<Finished, String> {
        let req = StartRequest::Failover(self.request(to, mode));
        self.start(&req, &format!("{mode} failover to {to}")).await
    }

    /// Run a plan (built from a generated one) through the service, which
    /// validates it against the topology as it does every plan file.
    async fn run_plan(&self, plan: &Plan) -> Result<Finished, String> {
        let req = StartRequest::PlanText {
            source: format!("conformance plan `{}`", plan.name),
            text: plan.to_json(),
        };
        self.start(&req, &plan.name).await
    }

    async fn start(&self, req: &StartRequest, what: &str) -> Result<Finished, String> {
        let pending = self
            .service
            .prepare(req)
            .await
            .map_err(|e| format!("{what}: {e}"))?
            .ok_or_else(|| format!("{what}: nothing to do (already there)"))?;
        self.service
            .run(pending, Arc::new(Discard))
            .await
            .map_err(|e| format!("{what}: {e}"))
    }

    /// The plan the service would run for a failover to `to`.
    async fn plan(&self, to: &str, mode: Mode) -> Result<Plan, String> {
        self.service
            .plan(&self.request(to, mode))
            .await
            .map_err(|e| format!("planning a {mode} failover to {to}: {e}"))?
            .ok_or_else(|| format!("planning a {mode} failover to {to}: already there"))
    }

    /// Plan and run a planned switchover back to where the suite started,
    /// unless the store is there already.
    async fn back_to_origin(&self) -> Result<(), String> {
        let origin = self.origin.clone();
        self.planned_unless_there(&origin, &format!("switching back to {origin}"))
            .await?;
        let s = self.settle().await?;
        ensure!(
            s.primary_region() == Some(origin.as_str()),
            "after switching back the primary is in {:?}",
            s.primary_region()
        );
        Ok(())
    }

    /// Plan and run a planned execution to `to` (`what` names it in
    /// errors) unless the planner finds nothing to do: it rejoins what
    /// needs it (a stale primary first), and a store already there and
    /// whole needs no execution.
    async fn planned_unless_there(&self, to: &str, what: &str) -> Result<(), String> {
        let req = StartRequest::Failover(self.request(to, Mode::Planned));
        let pending = self
            .service
            .prepare(&req)
            .await
            .map_err(|e| format!("planning {what}: {e}"))?;
        if let Some(p) = pending {
            let done = self
                .service
                .run(p, Arc::new(Discard))
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            succeeded(&done, what)?;
        }
        Ok(())
    }

    /// The journal of execution `id`.
    fn records(&self, id: &str) -> Result<Vec<Record>, String> {
        self.service
            .show(id)
            .map(|s| s.records)
            .map_err(|e| format!("reading the journal of {id}: {e}"))
    }

    /// A safety policy beside the topology with one pre-stage hook that
    /// stops `failover` executions before the stage whose name starts with
    /// `stage_prefix` (an operator's hook refusing: a resumable failure
    /// once something changed). Executions of other kinds (abort, rollback)
    /// pass it.
    fn stop_failovers_before(&self, stage_prefix: &str) -> Result<StopHook, String> {
        let path = crate::policy::path_for(self.service.topology_file());
        let text = format!(
            "[[hooks]]\nname = \"conformance stop\"\nat = \"pre_stage\"\ncommand = '''\
             case \"$SWITCHYARD_KIND:$SWITCHYARD_STAGE_NAME\" in \
             \"failover:{stage_prefix}\"*) echo stopped by the conformance suite >&2; exit 1;; esac'''\n"
        );
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(StopHook(path))
    }

    /// Write `n` records, then start a planned switchover to `target` that
    /// an operator's pre-stage hook stops before the stage named
    /// `stage_prefix…`: it must end `failed` (resumable: something changed).
    /// Returns the stopped execution and the records' first key.
    async fn stopped_switchover(
        &self,
        target: &str,
        stage_prefix: &str,
    ) -> Result<(Finished, u64), String> {
        let base = key_base();
        self.write_keys(base, 5).await?;
        let stopped = {
            let _hook = self.stop_failovers_before(stage_prefix)?;
            self.failover(target, Mode::Planned).await?
        };
        ensure!(
            stopped.outcome == Outcome::Failed,
            "a switchover stopped before `{stage_prefix}…` ended {:?}: {:?}",
            stopped.outcome,
            stopped.reason
        );
        Ok((stopped, base))
    }

    async fn write_keys(&self, base: u64, n: u64) -> Result<(), String> {
        for k in base..base + n {
            self.h
                .write(k)
                .await
                .map_err(|e| format!("write {k} through the primary failed: {e}"))?;
        }
        Ok(())
    }

    async fn assert_keys(&self, base: u64, n: u64, when: &str) -> Result<(), String> {
        for k in base..base + n {
            let ok = self
                .h
                .contains(k)
                .await
                .map_err(|e| format!("reading {k} from the primary failed: {e}"))?;
            ensure!(
                ok,
                "{when}: acknowledged record {k} is missing on the primary"
            );
        }
        Ok(())
    }

    /// Kill the primary `old` once `target` has caught up with it (so no
    /// acknowledged record is at risk and the last observation before the
    /// crash shows the target within the bound), and wait until it is
    /// observed unreachable.
    async fn kill_primary(&self, old: &str, target: &str) -> Result<(), String> {
        let (c, cfg) = (&self.ctl, &self.cfg);
        if self.cap.positions {
            c.wait_until(cfg.timeout, cfg.poll, |s| {
                let Some(p) = s.primary().and_then(|p| p.position) else {
                    return false;
                };
                s.members
                    .iter()
                    .filter(|m| m.region == target && m.role == Role::Secondary)
                    .any(|m| m.position.is_some_and(|q| q.reached(&p)))
            })
            .await
            .map_err(|e| format!("{target} did not catch up before the crash: {e}"))?;
        }
        self.h
            .kill_member(old)
            .await
            .map_err(|e| format!("killing {old}: {e}"))?;
        c.wait_until(cfg.timeout, cfg.poll, |s| {
            s.member(old).is_some_and(|m| !m.reachable)
        })
        .await
        .map_err(|e| format!("{old} still reachable after kill: {e}"))?;
        Ok(())
    }

    /// Restart `member` and wait until it is observed reachable.
    async fn restart(&self, member: &str) -> Result<(), String> {
        self.h
            .restart_member(member)
            .await
            .map_err(|e| format!("restarting {member}: {e}"))?;
        self.ctl
            .wait_until(self.cfg.timeout, self.cfg.poll, |s| {
                s.member(member).is_some_and(|m| m.reachable)
            })
            .await
            .map_err(|e| format!("{member} did not come back: {e}"))?;
        Ok(())
    }

    /// A region other than the primary's with an electable data-bearing member.
    async fn target(&self) -> Result<(ObservedState, String), String> {
        let s = self.settle().await?;
        let t = other_region(&s).ok_or("no secondary outside the primary region")?;
        Ok((s, t))
    }
}

/// Removes the policy file [`Suite::stop_failovers_before`] wrote.
struct StopHook(PathBuf);

impl Drop for StopHook {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn succeeded(f: &Finished, what: &str) -> Result<(), String> {
    ensure!(
        f.outcome == Outcome::Succeeded,
        "{what} ({}) ended {:?}: {}",
        f.id,
        f.outcome,
        f.reason.as_deref().unwrap_or("no reason given")
    );
    Ok(())
}

/// One primary, every member reachable in a follower role, no secondary
/// observed not replicating, and — where the store reports whom members
/// follow — every secondary following someone (after an election a
/// self-electing store's secondaries take a moment to choose a source).
fn healthy(s: &ObservedState) -> bool {
    let reports_following = s.members.iter().any(|m| m.following.is_some());
    s.primaries().count() == 1
        && s.members.iter().all(|m| {
            m.reachable
                // Answering but left out until rejoined is not following.
                && !m.awaits_rejoin
                && matches!(m.role, Role::Primary | Role::Secondary | Role::Arbiter)
                && !(m.role == Role::Secondary
                    && (m.replicating == Some(false)
                        || (reports_following && m.following.is_none())))
        })
}

fn other_region(s: &ObservedState) -> Option<String> {
    let primary = s.primary_region()?;
    s.members
        .iter()
        .find(|m| m.role == Role::Secondary && m.region != primary)
        .map(|m| m.region.clone())
}

fn key_base() -> u64 {
    // Distinct keys per case and run, so cases never see each other's records.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Every operation of a journal with its result, in issue order.
fn issued(records: &[Record]) -> Vec<(usize, Operation, Option<OpResult>)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Intent { seq, stage, op, .. } => {
                let result = records.iter().find_map(|o| match o {
                    Record::Outcome { seq: s, result, .. } if s == seq => Some(result.clone()),
                    _ => None,
                });
                Some((*stage, op.clone(), result))
            }
            _ => None,
        })
        .collect()
}

/// The store's term observed when stage `stage`'s checkpoint passed.
fn term_at(records: &[Record], stage: usize) -> Option<Option<switchyard_controller::Term>> {
    records.iter().rev().find_map(|r| match r {
        Record::CheckpointPassed {
            stage: s, observed, ..
        } if *s == stage => Some(observed.first().and_then(|o| o.term)),
        _ => None,
    })
}

/// Run every case, in an order where destructive ones come last.
pub async fn run_all(h: &dyn Harness) -> SuiteReport {
    run_all_with(h, &SuiteConfig::default()).await
}

/// [`run_all`] with explicit settings.
pub async fn run_all_with(h: &dyn Harness, cfg: &SuiteConfig) -> SuiteReport {
    run_cases(h, cfg, CASES).await
}

/// A case of the suite.
pub type Case = for<'a> fn(&'a Suite<'a>) -> futures::future::BoxFuture<'a, CaseResult>;

macro_rules! cases {
    ($($f:ident),* $(,)?) => {
        /// Every case, by name, in the order [`run_all`] runs them.
        pub const CASES: &[(&str, Case)] = &[$((stringify!($f), |s| Box::pin($f(s)))),*];
    };
}

cases![
    observe,
    chosen_candidate_is_promoted,
    readiness_refuses_lagging_target,
    planned_promote_refuses_unfenced_primary,
    planned_switchover_and_back,
    repeated_operations_are_harmless,
    drill_there_and_back,
    abort_after_fence_gives_the_primary_back,
    abort_after_promote_finishes_the_move,
    rollback_after_promote_returns_the_store,
    abort_after_forced_rejoins_the_old_primary,
    forced_failover_with_primary_gone,
    failback_to_the_healed_region,
];

/// Run the named `cases` (a subset of [`CASES`], in the order given).
pub async fn run_cases(h: &dyn Harness, cfg: &SuiteConfig, cases: &[(&str, Case)]) -> SuiteReport {
    let mut report = SuiteReport::default();
    let start = Instant::now();
    let suite = match Suite::new(h, cfg.clone()).await {
        Ok(s) => s,
        Err(e) => {
            report.cases.push(CaseReport {
                name: "setup",
                verdict: Verdict::Failed(e),
                elapsed: start.elapsed(),
            });
            return report;
        }
    };
    for (name, case) in cases {
        let start = Instant::now();
        // A case that hangs fails (saying so) instead of hanging the suite.
        let limit = cfg.timeout * 10;
        let verdict = match tokio::time::timeout(limit, case(&suite)).await {
            Ok(Ok(v)) => v,
            Ok(Err(msg)) => Verdict::Failed(msg),
            Err(_) => Verdict::Failed(format!("did not finish within {limit:?}")),
        };
        tracing::info!(case = name, ?verdict, "conformance case");
        if matches!(verdict, Verdict::Failed(_)) {
            // A failed case may leave its execution open; end it, so the
            // next case is judged on its own.
            if let Ok(Some(id)) = suite.service.unfinished() {
                if let Err(e) = abort(&suite, Some(id.clone())).await {
                    tracing::warn!(case = name, %id, error = %e, "could not abort after a failed case");
                }
            }
        }
        let name = CASES
            .iter()
            .find(|(n, _)| n == name)
            .map_or("custom", |(n, _)| n);
        report.cases.push(CaseReport {
            name,
            verdict,
            elapsed: start.elapsed(),
        });
    }
    suite.service.shutdown().await;
    report
}

/// The cases of [`CASES`] named in `names`.
pub fn cases(names: &[&str]) -> Vec<(&'static str, Case)> {
    CASES
        .iter()
        .filter(|(n, _)| names.contains(n))
        .copied()
        .collect()
}

/// `observe` reports every member with its region and role, exactly one
/// primary, positions and lag where the controller claims them.
pub async fn observe(x: &Suite<'_>) -> CaseResult {
    let c = &x.ctl;
    let cap = x.cap;
    let s = x.settle().await?;
    ensure!(
        s.store == c.store(),
        "state names store {:?}, controller {:?}",
        s.store,
        c.store()
    );
    ensure!(
        s.kind == c.kind(),
        "state kind {} != controller kind {}",
        s.kind,
        c.kind()
    );
    ensure!(!s.members.is_empty(), "no members observed");
    let mut names: Vec<&str> = s.members.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    names.dedup();
    ensure!(
        names.len() == s.members.len(),
        "member names repeat: {:?}",
        s.members
    );
    ensure!(s.primary_region().is_some(), "no primary region");
    ensure!(
        s.members.iter().all(|m| !m.region.is_empty()),
        "member without region"
    );
    if cap.positions {
        ensure!(
            s.members
                .iter()
                .filter(|m| m.role != Role::Arbiter)
                .all(|m| m.position.is_some()),
            "data-bearing member without position: {:?}",
            s.members
        );
    }
    if cap.lag_bound {
        ensure!(
            s.members
                .iter()
                .filter(|m| m.role == Role::Secondary)
                .all(|m| m
                    .lag
                    .is_some_and(|l| l.bytes.is_some() || l.millis.is_some())),
            "secondary without lag: {:?}",
            s.members
        );
    }
    // A position belongs to a history (timeline, term); a store without
    // positions (Cosmos DB) may expose no term at all.
    ensure!(
        s.term.is_some() || !cap.positions,
        "no term (timeline/term) observed"
    );
    let again = c
        .observe()
        .await
        .map_err(|e| format!("observe failed: {e}"))?;
    ensure!(
        again.primary().map(|m| &m.name) == s.primary().map(|m| &m.name),
        "primary changed between two observations without any operation"
    );
    // The service's view is the controller's.
    let state = x.service.state().await.map_err(|e| e.to_string())?;
    ensure!(
        !state.unobservable(),
        "`state` calls the store unobservable: {:?}",
        state.stores
    );
    Ok(Verdict::Passed)
}

/// A planned switchover to a region that lags beyond the store's bound is
/// refused at readiness: the execution ends `refused`, its journal holds
/// the error as data (`lag_too_high`, the store, the member, not
/// temporary), nothing was changed; once the region caught up the same
/// readiness stage passes.
pub async fn readiness_refuses_lagging_target(x: &Suite<'_>) -> CaseResult {
    if !x.cap.lag_bound {
        return Ok(Verdict::Skipped("controller has no lag bound".into()));
    }
    let (s0, target) = x.target().await?;
    // The readiness stage of the plan, alone: an execution of its own
    // that changes nothing, run again once the region caught up.
    let mut readiness = x.plan(&target, Mode::Planned).await?;
    readiness.stages.truncate(1);
    readiness.name = format!("readiness for {target}");
    let induced =
        x.h.induce_lag(&target)
            .await
            .map_err(|e| format!("inducing lag failed: {e}"))?;
    if !induced {
        return Ok(Verdict::Skipped("backing cannot induce lag".into()));
    }
    let refused = x.failover(&target, Mode::Planned).await;
    let cleared = x.h.clear_lag(&target).await;
    let refused = refused?;
    ensure!(
        refused.outcome == Outcome::Refused,
        "a planned switchover to a lagging {target} ended {:?}: {:?}",
        refused.outcome,
        refused.reason
    );
    let recs = x.records(&refused.id)?;
    let errs: Vec<_> = issued(&recs)
        .into_iter()
        .filter_map(|(_, op, r)| match r {
            Some(OpResult::Err {
                kind,
                temporary,
                member,
                message,
            }) => Some((op, kind, temporary, member, message)),
            _ => None,
        })
        .collect();
    let Some((op, kind, temporary, member, message)) = errs.first() else {
        return Err(format!(
            "the refusal journaled no failed operation: {refused:?}"
        ));
    };
    ensure!(
        matches!(op, Operation::CheckReadiness { .. }),
        "refused by {op}, not by readiness"
    );
    ensure!(
        *kind == ErrorKind::LagTooHigh,
        "journaled kind {kind:?}, expected lag_too_high: {message}"
    );
    ensure!(
        member.is_some(),
        "journaled error names no member: {message}"
    );
    ensure!(!temporary, "lag_too_high journaled as temporary");
    ensure!(
        recs.iter().any(|r| matches!(r, Record::Outcome { store, result: OpResult::Err { .. }, .. } if store == x.store())),
        "the journaled failure does not name the store `{}`",
        x.store()
    );
    ensure!(
        !issued(&recs).iter().any(|(_, op, _)| op.is_mutating()),
        "a refused readiness issued a mutating operation"
    );
    cleared.map_err(|e| format!("clearing lag failed: {e}"))?;
    // Once caught up the same readiness stage passes.
    let deadline = Instant::now() + x.cfg.timeout;
    loop {
        let r = x.run_plan(&readiness).await?;
        if r.outcome == Outcome::Succeeded {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "readiness still refused after catching up: {:?}",
            r.reason
        );
        tokio::time::sleep(x.cfg.poll * 10).await;
    }
    let s1 = x.settle().await?;
    ensure!(
        s1.primary().map(|m| &m.name) == s0.primary().map(|m| &m.name),
        "readiness checks moved the primary"
    );
    Ok(Verdict::Passed)
}

/// A plan that promotes while the primary is neither fenced nor caught up
/// (readiness, then promote) must be refused by the store and change
/// nothing (stores with explicit promotion; skipped for self-electing
/// stores, whose step-down waits for catch-up). The failed execution is
/// then aborted, as an operator would.
pub async fn planned_promote_refuses_unfenced_primary(x: &Suite<'_>) -> CaseResult {
    let cap = x.cap;
    if !(cap.planned_switchover && cap.fencing) {
        return Ok(Verdict::Skipped("no explicit fencing".into()));
    }
    if cap.self_electing {
        return Ok(Verdict::Skipped("self-electing store".into()));
    }
    let (s0, target) = x.target().await?;
    let mut plan = x.plan(&target, Mode::Planned).await?;
    plan.stages.truncate(1);
    plan.name = format!("promote {target} without a fence");
    plan.stages.push(Stage {
        name: format!("promote {} unfenced", x.store()),
        timeout_ms: x.cfg.stage_timeout_ms,
        steps: vec![Step {
            store: x.store().into(),
            op: PlanOp::Promote {
                target_region: target.clone(),
                mode: Mode::Planned,
                candidate: None,
            },
        }],
        checkpoint: vec![CheckpointEntry {
            store: x.store().into(),
            expect: vec![primary_in(target.as_str())],
        }],
    });
    let run = x.run_plan(&plan).await?;
    ensure!(
        run.outcome != Outcome::Succeeded,
        "a planned promote without a fence succeeded"
    );
    let recs = x.records(&run.id)?;
    let promote = issued(&recs)
        .into_iter()
        .find(|(_, op, _)| matches!(op, Operation::Promote { .. }))
        .ok_or("the promote step was never issued")?;
    match promote.2 {
        Some(OpResult::Err { kind, message, .. }) => ensure!(
            matches!(kind, ErrorKind::Refused | ErrorKind::NotReady),
            "expected refused/not_ready, journaled {kind:?}: {message}"
        ),
        other => return Err(format!("promote without a fence journaled {other:?}")),
    }
    if x.service.unfinished().map_err(|e| e.to_string())?.is_some() {
        abort(x, None).await?;
    }
    let after = x.settle().await?;
    ensure!(
        after.primary().map(|m| &m.name) == s0.primary().map(|m| &m.name) && after.term == s0.term,
        "refused promotion changed the store: {:?} -> {:?}",
        s0.primary(),
        after.primary()
    );
    Ok(Verdict::Passed)
}

/// Abort the unfinished execution (or `id`) through the service; it must
/// end with every store healthy.
async fn abort(x: &Suite<'_>, id: Option<String>) -> Result<crate::service::Aborted, String> {
    let pending = x
        .service
        .prepare_abort(id)
        .await
        .map_err(|e| format!("planning the abort: {e}"))?;
    let aborted = x
        .service
        .abort(pending, Arc::new(Discard))
        .await
        .map_err(|e| format!("aborting: {e}"))?;
    if let Some(run) = &aborted.run {
        succeeded(run, "the abort")?;
    }
    ensure!(
        aborted.ok(),
        "the abort left {}: {}",
        x.store(),
        aborted.summary(x.store())
    );
    Ok(aborted)
}

/// `--candidate`: a planned switchover to a region with two electable
/// members promotes the one the operator chose — not the one the
/// controller's own readiness check picks — and keeps it primary through
/// the last checkpoint (`primary_is`); the plan carries the member on its
/// readiness, wait, promote and make-sticky steps. Skipped where the
/// capability says the controller cannot honour a chosen member, or where
/// no region but the primary's has two electable members (one location
/// per region: the choice is the default).
pub async fn chosen_candidate_is_promoted(x: &Suite<'_>) -> CaseResult {
    if !x.cap.chosen_candidate {
        return Ok(Verdict::Skipped(
            "the controller cannot promote a chosen member (capability chosen_candidate)".into(),
        ));
    }
    if !x.cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let s0 = x.settle().await?;
    let origin = s0.primary_region().unwrap_or_default().to_string();
    let Some(target) = x
        .service
        .topology()
        .regions
        .iter()
        .map(|r| r.name.clone())
        .find(|r| *r != origin && x.electable_in(r).len() >= 2)
    else {
        return Ok(Verdict::Skipped(
            "no region besides the primary's has two electable members".into(),
        ));
    };
    // What the controller picks by itself: readiness names its candidate.
    let probe = Operation::CheckReadiness {
        target_region: target.clone(),
        mode: switchyard_controller::PromoteMode::Planned,
        candidate: None,
    };
    let default = x
        .ctl
        .execute(&probe, &switchyard_controller::OpContext::adhoc())
        .await
        .map_err(|e| format!("readiness of {target}: {e}"))?
        .member;
    let chosen = x
        .electable_in(&target)
        .into_iter()
        .find(|m| Some(m) != default.as_ref())
        .ok_or("every electable member of the target is the default")?;
    let base = key_base();
    x.write_keys(base, 10).await?;
    let mut req = x.request(&target, Mode::Planned);
    req.candidates = vec![chosen.clone()];
    let plan = x
        .service
        .plan(&req)
        .await
        .map_err(|e| format!("planning with --candidate {chosen}: {e}"))?
        .ok_or("planning with a candidate: already there")?;
    let aimed: Vec<&str> = plan
        .stages
        .iter()
        .flat_map(|s| &s.steps)
        .filter_map(|s| s.op.candidate())
        .collect();
    ensure!(
        !aimed.is_empty() && aimed.iter().all(|c| *c == chosen),
        "the plan's steps name candidates {aimed:?}, not only {chosen}"
    );
    let out = x
        .start(
            &StartRequest::Failover(req),
            &format!("switchover to {chosen} in {target}"),
        )
        .await?;
    succeeded(&out, &format!("switchover to {chosen}"))?;
    let s1 = x.settle().await?;
    let primary = s1.primary().map(|p| p.name.clone());
    ensure!(
        primary.as_deref() == Some(chosen.as_str()),
        "after a switchover with --candidate {chosen} (the default was {default:?}) the primary is {primary:?}"
    );
    x.assert_keys(base, 10, "after the switchover to the chosen member")
        .await?;
    x.back_to_origin().await?;
    x.assert_keys(base, 10, "after switching back").await?;
    Ok(Verdict::Passed)
}

/// Planned switchover to another region and failback: every acknowledged
/// record survives, the term advances, the new primary accepts writes,
/// every member follows it afterwards.
pub async fn planned_switchover_and_back(x: &Suite<'_>) -> CaseResult {
    if !x.cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let (s0, target) = x.target().await?;
    let base = key_base();
    x.write_keys(base, 20).await?;
    let out = x.failover(&target, Mode::Planned).await?;
    succeeded(&out, &format!("switchover to {target}"))?;
    let s1 = x.settle().await?;
    ensure!(
        s1.primary_region() == Some(target.as_str()),
        "after switchover to {target} the primary is in {:?}",
        s1.primary_region()
    );
    if let (Some(a), Some(b)) = (s0.term, s1.term) {
        ensure!(b > a, "term did not advance: {a} -> {b}");
    }
    x.assert_keys(base, 20, "after switchover").await?;
    x.write_keys(base + 20, 5).await?;
    x.back_to_origin().await?;
    x.assert_keys(base, 25, "after switching back").await?;
    x.write_keys(base + 25, 1).await?;
    Ok(Verdict::Passed)
}

/// The production plan with every step issued twice in a row (a promotion
/// repeated in a stage of its own, with the same checkpoint): each repeat
/// succeeds, mutating operations report `already_done`, a captured
/// position is the same twice, and a repeated promotion does not advance
/// the term again — re-issuing what the journal shows as issued (a
/// resume) is harmless. Switches back afterwards.
pub async fn repeated_operations_are_harmless(x: &Suite<'_>) -> CaseResult {
    let cap = x.cap;
    if !cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let (_, target) = x.target().await?;
    let base = key_base();
    x.write_keys(base, 5).await?;
    let plan = x.plan(&target, Mode::Planned).await?;
    let mut twice = plan.clone();
    twice.name = format!("{} (every step twice)", plan.name);
    twice.stages = vec![];
    // (stage of the first promote, stage of its repeat)
    let mut promotes = vec![];
    for st in &plan.stages {
        let mut doubled = st.clone();
        doubled.steps = st
            .steps
            .iter()
            .flat_map(|x| {
                let n = if matches!(x.op, PlanOp::Promote { .. }) {
                    1
                } else {
                    2
                };
                std::iter::repeat_n(x.clone(), n)
            })
            .collect();
        twice.stages.push(doubled);
        let again: Vec<Step> = st
            .steps
            .iter()
            .filter(|x| matches!(x.op, PlanOp::Promote { .. }))
            .cloned()
            .collect();
        if !again.is_empty() {
            promotes.push((twice.stages.len() - 1, twice.stages.len()));
            twice.stages.push(Stage {
                name: format!("{} (promote again)", st.name),
                steps: again,
                ..st.clone()
            });
        }
    }
    ensure!(!promotes.is_empty(), "the plan promotes nothing");
    let run = x.run_plan(&twice).await?;
    succeeded(&run, &twice.name)?;
    let recs = x.records(&run.id)?;
    // Outcomes by operation name, in issue order (a repeat right after
    // its first issue).
    let mut by_name: std::collections::BTreeMap<&str, (Operation, Vec<_>)> = Default::default();
    for (_, op, r) in issued(&recs) {
        let Some(OpResult::Ok { outcome }) = r else {
            return Err(format!("{op} did not succeed: {r:?}"));
        };
        by_name
            .entry(op.name())
            .or_insert_with(|| (op.clone(), vec![]))
            .1
            .push(outcome);
    }
    for (name, (op, outs)) in &by_name {
        ensure!(outs.len() % 2 == 0, "{name} issued {} times", outs.len());
        for pair in outs.chunks(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if op.is_mutating() {
                ensure!(b.already_done, "repeating {op} did work again: {b:?}");
            }
            if matches!(op, Operation::CapturePosition) {
                ensure!(
                    a.position.is_some() && a.position == b.position,
                    "captured positions differ: {:?} vs {:?}",
                    a.position,
                    b.position
                );
            }
            // The preference step before it may have moved the primary
            // already: priority takeover (MongoDB, EventStoreDB), a
            // failover-priority change (Cosmos DB).
            if matches!(op, Operation::Promote { .. }) {
                ensure!(
                    !a.already_done || cap.sticky_priorities,
                    "first promote claims already done"
                );
            }
        }
    }
    for (first, again) in promotes {
        let (t1, t2) = (term_at(&recs, first), term_at(&recs, again));
        ensure!(
            t1.is_some() && t1 == t2,
            "repeated promote moved the term {t1:?} -> {t2:?}"
        );
    }
    let s1 = x.settle().await?;
    ensure!(
        s1.primary_region() == Some(target.as_str()),
        "primary in {:?}, expected {target}",
        s1.primary_region()
    );
    x.assert_keys(base, 5, "after repeated operations").await?;
    x.back_to_origin().await?;
    Ok(Verdict::Passed)
}

/// `drill`: out to another region, verified by a fresh observation, and
/// back — two executions through the executor; records survive both.
pub async fn drill_there_and_back(x: &Suite<'_>) -> CaseResult {
    if !x.cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let (_, target) = x.target().await?;
    let base = key_base();
    x.write_keys(base, 5).await?;
    let pending = x
        .service
        .prepare_drill(
            &target,
            x.cfg.stage_timeout_ms,
            x.cfg.catch_up_timeout_ms,
            &[],
        )
        .await
        .map_err(|e: ServiceError| format!("planning the drill: {e}"))?;
    match x
        .service
        .drill(pending, Arc::new(Discard))
        .await
        .map_err(|e| format!("drill: {e}"))?
    {
        Drilled::Stopped(f) => return Err(format!("the drill's way out stopped: {f:?}")),
        Drilled::Completed { back, reports, .. } => {
            succeeded(&back, "the drill's way back")?;
            ensure!(reports.len() == 2, "drill reported {} runs", reports.len());
        }
    }
    let s = x.settle().await?;
    ensure!(
        s.primary_region() == Some(x.origin.as_str()),
        "after the drill the primary is in {:?}",
        s.primary_region()
    );
    x.assert_keys(base, 5, "after the drill").await?;
    Ok(Verdict::Passed)
}

/// A planned switchover stopped after the fence (an operator's pre-stage
/// hook refuses the promote stage) is aborted: the abort, planned from the
/// journal and what the store shows, gives the old primary back — one
/// writable primary where it was, unfenced, every record there, writes
/// accepted.
pub async fn abort_after_fence_gives_the_primary_back(x: &Suite<'_>) -> CaseResult {
    if !(x.cap.planned_switchover && x.cap.fencing) {
        return Ok(Verdict::Skipped("no explicit fencing".into()));
    }
    let (s0, target) = x.target().await?;
    let (stopped, base) = x.stopped_switchover(&target, "promote").await?;
    let fenced = x.ctl.observe().await.map_err(|e| e.to_string())?;
    ensure!(
        fenced.members.iter().any(|m| m.fenced),
        "stopped after the fence stage, but no member is fenced: {:?}",
        fenced.members
    );
    abort(x, Some(stopped.id.clone())).await?;
    let s1 = x.settle().await?;
    ensure!(
        s1.primary().map(|m| &m.name) == s0.primary().map(|m| &m.name),
        "abort left the primary at {:?}, it was {:?}",
        s1.primary(),
        s0.primary()
    );
    ensure!(
        s1.members.iter().all(|m| !m.fenced),
        "abort left a member fenced: {:?}",
        s1.members
    );
    x.assert_keys(base, 5, "after the abort").await?;
    x.write_keys(base + 5, 1).await?;
    Ok(Verdict::Passed)
}

/// A planned switchover stopped after the promotion (before re-pointing and
/// rejoining) is aborted: the target is primary already, so the abort
/// finishes the move rather than leave the store half-moved; every member
/// follows the new primary. Switches back afterwards.
pub async fn abort_after_promote_finishes_the_move(x: &Suite<'_>) -> CaseResult {
    if !x.cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let (_, target) = x.target().await?;
    let (stopped, base) = x.stopped_switchover(&target, "re-point").await?;
    abort(x, Some(stopped.id.clone())).await?;
    let s1 = x.settle().await?;
    ensure!(
        s1.primary_region() == Some(target.as_str()),
        "the abort of a promoted switchover left the primary in {:?}, not {target}",
        s1.primary_region()
    );
    x.assert_keys(base, 5, "after the abort").await?;
    x.write_keys(base + 5, 1).await?;
    x.back_to_origin().await?;
    x.assert_keys(base, 6, "after switching back").await?;
    Ok(Verdict::Passed)
}

/// A planned switchover stopped after the promotion is rolled back: the
/// rollback, planned from the journal and what the store shows, is a
/// planned switchover back (after rejoining the old primary where needed);
/// the store ends where it started with every record.
pub async fn rollback_after_promote_returns_the_store(x: &Suite<'_>) -> CaseResult {
    if !x.cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let (_, target) = x.target().await?;
    let (stopped, base) = x.stopped_switchover(&target, "re-point").await?;
    // As an operator would: give the store a moment to settle before
    // rolling it back (a self-electing store's secondaries choose their
    // source after the election); one whose old primary waits for its
    // rejoin never settles, and the rollback decides from what it shows.
    let _ = x
        .ctl
        .wait_until(x.cfg.timeout / 6, x.cfg.poll, healthy)
        .await;
    let timeouts = crate::rollback::Timeouts {
        stage_ms: x.cfg.stage_timeout_ms,
        catch_up_ms: x.cfg.catch_up_timeout_ms,
    };
    let pending = x
        .service
        .prepare_rollback(Some(stopped.id.clone()), timeouts, &[])
        .await
        .map_err(|e| format!("planning the rollback: {e}"))?;
    let rolled = x
        .service
        .rollback(pending, Arc::new(Discard))
        .await
        .map_err(|e| format!("rolling back: {e}"))?
        .ok_or("the rollback found nothing to do after a promotion")?;
    succeeded(&rolled, "the rollback")?;
    let s1 = x.settle().await?;
    ensure!(
        s1.primary_region() == Some(x.origin.as_str()),
        "after the rollback the primary is in {:?}, not {}",
        s1.primary_region(),
        x.origin
    );
    x.assert_keys(base, 5, "after the rollback").await?;
    x.write_keys(base + 5, 1).await?;
    Ok(Verdict::Passed)
}

/// Kill the primary; a forced failover promotes a member of another region
/// (within the lag bound, so without accepting loss), journals a data-loss
/// estimate, the survivors follow it; after the old primary comes back, a
/// planned execution to the new region rejoins it as a follower (a split
/// brain is repaired first).
pub async fn forced_failover_with_primary_gone(x: &Suite<'_>) -> CaseResult {
    let cap = x.cap;
    if !cap.forced_failover {
        return Ok(Verdict::Skipped("no forced failover".into()));
    }
    let c = &x.ctl;
    let cfg = &x.cfg;
    let (s0, target) = x.target().await?;
    let old = s0.primary().ok_or("no primary")?.clone();
    let base = key_base();
    x.write_keys(base, 10).await?;
    x.kill_primary(&old.name, &target).await?;

    let forced = x.failover(&target, Mode::Forced).await?;
    succeeded(&forced, &format!("forced failover to {target}"))?;
    let recs = x.records(&forced.id)?;
    let promoted = issued(&recs)
        .into_iter()
        .find_map(|(_, op, r)| match (op, r) {
            (Operation::Promote { .. }, Some(OpResult::Ok { outcome })) => Some(outcome),
            _ => None,
        })
        .ok_or("no successful promote in the journal")?;
    if cap.lag_bound {
        ensure!(
            promoted.data_loss.is_some(),
            "forced promotion journaled no data-loss estimate: {promoted:?}"
        );
    }
    let s1 = c
        .wait_until(cfg.timeout, cfg.poll, |s| {
            s.primary_region() == Some(target.as_str())
                && s.members.iter().filter(|m| m.name != old.name).all(|m| {
                    m.reachable && matches!(m.role, Role::Primary | Role::Secondary | Role::Arbiter)
                })
        })
        .await
        .map_err(|e| format!("survivors did not follow the new primary in {target}: {e}"))?;
    if let (Some(a), Some(b)) = (s0.term, s1.term) {
        ensure!(b > a, "term did not advance: {a} -> {b}");
    }
    let new_primary = s1.primary().ok_or("no primary")?.name.clone();
    for m in s1.members.iter().filter(|m| m.role == Role::Secondary) {
        if let Some(f) = &m.following {
            ensure!(
                f == &new_primary,
                "{} follows {f}, not {new_primary}",
                m.name
            );
        }
    }
    x.assert_keys(base, 10, "after forced failover").await?;
    x.write_keys(base + 10, 3).await?;

    x.restart(&old.name).await?;
    // The planner rejoins what needs it (a stale primary first); a store
    // whose members rejoin by themselves needs no execution.
    x.planned_unless_there(&target, &format!("rejoining {}", old.name))
        .await?;
    let s2 = x.settle().await?;
    ensure!(
        s2.primary().map(|m| &m.name) == Some(&new_primary),
        "primary changed after rejoin: {:?}",
        s2.primary()
    );
    ensure!(
        s2.member(&old.name)
            .is_some_and(|m| m.role != Role::Primary),
        "{} is primary again after rejoin",
        old.name
    );
    x.assert_keys(base, 13, "after rejoin").await?;
    Ok(Verdict::Passed)
}

/// Kill the primary; a forced failover to another region is stopped after
/// its promotion (an operator's pre-stage hook refuses the re-point stage);
/// the old primary comes back; abort. The abort either succeeds and leaves
/// the store whole — the new primary the only one, the healed member back
/// as a follower, rejoined where only a rejoin restores it (a Cosmos DB
/// region the forced failover took offline) — or fails naming the store,
/// what it saw and a fix (an old primary back as it was: a split brain);
/// the fix followed (the stale primary stopped, abort again), the abort
/// finishes the move and its decision names the old primary as not
/// rejoined and why; once it is back, the planned execution to the new
/// region rejoins it. Never "aborted" over a member left out. Switches
/// back afterwards.
pub async fn abort_after_forced_rejoins_the_old_primary(x: &Suite<'_>) -> CaseResult {
    if !x.cap.forced_failover {
        return Ok(Verdict::Skipped("no forced failover".into()));
    }
    let (c, cfg) = (&x.ctl, &x.cfg);
    let (s0, target) = x.target().await?;
    let old = s0.primary().ok_or("no primary")?.name.clone();
    let base = key_base();
    x.write_keys(base, 5).await?;
    x.kill_primary(&old, &target).await?;
    let stopped = {
        let _hook = x.stop_failovers_before("re-point")?;
        x.failover(&target, Mode::Forced).await?
    };
    ensure!(
        stopped.outcome == Outcome::Failed,
        "a forced failover stopped before `re-point…` ended {:?}: {:?}",
        stopped.outcome,
        stopped.reason
    );
    c.wait_until(cfg.timeout, cfg.poll, |s| {
        s.primary_region() == Some(target.as_str())
    })
    .await
    .map_err(|e| format!("the stopped forced failover promoted nothing in {target}: {e}"))?;
    x.restart(&old).await?;

    let pending = x
        .service
        .prepare_abort(Some(stopped.id.clone()))
        .await
        .map_err(|e| format!("planning the abort: {e}"))?;
    let aborted = x
        .service
        .abort(pending, Arc::new(Discard))
        .await
        .map_err(|e| format!("aborting: {e}"))?;
    if aborted.ok() {
        let s = c
            .wait_until(cfg.timeout, cfg.poll, healthy)
            .await
            .map_err(|e| {
                format!(
                    "the abort reported `aborted`, but {} is not whole again ({old} back): {e}",
                    x.store()
                )
            })?;
        ensure!(
            s.primary_region() == Some(target.as_str()),
            "after the abort the primary is in {:?}, not {target}",
            s.primary_region()
        );
    } else {
        let v = aborted
            .verdicts
            .iter()
            .find(|v| v.store == x.store())
            .ok_or("the abort gave no verdict for the store")?;
        let Some((saw, fix)) = &v.unresolved else {
            return Err(format!(
                "the abort failed with {} resolved ({:?}): {:?}",
                x.store(),
                v.writable_primary,
                aborted.run.as_ref().and_then(|r| r.reason.clone())
            ));
        };
        ensure!(
            saw.contains(&old) && fix.contains("stop the stale primary"),
            "the failed abort's report does not name {old} with a fix: {saw}; fix: {fix}"
        );
        // As the fix says: stop the stale primary, abort again. Now the
        // abort finishes the move, and its decision says that {old} was
        // not rejoined and why.
        x.h.kill_member(&old)
            .await
            .map_err(|e| format!("stopping the stale {old}: {e}"))?;
        c.wait_until(cfg.timeout, cfg.poll, |s| {
            s.member(&old).is_some_and(|m| !m.reachable)
        })
        .await
        .map_err(|e| format!("{old} still reachable after kill: {e}"))?;
        let again = abort(x, Some(stopped.id.clone())).await?;
        let words = again
            .verdicts
            .iter()
            .find(|v| v.store == x.store())
            .map(|v| v.decision.to_string())
            .unwrap_or_default();
        ensure!(
            words.contains(&format!("{old} in ")) && words.contains("not rejoined"),
            "the abort over a store without {old} does not say it was not rejoined: {words}"
        );
        x.restart(&old).await?;
        // The planned execution to the new region rejoins what needs it (a
        // stale primary first), as after any forced failover.
        x.planned_unless_there(&target, &format!("rejoining {old}"))
            .await?;
    }
    let s = x.settle().await?;
    ensure!(
        s.primary_region() == Some(target.as_str())
            && s.member(&old).is_some_and(|m| m.role != Role::Primary),
        "after the abort the primary is {:?}",
        s.primary()
    );
    x.assert_keys(base, 5, "after the abort of the forced failover")
        .await?;
    x.back_to_origin().await?;
    x.assert_keys(base, 5, "after switching back").await?;
    Ok(Verdict::Passed)
}

/// Failback: a planned switchover back to the region the suite started in
/// once it healed (after a forced failover moved the primary away).
/// Skipped when the primary is there already.
pub async fn failback_to_the_healed_region(x: &Suite<'_>) -> CaseResult {
    let s0 = x.settle().await?;
    if s0.primary_region() == Some(x.origin.as_str()) {
        return Ok(Verdict::Skipped(format!(
            "the primary is in {} already",
            x.origin
        )));
    }
    if !x.cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let base = key_base();
    x.write_keys(base, 5).await?;
    x.back_to_origin().await?;
    x.assert_keys(base, 5, "after failback").await?;
    x.write_keys(base + 5, 1).await?;
    Ok(Verdict::Passed)
}

impl Suite<'_> {
    /// The state directory of the suite's service (journals of every case).
    pub fn state_dir(&self) -> &Path {
        self.service.state_dir()
    }
}
