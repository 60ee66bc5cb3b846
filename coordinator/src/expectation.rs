//! Checkpoint expectations: what a store must be observed in before a stage
//! counts as done.
//!
//! Expectations compose (`primary_in("west").and(lag_below(1 << 20))`) and are
//! written in plans as short strings (`"primary_in(west)"`,
//! `"and(primary_in(west), lag_below(1048576))"`) so a plan stays readable in
//! a review. Each expectation declares which [`Capability`] a store needs to
//! make it observable, so a hand-written plan that asks a store for something
//! it cannot report is rejected before anything runs.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use switchyard_controller::{Capability, MemberState, ObservedState, Role};

/// One condition on a store's observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Exactly one primary is observed (no split brain, not headless).
    HasPrimary,
    /// Exactly one primary, located in this region.
    PrimaryIn(String),
    /// Exactly one primary, and it is this member (the operator's
    /// `--candidate`).
    PrimaryIs(String),
    /// Exactly one reachable primary that is not fenced: the store takes
    /// writes, from exactly one member (what an abort must end with).
    OneWritablePrimary,
    /// No reachable member is an unfenced primary: writes are refused.
    Fenced,
    /// Every member is reachable and in a known role.
    AllMembersHealthy,
    /// Every member of this region is reachable and in a known role.
    HealthyIn(String),
    /// Every reachable follower is at most this many bytes behind.
    LagBelow(u64),
    /// Every reachable data-bearing follower replicates from the primary.
    FollowersFollow,
    /// The highest-priority electable members are in this region.
    PreferredIn(String),
    /// All of these hold.
    And(Vec<Expectation>),
    /// At least one of these holds.
    Or(Vec<Expectation>),
    /// This does not hold.
    Not(Box<Expectation>),
}

/// Constructor for [`Expectation::HasPrimary`].
pub fn has_primary() -> Expectation {
    Expectation::HasPrimary
}
/// Constructor for [`Expectation::PrimaryIs`].
pub fn primary_is(member: impl Into<String>) -> Expectation {
    Expectation::PrimaryIs(member.into())
}
/// Constructor for [`Expectation::OneWritablePrimary`].
pub fn one_writable_primary() -> Expectation {
    Expectation::OneWritablePrimary
}
/// Constructor for [`Expectation::PrimaryIn`].
pub fn primary_in(region: impl Into<String>) -> Expectation {
    Expectation::PrimaryIn(region.into())
}
/// Constructor for [`Expectation::Fenced`].
pub fn fenced() -> Expectation {
    Expectation::Fenced
}
/// Constructor for [`Expectation::AllMembersHealthy`].
pub fn all_members_healthy() -> Expectation {
    Expectation::AllMembersHealthy
}
/// Constructor for [`Expectation::HealthyIn`].
pub fn healthy_in(region: impl Into<String>) -> Expectation {
    Expectation::HealthyIn(region.into())
}
/// Constructor for [`Expectation::LagBelow`].
pub fn lag_below(bytes: u64) -> Expectation {
    Expectation::LagBelow(bytes)
}
/// Constructor for [`Expectation::FollowersFollow`].
pub fn followers_follow() -> Expectation {
    Expectation::FollowersFollow
}
/// Constructor for [`Expectation::PreferredIn`].
pub fn preferred_in(region: impl Into<String>) -> Expectation {
    Expectation::PreferredIn(region.into())
}

impl Expectation {
    /// Both `self` and `other` must hold (flattens nested `and`s).
    pub fn and(self, other: Expectation) -> Expectation {
        match self {
            Expectation::And(mut v) => {
                v.push(other);
                Expectation::And(v)
            }
            e => Expectation::And(vec![e, other]),
        }
    }

    /// `self` or `other` must hold.
    pub fn or(self, other: Expectation) -> Expectation {
        match self {
            Expectation::Or(mut v) => {
                v.push(other);
                Expectation::Or(v)
            }
            e => Expectation::Or(vec![e, other]),
        }
    }

