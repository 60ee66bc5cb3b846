//! The `switchyard` command line: argument parsing, rendering and the
//! confirmation prompt over the application service ([`crate::service`]).
//! Exit codes are stable (docs/cli.md):
//! 0 success; 1 execution failed (resumable); 2 usage or configuration error;
//! 3 another execution holds the lock (or an unfinished one must be resumed
//! or aborted first); 4 aborted by the operator or confirmation declined;
//! 5 refused before any store changed (readiness, lag beyond the bound, a
//! gate, a pre-hook, a refused approval or rollback);
//! 6 `state` saw a split brain (two writable primaries in one store);
//! 7 `state` saw a store without a writable primary or a member not healthy;
//! 8 the execution waits for a second person's approval.

use crate::health;
use crate::journal::{format_ms, ExecutionStatus};
use crate::output;
use crate::plan::{Mode, Plan};
use crate::preview;
use crate::progress::{JsonLines, Plain, Reporter, Terminal};
use crate::report::timeline;
use crate::server::views::{AbortPlanned, AbortReport, DrillReport};
use crate::service::{
    ErrorKind, EventSink, Outcome, PlanRequest, Service, ServiceError, ServiceEvent, StartRequest,
    StateReport,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Refused before any store was changed: a readiness check (lag beyond
    /// the bound without `--accept-data-loss`, no healthy candidate, a store
    /// not ready). Closed at once; nothing to resume.
    pub const REFUSED: i32 = 5;
    /// `state`: a store has more than one writable primary (split brain).
    /// The next execution for it fences and rejoins the stale one first.
    pub const SPLIT_BRAIN: i32 = 6;
    /// `state`: every store was observed, but one has no writable primary
    /// or a member that is not healthy (or whose health is unknown).
    pub const DEGRADED: i32 = 7;
    /// The execution needs a second person's approval: it is journaled as
    /// `pending_approval` and nothing was issued (`switchyard approve ID`).
    pub const PENDING_APPROVAL: i32 = 8;
    /// Every code above, in order.
    pub const ALL: [i32; 9] = [
        OK,
        FAILED,
        USAGE,
        LOCKED,
        ABORTED,
        REFUSED,
        SPLIT_BRAIN,
        DEGRADED,
        PENDING_APPROVAL,
    ];

    /// The meaning of an exit code as one word, as `switchyard.result/v1`
    /// lines carry it (`outcome`).
    pub fn meaning(code: i32) -> &'static str {
        match code {
            OK => "ok",
            FAILED => "failed",
            USAGE => "usage",
            LOCKED => "locked",
            ABORTED => "declined",
            REFUSED => "refused",
            SPLIT_BRAIN => "split_brain",
            DEGRADED => "degraded",
            PENDING_APPROVAL => "pending_approval",
            _ => "other",
        }
    }
}

