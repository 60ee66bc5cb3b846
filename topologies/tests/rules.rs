//! Every rule, both ways: a topology that triggers it and the closest one
//! that does not.

use switchyard_topology::{check_text, CheckOptions, Diagnostic};

const REGIONS: &str = r#"name = "t"

[[regions]]
name = "a"
role = "primary"

[[regions]]
name = "b"
role = "secondary"

[[regions]]
name = "c"
role = "secondary"

[[regions]]
name = "w"
role = "witness"
"#;

/// A member table; `extra` is appended verbatim.
fn member(name: &str, region: &str, extra: &str) -> String {
    format!("\n[[stores.members]]\nname = \"{name}\"\nhost = \"{name}.{region}.internal:1000\"\nregion = \"{region}\"\n{extra}\n")
}

fn cosmos_member(name: &str, region: &str, extra: &str) -> String {
    format!("\n[[stores.members]]\nname = \"{name}\"\nregion = \"{region}\"\n{extra}\n")
}

fn store(name: &str, kind: &str, extra: &str, members: &[String]) -> String {
    format!(
        "\n[[stores]]\nname = \"{name}\"\nkind = \"{kind}\"\n{extra}\n{}",
        members.concat()
    )
}

fn diags_n(text: &str, tolerate: usize) -> Vec<Diagnostic> {
    let r = check_text("t.toml", text, &CheckOptions { tolerate });
    assert!(!r.invalid, "does not parse: {:?}", r.diagnostics);
    r.diagnostics
}

fn codes_n(text: &str, tolerate: usize) -> Vec<&'static str> {
    diags_n(text, tolerate)
        .iter()
        .map(|d| d.rule.code)
        .collect()
}

fn codes(text: &str) -> Vec<&'static str> {
    codes_n(text, 1)
}

fn has(text: &str, code: &str) -> bool {
    codes(text).contains(&code)
}

fn doc(stores: &[String]) -> String {
    format!("{REGIONS}{}", stores.concat())
}

/// 2 + 2 + 1 MongoDB, all data-bearing: passes everything.
fn good_mongo() -> String {
    store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "a", "priority = 2"),
            member("o3", "b", ""),
            member("o4", "b", ""),
            member("o5", "c", ""),
        ],
    )
}

fn good_pg() -> String {
    store(
        "payments",
        "postgres",
        "",
        &[member("p1", "a", "priority = 2"), member("p2", "b", "")],
    )
}

fn good_cosmos() -> String {
    store(
        "catalog",
        "cosmosdb",
        "",
        &[
            cosmos_member("c1", "a", "failover_priority = 0"),
            cosmos_member("c2", "b", "failover_priority = 1"),
            cosmos_member("c3", "c", "failover_priority = 2"),
        ],
    )
}

fn good_esdb() -> String {
    store(
        "ledger",
        "eventstoredb",
        "",
        &[
            member("e1", "a", "priority = 2"),
            member("e2", "b", ""),
            member("e3", "c", ""),
            member("e4", "b", "read_only_replica = true"),
        ],
    )
}

#[test]
fn the_good_topology_has_no_findings() {
    let text = doc(&[good_mongo(), good_pg(), good_cosmos(), good_esdb()]);
    assert_eq!(codes(&text), Vec::<&str>::new());
}

#[test]
fn tc001_duplicate_region() {
    let text = format!(
        "{REGIONS}\n[[regions]]\nname = \"b\"\nrole = \"secondary\"\n{}",
        good_pg()
    );
    assert!(has(&text, "TC001"));
    assert!(!has(&doc(&[good_pg()]), "TC001"));
}

#[test]
fn tc002_unknown_region() {
    let bad = store(
        "payments",
        "postgres",
        "",
        &[member("p1", "a", "priority = 2"), member("p2", "bb", "")],
    );
    let d = diags_n(&doc(&[bad]), 1);
    let hit = d.iter().find(|d| d.rule.code == "TC002").expect("TC002");
    assert!(hit.message.contains("`bb`"), "{}", hit.message);
    assert_eq!(
        hit.primary.as_ref().unwrap().field,
        "stores[0].members[1].region"
    );
    assert!(!has(&doc(&[good_pg()]), "TC002"));
}

#[test]
fn tc003_duplicate_store() {
    let other = store(
        "payments",
        "postgres",
        "",
        &[member("q1", "a", "priority = 2"), member("q2", "b", "")],
    );
    assert!(has(&doc(&[good_pg(), other]), "TC003"));
    let renamed = store(
        "payments2",
        "postgres",
        "",
        &[member("q1", "a", "priority = 2"), member("q2", "b", "")],
    );
    assert!(!has(&doc(&[good_pg(), renamed]), "TC003"));
}

