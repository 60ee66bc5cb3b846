//! Execution and stage hooks (orchestrator's PreFailoverProcesses /
//! PostFailoverProcesses): operator commands run at the boundaries of an
//! execution and of each stage, given the execution's facts in their
//! environment, each with a timeout, each journaled. A failing pre-hook stops
//! the execution before the boundary it guards (cleanly: before the first
//! stage nothing has been touched); a failing post-hook is reported and
//! journaled, never fatal.
//!
//! These are not the per-member host hooks of the topology (`stop`, `start`,
//! `rewind` in `[stores.members.hooks]`), which controllers run to act on a
//! server; those live with the controllers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Default time a hook may run.
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 60_000;

/// Where a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Before the first stage of a new execution; failing stops it with
    /// nothing touched.
    PreExecution,
    /// After the execution ended (succeeded or failed); never fatal.
    PostExecution,
    /// Before every stage; failing stops before the stage is issued.
    PreStage,
    /// After every stage's checkpoint passed; never fatal.
    PostStage,
}

impl HookPoint {
    /// Whether a failure stops the execution.
    pub fn fatal(self) -> bool {
        matches!(self, HookPoint::PreExecution | HookPoint::PreStage)
    }

    /// The name used in the policy file and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::PreExecution => "pre_execution",
            HookPoint::PostExecution => "post_execution",
            HookPoint::PreStage => "pre_stage",
            HookPoint::PostStage => "post_stage",
        }
    }
}

/// One `[[hooks]]` entry of the safety policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// Name used in the journal and messages (default: the command).
    #[serde(default)]
    pub name: Option<String>,
    /// Where it runs.
    pub at: HookPoint,
    /// Run by `sh -c`, with the execution's facts as `SWITCHYARD_*`
    /// environment variables.
    pub command: String,
    /// Killed (its whole process group) after this many milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_HOOK_TIMEOUT_MS
}

impl HookSpec {
    /// The hook's name in messages.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.command)
    }

    /// Problems a parser cannot see, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        if self.command.trim().is_empty() {
            out.push(("command".into(), "the command is empty".into()));
        }
        if self.timeout_ms == 0 {
            out.push((
                "timeout_ms".into(),
                "a hook needs a timeout of at least 1 ms".into(),
            ));
        }
        out
    }
}

/// The facts of an execution a hook or a gate command is given, as
/// `SWITCHYARD_*` environment variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// `SWITCHYARD_EXECUTION_ID`.
    pub execution_id: String,
    /// `SWITCHYARD_KIND` (`failover`, `run`, `drill-out`, `rollback`, …).
    pub kind: String,
    /// `SWITCHYARD_MODE` (`planned`, `forced`, …).
    pub mode: String,
    /// `SWITCHYARD_FROM_REGIONS`: where the moved stores were primary when
    /// the execution started, comma-separated.
    pub from_regions: Vec<String>,
    /// `SWITCHYARD_TO_REGION`.
    pub to_region: String,
    /// `SWITCHYARD_STORES`: the stores the plan changes, comma-separated.
    pub stores: Vec<String>,
}

impl Facts {
    /// The environment for a hook at `point` of stage `stage` (0-based, with
    /// its name), or of the execution's end with `status`.
    pub fn env(
        &self,
        point: &str,
        stage: Option<(usize, &str)>,
        status: Option<&str>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("SWITCHYARD_EXECUTION_ID".into(), self.execution_id.clone());
        env.insert("SWITCHYARD_KIND".into(), self.kind.clone());
        env.insert("SWITCHYARD_MODE".into(), self.mode.clone());
        env.insert(
            "SWITCHYARD_FROM_REGIONS".into(),
            self.from_regions.join(","),
        );
        env.insert("SWITCHYARD_TO_REGION".into(), self.to_region.clone());
        env.insert("SWITCHYARD_STORES".into(), self.stores.join(","));
        env.insert("SWITCHYARD_HOOK_POINT".into(), point.into());
        if let Some((i, name)) = stage {
            env.insert("SWITCHYARD_STAGE".into(), (i + 1).to_string());
            env.insert("SWITCHYARD_STAGE_NAME".into(), name.into());
        }
        if let Some(s) = status {
            env.insert("SWITCHYARD_STATUS".into(), s.into());
        }
        env
    }
}

/// What a hook run recorded (journaled as `type = "hook"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HookRecord {
    /// When it ended.
    pub at_ms: u64,
    /// Where it ran.
    pub point: HookPoint,
    /// The hook's name (or command).
    pub name: String,
    /// Stage, for stage hooks (0-based in memory, written from 1 like every
    /// stage number).
    #[serde(
        default,
        with = "crate::journal::one_based::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<usize>")]
    pub stage: Option<usize>,
    /// Exit status; `None` when killed or not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// Killed at its timeout.
    #[serde(default)]
    pub timed_out: bool,
    /// Wall time.
    pub duration_ms: u64,
    /// Exit status 0 in time.
    pub passed: bool,
    /// What happened, with the last line of its stderr on failure.
    pub detail: String,
}

