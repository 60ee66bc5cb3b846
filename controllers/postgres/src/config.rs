//! Building a controller from the topology: validation happens once, in
//! [`PostgresBuilder::build`], so operations never meet a half-valid config.

use crate::hooks::validate_template;
use crate::tls::Tls;
use crate::PostgresController;
use std::fmt;
use std::time::Duration;
use switchyard_controller::{Error, ErrorKind, LastKnown, Result};
use switchyard_topology::{Store, StoreKind};

/// A password read from the environment. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the controller logs in to every member of one store.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    pub(crate) user: String,
    pub(crate) database: String,
    pub(crate) password: Option<Secret>,
    pub(crate) password_env: Option<String>,
    pub(crate) tls: Tls,
    pub(crate) connect_timeout: Duration,
}

impl fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnSettings")
            .field("user", &self.user)
            .field("database", &self.database)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Timings of the controller's own waits. Polls are tight on purpose: the
/// write outage of a switchover is fence + catch-up + promote, and each poll
/// interval adds directly to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) poll: Duration,
    pub(crate) promote_timeout: Duration,
    pub(crate) follow_timeout: Duration,
    pub(crate) start_timeout: Duration,
}

/// Builds a [`PostgresController`] from a topology [`Store`].
#[derive(Debug)]
pub struct PostgresBuilder {
    store: Store,
    password: Option<Secret>,
    timing: Timing,
    last_known: LastKnown,
}

impl PostgresBuilder {
    pub(crate) fn new(store: &Store) -> Self {
        PostgresBuilder {
            store: store.clone(),
            password: None,
            timing: Timing {
                poll: Duration::from_millis(2),
                promote_timeout: Duration::from_secs(60),
                follow_timeout: Duration::from_secs(60),
                start_timeout: Duration::from_secs(60),
            },
            last_known: LastKnown::none(),
        }
    }

    /// Keep the last-known state (what every observation with a reachable
    /// primary saw) in `dir/last-known/<store>.json`, so a forced failover
    /// decided by a later process still has evidence for its loss estimate.
    /// Without it only this instance's own observations count.
    pub fn state_dir(mut self, dir: &std::path::Path) -> Self {
        self.last_known = LastKnown::in_dir(dir, &self.store.name);
        self
    }

