//! The `switchyard` command line. Exit codes are stable (docs/cli.md):
//! 0 success; 1 execution failed (resumable); 2 usage or configuration error;
//! 3 another execution holds the lock (or an unfinished one must be resumed
//! or aborted first); 4 aborted by the operator or confirmation declined;
//! 5 readiness refused (e.g. lag beyond the bound without --accept-data-loss);
//! 6 `state` saw a split brain (two writable primaries in one store).

use crate::driver::{Driver, RunEnd};
use crate::executor::Executor;
use crate::failpoint::Failpoint;
use crate::journal::{
    format_ms, ledger, now_ms, plan_stores, summarize, ExecutionStatus, FileJournalStore,
    JournalError, JournalStore, Record, StoreStatus,
};
use crate::lock::{FileLock, Lock, LockError, LockGuard};
use crate::plan::{Mode, Plan};
use crate::planner::{plan_failover, PlanOptions};
use crate::progress::{JsonLines, Plain, ProgressEvent, Reporter, Terminal};
use crate::registry::{capabilities, controllers_in};
use crate::report::{timeline, ExecutionReport};
use crate::validate::{load_plan, validate};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchyard_controller::{Controller, ObservedState, Role};
use switchyard_topology::Topology;

/// Stable exit codes.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The execution failed: a checkpoint was not reached or an operation
    /// failed. The journal allows `switchyard resume`.
    pub const FAILED: i32 = 1;
    /// Usage or configuration error (bad topology, bad plan, unknown id).
    pub const USAGE: i32 = 2;
    /// Another execution holds the lock, or an unfinished execution must be
    /// resumed or aborted first.
    pub const LOCKED: i32 = 3;
    /// Aborted by the operator, or confirmation declined.
    pub const ABORTED: i32 = 4;
    /// A readiness check refused (lag beyond the bound without
    /// `--accept-data-loss`, no healthy candidate).
    pub const REFUSED: i32 = 5;
    /// `state`: a store has more than one writable primary (split brain).
    /// The next execution for it fences and rejoins the stale one first.
    pub const SPLIT_BRAIN: i32 = 6;
}

/// Switchyard: fail replicated datastores over between regions, in
/// dependency order, with a checkpoint validated after every stage.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, long_about = None)]
pub struct Cli {
    /// Topology file.
    #[arg(long, short = 't', global = true, env = "SWITCHYARD_TOPOLOGY")]
    pub topology: Option<PathBuf>,
    /// Directory for journals, the lock and the epoch (default: `.switchyard`
    /// next to the topology file).
    #[arg(long, global = true, env = "SWITCHYARD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people (progress bars on a terminal).
    Text,
    /// JSON (one object per line while executing).
    Json,
}

/// Plan output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    /// Rendered listing.
    Text,
    /// A plan file to review, keep in git and `switchyard run`.
    Toml,
    /// JSON.
    Json,
}

/// Where to fail over to and how.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Region every store should end up primary in.
    #[arg(long)]
    pub to: String,
    /// Forced failover: the current primary region is gone.
    #[arg(long)]
    pub forced: bool,
    /// With --forced: promote even beyond the store's lag bound.
    #[arg(long, requires = "forced")]
    pub accept_data_loss: bool,
}

/// Timeouts written into a generated plan.
#[derive(Debug, Clone, Args)]
pub struct Timeouts {
    /// How long each stage's operations and checkpoint may take.
    #[arg(long, default_value_t = crate::plan::DEFAULT_STAGE_TIMEOUT_MS, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=crate::plan::MAX_TIMEOUT_MS))]
    pub stage_timeout_ms: u64,
    /// How long a store may take to replay the fenced primary's final position.
    #[arg(long, default_value_t = 60_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=crate::plan::MAX_TIMEOUT_MS))]
    pub catch_up_timeout_ms: u64,
}

