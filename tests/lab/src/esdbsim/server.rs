//! One cleartext port per node serving HTTP/1.1 (`/gossip`, `/info`, the
//! admin endpoints) and gRPC over h2c, told apart by the HTTP/2 preface as a
//! real node's Kestrel listener does.

use super::proto::{common, gossip, operations, server_features, streams};
use super::world::{grpc_uuid, AppendResult, Expected, NodeState, Proposed};
use super::Shared;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use prost::Message;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

pub(super) type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// How long an append waits for a quorum before answering with a timeout.
pub(super) const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve one accepted connection of node `i`.
pub async fn serve(shared: Arc<Shared>, i: usize, stream: tokio::net::TcpStream) {
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, i, req).await) }
    });
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let _ = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

async fn handle(shared: Arc<Shared>, i: usize, req: Request<Incoming>) -> Response<Body> {
    let grpc = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return handle_grpc(shared, i, req).await;
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method.as_str(), path.as_str()) {
        ("GET", "/gossip") => json(StatusCode::OK, gossip_json(&shared, i)),
        ("GET", "/info") => {
            let state = shared.lock().nodes[i].state.name().to_lowercase();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "esVersion": super::ES_VERSION,
                    "state": state,
                    "features": {"projections": false, "userManagement": false, "atomPub": false},
                    "authentication": null,
                }),
            )
        }
        ("POST", "/admin/node/resign") => {
            shared.mutate(|w| w.resign(i, Instant::now()));
            text(StatusCode::OK, "")
        }
        ("POST", p) if p.starts_with("/admin/node/priority/") => {
            match p["/admin/node/priority/".len()..].parse::<i32>() {
                Ok(prio) => {
                    shared.mutate(|w| w.nodes[i].priority = prio);
                    text(StatusCode::OK, "")
                }
                Err(_) => text(StatusCode::BAD_REQUEST, "priority must be an integer"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn text(code: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("static response")
}

fn json(code: StatusCode, v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("static response")
}

fn iso(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos() / 100
    )
}

/// `/gossip` as the server's `MemberInfoDto` list: every field a client parses.
fn gossip_json(shared: &Shared, i: usize) -> serde_json::Value {
    let w = shared.lock();
    let members: Vec<serde_json::Value> = w
        .gossip(i)
        .into_iter()
        .filter_map(|(j, alive, snap)| {
            let snap = snap?;
            let n = &w.nodes[j];
            Some(serde_json::json!({
                "instanceId": n.instance_id,
                "timeStamp": iso(snap.at),
                "state": snap.state.name(),
                "isAlive": alive,
                "internalTcpIp": "127.0.0.1",
                "internalTcpPort": 0,
                "internalSecureTcpPort": 0,
                "externalTcpIp": "127.0.0.1",
                "externalTcpPort": 0,
                "externalSecureTcpPort": 0,
                "httpEndPointIp": "127.0.0.1",
                "httpEndPointPort": n.port,
                "advertiseHostToClientAs": "",
                "advertiseHttpPortToClientAs": 0,
                "advertiseTcpPortToClientAs": 0,
                "lastCommitPosition": snap.commit,
                "writerCheckpoint": snap.writer,
                "chaserCheckpoint": snap.chaser,
                "epochPosition": snap.epoch_position,
                "epochNumber": snap.epoch_number,
                "epochId": snap.epoch_id,
                "nodePriority": snap.priority,
                "isReadOnlyReplica": n.read_only,
                "esVersion": super::ES_VERSION,
            }))
        })
        .collect();
    let me = &w.nodes[i];
    serde_json::json!({"members": members, "serverIp": "127.0.0.1", "serverPort": me.port})
}

/// A gRPC error with extra trailers.
pub(super) struct Status {
    pub(super) code: u32,
    pub(super) message: String,
    pub(super) trailers: Vec<(&'static str, String)>,
}

impl Status {
    pub(super) fn new(code: u32, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
            trailers: Vec::new(),
        }
    }
}

pub(super) const UNIMPLEMENTED: u32 = 12;
pub(super) const INVALID_ARGUMENT: u32 = 3;
pub(super) const DEADLINE_EXCEEDED: u32 = 4;
pub(super) const NOT_FOUND: u32 = 5;
pub(super) const UNAVAILABLE: u32 = 14;

/// The server's message for a node that cannot take the request now.
pub(super) const NOT_READY: &str = "Server Is Not Ready";

pub(super) fn frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u8(0);
    b.put_u32(body.len() as u32);
    b.put_slice(&body);
    b.freeze()
}

pub(super) fn grpc_response(frames: Vec<Bytes>, status: Result<(), Status>) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    let (code, message, extra) = match status {
        Ok(()) => (0, String::new(), Vec::new()),
        Err(s) => (s.code, s.message, s.trailers),
    };
    trailers.insert("grpc-status", code.to_string().parse().expect("digits"));
    if !message.is_empty() {
        let enc: String = message
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        trailers.insert("grpc-message", enc.parse().expect("ascii"));
    }
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            trailers.insert(k, v);
        }
    }
    let mut out: Vec<Result<Frame<Bytes>, Infallible>> =
        frames.into_iter().map(|f| Ok(Frame::data(f))).collect();
    out.push(Ok(Frame::trailers(trailers)));
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(BodyExt::boxed(StreamBody::new(futures::stream::iter(out))))
        .expect("static response")
}

