//! `Streams.BatchAppend` as the server's `BatchAppendWorker` serves it
//! (EventStore `src/EventStore.Core/Services/Transport/Grpc/Streams.BatchAppend.cs`):
//! a bidirectional stream of `BatchAppendReq` chunks keyed by correlation id.
//! The chunk carrying `options` opens a request (stream, expected position,
//! deadline), later chunks add proposed messages, the `is_final` chunk
//! writes it; each written request is answered on the response stream, out
//! of order, by one `BatchAppendResp` with `success` or a `google.rpc.Status`
//! `error`. A not-leader answer ends the whole call with the not-leader
//! status and trailers, as the server's throw inside its callback does.

use super::proto::{common, google_rpc, streams};
use super::server::{
    frame, parse_uuid, proposed, write, Body, Status, Written, COMMIT_TIMEOUT, INVALID_ARGUMENT,
    NOT_FOUND,
};
use super::world::{Expected, Proposed};
use super::Shared;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Response};
use prost::Message;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use streams::batch_append_req::options::{DeadlineOption, ExpectedStreamPosition as Esp};
use streams::batch_append_resp::{self as bar, success};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

/// The server's default `MaxAppendSize` (1 MiB): a request whose events
/// grow past it is answered `MaximumAppendSizeExceeded`.
const MAX_APPEND_SIZE: usize = 1_048_576;

/// google.rpc.Code values the server puts in `BatchAppendResp.error`.
const ALREADY_EXISTS: i32 = 6;
const DEADLINE_EXCEEDED: i32 = 4;
const BAD_REQUEST: i32 = INVALID_ARGUMENT as i32;

type Out = Result<Frame<Bytes>, Infallible>;

/// Answer one `BatchAppend` call on node `i`: the response headers go out at
/// once, answers follow as the writes complete.
pub fn serve(shared: Arc<Shared>, i: usize, body: Incoming) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel::<Out>();
    tokio::spawn(async move {
        let end = work(&shared, i, body, &tx).await;
        let _ = tx.send(Ok(Frame::trailers(trailers(end))));
    });
    let out = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(BodyExt::boxed(StreamBody::new(out)))
        .expect("static response")
}

fn trailers(end: Result<(), Status>) -> HeaderMap {
    let mut t = HeaderMap::new();
    let (code, message, extra) = match end {
        Ok(()) => (0, String::new(), Vec::new()),
        Err(s) => (s.code, s.message, s.trailers),
    };
    t.insert("grpc-status", code.to_string().parse().expect("digits"));
    if let Ok(m) = message.parse() {
        if !message.is_empty() {
            t.insert("grpc-message", m);
        }
    }
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            t.insert(k, v);
        }
    }
    t
}

/// A request whose `is_final` chunk has not arrived yet.
struct Pending {
    stream: String,
    expected: Expected,
    events: Vec<Proposed>,
    size: usize,
    /// The request's deadline (`min(requested, write timeout)`): a request
    /// still open then is dropped and answered `Timeout`.
    deadline: Instant,
}

/// One response to send on the stream, or the status that ends the call.
type Answer = Result<streams::BatchAppendResp, Status>;

