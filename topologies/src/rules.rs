//! The catalogue of `topocheck` rules: stable codes, severities and the
//! documentation `topocheck --explain CODE` prints. The checks themselves are
//! in `check.rs`; docs/topocheck.md carries the same text (a test keeps them
//! in step).

use crate::diagnostic::Severity;

/// One rule: its stable identity and documentation.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable code, e.g. `TC101`. Never reused for a different rule.
    pub code: &'static str,
    /// Stable kebab-case name, e.g. `majority-lost`.
    pub name: &'static str,
    /// Severity every finding of this rule has.
    pub severity: Severity,
    /// One-line summary.
    pub summary: &'static str,
    /// Generic help shown when a finding has no more specific one.
    pub help: &'static str,
    /// Why the rule exists and how to fix a finding (Markdown-ish plain text).
    pub explanation: &'static str,
}

macro_rules! rule {
    ($id:ident, $code:literal, $name:literal, $sev:ident, $summary:literal, $help:literal, $expl:literal) => {
        #[doc = concat!("`", $code, "` ", $name, ": ", $summary)]
        pub static $id: Rule = Rule {
            code: $code,
            name: $name,
            severity: Severity::$sev,
            summary: $summary,
            help: $help,
            explanation: $expl,
        };
    };
}

rule!(
    INVALID_FILE,
    "TC000",
    "invalid-file",
    Error,
    "the file cannot be read, is not TOML, or does not match the topology schema",
    "fix what the message names (the path, the TOML syntax or the field); docs/topology.md lists every field and its type",
    "A topology file must be readable UTF-8 TOML that matches the schema in docs/topology.md: \
every field has the documented type, required fields (`name` of the topology, `name` and `role` \
of a region, `name` and `kind` of a store, `name` and `region` of a member) are present, and \
unknown fields are errors, so that a misspelt `priorty = 2` is never silently ignored.\n\n\
No rule runs on a file that does not parse; topocheck exits with status 2.\n\n\
Fix: correct the field at the reported line and column."
);

rule!(
    DUPLICATE_REGION,
    "TC001",
    "duplicate-region",
    Error,
    "two regions have the same name",
    "rename or remove one of the regions",
    "Members refer to regions by name, and every survival check reasons about the loss of a \
region by name. Two `[[regions]]` with the same name make it ambiguous which role applies.\n\n\
Fix: give every region a unique name."
);

rule!(
    UNKNOWN_REGION,
    "TC002",
    "unknown-region",
    Error,
    "a member is placed in a region that is not declared",
    "declare the region under [[regions]] or fix the spelling of the member's `region`",
    "Every member's `region` must name a region declared under `[[regions]]`. A misspelt region \
(`chicgo`) would otherwise be treated as a separate failure domain and make a topology look \
safer than it is.\n\n\
Fix: correct the spelling, or add the region with its role."
);

rule!(
    DUPLICATE_STORE,
    "TC003",
    "duplicate-store",
    Error,
    "two stores have the same name",
    "store names must be unique; rename one of them",
    "Plans, `depends_on` and the coordinator's journal name stores; two stores with the same name \
cannot be told apart.\n\nFix: rename one of them."
);

rule!(
    DUPLICATE_MEMBER,
    "TC004",
    "duplicate-member",
    Error,
    "two members have the same name",
    "member names must be unique in the whole topology; rename one of them",
    "Operators and plans name members (`promote orders-2`), so a member name must be unique in \
the whole topology, not only within its store.\n\nFix: rename one of them."
);

rule!(
    DUPLICATE_HOST,
    "TC005",
    "duplicate-host",
    Error,
    "two members have the same host:port",
    "every member needs its own host:port",
    "Two members at the same `host` are the same server: the topology counts its votes twice and \
believes it has a replica it does not have. Host names are compared case-insensitively.\n\n\
Fix: correct the host or port, or remove the duplicate member."
);

