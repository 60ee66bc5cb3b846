//! `switchyard-lab etcd up` and `switchyard-lab consul up` as a script uses
//! them: one JSON line with `"ready":true`, a server answering where it
//! says, everything stopped and removed on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn up(args: &[&str]) -> (std::process::Child, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-lab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("switchyard-lab starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(v["ready"], true, "{v}");
    (child, v)
}

fn http(addr: &str, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exited {status}");
}

#[test]
fn consul_up_prints_ready_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let (child, v) = up(&["consul", "up", "--dir", dir.path().to_str().unwrap()]);
    let addr = v["address"].as_str().expect("address").to_string();
    let r = http(
        &addr,
        "GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(dir.path().join("consul.json").exists());
    stop(child);
    assert!(!dir.path().join("consul.json").exists());
}

#[test]
fn etcd_up_runs_a_real_etcd() {
    if Command::new("etcd").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd is not installed (Debian etcd-server); scripts/lib.sh installs it"
        );
        eprintln!("SKIPPED: etcd not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (child, v) = up(&["etcd", "up", "--dir", dir.path().to_str().unwrap()]);
    let ep = v["endpoints"][0].as_str().expect("endpoint").to_string();
    let r = http(
        &ep,
        "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.contains("etcdserver"), "{r}");
    stop(child);
    assert!(!dir.path().join("etcd").exists(), "etcd data left behind");
}