fn decode_frames<M: Message + Default>(mut body: Bytes) -> Result<Vec<M>, Status> {
    let mut out = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 5 {
            return Err(Status::new(INVALID_ARGUMENT, "truncated gRPC frame"));
        }
        let compressed = body.get_u8();
        let len = body.get_u32() as usize;
        if compressed != 0 || body.remaining() < len {
            return Err(Status::new(
                INVALID_ARGUMENT,
                "compressed or truncated gRPC frame",
            ));
        }
        let msg = body.split_to(len);
        out.push(M::decode(msg).map_err(|e| Status::new(INVALID_ARGUMENT, e.to_string()))?);
    }
    Ok(out)
}

/// The not-leader error as the server sends it: NOT_FOUND, "Leader info
/// available", `exception: not-leader` and the leader's endpoint.
fn not_leader(shared: &Shared, i: usize) -> Status {
    let w = shared.lock();
    let mut s = Status::new(NOT_FOUND, "Leader info available");
    s.trailers.push(("exception", "not-leader".into()));
    match w.leader_of(i) {
        Some(l) => {
            s.trailers
                .push(("leader-endpoint-host", "127.0.0.1".into()));
            s.trailers
                .push(("leader-endpoint-port", w.nodes[l].port.to_string()));
        }
        None => {
            return Status::new(UNAVAILABLE, NOT_READY);
        }
    }
    s
}

async fn handle_grpc(shared: Arc<Shared>, i: usize, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let requires_leader = req
        .headers()
        .get("requires-leader")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match path.as_str() {
        "/event_store.client.streams.Streams/BatchAppend" => {
            return super::batch_append::serve(shared, i, req.into_body());
        }
        "/event_store.client.server_features.ServerFeatures/GetSupportedMethods" => {
            return grpc_response(vec![frame(&supported_methods())], Ok(()));
        }
        _ => {}
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return grpc_response(Vec::new(), Err(Status::new(INVALID_ARGUMENT, "body"))),
    };
    let result = match path.as_str() {
        "/event_store.client.gossip.Gossip/Read" => Ok(vec![frame(&cluster_info(&shared, i))]),
        "/event_store.client.operations.Operations/SetNodePriority" => {
            decode_frames::<operations::SetNodePriorityReq>(body).map(|reqs| {
                if let Some(r) = reqs.first() {
                    shared.mutate(|w| w.nodes[i].priority = r.priority);
                }
                vec![frame(&())]
            })
        }
        "/event_store.client.operations.Operations/ResignNode" => {
            shared.mutate(|w| w.resign(i, Instant::now()));
            Ok(vec![frame(&())])
        }
        "/event_store.client.streams.Streams/Append" => {
            append(&shared, i, body).await.map(|r| vec![frame(&r)])
        }
        "/event_store.client.streams.Streams/Read" => read(&shared, i, body, requires_leader),
        _ => Err(Status::new(
            UNIMPLEMENTED,
            format!("{path} is not served by the simulator"),
        )),
    };
    match result {
        Ok(frames) => grpc_response(frames, Ok(())),
        Err(s) => grpc_response(Vec::new(), Err(s)),
    }
}