rule!(
    MISSING_HOST,
    "TC006",
    "missing-host",
    Error,
    "a member of a mongodb, postgres, eventstoredb or redis store has no host",
    "add `host = \"name:port\"` to the member",
    "The controllers of mongodb, postgres, eventstoredb and redis stores connect to each member \
(a Redis Sentinel included) at its `host` (`name:port`). Only a cosmosdb member, which is an account location, needs none.\n\n\
Fix: add the member's `host`."
);

rule!(
    EMPTY_STORE,
    "TC007",
    "empty-store",
    Error,
    "a store has no members",
    "add the store's members as [[stores.members]]",
    "A store without members can neither be observed nor failed over.\n\nFix: list its members."
);

rule!(
    UNKNOWN_DEPENDENCY,
    "TC008",
    "unknown-dependency",
    Error,
    "`depends_on` names a store that does not exist",
    "name a store defined in this file, or remove the entry",
    "`depends_on` lists the stores that must be promoted before this one. Each entry must name a \
store in the same topology; a typo would silently drop an ordering constraint.\n\n\
Fix: correct the name or remove the entry."
);

rule!(
    DEPENDENCY_CYCLE,
    "TC009",
    "dependency-cycle",
    Error,
    "stores depend on each other in a cycle",
    "break the cycle by removing one of the `depends_on` entries",
    "Stores are promoted in dependency order. If `orders` must be promoted before `payments` and \
`payments` before `orders`, no order exists and a failover cannot start. The diagnostic prints \
the cycle (`orders -> payments -> orders`).\n\n\
Fix: remove the `depends_on` entry that does not reflect a real dependency."
);

rule!(
    PRIMARY_REGION,
    "TC010",
    "primary-region",
    Error,
    "there must be exactly one region with role primary",
    "give exactly one region `role = \"primary\"`",
    "The primary region is where primaries are preferred, and where a failback returns to. With \
none, `primary-priority-elsewhere` cannot tell where primaries belong; with two, the preference \
is contradictory.\n\nFix: give exactly one region `role = \"primary\"`, the others \
`secondary` or `witness`."
);

rule!(
    WITNESS_DATA,
    "TC011",
    "witness-holds-data",
    Error,
    "a witness region hosts a member that holds data",
    "move the member to a primary or secondary region, or make it an arbiter",
    "A `witness` region hosts tie-breakers only (MongoDB arbiters, Redis Sentinels). Placing data-bearing members \
there contradicts its declared role: it is usually a small site that is not meant to serve \
as primary.\n\nFix: move the member, make it a MongoDB arbiter, or change the region's role to \
`secondary`."
);

rule!(MAJORITY_LOST, "TC101", "majority-lost", Error,
    "losing a region leaves fewer than a strict majority of a store's votes",
    "spread the voting members so that no region (or set of tolerated regions) holds half or more of the votes",
    "MongoDB replica sets and EventStoreDB clusters elect a primary by majority vote. If the \
regions that may be lost together (one region by default; `--tolerate N` for N) hold half or \
more of a store's votes, the survivors can never elect a primary: the store is down until the \
lost region returns. The diagnostic names the worst loss and the arithmetic, e.g. `losing \
chicago leaves 2 of 5 votes; a majority needs 3`.\n\n\
Votes are `votes` (default 1) of every member, except EventStoreDB read-only replicas, which \
never vote. A majority is more than half of all votes.\n\n\
Fix: place voting members so that each region holds less than half of the votes, e.g. 2 + 2 + 1 \
across three regions (the 1 may be an arbiter in a witness region) instead of 3 + 2.");

rule!(
    NO_PROMOTABLE_SURVIVOR,
    "TC102",
    "no-promotable-survivor",
    Error,
    "losing a region leaves no member that can become primary",
    "add a member that can become primary in another region",
    "After losing any tolerated set of regions, some surviving member must be able to take over: \
priority above 0, not an arbiter, not hidden, not an EventStoreDB read-only replica. For \
postgres this is a streaming standby in another region; for cosmosdb, another account location.\n\n\
Fix: add such a member in a region other than the one named, or raise the priority of an \
existing member there above 0."
);