/// Switchyard: fail replicated datastores over between regions, in
/// dependency order, with a checkpoint validated after every stage.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, long_about = None)]
pub struct Cli {
    /// Topology file.
    #[arg(long, short = 't', global = true, env = "SWITCHYARD_TOPOLOGY")]
    pub topology: Option<PathBuf>,
    /// Directory for journals, the lock and the fencing token counter (default: `.switchyard`
    /// next to the topology file).
    #[arg(long, global = true, env = "SWITCHYARD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Carry the command out on a `switchyard serve` at this URL (token in
    /// `SWITCHYARD_TOKEN`); see docs/server.md.
    #[arg(long, global = true, env = "SWITCHYARD_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Log lines on stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line). Which lines: `RUST_LOG` (default `warn`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SWITCHYARD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people; ANSI colours only when stderr is a terminal and
    /// `NO_COLOR` is not set.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
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
    /// The member to promote (patronictl's `--candidate`): `MEMBER`, or
    /// `STORE=MEMBER` when two stores have a member of that name; once
    /// per store. It must be an electable member of the target region;
    /// stores without one promote their best member there.
    #[arg(long, value_name = "MEMBER")]
    pub candidate: Vec<String>,
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
    /// Every store's health, per region as it is today: each member's role,
    /// whether it is healthy and why not, its position and lag; an
    /// unfinished execution and any split brain first.
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
    /// Planned move of every store to a region, old primaries fenced and
    /// caught up first (patronictl's `switchover`). Refuses when a store's
    /// current primary cannot be reached to fence it: that is a
    /// `failover --forced`.
    Switchover {
        /// Region every store should end up primary in.
        #[arg(long)]
        to: String,
        /// The member to promote (patronictl's `--candidate`): `MEMBER`, or
        /// `STORE=MEMBER` when two stores have a member of that name; once
        /// per store. It must be an electable member of the target region;
        /// stores without one promote their best member there.
        #[arg(long, value_name = "MEMBER")]
        candidate: Vec<String>,
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
    /// Show the plan, ask, then fail every store over: planned while the
    /// old primaries answer, `--forced` when their region is gone.
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
    #[command(visible_alias = "history")]
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
        /// One line per stage and per store, however long (default: fit 80 columns).
        #[arg(long)]
        wide: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print a shell completion script (`switchyard completions bash >
    /// /etc/bash_completion.d/switchyard`). Needs no topology.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write man pages: `switchyard.1` and one per subcommand
    /// (`switchyard-failover.1`, …) into DIR, or `switchyard.1` to stdout
    /// without `--dir`. Needs no topology.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Return every store an execution moved to the region it started in:
    /// planned from its journal and what the stores show now, previewed,
    /// run as an execution of its own with a checkpoint after every stage.
    /// Refuses, naming the store and why, when the way back would lose data.
    Rollback {
        /// Execution id (default: the unfinished one).
        id: Option<String>,
        /// The member to return to: `MEMBER`, or `STORE=MEMBER` when two
        /// stores have a member of that name; once per store. It must be an
        /// electable member of the region the store started in; default:
        /// the member the execution moved from.
        #[arg(long, value_name = "MEMBER")]
        candidate: Vec<String>,
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
    /// Approve an execution that is `pending_approval` (the two-person
    /// rule): as an OS user other than the requester, or with an approver
    /// token in SWITCHYARD_APPROVER_TOKEN; `switchyard resume ID` runs it.
    /// With --server: as the holder of SWITCHYARD_TOKEN (role approver),
    /// and the server runs it at once.
    Approve {
        /// Execution id.
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
        /// The member to promote on the way out (as `failover
        /// --candidate`): `MEMBER`, or `STORE=MEMBER`; once per store. The
        /// way back chooses as always.
        #[arg(long, value_name = "MEMBER")]
        candidate: Vec<String>,
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
    /// Serve the HTTP API (docs/server.md).
    Serve {
        /// Address to listen on (port 0: a free one; the bound address is
        /// printed as one JSON line).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Coordination backend: `file` (embedded, one machine: the state
        /// directory's lock and journals), `etcd://HOST:PORT[,HOST:PORT…]`
        /// or `consul://HOST:PORT` (several servers; docs/ha.md).
        #[arg(long, default_value = "file")]
        backend: String,
        /// Lease TTL on etcd and Consul, in seconds: how long a dead
        /// leader blocks the next one (Consul: up to twice this, and at
        /// least 10).
        #[arg(long, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        lease_ttl: Option<u64>,
        /// This server's name.
        #[arg(long, default_value = "switchyard")]
        node: String,
        /// Bearer tokens (`switchyard token create`).
        #[arg(long)]
        tokens_file: PathBuf,
        /// PEM certificate chain: serve HTTPS.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// URL clients and other servers reach this one at (default: from
        /// the bound address).
        #[arg(long)]
        advertise_url: Option<String>,
        /// How often every store is observed in the background.
        #[arg(long, default_value_t = 5000, value_name = "MS",
              value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
        observe_interval_ms: u64,
        /// Let requests without a token read (topology, state, plans,
        /// executions, events: the console's read-only views, for labs and
        /// wall displays). Starting, resuming and aborting still need a token.
        #[arg(long)]
        anonymous_read: bool,
    },
    /// API tokens.
    Token {
        /// `create`.
        #[command(subcommand)]
        action: TokenAction,
    },
}

/// What `token` can do.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create an API token with a role; prints it once (only its hash is
    /// stored).
    Create {
        /// viewer, operator or approver.
        #[arg(long)]
        role: crate::server::auth::Role,
        /// Tokens file the server reads (created with mode 0600 if missing).
        #[arg(long)]
        tokens_file: PathBuf,
        /// Who holds it: the journal names them as the one who started or
        /// approved an execution (default: the token's id).
        #[arg(long)]
        name: Option<String>,
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
        /// Output format (also accepted before `close`).
        #[arg(long, value_enum)]
        output: Option<Output>,
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
    pub(crate) fn usage(m: impl Into<String>) -> Self {
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            let args: Vec<String> = std::env::args().skip(1).collect();
            let hint = misplaced(args.clone());
            if let Some(hint) = &hint {
                eprintln!("\nhint: did you mean `switchyard {hint}`?");
            }
            // `--help` and `--version` exit 0 and are for people.
            let asked_json = args
                .windows(2)
                .any(|w| w[0] == "--output" && w[1] == "json")
                || args.iter().any(|a| a == "--output=json");
            if code != exit::OK && asked_json {
                let first = e.render().to_string();
                let first = first.lines().next().unwrap_or_default();
                let message = match &hint {
                    Some(h) => format!("{first}; did you mean `switchyard {h}`?"),
                    None => first.to_string(),
                };
                output::result_line_if_silent(code, Some(message.trim_start_matches("error: ")));
            }
            return code;
        }
    };
    init_logging(cli.log_format);
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
    let json = cli.command.json_output();
    let (code, error) = match rt.block_on(dispatch(cli)) {
        Ok(code) => (code, None),
        Err(e) => {
            eprintln!("switchyard: {}", e.message);
            (e.code, Some(e.message))
        }
    };
    if json {
        output::result_line_if_silent(code, error.as_deref());
    }
    code
}

impl Command {
    /// Whether the command prints JSON lines: `--output json`, or (for the
    /// commands that execute) no `--output` and stdout not a terminal.
    fn json_output(&self) -> bool {
        match self {
            Command::State { output }
            | Command::Abort { output, .. }
            | Command::Show { output, .. }
            | Command::Approve { output, .. } => *output == Output::Json,
            Command::Switchover { output, .. }
            | Command::Failover { output, .. }
            | Command::Run { output, .. }
            | Command::Resume { output, .. }
            | Command::Rollback { output, .. }
            | Command::Drill { output, .. } => json_mode(*output),
            Command::Executions {
                action:
                    Some(ExecutionsAction::Close {
                        output: Some(after),
                        ..
                    }),
                ..
            } => *after == Output::Json,
            Command::Executions { output, .. } => *output == Output::Json,
            Command::Plan {
                what: PlanKind::Failover { output, .. },
            } => *output == PlanOutput::Json,
            _ => false,
        }
    }
}

impl From<ServiceError> for Exit {
    fn from(e: ServiceError) -> Self {
        Exit {
            code: match e.kind {
                ErrorKind::Usage => exit::USAGE,
                ErrorKind::Locked => exit::LOCKED,
                ErrorKind::Refused => exit::REFUSED,
                ErrorKind::Failed => exit::FAILED,
                ErrorKind::PendingApproval => exit::PENDING_APPROVAL,
            },
            message: e.message,
        }
    }
}

/// The exit code of an execution's outcome.
pub(crate) fn code_of(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Succeeded => exit::OK,
        Outcome::Failed => exit::FAILED,
        Outcome::Refused => exit::REFUSED,
        Outcome::Aborted => exit::ABORTED,
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

pub(crate) fn json_mode(output: Option<Output>) -> bool {
    match output {
        Some(o) => o == Output::Json,
        None => !std::io::stdout().is_terminal(),
    }
}

/// A command line that does not parse but would with a word added or moved:
/// `plan --to west` is `plan failover --to west`, `failover west` is
/// `failover --to west`. Returns the corrected arguments.
fn misplaced(args: Vec<String>) -> Option<String> {
    let parses = |a: &[String]| {
        Cli::try_parse_from(std::iter::once("switchyard".to_string()).chain(a.iter().cloned()))
            .is_ok()
    };
    let candidates = {
        let mut v: Vec<Vec<String>> = Vec::new();
        if let Some(i) = args.iter().position(|a| a == "plan") {
            let mut a = args.clone();
            a.insert(i + 1, "failover".into());
            v.push(a);
        }
        for cmd in ["failover", "switchover", "drill"] {
            if let Some(i) = args.iter().position(|a| a == cmd) {
                if let Some(region) = args.get(i + 1).filter(|r| !r.starts_with('-')) {
                    let mut a = args.clone();
                    a[i + 1] = format!("--to {region}");
                    let split: Vec<String> = a
                        .iter()
                        .flat_map(|x| x.split(' ').map(String::from).collect::<Vec<_>>())
                        .collect();
                    v.push(split);
                }
            }
        }
        v
    };
    candidates
        .into_iter()
        .find(|a| parses(a))
        .map(|a| a.join(" "))
}

/// Log lines go to stderr, filtered by `RUST_LOG` (default `warn`), never
/// coloured into a file or a pipe.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_writer(crate::progress::LogWriter)
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
    };
}

/// Renders the service's event stream: progress through a [`Reporter`],
/// each execution's report when it ends.
pub(crate) struct Render {
    reporter: Box<dyn Reporter>,
    json: bool,
}

impl Render {
    pub(crate) fn sink(output: Option<Output>) -> Arc<dyn EventSink> {
        if output.is_none() && !std::io::stdout().is_terminal() {
            eprintln!(
                "switchyard: stdout is not a terminal: printing JSON lines (--output text for text)"
            );
        }
        Arc::new(Render {
            reporter: reporter(output),
            json: json_mode(output),
        })
    }
}

impl EventSink for Render {
    fn send(&self, ev: &ServiceEvent) {
        match ev {
            ServiceEvent::Progress(p) => self.reporter.event(p),
            ServiceEvent::RollbackPlanned {
                execution_id,
                stores,
            } => {
                if self.json {
                    let v: Vec<_> = stores
                        .iter()
                        .map(|(s, a)| json!({"store": s, "action": a}))
                        .collect();
                    output::line(
                        output::EVENT,
                        json!({"event": "rollback_planned", "execution_id": execution_id, "stores": v}),
                    );
                } else {
                    println!("Rolling back {execution_id}:");
                    for (s, a) in stores {
                        println!("  {s:<12} {a}");
                    }
                    println!();
                }
            }
            ServiceEvent::Report { report, reason } => {
                if self.json {
                    output::line(output::EVENT, json!({"event": "report", "report": report}));
                } else {
                    println!("\n{}", report.render());
                    if let Some(r) = reason {
                        eprintln!("switchyard: {r}");
                    }
                }
            }
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, Exit> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "switchyard", &mut script);
            return Ok(print_bytes(&script));
        }
        Command::Man { dir } => return man_pages(dir.as_deref()),
        _ => {}
    }
    if let Command::Token {
        action:
            TokenAction::Create {
                role,
                tokens_file,
                name,
            },
    } = &cli.command
    {
        let (token, id) = crate::server::auth::create(tokens_file, *role, name.as_deref())
            .map_err(Exit::usage)?;
        println!("{token}");
        eprintln!(
            "switchyard: token {id} ({role}{}) added to {}; it is shown only now",
            name.as_deref()
                .map(|n| format!(", held by {n}"))
                .unwrap_or_default(),
            tokens_file.display()
        );
        return Ok(exit::OK);
    }
    if let Some(url) = &cli.server {
        if !matches!(cli.command, Command::Serve { .. }) {
            return crate::remote::run(url, cli.command).await;
        }
    }
    if let Command::Serve { backend, .. } = &cli.command {
        crate::server::check_backend(backend).map_err(Exit::usage)?;
    }
    let file = cli.topology.clone().ok_or_else(|| {
        Exit::usage("no topology: pass --topology FILE or set SWITCHYARD_TOPOLOGY")
    })?;
    let service = Service::load(&file, cli.state_dir.as_deref())?;
    let result = command(&service, cli.command).await;
    service.shutdown().await;
    result
}

