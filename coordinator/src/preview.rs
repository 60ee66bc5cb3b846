//! The preview shown before "Execute this plan?": per store, who is primary
//! now and who becomes primary, the candidate's lag against the store's
//! bound, what will be fenced, and the data-loss estimate with its basis —
//! from the plan and a fresh observation, so the operator answers knowing
//! what the answer does.

use crate::health::{bytes, MemberHealth, StoreHealth};
use crate::plan::{Mode, Plan, PlanOp};
use std::fmt::Write as _;
use switchyard_controller::Role;
use switchyard_topology::Topology;

/// The stores a plan promotes, with the region each goes to and the
/// member the operator chose there (`--candidate`), if any.
fn promotions(plan: &Plan) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<(String, String, Option<String>)> = Vec::new();
    for step in plan.stages.iter().flat_map(|s| &s.steps) {
        if let PlanOp::Promote {
            target_region,
            candidate,
            ..
        } = &step.op
        {
            if !out.iter().any(|(s, _, _)| s == &step.store) {
                out.push((step.store.clone(), target_region.clone(), candidate.clone()));
            }
        }
    }
    out
}

fn has_op(plan: &Plan, store: &str, name: &str) -> bool {
    plan.stages
        .iter()
        .flat_map(|s| &s.steps)
        .any(|st| st.store == store && st.op.name() == name)
}

fn lag_text(m: &MemberHealth) -> String {
    match (m.lag_bytes, m.lag_ms) {
        (Some(b), Some(ms)) => format!("{} / {ms} ms", bytes(b)),
        (Some(b), None) => bytes(b),
        (None, Some(ms)) => format!("{ms} ms"),
        (None, None) => "unknown".into(),
    }
}

/// The member of `region` most likely to be promoted: a healthy follower
/// with the highest topology priority, then the least lag.
fn candidate<'a>(
    topology: &Topology,
    h: &'a StoreHealth,
    region: &str,
) -> Option<&'a MemberHealth> {
    let priority = |m: &MemberHealth| {
        topology
            .stores
            .iter()
            .find(|s| s.name == h.store)
            .and_then(|s| s.member(&m.member))
            .map_or(0.0, |t| t.priority)
    };
    h.members
        .iter()
        .filter(|m| m.region == region && matches!(m.role, Role::Secondary | Role::Primary))
        .max_by(|a, b| {
            (a.verdict.word() == "healthy")
                .cmp(&(b.verdict.word() == "healthy"))
                .then(priority(a).total_cmp(&priority(b)))
                .then(
                    b.lag_bytes
                        .unwrap_or(u64::MAX)
                        .cmp(&a.lag_bytes.unwrap_or(u64::MAX)),
                )
        })
}