rule!(
    MAJORITY_WRITES_UNAVAILABLE,
    "TC103",
    "majority-writes-unavailable",
    Warning,
    "after losing a region, w:\"majority\" writes cannot be acknowledged",
    "replace the arbiter with a data-bearing member, or add data-bearing voting members elsewhere",
    "MongoDB acknowledges `w: \"majority\"` writes once the calculated majority has them: the \
smaller of a majority of all voting members and the number of data-bearing voting members. \
Arbiters vote but hold no data, so in primary-secondary-arbiter layouts the loss of one \
data-bearing region leaves a primary that is elected but cannot acknowledge majority writes: \
writes with `w: \"majority\"` (and commands that always use it, such as `dropDatabase`) hang \
or time out, and the majority commit point stops advancing, which grows the WiredTiger cache. \
(MongoDB 5.0+ lowers the implicit default write concern of such sets to `w: 1` for this very \
reason, which trades the hang for writes that may be rolled back.)\n\n\
Fix: replace the arbiter by a data-bearing secondary, or add data-bearing voting members so \
that the survivors of any tolerated loss still reach the calculated majority."
);

rule!(
    PRIMARY_PRIORITY_ELSEWHERE,
    "TC104",
    "primary-priority-elsewhere",
    Warning,
    "the members preferred as primary are not in the primary region",
    "give the members in the primary region the highest priority",
    "Elections (and Cosmos DB's write region, failover priority 0) follow priorities. If the \
highest-priority members are not in the region whose role is `primary`, the store's primary \
will settle elsewhere, and a priority takeover may move it away from the primary region \
after every failback.\n\n\
Fix: give the primary region's members the strictly highest priority (for cosmosdb, \
`failover_priority = 0` on the primary region's location)."
);

rule!(
    EVEN_VOTERS,
    "TC105",
    "even-voting-members",
    Warning,
    "a store has an even number of votes",
    "add a voting member (an arbiter in a witness region) or remove one",
    "With an even number of votes, a majority needs more than half, so 4 votes tolerate the loss \
of one vote, like 3: the extra member costs without adding fault tolerance, and a 2 + 2 split \
between two regions cannot elect after losing either.\n\n\
Fix: add one voting member (for MongoDB an arbiter in a witness region is enough) or remove one."
);

rule!(
    SENTINEL_QUORUM_LOST,
    "TC106",
    "sentinel-quorum-lost",
    Error,
    "losing a region leaves too few Redis Sentinels to authorise a failover",
    "spread the Sentinels so that every region holds fewer than the survivors need, e.g. one per region in three regions",
    "Redis Sentinels vote on failovers. A failover starts only when `quorum` Sentinels agree that \
the master is down, and it is carried out only by a Sentinel elected by a majority of all the \
Sentinels that monitor the master, so the survivors of a region loss must number at least the \
larger of the quorum and a majority of all Sentinels. A two-region deployment with two of its \
three Sentinels in one region cannot fail over when that region is lost. The diagnostic gives \
the arithmetic, e.g. `losing east leaves 1 of 3 Sentinels; a failover needs 2 Sentinels: the \
larger of the quorum 2 and a majority of 3 (2)`.\n\n\
Sentinels are the members with `sentinel = true`; the quorum is `settings.sentinel_quorum` \
(default: a majority of the Sentinels). A store without Sentinels is failed over by Switchyard \
alone and is not checked by this rule.\n\n\
Fix: place Sentinels so that each region holds fewer than `total - needed + 1` of them (one per \
region across three regions, the third may be a witness region), or lower the quorum."
);

