//! An independent client (py-consul from PyPI) against the Consul
//! simulator: sessions, acquire/release, advisory locks, lock-delay after
//! invalidation but not after a release, behavior=delete, check-and-set, a
//! blocking query, listings and a transaction (tests/lab/pyconsul_check.py).
//! Skipped (with a message) when `python3 -c 'import consul'` fails, unless
//! `SWITCHYARD_REQUIRE_PYCONSUL=1` (set by scripts/test.sh, which installs
//! it), so CI cannot pass this check by skipping it.

use std::process::{Command, Stdio};
use switchyard_lab::consulsim::ConsulSim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_consul_sessions_locks_cas_blocking_and_txn() {
    if !switchyard_lab::python_client::available(
        "import consul; consul.Consul",
        "SWITCHYARD_REQUIRE_PYCONSUL",
        "py-consul",
    ) {
        return;
    }
    let sim = ConsulSim::start("127.0.0.1")
        .await
        .expect("simulator starts");
    let addr = sim.address();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/pyconsul_check.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["120", "python3", script, &addr])
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("one JSON line");
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["session_ttl"], "10s", "{seen}");
    // The script also checked every session it made is gone.
    assert_eq!(sim.sessions(), 0, "sessions left: {seen}");
}
