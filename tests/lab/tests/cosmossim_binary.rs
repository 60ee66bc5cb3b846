//! `switchyard-lab cosmosdb up`: one ready line with the endpoints, key and
//! account id, a topology that parses, secrets in files only readable by
//! their owner, fault commands on stdin, a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, ChildStdout};

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
    use rustls::pki_types::pem::PemObject;
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
    let ca = std::fs::read(store.connection.tls_ca_file.as_ref().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", base + 2))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("the certificate is valid for the advertised host");

    switchyard_lab::postgres::signal(child.id(), "TERM").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