/// The preview of `plan` over the stores as `health` shows them now.
pub fn render(
    plan: &Plan,
    topology: &Topology,
    health: &[(String, Result<StoreHealth, String>)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Preview: {}", plan.name);
    let forced = plan.mode != Mode::Planned;
    for (store, region, chosen) in promotions(plan) {
        let spec = topology.stores.iter().find(|s| s.name == store);
        let Some((_, Ok(h))) = health.iter().find(|(n, _)| *n == store) else {
            let _ = writeln!(
                out,
                "  {store:<10} cannot observe now: the preview is blind here"
            );
            continue;
        };
        let now = match (&h.primary, &h.primary_region) {
            (Some(p), Some(r)) => format!("{p} ({r})"),
            _ => h.problem.clone().unwrap_or_else(|| "no primary".into()),
        };
        let elects = spec.is_some_and(|s| s.kind.elects());
        let cand = match &chosen {
            Some(m) => h.members.iter().find(|x| &x.member == m),
            None => candidate(topology, h, &region),
        };
        let to = match (cand, elects, &chosen) {
            (Some(c), _, Some(_)) => format!("{} ({region}, chosen by --candidate)", c.member),
            (None, _, Some(m)) => {
                format!("{m} ({region}, chosen by --candidate): not observed now")
            }
            (Some(c), false, None) => format!("{} ({region})", c.member),
            (Some(c), true, None) => format!("{region}: the store elects, likely {}", c.member),
            (None, _, None) => format!("{region}: no member observed there"),
        };
        let _ = writeln!(out, "  {store:<10} {now} → {to}");
        let pad = " ".repeat(13);
        if let Some(c) = cand {
            let bound = spec.map_or(String::new(), |s| match (s.max_lag_bytes, s.max_lag_ms) {
                (Some(b), Some(ms)) => format!(", bound {} / {ms} ms", bytes(b)),
                (Some(b), None) => format!(", bound {} (max_lag_bytes)", bytes(b)),
                (None, Some(ms)) => format!(", bound {ms} ms (max_lag_ms)"),
                (None, None) => ", no lag bound".into(),
            });
            let _ = writeln!(
                out,
                "{pad}candidate {} lag {}{bound}: {}{}",
                c.member,
                lag_text(c),
                c.verdict.word(),
                c.verdict
                    .reason()
                    .map_or(String::new(), |r| format!(" ({r})"))
            );
            // The lag guard will refuse this member: say so before asking.
            let guarded = plan.mode != Mode::ForcedAcceptDataLoss;
            let beyond = match (spec.and_then(|s| s.max_lag_bytes), c.lag_bytes) {
                (Some(b), Some(l)) => l > b,
                _ => false,
            };
            if guarded && beyond {
                let _ = writeln!(
                    out,
                    "{pad}REFUSED: {} lags beyond the bound; the readiness check will refuse it{}",
                    c.member,
                    if forced {
                        " (--accept-data-loss overrides)"
                    } else {
                        ""
                    }
                );
            }
        }
        let fenced = has_op(plan, &store, "fence");
        let waits = has_op(plan, &store, "wait_for_position");
        let _ = writeln!(
            out,
            "{pad}{}",
            match (fenced, &h.primary, forced) {
                (true, Some(p), _) => format!("fences {p}, the current primary"),
                (true, None, _) => "fences whatever is writable".to_string(),
                // A forced run fences nothing; a primary that still answers
                // keeps taking writes the promoted member never sees.
                (false, Some(p), true) => format!(
                    "fences nothing (forced): {p} still accepts writes; after the promotion it is a stale primary (split brain) until an execution rejoins it"
                ),
                (false, None, true) => {
                    "fences nothing (forced): no writable primary is observed".to_string()
                }
                (false, _, false) => "fences nothing (the store's own switchover)".to_string(),
            }
        );
        let loss = if !forced {
            match (fenced, waits) {
                (true, true) => "none: the candidate replays the fenced primary's final position before it is promoted".to_string(),
                _ => "none expected: the store's own planned switchover waits for a caught-up member".to_string(),
            }
        } else {
            match cand {
                // A lower bound, and worded as one; a zero lag is no loss
                // seen yet, not a promise of none.
                Some(c) if c.lag_bytes.unwrap_or(0) == 0 && c.lag_ms.unwrap_or(0) == 0
                    && (c.lag_bytes.is_some() || c.lag_ms.is_some()) => format!(
                    "none seen now (the candidate's lag is {}); a lower bound: writes after this observation are not counted",
                    lag_text(c)
                ),
                Some(c) if c.lag_bytes.is_some() || c.lag_ms.is_some() => format!(
                    "at least {} (a lower bound: the candidate's lag observed now; writes after it are not counted)",
                    lag_text(c)
                ),
                _ => "unknown: the candidate's lag cannot be observed now; the controller judges it from the last-known state".to_string(),
            }
        };
        let _ = writeln!(out, "{pad}data loss: {loss}");
    }
    out
}

/// What an operator types to confirm a forced run: every promoted store's
/// name, separated by spaces, in plan order.
pub fn forced_phrase(plan: &Plan) -> String {
    promotions(plan)
        .into_iter()
        .map(|(s, _, _)| s)
        .collect::<Vec<_>>()
        .join(" ")
}