    /// Use this password instead of reading `connection.password_env`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret(password.into()));
        self
    }

    /// Interval of the tight polls (replay position, end of recovery,
    /// server start). Default 2 ms.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.timing.poll = poll;
        self
    }

    /// How long a promotion may take before it is reported as timed out
    /// (default 60 s).
    pub fn promote_timeout(mut self, t: Duration) -> Self {
        self.timing.promote_timeout = t;
        self
    }

    /// How long re-pointed/rejoined members may take to stream from the
    /// new primary (default 60 s).
    pub fn follow_timeout(mut self, t: Duration) -> Self {
        self.timing.follow_timeout = t;
        self
    }

    /// Validate the store and build the controller.
    pub fn build(self) -> Result<PostgresController> {
        let s = &self.store;
        let cfg = |msg: String| Error::new(ErrorKind::Config, &s.name, msg);
        if s.kind != StoreKind::Postgres {
            return Err(cfg(format!(
                "store kind is {}, the postgres controller needs kind = \"postgres\"",
                s.kind
            )));
        }
        if s.members.is_empty() {
            return Err(cfg("store has no members".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for m in &s.members {
            if !seen.insert(&m.name) {
                return Err(cfg(format!("member name {} appears twice", m.name)));
            }
            // Names and hosts are substituted into hook shell commands.
            let safe = |v: &str| {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-:[]".contains(c))
            };
            if !safe(&m.name) {
                return Err(cfg(format!(
                    "member name {:?} may only contain letters, digits, '.', '_' and '-'",
                    m.name
                ))
                .with_member(&m.name));
            }
            let host = m.host.as_deref().ok_or_else(|| {
                cfg("members.host is required (host:port)".into()).with_member(&m.name)
            })?;
            if !safe(host) || m.port().is_none() || m.hostname().is_none_or(str::is_empty) {
                return Err(cfg(format!(
                    "members.host {host:?} must be host:port with a numeric port"
                ))
                .with_member(&m.name));
            }
            if m.region.is_empty() {
                return Err(cfg("members.region is empty".into()).with_member(&m.name));
            }
            for (hook, t) in [
                ("stop", &m.hooks.stop),
                ("start", &m.hooks.start),
                ("start_as_standby", &m.hooks.start_as_standby),
                ("rewind", &m.hooks.rewind),
                (
                    "extra.controldata",
                    &m.hooks.extra.get(crate::hooks::CONTROLDATA).cloned(),
                ),
                (
                    "extra.stop_controldata",
                    &m.hooks.extra.get(crate::hooks::STOP_CONTROLDATA).cloned(),
                ),
            ] {
                if let Some(t) = t {
                    validate_template(t)
                        .map_err(|e| cfg(format!("hooks.{hook}: {e}")).with_member(&m.name))?;
                }
            }
            // Only the deferred fence (turned on by `controldata`, which
            // every later reader of the fence evidence needs) runs it.
            if m.hooks.extra.contains_key(crate::hooks::STOP_CONTROLDATA)
                && !m.hooks.extra.contains_key(crate::hooks::CONTROLDATA)
            {
                return Err(cfg(
                    "hooks.extra.stop_controldata needs hooks.extra.controldata too \
                     (resumed and later observations read the fence evidence through it)"
                        .into(),
                )
                .with_member(&m.name));
            }
        }
        let c = &s.connection;
        let tls = Tls::from_connection(c).map_err(cfg)?;
        let password = match (self.password, &c.password_env) {
            (Some(p), _) => Some(p),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) => Some(Secret(v)),
                Err(_) => {
                    return Err(cfg(format!(
                        "connection.password_env names {var}, which is not set"
                    )))
                }
            },
            (None, None) => None,
        };
        let conn = ConnSettings {
            user: c.user.clone().unwrap_or_else(|| "postgres".into()),
            database: c.database.clone().unwrap_or_else(|| "postgres".into()),
            password,
            password_env: c.password_env.clone(),
            tls,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms.unwrap_or(2000)),
        };
        Ok(PostgresController::new(
            self.store,
            conn,
            self.timing,
            self.last_known,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_controller::Controller;

    fn store(extra: &str) -> Store {
        let text = format!(
            r#"
name = "pg"
kind = "postgres"
{extra}
[[members]]
name = "a"
host = "127.0.0.1:5432"
region = "east"
[members.hooks]
stop = "pgctl stop {{member}}"
start_as_standby = "pgctl start {{member}} {{primary_host}} {{primary_port}}"
[[members]]
name = "b"
host = "127.0.0.1:5433"
region = "west"
"#
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn builds_and_redacts_password() {
        std::env::set_var("SWITCHYARD_TEST_PG_PW", "hunter2-secret");
        let s = store("[connection]\npassword_env = \"SWITCHYARD_TEST_PG_PW\"\ntls = \"disable\"");
        let c = PostgresController::from_store(&s).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert!(dbg.contains("SWITCHYARD_TEST_PG_PW"));
        assert_eq!(c.store(), "pg");
        // Nor is it written into a standby's primary_conninfo (the server
        // logs that setting in full when it changes).
        let b = s.member("b").unwrap();
        assert!(!c.conninfo_for(b, "a").contains("hunter2"));
        let dbg = format!(
            "{:?}",
            PostgresController::builder(&s).password("pw-in-builder")
        );
        assert!(!dbg.contains("pw-in-builder"), "{dbg}");
    }

    fn config_err(s: &Store) -> Error {
        let e = PostgresController::from_store(s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert_eq!(e.store(), "pg");
        e
    }

    #[test]
    fn rejects_bad_configuration() {
        let e = config_err(&store(
            "[connection]\npassword_env = \"SWITCHYARD_TEST_UNSET_VAR\"",
        ));
        assert!(e.message().contains("SWITCHYARD_TEST_UNSET_VAR"), "{e}");
        let e = config_err(&store(
            "[connection]\ntls = \"require\"\ntls_ca_file = \"/nonexistent/ca.pem\"",
        ));
        assert!(e.message().contains("connection.tls_ca_file"), "{e}");
        let e = config_err(&store("[connection]\ntls = \"maybe\""));
        assert!(e.message().contains("maybe"), "{e}");

        let mut s = store("");
        s.kind = StoreKind::Mongodb;
        assert!(config_err(&s).message().contains("mongodb"));

        let mut s = store("");
        s.members[1].host = None;
        assert_eq!(config_err(&s).member(), Some("b"));

        let mut s = store("");
        s.members[1].host = Some("db;rm -rf /:5432".into());
        assert_eq!(config_err(&s).member(), Some("b"));

        let mut s = store("");
        s.members[0].hooks.rewind = Some("rewind {membr}".into());
        let e = config_err(&s);
        assert!(
            e.message().contains("hooks.rewind") && e.message().contains("membr"),
            "{e}"
        );
        assert_eq!(e.member(), Some("a"));

        let mut s = store("");
        s.members[1].name = "a".into();
        assert!(config_err(&s).message().contains("twice"));

        // The one-process stop of the deferred fence needs the evidence
        // hook every later observation reads; its template is checked too.
        let mut s = store("");
        s.members[0]
            .hooks
            .extra
            .insert("stop_controldata".into(), "pgctl stop-cd {member}".into());
        let e = config_err(&s);
        assert!(
            e.message()
                .contains("hooks.extra.stop_controldata needs hooks.extra.controldata"),
            "{e}"
        );
        assert_eq!(e.member(), Some("a"));
        s.members[0]
            .hooks
            .extra
            .insert("controldata".into(), "pgctl cd {member}".into());
        assert!(PostgresController::from_store(&s).is_ok());
        s.members[0]
            .hooks
            .extra
            .insert("stop_controldata".into(), "pgctl stop-cd {membr}".into());
        assert!(config_err(&s)
            .message()
            .contains("hooks.extra.stop_controldata"));
    }

    #[test]
    fn shop_example_payments_builds_with_require() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../topologies/examples/shop.toml"
        );
        let t = switchyard_topology::parse_file(std::path::Path::new(path)).unwrap();
        let payments = t.stores.iter().find(|s| s.name == "payments").unwrap();
        assert_eq!(payments.connection.tls.as_deref(), Some("require"));
        let c = PostgresController::builder(payments)
            .password("not-in-debug")
            .build()
            .unwrap();
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("Require") && !dbg.contains("not-in-debug"),
            "{dbg}"
        );
        let dallas = payments.member("payments-dallas").unwrap();
        assert!(c
            .conninfo_for(dallas, "payments-chicago")
            .ends_with("sslmode=require"));
    }

    #[test]
    fn capability_declares_postgres_features() {
        let c = PostgresController::from_store(&store(""))
            .unwrap()
            .capability();
        assert!(c.planned_switchover && c.forced_failover && c.fencing && c.positions);
        assert!(c.repoint && c.rejoin && c.lag_bound);
        assert!(!c.self_electing && !c.sticky_priorities);
    }
}