/// What the server answers `ServerFeatures.GetSupportedMethods` with: every
/// client-facing method it serves, names in lower case, with the features
/// the server's `ServerFeatures.cs` attaches (`deadline_duration` on
/// `BatchAppend`, `position`/`events` on reads). Clients enable optional
/// calls from this list; the Rust client uses `BatchAppend` only when listed.
fn supported_methods() -> server_features::SupportedMethods {
    let method = |service: &str, name: &str, features: &[&str]| server_features::SupportedMethod {
        method_name: name.to_lowercase(),
        service_name: service.to_lowercase(),
        features: features.iter().map(|f| f.to_string()).collect(),
    };
    let streams = "event_store.client.streams.Streams";
    let ops = "event_store.client.operations.Operations";
    server_features::SupportedMethods {
        methods: vec![
            method(streams, "Append", &[]),
            method(streams, "BatchAppend", &["deadline_duration"]),
            method(streams, "Read", &["position", "events"]),
            method("event_store.client.gossip.Gossip", "Read", &[]),
            method(ops, "SetNodePriority", &[]),
            method(ops, "ResignNode", &[]),
            method(
                "event_store.client.server_features.ServerFeatures",
                "GetSupportedMethods",
                &[],
            ),
        ],
        event_store_server_version: super::ES_VERSION
            .split(['.', '-'])
            .take(3)
            .collect::<Vec<_>>()
            .join("."),
    }
}

fn cluster_info(shared: &Shared, i: usize) -> gossip::ClusterInfo {
    let w = shared.lock();
    gossip::ClusterInfo {
        members: w
            .gossip(i)
            .into_iter()
            .filter_map(|(j, alive, snap)| {
                let snap = snap?;
                let ticks = snap
                    .at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| (d.as_nanos() / 100) as i64);
                Some(gossip::MemberInfo {
                    instance_id: Some(grpc_uuid(w.nodes[j].instance_id)),
                    time_stamp: ticks,
                    state: snap.state.grpc(),
                    is_alive: alive,
                    http_end_point: Some(gossip::EndPoint {
                        address: "127.0.0.1".into(),
                        port: u32::from(w.nodes[j].port),
                    }),
                })
            })
            .collect(),
    }
}

pub(super) fn parse_uuid(u: &Option<common::Uuid>) -> Option<Uuid> {
    match u.as_ref()?.value.as_ref()? {
        common::uuid::Value::String(s) => s.parse().ok(),
        common::uuid::Value::Structured(s) => {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&s.most_significant_bits.to_be_bytes());
            b[8..].copy_from_slice(&s.least_significant_bits.to_be_bytes());
            Some(Uuid::from_bytes(b))
        }
    }
}

