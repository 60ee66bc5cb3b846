//! The stream the controller owns, `switchyard-control`: its metadata holds
//! the coordinator's fencing token and the priorities Switchyard set; its
//! events are the verification appends of each switchover.
//!
//! EventStoreDB has no fence a client can raise against a leader, so the
//! token guards Switchyard itself: the fencing layer reads the stamp
//! (token, execution) before every mutating step through the controller's
//! [`switchyard_controller::TokenRecord`] hook, and [`record`] writes it
//! with an expected-revision check, so two coordinators cannot both advance
//! it. The server enforces only that compare-and-set, not the token.

use crate::error::EsdbError;
use kurrentdb::{
    AppendToStreamOptions, Client, ReadStreamOptions, StreamMetadataBuilder, StreamMetadataResult,
    StreamPosition, StreamState,
};
use std::collections::BTreeMap;
use switchyard_controller::fencing::{self, Admission};
use switchyard_controller::{ErrorKind, FencingToken, OpContext, Stamp};

/// The stream the controller owns.
pub const CONTROL_STREAM: &str = "switchyard-control";

const TOKEN: &str = "switchyardFencingToken";
const EXECUTION: &str = "switchyardExecution";
const REGION: &str = "switchyardPreferredRegion";
const PRIORITIES: &str = "switchyardPriorities";

/// What the control stream's metadata holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Control {
    /// Highest fencing token recorded.
    pub token: u64,
    /// Execution that recorded it.
    pub execution: String,
    /// Region Switchyard last made preferred.
    pub preferred_region: Option<String>,
    /// Runtime priorities Switchyard set, by member name.
    pub priorities: BTreeMap<String, i64>,
    /// Revision of the metadata event (`None`: never written).
    pub revision: Option<u64>,
}

/// Read the control metadata from the leader.
pub async fn read(client: &Client) -> Result<Control, EsdbError> {
    let opts = ReadStreamOptions::default()
        .backwards()
        .position(StreamPosition::End)
        .max_count(1)
        .requires_leader(true);
    match client
        .get_stream_metadata(CONTROL_STREAM, &opts)
        .await
        .map_err(|e| EsdbError::client("reading the control stream's metadata", e))?
    {
        StreamMetadataResult::NotFound => Ok(Control::default()),
        StreamMetadataResult::Deleted => Err(EsdbError::new(
            ErrorKind::Refused,
            format!("stream {CONTROL_STREAM} was deleted; Switchyard owns it"),
        )),
        StreamMetadataResult::Success(v) => {
            let p = &v.metadata().custom_properties;
            Ok(Control {
                token: p.get(TOKEN).and_then(|t| t.as_u64()).unwrap_or(0),
                execution: p
                    .get(EXECUTION)
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
                    .to_string(),
                preferred_region: p.get(REGION).and_then(|t| t.as_str()).map(str::to_string),
                priorities: p
                    .get(PRIORITIES)
                    .and_then(|t| serde_json::from_value(t.clone()).ok())
                    .unwrap_or_default(),
                revision: Some(v.version()),
            })
        }
    }
}

/// Write `c` if the metadata is still at `c.revision` (compare and set).
pub async fn write(client: &Client, c: &Control) -> Result<(), EsdbError> {
    let meta = StreamMetadataBuilder::new()
        .insert_custom_property(TOKEN, c.token)
        .insert_custom_property(EXECUTION, &c.execution)
        .insert_custom_property(REGION, &c.preferred_region)
        .insert_custom_property(PRIORITIES, &c.priorities)
        .build();
    let state = match c.revision {
        Some(r) => StreamState::StreamRevision(r),
        None => StreamState::NoStream,
    };
    client
        .set_stream_metadata(
            CONTROL_STREAM,
            &AppendToStreamOptions::default().stream_state(state),
            &meta,
        )
        .await
        .map(|_| ())
        .map_err(|e| EsdbError::client("recording in the control stream's metadata", e))
}

impl Control {
    /// The fencing stamp the metadata holds (`None`: never recorded).
    pub fn stamp(&self) -> Option<Stamp> {
        (self.token > 0 || !self.execution.is_empty()).then(|| Stamp {
            token: FencingToken(self.token),
            execution: self.execution.clone(),
            member: None,
        })
    }

    /// Refuse what the fencing rule does not admit against this metadata.
    pub fn admit(&self, ctx: &OpContext) -> Result<Admission, EsdbError> {
        fencing::admit(self.stamp().as_ref(), ctx).map_err(|r| {
            EsdbError::new(
                ErrorKind::Refused,
                format!(
                    "{} (recorded in {CONTROL_STREAM})",
                    r.into_error("", ctx).message()
                ),
            )
        })
    }
}

/// Record `ctx`'s stamp with an expected-revision check, so two coordinators
/// cannot both advance it; a concurrent write is read again and re-checked
/// by the fencing rule. Returns the control metadata as it stands afterwards.
pub async fn record(client: &Client, ctx: &OpContext) -> Result<Control, EsdbError> {
    for _ in 0..5 {
        let mut c = read(client).await?;
        if c.admit(ctx)? == Admission::Recorded {
            return Ok(c);
        }
        c.token = ctx.token.get();
        c.execution = ctx.execution_id.clone();
        match write(client, &c).await {
            Ok(()) => {
                c.revision = Some(c.revision.map_or(0, |r| r + 1));
                return Ok(c);
            }
            // Someone else wrote in between: read again and re-check.
            Err(e) if e.kind() == ErrorKind::Refused => continue,
            Err(e) => return Err(e),
        }
    }
    Err(EsdbError::new(
        ErrorKind::NotReady,
        format!("the metadata of {CONTROL_STREAM} kept changing while recording the fencing token"),
    ))
}