impl Target {
    fn mode(&self) -> Mode {
        match (self.forced, self.accept_data_loss) {
            (false, _) => Mode::Planned,
            (true, false) => Mode::Forced,
            (true, true) => Mode::ForcedAcceptDataLoss,
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every store's members, roles and lag, per region.
    State {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print a plan without touching anything (dry run).
    Plan {
        /// What kind of plan.
        #[command(subcommand)]
        what: PlanKind,
    },
    /// Show the plan, ask, then fail every store over.
    Failover {
        /// Target and mode.
        #[command(flatten)]
        target: Target,
        /// Plan timeouts.
        #[command(flatten)]
        timeouts: Timeouts,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Output format.
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
    /// Execute a plan file (validated against the topology first).
    Run {
        /// Plan file (TOML or JSON).
        plan: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Output format.
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
    /// Continue an interrupted or failed execution from its journal.
    Resume {
        /// Execution id (default: the unfinished one).
        id: Option<String>,
        /// Output format.
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
    /// End an execution so every store has exactly one writable primary:
    /// the old one where nothing was promoted (unfenced, started again), the
    /// new one where a promotion happened (finished forward). Planned from
    /// the journal and from what every store shows now; run as an execution
    /// of its own. Exits non-zero, naming the store and the fix, where it
    /// cannot.
    Abort {
        /// Execution id (default: the unfinished one).
        id: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// List executions (with damaged journals and superseded executions
    /// marked), or close one.
    Executions {
        /// `close ID --reason TEXT`; without it, list.
        #[command(subcommand)]
        action: Option<ExecutionsAction>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print an execution's timeline and report.
    Show {
        /// Execution id, or `latest`.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Fail over to a region, verify, fail back; report both directions.
    Drill {
        /// Region to move to and back from.
        #[arg(long)]
        to: String,
        /// Plan timeouts.
        #[command(flatten)]
        timeouts: Timeouts,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Output format.
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
}

/// What `executions` can do besides listing.
#[derive(Debug, Subcommand)]
pub enum ExecutionsAction {
    /// End an execution that can be neither resumed nor aborted: its
    /// journal is damaged, or a later execution superseded it. Journals the
    /// reason; nothing is issued to any store.
    Close {
        /// Execution id.
        id: String,
        /// Why it is safe to close (what you checked on the stores).
        #[arg(long)]
        reason: String,
    },
}

/// Plan kinds.
#[derive(Debug, Subcommand)]
pub enum PlanKind {
    /// A failover of every store to one region.
    Failover {
        /// Target and mode.
        #[command(flatten)]
        target: Target,
        /// Plan timeouts.
        #[command(flatten)]
        timeouts: Timeouts,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: PlanOutput,
    },
}

/// A command failure with its exit code.
#[derive(Debug)]
pub struct Exit {
    /// Exit code.
    pub code: i32,
    /// Message for stderr.
    pub message: String,
}

impl Exit {
    fn usage(m: impl Into<String>) -> Self {
        Exit {
            code: exit::USAGE,
            message: m.into(),
        }
    }
}

/// Exit status when stdout was closed under us (`switchyard state | head -1`):
/// 128 + SIGPIPE, what the shell reports for a Unix tool killed by it.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE and
/// `println!` panics. Unix tools die quietly instead; so do we: no message,
/// status [`BROKEN_PIPE_EXIT`]. (Progress output ignores write errors, so an
/// execution never stops because its reader went away; only the printing
/// after it can end here, when everything is journaled.) Other panics keep
/// the default report.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        default(info)
    }));
}

/// Parse arguments, run, and return the exit code.
pub fn main() -> i32 {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start runtime: {e}");
            return exit::USAGE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchyard: {}", e.message);
            e.code
        }
    }
}

struct Ctx {
    topology_file: PathBuf,
    topology: Topology,
    state_dir: PathBuf,
    /// Every controller handed out, shut down before the runtime ends.
    built: Built,
}

/// Controllers built by a command, by construction order.
type Built = Arc<std::sync::Mutex<Vec<Arc<dyn Controller>>>>;

/// Shut every controller a command built down while the runtime still
/// runs (see [`Controller::shutdown`]).
async fn shut_down(built: &Built) {
    let all: Vec<_> = match built.lock() {
        Ok(mut v) => v.drain(..).collect(),
        Err(poisoned) => poisoned.into_inner().drain(..).collect(),
    };
    futures::future::join_all(all.iter().map(|c| c.shutdown())).await;
}

impl Ctx {
    fn load(cli: &Cli) -> Result<Self, Exit> {
        let file = cli.topology.clone().ok_or_else(|| {
            Exit::usage("no topology: pass --topology FILE or set SWITCHYARD_TOPOLOGY")
        })?;
        let topology =
            switchyard_topology::parse_file(&file).map_err(|e| Exit::usage(e.to_string()))?;
        let state_dir = cli.state_dir.clone().unwrap_or_else(|| {
            file.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(".switchyard")
        });
        Ok(Ctx {
            topology_file: file,
            topology,
            state_dir,
            built: Built::default(),
        })
    }

    /// Refuses a target region the topology does not declare, before any
    /// controller is built or any store contacted.
    fn target_region(&self, name: &str) -> Result<(), Exit> {
        if self.topology.region(name).is_some() {
            return Ok(());
        }
        let known: Vec<&str> = self
            .topology
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        Err(Exit::usage(format!(
            "{}: --to: unknown region `{name}`; the topology declares: {}",
            self.topology_file.display(),
            known.join(", ")
        )))
    }

    fn controllers(&self) -> Result<BTreeMap<String, Arc<dyn Controller>>, Exit> {
        let controllers = controllers_in(&self.topology, Some(&self.state_dir))
            .map_err(|e| Exit::usage(e.to_string()))?;
        if let Ok(mut built) = self.built.lock() {
            built.extend(controllers.values().cloned());
        }
        Ok(controllers)
    }

    fn journals(&self) -> Result<FileJournalStore, Exit> {
        FileJournalStore::new(&self.state_dir).map_err(|e| Exit::usage(e.to_string()))
    }

    fn lock(&self, what: &str) -> Result<Box<dyn LockGuard>, Exit> {
        let lock = FileLock::new(&self.state_dir).map_err(|e| Exit::usage(e.to_string()))?;
        let holder = format!(
            "pid {} `switchyard {what}` since {}",
            std::process::id(),
            format_ms(now_ms())
        );
        lock.try_acquire(&holder).map_err(|e| match e {
            LockError::Held { .. } => Exit {
                code: exit::LOCKED,
                message: e.to_string(),
            },
            other => Exit::usage(other.to_string()),
        })
    }
}

fn reporter(output: Option<Output>) -> Box<dyn Reporter> {
    match output {
        Some(Output::Json) => Box::new(JsonLines),
        Some(Output::Text) if std::io::stdout().is_terminal() => Box::new(Terminal::default()),
        Some(Output::Text) => Box::new(Plain),
        None if std::io::stdout().is_terminal() => Box::new(Terminal::default()),
        None => Box::new(JsonLines),
    }
}

fn json_mode(output: Option<Output>) -> bool {
    match output {
        Some(o) => o == Output::Json,
        None => !std::io::stdout().is_terminal(),
    }
}

async fn dispatch(cli: Cli) -> Result<i32, Exit> {
    let ctx = Ctx::load(&cli)?;
    let built = ctx.built.clone();
    let result = command(ctx, cli.command).await;
    shut_down(&built).await;
    result
}

async fn command(ctx: Ctx, command: Command) -> Result<i32, Exit> {
    match command {
        Command::State { output } => state(&ctx, output).await,
        Command::Plan {
            what:
                PlanKind::Failover {
                    target,
                    timeouts,
                    output,
                },
        } => {
            ctx.target_region(&target.to)?;
            let controllers = ctx.controllers()?;
            let Some(plan) = make_plan(
                &ctx,
                &controllers,
                &target.to,
                target.mode(),
                &timeouts,
                None,
            )
            .await?
            else {
                return Ok(nothing_to_do(&target.to));
            };
            match output {
                PlanOutput::Text => print!("{}", plan.render()),
                PlanOutput::Toml => print!(
                    "{}",
                    plan.to_toml().map_err(|e| Exit::usage(e.to_string()))?
                ),
                PlanOutput::Json => println!("{}", plan.to_json()),
            }
            Ok(exit::OK)
        }
        Command::Failover {
            target,
            timeouts,
            yes,
            output,
        } => {
            ctx.target_region(&target.to)?;
            let guard = ctx.lock("failover")?;
            refuse_unfinished(&ctx)?;
            let controllers = ctx.controllers()?;
            let Some(plan) = make_plan(
                &ctx,
                &controllers,
                &target.to,
                target.mode(),
                &timeouts,
                None,
            )
            .await?
            else {
                return Ok(nothing_to_do(&target.to));
            };
            refuse_damaged(&ctx, &plan)?;
            confirm(&plan, yes, output)?;
            let (code, _) =
                execute(&ctx, &controllers, guard.as_ref(), plan, "failover", output).await?;
            Ok(code)
        }
        Command::Run { plan, yes, output } => {
            let guard = ctx.lock("run")?;
            refuse_unfinished(&ctx)?;
            let controllers = ctx.controllers()?;
            let caps = capabilities(&controllers);
            let plan = load_plan(&plan, &ctx.topology, &caps)
                .map_err(|e| Exit::usage(format!("plan rejected, nothing was run:\n{e}")))?;
            refuse_damaged(&ctx, &plan)?;
            confirm(&plan, yes, output)?;
            let (code, _) =
                execute(&ctx, &controllers, guard.as_ref(), plan, "run", output).await?;
            Ok(code)
        }
        Command::Resume { id, output } => {
            let guard = ctx.lock("resume")?;
            let controllers = ctx.controllers()?;
            let id = match id {
                Some(id) => id,
                None => unfinished(&ctx)?.ok_or_else(|| {
                    Exit::usage("nothing to resume: every execution has finished or was aborted")
                })?,
            };
            let (code, _) = resume(&ctx, &controllers, guard.as_ref(), &id, output).await?;
            Ok(code)
        }
        Command::Abort { id, output } => {
            let guard = ctx.lock("abort")?;
            let controllers = ctx.controllers()?;
            let id = match id {
                Some(id) => id,
                None => unfinished(&ctx)?
                    .ok_or_else(|| Exit::usage("nothing to abort: no unfinished execution"))?,
            };
            abort(&ctx, &controllers, guard.as_ref(), &id, output).await
        }
        Command::Executions { action, output } => executions(&ctx, action, output),
        Command::Show { id, output } => {
            let store = ctx.journals()?;
            let id = if id == "latest" {
                store
                    .list()
                    .map_err(|e| Exit::usage(e.to_string()))?
                    .pop()
                    .ok_or_else(|| Exit::usage("no executions yet"))?
            } else {
                id
            };
            // A damaged journal is shown too: what could be read, and where not.
            let scan = store.scan(&id).map_err(|e| Exit::usage(e.to_string()))?;
            let recs = scan.records;
            let report = ExecutionReport::from_records(&id, &recs);
            if output == Output::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"report": report, "journal": recs, "damage": scan.damage})
                    )
                    .unwrap_or_default()
                );
            } else {
                for d in &scan.damage {
                    println!("DAMAGED: {d}");
                }
                print!("{}\n{}", timeline(&recs), report.render());
            }
            Ok(exit::OK)
        }
        Command::Drill {
            to,
            timeouts,
            yes,
            output,
        } => {
            ctx.target_region(&to)?;
            drill(&ctx, &to, &timeouts, yes, output).await
        }
    }
}

