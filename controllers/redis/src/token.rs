//! The coordinator's fencing token, kept in the store itself so a
//! coordinator that lost its leadership cannot keep mutating it.
//!
//! The hash `switchyard:<store>` on the master holds `token` (the highest
//! `OpContext::epoch` that acted), `execution`, and the promotion record
//! (`term`, `promoted`) and a fenced master's own `baseline_min_replicas`.
//! It replicates to every replica like any key, so the highest token any
//! reachable member holds is checked before every mutating operation, and
//! the master re-checks it atomically in the script that writes it. Token
//! 0 (ad-hoc use, tests) is neither checked nor recorded.

use crate::config::MemberSpec;
use crate::observe::Snapshot;
use crate::RedisController;
use switchyard_controller::{ErrorKind, OpContext, Result};

/// Refuses a token lower than the stored one; writes the token and, when
/// given, the promotion record and the baseline in one step.
const RECORD_SCRIPT: &str = r#"
local key = KEYS[1]
if ARGV[1] ~= '' then
  local tok = tonumber(ARGV[1])
  local cur = tonumber(redis.call('HGET', key, 'token') or '0')
  if tok < cur then
    return redis.error_reply('STALE fencing token ' .. ARGV[1] .. ' is below ' .. cur)
  end
  redis.call('HSET', key, 'token', ARGV[1], 'execution', ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('HSET', key, 'term', ARGV[3], 'promoted', ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('HSET', key, 'baseline_min_replicas', ARGV[5])
end
return 1
"#;

/// What to write besides the token.
#[derive(Debug, Default)]
pub(crate) struct RecordWrite {
    /// (term, promoted member).
    pub promotion: Option<(u64, String)>,
    /// The master's own min-replicas-to-write, before fencing.
    pub baseline_min_replicas: Option<i64>,
}

impl RedisController {
    pub(crate) fn check_token(&self, snap: &Snapshot, ctx: &OpContext) -> Result<()> {
        if ctx.epoch == 0 {
            return Ok(());
        }
        if let Some((seen, at)) = snap.token() {
            if ctx.epoch < seen {
                return Err(self
                    .err(
                        ErrorKind::Refused,
                        format!(
                            "stale coordinator: operation carries fencing token {} but token \
                             {seen} already acted on this store",
                            ctx.epoch
                        ),
                    )
                    .with_member(at));
            }
        }
        Ok(())
    }

    /// Write the token (and `w`) on `master`, which must accept writes.
    pub(crate) async fn record(
        &self,
        master: &MemberSpec,
        ctx: &OpContext,
        w: RecordWrite,
    ) -> Result<()> {
        if ctx.epoch == 0 && w.promotion.is_none() && w.baseline_min_replicas.is_none() {
            return Ok(());
        }
        let mut cmd = redis::cmd("EVAL");
        let (term, promoted) = w
            .promotion
            .map(|(t, m)| (t.to_string(), m))
            .unwrap_or_default();
        cmd.arg(RECORD_SCRIPT)
            .arg(1)
            .arg(self.record_key())
            .arg(if ctx.epoch == 0 {
                String::new()
            } else {
                ctx.epoch.to_string()
            })
            .arg(&ctx.execution_id)
            .arg(term)
            .arg(promoted)
            .arg(
                w.baseline_min_replicas
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
            );
        self.run_cmd::<i64>(master, &cmd).await.map_err(|e| {
            if e.message().contains("STALE") || e.to_string().contains("STALE") {
                self.err(
                    ErrorKind::Refused,
                    format!(
                        "stale coordinator: the master refused fencing token {}: {e}",
                        ctx.epoch
                    ),
                )
                .with_member(&master.name)
            } else {
                e
            }
        })?;
        Ok(())
    }
}
