//! Deliberate crashes at operation boundaries, for crash-safety tests.
//!
//! `SWITCHYARD_CRASH_AT=<boundary>:<n>` makes the process abort (as abruptly
//! as `kill -9`: no destructors, no flushing) at one boundary:
//! - `before:<seq>` — intent `seq` is journaled, the operation not issued;
//! - `after:<seq>` — the operation was carried out, its outcome not journaled;
//! - `outcome:<seq>` — the outcome of `seq` is journaled;
//! - `checkpoint:<stage>` — the checkpoint of 1-based `stage` passed and is journaled.

/// Environment variable read by the `switchyard` binary.
pub const ENV: &str = "SWITCHYARD_CRASH_AT";

/// A boundary between journaling and acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// After the intent is durable, before the operation is issued.
    BeforeIssue,
    /// After the operation returned, before its outcome is journaled.
    AfterIssue,
    /// After the outcome is durable.
    AfterOutcome,
    /// After a checkpoint passed and is durable.
    AfterCheckpoint,
}

/// Where to crash, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failpoint {
    at: Option<(Boundary, u64)>,
}

impl Failpoint {
    /// Never crash.
    pub fn none() -> Self {
        Failpoint { at: None }
    }

    /// Crash at `boundary` number `n`.
    pub fn at(boundary: Boundary, n: u64) -> Self {
        Failpoint {
            at: Some((boundary, n)),
        }
    }

    /// Parse `before:3`, `after:3`, `outcome:3`, `checkpoint:2`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (b, n) = s
            .split_once(':')
            .ok_or_else(|| format!("{ENV}: expected <boundary>:<n>, got `{s}`"))?;
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{ENV}: `{n}` is not a number"))?;
        let b = match b {
            "before" => Boundary::BeforeIssue,
            "after" => Boundary::AfterIssue,
            "outcome" => Boundary::AfterOutcome,
            "checkpoint" => Boundary::AfterCheckpoint,
            other => {
                return Err(format!(
                    "{ENV}: unknown boundary `{other}` (before, after, outcome, checkpoint)"
                ))
            }
        };
        Ok(Failpoint::at(b, n))
    }

    /// Read [`ENV`]; unset means never crash.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(ENV) {
            Ok(s) if !s.is_empty() => Failpoint::parse(&s),
            _ => Ok(Failpoint::none()),
        }
    }

    /// Abort the process if this is the configured boundary.
    pub fn hit(&self, boundary: Boundary, n: u64) {
        if self.at == Some((boundary, n)) {
            eprintln!("switchyard: failpoint {boundary:?}:{n} reached, aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            Failpoint::parse("after:4").unwrap(),
            Failpoint::at(Boundary::AfterIssue, 4)
        );
        assert!(Failpoint::parse("sideways:1").is_err());
        assert!(Failpoint::parse("before").is_err());
        assert!(Failpoint::parse("before:x").is_err());
    }
}