/// Plan a failover of every store to `to`. Stores observed (read-only) to be
/// primary in `to` already are left alone; `None` when that is every store.
async fn make_plan(
    ctx: &Ctx,
    controllers: &BTreeMap<String, Arc<dyn Controller>>,
    to: &str,
    mode: Mode,
    timeouts: &Timeouts,
    observed: Option<&Observations>,
) -> Result<Option<Plan>, Exit> {
    let caps = capabilities(controllers);
    let mut opts = PlanOptions::new(to, mode);
    opts.stage_timeout_ms = timeouts.stage_timeout_ms;
    opts.catch_up_timeout_ms = timeouts.catch_up_timeout_ms;
    let fresh;
    let observed = match observed {
        Some(o) => o,
        None => {
            fresh = observe_all(controllers).await;
            &fresh
        }
    };
    let mut settled = 0;
    for (name, s) in observed {
        let Ok(s) = s else { continue };
        // With a split brain the primary is the one on the newest history.
        if s.newest_primary().is_some_and(|p| p.region == to) {
            opts.already_there.insert(name.clone());
            let sticky = caps.get(name).is_some_and(|c| c.sticky_priorities);
            if !sticky || crate::expectation::preferred_in(to).check(s).is_ok() {
                settled += 1;
            }
        }
        if !s.stale_primaries().is_empty() {
            opts.stale_primaries.insert(name.clone());
        }
    }
    if settled == ctx.topology.stores.len() && opts.stale_primaries.is_empty() {
        return Ok(None);
    }
    let plan = plan_failover(&ctx.topology, &caps, &opts)
        .map_err(|e| Exit::usage(format!("cannot plan: {e}")))?;
    validate(&plan, &ctx.topology, &caps)
        .map_err(|e| Exit::usage(format!("generated plan is invalid (a bug):\n{e}")))?;
    Ok(Some(plan))
}

fn nothing_to_do(to: &str) -> i32 {
    eprintln!("switchyard: every store is already primary in {to}; nothing to do");
    exit::OK
}

fn confirm(plan: &Plan, yes: bool, output: Option<Output>) -> Result<(), Exit> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Exit {
            code: exit::ABORTED,
            message: "confirmation needed and stdin is not a terminal: pass --yes".into(),
        });
    }
    let mut err = std::io::stderr().lock();
    if json_mode(output) {
        let _ = writeln!(err, "{}", plan.to_json());
    } else {
        let _ = writeln!(err, "{}", plan.render());
    }
    let _ = write!(err, "Execute this plan? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Exit {
            code: exit::ABORTED,
            message: "declined; nothing was done".into(),
        })
    }
}

/// The most recent execution that is neither finished nor aborted, nor
/// superseded by a later one, and whose journal is whole. (A damaged one is
/// [`refuse_damaged`]'s business: it blocks only the stores it touched.)
fn unfinished(ctx: &Ctx) -> Result<Option<String>, Exit> {
    let store = ctx.journals()?;
    let ledger = ledger(&store).map_err(|e| Exit::usage(e.to_string()))?;
    Ok(ledger
        .into_iter()
        .rev()
        .find(|e| e.is_open() && e.superseded_by.is_none() && !e.is_damaged())
        .map(|e| e.summary.id))
}