/// Write generated text to stdout; a reader gone away (`| head`) ends the
/// command as it ends Unix tools.
fn print_bytes(bytes: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => BROKEN_PIPE_EXIT,
        Err(_) => exit::USAGE,
    }
}

/// `switchyard man`: the top page and one per subcommand, from the same
/// definitions `--help` prints.
fn man_pages(dir: Option<&std::path::Path>) -> Result<i32, Exit> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .map_err(|e| Exit::usage(format!("cannot render the man page: {e}")))?;
        return Ok(print_bytes(&page));
    };
    let fail = |e: std::io::Error| Exit::usage(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    clap_mangen::generate_to(cmd, dir).map_err(fail)?;
    Ok(exit::OK)
}

fn plan_request(target: &Target, timeouts: &Timeouts) -> PlanRequest {
    PlanRequest {
        to: target.to.clone(),
        mode: target.mode(),
        stage_timeout_ms: timeouts.stage_timeout_ms,
        catch_up_timeout_ms: timeouts.catch_up_timeout_ms,
        candidates: target.candidate.clone(),
    }
}

/// Print an execution's journal and report; a damaged journal is shown
/// too: what could be read, and where not.
pub(crate) fn render_show(shown: &crate::service::Shown, output: Output, wide: bool) -> i32 {
    if output == Output::Json {
        output::line(
            output::SHOW,
            serde_json::to_value(output::ShowBody {
                report: &shown.report,
                journal: &shown.records,
                damage: &shown.damage,
            })
            .unwrap_or_default(),
        );
    } else {
        for d in &shown.damage {
            println!("DAMAGED: {d}");
        }
        let report = if wide {
            shown.report.render_wide()
        } else {
            shown.report.render()
        };
        // Journals written before they recorded store kinds: the kinds the
        // report found in the topology.
        let kinds = shown
            .report
            .stores
            .iter()
            .filter_map(|s| Some((s.store.clone(), s.kind?)))
            .collect();
        let timeline = timeline(&shown.records, &kinds);
        // Fitted on a terminal; a file or a pipe keeps one line per entry.
        let timeline = match crate::width::stdout_columns() {
            Some(cols) if !wide => fit_timeline(&timeline, cols.min(81).saturating_sub(1)),
            _ => timeline,
        };
        print!("{timeline}\n{report}");
    }
    exit::OK
}

