//! Machine output: under `--output json` every command prints compact JSON
//! objects, one per line, each opening with `schema` (what it is and its
//! version, e.g. `switchyard.event/v1`) and `ts` (when it was printed, RFC
//! 3339 UTC). The schemas are documented in docs/schemas/.

use crate::journal::{format_ms, now_ms, LedgerEntry};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Progress events, execution reports, abort and drill reports.
pub const EVENT: &str = "switchyard.event/v1";
/// `state`.
pub const STATE: &str = "switchyard.state/v1";
/// `plan failover --output json`: a plan `run` accepts back.
pub const PLAN: &str = "switchyard.plan/v1";
/// One row of `executions` / `history`, or the result of `executions close`.
pub const EXECUTION: &str = "switchyard.execution/v1";
/// `show`: one execution's report and journal.
pub const SHOW: &str = "switchyard.show/v1";
/// How a command ended when it printed nothing else: an error (with its
/// exit code and message), or a notice such as "nothing to do".
pub const RESULT: &str = "switchyard.result/v1";

/// Whether this process printed a JSON line on stdout yet.
static PRINTED: AtomicBool = AtomicBool::new(false);
/// What the command said on stderr last, for its result line.
static NOTICE: Mutex<Option<String>> = Mutex::new(None);

/// Record that a JSON line went to stdout.
pub fn printed() {
    PRINTED.store(true, Ordering::Relaxed);
}

/// Say `message` on stderr (`switchyard: …`), and keep it for the result
/// line should the command print nothing else.
pub fn notice(message: &str) {
    eprintln!("switchyard: {message}");
    *NOTICE.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.to_string());
}

/// Under `--output json`, a command that printed no line of its own (it
/// failed before, was refused, declined, or had nothing to do) prints one
/// `switchyard.result/v1` line, so an orchestrator always reads an object:
/// `exit_code`, `outcome` (the exit code's meaning, docs/cli.md) and the
/// `message` stderr carried.
pub fn result_line_if_silent(code: i32, error: Option<&str>) {
    if PRINTED.load(Ordering::Relaxed) {
        return;
    }
    let notice = NOTICE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let message = error.map(str::to_string).or(notice);
    line(
        RESULT,
        serde_json::json!({
            "exit_code": code,
            "outcome": crate::cli::exit::meaning(code),
            "message": message,
        }),
    );
}

/// `body`'s fields after `schema` and `ts` (a non-object body goes under
/// `value`).
pub fn envelope(schema: &str, body: Value) -> Value {
    let mut obj = Map::new();
    obj.insert("schema".into(), schema.into());
    obj.insert("ts".into(), format_ms(now_ms()).into());
    match body {
        Value::Object(fields) => {
            for (k, v) in fields {
                if k != "schema" && k != "ts" {
                    obj.insert(k, v);
                }
            }
        }
        other => {
            obj.insert("value".into(), other);
        }
    }
    Value::Object(obj)
}

/// Print `body` as one compact line under `schema`.
pub fn line(schema: &str, body: Value) {
    printed();
    println!("{}", envelope(schema, body));
}

/// A JSON document without the envelope's fields, so that a plan printed
/// by `plan --output json` reads back as a plan.
pub fn strip_envelope(mut v: Value) -> Value {
    if let Value::Object(obj) = &mut v {
        obj.remove("schema");
        obj.remove("ts");
    }
    v
}

/// The body of one `switchyard.execution/v1` line: an execution as
/// `executions` / `history` list it, the result of `executions close`, or
/// of `approve`. Every one names the execution `execution_id`, as the
/// events, reports and the other lines do.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ExecutionLine {
    /// One row of `executions` / `history`.
    Row(LedgerEntry),
    /// `executions close` closed it.
    Closed(ClosedLine),
    /// `approve` approved it.
    Approved(ApprovedLine),
}

/// What `executions close` journaled.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ClosedLine {
    /// Execution id.
    pub execution_id: String,
    /// `closed`.
    #[schemars(schema_with = "schema::closed")]
    pub status: &'static str,
    /// The operator's reason, as journaled.
    pub reason: String,
    /// The damage the close acknowledged (`file:line: message`).
    pub damage: Vec<String>,
}

/// What `approve` journaled.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ApprovedLine {
    /// Execution id.
    pub execution_id: String,
    /// `approved`.
    #[schemars(schema_with = "schema::approved")]
    pub status: &'static str,
    /// Who approved it (as the journal records them).
    #[schemars(with = "crate::approval::Identity")]
    pub approver: Value,
}

/// The body of the `switchyard.show/v1` line: one execution's report,
/// every journal record that could be read, and where it could not.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ShowBody<'a> {
    /// The report built from the journal.
    pub report: &'a crate::report::ExecutionReport,
    /// The journal's records, as written (docs/coordinator.md, Journal).
    pub journal: &'a [crate::journal::Record],
    /// Every corrupt line of the journal.
    pub damage: &'a [crate::journal::Damage],
}