/// Refuse a new planned execution over a store that a damaged, unclosed,
/// unfinished execution touched (every store when its plan is unreadable):
/// that store may be mid-failover and no journal says how far it got.
/// A forced failover is never refused for it (the region is gone; waiting
/// helps nobody) — it is warned about.
fn refuse_damaged(ctx: &Ctx, plan: &Plan) -> Result<(), Exit> {
    let store = ctx.journals()?;
    let mine = plan_stores(plan);
    for e in ledger(&store).map_err(|e| Exit::usage(e.to_string()))? {
        if !e.blocks() {
            continue;
        }
        let id = &e.summary.id;
        let note = e.damage_note().unwrap_or_default();
        let shared: Vec<&String> = match &e.stores {
            Some(theirs) => mine.intersection(theirs).collect(),
            None => mine.iter().collect(),
        };
        if shared.is_empty() {
            continue;
        }
        let what = match &e.stores {
            Some(_) => format!(
                "it changed {}",
                shared
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "its plan is unreadable, so it may have changed any store".into(),
        };
        if plan.mode != Mode::Planned {
            eprintln!(
                "switchyard: warning: execution {id} is damaged ({note}) and unfinished; {what}. \
                 Going ahead: a forced failover is not blocked by it."
            );
            continue;
        }
        return Err(Exit {
            code: exit::LOCKED,
            message: format!(
                "execution {id} is damaged: {note}; it is unfinished and {what}, and no journal \
                 says how far it got. Check those stores (`switchyard state`), then \
                 `switchyard executions close {id} --reason TEXT`. (A forced failover is not \
                 blocked by it.)"
            ),
        });
    }
    Ok(())
}

fn refuse_unfinished(ctx: &Ctx) -> Result<(), Exit> {
    match unfinished(ctx)? {
        Some(id) => Err(Exit {
            code: exit::LOCKED,
            message: format!(
                "execution {id} is unfinished: `switchyard resume` or `switchyard abort` it first"
            ),
        }),
        None => Ok(()),
    }
}

fn new_execution_id(kind: &str, epoch: u64) -> String {
    let t: String = format_ms(now_ms())
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    // YYYYMMDDTHHMMSSmmm
    format!("{}-{kind}-e{epoch}", &t[..t.len().min(18)])
}

/// Start and drive a new execution. Returns the exit code and the id.
async fn execute(
    ctx: &Ctx,
    controllers: &BTreeMap<String, Arc<dyn Controller>>,
    guard: &dyn LockGuard,
    plan: Plan,
    kind: &str,
    output: Option<Output>,
) -> Result<(i32, String), Exit> {
    execute_superseding(ctx, controllers, guard, plan, kind, output, None).await
}

/// An execution that ends another one: the execution `id` being aborted,
/// closed with `stores` once the new execution's start record is durable
/// (so there is never a moment with neither journaled).
struct Supersedes<'a> {
    id: &'a str,
    stores: Vec<StoreStatus>,
}

/// [`execute`], closing the execution it supersedes right after it starts.
async fn execute_superseding(
    ctx: &Ctx,
    controllers: &BTreeMap<String, Arc<dyn Controller>>,
    guard: &dyn LockGuard,
    plan: Plan,
    kind: &str,
    output: Option<Output>,
    supersedes: Option<Supersedes<'_>>,
) -> Result<(i32, String), Exit> {
    let store = ctx.journals()?;
    let id = new_execution_id(kind, guard.epoch());
    let failpoint = Failpoint::from_env().map_err(Exit::usage)?;
    let started = Record::Started {
        execution_id: id.clone(),
        epoch: guard.epoch(),
        at_ms: now_ms(),
        kind: kind.into(),
        topology_file: ctx.topology_file.display().to_string(),
        plan: plan.clone(),
    };
    let journal = store
        .create(&id, &started)
        .map_err(|e| Exit::usage(e.to_string()))?;
    if let Some(old) = supersedes {
        close(ctx, old.id, guard.epoch(), old.stores)?;
    }
    let reporter = reporter(output);
    let mut driver = Driver::new(controllers, journal, guard, &id, reporter.as_ref(), 1)
        .with_failpoint(failpoint);
    reporter.event(&ProgressEvent::ExecutionStarted {
        execution_id: id.clone(),
        plan: plan.name.clone(),
        epoch: guard.epoch(),
        resumed: false,
        stages: plan.stages.len(),
    });
    let mut ex = Executor::new(plan);
    let end = driver.run(&mut ex).await;
    drop(driver);
    Ok((finish(ctx, &id, end, reporter.as_ref(), output)?, id))
}

/// Journal the end of execution `id` (unless it has ended already).
fn close(ctx: &Ctx, id: &str, epoch: u64, stores: Vec<StoreStatus>) -> Result<(), Exit> {
    let journals = ctx.journals()?;
    let recs = journals.read(id).map_err(|e| Exit::usage(e.to_string()))?;
    if matches!(
        summarize(id, &recs).status,
        ExecutionStatus::Aborted | ExecutionStatus::Succeeded
    ) {
        return Ok(());
    }
    journals
        .open(id)
        .and_then(|mut j| {
            j.append(&Record::Aborted {
                epoch,
                at_ms: now_ms(),
                stores,
            })
        })
        .map_err(|e| Exit::usage(e.to_string()))
}

