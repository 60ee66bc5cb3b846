//! Property tests: the checker's survival verdicts equal a brute-force
//! enumeration of region losses, and no input — random bytes or mutated
//! valid files — makes the parser, checker or renderers panic.

use proptest::prelude::*;
use switchyard_topology::{
    check_text, human, json, sarif, CheckOptions, Member, Region, RegionRole, Store, StoreKind,
    Topology,
};

/// (region index, votes, hidden/read-only flag, priority, arbiter)
type GenMember = (usize, u32, bool, f64, bool);

#[derive(Debug, Clone)]
struct Gen {
    regions: usize,
    tolerate: usize,
    stores: Vec<(bool, Vec<GenMember>)>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (1usize..6, 0usize..4).prop_flat_map(|(regions, tolerate)| {
        let member = (
            0..regions,
            0u32..3,
            any::<bool>(),
            prop_oneof![Just(0.0), Just(1.0), Just(2.0)],
            any::<bool>(),
        );
        let store = (any::<bool>(), prop::collection::vec(member, 1..10));
        prop::collection::vec(store, 1..4).prop_map(move |stores| Gen {
            regions,
            tolerate,
            stores,
        })
    })
}

fn build(g: &Gen) -> Topology {
    let regions = (0..g.regions)
        .map(|i| Region {
            capacity: None,
            load: None,
            name: format!("r{i}"),
            role: if i == 0 {
                RegionRole::Primary
            } else {
                RegionRole::Secondary
            },
        })
        .collect();
    let stores = g
        .stores
        .iter()
        .enumerate()
        .map(|(si, (mongo, members))| Store {
            tags: Vec::new(),
            name: format!("s{si}"),
            kind: if *mongo {
                StoreKind::Mongodb
            } else {
                StoreKind::Eventstoredb
            },
            depends_on: vec![],
            max_lag_bytes: None,
            max_lag_ms: None,
            connection: Default::default(),
            settings: Default::default(),
            members: members
                .iter()
                .enumerate()
                .map(|(mi, &(region, votes, flag, priority, arbiter))| Member {
                    name: format!("s{si}m{mi}"),
                    host: Some(format!("s{si}m{mi}.internal:{}", 1000 + mi)),
                    region: format!("r{region}"),
                    priority,
                    votes,
                    arbiter: *mongo && arbiter,
                    hidden: *mongo && flag,
                    read_only_replica: !*mongo && flag,
                    failover_priority: None,
                    sentinel: false,
                    hooks: Default::default(),
                })
                .collect(),
        })
        .collect();
    Topology {
        capacity_margin_percent: None,
        name: "random".into(),
        regions,
        stores,
    }
}

/// Every set of at most `n` of `regions` regions, as bit masks.
fn losses(regions: usize, n: usize) -> impl Iterator<Item = u32> {
    (0u32..(1 << regions)).filter(move |m| m.count_ones() as usize <= n)
}

fn in_mask(m: &Member, mask: u32) -> bool {
    let r: u32 = m.region[1..].parse().unwrap();
    mask & (1 << r) != 0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn survival_verdicts_match_brute_force(g in gen()) {
        let t = build(&g);
        let text = t.to_toml();
        let report = check_text("random.toml", &text, &CheckOptions { tolerate: g.tolerate });
        prop_assert!(!report.invalid, "{:?}", report.diagnostics);
        for s in &t.stores {
            let total: u64 = s.members.iter().map(|m| u64::from(m.effective_votes())).sum();
            let majority_breaks = total == 0 || losses(g.regions, g.tolerate).any(|mask| {
                let left: u64 = s.members.iter().filter(|m| !in_mask(m, mask)).map(|m| u64::from(m.effective_votes())).sum();
                2 * left <= total
            });
            let survivor_breaks = losses(g.regions, g.tolerate).any(|mask| {
                !s.members.iter().any(|m| !in_mask(m, mask) && m.electable())
            });
            let found = |code: &str| report.diagnostics.iter().any(|d| d.rule.code == code && d.store.as_deref() == Some(&s.name));
            prop_assert_eq!(found("TC101"), majority_breaks, "majority verdict for {} in\n{}", s.name, text);
            prop_assert_eq!(found("TC102"), survivor_breaks, "survivor verdict for {} in\n{}", s.name, text);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), tolerate in 0usize..4) {
        let text = String::from_utf8_lossy(&bytes);
        exercise(&text, tolerate);
    }

    #[test]
    fn toml_like_noise_never_panics(text in "([a-z_\\[\\]=\"{},.0-9 \n#-]|stores|members|regions|name|kind|region|votes|priority|mongodb|depends_on){0,200}", tolerate in 0usize..4) {
        exercise(&text, tolerate);
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0usize..EXAMPLES.len(),
        edits in prop::collection::vec((0u8..5, any::<prop::sample::Index>(), any::<prop::sample::Index>(), "[ -~\n]{0,12}"), 1..6),
        tolerate in 0usize..4,
    ) {
        let mut bytes = EXAMPLES[which].as_bytes().to_vec();
        for (op, a, b, chunk) in edits {
            if bytes.is_empty() {
                bytes.extend_from_slice(chunk.as_bytes());
                continue;
            }
            let i = a.index(bytes.len());
            let j = b.index(bytes.len());
            let (lo, hi) = (i.min(j), i.max(j));
            match op {
                0 => { bytes.drain(lo..hi.min(lo + 40)); }
                1 => { bytes.splice(i..i, chunk.bytes()); }
                2 => { bytes[i] = chunk.bytes().next().unwrap_or(b'"'); }
                3 => { let dup = bytes[lo..hi].to_vec(); bytes.splice(hi..hi, dup); }
                _ => { bytes.truncate(i); }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        exercise(&text, tolerate);
        // Whatever parses into the model can be mapped to locations.
        if switchyard_topology::parse_str("m.toml", &text).is_ok() {
            prop_assert!(switchyard_topology::source_map::SourceMap::from_text(&text).is_ok());
        }
    }
}

const EXAMPLES: &[&str] = &[
    include_str!("../examples/shop.toml"),
    include_str!("../examples/bad/mongodb-limits.toml"),
    include_str!("../examples/bad/dependency-cycle.toml"),
    include_str!("../examples/bad/cosmos-priorities.toml"),
    include_str!("../examples/bad/names.toml"),
];

/// Parse, check and render in every format; any panic fails the property.
fn exercise(text: &str, tolerate: usize) {
    let report = check_text("fuzz.toml", text, &CheckOptions { tolerate });
    let reports = [report];
    let _ = human::render(&reports, false);
    let _ = json::render(&reports);
    let _ = sarif::render(&reports);
}
