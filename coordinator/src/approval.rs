//! Approvals: the two-person rule (Yelp's failovers need a second person
//! even in an emergency). The safety policy says which executions need one:
//! any forced failover, anything that may lose data, anything that changes
//! a store with a given tag. Such an execution is journaled with its plan
//! and an approval request and stays `pending_approval`; nothing is issued
//! until someone other than the requester approves it with
//! `switchyard approve ID`, and then `switchyard resume ID` runs it. A
//! request expires: an approval after `expire_after_s`, or a start after
//! it, is refused. Who asked and who approved (or tried to) is journaled and
//! in the report.
//!
//! Without a server, "someone else" is a different OS user, or someone
//! holding an approver token listed (as its SHA-256) in the policy and
//! presented in `SWITCHYARD_APPROVER_TOKEN`. The token is never journaled,
//! logged or printed; only the approver's name is.

use crate::journal::{format_ms, Record};
use crate::plan::{Mode, Plan};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_topology::Topology;

/// Environment variable an approver presents their token in.
pub const TOKEN_ENV: &str = "SWITCHYARD_APPROVER_TOKEN";

/// Default time an approval request stands.
pub const DEFAULT_EXPIRE_AFTER_S: u64 = 3600;

fn default_expiry() -> u64 {
    DEFAULT_EXPIRE_AFTER_S
}

/// The `[approvals]` table of the safety policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Every forced failover needs approval.
    #[serde(default)]
    pub forced: bool,
    /// Every execution that may lose data needs approval.
    #[serde(default)]
    pub data_loss: bool,
    /// Every execution that changes a store with one of these tags needs approval.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A request not approved and started within this many seconds expires.
    #[serde(default = "default_expiry")]
    pub expire_after_s: u64,
    /// People who may approve with a token instead of as another OS user.
    #[serde(default)]
    pub approver: Vec<Approver>,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            forced: false,
            data_loss: false,
            tags: vec![],
            expire_after_s: DEFAULT_EXPIRE_AFTER_S,
            approver: vec![],
        }
    }
}

/// One `[[approvals.approver]]`: a person and the SHA-256 of their token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    /// Who this is (journaled as the approver).
    pub name: String,
    /// Hex SHA-256 of the token they present in `SWITCHYARD_APPROVER_TOKEN`.
    pub token_sha256: String,
}

impl ApprovalPolicy {
    /// Problems a parser cannot see, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        if self.expire_after_s == 0 {
            out.push((
                "approvals.expire_after_s".into(),
                "must be at least 1 second".into(),
            ));
        }
        for (i, a) in self.approver.iter().enumerate() {
            let h = &a.token_sha256;
            if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                out.push((
                    format!("approvals.approver[{i}].token_sha256"),
                    "must be 64 hex digits (`printf %s TOKEN | sha256sum`)".into(),
                ));
            }
        }
        out
    }
}

/// Why `plan` needs approval under `policy`; empty when it does not.
pub fn reasons(policy: &ApprovalPolicy, plan: &Plan, t: &Topology) -> Vec<String> {
    let mut out = vec![];
    if policy.forced && plan.mode != Mode::Planned {
        out.push(format!(
            "a forced failover ({}) needs approval (approvals.forced)",
            plan.mode
        ));
    }
    let stores = crate::journal::plan_stores(plan);
    if policy.data_loss {
        if plan.mode == Mode::ForcedAcceptDataLoss {
            out.push("it accepts data loss (--accept-data-loss) (approvals.data_loss)".into());
        } else if plan.mode == Mode::Forced {
            for s in stores.iter().filter_map(|n| t.store(n)) {
                if s.max_lag_bytes.is_none() && s.max_lag_ms.is_none() {
                    out.push(format!(
                        "store `{}` declares no lag bound, so a forced promotion may lose any amount of data (approvals.data_loss)",
                        s.name
                    ));
                }
            }
        }
    }
    for s in stores.iter().filter_map(|n| t.store(n)) {
        let hit: Vec<&str> = s
            .tags
            .iter()
            .filter(|tag| policy.tags.contains(tag))
            .map(String::as_str)
            .collect();
        if !hit.is_empty() {
            out.push(format!(
                "it changes store `{}`, tagged {} (approvals.tags)",
                s.name,
                hit.join(", ")
            ));
        }
    }
    out
}