async fn resume(
    ctx: &Ctx,
    controllers: &BTreeMap<String, Arc<dyn Controller>>,
    guard: &dyn LockGuard,
    id: &str,
    output: Option<Output>,
) -> Result<(i32, String), Exit> {
    let store = ctx.journals()?;
    let mut recs = store.read(id).map_err(|e| match e {
        JournalError::Corrupt { .. } => Exit::usage(format!(
            "{e}\nexecution {id} is damaged and cannot be resumed: a record it depends on is \
             lost, so nothing of it is issued again. Check its stores (`switchyard state`), \
             then `switchyard executions close {id} --reason TEXT`."
        )),
        e => Exit::usage(e.to_string()),
    })?;
    match summarize(id, &recs).status {
        ExecutionStatus::Succeeded => {
            return Err(Exit::usage(format!("execution {id} already succeeded")))
        }
        ExecutionStatus::Aborted => return Err(Exit::usage(format!("execution {id} was aborted"))),
        ExecutionStatus::Closed => return Err(Exit::usage(format!("execution {id} was closed"))),
        ExecutionStatus::Empty => {
            return Err(Exit::usage(format!(
                "execution {id} never started (its journal is empty); nothing to resume"
            )))
        }
        _ => {}
    }
    refuse_superseded(&store, id)?;
    refuse_superseded_on_stores(controllers, &recs, id).await?;
    let next_seq = crate::journal::next_seq(&recs);
    let journal = store.open(id).map_err(|e| Exit::usage(e.to_string()))?;
    let reporter = reporter(output);
    let mut driver = Driver::new(controllers, journal, guard, id, reporter.as_ref(), next_seq)
        .with_failpoint(Failpoint::from_env().map_err(Exit::usage)?);
    let resumed = Record::Resumed {
        epoch: guard.epoch(),
        at_ms: now_ms(),
    };
    driver
        .record(&resumed)
        .map_err(|e| Exit::usage(e.to_string()))?;
    recs.push(resumed);
    let mut ex = Executor::replay(&recs)
        .ok_or_else(|| Exit::usage(format!("journal of {id} has no start record")))?;
    let caps = capabilities(controllers);
    validate(ex.plan(), &ctx.topology, &caps).map_err(|e| {
        Exit::usage(format!(
            "the journaled plan no longer fits the topology:\n{e}"
        ))
    })?;
    reporter.event(&ProgressEvent::ExecutionStarted {
        execution_id: id.into(),
        plan: ex.plan().name.clone(),
        epoch: guard.epoch(),
        resumed: true,
        stages: ex.plan().stages.len(),
    });
    let end = driver.run(&mut ex).await;
    drop(driver);
    Ok((
        finish(ctx, id, end, reporter.as_ref(), output)?,
        id.to_string(),
    ))
}

fn finish(
    ctx: &Ctx,
    id: &str,
    end: Result<RunEnd, crate::driver::DriverError>,
    reporter: &dyn Reporter,
    output: Option<Output>,
) -> Result<i32, Exit> {
    let (code, status, reason) = match end {
        Ok(RunEnd::Succeeded) => (exit::OK, "succeeded", None),
        Ok(RunEnd::Failed {
            reason, refused, ..
        }) => (
            if refused { exit::REFUSED } else { exit::FAILED },
            if refused { "refused" } else { "failed" },
            Some(format!("{reason}; the execution is resumable: `switchyard resume {id}` or `switchyard abort {id}`")),
        ),
        Ok(RunEnd::Aborted) => (exit::ABORTED, "aborted", None),
        Err(e) => (
            exit::FAILED,
            "failed",
            Some(format!("{e}; `switchyard resume {id}` continues from the journal")),
        ),
    };
    let journals = ctx.journals()?;
    let mut recs = journals.read(id).map_err(|e| Exit::usage(e.to_string()))?;
    // A failure before anything was changed (readiness refused, readiness
    // checkpoint not met) leaves nothing to resume or undo: close it, so the
    // operator can re-plan (e.g. with --accept-data-loss) straight away.
    let mut reason = reason;
    let changed = recs
        .iter()
        .any(|r| matches!(r, Record::Intent { op, .. } if op.is_mutating()));
    if code != exit::OK && !changed {
        let closed = Record::Aborted {
            epoch: recs
                .iter()
                .rev()
                .find_map(|r| match r {
                    Record::Started { epoch, .. } | Record::Resumed { epoch, .. } => Some(*epoch),
                    _ => None,
                })
                .unwrap_or(0),
            at_ms: now_ms(),
            stores: vec![StoreStatus {
                store: "*".into(),
                summary: "closed automatically: no store was changed".into(),
            }],
        };
        journals
            .open(id)
            .and_then(|mut j| j.append(&closed))
            .map_err(|e| Exit::usage(e.to_string()))?;
        recs.push(closed);
        reason = reason.map(|r| {
            r.split("; the execution is resumable")
                .next()
                .unwrap_or(&r)
                .to_string()
                + "; no store was changed and the execution is closed"
        });
    }
    reporter.event(&ProgressEvent::ExecutionEnded {
        execution_id: id.into(),
        status: status.into(),
        reason: reason.clone(),
    });
    let report = ExecutionReport::from_records(id, &recs);
    if json_mode(output) {
        println!("{}", json!({"event": "report", "report": report}));
    } else {
        println!("\n{}", report.render());
        if let Some(r) = &reason {
            eprintln!("switchyard: {r}");
        }
    }
    Ok(code)
}

/// Every store's observation (or why it failed), by store name.
type Observations = Vec<(String, Result<ObservedState, String>)>;

async fn observe_all(controllers: &BTreeMap<String, Arc<dyn Controller>>) -> Observations {
    futures::future::join_all(controllers.iter().map(|(n, c)| {
        let c = c.clone();
        let n = n.clone();
        async move { (n, c.observe().await.map_err(|e| e.to_string())) }
    }))
    .await
}

fn summary_of(s: &ObservedState) -> String {
    // The same rule as `all_members_healthy`: a follower receiving nothing
    // is not healthy.
    let healthy = s
        .members
        .iter()
        .filter(|m| {
            m.reachable
                && !matches!(m.role, Role::Down | Role::Unknown)
                && m.replicating != Some(false)
        })
        .count();
    let primary = match s.primary() {
        Some(p) => format!(
            "primary {} in {}{}",
            p.name,
            p.region,
            if p.fenced { " (fenced)" } else { "" }
        ),
        None => match s.primaries().count() {
            0 => "no primary".into(),
            n => {
                let newest = s.newest_primary().map(|m| m.name.as_str());
                let epoch = match s.kind {
                    switchyard_topology::StoreKind::Postgres => "timeline",
                    switchyard_topology::StoreKind::Mongodb => "term",
                    _ => "epoch",
                };
                let each: Vec<String> = s
                    .primaries()
                    .map(|m| {
                        format!(
                            "{} in {} on {epoch} {} ({})",
                            m.name,
                            m.region,
                            m.position.map_or("?".into(), |p| p.epoch.to_string()),
                            if Some(m.name.as_str()) == newest {
                                "newest"
                            } else {
                                "stale"
                            }
                        )
                    })
                    .collect();
                format!("SPLIT BRAIN: {n} writable primaries: {}", each.join(", "))
            }
        },
    };
    format!(
        "{primary}, {healthy}/{} members healthy{}",
        s.members.len(),
        s.epoch.map_or(String::new(), |e| format!(", epoch {e}"))
    )
}

