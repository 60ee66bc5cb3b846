//! What a forced failover may lose, by the account's consistency level.
//!
//! Cosmos DB replicates to other regions synchronously only under strong
//! consistency. Bounded staleness bounds how far a region may lag (by
//! `maxStalenessPrefix` writes and `maxIntervalInSeconds`); session,
//! consistent prefix and eventual bound nothing, so the loss is unknown —
//! and unknown is reported as unknown, never as zero.

use crate::arm::ConsistencyPolicy;
use switchyard_controller::DataLossEstimate;

/// The estimate for `policy` (unknown when ARM reported none).
pub fn estimate(policy: Option<&ConsistencyPolicy>) -> DataLossEstimate {
    let Some(p) = policy else {
        return DataLossEstimate {
            note: "consistency policy unknown: the writes a forced failover loses are unknown"
                .into(),
            ..DataLossEstimate::default()
        };
    };
    match p.default_consistency_level.as_str() {
        "Strong" => DataLossEstimate {
            bytes: None,
            millis: Some(0),
            writes: Some(0),
            note: "Strong consistency: every acknowledged write is in every region; a forced failover loses none".into(),
        },
        "BoundedStaleness" => {
            let k = p.max_staleness_prefix;
            let t = p.max_interval_in_seconds;
            DataLossEstimate {
                bytes: None,
                millis: t.map(|s| s * 1000),
                writes: k,
                note: format!(
                    "BoundedStaleness: a region lags by at most {} writes and {} s; a forced failover loses at most that",
                    k.map_or("an unknown number of".into(), |k| k.to_string()),
                    t.map_or("an unknown number of".into(), |t| t.to_string())
                ),
            }
        }
        level => DataLossEstimate {
            note: format!(
                "{level} consistency: replication to other regions is asynchronous and unbounded; the writes a forced failover loses are unknown"
            ),
            ..DataLossEstimate::default()
        },
    }
}

/// Whether `est` fits the store's `max_lag_ms` (no bound: anything fits; an
/// unknown loss never fits a bound).
pub fn within(est: &DataLossEstimate, max_lag_ms: Option<u64>) -> Result<(), String> {
    let Some(bound) = max_lag_ms else {
        return Ok(());
    };
    match est.millis {
        Some(ms) if ms <= bound => Ok(()),
        Some(ms) => Err(format!(
            "a forced failover may lose up to {ms} ms of writes, more than max_lag_ms = {bound} ({}); accept data loss to go ahead",
            est.note
        )),
        None => Err(format!(
            "the loss of a forced failover is unknown and max_lag_ms = {bound} ({}); accept data loss to go ahead",
            est.note
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(level: &str) -> ConsistencyPolicy {
        ConsistencyPolicy {
            default_consistency_level: level.into(),
            max_staleness_prefix: Some(100_000),
            max_interval_in_seconds: Some(300),
        }
    }

    #[test]
    fn each_level() {
        let s = estimate(Some(&policy("Strong")));
        assert_eq!((s.writes, s.millis), (Some(0), Some(0)));
        let b = estimate(Some(&policy("BoundedStaleness")));
        assert_eq!((b.writes, b.millis), (Some(100_000), Some(300_000)));
        for l in ["Session", "ConsistentPrefix", "Eventual"] {
            let e = estimate(Some(&policy(l)));
            assert_eq!((e.writes, e.millis), (None, None), "{l}");
            assert!(e.note.contains("unknown"), "{l}: {}", e.note);
        }
        assert!(within(&s, Some(0)).is_ok());
        assert!(within(&b, Some(1000)).is_err());
        assert!(within(&estimate(Some(&policy("Session"))), Some(1000)).is_err());
        assert!(within(&estimate(Some(&policy("Session"))), None).is_ok());
    }
}
