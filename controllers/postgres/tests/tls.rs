//! TLS against real PostgreSQL servers with `ssl = on` and `pg_hba.conf`
//! refusing every plain TCP session (clients and replication alike): the
//! controller with `tls = "require"` + `tls_ca_file` (verify-full) observes
//! and runs a planned switchover and back; the standbys it re-points
//! replicate over verified TLS; plain TCP is refused; a wrong CA is refused
//! with a clear `Config` error.

mod common;

use anyhow::{ensure, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::os::unix::fs::PermissionsExt;
use switchyard::conformance::{self, SuiteConfig};
use switchyard_controller::{Controller, ErrorKind, OpContext, Operation, PromoteMode};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec, ServerTls};
use switchyard_postgres::PostgresController;
use switchyard_topology::Store;

struct Pki {
    ca_pem: String,
    server: ServerTls,
}

fn ca(name: &str) -> Result<(CertificateParams, KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let pem = p.self_signed(&key)?.pem();
    Ok((p, key, pem))
}

/// A CA and a server certificate it signed, valid for 127.0.0.1 and localhost.
fn pki() -> Result<Pki> {
    pki_for(&["127.0.0.1", "localhost"])
}

/// A CA and a server certificate it signed for `names` (IP or DNS SANs).
fn pki_for(names: &[&str]) -> Result<Pki> {
    let (ca_params, ca_key, ca_pem) = ca("switchyard test CA")?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name
        .push(DnType::CommonName, "switchyard lab");
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Pki {
        ca_pem,
        server: ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    })
}

/// A file the servers (the `postgres` OS user) can read too: the CA path
/// goes into the standbys' `primary_conninfo` as `sslrootcert`.
fn world_readable(dir: &std::path::Path, name: &str, text: &str) -> Result<String> {
    let mut p = std::fs::metadata(dir)?.permissions();
    p.set_mode(0o755);
    std::fs::set_permissions(dir, p)?;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path.display().to_string())
}

fn with_tls(store: &Store, tls: &str, ca: Option<&str>) -> Store {
    let mut s = store.clone();
    s.connection.tls = Some(tls.into());
    s.connection.tls_ca_file = ca.map(String::from);
    s
}

async fn scalar(c: &tokio_postgres::Client, sql: &str) -> Result<String> {
    let rows = c.simple_query(sql).await.with_context(|| sql.to_string())?;
    rows.into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .with_context(|| format!("{sql}: no value"))
}