async fn state(ctx: &Ctx, output: Output) -> Result<i32, Exit> {
    let controllers = ctx.controllers()?;
    let states = observe_all(&controllers).await;
    if output == Output::Json {
        let v: Vec<_> = states
            .iter()
            .map(|(n, s)| match s {
                Ok(s) => json!({"store": n, "state": s, "summary": summary_of(s)}),
                Err(e) => json!({"store": n, "error": e}),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"topology": ctx.topology.name, "stores": v}))
                .unwrap_or_default()
        );
    } else {
        for r in &ctx.topology.regions {
            println!("{} ({:?})", r.name, r.role);
            for (n, s) in &states {
                let Ok(s) = s else { continue };
                for m in s.members.iter().filter(|m| m.region == r.name) {
                    let follower =
                        m.reachable && matches!(m.role, Role::Secondary | Role::ReadOnly);
                    let lag = match m.lag {
                        Some(l) => format!(
                            " lag {}{}",
                            l.bytes.map_or("?".into(), |b| format!("{b} B")),
                            l.millis.map_or(String::new(), |ms| format!("/{ms} ms"))
                        ),
                        None if follower => " lag unknown".into(),
                        None => String::new(),
                    };
                    println!(
                        "  {:<12} {:<14} {:<10}{}{}{}{}{}{}",
                        n,
                        m.name,
                        m.role.to_string(),
                        if m.reachable { "" } else { " unreachable" },
                        if m.fenced { " fenced" } else { "" },
                        m.position.map_or(String::new(), |p| format!(" at {p}")),
                        lag,
                        m.following
                            .as_deref()
                            .map_or(String::new(), |f| format!(" from {f}")),
                        m.detail
                            .as_deref()
                            .filter(|_| m.replicating == Some(false) || m.role == Role::Primary)
                            .map_or(String::new(), |d| format!(" — {d}"))
                    );
                }
            }
        }
        println!();
        for (n, s) in &states {
            match s {
                Ok(s) => println!("{n:<12} {}", summary_of(s)),
                Err(e) => println!("{n:<12} cannot observe: {e}"),
            }
        }
    }
    Ok(if states.iter().any(|(_, s)| s.is_err()) {
        exit::FAILED
    } else if states
        .iter()
        .any(|(_, s)| s.as_ref().is_ok_and(|s| s.primaries().count() > 1))
    {
        exit::SPLIT_BRAIN
    } else {
        exit::OK
    })
}

/// How long an abort keeps observing a store whose state may still be
/// changing on its own (a promotion in flight, an election) before deciding.
const ABORT_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// End execution `id`: plan from its journal and a fresh observation of every
/// store (see [`crate::abort`]), run that plan as an execution of its own,
/// and succeed only when every store has exactly one writable primary.
async fn abort(
    ctx: &Ctx,
    controllers: &BTreeMap<String, Arc<dyn Controller>>,
    guard: &dyn LockGuard,
    id: &str,
    output: Output,
) -> Result<i32, Exit> {
    let store = ctx.journals()?;
    let recs = store.read(id).map_err(|e| Exit::usage(e.to_string()))?;
    if summarize(id, &recs).status == ExecutionStatus::Succeeded {
        return Err(Exit::usage(format!(
            "execution {id} succeeded: there is nothing to abort (fail back with `switchyard failover --to <region>`)"
        )));
    }
    let aborted_plan = Executor::replay(&recs)
        .ok_or_else(|| Exit::usage(format!("journal of {id} has no start record")))?
        .plan()
        .clone();
    // Aborting an interrupted abort: what the execution it was aborting may
    // have done counts too (its fences, its first checkpoint's epochs).
    let mut recs = recs;
    if let Some(first) = crate::abort::aborted_by(&aborted_plan) {
        if let Ok(mut earlier) = store.read(first) {
            earlier.append(&mut recs);
            recs = earlier;
        }
    }
    let caps = capabilities(controllers);
    // Decide by observation: a store that may still be changing by itself
    // (a promotion in flight, an election) is observed again until it settles.
    let settle_until = std::time::Instant::now() + ABORT_SETTLE;
    let mut observed = observe_all(controllers).await;
    while !crate::abort::unsettled(&recs, &caps, &observed).is_empty()
        && std::time::Instant::now() < settle_until
    {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        observed = observe_all(controllers).await;
    }
    let planned =
        crate::abort::plan_abort(&ctx.topology, &caps, id, &aborted_plan, &recs, &observed);
    let decided: Vec<StoreStatus> = planned
        .decisions
        .iter()
        .map(|d| StoreStatus {
            store: d.store.clone(),
            summary: d.decision.to_string(),
        })
        .collect();
    let json = output == Output::Json;
    let (code, abort_id) = match planned.plan.clone() {
        Some(plan) => {
            validate(&plan, &ctx.topology, &caps).map_err(|e| {
                Exit::usage(format!(
                    "the abort plan is invalid (a bug), nothing was run:\n{e}"
                ))
            })?;
            if !json {
                println!("Aborting {id}:");
                for d in &planned.decisions {
                    println!("  {:<12} {}", d.store, d.decision);
                }
                println!();
            }
            let (code, abort_id) = execute_superseding(
                ctx,
                controllers,
                guard,
                plan,
                crate::abort::KIND,
                Some(output),
                Some(Supersedes {
                    id,
                    stores: decided,
                }),
            )
            .await?;
            (code, Some(abort_id))
        }
        // Every store is stuck: nothing to run, but the execution is over
        // (its stores need the fixes below, not a resume).
        None => {
            close(ctx, id, guard.epoch(), decided)?;
            (exit::FAILED, None)
        }
    };
    // The verdict comes from the stores, observed after the abort ran.
    let after = observe_all(controllers).await;
    let verdicts = planned.verdicts(&after, id, abort_id.as_deref());
    let summary = |store: &str| match after.iter().find(|(n, _)| n == store) {
        Some((_, Ok(s))) => summary_of(s),
        Some((_, Err(e))) => format!("cannot observe: {e}"),
        None => "not observed".to_string(),
    };
    let ok = code == exit::OK && verdicts.iter().all(|v| v.unresolved.is_none());
    if json {
        let v: Vec<_> = verdicts
            .iter()
            .map(|v| {
                json!({"store": v.store, "decision": v.decision.to_string(),
                       "summary": summary(&v.store), "writable_primary": v.writable_primary,
                       "fix": v.unresolved.as_ref().map(|(_, fix)| fix)})
            })
            .collect();
        println!(
            "{}",
            json!({"event": "abort_report", "execution_id": id, "abort_execution_id": abort_id,
                   "status": if ok { "aborted" } else { "failed" }, "stores": v})
        );
    } else {
        if ok {
            println!(
                "Execution {id} aborted{}: every store has exactly one writable primary.",
                abort_id
                    .as_ref()
                    .map_or(String::new(), |a| format!(" by {a}"))
            );
        } else {
            println!("Abort of {id} did NOT leave every store with exactly one writable primary.");
        }
        for v in &verdicts {
            println!(
                "  {:<12} {}{}",
                v.store,
                summary(&v.store),
                if v.writable_primary.is_some() {
                    ""
                } else {
                    "  ← no single writable primary"
                }
            );
        }
    }
    for v in &verdicts {
        if let Some((saw, fix)) = &v.unresolved {
            eprintln!("switchyard: {}: {saw}; to fix: {fix}", v.store);
        }
    }
    Ok(if ok {
        exit::OK
    } else if code != exit::OK {
        code
    } else {
        exit::FAILED
    })
}

