//! N+1 capacity: can the regions that survive a loss carry the whole load?
//!
//! Regions may declare `capacity` and `load` in the same units (requests/s,
//! cores, whatever the system is sized in). When a region is lost its load
//! does not disappear: the survivors must absorb it. So the test for losing
//! a set of regions is `capacity of the survivors >= total load`, and the
//! headroom is the difference. The same arithmetic serves `topocheck` (the
//! worst loss of `--tolerate` regions, see `check.rs`) and the coordinator's
//! readiness check of an execution (the regions it moves primaries away
//! from), so both say the same thing in the same words.

use crate::check::CheckOptions;
use crate::diagnostic::Diagnostic;
use crate::model::{RegionRole, Topology};
use crate::rules;
use crate::source_map::SourceMap;

/// What the survivors of a loss can carry, with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityVerdict {
    /// The regions lost, in declaration order.
    pub lost: Vec<String>,
    /// Sum of the surviving regions' capacity.
    pub survivor_capacity: f64,
    /// Sum of every region's load (what the survivors must absorb).
    pub total_load: f64,
    /// `survivor_capacity - total_load`; negative when they cannot.
    pub headroom: f64,
    /// Each surviving region's capacity, for the message.
    pub survivors: Vec<(String, f64)>,
    /// Each region's load, for the message.
    pub loads: Vec<(String, f64)>,
}

impl CapacityVerdict {
    /// True when the survivors can carry the whole load.
    pub fn fits(&self) -> bool {
        self.headroom >= 0.0
    }

    /// Headroom in percent of the total load (`None` without load).
    pub fn headroom_percent(&self) -> Option<f64> {
        (self.total_load > 0.0).then(|| 100.0 * self.headroom / self.total_load)
    }

    /// The arithmetic, e.g. `losing east leaves capacity 60 (west 30 + south 30)
    /// for a load of 70 (east 40 + west 20 + south 10): short by 10`.
    pub fn arithmetic(&self) -> String {
        let sum = |parts: &[(String, f64)]| {
            if parts.is_empty() {
                "no region".to_string()
            } else {
                parts
                    .iter()
                    .map(|(r, v)| format!("{r} {}", num(*v)))
                    .collect::<Vec<_>>()
                    .join(" + ")
            }
        };
        let verdict = if self.fits() {
            format!(
                "headroom {}{}",
                num(self.headroom),
                self.headroom_percent()
                    .map_or(String::new(), |p| format!(" ({}% of the load)", num1(p)))
            )
        } else {
            format!("short by {}", num(-self.headroom))
        };
        format!(
            "losing {} leaves capacity {} ({}) for a load of {} ({}): {verdict}",
            join(&self.lost),
            num(self.survivor_capacity),
            sum(&self.survivors),
            num(self.total_load),
            sum(&self.loads),
        )
    }
}

/// Why the capacity of a topology cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeclared {
    /// Index of the region in `regions`.
    pub region: usize,
    /// The field it lacks: `capacity` or `load`.
    pub field: &'static str,
}

/// Whether the topology takes part in capacity checks: some region declares
/// `capacity` or `load`.
pub fn declared(t: &Topology) -> bool {
    t.regions
        .iter()
        .any(|r| r.capacity.is_some() || r.load.is_some())
}

/// The fields a capacity check needs and the topology lacks. A witness
/// region may declare neither (it carries nothing and takes nothing over);
/// every other region must declare both once one region declares either,
/// because an unknown capacity is not zero and an unknown load is not zero.
pub fn undeclared(t: &Topology) -> Vec<Undeclared> {
    if !declared(t) {
        return vec![];
    }
    let mut out = vec![];
    for (i, r) in t.regions.iter().enumerate() {
        if r.role == RegionRole::Witness && r.capacity.is_none() && r.load.is_none() {
            continue;
        }
        if r.capacity.is_none() {
            out.push(Undeclared {
                region: i,
                field: "capacity",
            });
        }
        if r.load.is_none() {
            out.push(Undeclared {
                region: i,
                field: "load",
            });
        }
    }
    out
}

/// The arithmetic of losing `lost` (region names). Undeclared values count
/// as 0 here; callers refuse first when [`undeclared`] is not empty.
pub fn after_losing(t: &Topology, lost: &[&str]) -> CapacityVerdict {
    let mut survivors = vec![];
    let mut loads = vec![];
    let mut lost_names = vec![];
    for r in &t.regions {
        let load = r.load.unwrap_or(0.0);
        if load != 0.0 {
            loads.push((r.name.clone(), load));
        }
        if lost.contains(&r.name.as_str()) {
            lost_names.push(r.name.clone());
        } else if r.capacity.is_some() || r.role != RegionRole::Witness {
            survivors.push((r.name.clone(), r.capacity.unwrap_or(0.0)));
        }
    }
    let survivor_capacity: f64 = survivors.iter().map(|(_, c)| c).sum();
    let total_load: f64 = loads.iter().map(|(_, l)| l).sum();
    CapacityVerdict {
        lost: lost_names,
        survivor_capacity,
        total_load,
        headroom: survivor_capacity - total_load,
        survivors,
        loads,
    }
}

