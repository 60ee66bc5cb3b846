//! Host commands declared per member in the topology (`stop`,
//! `start_as_standby`, `rewind`, `start`, which `Unfence` uses to bring
//! back an old primary the fence had stopped, `extra.controldata`, which
//! prints `pg_controldata` of a stopped member, and
//! `extra.stop_controldata`, which does `stop` and then prints what
//! `controldata` prints: one process on the fence's path instead of two).
//! They are templates: the
//! placeholders below are filled in and the result runs under `sh -c` with
//! the hook timeout. Values substituted are validated member names and
//! `host:port` parts, so they need no shell quoting.
//!
//! | placeholder | value |
//! |---|---|
//! | `{member}` `{host}` `{port}` | the member the hook acts on |
//! | `{store}` | store name |
//! | `{primary_member}` `{primary_host}` `{primary_port}` | the primary to follow (empty for a fenced start: recovery without an upstream) |
//!
//! Each hook runs in a process group of its own; when it times out (or the
//! operation running it is cancelled) the whole group is killed, so a
//! `pg_rewind` a hook started cannot outlive it. (A daemon that leaves the
//! group with `setsid`, as `pg_ctl start` makes the postmaster do, is not
//! killed: starting one is what a start hook is for.)
//!
//! One member's hooks never run twice at once: each takes an exclusive
//! `flock` on the member's lock file, and the hook's processes get that file
//! as their standard input, so the lock is held for as long as the hook *or
//! anything it started* still runs — also after the coordinator that ran it
//! died, so a resumed coordinator waits for a rewind its predecessor left
//! running instead of starting a second one. Lock files live in
//! `$TMPDIR/switchyard-hooks-<uid>/`, one per member address. Waiting for
//! the lock counts against the hook's timeout.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use switchyard_controller::{Error, ErrorKind, Result};
use switchyard_topology::Member;
use tokio::time::Instant;

const PLACEHOLDERS: &[&str] = &[
    "member",
    "host",
    "port",
    "store",
    "primary_member",
    "primary_host",
    "primary_port",
];

/// Which hook to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Stop,
    /// Start the member as it is configured (what `Unfence` needs for an
    /// old primary that the fence stopped).
    Start,
    StartAsStandby,
    Rewind,
    /// Print `pg_controldata` of the (stopped) member on stdout: the fence
    /// reads the old primary's final position from it (see fence.rs).
    ControlData,
    /// [`Hook::Stop`], then what [`Hook::ControlData`] prints, in one
    /// process: the deferred fence's stop, where the shutdown and the read
    /// of its result are the whole write outage before the promotion.
    StopControlData,
}

/// The `extra` hook name of [`Hook::ControlData`].
pub(crate) const CONTROLDATA: &str = "controldata";

/// The `extra` hook name of [`Hook::StopControlData`].
pub(crate) const STOP_CONTROLDATA: &str = "stop_controldata";

impl Hook {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hook::Stop => "stop",
            Hook::Start => "start",
            Hook::StartAsStandby => "start_as_standby",
            Hook::Rewind => "rewind",
            Hook::ControlData => "extra.controldata",
            Hook::StopControlData => "extra.stop_controldata",
        }
    }

    fn template(self, m: &Member) -> Option<&str> {
        match self {
            Hook::Stop => m.hooks.stop.as_deref(),
            Hook::Start => m.hooks.start.as_deref(),
            Hook::StartAsStandby => m.hooks.start_as_standby.as_deref(),
            Hook::Rewind => m.hooks.rewind.as_deref(),
            Hook::ControlData => m.hooks.extra.get(CONTROLDATA).map(String::as_str),
            Hook::StopControlData => m.hooks.extra.get(STOP_CONTROLDATA).map(String::as_str),
        }
    }
}

/// Reject unknown or unterminated placeholders at build time.
pub(crate) fn validate_template(t: &str) -> std::result::Result<(), String> {
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let j = after
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder in {t:?}"))?;
        let name = &after[..j];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[j + 1..];
    }
    Ok(())
}