async fn drill(
    ctx: &Ctx,
    to: &str,
    timeouts: &Timeouts,
    yes: bool,
    output: Option<Output>,
) -> Result<i32, Exit> {
    let guard = ctx.lock("drill")?;
    refuse_unfinished(ctx)?;
    let controllers = ctx.controllers()?;
    // Where to come back to: the region every store is primary in now.
    let t = std::time::Instant::now();
    let states = observe_all(&controllers).await;
    let mut observe_time = t.elapsed();
    let mut origins = vec![];
    for (n, s) in &states {
        match s {
            Ok(s) => match s.primary_region() {
                Some(r) => origins.push((n.clone(), r.to_string())),
                None => {
                    return Err(Exit {
                        code: exit::REFUSED,
                        message: format!("drill refused: store `{n}` has {}", summary_of(s)),
                    })
                }
            },
            Err(e) => {
                return Err(Exit {
                    code: exit::REFUSED,
                    message: format!("drill refused: cannot observe `{n}`: {e}"),
                })
            }
        }
    }
    let origin = origins[0].1.clone();
    if let Some((n, r)) = origins.iter().find(|(_, r)| *r != origin) {
        return Err(Exit {
            code: exit::REFUSED,
            message: format!(
                "drill refused: stores are primary in different regions (`{}` in {origin}, `{n}` in {r})",
                origins[0].0
            ),
        });
    }
    if origin == to {
        return Err(Exit::usage(format!(
            "every store is already primary in {to}; drill to another region"
        )));
    }
    let out = make_plan(
        ctx,
        &controllers,
        to,
        Mode::Planned,
        timeouts,
        Some(&states),
    )
    .await?
    .ok_or_else(|| Exit::usage(format!("every store is already primary in {to}")))?;
    refuse_damaged(ctx, &out)?;
    confirm(&out, yes, output)?;
    let (code, out_id) =
        execute(ctx, &controllers, guard.as_ref(), out, "drill-out", output).await?;
    if code != exit::OK {
        return Ok(code);
    }
    // Verify independently of the checkpoints: a fresh observation of every store.
    let t = std::time::Instant::now();
    let verified = observe_all(&controllers).await;
    observe_time += t.elapsed();
    for (n, s) in &verified {
        match s {
            Ok(s) if s.primary_region() == Some(to) => {}
            Ok(s) => {
                return Err(Exit {
                    code: exit::FAILED,
                    message: format!("drill verification failed: `{n}` has {}", summary_of(s)),
                })
            }
            Err(e) => {
                return Err(Exit {
                    code: exit::FAILED,
                    message: format!("drill verification failed: cannot observe `{n}`: {e}"),
                })
            }
        }
    }
    let back = make_plan(
        ctx,
        &controllers,
        &origin,
        Mode::Planned,
        timeouts,
        Some(&verified),
    )
    .await?
    .ok_or_else(|| Exit::usage(format!("every store is already primary in {origin}")))?;
    let (code, back_id) = execute(
        ctx,
        &controllers,
        guard.as_ref(),
        back,
        "drill-back",
        output,
    )
    .await?;
    let store = ctx.journals()?;
    let reports: Vec<ExecutionReport> = [&out_id, &back_id]
        .iter()
        .filter_map(|id| {
            store
                .read(id)
                .ok()
                .map(|r| ExecutionReport::from_records(id, &r))
        })
        .collect();
    if json_mode(output) {
        println!(
            "{}",
            json!({"event": "drill_report", "from": origin, "to": to, "observe_ms": observe_time.as_millis() as u64, "out": reports.first(), "back": reports.get(1), "status": if code == exit::OK {"succeeded"} else {"failed"}})
        );
    } else {
        println!(
            "Drill {origin} → {to} → {origin}: {}",
            if code == exit::OK {
                "succeeded"
            } else {
                "FAILED"
            }
        );
        for (dir, r) in ["out", "back"].iter().zip(&reports) {
            let rtos: Vec<String> = r
                .stores
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s.store,
                        s.rto_ms.map_or("-".into(), |v| format!("{v} ms"))
                    )
                })
                .collect();
            println!(
                "  {dir:<5} {} in {:.1} s; RTO {}; coordinator overhead {:.2}%",
                r.id,
                r.total_ms as f64 / 1000.0,
                rtos.join(", "),
                if r.wall_us > 0 {
                    100.0 * r.overhead_us as f64 / r.wall_us as f64
                } else {
                    0.0
                }
            );
        }
    }
    Ok(code)
}

