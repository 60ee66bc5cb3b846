//! Synthetic topologies for benchmarks and tests: many stores of every kind,
//! spread over many regions, that pass every rule.

use std::fmt::Write;

/// TOML text of a passing topology with `stores` stores of 10 members each,
/// spread round-robin over `regions` regions (at least 3). Region `r0` is the
/// primary region; each store depends on the one before it.
pub fn large_topology(stores: usize, regions: usize) -> String {
    let regions = regions.max(3);
    let mut s = String::with_capacity(stores * 10 * 120);
    s.push_str("name = \"generated\"\n\n");
    for r in 0..regions {
        let role = if r == 0 { "primary" } else { "secondary" };
        let _ = writeln!(s, "[[regions]]\nname = \"r{r}\"\nrole = \"{role}\"\n");
    }
    let kinds = ["mongodb", "postgres", "eventstoredb", "cosmosdb"];
    for st in 0..stores {
        let kind = kinds[st % kinds.len()];
        let _ = writeln!(s, "[[stores]]\nname = \"s{st}\"\nkind = \"{kind}\"");
        if st > 0 {
            let _ = writeln!(s, "depends_on = [\"s{}\"]", st - 1);
        }
        s.push('\n');
        for i in 0..10 {
            let region = i % regions;
            let _ = writeln!(
                s,
                "[[stores.members]]\nname = \"s{st}-m{i}\"\nregion = \"r{region}\""
            );
            if kind != "cosmosdb" {
                let _ = writeln!(s, "host = \"s{st}-m{i}.r{region}.internal:{}\"", 20000 + i);
            }
            let preferred = if region == 0 { 2 } else { 1 };
            match kind {
                // Seven voters at most; the rest are non-voting, priority 0.
                "mongodb" if i >= 7 => s.push_str("votes = 0\npriority = 0\n"),
                "eventstoredb" if i == 9 => s.push_str("read_only_replica = true\n"),
                "cosmosdb" => {
                    let _ = writeln!(s, "failover_priority = {i}");
                }
                _ => {
                    let _ = writeln!(s, "priority = {preferred}");
                }
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check, CheckOptions};
    use crate::parse::parse_source;

    #[test]
    fn generated_topology_parses_and_passes() {
        let text = large_topology(8, 10);
        let parsed = parse_source("gen.toml", &text).unwrap();
        assert_eq!(
            parsed
                .topology
                .stores
                .iter()
                .map(|s| s.members.len())
                .sum::<usize>(),
            80
        );
        let diags = check(&parsed, &CheckOptions::default());
        assert!(diags.is_empty(), "{diags:#?}");
    }
}