#[test]
fn tc004_duplicate_member_across_stores() {
    let other = store(
        "p2",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2").replace("p1.a", "x.a"),
            member("q2", "b", ""),
        ],
    );
    assert!(has(&doc(&[good_pg(), other]), "TC004"));
    assert!(!has(&doc(&[good_pg()]), "TC004"));
}

#[test]
fn tc005_duplicate_host_case_insensitive() {
    let bad = store(
        "payments",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2"),
            member("p2", "b", "").replace("p2.b.internal", "P1.A.internal"),
        ],
    );
    assert!(has(&doc(&[bad]), "TC005"));
    assert!(!has(&doc(&[good_pg()]), "TC005"));
}

#[test]
fn tc006_missing_host_except_cosmosdb() {
    let bad = store(
        "payments",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2"),
            cosmos_member("p2", "b", ""),
        ],
    );
    assert!(has(&doc(&[bad]), "TC006"));
    assert!(!has(&doc(&[good_cosmos()]), "TC006"));
}

#[test]
fn tc007_empty_store() {
    assert!(has(&doc(&[store("empty", "postgres", "", &[])]), "TC007"));
    assert!(!has(&doc(&[good_pg()]), "TC007"));
}

#[test]
fn tc008_unknown_dependency() {
    let bad = store(
        "payments",
        "postgres",
        "depends_on = [\"nope\"]",
        &[member("p1", "a", "priority = 2"), member("p2", "b", "")],
    );
    assert!(has(&doc(&[bad]), "TC008"));
    let ok = store(
        "payments",
        "postgres",
        "depends_on = [\"orders\"]",
        &[member("p1", "a", "priority = 2"), member("p2", "b", "")],
    );
    assert_eq!(codes(&doc(&[good_mongo(), ok])), Vec::<&str>::new());
}

#[test]
fn tc009_dependency_cycle_is_printed() {
    let a = store(
        "x",
        "postgres",
        "depends_on = [\"y\"]",
        &[member("x1", "a", "priority = 2"), member("x2", "b", "")],
    );
    let b = store(
        "y",
        "postgres",
        "depends_on = [\"x\"]",
        &[member("y1", "a", "priority = 2"), member("y2", "b", "")],
    );
    let d = diags_n(&doc(&[a.clone(), b]), 1);
    let hit = d.iter().find(|d| d.rule.code == "TC009").expect("TC009");
    assert!(hit.message.contains("x -> y -> x"), "{}", hit.message);
    let selfdep = store(
        "z",
        "postgres",
        "depends_on = [\"z\"]",
        &[member("z1", "a", "priority = 2"), member("z2", "b", "")],
    );
    let d = diags_n(&doc(&[selfdep]), 1);
    assert!(d
        .iter()
        .any(|d| d.rule.code == "TC009" && d.message.contains("z -> z")));
    let b_ok = store(
        "y",
        "postgres",
        "",
        &[member("y1", "a", "priority = 2"), member("y2", "b", "")],
    );
    assert!(!has(&doc(&[a, b_ok]), "TC009"));
}

#[test]
fn tc010_exactly_one_primary_region() {
    let two = REGIONS.replace(
        "name = \"b\"\nrole = \"secondary\"",
        "name = \"b\"\nrole = \"primary\"",
    );
    assert!(has(&format!("{two}{}", good_pg()), "TC010"));
    let none = REGIONS.replace("role = \"primary\"", "role = \"secondary\"");
    assert!(has(&format!("{none}{}", good_pg()), "TC010"));
    assert!(!has(&doc(&[good_pg()]), "TC010"));
}

#[test]
fn tc011_witness_holds_arbiters_only() {
    let bad = store(
        "payments",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2"),
            member("p2", "b", ""),
            member("p3", "w", ""),
        ],
    );
    assert!(has(&doc(&[bad]), "TC011"));
    let arb = store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "b", ""),
            member("o3", "w", "arbiter = true\npriority = 0"),
        ],
    );
    assert!(!has(&doc(&[arb]), "TC011"));
}

#[test]
fn tc101_majority_lost_names_region_and_arithmetic() {
    let bad = store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "a", "priority = 2"),
            member("o3", "a", ""),
            member("o4", "b", ""),
            member("o5", "b", ""),
        ],
    );
    let d = diags_n(&doc(&[bad]), 1);
    let hit = d.iter().find(|d| d.rule.code == "TC101").expect("TC101");
    assert!(
        hit.message
            .contains("losing a leaves 2 of 5 votes; a majority needs 3"),
        "{}",
        hit.message
    );
    assert!(!has(&doc(&[good_mongo()]), "TC101"));
}