/// A person, as the journal names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Identity {
    /// OS user name, the approver's name from the policy, or the name of
    /// the bearer token a request to `switchyard serve` carried.
    pub name: String,
    /// OS user id of the process that journaled it.
    pub uid: u32,
    /// `os_user`, `token` (an approver token of the policy) or
    /// `bearer_token` (a `switchyard serve` API token).
    pub via: String,
    /// The bearer token's public id (`tok-…`), for `bearer_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.via.as_str() {
            "token" => write!(f, "{} (approver token, as uid {})", self.name, self.uid),
            BEARER => write!(
                f,
                "{} (API token {})",
                self.name,
                self.token_id.as_deref().unwrap_or("?")
            ),
            _ => write!(f, "{} (uid {})", self.name, self.uid),
        }
    }
}

/// `via` of a person known by the bearer token of an API request.
pub const BEARER: &str = "bearer_token";

impl Identity {
    /// The holder of an API bearer token named `name` (id `token_id`),
    /// journaled by this process.
    pub fn bearer(name: &str, token_id: &str) -> Self {
        Identity {
            name: name.to_string(),
            uid: os_user().uid,
            via: BEARER.into(),
            token_id: Some(token_id.to_string()),
        }
    }
}

/// The OS user this process runs as (`/proc/self` belongs to it).
pub fn os_user() -> Identity {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid-{uid}"));
    Identity {
        name,
        uid,
        via: "os_user".into(),
        token_id: None,
    }
}

/// Who is approving: the holder of the token in [`TOKEN_ENV`] when one is
/// presented (it must be listed in the policy), else the OS user.
pub fn approver(policy: &ApprovalPolicy, token: Option<&str>) -> Result<Identity, String> {
    let me = os_user();
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(me);
    };
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    policy
        .approver
        .iter()
        .find(|a| a.token_sha256.eq_ignore_ascii_case(&hex))
        .map(|a| Identity {
            name: a.name.clone(),
            uid: me.uid,
            via: "token".into(),
            token_id: None,
        })
        .ok_or_else(|| {
            format!("the token in {TOKEN_ENV} is not one of the policy's approvers (approvals.approver)")
        })
}

/// Whether `approver` counts as a second person for `requester`: a
/// different OS user when both are OS users (the uid decides), otherwise a
/// different name (an approver token or an API token is a person's name;
/// one's own name is refused whichever way it is presented).
pub fn second_person(requester: &Identity, approver: &Identity) -> Result<(), String> {
    let both_os_users = approver.via == "os_user" && requester.via == "os_user";
    match approver.via.as_str() {
        "token" if approver.name == requester.name => Err(format!(
            "self-approval refused: the approver token belongs to {}, who requested the execution",
            approver.name
        )),
        _ if both_os_users && approver.uid == requester.uid => Err(format!(
            "self-approval refused: {} requested the execution and cannot approve it; another OS user, or someone with an approver token in {TOKEN_ENV}, must",
            requester.name
        )),
        _ if !both_os_users && approver.name == requester.name => Err(format!(
            "self-approval refused: {} requested the execution and cannot approve it; another approver must",
            requester.name
        )),
        _ => Ok(()),
    }
}

/// An approval request (journaled as `type = "approval_requested"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalRequest {
    /// When it was asked.
    pub at_ms: u64,
    /// Who asked.
    pub requester: Identity,
    /// Why the policy wants approval.
    pub reasons: Vec<String>,
    /// After this the request can be neither approved nor started.
    pub expires_at_ms: u64,
}

/// An approval given or refused (journaled as `type = "approval"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalDecision {
    /// When.
    pub at_ms: u64,
    /// Who tried to approve.
    pub approver: Identity,
    /// Whether it counts.
    pub approved: bool,
    /// Why it was refused (empty when approved).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refused_because: String,
}

/// Where an execution stands with its approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalState {
    /// The request.
    pub request: ApprovalRequest,
    /// The approval that counts, if given.
    pub approved_by: Option<ApprovalDecision>,
    /// Refused attempts, in order.
    pub refused: Vec<ApprovalDecision>,
    /// Whether the execution has begun (a stage was started).
    pub started: bool,
}