rule!(
    CAPACITY_LOST,
    "TC107",
    "capacity-lost",
    Error,
    "losing a region leaves the survivors less capacity than the load they must absorb",
    "add capacity to the surviving regions, or move load away from the region whose loss is named",
    "Regions may declare `capacity` and `load` in the same units. When a region is lost its load \
does not vanish: the survivors must carry all of it, so the survivors' capacity must be at least \
the total load (N+1: three regions each sized for half the load survive any loss, two regions \
need double). The diagnostic names the worst loss (`--tolerate N` regions at once) and the \
arithmetic, e.g. `losing east leaves capacity 60 (west 30 + south 30) for a load of 70 (east 40 + \
west 20 + south 10): short by 10`.\n\n\
Once one region declares `capacity` or `load`, every region that is not a witness must declare \
both: an unknown capacity is not zero and an unknown load is not zero, so the check reports the \
missing field instead of guessing. A witness region may declare neither.\n\n\
Fix: raise the capacity of the surviving regions, add a region, or lower the load."
);

rule!(
    CAPACITY_MARGIN,
    "TC108",
    "capacity-margin",
    Warning,
    "after losing a region, the survivors' headroom is below the declared margin",
    "add capacity so that the headroom after the worst loss reaches `capacity_margin_percent`",
    "`capacity_margin_percent` (top level) declares how much headroom, in percent of the total \
load, the survivors of the worst tolerated loss should keep: a region sized exactly for the \
load melts at the first spike (Yelp sent healthy regions more than they could carry). The \
survivors can carry the load, but with less headroom than declared; the diagnostic gives the \
arithmetic and the headroom.\n\n\
Fix: add capacity, or lower the declared margin if it is stricter than needed."
);

rule!(
    TOO_MANY_VOTERS,
    "TC201",
    "mongodb-too-many-voters",
    Error,
    "a MongoDB replica set has more than 7 voting members",
    "set `votes = 0` and `priority = 0` on the members beyond the seventh",
    "MongoDB allows at most 7 voting members in a replica set; `replSetReconfig` rejects more.\n\n\
Fix: make the extra members non-voting (`votes = 0`, which also requires `priority = 0`)."
);

rule!(
    TOO_MANY_MEMBERS,
    "TC202",
    "mongodb-too-many-members",
    Error,
    "a MongoDB replica set has more than 50 members",
    "split the store or remove members",
    "MongoDB allows at most 50 members in a replica set.\n\nFix: remove members."
);

rule!(
    ARBITER_CONFIG,
    "TC203",
    "arbiter-config",
    Error,
    "an arbiter must have priority 0 and 1 vote",
    "write `priority = 0` and `votes = 1` on the arbiter",
    "A MongoDB arbiter exists only to vote: it always has exactly 1 vote and priority 0 (it can \
never become primary). Note that the default priority is 1, so an arbiter must say \
`priority = 0` explicitly.\n\nFix: set `priority = 0` and leave `votes` at 1."
);

rule!(
    MULTIPLE_ARBITERS,
    "TC204",
    "multiple-arbiters",
    Warning,
    "a replica set has more than one arbiter",
    "keep at most one arbiter; use data-bearing members for the rest",
    "MongoDB recommends at most one arbiter per replica set: each arbiter adds a vote without \
data, which makes w:\"majority\" writes and the majority commit point fragile.\n\n\
Fix: replace extra arbiters with data-bearing secondaries."
);

rule!(
    INVALID_VOTES,
    "TC205",
    "invalid-votes",
    Error,
    "votes must be 0 or 1, and a non-voting member must have priority 0",
    "use `votes = 1`, or `votes = 0` together with `priority = 0`",
    "In MongoDB a member has 0 or 1 vote, and a non-voting member must have priority 0 (MongoDB \
rejects the configuration otherwise). EventStoreDB nodes have one vote each; only read-only \
replicas have none.\n\nFix: use 0 or 1; give non-voting members `priority = 0`."
);

rule!(
    COSMOS_PRIORITIES,
    "TC206",
    "cosmosdb-failover-priorities",
    Error,
    "Cosmos DB failover priorities must be unique and exactly 0..n-1",
    "number the locations' `failover_priority` 0, 1, 2, … without gaps or repeats",
    "A Cosmos DB account lists its locations with failover priorities: 0 is the write region, \
and the rest must be unique and contiguous (the ARM API rejects anything else). Every cosmosdb \
member needs `failover_priority`.\n\nFix: number the locations 0..n-1."
);