/// Print `body` as one `switchyard.execution/v1` line.
pub fn execution_line(body: ExecutionLine) {
    line(EXECUTION, serde_json::to_value(body).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_and_ts_come_first() {
        let v = envelope(EVENT, json!({"event": "x", "schema": "forged"}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["schema", "ts", "event"]);
        assert_eq!(v["schema"], EVENT);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(strip_envelope(v), json!({"event": "x"}));
    }
}

/// The JSON Schemas of every line `--output json` prints (docs/schemas/),
/// generated from the types that produce them.
pub mod schema {
    use crate::health::{StoreHealth, Unfinished};
    use crate::progress::ProgressEvent;
    use crate::report::ExecutionReport;
    use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
    use serde_json::Value;

    /// RFC 3339 UTC time.
    fn ts(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time", "pattern": "Z$"})
    }

    fn constant(c: &str) -> Schema {
        json_schema!({"type": "string", "const": c})
    }

    fn state_schema(_: &mut SchemaGenerator) -> Schema {
        constant(super::STATE)
    }
    fn event_schema(_: &mut SchemaGenerator) -> Schema {
        constant(super::EVENT)
    }
    fn plan_schema(_: &mut SchemaGenerator) -> Schema {
        constant(super::PLAN)
    }
    fn execution_schema(_: &mut SchemaGenerator) -> Schema {
        constant(super::EXECUTION)
    }
    pub(super) fn closed(_: &mut SchemaGenerator) -> Schema {
        constant("closed")
    }
    pub(super) fn approved(_: &mut SchemaGenerator) -> Schema {
        constant("approved")
    }
    fn show_schema(_: &mut SchemaGenerator) -> Schema {
        constant(super::SHOW)
    }
    fn result_schema(_: &mut SchemaGenerator) -> Schema {
        constant(super::RESULT)
    }
    fn outcomes(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = crate::cli::exit::ALL
            .iter()
            .map(|c| crate::cli::exit::meaning(*c))
            .collect();
        json_schema!({"type": "string", "enum": names})
    }

    /// How a command ended that printed no other line under `--output json`.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct ResultLine {
        /// `switchyard.result/v1`.
        #[schemars(schema_with = "result_schema")]
        schema: String,
        /// When it was printed.
        #[schemars(schema_with = "ts")]
        ts: String,
        /// The process's exit code (docs/cli.md, Exit codes).
        exit_code: i32,
        /// What the exit code means, as a word.
        #[schemars(schema_with = "outcomes")]
        outcome: String,
        /// What stderr said (`switchyard: …`), without the prefix.
        message: Option<String>,
    }

    /// `switchyard state --output json`.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct StateLine {
        /// `switchyard.state/v1`.
        #[schemars(schema_with = "state_schema")]
        schema: String,
        /// When it was printed.
        #[schemars(schema_with = "ts")]
        ts: String,
        /// Topology name.
        topology: String,
        /// The open execution, if any.
        unfinished_execution: Option<Unfinished>,
        /// Per store.
        stores: Vec<StateStore>,
    }

    /// One store of [`StateLine`]: its verdict and observation, or why it
    /// could not be observed.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct StateStore {
        /// Store name.
        store: String,
        /// Verdict.
        #[serde(default)]
        health: Option<StoreHealth>,
        /// What the controller observed (members, roles, positions, lag).
        #[serde(default)]
        state: Option<Value>,
        /// Why it could not be observed.
        #[serde(default)]
        error: Option<String>,
    }

    /// Every line of an execution's event stream.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct EventLine {
        /// `switchyard.event/v1`.
        #[schemars(schema_with = "event_schema")]
        schema: String,
        /// When it was reported.
        #[schemars(schema_with = "ts")]
        ts: String,
        /// The event (`event` names it).
        #[serde(flatten)]
        body: EventBody,
    }

    /// What an event line says.
    #[derive(JsonSchema)]
    #[serde(untagged)]
    #[allow(dead_code)]
    pub enum EventBody {
        /// Live progress.
        Progress(ProgressEvent),
        /// An execution's final report (`event: report`), or the reports of
        /// an abort or a drill.
        Report(ReportEvent),
    }

    /// `event: report`, `abort_report`, `drill_report`.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct ReportEvent {
        /// `report`, `abort_report` or `drill_report`.
        #[schemars(schema_with = "report_names")]
        event: String,
        /// The execution's report (`report`).
        #[serde(default)]
        report: Option<ExecutionReport>,
    }

    fn report_names(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "enum": ["report", "abort_report", "drill_report"]})
    }

    /// `switchyard plan failover --output json`: the plan `run` reads back.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct PlanLine {
        /// `switchyard.plan/v1`.
        #[schemars(schema_with = "plan_schema")]
        schema: String,
        /// When it was printed.
        #[schemars(schema_with = "ts")]
        ts: String,
        /// The plan.
        #[serde(flatten)]
        plan: crate::plan::Plan,
    }

    /// `executions` / `history` (a line per execution), `executions
    /// close`, `approve`.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct ExecutionLine {
        /// `switchyard.execution/v1`.
        #[schemars(schema_with = "execution_schema")]
        schema: String,
        /// When it was printed.
        #[schemars(schema_with = "ts")]
        ts: String,
        /// The execution.
        #[serde(flatten)]
        body: super::ExecutionLine,
    }

    /// `switchyard show ID --output json`.
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    pub struct ShowLine {
        /// `switchyard.show/v1`.
        #[schemars(schema_with = "show_schema")]
        schema: String,
        /// When it was printed.
        #[schemars(schema_with = "ts")]
        ts: String,
        /// The execution.
        #[serde(flatten)]
        body: super::ShowBody<'static>,
    }

    /// `(file name under docs/schemas/, schema)` for every line kind.
    pub fn all() -> Vec<(&'static str, Value)> {
        let of = |s: Schema| s.to_value();
        vec![
            ("state.schema.json", of(schemars::schema_for!(StateLine))),
            ("event.schema.json", of(schemars::schema_for!(EventLine))),
            ("plan.schema.json", of(schemars::schema_for!(PlanLine))),
            (
                "execution.schema.json",
                of(schemars::schema_for!(ExecutionLine)),
            ),
            ("show.schema.json", of(schemars::schema_for!(ShowLine))),
            ("result.schema.json", of(schemars::schema_for!(ResultLine))),
        ]
    }
}