#[test]
fn tc101_counts_votes_not_members_and_ignores_read_only_replicas() {
    // Two non-voting members in `a` do not put the majority at risk.
    let ok = store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "a", "votes = 0\npriority = 0"),
            member("o3", "a", "votes = 0\npriority = 0"),
            member("o4", "b", ""),
            member("o5", "c", ""),
        ],
    );
    assert!(!has(&doc(&[ok]), "TC101"));
    // Read-only replicas never vote: 1 voter in a, 2 read-only in b, 1 in c → losing a leaves 1 of 2.
    let bad = store(
        "ledger",
        "eventstoredb",
        "",
        &[
            member("e1", "a", "priority = 2"),
            member("e2", "b", "read_only_replica = true"),
            member("e3", "b", "read_only_replica = true"),
            member("e4", "c", ""),
        ],
    );
    assert!(has(&doc(&[bad]), "TC101"));
}

#[test]
fn tc101_tolerate_two_regions() {
    assert!(!has(&doc(&[good_mongo()]), "TC101"));
    let d = diags_n(&doc(&[good_mongo()]), 2);
    let hit = d
        .iter()
        .find(|d| d.rule.code == "TC101")
        .expect("TC101 with --tolerate 2");
    assert!(
        hit.message.contains("losing a and b leaves 1 of 5 votes"),
        "{}",
        hit.message
    );
    // Zero tolerated losses: only the structure and full-strength majority matter.
    assert!(!codes_n(&doc(&[good_mongo()]), 0).contains(&"TC101"));
}

#[test]
fn tc102_no_promotable_survivor() {
    let pg = store(
        "payments",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2"),
            member("p2", "a", ""),
            member("p3", "b", "priority = 0"),
        ],
    );
    assert!(has(&doc(&[pg]), "TC102"));
    assert!(!has(&doc(&[good_pg()]), "TC102"));
    let cosmos = store(
        "catalog",
        "cosmosdb",
        "",
        &[cosmos_member("c1", "a", "failover_priority = 0")],
    );
    assert!(has(&doc(&[cosmos]), "TC102"));
    // Majority survives losing a, but the only electable member there is hidden in b.
    let mongo = store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "b", "hidden = true\npriority = 0"),
            member("o3", "c", "priority = 0"),
        ],
    );
    assert!(has(&doc(&[mongo]), "TC102"));
    assert!(!has(&doc(&[good_mongo()]), "TC102"));
}

#[test]
fn tc103_psa_majority_writes() {
    let psa = store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "b", ""),
            member("o3", "w", "arbiter = true\npriority = 0"),
        ],
    );
    assert_eq!(codes(&doc(&[psa])), vec!["TC103"]);
    assert!(!has(&doc(&[good_mongo()]), "TC103"));
}

#[test]
fn tc104_highest_priority_outside_primary_region() {
    let bad = store(
        "payments",
        "postgres",
        "",
        &[member("p1", "a", ""), member("p2", "b", "priority = 3")],
    );
    assert_eq!(codes(&doc(&[bad])), vec!["TC104"]);
    // Ties count: an equal priority elsewhere may win the election.
    let tie = store(
        "payments",
        "postgres",
        "",
        &[member("p1", "a", ""), member("p2", "b", "")],
    );
    assert!(has(&doc(&[tie]), "TC104"));
    assert!(!has(&doc(&[good_pg()]), "TC104"));
    let cosmos = good_cosmos()
        .replace("failover_priority = 0", "failover_priority = 9")
        .replace("failover_priority = 1", "failover_priority = 0")
        .replace("failover_priority = 9", "failover_priority = 1");
    assert_eq!(codes(&doc(&[cosmos])), vec!["TC104"]);
}

#[test]
fn tc105_even_votes() {
    let even = store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "b", ""),
            member("o3", "c", ""),
            member("o4", "c", ""),
        ],
    );
    // With no region loss tolerated only the parity is at issue.
    assert_eq!(codes_n(&doc(std::slice::from_ref(&even)), 0), vec!["TC105"]);
    // Losing region c (2 of 4 votes) also breaks the majority: 4 votes tolerate no more than 3.
    assert_eq!(codes(&doc(&[even])), vec!["TC101", "TC105"]);
    assert!(!has(&doc(&[good_mongo()]), "TC105"));
}