/// `show`'s timeline within `width` columns: a long entry continues under
/// its text, past the `+   1.234s  ` time column.
fn fit_timeline(timeline: &str, width: usize) -> String {
    const TIME: usize = 12;
    let mut out = String::new();
    for line in timeline.lines() {
        match line.char_indices().nth(TIME) {
            Some((at, _)) if line.starts_with('+') => {
                let (time, text) = line.split_at(at);
                let body = text.trim_start();
                let indent = " ".repeat(TIME + text.len() - body.len());
                let first = format!("{time}{}", &text[..text.len() - body.len()]);
                out.push_str(&crate::width::wrap(
                    body,
                    &first,
                    &format!("{indent}  "),
                    width,
                ));
            }
            _ => out.push_str(&crate::width::fit_block(line, width)),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Plan, ask, run.
async fn start(
    service: &Service,
    req: StartRequest,
    yes: bool,
    output: Option<Output>,
) -> Result<i32, Exit> {
    let Some(pending) = service.prepare(&req).await? else {
        let StartRequest::Failover(p) = req else {
            return Ok(exit::OK);
        };
        return Ok(nothing_to_do(&p.to));
    };
    for w in pending.warnings() {
        eprintln!("switchyard: warning: {w}");
    }
    let preview = preview_of(service, pending.plan(), yes).await;
    confirm(pending.plan(), yes, preview.as_deref())?;
    let done = match service.run(pending, Render::sink(output)).await {
        Err(e) if e.kind == ErrorKind::PendingApproval => {
            pending_approval(service, output);
            return Err(e.into());
        }
        other => other?,
    };
    // A plan with `on_failure = "rollback"` that was rolled back says so.
    if let (Outcome::Aborted, Some(r)) = (done.outcome, &done.reason) {
        eprintln!("switchyard: {r}");
    }
    Ok(code_of(done.outcome))
}

/// With `--output json`, the `pending_approval` event of the execution just
/// journaled as waiting for approval (the newest one that is).
fn pending_approval(service: &Service, output: Option<Output>) {
    if !json_mode(output) {
        return;
    }
    let Some(shown) = service.newest_pending_approval() else {
        return;
    };
    if let Some(a) = &shown.report.approval {
        println!(
            "{}",
            json!({"event": "pending_approval", "execution_id": shown.id,
                   "status": "pending_approval", "requester": a.request.requester,
                   "reasons": a.request.reasons,
                   "expires_at": format_ms(a.request.expires_at_ms)})
        );
    }
}

/// `switchyard rollback [ID]`: plan, preview, ask, run.
async fn rollback(
    service: &Service,
    id: Option<String>,
    candidates: &[String],
    timeouts: &Timeouts,
    yes: bool,
    output: Option<Output>,
) -> Result<i32, Exit> {
    let t = crate::rollback::Timeouts {
        stage_ms: timeouts.stage_timeout_ms,
        catch_up_ms: timeouts.catch_up_timeout_ms,
    };
    let pending = service.prepare_rollback(id, t, candidates).await?;
    let sink = Render::sink(output);
    sink.send(&ServiceEvent::RollbackPlanned {
        execution_id: pending.id.clone(),
        stores: crate::service::rollback_actions(&pending.planned),
    });
    if let Some(plan) = &pending.planned.plan {
        if !yes && !json_mode(output) {
            print!("{}", plan.render());
        }
        confirm(plan, yes, None)?;
    }
    let id = pending.id.clone();
    match service.rollback(pending, sink).await? {
        Some(done) => Ok(code_of(done.outcome)),
        None => Ok(rolled_back_nothing(&id, output)),
    }
}

/// A rollback with nothing to run: every store was where `id` found it.
pub(crate) fn rolled_back_nothing(id: &str, output: Option<Output>) -> i32 {
    if !json_mode(output) {
        println!("Every store is primary where {id} found it; {id} is closed.");
    }
    exit::OK
}

/// `switchyard approve ID`.
fn approve(service: &Service, id: &str, output: Output) -> Result<i32, Exit> {
    let token = std::env::var(crate::approval::TOKEN_ENV).ok();
    let d = service.approve(id, token.as_deref())?;
    if output == Output::Json {
        output::execution_line(output::ExecutionLine::Approved(output::ApprovedLine {
            execution_id: id.to_string(),
            status: "approved",
            approver: serde_json::to_value(&d.approver).unwrap_or_default(),
        }));
    } else {
        println!(
            "Execution {id} approved by {}; `switchyard resume {id}` runs it.",
            d.approver
        );
    }
    Ok(exit::OK)
}

async fn command(service: &Service, command: Command) -> Result<i32, Exit> {
    match command {
        Command::State { output } => state(service, output).await,
        Command::Plan {
            what:
                PlanKind::Failover {
                    target,
                    timeouts,
                    output,
                },
        } => {
            let Some(plan) = service.plan(&plan_request(&target, &timeouts)).await? else {
                return Ok(nothing_to_do(&target.to));
            };
            match output {
                PlanOutput::Text => print!("{}", plan.render()),
                PlanOutput::Toml => print!(
                    "{}",
                    plan.to_toml().map_err(|e| Exit::usage(e.to_string()))?
                ),
                PlanOutput::Json => output::line(
                    output::PLAN,
                    serde_json::to_value(&plan).unwrap_or_default(),
                ),
            }
            Ok(exit::OK)
        }
        Command::Failover {
            target,
            timeouts,
            yes,
            output,
        } => {
            let req = StartRequest::Failover(plan_request(&target, &timeouts));
            start(service, req, yes, output).await
        }
        Command::Switchover {
            to,
            candidate,
            timeouts,
            yes,
            output,
        } => {
            let target = Target {
                to,
                forced: false,
                accept_data_loss: false,
                candidate,
            };
            let req = plan_request(&target, &timeouts);
            service.target_region(&req.to)?;
            service.candidates(&req)?;
            service.refuse_unfenceable(Some(req.to.as_str())).await?;
            let req = StartRequest::Failover(req);
            start(service, req, yes, output).await
        }
        Command::Run { plan, yes, output } => {
            start(service, StartRequest::PlanFile(plan), yes, output).await
        }
        Command::Resume { id, output } => {
            let done = service
                .resume(id, Render::sink(output))
                .await?
                .run()
                .await?;
            // As `run` does: a plan that failed and was rolled back says so.
            if let (Outcome::Aborted, Some(r)) = (done.outcome, &done.reason) {
                eprintln!("switchyard: {r}");
            }
            Ok(code_of(done.outcome))
        }
        Command::Abort { id, output } => abort(service, id, output).await,
        Command::Executions { action, output } => executions(service, action, output),
        Command::Approve { id, output } => approve(service, &id, output),
        Command::Rollback {
            id,
            candidate,
            timeouts,
            yes,
            output,
        } => rollback(service, id, &candidate, &timeouts, yes, output).await,
        Command::Show { id, output, wide } => Ok(render_show(&service.show(&id)?, output, wide)),
        Command::Drill {
            to,
            candidate,
            timeouts,
            yes,
            output,
        } => drill(service, &to, &candidate, &timeouts, yes, output).await,
        Command::Serve {
            listen,
            backend,
            node,
            tokens_file,
            tls_cert,
            tls_key,
            advertise_url,
            observe_interval_ms,
            anonymous_read,
            lease_ttl,
        } => {
            let opts = crate::server::ServeOptions {
                lease_ttl: lease_ttl.map(std::time::Duration::from_secs),
                listen,
                backend,
                node,
                tokens_file,
                tls: tls_cert.zip(tls_key),
                advertise: advertise_url,
                observe_interval: std::time::Duration::from_millis(observe_interval_ms),
                anonymous_read,
            };
            crate::server::serve(service.clone(), opts)
                .await
                .map_err(Exit::usage)?;
            Ok(exit::OK)
        }
        // Handled before a topology is loaded.
        Command::Token { .. } => Ok(exit::OK),
        // Handled before the topology is loaded.
        Command::Completions { .. } | Command::Man { .. } => Ok(exit::OK),
    }
}

pub(crate) fn nothing_to_do(to: &str) -> i32 {
    output::notice(&format!(
        "every store is already primary in {to}; nothing to do"
    ));
    exit::OK
}

/// The preview of `plan` over what the stores show now, or `None` when no
/// one will read it (`--yes`, or no terminal to ask on).
async fn preview_of(service: &Service, plan: &Plan, yes: bool) -> Option<String> {
    if yes || !std::io::stdin().is_terminal() {
        return None;
    }
    let state = service.state().await.ok()?;
    Some(preview::render(plan, &state.topology, &state.health))
}

pub(crate) fn confirm(plan: &Plan, yes: bool, preview: Option<&str>) -> Result<(), Exit> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Exit {
            code: exit::ABORTED,
            message: "confirmation needed and stdin is not a terminal: pass --yes".into(),
        });
    }
    // The question goes to a person at a terminal (stdin is one), also when
    // stdout is a pipe: the plan and the preview in words, fitted to the
    // terminal so nothing wraps mid-word.
    let width = crate::width::stderr_columns().saturating_sub(1);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", crate::width::fit_block(&plan.render(), width));
    if let Some(p) = preview {
        let _ = writeln!(err, "{}", crate::width::fit_block(p, width));
    }
    // A forced run may lose data: a reflexive `y` is not enough.
    let phrase = preview::forced_phrase(plan);
    let forced = plan.mode != Mode::Planned && !phrase.is_empty();
    if forced {
        let prompt = crate::width::fit_block(
            &format!(
                "FORCED: type the stores to promote ({phrase}) to execute, anything else to stop:"
            ),
            width,
        );
        let _ = write!(err, "{} ", prompt.trim_end());
    } else {
        let _ = write!(err, "Execute this plan? [y/N] ");
    }
    let _ = err.flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if !line.ends_with('\n') {
        // End of input, no Enter: what follows starts on a line of its own.
        let _ = writeln!(err);
    }
    let typed = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let ok = if forced {
        typed == phrase
    } else {
        matches!(typed.as_str(), "y" | "Y" | "yes")
    };
    if ok {
        Ok(())
    } else {
        Err(Exit {
            code: exit::ABORTED,
            message: "declined; nothing was done".into(),
        })
    }
}