async fn work(
    shared: &Arc<Shared>,
    i: usize,
    mut body: Incoming,
    tx: &mpsc::UnboundedSender<Out>,
) -> Result<(), Status> {
    let mut pending: HashMap<Uuid, Pending> = HashMap::new();
    let mut buf = BytesMut::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Answer>();
    let mut in_flight = 0usize;
    let mut reading = true;
    let send = |resp: &streams::BatchAppendResp| tx.send(Ok(Frame::data(frame(resp)))).is_ok();
    loop {
        if !reading && in_flight == 0 {
            // Half-closed and every written request answered: the call ends;
            // requests still waiting for their final chunk are dropped.
            return Ok(());
        }
        let next_deadline = pending.values().map(|p| p.deadline).min();
        tokio::select! {
            f = body.frame(), if reading => match f {
                None => reading = false,
                // The connection is gone: nobody is left to answer.
                Some(Err(_)) => return Ok(()),
                Some(Ok(f)) => {
                    let Ok(data) = f.into_data() else { continue };
                    buf.extend_from_slice(&data);
                    while let Some(req) = next_request(&mut buf)? {
                        let answer = accept(shared, i, req, &mut pending, &done_tx, &mut in_flight);
                        if let Some(resp) = answer {
                            if !send(&resp) {
                                return Ok(());
                            }
                        }
                    }
                }
            },
            Some(answer) = done_rx.recv(), if in_flight > 0 => {
                in_flight -= 1;
                if !send(&answer?) {
                    return Ok(());
                }
            }
            () = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)), if next_deadline.is_some() => {
                let now = Instant::now();
                let expired: Vec<Uuid> = pending
                    .iter()
                    .filter(|(_, p)| p.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    let p = pending.remove(&id).expect("listed above");
                    if !send(&error(Some(id), Some(&p.stream), timeout_status())) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The next whole gRPC message in `buf`, if one has arrived.
fn next_request(buf: &mut BytesMut) -> Result<Option<streams::BatchAppendReq>, Status> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf[0] != 0 {
        return Err(Status::new(INVALID_ARGUMENT, "compressed gRPC frame"));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    let msg = buf.split_to(len).freeze();
    streams::BatchAppendReq::decode(msg)
        .map(Some)
        .map_err(|e| Status::new(INVALID_ARGUMENT, e.to_string()))
}

/// Take one chunk; an immediate answer (a refused request) is returned, a
/// written request is answered later through `done`.
fn accept(
    shared: &Arc<Shared>,
    i: usize,
    req: streams::BatchAppendReq,
    pending: &mut HashMap<Uuid, Pending>,
    done: &mpsc::UnboundedSender<Answer>,
    in_flight: &mut usize,
) -> Option<streams::BatchAppendResp> {
    let Some(id) = parse_uuid(&req.correlation_id) else {
        return Some(error(None, None, bad_request("correlation id")));
    };
    if let Some(opts) = &req.options {
        let Some(sid) = &opts.stream_identifier else {
            return Some(error(
                Some(id),
                None,
                bad_request("Required field StreamIdentifier not set."),
            ));
        };
        let stream = String::from_utf8_lossy(&sid.stream_name).into_owned();
        let Some(expected) = opts.expected_stream_position.map(|e| match e {
            Esp::StreamPosition(r) => Expected::Revision(r),
            Esp::NoStream(()) => Expected::NoStream,
            Esp::Any(()) => Expected::Any,
            Esp::StreamExists(()) => Expected::StreamExists,
        }) else {
            return Some(error(
                Some(id),
                Some(&stream),
                bad_request("expected stream position not set"),
            ));
        };
        let timeout = requested_timeout(opts.deadline_option).min(COMMIT_TIMEOUT);
        if timeout.is_zero() {
            return Some(error(Some(id), Some(&stream), timeout_status()));
        }
        // A repeated `options` chunk for an open request keeps the first.
        pending.entry(id).or_insert(Pending {
            stream,
            expected,
            events: Vec::new(),
            size: 0,
            deadline: Instant::now() + timeout,
        });
    }
    let p = pending.get_mut(&id)?;
    for m in req.proposed_messages {
        match proposed(m.id, m.metadata, m.custom_metadata, m.data) {
            Ok(e) => {
                p.size += e.event_type.len() + e.data.len() + e.custom_metadata.len();
                p.events.push(e);
            }
            Err(s) => {
                return Some(error(
                    Some(id),
                    Some(p.stream.as_str()),
                    bad_request(&s.message),
                ))
            }
        }
    }
    if p.size > MAX_APPEND_SIZE {
        let p = pending.remove(&id).expect("present");
        return Some(error(
            Some(id),
            Some(&p.stream),
            google_rpc::Status {
                code: BAD_REQUEST,
                message: "MaximumAppendSizeExceeded".into(),
                details: Some(any(
                    "event_store.client.MaximumAppendSizeExceeded",
                    &common::MaximumAppendSizeExceeded {
                        max_append_size: MAX_APPEND_SIZE as u32,
                    },
                )),
            },
        ));
    }
    if !req.is_final {
        return None;
    }
    let p = pending.remove(&id)?;
    *in_flight += 1;
    let (shared, done) = (shared.clone(), done.clone());
    tokio::spawn(async move {
        let answer = written(
            id,
            &p.stream,
            p.expected,
            write(&shared, i, &p.stream, p.expected, p.events).await,
        );
        let _ = done.send(answer);
    });
    None
}

/// The answer to a written request, as the server's `ConvertMessage` maps
/// `WriteEventsCompleted` and `NotHandled`.
fn written(id: Uuid, stream: &str, expected: Expected, w: Result<Written, Status>) -> Answer {
    use common::wrong_expected_version::{
        CurrentStreamRevisionOption as Cur, ExpectedStreamPositionOption as Exp,
    };
    match w {
        Ok(Written::Success { revision, position }) => Ok(resp(
            Some(id),
            Some(stream),
            bar::Result::Success(bar::Success {
                current_revision_option: Some(match revision {
                    Some(r) => success::CurrentRevisionOption::CurrentRevision(r),
                    None => success::CurrentRevisionOption::NoStream(()),
                }),
                position_option: Some(success::PositionOption::Position(
                    common::AllStreamPosition {
                        commit_position: position,
                        prepare_position: position,
                    },
                )),
            }),
        )),
        Ok(Written::WrongExpectedVersion { current }) => {
            let details = common::WrongExpectedVersion {
                current_stream_revision_option: Some(match current {
                    Some(c) => Cur::CurrentStreamRevision(c),
                    None => Cur::CurrentNoStream(()),
                }),
                expected_stream_position_option: Some(match expected {
                    Expected::Revision(r) => Exp::ExpectedStreamPosition(r),
                    Expected::Any => Exp::ExpectedAny(()),
                    Expected::StreamExists => Exp::ExpectedStreamExists(()),
                    Expected::NoStream => Exp::ExpectedNoStream(()),
                }),
            };
            Ok(error(
                Some(id),
                Some(stream),
                google_rpc::Status {
                    code: ALREADY_EXISTS,
                    message: "WrongExpectedVersion".into(),
                    details: Some(any("event_store.client.WrongExpectedVersion", &details)),
                },
            ))
        }
        Ok(Written::CommitTimeout) => Ok(error(Some(id), Some(stream), timeout_status())),
        // Not the leader, with its endpoint: the server throws, which ends the call.
        Err(s) if s.code == NOT_FOUND => Err(s),
        // NotHandled(NotReady): the server sets only the message and an empty
        // detail, leaving the code at 0.
        Err(s) => Ok(error(
            Some(id),
            Some(stream),
            google_rpc::Status {
                code: 0,
                message: s.message,
                details: Some(any("google.protobuf.Empty", &())),
            },
        )),
    }
}

fn requested_timeout(d: Option<DeadlineOption>) -> Duration {
    match d {
        Some(DeadlineOption::Deadline(d)) => {
            if d.seconds < 0 || (d.seconds == 0 && d.nanos <= 0) {
                Duration::ZERO
            } else {
                Duration::new(d.seconds as u64, d.nanos.max(0) as u32)
            }
        }
        // The 21.10 form: an absolute time.
        Some(DeadlineOption::Deadline21100(t)) => {
            let at = SystemTime::UNIX_EPOCH
                + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
            at.duration_since(SystemTime::now()).unwrap_or_default()
        }
        None => Duration::MAX,
    }
}

fn any(type_name: &str, msg: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: msg.encode_to_vec(),
    }
}

fn timeout_status() -> google_rpc::Status {
    google_rpc::Status {
        code: DEADLINE_EXCEEDED,
        message: "Timeout".into(),
        details: Some(any("event_store.client.Timeout", &common::Timeout {})),
    }
}

fn bad_request(message: &str) -> google_rpc::Status {
    google_rpc::Status {
        code: BAD_REQUEST,
        message: "BadRequest".into(),
        details: Some(any(
            "event_store.client.BadRequest",
            &common::BadRequest {
                message: message.to_string(),
            },
        )),
    }
}

/// A response carrying `status` as its error, for `id` on `stream`.
fn error(
    id: Option<Uuid>,
    stream: Option<&str>,
    status: google_rpc::Status,
) -> streams::BatchAppendResp {
    resp(id, stream, bar::Result::Error(status))
}

/// The answer for `id` on `stream`.
fn resp(id: Option<Uuid>, stream: Option<&str>, result: bar::Result) -> streams::BatchAppendResp {
    streams::BatchAppendResp {
        correlation_id: id.map(super::world::grpc_uuid),
        stream_identifier: stream.map(|s| common::StreamIdentifier {
            stream_name: Bytes::from(s.as_bytes().to_vec()),
        }),
        result: Some(result),
        expected_stream_position: None,
    }
}