impl ApprovalState {
    /// The approval state in `records`; `None` when none was asked for.
    pub fn of(records: &[Record]) -> Option<Self> {
        let mut st: Option<ApprovalState> = None;
        for r in records {
            match r {
                Record::ApprovalRequested(q) => {
                    st = Some(ApprovalState {
                        request: q.clone(),
                        approved_by: None,
                        refused: vec![],
                        started: false,
                    })
                }
                Record::Approval(d) => {
                    if let Some(s) = st.as_mut() {
                        if d.approved {
                            s.approved_by = Some(d.clone());
                        } else {
                            s.refused.push(d.clone());
                        }
                    }
                }
                Record::StageStarted { .. } | Record::Intent { .. } => {
                    if let Some(s) = st.as_mut() {
                        s.started = true;
                    }
                }
                _ => {}
            }
        }
        st
    }

    /// Whether the request has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.request.expires_at_ms
    }

    /// Why the execution may not run now (`None`: it may).
    pub fn blocks_start(&self, id: &str, now_ms: u64) -> Option<String> {
        if self.started {
            return None;
        }
        if self.approved_by.is_none() {
            return Some(format!(
                "execution {id} is pending_approval: {}; another person runs `switchyard approve {id}` (before {})",
                self.request.reasons.join("; "),
                format_ms(self.request.expires_at_ms)
            ));
        }
        self.expired(now_ms).then(|| {
            format!(
                "the approval request of execution {id} expired at {} before it was started; nothing was run. Request it again.",
                format_ms(self.request.expires_at_ms)
            )
        })
    }

    /// One line for reports: who asked, who approved.
    pub fn render(&self) -> String {
        let mut s = format!(
            "approval: requested by {} at {} ({})",
            self.request.requester,
            format_ms(self.request.at_ms),
            self.request.reasons.join("; ")
        );
        match &self.approved_by {
            Some(a) => s.push_str(&format!(
                "; approved by {} at {}",
                a.approver,
                format_ms(a.at_ms)
            )),
            None => s.push_str(&format!(
                "; not approved (expires {})",
                format_ms(self.request.expires_at_ms)
            )),
        }
        for r in &self.refused {
            s.push_str(&format!("; refused {}: {}", r.approver, r.refused_because));
        }
        s
    }
}

/// Decide an approval attempt by `approver` on execution `id` at `now_ms`:
/// the decision to journal, and the error to report when refused.
pub fn decide(
    id: &str,
    state: &ApprovalState,
    approver: Identity,
    now_ms: u64,
) -> (ApprovalDecision, Result<(), String>) {
    let verdict = if state.approved_by.is_some() {
        Err(format!("execution {id} is already approved"))
    } else if state.expired(now_ms) {
        Err(format!(
            "the approval request of execution {id} expired at {}; nothing was approved. Request it again.",
            format_ms(state.request.expires_at_ms)
        ))
    } else {
        second_person(&state.request.requester, &approver)
    };
    let decision = ApprovalDecision {
        at_ms: now_ms,
        approver,
        approved: verdict.is_ok(),
        refused_because: verdict.as_ref().err().cloned().unwrap_or_default(),
    };
    (decision, verdict)
}

/// Why `switchyard approve` did not approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveError {
    /// No such execution, or it is not waiting for approval.
    Usage(String),
    /// Refused (self-approval, expired, unknown token); journaled.
    Refused(String),
}

/// `switchyard approve ID`: decide and journal an approval attempt by the
/// caller (the OS user, or the holder of `token`) on execution `id`.
pub fn approve(
    journals: &dyn crate::journal::JournalStore,
    policy: &ApprovalPolicy,
    id: &str,
    token: Option<&str>,
) -> Result<ApprovalDecision, ApproveError> {
    let who = approver(policy, token).map_err(|e| {
        let mut who = os_user();
        who.via = "token".into();
        who.name = format!("{} (unknown token)", who.name);
        (who, e)
    });
    approve_as(journals, id, who)
}

