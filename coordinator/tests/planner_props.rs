//! Properties of generated plans over random topologies: random dependency
//! DAGs, random capabilities, every mode. A generated plan always validates,
//! never asks a store for an operation its capability lacks, promotes every
//! store exactly once and only after everything it depends on, and fences
//! dependents before what they depend on.

use proptest::prelude::*;
use std::collections::BTreeMap;
use switchyard::plan::{Mode, PlanOp};
use switchyard::planner::{plan_failover, PlanOptions};
use switchyard::validate::validate;
use switchyard_controller::Capability;
use switchyard_topology::{Member, Region, RegionRole, Store, StoreKind, Topology};

fn member(name: String, region: &str) -> Member {
    Member {
        name,
        host: Some("127.0.0.1:1".into()),
        region: region.into(),
        priority: 1.0,
        votes: 1,
        arbiter: false,
        hidden: false,
        read_only_replica: false,
        failover_priority: None,
        sentinel: false,
        hooks: Default::default(),
    }
}

fn cap(bits: u16) -> Capability {
    let mut c = Capability::none();
    c.planned_switchover = true;
    c.forced_failover = true;
    c.fencing = bits & 1 != 0;
    c.positions = bits & 2 != 0;
    c.repoint = bits & 4 != 0;
    c.rejoin = bits & 8 != 0;
    c.self_electing = bits & 16 != 0;
    c.sticky_priorities = bits & 32 != 0;
    c.lag_bound = bits & 64 != 0;
    c
}

prop_compose! {
    /// Up to 6 stores; store i may depend on any store j < i (a DAG).
    fn topo()(n in 1usize..6)(
        deps in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 6), n),
        caps in proptest::collection::vec(0u16..128, n),
        lag in proptest::collection::vec(proptest::option::of(1u64..1 << 30), n),
    ) -> (Topology, BTreeMap<String, Capability>) {
        let n = deps.len();
        let regions = ["east", "west", "south"];
        let mut t = Topology { capacity_margin_percent: None,
            name: "prop".into(),
            regions: regions
                .iter()
                .map(|r| Region { capacity: None, load: None, name: (*r).into(), role: RegionRole::Secondary })
                .collect(),
            stores: vec![],
        };
        let mut c = BTreeMap::new();
        for i in 0..n {
            let name = format!("s{i}");
            t.stores.push(Store { tags: Vec::new(),
                name: name.clone(),
                kind: if caps[i] & 16 != 0 { StoreKind::Mongodb } else { StoreKind::Postgres },
                depends_on: (0..i).filter(|j| deps[i][*j]).map(|j| format!("s{j}")).collect(),
                max_lag_bytes: lag[i],
                max_lag_ms: None,
                connection: Default::default(),
                settings: Default::default(),
                members: regions.iter().map(|r| member(format!("{name}-{r}"), r)).collect(),
            });
            c.insert(name, cap(caps[i]));
        }
        (t, c)
    }
}

fn supported(op: &PlanOp, c: &Capability) -> bool {
    match op {
        PlanOp::Fence | PlanOp::Unfence => c.fencing,
        PlanOp::CapturePosition | PlanOp::WaitForPosition { .. } => c.positions,
        PlanOp::RepointFollowers => c.repoint,
        PlanOp::Rejoin => c.rejoin,
        PlanOp::MakeSticky { .. } => c.sticky_priorities,
        PlanOp::CheckReadiness { .. } | PlanOp::Promote { .. } => true,
    }
}

proptest! {
    #[test]
    fn generated_plans_are_valid_and_ordered(
        (t, caps) in topo(),
        mode in prop_oneof![Just(Mode::Planned), Just(Mode::Forced), Just(Mode::ForcedAcceptDataLoss)],
    ) {
        let plan = plan_failover(&t, &caps, &PlanOptions::new("west", mode)).unwrap();
        prop_assert!(validate(&plan, &t, &caps).is_ok(), "{:?}", plan.to_toml());
        // Round-trips through both formats.
        prop_assert_eq!(&switchyard::validate::parse_plan("p", &plan.to_toml().unwrap()).unwrap(), &plan);
        prop_assert_eq!(&switchyard::validate::parse_plan("p", &plan.to_json()).unwrap(), &plan);

        let mut promoted_at = BTreeMap::new();
        let mut fenced_at = BTreeMap::new();
        for (si, st) in plan.stages.iter().enumerate() {
            for step in &st.steps {
                prop_assert!(supported(&step.op, &caps[&step.store]), "{} {}", step.store, step.op.name());
                match step.op {
                    PlanOp::Promote { .. } => {
                        prop_assert!(promoted_at.insert(step.store.clone(), si).is_none(), "promoted twice");
                    }
                    PlanOp::Fence => {
                        prop_assert!(mode == Mode::Planned);
                        fenced_at.insert(step.store.clone(), si);
                    }
                    PlanOp::Rejoin => prop_assert!(mode == Mode::Planned),
                    _ => {}
                }
            }
        }
        prop_assert_eq!(promoted_at.len(), t.stores.len(), "every store promoted once");
        for s in &t.stores {
            for d in &s.depends_on {
                prop_assert!(promoted_at[d] < promoted_at[&s.name], "{} before its dependency {}", s.name, d);
                if let (Some(fs), Some(fd)) = (fenced_at.get(&s.name), fenced_at.get(d)) {
                    prop_assert!(fs < fd, "dependent {} fenced after {}", s.name, d);
                }
            }
            // Fencing, if any, comes before promoting.
            if let Some(f) = fenced_at.get(&s.name) {
                prop_assert!(*f < promoted_at[&s.name]);
            }
        }
        // Readiness first, read-only.
        let readiness_only = plan.stages[0]
            .steps
            .iter()
            .all(|s| matches!(s.op, PlanOp::CheckReadiness { .. }));
        prop_assert!(readiness_only);
    }
}