pub(crate) fn render(t: &str, store: &str, m: &Member, primary: Option<&Member>) -> String {
    let (pm, ph, pp) = match primary {
        Some(p) => (
            p.name.clone(),
            p.hostname().unwrap_or_default().to_string(),
            p.port().map(|x| x.to_string()).unwrap_or_default(),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let empty_or = |s: String| if s.is_empty() { "''".to_string() } else { s };
    t.replace("{member}", &m.name)
        .replace("{host}", m.hostname().unwrap_or_default())
        .replace(
            "{port}",
            &m.port().map(|x| x.to_string()).unwrap_or_default(),
        )
        .replace("{store}", store)
        .replace("{primary_member}", &empty_or(pm))
        .replace("{primary_host}", &empty_or(ph))
        .replace("{primary_port}", &empty_or(pp))
}

/// Where member lock files live: private to this user, so another user
/// cannot hold (or plant) one.
fn lock_dir() -> std::io::Result<PathBuf> {
    // /proc/self is owned by the effective uid; no unsafe geteuid().
    let uid = std::fs::metadata("/proc/self")?.uid();
    let dir = std::env::temp_dir().join(format!("switchyard-hooks-{uid}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let owner = std::fs::metadata(&dir)?.uid();
    if owner != uid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} belongs to uid {owner}, not {uid}", dir.display()),
        ));
    }
    Ok(dir)
}

/// The lock file of one member: named after the store, the member and its
/// address (the address is what identifies the host's data directory).
fn lock_path(store: &str, m: &Member) -> std::io::Result<PathBuf> {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let addr = format!(
        "{}_{}",
        m.hostname().unwrap_or_default(),
        m.port().map(|p| p.to_string()).unwrap_or_default()
    );
    Ok(lock_dir()?.join(format!(
        "{}.{}@{}.lock",
        safe(store),
        safe(&m.name),
        safe(&addr)
    )))
}

/// Take the member's lock, waiting until `deadline`. The returned file
/// holds it (and is handed to the hook as stdin, see the module docs).
async fn lock_member(
    store: &str,
    hook: Hook,
    m: &Member,
    deadline: Instant,
    timeout: Duration,
) -> Result<File> {
    let hook_err = |what: String| {
        Error::new(
            ErrorKind::Hook,
            store,
            format!("hook {}: {what}", hook.name()),
        )
        .with_member(&m.name)
    };
    let path = lock_path(store, m).map_err(|e| hook_err(format!("no lock directory: {e}")))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| hook_err(format!("cannot open lock {}: {e}", path.display())))?;
    loop {
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => return Ok(file),
            Ok(false) => {}
            Err(e) => return Err(hook_err(format!("cannot lock {}: {e}", path.display()))),
        }
        if Instant::now() >= deadline {
            return Err(hook_err(format!(
                "not started: another hook for this member (or a process it started) still \
                 holds {} after {timeout:?}; a member's hooks never run twice at once",
                path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Kills a hook's process group when dropped, unless the hook ended by
/// itself: on a timeout, and when the operation running it is cancelled.
struct GroupGuard {
    pgid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

/// SIGKILL every process of a group, through the shell's `kill` builtin (no
/// unsafe `kill(2)` here).
fn kill_group(pgid: u32) {
    let r = std::process::Command::new("sh")
        .args([
            "-c",
            "kill -s KILL -- \"-$0\" 2>/dev/null",
            &pgid.to_string(),
        ])
        .stdin(Stdio::null())
        .status();
    if let Err(e) = r {
        tracing::error!(pgid, error = %e, "could not kill a timed-out hook's process group");
    }
}

/// `cmdline` as an argument vector when `sh -c` would run it as exactly
/// that: words of characters the shell gives no meaning to and
/// single-quoted strings (taken literally, as the shell does), separated by
/// blanks; the first a path (with a `/`: no builtin, function, keyword or
/// `PATH` search) and no assignment. `None`: the shell runs it.
fn plain_argv(cmdline: &str) -> Option<Vec<String>> {
    let quiet = |c: char| c.is_ascii_alphanumeric() || "_./:@%+,-=".contains(c);
    let mut argv = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = cmdline.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => argv.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        q => w.push(q),
                    }
                }
            }
            c if quiet(c) => word.get_or_insert_with(String::new).push(c),
            _ => return None,
        }
    }
    argv.extend(word);
    let first = argv.first()?;
    (first.contains('/') && !first.contains('=')).then_some(argv)
}