/// Every replication connection on the current primary is TLS, and there
/// are `want` of them.
async fn replication_over_tls(f: &common::PgFixture, want: usize) -> Result<()> {
    let c = f.primary_client().await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (tls, plain): (i64, i64) = {
            let row = c
                .query_one(
                    "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                     FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) \
                     WHERE r.state = 'streaming'",
                    &[],
                )
                .await?;
            (row.get(0), row.get(1))
        };
        ensure!(plain == 0, "{plain} replication connection(s) without TLS");
        if tls as usize == want {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{tls} of {want} standbys stream over TLS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tls_observe_and_planned_switchover() -> Result<()> {
    let pki = pki()?;
    let (_, _, wrong_ca_pem) = ca("some other CA")?;
    let files = tempfile::Builder::new()
        .prefix("switchyard-tls-")
        .tempdir_in("/tmp")?;
    let ca_file = world_readable(files.path(), "ca.pem", &pki.ca_pem)?;
    let wrong_ca_file = world_readable(files.path(), "wrong-ca.pem", &wrong_ca_pem)?;

    let mut spec = PgClusterSpec::new(["east", "west", "south"]);
    spec.server_tls = Some(pki.server.clone());
    // Plain TCP is refused for every database and for replication.
    spec.hba = vec![
        "hostnossl all all all reject".into(),
        "hostnossl replication all all reject".into(),
    ];
    let spec_dbg = format!("{spec:?}");
    ensure!(
        !spec_dbg.contains("PRIVATE KEY") && spec_dbg.contains("<redacted>"),
        "key material in Debug: {spec_dbg}"
    );
    let cluster = PgCluster::start(spec).await?;
    let lab_store = cluster.store().clone();

    // Plain TCP is refused: `disable` sees every member down, with the
    // server's reason.
    let plain = PostgresController::from_store(&with_tls(&lab_store, "disable", None))?;
    let s = plain.observe().await?;
    for m in &s.members {
        ensure!(!m.reachable, "{} reachable over plain TCP: {s:?}", m.name);
        let d = m.detail.as_deref().unwrap_or_default();
        ensure!(d.contains("no encryption"), "{}: {d}", m.name);
    }

    // `require` without a CA encrypts (libpq `require`): it gets in.
    let encrypt_only = PostgresController::from_store(&with_tls(&lab_store, "require", None))?;
    let s = encrypt_only.observe().await?;
    ensure!(
        s.members.iter().all(|m| m.reachable) && s.primary().is_some(),
        "{s:?}"
    );

    // A CA that did not sign the servers' certificates: refused, clearly.
    let wrong =
        PostgresController::from_store(&with_tls(&lab_store, "require", Some(&wrong_ca_file)))?;
    let s = wrong.observe().await?;
    for m in &s.members {
        let d = m.detail.as_deref().unwrap_or_default();
        ensure!(
            !m.reachable && d.contains("certificate was not trusted"),
            "{}: {d}",
            m.name
        );
    }
    let e = readiness_error(&wrong).await?;
    ensure!(e.kind() == ErrorKind::Config, "{e}");
    ensure!(e.store() == lab_store.name, "{e}");
    ensure!(
        e.member().is_some_and(|m| lab_store.member(m).is_some()),
        "{e}"
    );
    ensure!(
        e.message().contains("server certificate was not trusted"),
        "{e}"
    );
    println!("wrong CA: {e}");

    // The real thing: verify-full against the right CA.
    let ctl = PostgresController::from_store(&with_tls(&lab_store, "require", Some(&ca_file)))?;
    ensure!(!format!("{ctl:?}").contains("BEGIN CERTIFICATE"), "{ctl:?}");
    let f = common::PgFixture {
        cluster,
        ctl: switchyard_controller::layered(ctl),
        store: with_tls(&lab_store, "require", Some(&ca_file)),
    };
    f.primary_client()
        .await?
        .batch_execute("CREATE TABLE IF NOT EXISTS conformance (k bigint PRIMARY KEY)")
        .await?;
    let cfg = SuiteConfig::default();
    let r = conformance::run_cases(&f, &cfg, &conformance::cases(&["observe"])).await;
    ensure!(r.passed() == ["observe"], "{r}");
    // The fixture's controller, configured the same, holds sessions now.
    f.ctl.observe().await?;

    // The controller's own sessions are TLS.
    for m in f.cluster.members() {
        let c = f.cluster.connect(&m.name).await?;
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.application_name = 'switchyard'",
                &[],
            )
            .await?;
        let (tls, plain): (i64, i64) = (row.get(0), row.get(1));
        ensure!(
            tls >= 1 && plain == 0,
            "{}: {tls} controller sessions over TLS, {plain} plain",
            m.name
        );
    }
    replication_over_tls(&f, 2).await?;

    let r = conformance::run_cases(
        &f,
        &cfg,
        &conformance::cases(&["planned_switchover_and_back"]),
    )
    .await;
    ensure!(r.passed() == ["planned_switchover_and_back"], "{r}");

    // Both standbys were re-pointed (south) or rejoined (west, the fenced
    // primary of the way back) by the controller: their primary_conninfo
    // asks for verify-full with the CA, and they stream over TLS.
    for m in f.cluster.members().iter().filter(|m| m.region != "east") {
        let c = f.cluster.connect(&m.name).await?;
        ensure!(
            scalar(&c, "SELECT pg_is_in_recovery()").await? == "t",
            "{} is not a standby",
            m.name
        );
        let ci = scalar(&c, "SELECT current_setting('primary_conninfo')").await?;
        ensure!(
            ci.contains("sslmode=verify-full") && ci.contains(&ca_file),
            "{}: primary_conninfo {ci}",
            m.name
        );
    }
    replication_over_tls(&f, 2).await?;
    Ok(())
}

async fn readiness_error(ctl: &PostgresController) -> Result<switchyard_controller::Error> {
    ctl.execute(
        &Operation::CheckReadiness {
            target_region: "east".into(),
            mode: PromoteMode::Planned,
            candidate: None,
        },
        &OpContext::adhoc(),
    )
    .await
    .err()
    .context("readiness succeeded")
}

/// verify-full checks the host name too: a certificate from the right CA
/// that names another host is refused. And `require` against a server
/// without TLS is refused as such, not treated as an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_name_mismatch_and_tls_not_offered_are_refused() -> Result<()> {
    let pki = pki_for(&["db.example.invalid"])?;
    let files = tempfile::Builder::new()
        .prefix("switchyard-tls-")
        .tempdir_in("/tmp")?;
    let ca_file = world_readable(files.path(), "ca.pem", &pki.ca_pem)?;

    let mut spec = PgClusterSpec::new(["east"]);
    spec.server_tls = Some(pki.server.clone());
    let other_name = PgCluster::start(spec).await?;
    let ctl =
        PostgresController::from_store(&with_tls(other_name.store(), "require", Some(&ca_file)))?;
    let e = readiness_error(&ctl).await?;
    ensure!(e.kind() == ErrorKind::Config, "{e}");
    ensure!(e.member() == Some("pg-east-1"), "{e}");
    ensure!(
        e.message().contains("server certificate was not trusted")
            && e.message().contains("not valid for name"),
        "{e}"
    );
    // The same certificate without verification (libpq `require`) is accepted.
    let encrypt_only =
        PostgresController::from_store(&with_tls(other_name.store(), "require", None))?;
    ensure!(encrypt_only.observe().await?.primary().is_some());

    let no_tls = PgCluster::start(PgClusterSpec::new(["east"])).await?;
    let ctl = PostgresController::from_store(&with_tls(no_tls.store(), "require", None))?;
    let s = ctl.observe().await?;
    let d = s.members[0].detail.as_deref().unwrap_or_default();
    ensure!(
        !s.members[0].reachable && d.contains("does not offer TLS"),
        "{s:?}"
    );
    let e = readiness_error(&ctl).await?;
    ensure!(
        e.kind() == ErrorKind::Config && e.message().contains("does not offer TLS"),
        "{e}"
    );
    // `prefer` falls back to plain TCP there.
    let prefer = PostgresController::from_store(&with_tls(no_tls.store(), "prefer", None))?;
    ensure!(prefer.observe().await?.primary().is_some());
    Ok(())
}