async fn state(service: &Service, output: Output) -> Result<i32, Exit> {
    Ok(render_state(&service.state().await?, output))
}

/// Print what `state` saw; the exit code says whether every store could be
/// observed and none has two writable primaries.
pub(crate) fn render_state(report: &StateReport, output: Output) -> i32 {
    if output == Output::Json {
        let v: Vec<_> = report
            .health
            .iter()
            .zip(&report.stores)
            .map(|((n, h), (_, s))| match (h, s) {
                (Ok(h), Ok(s)) => json!({"store": n, "health": h, "state": s}),
                (Err(e), _) | (_, Err(e)) => json!({"store": n, "error": e}),
            })
            .collect();
        output::line(
            output::STATE,
            json!({
                "topology": report.topology.name,
                "unfinished_execution": report.unfinished,
                "stores": v,
            }),
        );
    } else {
        // Fitted to a terminal; a file or a pipe gets one line per fact.
        let width = crate::width::stdout_columns().map(|c| c.saturating_sub(1));
        let text = health::render_text(
            &report.topology,
            &report.health,
            report.unfinished.as_ref(),
            width,
        );
        match width {
            Some(w) => print!("{}", crate::width::fit_block(&text, w)),
            None => print!("{text}"),
        }
    }
    if report.unobservable() {
        exit::FAILED
    } else if report.split_brain() {
        exit::SPLIT_BRAIN
    } else if report
        .health
        .iter()
        .any(|(_, h)| h.as_ref().is_ok_and(|h| !h.is_healthy()))
    {
        exit::DEGRADED
    } else {
        exit::OK
    }
}