/// Run one hook for `m`; `primary` fills the `{primary_*}` placeholders.
/// Returns what the hook printed on stdout.
pub(crate) async fn run(
    store: &str,
    hook: Hook,
    m: &Member,
    primary: Option<&Member>,
) -> Result<String> {
    let template = hook.template(m).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            store,
            format!(
                "member has no hooks.{} command in the topology",
                hook.name()
            ),
        )
        .with_member(&m.name)
    })?;
    let cmdline = render(template, store, m, primary);
    let timeout = Duration::from_millis(m.hooks.timeout_ms.unwrap_or(60_000));
    let deadline = Instant::now() + timeout;
    let lock = lock_member(store, hook, m, deadline, timeout).await?;
    let could_not_run = |e: std::io::Error| {
        Error::new(
            ErrorKind::Hook,
            store,
            format!("hook {} could not run", hook.name()),
        )
        .with_member(&m.name)
        .with_source(e)
    };
    tracing::info!(store, member = %m.name, hook = hook.name(), "running hook");
    let spawn = |argv: &[String]| {
        tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::from(lock.try_clone()?))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    };
    // A plain command is what `sh -c` would run anyway, minus the shell's
    // own process (dash forks before it execs): on the fence's path that is
    // one process start less before the stop. Anything the direct start
    // cannot run (not found, not executable, a script without `#!`) goes
    // through `sh -c`, which fails, or runs it, as it always did.
    let child = match plain_argv(&cmdline).map(|argv| spawn(&argv)) {
        Some(Ok(child)) => child,
        _ => spawn(&["sh".into(), "-c".into(), cmdline.clone()]).map_err(could_not_run)?,
    };
    // The group's id is its leader's pid: `sh`, or the command itself.
    let mut group = GroupGuard { pgid: child.id() };
    let out = match tokio::time::timeout_at(deadline, child.wait_with_output()).await {
        Err(_) => {
            drop(group);
            return Err(Error::new(
                ErrorKind::Hook,
                store,
                format!(
                    "hook {} timed out after {timeout:?}; its process group was killed",
                    hook.name()
                ),
            )
            .with_member(&m.name));
        }
        Ok(Err(e)) => return Err(could_not_run(e)),
        Ok(Ok(out)) => {
            // It ended by itself: what it left running (a daemon) stays.
            group.pgid = None;
            out
        }
    };
    drop(lock);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Error::new(
            ErrorKind::Hook,
            store,
            format!(
                "hook {} failed ({}): {}",
                hook.name(),
                out.status,
                tail.trim()
            ),
        )
        .with_member(&m.name));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, host: &str) -> Member {
        toml::from_str::<Member>(&format!(
            "name = \"{name}\"\nhost = \"{host}\"\nregion = \"r\""
        ))
        .unwrap()
    }

    /// A member whose `stop` hook is `stop`, with `timeout_ms`.
    fn with_stop(name: &str, port: u16, stop: &str, timeout_ms: u64) -> Member {
        toml::from_str::<Member>(&format!(
            "name = \"{name}\"\nhost = \"127.0.0.1:{port}\"\nregion = \"r\"\n\
             [hooks]\nstop = {stop:?}\ntimeout_ms = {timeout_ms}\n"
        ))
        .unwrap()
    }

    /// Alive and not a zombie waiting to be reaped.
    fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()))
            .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
    }

    #[tokio::test]
    async fn a_timed_out_hook_leaves_no_child_running() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // The hook starts a child (as a rewind hook starts pg_rewind) and
        // waits for it, far beyond the hook's timeout.
        let m = with_stop(
            "a",
            1,
            &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
            500,
        );
        times_out_leaving_no_child(&m, &pidfile).await;
    }

    /// `m`'s stop hook starts a child that writes its pid to `pidfile` and
    /// outlives the hook's timeout: the hook times out, the child is gone.
    async fn times_out_leaving_no_child(m: &Member, pidfile: &std::path::Path) {
        let err = run("hooks-timeout", Hook::Stop, m, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out"), "{err}");
        let pid: u32 = std::fs::read_to_string(pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered at once; give the kernel a moment to act.
        for _ in 0..500 {
            if !running(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the hook's child {pid} still runs after its hook timed out");
    }

    #[tokio::test]
    async fn one_members_hooks_never_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let hook = format!(
            "echo start >> {l}; sleep 0.3; echo end >> {l}",
            l = log.display()
        );
        let m = with_stop("b", 2, &hook, 30_000);
        let (a, b) = tokio::join!(
            run("hooks-overlap", Hook::Stop, &m, None),
            run("hooks-overlap", Hook::Stop, &m, None)
        );
        a.unwrap();
        b.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "start\nend\nstart\nend\n"
        );
    }

    #[tokio::test]
    async fn the_lock_outlives_a_dead_coordinator_while_its_hook_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let m = with_stop("c", 3, &format!("echo hook >> {}", log.display()), 30_000);
        // A coordinator took the member's lock and ran a hook, then died:
        // only the hook's process (holding the lock file as stdin) is left.
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path("hooks-orphan", &m).unwrap())
            .unwrap();
        assert!(fs4::fs_std::FileExt::try_lock_exclusive(&lock).unwrap());
        let mut orphan = std::process::Command::new("sh")
            .args(["-c", &format!("sleep 1; echo orphan >> {}", log.display())])
            .stdin(Stdio::from(lock.try_clone().unwrap()))
            .spawn()
            .unwrap();
        drop(lock);
        run("hooks-orphan", Hook::Stop, &m, None).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "orphan\nhook\n",
            "the new hook waited for the old one"
        );
        orphan.wait().unwrap();
    }

    /// An executable script at `dir/name` with `body` (no `#!` when
    /// `shebang` is false).
    fn script(dir: &std::path::Path, name: &str, shebang: bool, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        let head = if shebang { "#!/bin/sh\n" } else { "" };
        std::fs::write(&path, format!("{head}{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn only_plain_commands_skip_the_shell() {
        let argv = |v: &[&str]| Some(v.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        assert_eq!(
            plain_argv("/lab/pgctl.sh stop pg-east-1"),
            argv(&["/lab/pgctl.sh", "stop", "pg-east-1"])
        );
        assert_eq!(
            plain_argv("  ./x  a=b\t--port=5432 "),
            argv(&["./x", "a=b", "--port=5432"])
        );
        // The lab's form: a quoted path, and `''` for an empty primary.
        assert_eq!(
            plain_argv("'/tmp/a b/pgctl.sh' start-standby m1 '' x'$y'z"),
            argv(&["/tmp/a b/pgctl.sh", "start-standby", "m1", "", "x$yz"])
        );
        for shell in [
            "pgctl stop a",
            "'pgctl' stop a",
            "A=1 /x stop",
            "'/x stop",
            "/x a; /y",
            "/x $HOME",
            "/x a > /dev/null",
            "/x *",
            "/x ~/a",
            "/x a\n/y",
            "/x \"a b\"",
            "/x a\\ b",
            "",
        ] {
            assert_eq!(plain_argv(shell), None, "{shell:?}");
        }
    }

    #[tokio::test]
    async fn a_plain_hook_runs_as_sh_c_would_without_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let o = out.display();
        // What the hook sees: its arguments, and who started it.
        let s = script(
            dir.path(),
            "hook",
            true,
            &format!("echo \"$@ $PPID\" > {o}"),
        );
        let m = with_stop("d", 4, &format!("{s} stop {{member}}"), 30_000);
        run("hooks-plain", Hook::Stop, &m, None).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("stop d {}\n", std::process::id()),
            "started by the coordinator itself, with the words as arguments"
        );
        // A script without `#!` is one only a shell runs: still run.
        let s = script(dir.path(), "bare", false, &format!("echo bare > {o}"));
        let m = with_stop("d", 4, &s, 30_000);
        run("hooks-plain", Hook::Stop, &m, None).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "bare\n");
        // A command that does not exist fails as a hook, as under `sh -c`.
        let m = with_stop(
            "d",
            4,
            &dir.path().join("nope").display().to_string(),
            30_000,
        );
        let err = run("hooks-plain", Hook::Stop, &m, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Hook, "{err}");
        assert!(err.to_string().contains("failed"), "{err}");
    }

    #[tokio::test]
    async fn a_timed_out_plain_hook_leaves_no_child_running() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let s = script(
            dir.path(),
            "slow",
            true,
            &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
        );
        let m = with_stop("e", 5, &s, 500);
        times_out_leaving_no_child(&m, &pidfile).await;
    }

    #[test]
    fn templates_validate() {
        assert!(validate_template("pgctl stop {member} {primary_host}").is_ok());
        assert!(validate_template("x {nope}").unwrap_err().contains("nope"));
        assert!(validate_template("x {member").is_err());
    }

    #[test]
    fn renders_primary_or_empty() {
        let m = member("a", "10.0.0.1:5432");
        let p = member("b", "10.0.0.2:5433");
        let t = "s {member} {host} {port} {primary_member} {primary_host}:{primary_port}";
        assert_eq!(
            render(t, "pg", &m, Some(&p)),
            "s a 10.0.0.1 5432 b 10.0.0.2:5433"
        );
        assert_eq!(render(t, "pg", &m, None), "s a 10.0.0.1 5432 '' '':''");
    }
}
