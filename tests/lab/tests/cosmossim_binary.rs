//! `switchyard-lab cosmosdb up`: one ready line with the endpoints, key and
//! account id, a topology that parses, secrets in files only readable by
//! their owner, fault commands on stdin, a clean stop on SIGTERM.
//!
//! And, against such a process run as docker-compose.yml runs the `cosmos`
//! service (every interface, fixed ports, an advertised name, store
//! `profiles`): the simulator's test-control plane over its socket (state,
//! fault commands, reset, the key it needs), and the compose backing's
//! attach (`CosmosSim::start` on `SWITCHYARD_BACKING=compose`) to that
//! process, with a stand-in `docker` that resolves the real
//! docker-compose.yml (Debian's docker-compose) and reads the simulator's
//! files as `docker compose exec cosmos cat` would.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, ChildStdout, Stdio};
use std::time::Duration;
use switchyard_lab::cosmossim::control::{ControlClient, Reset};

/// `switchyard-lab cosmosdb up --dir DIR --regions east,west,south ARGS...`
/// and its first line (ready), parsed.
fn up(
    dir: &std::path::Path,
    args: &[&str],
) -> (Child, BufReader<ChildStdout>, serde_json::Value, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-lab"))
        .args(["cosmosdb", "up", "--dir"])
        .arg(dir)
        .args(["--regions", "east,west,south"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (child, out, ready, line)
}

#[test]
fn cosmosdb_up_prints_ready_and_takes_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut out, ready, line) = up(dir.path(), &[]);
    assert_eq!(ready["ready"], true, "{line}");
    for k in [
        "topology",
        "arm_endpoint",
        "document_endpoint",
        "key",
        "account",
    ] {
        assert!(ready[k].is_string(), "{k} missing: {line}");
    }
    let account = ready["account"].as_str().unwrap();
    assert!(
        account.starts_with("/subscriptions/")
            && account.contains("/providers/Microsoft.DocumentDB/databaseAccounts/"),
        "{account}"
    );
    let topo =
        switchyard_topology::parse_file(std::path::Path::new(ready["topology"].as_str().unwrap()))
            .unwrap();
    let store = &topo.stores[0];
    assert_eq!(store.members.len(), 3);
    let az = store.connection.azure.as_ref().unwrap();
    assert_eq!(az.account, account);
    // The topology names the secret files; it never holds a secret.
    let text = std::fs::read_to_string(ready["topology"].as_str().unwrap()).unwrap();
    assert!(!text.contains(ready["key"].as_str().unwrap()));
    for f in [
        az.key_file.as_ref().unwrap(),
        az.client_secret_file.as_ref().unwrap(),
    ] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(az.key_file.as_ref().unwrap()).unwrap(),
        ready["key"].as_str().unwrap()
    );

    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "outage east").unwrap();
    writeln!(stdin, "state").unwrap();
    writeln!(stdin, "bogus").unwrap();
    let mut replies = vec![];
    for _ in 0..3 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        replies.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
    }
    assert_eq!(replies[0]["ok"], true, "{replies:?}");
    assert!(
        replies[1]["reply"].as_str().unwrap().contains("east"),
        "{replies:?}"
    );
    assert_eq!(replies[2]["ok"], false, "{replies:?}");

    switchyard_lab::postgres::signal(child.id(), "TERM").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Five consecutive ports bindable right now (ARM, global, three regions).