/// End execution `id`: the service plans from its journal and a fresh
/// observation of every store, runs that plan as an execution of its own,
/// and succeeds only when every store has exactly one writable primary.
async fn abort(service: &Service, id: Option<String>, output: Output) -> Result<i32, Exit> {
    let pending = service.prepare_abort(id).await?;
    render_abort_planned(&AbortPlanned::of(&pending), output);
    let done = service.abort(pending, Render::sink(Some(output))).await?;
    Ok(render_abort_report(&AbortReport::of(&done), output))
}

/// What an abort decided for every store, before it runs.
pub(crate) fn render_abort_planned(planned: &AbortPlanned, output: Output) {
    if planned.has_plan && output != Output::Json {
        println!("Aborting {}:", planned.execution_id);
        for d in &planned.decisions {
            println!("  {:<12} {}", d.store, d.decision);
        }
        println!();
    }
}

/// How an abort ended, judged by the stores observed after it; the exit
/// code is 0 only when every store has exactly one writable primary.
pub(crate) fn render_abort_report(done: &AbortReport, output: Output) -> i32 {
    let id = &done.execution_id;
    let code = done.outcome.map_or(exit::FAILED, code_of);
    let ok = done.ok;
    if output == Output::Json {
        let v: Vec<_> = done
            .stores
            .iter()
            .map(|v| {
                json!({"store": v.store, "decision": v.decision,
                       "summary": v.summary, "writable_primary": v.writable_primary,
                       "fix": v.fix})
            })
            .collect();
        output::line(
            output::EVENT,
            json!({"event": "abort_report", "execution_id": id, "abort_execution_id": done.abort_execution_id,
                   "status": if ok { "aborted" } else { "failed" }, "stores": v}),
        );
    } else {
        if ok {
            println!(
                "Execution {id} aborted{}: every store has exactly one writable primary.",
                done.abort_execution_id
                    .as_ref()
                    .map_or(String::new(), |a| format!(" by {a}"))
            );
        } else {
            println!("Abort of {id} did NOT leave every store with exactly one writable primary.");
        }
        for v in &done.stores {
            println!(
                "  {:<12} {}{}",
                v.store,
                v.summary,
                if v.writable_primary.is_some() {
                    ""
                } else {
                    "  ← no single writable primary"
                }
            );
        }
    }
    for v in &done.stores {
        if let (Some(saw), Some(fix)) = (&v.saw, &v.fix) {
            eprintln!("switchyard: {}: {saw}; to fix: {fix}", v.store);
        }
    }
    if ok {
        exit::OK
    } else if code != exit::OK {
        code
    } else {
        exit::FAILED
    }
}

