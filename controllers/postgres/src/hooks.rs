//! Host commands declared per member in the topology (`stop`,
//! `start_as_standby`, `rewind`, and `start`, which `Unfence` uses to bring
//! back an old primary the fence had stopped). They are templates: the
//! placeholders below are filled in and the result runs under `sh -c` with
//! the hook timeout. Values substituted are validated member names and
//! `host:port` parts, so they need no shell quoting.
//!
//! | placeholder | value |
//! |---|---|
//! | `{member}` `{host}` `{port}` | the member the hook acts on |
//! | `{store}` | store name |
//! | `{primary_member}` `{primary_host}` `{primary_port}` | the primary to follow (empty for a fenced start: recovery without an upstream) |

use std::time::Duration;
use switchyard_controller::{Error, ErrorKind, Result};
use switchyard_topology::Member;

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
}

impl Hook {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hook::Stop => "stop",
            Hook::Start => "start",
            Hook::StartAsStandby => "start_as_standby",
            Hook::Rewind => "rewind",
        }
    }

    fn template(self, m: &Member) -> Option<&str> {
        match self {
            Hook::Stop => m.hooks.stop.as_deref(),
            Hook::Start => m.hooks.start.as_deref(),
            Hook::StartAsStandby => m.hooks.start_as_standby.as_deref(),
            Hook::Rewind => m.hooks.rewind.as_deref(),
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

/// Run one hook for `m`; `primary` fills the `{primary_*}` placeholders.
pub(crate) async fn run(
    store: &str,
    hook: Hook,
    m: &Member,
    primary: Option<&Member>,
) -> Result<()> {
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
    tracing::info!(store, member = %m.name, hook = hook.name(), "running hook");
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmdline)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(timeout, child).await {
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Hook,
                store,
                format!("hook {} timed out after {timeout:?}", hook.name()),
            )
            .with_member(&m.name))
        }
        Ok(Err(e)) => {
            return Err(Error::new(
                ErrorKind::Hook,
                store,
                format!("hook {} could not run", hook.name()),
            )
            .with_member(&m.name)
            .with_source(e))
        }
        Ok(Ok(out)) => out,
    };
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
    Ok(())
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