    /// `self` must not hold.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Expectation {
        Expectation::Not(Box::new(self))
    }

    /// Why a store with `cap` cannot report this expectation, if it cannot.
    pub fn unsupported_by(&self, cap: &Capability) -> Option<String> {
        match self {
            Expectation::Fenced if !cap.fencing => {
                Some("`fenced` needs a store that supports fencing".into())
            }
            Expectation::LagBelow(_) if !cap.lag_bound => {
                Some("`lag_below` needs a store that reports replication lag".into())
            }
            Expectation::FollowersFollow if !cap.repoint => Some(
                "`followers_follow` needs a store whose followers are pointed at a primary explicitly"
                    .into(),
            ),
            Expectation::PreferredIn(_) if !cap.sticky_priorities => {
                Some("`preferred_in` needs a store with election priorities".into())
            }
            Expectation::And(v) | Expectation::Or(v) => {
                v.iter().find_map(|e| e.unsupported_by(cap))
            }
            Expectation::Not(e) => e.unsupported_by(cap),
            _ => None,
        }
    }

    /// Regions this expectation names (validated against the topology).
    pub fn regions(&self) -> Vec<&str> {
        match self {
            Expectation::PrimaryIn(r) | Expectation::HealthyIn(r) | Expectation::PreferredIn(r) => {
                vec![r.as_str()]
            }
            Expectation::And(v) | Expectation::Or(v) => {
                v.iter().flat_map(|e| e.regions()).collect()
            }
            Expectation::Not(e) => e.regions(),
            _ => vec![],
        }
    }

    /// Check against an observation: `Ok(())` or what was seen instead
    /// (what could not be observed fails too, and says why).
    pub fn check(&self, s: &ObservedState) -> Result<(), String> {
        match self.eval(s) {
            Verdict::Holds => Ok(()),
            Verdict::Fails(m) => Err(m),
            Verdict::Unobservable(m) => Err(format!("cannot be observed: {m}")),
        }
    }

    /// Three-valued: an expectation nothing could be seen for is neither
    /// true nor false, so `not(..)` of it cannot hold either.
    fn eval(&self, s: &ObservedState) -> Verdict {
        use Verdict::{Fails, Holds, Unobservable};
        match self {
            Expectation::HasPrimary => match s.primaries().count() {
                1 => Holds,
                0 if s.members.iter().all(|m| !m.reachable) => {
                    Unobservable("no member reachable".into())
                }
                0 => Fails("no primary observed".into()),
                n => Fails(format!("{n} primaries observed ({})", primaries(s))),
            },
            Expectation::PrimaryIn(_) | Expectation::PrimaryIs(_) => match s.primary() {
                Some(p) if matches!(self, Expectation::PrimaryIn(r) if r == &p.region) => Holds,
                Some(p) if matches!(self, Expectation::PrimaryIs(m) if m == &p.name) => Holds,
                Some(p) => Fails(format!("primary is {} in {}", p.name, p.region)),
                None => match s.primaries().count() {
                    0 if s.members.iter().all(|m| !m.reachable) => {
                        Unobservable("no member reachable".into())
                    }
                    0 => Fails("no primary observed".into()),
                    n => Fails(format!("{n} primaries observed ({})", primaries(s))),
                },
            },
            Expectation::OneWritablePrimary => {
                let writable = s
                    .members
                    .iter()
                    .filter(|m| m.reachable && m.role == Role::Primary && !m.fenced)
                    .count();
                match writable {
                    1 => Holds,
                    0 if s.primaries().count() > 0 => {
                        Fails(format!("no writable primary: fenced {}", primaries(s)))
                    }
                    0 if s.members.iter().all(|m| !m.reachable) => {
                        Unobservable("no member reachable".into())
                    }
                    0 => Fails("no writable primary observed".into()),
                    n => Fails(format!(
                        "{n} writable primaries observed ({})",
                        primaries(s)
                    )),
                }
            }
            Expectation::Fenced => {
                let open: Vec<_> = s
                    .members
                    .iter()
                    .filter(|m| m.reachable && m.role == Role::Primary && !m.fenced)
                    .map(|m| m.name.as_str())
                    .collect();
                if !open.is_empty() {
                    return Fails(format!("unfenced primary: {}", open.join(", ")));
                }
                // "No writable primary seen" is not a fence: the primary may
                // just be unreachable and still taking writes. An unreachable
                // member counts only with the durable evidence its
                // controller read for it (PostgreSQL: stopped cleanly with
                // standby.signal, from pg_controldata).
                if s.members
                    .iter()
                    .any(|m| m.fenced && (m.reachable || m.fence_evidence.is_some()))
                {
                    Holds
                } else {
                    let down = unreachable(s);
                    Unobservable(format!(
                        "no fenced member observed{}",
                        if down.is_empty() {
                            String::new()
                        } else {
                            format!("; unreachable: {down}")
                        }
                    ))
                }
            }
            Expectation::AllMembersHealthy => unhealthy(s, None),
            Expectation::HealthyIn(region) => {
                if !s.members.iter().any(|m| &m.region == region) {
                    return Fails(format!("no member in {region}"));
                }
                unhealthy(s, Some(region))
            }
            Expectation::LagBelow(bound) => {
                let followers = followers(s);
                if followers.is_empty() {
                    return no_follower(s);
                }
                let mut bad = vec![];
                for m in followers {
                    match m.lag.and_then(|l| l.bytes) {
                        Some(b) if b <= *bound => {}
                        Some(b) => bad.push(format!("{} {b} bytes behind", m.name)),
                        None => bad.push(format!("{} lag unknown", m.name)),
                    }
                }
                if bad.is_empty() {
                    Holds
                } else {
                    Fails(format!("lag above {bound} bytes: {}", bad.join(", ")))
                }
            }
            Expectation::FollowersFollow => {
                let Some(p) = s.primary() else {
                    return Fails(match s.primaries().count() {
                        0 => "no primary to follow".into(),
                        n => format!("{n} primaries observed ({})", primaries(s)),
                    });
                };
                let followers = followers(s);
                if followers.is_empty() {
                    return no_follower(s);
                }
                let bad: Vec<_> = followers
                    .into_iter()
                    .filter(|m| {
                        m.following.as_deref() != Some(p.name.as_str())
                            || m.replicating == Some(false)
                    })
                    .map(|m| {
                        format!(
                            "{} follows {}{}",
                            m.name,
                            m.following.as_deref().unwrap_or("nothing"),
                            m.detail
                                .as_deref()
                                .map_or(String::new(), |d| format!(" ({d})"))
                        )
                    })
                    .collect();
                if bad.is_empty() {
                    Holds
                } else {
                    Fails(format!("{} (primary is {})", bad.join(", "), p.name))
                }
            }
            Expectation::PreferredIn(region) => {
                let electable = s
                    .members
                    .iter()
                    .filter(|m| m.priority.is_some_and(|p| p > 0.0) && m.role != Role::Arbiter);
                let top = electable
                    .clone()
                    .filter_map(|m| m.priority)
                    .fold(f64::MIN, f64::max);
                let best: Vec<_> = electable.filter(|m| m.priority == Some(top)).collect();
                if best.is_empty() {
                    Unobservable("no member with a priority observed".into())
                } else if best.iter().all(|m| &m.region == region) {
                    Holds
                } else {
                    let names: Vec<_> = best
                        .iter()
                        .map(|m| format!("{} ({})", m.name, m.region))
                        .collect();
                    Fails(format!("highest priority {top}: {}", names.join(", ")))
                }
            }
            Expectation::And(v) => {
                let mut fails = vec![];
                let mut unknown = vec![];
                for e in v {
                    match e.eval(s) {
                        Holds => {}
                        Fails(m) => fails.push(m),
                        Unobservable(m) => unknown.push(m),
                    }
                }
                match (fails.is_empty(), unknown.is_empty()) {
                    (true, true) => Holds,
                    (false, _) => {
                        fails.extend(
                            unknown
                                .into_iter()
                                .map(|m| format!("cannot be observed: {m}")),
                        );
                        Fails(fails.join("; "))
                    }
                    (true, false) => Unobservable(unknown.join("; ")),
                }
            }
            Expectation::Or(v) => {
                let mut errs = vec![];
                let mut all_unknown = true;
                for e in v {
                    match e.eval(s) {
                        Holds => return Holds,
                        Fails(m) => {
                            all_unknown = false;
                            errs.push(m)
                        }
                        Unobservable(m) => errs.push(format!("cannot be observed: {m}")),
                    }
                }
                let msg = format!("none holds: {}", errs.join(" | "));
                if all_unknown && !v.is_empty() {
                    Unobservable(msg)
                } else {
                    Fails(msg)
                }
            }
            Expectation::Not(e) => match e.eval(s) {
                Holds => Fails(format!("{e} holds")),
                Fails(_) => Holds,
                Unobservable(m) => Unobservable(m),
            },
        }
    }
}