fn free_port_run() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        drop(first);
        let Some(last) = base.checked_add(4) else {
            continue;
        };
        let all: Vec<_> = (base..=last)
            .map(|p| std::net::TcpListener::bind(("0.0.0.0", p)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
}

/// Whether /proc/net/tcp shows a listener on 0.0.0.0:`port` (state 0A).
fn listens_on_any(port: u16) -> bool {
    let want = format!("00000000:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// In a container the simulator listens on every interface, on fixed ports,
/// under the name other containers reach it by: its URLs and its certificate
/// carry that name (docker-compose.yml runs it so).
#[tokio::test]
async fn cosmosdb_up_listens_where_told_under_the_advertised_name() {
    let dir = tempfile::tempdir().unwrap();
    let lab = env!("CARGO_BIN_EXE_switchyard-lab");

    // 0.0.0.0 is no name for a URL: refused, saying what is missing.
    let out = std::process::Command::new(lab)
        .args(["cosmosdb", "up", "--listen", "0.0.0.0", "--dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("advertised host"), "{err}");

    let base = free_port_run();
    let base_arg = base.to_string();
    let (mut child, _out, ready, line) = up(
        dir.path(),
        &[
            "--listen",
            "0.0.0.0",
            "--advertise-host",
            "localhost",
            "--base-port",
            &base_arg,
        ],
    );
    assert_eq!(
        ready["arm_endpoint"],
        format!("https://localhost:{base}"),
        "{line}"
    );
    assert_eq!(
        ready["document_endpoint"],
        format!("https://localhost:{}/", base + 1),
        "{line}"
    );
    for p in base..base + 5 {
        assert!(listens_on_any(p), "nothing listens on 0.0.0.0:{p}");
    }
    let topo =
        switchyard_topology::parse_file(std::path::Path::new(ready["topology"].as_str().unwrap()))
            .unwrap();
    let store = &topo.stores[0];
    let endpoint = format!("https://localhost:{}/", base + 1);
    assert_eq!(
        store.connection.endpoint.as_deref(),
        Some(endpoint.as_str())
    );

    // A TLS client that trusts only the simulator's CA accepts the
    // certificate for the advertised name, on a regional port.
    let ca = std::fs::read_to_string(store.connection.tls_ca_file.as_ref().unwrap()).unwrap();
    assert!(
        answers(base + 2, &ca).await,
        "the certificate is valid for the advertised host"
    );

    switchyard_lab::postgres::signal(child.id(), "TERM").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A `switchyard-lab cosmosdb up` process and what its ready line says.
struct Up {
    child: Child,
    dir: tempfile::TempDir,
    base: u16,
    ready: serde_json::Value,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = switchyard_lab::postgres::signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

/// The simulator as docker-compose.yml's `cosmos` runs it, but on free
/// ports and under `localhost` (which this host resolves, as a Docker host
/// must resolve `cosmos`).
fn up_as_compose() -> Up {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_run();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-lab"))
        .args(["cosmosdb", "up", "--dir"])
        .arg(dir.path())
        .args(["--store", "profiles", "--regions", "east,west,south"])
        .args(["--listen", "0.0.0.0", "--advertise-host", "localhost"])
        .args(["--base-port", &base.to_string()])
        .env_remove("SWITCHYARD_BACKING")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    Up {
        child,
        dir,
        base,
        ready,
    }
}

impl Up {
    fn client(&self, key: &str) -> ControlClient {
        let ca = std::fs::read_to_string(self.ready["ca_file"].as_str().unwrap()).unwrap();
        ControlClient::new(&format!("127.0.0.1:{}", self.base), "localhost", &ca, key).unwrap()
    }

    fn key(&self) -> String {
        self.ready["key"].as_str().unwrap().to_string()
    }
}

/// Whether a TCP connection to `port` on loopback gets a TLS handshake for
/// `localhost` from a client trusting only `ca` (a region in outage drops
/// every connection).
async fn answers(port: u16, ca: &str) -> bool {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_over_the_socket_of_a_simulator_process() {
    let up = up_as_compose();
    let c = up.client(&up.key());
    let ca = std::fs::read_to_string(up.ready["ca_file"].as_str().unwrap()).unwrap();

    let s = c.state().await.unwrap();
    assert_eq!(s.account, up.ready["account"].as_str().unwrap());
    assert!(
        s.account.ends_with("/databaseAccounts/profiles-acct"),
        "{}",
        s.account
    );
    assert_eq!(s.arm_write_region.as_deref(), Some("east"));
    assert_eq!(s.writable, ["east"]);
    assert_eq!(s.arm_endpoint, format!("https://localhost:{}", up.base));
    let regions: Vec<_> = s
        .locations
        .iter()
        .map(|l| (l.region.as_str(), l.priority))
        .collect();
    assert_eq!(regions, [("east", 0), ("west", 1), ("south", 2)]);
    assert_eq!(
        s.locations[1].endpoint,
        format!("https://localhost:{}/", up.base + 3)
    );
    assert!(s.operations.is_empty());
    // The control plane is not ARM: reading it counted nothing.
    assert_eq!(c.state().await.unwrap().arm_requests, 0);

    // A region outage: its endpoint drops connections until restored.
    assert!(
        answers(up.base + 3, &ca).await,
        "west answers before the outage"
    );
    let reply = c.control("outage west").await.unwrap();
    assert!(reply.contains("west"), "{reply}");
    assert!(
        !answers(up.base + 3, &ca).await,
        "west still answers in its outage"
    );
    assert!(answers(up.base + 2, &ca).await, "east went down too");
    c.control("restore west").await.unwrap();
    assert!(
        answers(up.base + 3, &ca).await,
        "west does not answer after the restore"
    );

    // The process's stdin and the control plane change one account.
    c.control("hold").await.unwrap();
    let e = c.control("bogus").await.unwrap_err().to_string();
    assert!(
        e.contains("400") && e.contains("unknown command `bogus`"),
        "{e}"
    );

    // A wrong key is refused, naming the header, and changes nothing.
    let e = up
        .client("not-the-key")
        .control("outage east")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("401") && e.to_string().contains("x-switchyard-lab-key"),
        "{e}"
    );
    assert!(answers(up.base + 2, &ca).await);

    // Reset: a fresh account of the same identity, with the spec's settings;
    // other regions are refused.
    c.control("outage east").await.unwrap();
    let r = Reset {
        regions: vec!["east".into(), "west".into(), "south".into()],
        multi_write: true,
        consistency_level: "Strong".into(),
        max_staleness_prefix: 100,
        max_interval_secs: 5,
        op_ms: 300,
        retry_after_secs: 1,
    };
    let s = c.reset(&r).await.unwrap();
    assert_eq!(
        s.writable,
        ["east", "west", "south"],
        "multi-write after the reset"
    );
    assert!(answers(up.base + 2, &ca).await, "the reset ends the outage");
    assert_eq!(s.account, up.ready["account"].as_str().unwrap());
    let e = c
        .reset(&Reset {
            regions: vec!["east".into(), "west".into()],
            ..r
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("400") && e.contains("[\"east\", \"west\", \"south\"]"),
        "{e}"
    );
}

/// The stand-in `docker`: `compose -p P -f FILE config --format json` is
/// the real file resolved by Debian's docker-compose (PyYAML to JSON), and
/// `compose ... exec -T cosmos cat F` reads the simulator's files
/// (`/run/cosmos/F`, the container's directory, from the process's). Nothing else.
fn stand_in_docker(bin: &std::path::Path, sim_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        r#"#!/bin/sh
[ "$1 $2" = "compose -p" ] && [ "$4" = "-f" ] || {{ echo "stand-in docker: compose -p P -f FILE only" >&2; exit 64; }}
file=$5; shift 5
case "$*" in
  "config --format json")
    docker-compose -f "$file" config | python3 -c 'import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)' ;;
  "exec -T cosmos cat "*)
    # The container's --dir is /run/cosmos; this simulator's is {dir}.
    p=$5; case "$p" in /run/cosmos/*) p="{dir}/${{p#/run/cosmos/}}" ;; esac
    cat "$p" ;;
  *) echo "stand-in docker: not $*" >&2; exit 64 ;;
esac
"#,
        dir = sim_dir.display()
    );
    std::fs::create_dir_all(bin).unwrap();
    let p = bin.join("docker");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `SWITCHYARD_BACKING=compose` is read once per process: the attach runs
/// in a child of this test binary (the ignored test below), with the
/// stand-in `docker` on its PATH and the `cosmos` service's address
/// overridden to the simulator process.
#[test]
fn the_compose_backing_attaches_to_a_simulator_process() {
    let up = up_as_compose();
    let bin = up.dir.path().join("bin");
    stand_in_docker(&bin, up.dir.path());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "compose_attach_inner",
            "--ignored",
            "--nocapture",
        ])
        .env("SWITCHYARD_BACKING", "compose")
        .env(
            "COMPOSE_PROJECT_NAME",
            format!("sytest{}", std::process::id()),
        )
        .env_remove("COMPOSE_FILE")
        .env(
            "SWITCHYARD_COMPOSE_ADDR_COSMOS",
            format!("127.0.0.1:{}", up.base),
        )
        .env("SWITCHYARD_TEST_SIM_KEY", up.key())
        .env("PATH", path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && all.contains("test compose_attach_inner ... ok"),
        "{all}"
    );
}

/// Run by the test above; on its own it has no simulator to attach to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the_compose_backing_attaches_to_a_simulator_process"]
async fn compose_attach_inner() {
    use switchyard_lab::cosmossim::{Consistency, CosmosSim, CosmosSimSpec, READER_CLIENT_ID};
    let mut spec = CosmosSimSpec::for_regions("catalog", &["east", "west", "south"]);
    spec.op_duration = Duration::from_millis(400);
    spec.consistency = Consistency {
        level: "BoundedStaleness".into(),
        ..Consistency::default()
    };
    let sim = CosmosSim::start(spec.clone()).await.expect("attaches");
    assert!(sim.is_compose());
    // The secrets came out of the "container"; the key is the process's.
    assert_eq!(sim.key(), std::env::var("SWITCHYARD_TEST_SIM_KEY").unwrap());
    assert!(sim.client_secret(READER_CLIENT_ID).is_some());
    assert!(sim.account_id().ends_with("/profiles-acct"));
    assert!(sim.arm_endpoint().starts_with("https://localhost:"));

    // The controller on the store the attach describes moves the account,
    // and the control plane sees it.
    let dir = tempfile::tempdir().unwrap();
    let store = sim.store(dir.path()).await.unwrap();
    assert_eq!(store.members[0].name, "catalog-east");
    let ctl = switchyard_controller::layered(
        switchyard_cosmosdb::CosmosController::from_store(&store).expect("controller builds"),
    );
    let s = ctl.observe().await.unwrap();
    assert_eq!(s.primary_region(), Some("east"), "{s:?}");
    let ctx = switchyard_controller::OpContext::adhoc();
    ctl.execute(
        &switchyard_controller::Operation::Promote {
            target_region: "west".into(),
            mode: switchyard_controller::PromoteMode::Planned,
            candidate: None,
        },
        &ctx,
    )
    .await
    .expect("planned move to west");
    assert_eq!(
        sim.write_regions().await.unwrap(),
        (Some("west".into()), vec!["west".into()])
    );
    let ops = sim.operations().await.unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(
        (ops[0].1.as_str(), ops[0].2.as_str()),
        ("failoverPriorityChange", "Succeeded")
    );
    assert!(sim.arm_requests().await.unwrap() > 0);
    sim.control("outage east").await.unwrap();
    let s = ctl.observe().await.unwrap();
    assert!(
        s.members.iter().any(|m| m.region == "east" && !m.reachable),
        "{s:?}"
    );
    drop(sim);

    // A second attach starts from a fresh account, as a new lab simulator does.
    let sim = CosmosSim::start(spec).await.expect("attaches again");
    assert_eq!(
        sim.write_regions().await.unwrap(),
        (Some("east".into()), vec!["east".into()])
    );
    assert!(sim.operations().await.unwrap().is_empty());
    assert_eq!(sim.arm_requests().await.unwrap(), 0);
    // (An attach waits for the one before it to be dropped: one test at a
    // time on the service.)
    drop(sim);

    // A spec the service cannot be: refused, saying so, never the lab.
    let e = CosmosSim::start(CosmosSimSpec::for_regions("catalog", &["east", "west"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SWITCHYARD_BACKING=compose") && e.contains("regions"),
        "{e}"
    );
}