fn many_mongo(n: usize, extra: impl Fn(usize) -> &'static str) -> String {
    let regions = ["a", "b", "c"];
    let members: Vec<String> = (0..n)
        .map(|i| member(&format!("o{i}"), regions[i % 3], extra(i)))
        .collect();
    store("orders", "mongodb", "", &members)
}

#[test]
fn tc201_at_most_seven_voters() {
    let bad = many_mongo(9, |i| if i == 0 { "priority = 2" } else { "" });
    assert!(has(&doc(&[bad]), "TC201"));
    let ok = many_mongo(9, |i| match i {
        0 => "priority = 2",
        7 | 8 => "votes = 0\npriority = 0",
        _ => "",
    });
    assert!(!has(&doc(&[ok]), "TC201"));
}

#[test]
fn tc202_at_most_fifty_members() {
    let extra = |i: usize| match i {
        0 => "priority = 2",
        1..=6 => "",
        _ => "votes = 0\npriority = 0",
    };
    assert!(has(&doc(&[many_mongo(51, extra)]), "TC202"));
    assert!(!has(&doc(&[many_mongo(50, extra)]), "TC202"));
}

#[test]
fn tc203_arbiter_priority_and_votes() {
    let with = |arb: &str| {
        store(
            "orders",
            "mongodb",
            "",
            &[
                member("o1", "a", "priority = 2"),
                member("o2", "b", ""),
                member("o3", "c", arb),
            ],
        )
    };
    assert!(has(&doc(&[with("arbiter = true")]), "TC203"));
    assert!(has(
        &doc(&[with("arbiter = true\npriority = 0\nvotes = 0")]),
        "TC203"
    ));
    assert!(!has(&doc(&[with("arbiter = true\npriority = 0")]), "TC203"));
}

#[test]
fn tc204_more_than_one_arbiter() {
    let two = store(
        "orders",
        "mongodb",
        "",
        &[
            member("o1", "a", "priority = 2"),
            member("o2", "b", ""),
            member("o3", "c", "arbiter = true\npriority = 0"),
            member("o4", "c", "arbiter = true\npriority = 0"),
            member("o5", "a", "priority = 2"),
        ],
    );
    assert!(has(&doc(&[two]), "TC204"));
    assert!(!has(&doc(&[good_mongo()]), "TC204"));
}

#[test]
fn tc205_votes_zero_or_one() {
    let two_votes = good_mongo().replace("name = \"o5\"", "name = \"o5\"\nvotes = 2");
    assert!(has(&doc(&[two_votes]), "TC205"));
    let nonvoting_electable = good_mongo().replace("name = \"o5\"", "name = \"o5\"\nvotes = 0");
    assert!(has(&doc(&[nonvoting_electable]), "TC205"));
    let nonvoting_ok =
        good_mongo().replace("name = \"o5\"", "name = \"o5\"\nvotes = 0\npriority = 0");
    assert!(!has(&doc(&[nonvoting_ok]), "TC205"));
    let esdb = good_esdb().replace("name = \"e3\"", "name = \"e3\"\nvotes = 0");
    assert!(has(&doc(&[esdb]), "TC205"));
    assert!(!has(&doc(&[good_esdb()]), "TC205"));
}

#[test]
fn tc206_cosmos_failover_priorities() {
    let dup = good_cosmos().replace("failover_priority = 2", "failover_priority = 1");
    assert!(has(&doc(&[dup]), "TC206"));
    let gap = good_cosmos().replace("failover_priority = 2", "failover_priority = 3");
    assert!(has(&doc(&[gap]), "TC206"));
    let missing = good_cosmos().replace("failover_priority = 2", "");
    assert!(has(&doc(&[missing]), "TC206"));
    assert!(!has(&doc(&[good_cosmos()]), "TC206"));
}

#[test]
fn tc207_field_not_applicable() {
    let bad = store(
        "payments",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2\nhidden = true"),
            member("p2", "b", "failover_priority = 1"),
        ],
    );
    let c = codes(&doc(&[bad]));
    assert_eq!(c.iter().filter(|&&c| c == "TC207").count(), 2, "{c:?}");
    // Writing a field at its default is not flagged.
    let ok = store(
        "payments",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2\nhidden = false"),
            member("p2", "b", ""),
        ],
    );
    assert!(!has(&doc(&[ok]), "TC207"));
}