/// The outcome of checking one expectation.
enum Verdict {
    Holds,
    /// Observed, and not as expected.
    Fails(String),
    /// What the expectation is about could not be observed.
    Unobservable(String),
}

/// Reachable data-bearing followers.
fn followers(s: &ObservedState) -> Vec<&MemberState> {
    s.members
        .iter()
        .filter(|m| m.reachable && matches!(m.role, Role::Secondary | Role::ReadOnly))
        .collect()
}

/// A follower expectation with no follower to look at: vacuous only when
/// the store has no member that could follow at all.
fn no_follower(s: &ObservedState) -> Verdict {
    let others: Vec<_> = s
        .members
        .iter()
        .filter(|m| m.role != Role::Primary && m.role != Role::Arbiter)
        .map(|m| m.name.as_str())
        .collect();
    if others.is_empty() {
        Verdict::Holds
    } else {
        Verdict::Unobservable(format!(
            "no reachable follower; not following or unreachable: {}",
            others.join(", ")
        ))
    }
}

fn unreachable(s: &ObservedState) -> String {
    s.members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn primaries(s: &ObservedState) -> String {
    s.primaries()
        .map(|m| format!("{} in {}", m.name, m.region))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unhealthy(s: &ObservedState, region: Option<&str>) -> Verdict {
    let bad: Vec<_> = s
        .members
        .iter()
        .filter(|m| region.is_none_or(|r| m.region == r))
        .filter_map(|m| {
            let why = if !m.reachable {
                "unreachable".to_string()
            } else if matches!(m.role, Role::Down | Role::Unknown) {
                "in unknown state".to_string()
            } else if m.awaits_rejoin && region.is_none() {
                // Answering, but left out of the store until a rejoin (a
                // Cosmos DB location still offline): the whole store is not
                // healthy. `healthy_in(R)` judges R as a place to move to
                // (readiness), and a move there brings it online first.
                "left out until rejoined".to_string()
            } else if m.replicating == Some(false) {
                // Reachable but receiving nothing: a follower in name only.
                format!(
                    "not replicating{}",
                    m.detail
                        .as_deref()
                        .map_or(String::new(), |d| format!(" ({d})"))
                )
            } else {
                return None;
            };
            Some(format!("{} {why}", m.name))
        })
        .collect();
    if bad.is_empty() {
        Verdict::Holds
    } else {
        Verdict::Fails(bad.join(", "))
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, v: &[Expectation]| {
            write!(f, "{name}(")?;
            for (i, e) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{e}")?;
            }
            f.write_str(")")
        };
        match self {
            Expectation::HasPrimary => f.write_str("has_primary"),
            Expectation::PrimaryIn(r) => write!(f, "primary_in({r})"),
            Expectation::PrimaryIs(m) => write!(f, "primary_is({m})"),
            Expectation::OneWritablePrimary => f.write_str("one_writable_primary"),
            Expectation::Fenced => f.write_str("fenced"),
            Expectation::AllMembersHealthy => f.write_str("all_members_healthy"),
            Expectation::HealthyIn(r) => write!(f, "healthy_in({r})"),
            Expectation::LagBelow(b) => write!(f, "lag_below({b})"),
            Expectation::FollowersFollow => f.write_str("followers_follow"),
            Expectation::PreferredIn(r) => write!(f, "preferred_in({r})"),
            Expectation::And(v) => list(f, "and", v),
            Expectation::Or(v) => list(f, "or", v),
            Expectation::Not(e) => write!(f, "not({e})"),
        }
    }
}

/// How deeply `and(..)`, `or(..)` and `not(..)` may nest in one
/// expectation string. Real checkpoints nest two or three levels; the bound
/// keeps parsing, printing, checking and dropping an expectation (all
/// recursive) far from the stack's end whatever a plan file says.
pub const MAX_EXPECTATION_DEPTH: usize = 32;

/// An expectation string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid expectation `{}`: {message}", shorten(text))]
pub struct ExpectationParseError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::str::FromStr for Expectation {
    type Err = ExpectationParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |message: String| ExpectationParseError {
            text: text.to_string(),
            message,
        };
        let mut p = Parser {
            s: text,
            pos: 0,
            depth: 0,
        };
        let e = p.expr().map_err(err)?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(err(format!("unexpected `{}`", &p.s[p.pos..])));
        }
        Ok(e)
    }
}