/// The worst loss of `n` regions for capacity: the `n` regions with the most
/// capacity (load is absorbed whichever regions are lost). Ties go to the
/// earliest-declared region.
pub fn worst_loss(t: &Topology, n: usize) -> CapacityVerdict {
    let caps: Vec<u64> = t
        .regions
        .iter()
        // Capacities are compared, not summed, here: scale so that
        // fractional capacities keep their order.
        .map(|r| (r.capacity.unwrap_or(0.0).max(0.0) * 1000.0) as u64)
        .collect();
    let (idx, _) = crate::quorum::worst_loss(&caps, n);
    let mut names: Vec<&str> = idx.iter().map(|&i| t.regions[i].name.as_str()).collect();
    if names.is_empty() {
        // Every region has capacity 0: losing the first one is as bad as any.
        names.extend(t.regions.first().map(|r| r.name.as_str()));
    }
    after_losing(t, &names)
}

/// topocheck's capacity rules (TC107, TC108) on a topology whose locations
/// are in `sm`.
pub fn diagnostics(t: &Topology, sm: &SourceMap, opts: &CheckOptions) -> Vec<Diagnostic> {
    if !declared(t) {
        return vec![];
    }
    let missing = undeclared(t);
    if !missing.is_empty() {
        return missing
            .iter()
            .map(|u| {
                let r = &t.regions[u.region];
                let path = format!("regions[{}].name", u.region);
                Diagnostic::new(
                    &rules::CAPACITY_LOST,
                    format!(
                        "region `{}` declares no `{}`: the capacity of the survivors of a \
                         region loss cannot be judged",
                        r.name, u.field
                    ),
                    sm.locate(&path),
                    format!("regions[{}].{}", u.region, u.field),
                )
                .label(format!(
                    "add `{} = …` (same units as the other regions)",
                    u.field
                ))
                .help(format!(
                    "declare `{}` on region `{}`; only a witness region may omit both",
                    u.field, r.name
                ))
            })
            .collect();
    }
    let v = worst_loss(t, opts.tolerate);
    let Some(first) = v.lost.first() else {
        return vec![];
    };
    let ri = t.regions.iter().position(|r| &r.name == first).unwrap_or(0);
    let cap_path = format!("regions[{ri}].capacity");
    let at = sm.locate(&cap_path);
    if !v.fits() {
        return vec![
            Diagnostic::new(&rules::CAPACITY_LOST, v.arithmetic(), at, cap_path)
                .label(format!(
                    "the survivors cannot absorb the load after losing {}",
                    join(&v.lost)
                ))
                .help(format!(
            "add at least {} of capacity to the regions that survive losing {}, or move that \
             much load away",
            num(-v.headroom),
            join(&v.lost)
        )),
        ];
    }
    if let (Some(margin), Some(pct)) = (t.capacity_margin_percent, v.headroom_percent()) {
        if pct < margin {
            let want = margin / 100.0 * v.total_load;
            return vec![Diagnostic::new(
                &rules::CAPACITY_MARGIN,
                format!(
                    "{}; the declared margin is {}%",
                    v.arithmetic(),
                    num1(margin)
                ),
                at,
                cap_path,
            )
            .label(format!(
                "headroom below {}% after losing {}",
                num1(margin),
                join(&v.lost)
            ))
            .secondary(
                sm.locate("capacity_margin_percent"),
                "capacity_margin_percent",
                "margin declared here",
            )
            .help(format!(
                "add {} of capacity to the survivors to keep a headroom of {} ({}% of {})",
                num(want - v.headroom),
                num(want),
                num1(margin),
                num(v.total_load)
            ))];
        }
    }
    vec![]
}

/// A number as written: integers without a fraction.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn num1(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

fn join(names: &[String]) -> String {
    match names {
        [] => "no region".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_str;

    fn topo(regions: &str) -> Topology {
        parse_str("t.toml", &format!("name = \"t\"\n{regions}")).unwrap()
    }

    #[test]
    fn survivors_absorb_the_lost_load() {
        let t = topo(
            "[[regions]]\nname = \"east\"\nrole = \"primary\"\ncapacity = 100\nload = 40\n\
             [[regions]]\nname = \"west\"\nrole = \"secondary\"\ncapacity = 30\nload = 20\n\
             [[regions]]\nname = \"south\"\nrole = \"secondary\"\ncapacity = 30\nload = 10\n",
        );
        let v = worst_loss(&t, 1);
        assert_eq!(v.lost, vec!["east"]);
        assert!(!v.fits());
        assert_eq!(
            v.arithmetic(),
            "losing east leaves capacity 60 (west 30 + south 30) for a load of 70 \
             (east 40 + west 20 + south 10): short by 10"
        );
        let v = after_losing(&t, &["west"]);
        assert!(v.fits());
        assert_eq!(v.headroom, 60.0);
        assert!(v.arithmetic().ends_with("headroom 60 (85.7% of the load)"));
    }

    #[test]
    fn undeclared_fields_are_named_but_witnesses_may_omit_both() {
        let t = topo(
            "[[regions]]\nname = \"east\"\nrole = \"primary\"\ncapacity = 100\n\
             [[regions]]\nname = \"west\"\nrole = \"secondary\"\n\
             [[regions]]\nname = \"w\"\nrole = \"witness\"\n",
        );
        assert_eq!(
            undeclared(&t),
            vec![
                Undeclared {
                    region: 0,
                    field: "load"
                },
                Undeclared {
                    region: 1,
                    field: "capacity"
                },
                Undeclared {
                    region: 1,
                    field: "load"
                },
            ]
        );
        let none = topo("[[regions]]\nname = \"east\"\nrole = \"primary\"\n");
        assert!(!declared(&none) && undeclared(&none).is_empty());
    }
}