#[test]
fn tc208_priority_range() {
    assert!(has(
        &doc(&[good_pg().replace("priority = 2", "priority = -1")]),
        "TC208"
    ));
    assert!(has(
        &doc(&[good_pg().replace("priority = 2", "priority = nan")]),
        "TC208"
    ));
    assert!(has(
        &doc(&[good_mongo().replace("priority = 2", "priority = 1001")]),
        "TC208"
    ));
    assert!(!has(
        &doc(&[good_pg().replace("priority = 2", "priority = 1500")]),
        "TC208"
    ));
}

#[test]
fn tc209_hidden_needs_priority_zero() {
    let bad = good_mongo().replace("name = \"o5\"", "name = \"o5\"\nhidden = true");
    assert!(has(&doc(&[bad]), "TC209"));
    let ok = good_mongo()
        .replace(
            "name = \"o5\"",
            "name = \"o5\"\nhidden = true\npriority = 0",
        )
        .replace("\npriority = 0\n\n", "\n");
    assert!(
        !has(&doc(&[ok]), "TC209"),
        "{:?}",
        codes(&doc(&[good_mongo()]))
    );
}

#[test]
fn diagnostics_point_at_the_field() {
    let text = doc(&[good_pg().replace("priority = 2", "priority = -1")]);
    let d = diags_n(&text, 1);
    let hit = d.iter().find(|d| d.rule.code == "TC208").unwrap();
    let p = hit.primary.as_ref().unwrap();
    assert_eq!(&text[p.span.clone()], "-1");
    assert_eq!(p.field, "stores[0].members[0].priority");
    assert_eq!(hit.store.as_deref(), Some("payments"));
    assert_eq!(hit.member.as_deref(), Some("p1"));
}

/// Redis with one data member in `a` and `b` and Sentinels placed as given.
fn redis_with_sentinels(settings: &str, sentinels: &[(&str, &str)]) -> String {
    let mut members = vec![member("r1", "a", "priority = 2"), member("r2", "b", "")];
    for (name, region) in sentinels {
        members.push(member(name, region, "sentinel = true"));
    }
    doc(&[store("cache", "redis", settings, &members)])
}

#[test]
fn sentinel_quorum_lost_two_of_three_in_one_region() {
    let text = redis_with_sentinels(
        "[stores.settings]\nsentinel_quorum = 2",
        &[("s1", "a"), ("s2", "a"), ("s3", "b")],
    );
    let d = diags_n(&text, 1);
    let f = d
        .iter()
        .find(|d| d.rule.code == "TC106")
        .unwrap_or_else(|| panic!("no TC106: {d:?}"));
    assert_eq!(
        f.message,
        "store `cache`: losing a leaves 1 of 3 Sentinels; a failover needs 2 Sentinels: \
         the larger of the quorum 2 and a majority of 3 (2)"
    );
    // One Sentinel per region (the third in the witness region) survives any loss.
    let ok = redis_with_sentinels(
        "[stores.settings]\nsentinel_quorum = 2",
        &[("s1", "a"), ("s2", "b"), ("s3", "w")],
    );
    assert!(codes(&ok).is_empty(), "{:?}", diags_n(&ok, 1));
}

#[test]
fn sentinel_quorum_above_survivors_and_impossible_quorum() {
    // Quorum 3 of 3: the loss of any Sentinel blocks failovers.
    let text = redis_with_sentinels(
        "[stores.settings]\nsentinel_quorum = 3",
        &[("s1", "a"), ("s2", "b"), ("s3", "w")],
    );
    assert!(has(&text, "TC106"), "{:?}", diags_n(&text, 1));
    let text = redis_with_sentinels(
        "[stores.settings]\nsentinel_quorum = 4",
        &[("s1", "a"), ("s2", "b"), ("s3", "w")],
    );
    let d = diags_n(&text, 0);
    assert!(
        d.iter()
            .any(|d| d.rule.code == "TC106" && d.message.contains("no failover can ever")),
        "{d:?}"
    );
    // Without Sentinels the rule does not apply; a Sentinel on another kind is flagged.
    let plain = doc(&[store(
        "cache",
        "redis",
        "",
        &[member("r1", "a", "priority = 2"), member("r2", "b", "")],
    )]);
    assert!(!has(&plain, "TC106"), "{:?}", diags_n(&plain, 1));
    let pg = doc(&[store(
        "pg",
        "postgres",
        "",
        &[
            member("p1", "a", "priority = 2"),
            member("p2", "b", "sentinel = true"),
        ],
    )]);
    assert!(has(&pg, "TC207"), "{:?}", diags_n(&pg, 1));
}