async fn drill(
    service: &Service,
    to: &str,
    candidates: &[String],
    timeouts: &Timeouts,
    yes: bool,
    output: Option<Output>,
) -> Result<i32, Exit> {
    let pending = service
        .prepare_drill(
            to,
            timeouts.stage_timeout_ms,
            timeouts.catch_up_timeout_ms,
            candidates,
        )
        .await?;
    let preview = preview_of(service, &pending.out, yes).await.map(|p| {
        let topology = service.topology();
        let back = match &pending.back {
            Some(back) => {
                let expected: Vec<(String, Result<health::StoreHealth, String>)> = pending
                    .expected
                    .iter()
                    .map(|(n, s)| {
                        let spec = topology.stores.iter().find(|t| &t.name == n);
                        let h = s
                            .as_ref()
                            .map(|s| health::assess(s, spec, &crate::registry::notation(s.kind)));
                        (n.clone(), h.map_err(Clone::clone))
                    })
                    .collect();
                format!(
                    "{}\n{}",
                    back.render(),
                    preview::render(back, &topology, &expected)
                )
            }
            None => String::new(),
        };
        format!(
            "{p}\nThen the way back, every store {} → {}: planned here from the state the first \
             leg's checkpoints expect (its lag cannot be known yet), and planned again from what \
             the stores show once they passed:\n{back}",
            pending.to, pending.origin
        )
    });
    confirm(&pending.out, yes, preview.as_deref())?;
    let drilled = service.drill(pending, Render::sink(output)).await?;
    Ok(render_drill(&DrillReport::of(&drilled), output))
}

