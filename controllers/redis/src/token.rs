//! The coordinator's fencing token, kept in the store itself so a
//! coordinator that lost its leadership cannot keep mutating it.
//!
//! The hash `switchyard:<store>` on the master holds `token` (the highest
//! `OpContext::token` that acted), `execution`, and the promotion record
//! (`term`, `promoted`) and a fenced master's own `baseline_min_replicas`.
//! It replicates to every replica like any key, so the fencing layer reads
//! the highest token any reachable member holds ([`TokenRecord`]) before
//! every mutating operation, and the master re-checks the same rule
//! atomically in the script that writes it: a lower token, or the same
//! token from another execution, is refused by the store itself. No token
//! value is exempt.

use crate::config::MemberSpec;
use crate::RedisController;
use async_trait::async_trait;
use switchyard_controller::{ErrorKind, FencingToken, OpContext, Result, Stamp, TokenRecord};

/// Refuses a token lower than the stored one; writes the token and, when
/// given, the promotion record and the baseline in one step.
const RECORD_SCRIPT: &str = r#"
local key = KEYS[1]
local tok = tonumber(ARGV[1])
local cur = redis.call('HGET', key, 'token')
if cur then
  cur = tonumber(cur)
  if tok < cur then
    return redis.error_reply('STALE fencing token ' .. ARGV[1] .. ' is below ' .. cur)
  end
  local ex = redis.call('HGET', key, 'execution') or ''
  if tok == cur and ex ~= ARGV[2] then
    return redis.error_reply('STALE fencing token ' .. ARGV[1] .. ' already used by execution ' .. ex)
  end
end
redis.call('HSET', key, 'token', ARGV[1], 'execution', ARGV[2])
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
    /// Write the token (and `w`) on `master`, which must accept writes.
    pub(crate) async fn record(
        &self,
        master: &MemberSpec,
        ctx: &OpContext,
        w: RecordWrite,
    ) -> Result<()> {
        let mut cmd = redis::cmd("EVAL");
        let (term, promoted) = w
            .promotion
            .map(|(t, m)| (t.to_string(), m))
            .unwrap_or_default();
        cmd.arg(RECORD_SCRIPT)
            .arg(1)
            .arg(self.record_key())
            .arg(ctx.token.get().to_string())
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
                        ctx.token
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

#[async_trait]
impl TokenRecord for RedisController {
    async fn read_stamp(&self) -> Result<Option<Stamp>> {
        let snap = self.snapshot().await;
        let p = snap.best_record().ok_or_else(|| {
            self.err(
                ErrorKind::Unreachable,
                "no member reachable: the recorded fencing token cannot be read",
            )
        })?;
        // A hash without a token field reads as 0 with no execution:
        // nothing was recorded yet.
        Ok(
            (p.record.token > 0 || !p.record.execution.is_empty()).then(|| Stamp {
                token: FencingToken(p.record.token),
                execution: p.record.execution.clone(),
                member: Some(p.spec.name.clone()),
            }),
        )
    }

    async fn write_stamp(&self, stamp: &Stamp) -> Result<bool> {
        let snap = self.snapshot().await;
        let Some(master) = snap.master() else {
            return Ok(false);
        };
        let ctx = OpContext::new(stamp.execution.clone(), stamp.token);
        self.record(&master.spec, &ctx, RecordWrite::default())
            .await
            .map(|()| true)
    }
}
