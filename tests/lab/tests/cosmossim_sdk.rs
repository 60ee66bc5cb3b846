//! Microsoft's own Python SDKs (azure-mgmt-cosmosdb, azure-cosmos from PyPI)
//! against the Cosmos DB simulator: account read, invalid priorities
//! refused, a failover priority change polled to completion, data-plane
//! locations agreeing with ARM afterwards, a wrong key refused
//! (tests/lab/cosmos_check.py). Skipped with a message when the SDKs are not
//! importable, unless `SWITCHYARD_REQUIRE_AZURE_SDK=1` (set by
//! scripts/test.sh, which installs them), so CI cannot pass by skipping.

use std::process::{Command, Stdio};
use switchyard_lab::cosmossim::{CosmosSim, CosmosSimSpec, CLIENT_ID, TENANT_ID};

fn sdks_available() -> bool {
    Command::new("python3")
        .args(["-c", "import azure.mgmt.cosmosdb, azure.cosmos"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_sdks_read_change_and_poll_the_simulated_account() {
    if !sdks_available() {
        assert!(
            std::env::var_os("SWITCHYARD_REQUIRE_AZURE_SDK").is_none(),
            "SWITCHYARD_REQUIRE_AZURE_SDK is set but the Azure SDKs do not import"
        );
        eprintln!("SKIPPED: pip install azure-mgmt-cosmosdb azure-cosmos");
        return;
    }
    let mut spec = CosmosSimSpec::for_regions("catalog", &["east", "west", "south"]);
    spec.op_duration = std::time::Duration::from_millis(1200);
    let sim = CosmosSim::start(spec).await.expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/cosmos_check.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .env("SIM_ARM", sim.arm_endpoint())
        .env("SIM_DOCS", sim.document_endpoint())
        .env("SIM_KEY", sim.key())
        .env("SIM_ACCOUNT", sim.account_id())
        .env("SIM_CA", &ca)
        .env("SIM_TENANT", TENANT_ID)
        .env("SIM_CLIENT_ID", CLIENT_ID)
        .env("SIM_CLIENT_SECRET", sim.client_secret(CLIENT_ID).unwrap())
        .env_remove("REQUESTS_CA_BUNDLE")
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.output())
        .await
        .expect("the SDK check finishes within 5 minutes")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("cosmos_check: all passed"),
        "SDK check failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // What the SDKs did, seen from the simulator: the invalid changes
    // started nothing; the two valid ones ran as operations, each polled.
    let ops = sim.operations().await.unwrap();
    assert_eq!(ops.len(), 2, "{ops:?}");
    for (id, action, status, polls) in &ops {
        assert_eq!(*action, "failoverPriorityChange");
        assert_eq!(status, "Succeeded", "{id}");
        assert!(*polls >= 1, "operation {id} was never polled");
    }
    assert_eq!(
        sim.write_regions().await.unwrap(),
        (Some("east".to_string()), vec!["east".to_string()])
    );
}