/// Refuse to resume an execution a later one superseded: resuming it would
/// re-issue its fence and promote over whatever the later one did (e.g. move
/// the primary back).
fn refuse_superseded(store: &FileJournalStore, id: &str) -> Result<(), Exit> {
    let ledger = ledger(store).map_err(|e| Exit::usage(e.to_string()))?;
    match ledger
        .iter()
        .find(|e| e.summary.id == id)
        .and_then(|e| e.superseded_by.as_ref())
    {
        Some(later) => Err(Exit::usage(format!(
            "execution {id} is superseded by {later}, which started after it; resuming {id} \
             would undo what {later} did, so nothing was run. \
             `switchyard executions close {id} --reason TEXT` ends it."
        ))),
        None => Ok(()),
    }
}

/// Refuse to resume an execution when one of its stores recorded a higher
/// fencing epoch than any this execution ran with: a later execution acted
/// there, perhaps from another state directory whose journals this one cannot
/// see. A store whose epoch cannot be read refuses too (it cannot be shown not
/// to be superseded); kinds that record none are judged by the journals alone.
async fn refuse_superseded_on_stores(
    controllers: &BTreeMap<String, Arc<dyn Controller>>,
    recs: &[Record],
    id: &str,
) -> Result<(), Exit> {
    let own = recs
        .iter()
        .filter_map(|r| match r {
            Record::Started { epoch, .. } | Record::Resumed { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let Some(ex) = Executor::replay(recs) else {
        return Ok(());
    };
    let stores: std::collections::BTreeSet<&str> = ex
        .plan()
        .stages
        .iter()
        .flat_map(|st| st.steps.iter().map(|s| s.store.as_str()))
        .collect();
    for name in stores {
        let Some(c) = controllers.get(name) else {
            continue;
        };
        match c.recorded_epoch().await {
            Ok(Some(seen)) if seen > own => {
                return Err(Exit::usage(format!(
                    "execution {id} is superseded on store `{name}`: the store records fencing \
                     epoch {seen}, higher than {own}, the newest this execution ran with, so a \
                     later execution acted there; resuming {id} would undo it, so nothing was \
                     run. Check `switchyard state`, then \
                     `switchyard executions close {id} --reason TEXT`."
                )))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Exit::usage(format!(
                    "execution {id}: cannot tell whether a later execution acted on `{name}` \
                     (its recorded fencing epoch cannot be read: {e}); nothing was run. \
                     Resume once the store answers."
                )))
            }
        }
    }
    Ok(())
}

/// `switchyard executions [close ID --reason TEXT]`.
fn executions(ctx: &Ctx, action: Option<ExecutionsAction>, output: Output) -> Result<i32, Exit> {
    let store = ctx.journals()?;
    if let Some(ExecutionsAction::Close { id, reason }) = action {
        return close_execution(ctx, &store, &id, &reason, output);
    }
    let rows = ledger(&store).map_err(|e| Exit::usage(e.to_string()))?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if rows.is_empty() {
        println!("no executions in {}", ctx.state_dir.display());
    } else {
        println!(
            "{:<40} {:<11} {:<10} {:<25} plan",
            "id", "status", "kind", "started"
        );
        for r in &rows {
            let s = &r.summary;
            println!(
                "{:<40} {:<11} {:<10} {:<25} {}",
                s.id,
                if r.is_damaged() {
                    "damaged".to_string()
                } else {
                    s.status.to_string()
                },
                s.kind,
                if s.status == ExecutionStatus::Empty {
                    "-".to_string()
                } else {
                    format_ms(s.started_at_ms)
                },
                s.plan
            );
            if let Some(note) = r.damage_note() {
                println!(
                    "    {}: {note}",
                    if r.is_damaged() {
                        "damaged"
                    } else {
                        "was damaged"
                    }
                );
            }
            if let (Some(later), true) = (&r.superseded_by, r.is_open()) {
                println!("    superseded by {later} (not resumable)");
            }
        }
    }
    Ok(exit::OK)
}

fn close_execution(
    ctx: &Ctx,
    store: &FileJournalStore,
    id: &str,
    reason: &str,
    output: Output,
) -> Result<i32, Exit> {
    if reason.trim().is_empty() {
        return Err(Exit::usage(
            "--reason must say why closing is safe (what was checked on the stores)",
        ));
    }
    let guard = ctx.lock("executions close")?;
    let ledger = ledger(store).map_err(|e| Exit::usage(e.to_string()))?;
    let entry = ledger
        .iter()
        .find(|e| e.summary.id == id)
        .ok_or_else(|| Exit::usage(format!("no execution `{id}`")))?;
    let status = entry.summary.status;
    let closable = entry.is_damaged()
        || status == ExecutionStatus::Empty
        || (entry.is_open() && entry.superseded_by.is_some());
    if status == ExecutionStatus::Closed {
        return Err(Exit::usage(format!("execution {id} is already closed")));
    }
    if !closable {
        return Err(Exit::usage(if entry.is_open() {
            format!(
                "execution {id} is {status}, its journal is whole and nothing superseded it: \
                 `switchyard resume {id}` or `switchyard abort {id}` (close is for damaged or \
                 superseded executions)"
            )
        } else {
            format!("execution {id} has already ended ({status})")
        }));
    }
    let damage: Vec<String> = entry.damage.iter().map(|d| d.to_string()).collect();
    store
        .open(id)
        .and_then(|mut j| {
            j.append(&Record::Closed {
                epoch: guard.epoch(),
                at_ms: now_ms(),
                reason: reason.to_string(),
                damage: damage.clone(),
            })
        })
        .map_err(|e| Exit::usage(e.to_string()))?;
    if output == Output::Json {
        println!(
            "{}",
            json!({"execution_id": id, "status": "closed", "reason": reason, "damage": damage})
        );
    } else {
        println!("Execution {id} closed: {reason}");
        for d in &damage {
            println!("  damaged: {d}");
        }
    }
    Ok(exit::OK)
}