/// The text as written, cut to 80 characters so that an absurd one does
/// not fill the terminal.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}… ({} bytes)", &text[..i], text.len()),
        None => text.to_string(),
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    /// Combinators open around the current position.
    depth: usize,
}

const NAMES: &str = "has_primary, primary_in(R), primary_is(MEMBER), one_writable_primary, fenced, all_members_healthy, healthy_in(R), \
                     lag_below(BYTES), followers_follow, preferred_in(R), and(..), or(..), not(..)";

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn ident(&mut self) -> String {
        self.ws();
        let rest = &self.s[self.pos..];
        let n = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(rest.len());
        self.pos += n;
        rest[..n].to_string()
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected `{c}` at offset {}", self.pos))
        }
    }

    fn arg(&mut self) -> Result<String, String> {
        self.expect('(')?;
        let a = self.ident();
        if a.is_empty() {
            return Err(format!("expected an argument at offset {}", self.pos));
        }
        self.expect(')')?;
        Ok(a)
    }

    fn list(&mut self) -> Result<Vec<Expectation>, String> {
        self.expect('(')?;
        let mut v = vec![self.expr()?];
        while self.eat(',') {
            v.push(self.expr()?);
        }
        self.expect(')')?;
        Ok(v)
    }

    /// A combinator's operands, one nesting level deeper.
    fn nested<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.depth == MAX_EXPECTATION_DEPTH {
            return Err(format!(
                "`{name}(..)` at offset {} nests deeper than {MAX_EXPECTATION_DEPTH} levels, \
                 the limit for one expectation",
                self.pos - name.len()
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn expr(&mut self) -> Result<Expectation, String> {
        let name = self.ident();
        Ok(match name.as_str() {
            "has_primary" => Expectation::HasPrimary,
            "primary_in" => Expectation::PrimaryIn(self.arg()?),
            "primary_is" => Expectation::PrimaryIs(self.arg()?),
            "one_writable_primary" => Expectation::OneWritablePrimary,
            "fenced" => Expectation::Fenced,
            "all_members_healthy" => Expectation::AllMembersHealthy,
            "healthy_in" => Expectation::HealthyIn(self.arg()?),
            "lag_below" => {
                let a = self.arg()?;
                Expectation::LagBelow(
                    a.parse()
                        .map_err(|_| format!("lag_below takes a byte count, not `{a}`"))?,
                )
            }
            "followers_follow" => Expectation::FollowersFollow,
            "preferred_in" => Expectation::PreferredIn(self.arg()?),
            "and" => Expectation::And(self.nested("and", Self::list)?),
            "or" => Expectation::Or(self.nested("or", Self::list)?),
            "not" => self.nested("not", |p| {
                p.expect('(')?;
                let e = p.expr()?;
                p.expect(')')?;
                Ok(Expectation::Not(Box::new(e)))
            })?,
            "" => return Err(format!("expected an expectation; known: {NAMES}")),
            other => return Err(format!("unknown expectation `{other}`; known: {NAMES}")),
        })
    }
}

impl Serialize for Expectation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Written as its text (`and(primary_in(west), fenced)`), as it serialises.
impl schemars::JsonSchema for Expectation {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expectation".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An expectation as text: has_primary, primary_in(R), primary_is(MEMBER), one_writable_primary, fenced, all_members_healthy, healthy_in(R), lag_below(BYTES), followers_follow, preferred_in(R), and(..), or(..), not(..)."
        })
    }
}

impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_controller::{Lag, MemberState};
    use switchyard_topology::StoreKind;

    fn member(name: &str, region: &str, role: Role) -> MemberState {
        let mut m = MemberState::unreachable(name, region, "");
        m.role = role;
        m.reachable = role != Role::Down;
        m.detail = None;
        m
    }

    fn state(members: Vec<MemberState>) -> ObservedState {
        ObservedState {
            store: "orders".into(),
            kind: StoreKind::Postgres,
            term: Some(switchyard_controller::Term(1)),
            config_version: None,
            members,
        }
    }

    #[test]
    fn primary_is_names_the_member_not_the_region() {
        let s = state(vec![
            member("w1", "west", Role::Primary),
            member("w2", "west", Role::Secondary),
        ]);
        assert_eq!(primary_is("w1").check(&s), Ok(()));
        assert_eq!(primary_in("west").check(&s), Ok(()));
        assert_eq!(
            primary_is("w2").check(&s),
            Err("primary is w1 in west".to_string())
        );
        let down = state(vec![member("w1", "west", Role::Down)]);
        assert!(primary_is("w1")
            .check(&down)
            .unwrap_err()
            .starts_with("cannot be observed"));
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in [
            "has_primary",
            "primary_in(west)",
            "and(primary_in(west), lag_below(1048576), followers_follow)",
            "or(primary_in(east), not(fenced))",
            "preferred_in(us-west-2)",
            "and(primary_is(orders-west-2), followers_follow)",
        ] {
            let e: Expectation = text.parse().unwrap();
            assert_eq!(e.to_string(), text);
            assert_eq!(e.to_string().parse::<Expectation>().unwrap(), e);
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let e = "primary_inn(west)".parse::<Expectation>().unwrap_err();
        assert!(
            e.message.contains("unknown expectation `primary_inn`"),
            "{e}"
        );
        let e = "lag_below(lots)".parse::<Expectation>().unwrap_err();
        assert!(e.message.contains("byte count"), "{e}");
        let e = "and(fenced".parse::<Expectation>().unwrap_err();
        assert!(e.message.contains("expected `)`"), "{e}");
        assert!("fenced extra".parse::<Expectation>().is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let nest = |n: usize| "not(".repeat(n) + "fenced" + &")".repeat(n);
        let ok: Expectation = nest(MAX_EXPECTATION_DEPTH).parse().unwrap();
        assert_eq!(ok.to_string(), nest(MAX_EXPECTATION_DEPTH));
        let e = nest(MAX_EXPECTATION_DEPTH + 1)
            .parse::<Expectation>()
            .unwrap_err();
        assert!(e.message.contains("deeper than 32 levels"), "{e}");
        // 5,000 levels: an error, not a stack overflow.
        let deep = "and(".repeat(5000) + "fenced" + &")".repeat(5000);
        assert!(deep
            .parse::<Expectation>()
            .unwrap_err()
            .message
            .contains("deeper"));
    }

    #[test]
    fn composes_with_builders() {
        let e = primary_in("west")
            .and(lag_below(1 << 20))
            .and(followers_follow());
        assert_eq!(
            e.to_string(),
            "and(primary_in(west), lag_below(1048576), followers_follow)"
        );
    }

    #[test]
    fn primary_in_reports_what_was_seen() {
        let s = state(vec![
            member("pg-east", "east", Role::Primary),
            member("pg-west", "west", Role::Secondary),
        ]);
        assert!(primary_in("east").check(&s).is_ok());
        let err = primary_in("west").check(&s).unwrap_err();
        assert_eq!(err, "primary is pg-east in east");
        let split = state(vec![
            member("a", "east", Role::Primary),
            member("b", "west", Role::Primary),
        ]);
        assert!(primary_in("east")
            .check(&split)
            .unwrap_err()
            .contains("2 primaries"));
        assert!(has_primary().check(&split).is_err());
    }

    #[test]
    fn one_writable_primary_counts_only_unfenced_reachable_primaries() {
        let e: Expectation = "one_writable_primary".parse().unwrap();
        assert_eq!(e.to_string(), "one_writable_primary");
        let mut fenced = member("pg-east", "east", Role::Primary);
        fenced.fenced = true;
        let s = state(vec![
            fenced.clone(),
            member("pg-west", "west", Role::Secondary),
        ]);
        assert_eq!(
            e.check(&s).unwrap_err(),
            "no writable primary: fenced pg-east in east"
        );
        let s = state(vec![
            member("pg-east", "east", Role::Secondary),
            member("pg-west", "west", Role::Down),
        ]);
        assert_eq!(e.check(&s).unwrap_err(), "no writable primary observed");
        let s = state(vec![
            member("pg-east", "east", Role::Primary),
            member("pg-west", "west", Role::Secondary),
        ]);
        assert!(e.check(&s).is_ok());
        let s = state(vec![
            member("pg-east", "east", Role::Primary),
            member("pg-west", "west", Role::Primary),
        ]);
        assert!(e.check(&s).unwrap_err().starts_with("2 writable primaries"));
    }

    #[test]
    fn lag_and_follow_and_fence() {
        let mut east = member("pg-east", "east", Role::Primary);
        let mut west = member("pg-west", "west", Role::Secondary);
        west.lag = Some(Lag {
            bytes: Some(4096),
            millis: None,
        });
        west.following = Some("pg-east".into());
        let s = state(vec![east.clone(), west.clone()]);
        assert!(lag_below(8192).check(&s).is_ok());
        assert!(lag_below(100).check(&s).unwrap_err().contains("4096 bytes"));
        assert!(followers_follow().check(&s).is_ok());
        assert!(fenced().check(&s).is_err());
        east.fenced = true;
        west.following = Some("elsewhere".into());
        let s = state(vec![east, west]);
        assert!(fenced().check(&s).is_ok());
        assert!(followers_follow()
            .check(&s)
            .unwrap_err()
            .contains("pg-west follows elsewhere"));
        assert!(fenced().not().check(&s).is_err());
    }

    #[test]
    fn health_and_preference() {
        let mut a = member("a", "east", Role::Secondary);
        a.priority = Some(1.0);
        let mut b = member("b", "west", Role::Primary);
        b.priority = Some(2.0);
        let c = member("c", "witness", Role::Down);
        let s = state(vec![a, b, c]);
        assert!(preferred_in("west").check(&s).is_ok());
        assert!(preferred_in("east").check(&s).is_err());
        assert_eq!(
            all_members_healthy().check(&s).unwrap_err(),
            "c unreachable"
        );
        assert!(healthy_in("west").check(&s).is_ok());
        assert!(healthy_in("nowhere").check(&s).is_err());
        assert!(primary_in("east").or(primary_in("west")).check(&s).is_ok());
    }

    #[test]
    fn nothing_passes_vacuously() {
        // The primary is unreachable and nobody is marked fenced: a fence
        // that cannot be seen is not a fence.
        let mut east = member("pg-east", "east", Role::Down);
        east.reachable = false;
        let mut west = member("pg-west", "west", Role::Secondary);
        let s = state(vec![east.clone(), west.clone()]);
        let e = fenced().check(&s).unwrap_err();
        assert!(e.starts_with("cannot be observed"), "{e}");
        assert!(e.contains("pg-east"), "{e}");
        // ... and its negation cannot hold either.
        assert!(fenced().not().check(&s).is_err());
        // An unreachable member merely claimed fenced is not evidence ...
        east.fenced = true;
        let e = fenced()
            .check(&state(vec![east.clone(), west.clone()]))
            .unwrap_err();
        assert!(e.starts_with("cannot be observed"), "{e}");
        // ... the durable state its controller read for it is.
        east.fence_evidence = Some("stopped cleanly, standby.signal present".into());
        assert!(fenced()
            .check(&state(vec![east.clone(), west.clone()]))
            .is_ok());
        assert!(fenced()
            .not()
            .check(&state(vec![east.clone(), west.clone()]))
            .is_err());
        east.fenced = false;
        east.fence_evidence = None;
        // A fenced former primary is evidence.
        west.fenced = true;
        assert!(fenced().check(&state(vec![east.clone(), west])).is_ok());

        // Followers that are all unreachable are not "all following".
        let p = member("pg-west", "west", Role::Primary);
        let s = state(vec![p.clone(), east.clone()]);
        let e = followers_follow().check(&s).unwrap_err();
        assert!(e.contains("no reachable follower"), "{e}");
        assert!(lag_below(1).check(&s).is_err());
        // A store with only its primary has nothing to follow.
        assert!(followers_follow().check(&state(vec![p.clone()])).is_ok());

        // A follower whose stream is down is neither following nor healthy,
        // even with a `following` carried over.
        let mut south = member("pg-south", "south", Role::Secondary);
        south.following = Some("pg-west".into());
        south.replicating = Some(false);
        south.detail = Some("not streaming".into());
        let s = state(vec![p.clone(), south.clone()]);
        assert!(followers_follow().check(&s).is_err());
        let e = all_members_healthy().check(&s).unwrap_err();
        assert!(
            e.contains("pg-south not replicating (not streaming)"),
            "{e}"
        );
        south.replicating = Some(true);
        let s = state(vec![p.clone(), south.clone()]);
        assert!(followers_follow().check(&s).is_ok());
        assert!(all_members_healthy().check(&s).is_ok());
        // Answering but left out until a rejoin (a Cosmos DB location still
        // offline): the store is not healthy; its region is one to move to.
        south.awaits_rejoin = true;
        let s = state(vec![p, south]);
        let e = all_members_healthy().check(&s).unwrap_err();
        assert!(e.contains("pg-south left out until rejoined"), "{e}");
        assert!(healthy_in("south").check(&s).is_ok());

        // Nothing reachable at all: unobservable, also under `or`.
        let s = state(vec![east]);
        let e = has_primary().check(&s).unwrap_err();
        assert!(e.starts_with("cannot be observed"), "{e}");
        assert!(has_primary().not().check(&s).is_err());
        assert!(has_primary().or(primary_in("west")).check(&s).is_err());
    }

    #[test]
    fn capability_gates_expectations() {
        let mut cap = Capability::none();
        assert!(lag_below(1).unsupported_by(&cap).is_some());
        assert!(primary_in("w")
            .and(followers_follow())
            .unsupported_by(&cap)
            .is_some());
        assert!(primary_in("w").unsupported_by(&cap).is_none());
        cap.lag_bound = true;
        cap.repoint = true;
        assert!(primary_in("w")
            .and(followers_follow())
            .and(lag_below(1))
            .unsupported_by(&cap)
            .is_none());
    }
}