/// A drill's report (nothing when the way out did not succeed: its own
/// report said why); the exit code is the way back's.
pub(crate) fn render_drill(d: &DrillReport, output: Option<Output>) -> i32 {
    let code = code_of(d.outcome);
    if !d.completed {
        return code;
    }
    let (origin, to) = (&d.from, &d.to);
    if json_mode(output) {
        output::line(
            output::EVENT,
            json!({"event": "drill_report", "from": origin, "to": to, "observe_ms": d.observe_ms, "out": d.out, "back": d.back, "status": if code == exit::OK {"succeeded"} else {"failed"}}),
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
        let legs = [("out", &d.out), ("back", &d.back)];
        for (dir, r) in legs
            .iter()
            .filter_map(|(dir, r)| r.as_ref().map(|r| (dir, r)))
        {
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
                if r.stage_wall_us > 0 {
                    100.0 * r.overhead_us as f64 / r.stage_wall_us as f64
                } else {
                    0.0
                }
            );
        }
    }
    code
}

/// `switchyard executions [close ID --reason TEXT]`.
fn executions(
    service: &Service,
    action: Option<ExecutionsAction>,
    output: Output,
) -> Result<i32, Exit> {
    if let Some(ExecutionsAction::Close {
        id,
        reason,
        output: after,
    }) = action
    {
        return Ok(render_closed(
            &service.close(&id, &reason)?,
            after.unwrap_or(output),
        ));
    }
    let rows = service.executions()?;
    let empty = format!("no executions in {}", service.state_dir().display());
    Ok(render_executions(&rows, output, &empty))
}

/// An execution closed by `executions close`.
pub(crate) fn render_closed(closed: &crate::service::ClosedExecution, output: Output) -> i32 {
    if output == Output::Json {
        output::execution_line(output::ExecutionLine::Closed(output::ClosedLine {
            execution_id: closed.id.clone(),
            status: "closed",
            reason: closed.reason.clone(),
            damage: closed.damage.clone(),
        }));
    } else {
        println!("Execution {} closed: {}", closed.id, closed.reason);
        for d in &closed.damage {
            println!("  damaged: {d}");
        }
    }
    exit::OK
}

/// Every execution, oldest first (`empty`: what to say when there is none).
pub(crate) fn render_executions(
    rows: &[crate::journal::LedgerEntry],
    output: Output,
    empty: &str,
) -> i32 {
    if output == Output::Json {
        for r in rows {
            output::execution_line(output::ExecutionLine::Row(r.clone()));
        }
    } else if rows.is_empty() {
        println!("{empty}");
    } else {
        println!(
            "{:<40} {:<11} {:<10} {:<25} plan",
            "id", "status", "kind", "started"
        );
        for r in rows {
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
    exit::OK
}