rule!(
    FIELD_NOT_APPLICABLE,
    "TC207",
    "field-not-applicable",
    Warning,
    "a member sets a field that the store's kind ignores",
    "remove the field",
    "`arbiter` and `hidden` apply to mongodb only, `read_only_replica` to eventstoredb only, \
`failover_priority` to cosmosdb only, `sentinel` to redis only, and `votes` to mongodb and \
eventstoredb. Writing them on \
another kind has no effect and usually means the member was copied from another store.\n\n\
Fix: remove the field."
);

rule!(
    INVALID_PRIORITY,
    "TC208",
    "invalid-priority",
    Error,
    "priority must be a finite number, at least 0 (at most 1000 for MongoDB)",
    "use a priority between 0 and 1000",
    "Priorities order members for election and promotion; 0 means never primary. A negative or \
non-finite priority has no meaning, and MongoDB accepts 0 to 1000.\n\nFix: use a number in range."
);

rule!(
    HIDDEN_PRIORITY,
    "TC209",
    "hidden-priority",
    Error,
    "a hidden MongoDB member must have priority 0",
    "write `priority = 0` on the hidden member",
    "MongoDB requires hidden members to have priority 0: they are invisible to clients and must \
never become primary. The default priority is 1, so a hidden member must say `priority = 0`.\n\n\
Fix: set `priority = 0`."
);

/// Every rule, in code order.
pub static ALL: &[&Rule] = &[
    &INVALID_FILE,
    &DUPLICATE_REGION,
    &UNKNOWN_REGION,
    &DUPLICATE_STORE,
    &DUPLICATE_MEMBER,
    &DUPLICATE_HOST,
    &MISSING_HOST,
    &EMPTY_STORE,
    &UNKNOWN_DEPENDENCY,
    &DEPENDENCY_CYCLE,
    &PRIMARY_REGION,
    &WITNESS_DATA,
    &MAJORITY_LOST,
    &NO_PROMOTABLE_SURVIVOR,
    &MAJORITY_WRITES_UNAVAILABLE,
    &PRIMARY_PRIORITY_ELSEWHERE,
    &EVEN_VOTERS,
    &SENTINEL_QUORUM_LOST,
    &CAPACITY_LOST,
    &CAPACITY_MARGIN,
    &TOO_MANY_VOTERS,
    &TOO_MANY_MEMBERS,
    &ARBITER_CONFIG,
    &MULTIPLE_ARBITERS,
    &INVALID_VOTES,
    &COSMOS_PRIORITIES,
    &FIELD_NOT_APPLICABLE,
    &INVALID_PRIORITY,
    &HIDDEN_PRIORITY,
];

/// Find a rule by code (`TC101`) or name (`majority-lost`), case-insensitively.
pub fn find(code_or_name: &str) -> Option<&'static Rule> {
    let q = code_or_name.trim();
    ALL.iter()
        .copied()
        .find(|r| r.code.eq_ignore_ascii_case(q) || r.name.eq_ignore_ascii_case(q))
}

/// The text `topocheck --explain` prints for a rule.
pub fn explain(rule: &Rule) -> String {
    format!(
        "{code} {name} ({sev}): {summary}\n\n{expl}\n",
        code = rule.code,
        name = rule.name,
        sev = rule.severity,
        summary = rule.summary,
        expl = rule.explanation
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_names_are_unique() {
        let codes: HashSet<_> = ALL.iter().map(|r| r.code).collect();
        let names: HashSet<_> = ALL.iter().map(|r| r.name).collect();
        assert_eq!(codes.len(), ALL.len());
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn find_by_code_or_name() {
        assert_eq!(find("tc101").map(|r| r.name), Some("majority-lost"));
        assert_eq!(find("dependency-cycle").map(|r| r.code), Some("TC009"));
        assert!(find("TC999").is_none());
    }
}