async fn append(
    shared: &Arc<Shared>,
    i: usize,
    body: Bytes,
) -> Result<streams::AppendResp, Status> {
    use streams::append_req::options::ExpectedStreamRevision as E;
    use streams::append_req::Content;
    let msgs = decode_frames::<streams::AppendReq>(body)?;
    let mut it = msgs.into_iter();
    let Some(Content::Options(opts)) = it.next().and_then(|m| m.content) else {
        return Err(Status::new(
            INVALID_ARGUMENT,
            "append must start with options",
        ));
    };
    let stream = opts
        .stream_identifier
        .map(|s| String::from_utf8_lossy(&s.stream_name).into_owned())
        .ok_or_else(|| Status::new(INVALID_ARGUMENT, "no stream"))?;
    let expected = match opts.expected_stream_revision {
        Some(E::Revision(r)) => Expected::Revision(r),
        Some(E::NoStream(())) => Expected::NoStream,
        Some(E::StreamExists(())) => Expected::StreamExists,
        Some(E::Any(())) | None => Expected::Any,
    };
    let mut events = Vec::new();
    for m in it {
        let Some(Content::ProposedMessage(p)) = m.content else {
            return Err(Status::new(INVALID_ARGUMENT, "options sent twice"));
        };
        events.push(proposed(p.id, p.metadata, p.custom_metadata, p.data)?);
    }
    use streams::append_resp::{self as ar, success, wrong_expected_version as wev};
    match write(shared, i, &stream, expected, events).await? {
        Written::WrongExpectedVersion { current } => {
            let cur = match current {
                Some(c) => wev::CurrentRevisionOption::CurrentRevision(c),
                None => wev::CurrentRevisionOption::CurrentNoStream(()),
            };
            let exp = match expected {
                Expected::Any => wev::ExpectedRevisionOption::ExpectedAny(()),
                Expected::NoStream => wev::ExpectedRevisionOption::ExpectedNoStream(()),
                Expected::StreamExists => wev::ExpectedRevisionOption::ExpectedStreamExists(()),
                Expected::Revision(r) => wev::ExpectedRevisionOption::ExpectedRevision(r),
            };
            Ok(streams::AppendResp {
                result: Some(ar::Result::WrongExpectedVersion(ar::WrongExpectedVersion {
                    current_revision_option_20_6_0: None,
                    expected_revision_option_20_6_0: None,
                    current_revision_option: Some(cur),
                    expected_revision_option: Some(exp),
                })),
            })
        }
        Written::CommitTimeout => Err(Status::new(DEADLINE_EXCEEDED, "Timeout expired")),
        Written::Success { revision, position } => {
            let rev = match revision {
                Some(r) => success::CurrentRevisionOption::CurrentRevision(r),
                None => success::CurrentRevisionOption::NoStream(()),
            };
            Ok(streams::AppendResp {
                result: Some(ar::Result::Success(ar::Success {
                    current_revision_option: Some(rev),
                    position_option: Some(success::PositionOption::Position(ar::Position {
                        commit_position: position,
                        prepare_position: position,
                    })),
                })),
            })
        }
    }
}

/// A proposed message of `Append` or `BatchAppend` as the world takes it.
pub(super) fn proposed(
    id: Option<common::Uuid>,
    metadata: std::collections::HashMap<String, String>,
    custom_metadata: Bytes,
    data: Bytes,
) -> Result<Proposed, Status> {
    let id = parse_uuid(&id).ok_or_else(|| Status::new(INVALID_ARGUMENT, "event id"))?;
    Ok(Proposed {
        id,
        event_type: metadata.get("type").cloned().unwrap_or_default(),
        content_type: metadata
            .get("content-type")
            .cloned()
            .unwrap_or_else(|| "application/octet-stream".into()),
        custom_metadata: custom_metadata.to_vec(),
        data: data.to_vec(),
    })
}

/// How a write the leader took ended.
pub(super) enum Written {
    /// Held by a quorum: the stream's last revision (`None`: still no
    /// stream) and the last event's log position.
    Success {
        /// Last event number of the stream.
        revision: Option<u64>,
        /// Log position of the last event.
        position: u64,
    },
    /// The expected revision did not hold (`None`: no stream).
    WrongExpectedVersion {
        /// The stream's current last event number.
        current: Option<u64>,
    },
    /// No quorum held the events within [`COMMIT_TIMEOUT`].
    CommitTimeout,
}

/// Write `events` through node `i` as the leader's request manager does for
/// `Append` and `BatchAppend` alike: refused by anything but a leader
/// (not-leader error, or "Server Is Not Ready" while resigning or with no
/// leader), acknowledged only once a quorum holds the events.
pub(super) async fn write(
    shared: &Arc<Shared>,
    i: usize,
    stream: &str,
    expected: Expected,
    events: Vec<Proposed>,
) -> Result<Written, Status> {
    let leader_state = shared.lock().nodes[i].state;
    match leader_state {
        NodeState::Leader => {}
        NodeState::ResigningLeader => {
            return Err(Status::new(UNAVAILABLE, NOT_READY));
        }
        _ => return Err(not_leader(shared, i)),
    }
    let result = shared.mutate(|w| w.append(i, stream, expected, events, Instant::now()));
    match result {
        AppendResult::WrongExpectedVersion { current } => {
            Ok(Written::WrongExpectedVersion { current })
        }
        AppendResult::Success {
            revision,
            position,
            end,
            idempotent,
        } => {
            let committed = shared
                .wait_for(COMMIT_TIMEOUT, |w| match w.committed(i, end) {
                    Some(true) => Some(Ok(())),
                    Some(false) => None,
                    None => Some(Err(())),
                })
                .await;
            match committed {
                Some(Ok(())) => {}
                Some(Err(())) => return Err(not_leader(shared, i)),
                None => return Ok(Written::CommitTimeout),
            }
            if !idempotent {
                shared.mutate(|w| w.acknowledged += 1);
            }
            Ok(Written::Success {
                revision: (revision != u64::MAX).then_some(revision),
                position,
            })
        }
    }
}

