//! The simulator's wire protocol as the official Rust client and a plain
//! HTTP/1.1 exchange see it, on one port per node.

use kurrentdb::{AppendToStreamOptions, Client, EventData, StreamState};
use std::time::Duration;
use switchyard_lab::esdbsim::{EsdbSim, EsdbSimSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sim() -> (EsdbSim, String) {
    let regions: Vec<String> = ["east", "west", "south"].map(String::from).to_vec();
    let sim = EsdbSim::start(EsdbSimSpec::for_regions("ledger", &regions))
        .await
        .unwrap();
    let leader = sim
        .wait_for_leader_in("east", Duration::from_secs(30))
        .await
        .unwrap();
    (sim, leader)
}

/// One HTTP/1.1 request on a fresh connection; (status line, body).
async fn http(endpoint: &str, method: &str, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(endpoint).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// `err` is the client's `NotLeaderException` with `leader`'s port.
fn assert_not_leader_naming(sim: &EsdbSim, leader: &str, err: kurrentdb::Error) {
    let leader_port: u32 = sim
        .endpoint(leader)
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    match err {
        kurrentdb::Error::NotLeaderException(ep) => assert_eq!(ep.port, leader_port),
        other => panic!("expected NotLeaderException, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gossip_info_and_admin_share_the_grpc_port() {
    let (sim, leader) = sim().await;
    let ep = sim.endpoint(&leader).unwrap();
    let (status, body) = http(&ep, "GET", "/gossip").await;
    assert!(status.contains("200"), "{status}");
    let g: serde_json::Value = serde_json::from_str(&body).unwrap();
    let members = g["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for field in [
        "instanceId",
        "timeStamp",
        "state",
        "isAlive",
        "httpEndPointIp",
        "httpEndPointPort",
        "lastCommitPosition",
        "writerCheckpoint",
        "chaserCheckpoint",
        "epochPosition",
        "epochNumber",
        "epochId",
        "nodePriority",
        "isReadOnlyReplica",
    ] {
        assert!(
            members.iter().all(|m| m.get(field).is_some()),
            "{field} missing: {body}"
        );
    }
    let (_, info) = http(&ep, "GET", "/info").await;
    assert!(info.contains("\"state\":\"leader\""), "{info}");
    let west = sim.endpoint("ledger-west").unwrap();
    let (status, _) = http(&west, "POST", "/admin/node/priority/42").await;
    assert!(status.contains("200"), "{status}");
    let (_, body) = http(&west, "GET", "/gossip").await;
    let g: serde_json::Value = serde_json::from_str(&body).unwrap();
    let me = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| format!("127.0.0.1:{}", m["httpEndPointPort"]) == west)
        .unwrap()
        .clone();
    assert_eq!(me["nodePriority"], 42);
    // Resigning a follower is ignored; resigning the leader moves it to the
    // caught-up node with the highest priority.
    let (status, _) = http(&west, "POST", "/admin/node/resign").await;
    assert!(status.contains("200"));
    assert_eq!(sim.leader().as_deref(), Some(leader.as_str()));
    http(&ep, "POST", "/admin/node/resign").await;
    let now = sim
        .wait_for_leader_in("west", Duration::from_secs(30))
        .await;
    assert_eq!(now.as_deref(), Some("ledger-west"), "{}", sim.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_answers_writes_with_the_not_leader_error_naming_the_leader() {
    let (sim, leader) = sim().await;
    let west = sim.endpoint("ledger-west").unwrap();
    let client = Client::new(format!("kurrentdb://{west}?tls=false").parse().unwrap()).unwrap();
    let ev = EventData::binary("t", b"x".to_vec().into());
    let err = client
        .append_to_stream("s", &AppendToStreamOptions::default(), ev)
        .await
        .expect_err("a follower refuses the write");
    assert_not_leader_naming(&sim, &leader, err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_over_grpc_are_idempotent_and_check_the_expected_revision() {
    let (sim, _) = sim().await;
    let client = Client::new(sim.connection_string().parse().unwrap()).unwrap();
    let id = uuid::Uuid::new_v4();
    let ev = || EventData::binary("t", b"x".to_vec().into()).id(id);
    let opts = AppendToStreamOptions::default().stream_state(StreamState::NoStream);
    let a = client.append_to_stream("idem", &opts, ev()).await.unwrap();
    let b = client.append_to_stream("idem", &opts, ev()).await.unwrap();
    assert_eq!(a.next_expected_version, 0);
    assert_eq!(b.next_expected_version, 0, "the repeat wrote nothing");
    assert_eq!(a.position, b.position);
    let leader = sim.leader().unwrap();
    assert_eq!(sim.stream_ids(&leader, "idem").unwrap(), vec![id]);
    let err = client
        .append_to_stream(
            "idem",
            &AppendToStreamOptions::default().stream_state(StreamState::StreamRevision(7)),
            EventData::binary("t", b"y".to_vec().into()),
        )
        .await
        .expect_err("wrong expected version");
    assert!(
        matches!(err, kurrentdb::Error::WrongExpectedVersion { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_append_answers_each_correlation_id_over_one_stream() {
    let (sim, leader) = sim().await;
    let client = Client::new(sim.connection_string().parse().unwrap()).unwrap();
    // The client only batch-appends when ServerFeatures lists BatchAppend.
    let batch = client
        .batch_append(&kurrentdb::BatchAppendOptions::default())
        .await
        .expect("BatchAppend is advertised");
    let ev = |id: uuid::Uuid| EventData::binary("t", b"x".to_vec().into()).id(id);
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let ids: Vec<_> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    // Two requests in flight on the same call, answered by correlation id.
    let (first, second) = tokio::join!(
        batch.append_to_stream("batch-a", StreamState::NoStream, vec![ev(a)]),
        batch.append_to_stream(
            "batch-b",
            StreamState::Any,
            ids.iter().map(|id| ev(*id)).collect()
        ),
    );
    let first = first.unwrap();
    let second = second.unwrap();
    assert_eq!(first.stream_name(), "batch-a");
    assert_eq!(first.current_revision(), Some(0));
    assert_eq!(second.stream_name(), "batch-b");
    assert_eq!(second.current_revision(), Some(2));
    assert!(first.current_position().is_some());
    // A third request on the same call, with an expected revision.
    let third = batch
        .append_to_stream("batch-a", StreamState::StreamRevision(0), vec![ev(b)])
        .await
        .unwrap();
    assert_eq!(third.current_revision(), Some(1));
    assert_eq!(sim.stream_ids(&leader, "batch-a").unwrap(), vec![a, b]);
    assert_eq!(sim.stream_ids(&leader, "batch-b").unwrap(), ids);
    // Written through a quorum: a follower holds them too.
    let follower = sim
        .spec()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != leader)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut on_follower = sim.stream_ids(&follower, "batch-b").unwrap();
    while on_follower.len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        on_follower = sim.stream_ids(&follower, "batch-b").unwrap();
    }
    assert_eq!(on_follower, ids);
    // A wrong expected revision is that request's error, not the call's.
    let err = batch
        .append_to_stream(
            "batch-a",
            StreamState::StreamRevision(7),
            vec![ev(uuid::Uuid::new_v4())],
        )
        .await
        .expect_err("wrong expected version");
    match err {
        kurrentdb::Error::Grpc { code, message } => {
            assert_eq!(code, tonic::Code::AlreadyExists, "{message}");
            assert_eq!(message, "WrongExpectedVersion");
        }
        other => panic!("expected the per-request error, got {other:?}"),
    }
    assert_eq!(sim.stream_ids(&leader, "batch-a").unwrap(), vec![a, b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_append_on_a_follower_ends_the_call_with_the_not_leader_error() {
    let (sim, leader) = sim().await;
    let west = sim.endpoint("ledger-west").unwrap();
    let client = Client::new(format!("kurrentdb://{west}?tls=false").parse().unwrap()).unwrap();
    let batch = client
        .batch_append(&kurrentdb::BatchAppendOptions::default())
        .await
        .unwrap();
    let err = batch
        .append_to_stream(
            "s",
            StreamState::Any,
            vec![EventData::binary("t", b"x".to_vec().into())],
        )
        .await
        .expect_err("a follower refuses the write");
    assert_not_leader_naming(&sim, &leader, err);
    assert!(sim.stream_ids(&leader, "s").unwrap().is_empty());
}
