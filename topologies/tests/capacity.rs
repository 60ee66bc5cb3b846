//! N+1 capacity (TC107, TC108) both ways, with the arithmetic in the message.

use switchyard_topology::{check_text, CheckOptions, Diagnostic};

fn topology(regions: &[(&str, &str, Option<f64>, Option<f64>)], margin: Option<f64>) -> String {
    let mut t = String::from("name = \"t\"\n");
    if let Some(m) = margin {
        t.push_str(&format!("capacity_margin_percent = {m}\n"));
    }
    for (name, role, cap, load) in regions {
        t.push_str(&format!(
            "\n[[regions]]\nname = \"{name}\"\nrole = \"{role}\"\n"
        ));
        if let Some(c) = cap {
            t.push_str(&format!("capacity = {c}\n"));
        }
        if let Some(l) = load {
            t.push_str(&format!("load = {l}\n"));
        }
    }
    // A PostgreSQL store with a standby in every non-witness region, so that
    // only the capacity rules can fire.
    t.push_str("\n[[stores]]\nname = \"pg\"\nkind = \"postgres\"\n");
    for (i, (name, role, _, _)) in regions.iter().enumerate() {
        if *role != "witness" {
            let prio = if *role == "primary" { 2 } else { 1 };
            t.push_str(&format!(
                "\n[[stores.members]]\nname = \"pg-{name}\"\nhost = \"pg{i}.internal:5432\"\nregion = \"{name}\"\npriority = {prio}\n"
            ));
        }
    }
    t
}

fn capacity_findings(text: &str, tolerate: usize) -> Vec<Diagnostic> {
    let r = check_text("t.toml", text, &CheckOptions { tolerate });
    assert!(!r.invalid, "does not parse: {:?}", r.diagnostics);
    r.diagnostics
        .into_iter()
        .filter(|d| d.rule.code == "TC107" || d.rule.code == "TC108")
        .collect()
}

#[test]
fn two_regions_sized_for_their_own_load_fail_with_the_arithmetic() {
    let t = topology(
        &[
            ("east", "primary", Some(100.0), Some(70.0)),
            ("west", "secondary", Some(100.0), Some(50.0)),
        ],
        None,
    );
    let d = capacity_findings(&t, 1);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].rule.code, "TC107");
    assert_eq!(
        d[0].message,
        "losing east leaves capacity 100 (west 100) for a load of 120 (east 70 + west 50): short by 20"
    );
    assert_eq!(d[0].primary.as_ref().unwrap().field, "regions[0].capacity");
    assert!(
        d[0].help.contains("add at least 20 of capacity"),
        "{}",
        d[0].help
    );
}

#[test]
fn three_regions_with_half_spare_pass_and_the_margin_warns_below_it() {
    let regions = [
        ("east", "primary", Some(60.0), Some(40.0)),
        ("west", "secondary", Some(60.0), Some(40.0)),
        ("south", "secondary", Some(60.0), Some(20.0)),
    ];
    // Losing any one leaves 120 for a load of 100: headroom 20 (20 %).
    assert!(capacity_findings(&topology(&regions, None), 1).is_empty());
    assert!(capacity_findings(&topology(&regions, Some(20.0)), 1).is_empty());
    let d = capacity_findings(&topology(&regions, Some(25.0)), 1);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].rule.code, "TC108");
    assert_eq!(
        d[0].message,
        "losing east leaves capacity 120 (west 60 + south 60) for a load of 100 \
         (east 40 + west 40 + south 20): headroom 20 (20% of the load); the declared margin is 25%"
    );
    assert!(d[0].help.contains("add 5 of capacity"), "{}", d[0].help);
    // Losing two regions at once is more than this sizing carries.
    let d = capacity_findings(&topology(&regions, None), 2);
    assert_eq!(d[0].rule.code, "TC107");
    assert!(
        d[0].message
            .starts_with("losing east and west leaves capacity 60 (south 60)"),
        "{}",
        d[0].message
    );
}

#[test]
fn undeclared_capacity_is_reported_not_guessed_and_witnesses_may_omit_it() {
    let t = topology(
        &[
            ("east", "primary", Some(100.0), Some(40.0)),
            ("west", "secondary", None, Some(40.0)),
            ("tie", "witness", None, None),
        ],
        None,
    );
    let d = capacity_findings(&t, 1);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].rule.code, "TC107");
    assert!(
        d[0].message
            .contains("region `west` declares no `capacity`"),
        "{}",
        d[0].message
    );
    assert_eq!(d[0].primary.as_ref().unwrap().field, "regions[1].capacity");
    // Without any declaration the rules stay silent.
    let t = topology(
        &[
            ("east", "primary", None, None),
            ("west", "secondary", None, None),
        ],
        None,
    );
    assert!(capacity_findings(&t, 1).is_empty());
}
