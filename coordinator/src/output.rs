//! Machine output: under `--output json` every command prints compact JSON
//! objects, one per line, each opening with `schema` (what it is and its
//! version, e.g. `switchyard.event/v1`) and `ts` (when it was printed, RFC
//! 3339 UTC). The schemas are documented in docs/schemas/.

use crate::journal::{format_ms, now_ms};
use serde_json::{Map, Value};

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