/// Decide and journal an approval attempt on execution `id` by `who`, or
/// by someone who may not approve at all (`Err((who tried, why not))`,
/// journaled as refused too).
pub fn approve_as(
    journals: &dyn crate::journal::JournalStore,
    id: &str,
    who: Result<Identity, (Identity, String)>,
) -> Result<ApprovalDecision, ApproveError> {
    let recs = journals
        .read(id)
        .map_err(|e| ApproveError::Usage(e.to_string()))?;
    let Some(state) = ApprovalState::of(&recs) else {
        return Err(ApproveError::Usage(format!(
            "execution {id} did not ask for approval; nothing to approve"
        )));
    };
    if state.started {
        return Err(ApproveError::Usage(format!(
            "execution {id} has already started; nothing to approve"
        )));
    }
    if state.approved_by.is_some() {
        return Err(ApproveError::Usage(format!(
            "execution {id} is already approved; `switchyard resume {id}` runs it"
        )));
    }
    let now = crate::journal::now_ms();
    let (decision, verdict) = match who {
        Ok(who) => decide(id, &state, who, now),
        Err((who, e)) => (
            ApprovalDecision {
                at_ms: now,
                approver: who,
                approved: false,
                refused_because: e.clone(),
            },
            Err(e),
        ),
    };
    journals
        .open(id)
        .and_then(|mut j| j.append(&Record::Approval(decision.clone())))
        .map_err(|e| ApproveError::Usage(e.to_string()))?;
    verdict.map(|()| decision).map_err(ApproveError::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, uid: u32, via: &str) -> Identity {
        Identity {
            name: name.into(),
            uid,
            via: via.into(),
            token_id: None,
        }
    }

    fn state(expires_at_ms: u64) -> ApprovalState {
        ApprovalState {
            request: ApprovalRequest {
                at_ms: 0,
                requester: who("alice", 1000, "os_user"),
                reasons: vec!["forced".into()],
                expires_at_ms,
            },
            approved_by: None,
            refused: vec![],
            started: false,
        }
    }

    #[test]
    fn a_second_person_is_another_uid_or_another_named_token() {
        let s = state(10_000);
        let (d, r) = decide("x", &s, who("alice", 1000, "os_user"), 5);
        assert!(!d.approved && r.unwrap_err().starts_with("self-approval refused: alice"));
        let (_, r) = decide("x", &s, who("alice", 1001, "token"), 5);
        assert!(r.unwrap_err().contains("token belongs to alice"));
        assert!(decide("x", &s, who("bob", 1001, "os_user"), 5).1.is_ok());
        assert!(decide("x", &s, who("bob", 1000, "token"), 5).1.is_ok());
        // Over the API the name decides, whichever uid the server runs as.
        let (_, r) = decide("x", &s, who("alice", 1001, BEARER), 5);
        assert!(r.unwrap_err().starts_with("self-approval refused: alice"));
        assert!(decide("x", &s, who("bob", 1000, BEARER), 5).1.is_ok());
        let mut by_api = state(10_000);
        by_api.request.requester = who("carol", 1000, BEARER);
        assert!(decide("x", &by_api, who("carol", 1002, "os_user"), 5)
            .1
            .unwrap_err()
            .starts_with("self-approval refused: carol"));
        assert!(decide("x", &by_api, who("dave", 1000, "os_user"), 5)
            .1
            .is_ok());
    }

    #[test]
    fn an_expired_request_cannot_be_approved_or_started() {
        let s = state(10_000);
        let (d, r) = decide("x", &s, who("bob", 1001, "os_user"), 10_000);
        assert!(
            !d.approved
                && r.unwrap_err()
                    .contains("expired at 1970-01-01T00:00:10.000Z")
        );
        let mut s = s;
        s.approved_by = Some(decide("x", &s.clone(), who("bob", 1001, "os_user"), 1).0);
        assert!(s.blocks_start("x", 9_999).is_none());
        assert!(s.blocks_start("x", 10_000).unwrap().contains("expired"));
        s.started = true;
        assert!(
            s.blocks_start("x", 99_999).is_none(),
            "a started execution resumes"
        );
    }

    #[test]
    fn tokens_are_matched_by_their_hash() {
        let policy = ApprovalPolicy {
            approver: vec![Approver {
                name: "bob".into(),
                // printf %s s3cret | sha256sum
                token_sha256: "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
                    .into(),
            }],
            ..ApprovalPolicy::default()
        };
        assert!(approver(&policy, Some("wrong"))
            .unwrap_err()
            .contains("not one of the policy's approvers"));
        assert_eq!(approver(&policy, None).unwrap().via, "os_user");
        let bob = approver(&policy, Some("s3cret")).unwrap();
        assert_eq!((bob.name.as_str(), bob.via.as_str()), ("bob", "token"));
    }
}