/// How a command run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRun {
    /// Exit status; `None` when killed by a signal or at the timeout.
    pub exit: Option<i32>,
    /// Killed at the timeout.
    pub timed_out: bool,
    /// Wall time.
    pub duration: Duration,
    /// Standard output (at most 64 KiB).
    pub stdout: String,
    /// Last non-empty line of standard error (at most 200 characters).
    pub stderr_tail: String,
    /// Could not be started at all.
    pub spawn_error: Option<String>,
}

impl CommandRun {
    /// One line: `exit 0 in 12 ms`, `timed out after 500 ms (killed)`, ….
    pub fn describe(&self, timeout_ms: u64) -> String {
        let ms = self.duration.as_millis();
        let mut s = if let Some(e) = &self.spawn_error {
            format!("could not be started: {e}")
        } else if self.timed_out {
            format!("timed out after {timeout_ms} ms (its process group was killed)")
        } else {
            match self.exit {
                Some(c) => format!("exit {c} in {ms} ms"),
                None => format!("killed by a signal after {ms} ms"),
            }
        };
        if !self.stderr_tail.is_empty() && self.exit != Some(0) {
            s.push_str(&format!("; stderr: {}", self.stderr_tail));
        }
        s
    }
}

/// Run `command` with `sh -c` in a process group of its own, with `env`
/// added, killing the whole group at `timeout` (a hook's children must not
/// outlive it and hold its pipes open).
pub async fn run_command(
    command: &str,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> CommandRun {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return CommandRun {
                exit: None,
                timed_out: false,
                duration: started.elapsed(),
                stdout: String::new(),
                stderr_tail: String::new(),
                spawn_error: Some(e.to_string()),
            }
        }
    };
    let pid = child.id();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read_all = async {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let ro = async {
            if let Some(s) = out.as_mut() {
                let _ = s.take(64 * 1024).read_to_end(&mut o).await;
            }
        };
        let re = async {
            if let Some(s) = err.as_mut() {
                let _ = s.take(64 * 1024).read_to_end(&mut e).await;
            }
        };
        tokio::join!(ro, re);
        let status = child.wait().await;
        (o, e, status)
    };
    match tokio::time::timeout(timeout, read_all).await {
        Ok((o, e, status)) => CommandRun {
            exit: status.ok().and_then(|s| s.code()),
            timed_out: false,
            duration: started.elapsed(),
            stdout: String::from_utf8_lossy(&o).into_owned(),
            stderr_tail: last_line(&e),
            spawn_error: None,
        },
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid).await;
            }
            CommandRun {
                exit: None,
                timed_out: true,
                duration: started.elapsed(),
                stdout: String::new(),
                stderr_tail: String::new(),
                spawn_error: None,
            }
        }
    }
}

/// SIGKILL the process group `pgid` (the hook's `sh` and everything it started).
async fn kill_group(pgid: u32) {
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    line.chars().take(200).collect()
}

/// Run one hook and say what happened.
pub async fn run_hook(
    spec: &HookSpec,
    env: &BTreeMap<String, String>,
    stage: Option<usize>,
) -> HookRecord {
    let run = run_command(&spec.command, env, Duration::from_millis(spec.timeout_ms)).await;
    let passed = run.exit == Some(0) && !run.timed_out;
    HookRecord {
        at_ms: crate::journal::now_ms(),
        point: spec.at,
        name: spec.label().to_string(),
        stage,
        exit: run.exit,
        timed_out: run.timed_out,
        duration_ms: run.duration.as_millis() as u64,
        passed,
        detail: run.describe(spec.timeout_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            execution_id: "x1".into(),
            kind: "failover".into(),
            mode: "planned".into(),
            from_regions: vec!["east".into()],
            to_region: "west".into(),
            stores: vec!["orders".into(), "users".into()],
        }
    }

    #[tokio::test]
    async fn a_hook_sees_the_facts_and_a_failure_keeps_its_stderr() {
        let env = facts().env("pre_stage", Some((1, "promote orders")), None);
        let r = run_command(
            "echo \"$SWITCHYARD_EXECUTION_ID $SWITCHYARD_FROM_REGIONS>$SWITCHYARD_TO_REGION $SWITCHYARD_STORES $SWITCHYARD_STAGE $SWITCHYARD_STAGE_NAME\"",
            &env,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(r.exit, Some(0));
        assert_eq!(
            r.stdout.trim(),
            "x1 east>west orders,users 2 promote orders"
        );
        let r = run_command(
            "echo first >&2; echo 'disk full' >&2; exit 3",
            &env,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(r.exit, Some(3));
        assert_eq!(r.describe(1000).split(" in ").next(), Some("exit 3"));
        assert!(r.describe(1000).ends_with("stderr: disk full"));
    }

    #[tokio::test]
    async fn a_hook_that_outlives_its_timeout_is_killed_with_its_children() {
        let spec = HookSpec {
            name: Some("slow".into()),
            at: HookPoint::PreExecution,
            // The background child holds stdout open: only killing the
            // group ends the read.
            command: "sleep 300 & sleep 300".into(),
            timeout_ms: 300,
        };
        let r = run_hook(&spec, &BTreeMap::new(), None).await;
        assert!(r.timed_out && !r.passed, "{r:?}");
        assert_eq!(
            r.detail,
            "timed out after 300 ms (its process group was killed)"
        );
    }
}