fn read(
    shared: &Shared,
    i: usize,
    body: Bytes,
    requires_leader: bool,
) -> Result<Vec<Bytes>, Status> {
    use streams::read_req::options::{self as ro, stream_options::RevisionOption};
    use streams::read_resp::{self as rr, read_event};
    let req = decode_frames::<streams::ReadReq>(body)?
        .into_iter()
        .next()
        .and_then(|r| r.options)
        .ok_or_else(|| Status::new(INVALID_ARGUMENT, "no read options"))?;
    if requires_leader && !shared.lock().nodes[i].leads() {
        return Err(not_leader(shared, i));
    }
    let Some(ro::StreamOption::Stream(so)) = req.stream_option else {
        return Err(Status::new(
            UNIMPLEMENTED,
            "reading $all is not served by the simulator",
        ));
    };
    let count = match req.count_option {
        Some(ro::CountOption::Count(c)) => c,
        Some(ro::CountOption::Subscription(_)) => {
            return Err(Status::new(
                UNIMPLEMENTED,
                "subscriptions are not served by the simulator",
            ))
        }
        None => u64::MAX,
    };
    let sid = so
        .stream_identifier
        .ok_or_else(|| Status::new(INVALID_ARGUMENT, "no stream"))?;
    let stream = String::from_utf8_lossy(&sid.stream_name).into_owned();
    let backwards = req.read_direction == ro::ReadDirection::Backwards as i32;
    let structured = matches!(
        req.uuid_option.and_then(|u| u.content),
        Some(ro::uuid_option::Content::Structured(()))
    );
    let events = shared.lock().events(i, &stream);
    if events.is_empty() {
        return Ok(vec![frame(&streams::ReadResp {
            content: Some(rr::Content::StreamNotFound(rr::StreamNotFound {
                stream_identifier: Some(sid),
            })),
        })]);
    }
    let selected: Vec<_> = if backwards {
        let from = match so.revision_option {
            Some(RevisionOption::Revision(r)) => r,
            _ => u64::MAX,
        };
        events
            .into_iter()
            .rev()
            .filter(|(_, e)| e.number <= from)
            .take(count as usize)
            .collect()
    } else {
        let from = match so.revision_option {
            Some(RevisionOption::Revision(r)) => r,
            Some(RevisionOption::End(())) => u64::MAX,
            _ => 0,
        };
        events
            .into_iter()
            .filter(|(_, e)| e.number >= from)
            .take(count as usize)
            .collect()
    };
    let uuid = |id: Uuid| {
        if structured {
            let (hi, lo) = id.as_u64_pair();
            common::Uuid {
                value: Some(common::uuid::Value::Structured(common::uuid::Structured {
                    most_significant_bits: hi as i64,
                    least_significant_bits: lo as i64,
                })),
            }
        } else {
            grpc_uuid(id)
        }
    };
    Ok(selected
        .into_iter()
        .map(|(pos, e)| {
            let mut metadata = std::collections::HashMap::new();
            metadata.insert("type".to_string(), e.event_type.clone());
            metadata.insert("content-type".to_string(), e.content_type.clone());
            metadata.insert("created".to_string(), e.created.to_string());
            frame(&streams::ReadResp {
                content: Some(rr::Content::Event(rr::ReadEvent {
                    event: Some(read_event::RecordedEvent {
                        id: Some(uuid(e.id)),
                        stream_identifier: Some(common::StreamIdentifier {
                            stream_name: Bytes::from(e.stream.clone().into_bytes()),
                        }),
                        stream_revision: e.number,
                        prepare_position: pos,
                        commit_position: pos,
                        metadata,
                        custom_metadata: Bytes::from(e.custom_metadata),
                        data: Bytes::from(e.data),
                    }),
                    link: None,
                    position: Some(read_event::Position::CommitPosition(pos)),
                })),
            })
        })
        .collect())
}
