//! "Did you mean …?": the closest known name to a misspelt one (a field,
//! a region, a store kind, a store), so that `priorty` or `chicgo` comes back
//! with the word that was meant instead of a list to read through.

/// Names people write for a store kind that are not the kind's own name.
const KIND_ALIASES: &[(&str, &str)] = &[
    ("postgresql", "postgres"),
    ("pg", "postgres"),
    ("pgsql", "postgres"),
    ("mongo", "mongodb"),
    ("esdb", "eventstoredb"),
    ("kurrentdb", "eventstoredb"),
    ("eventstore", "eventstoredb"),
    ("cosmos", "cosmosdb"),
    ("sentinel", "redis"),
];

/// The candidate closest to `word`, when one is close enough to be what was
/// meant: a known alias, the same word in another case, or within a small
/// edit distance (one edit for short words, about a third of the letters for
/// longer ones) and similar by Jaro–Winkler. `None` rather than a wild guess.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    if let Some(c) = candidates
        .iter()
        .find(|c| c.to_lowercase() == lower && **c != word)
    {
        return Some(c);
    }
    if let Some((_, to)) = KIND_ALIASES.iter().find(|(from, _)| *from == lower) {
        if let Some(c) = candidates.iter().find(|c| *c == to) {
            return Some(c);
        }
    }
    let budget = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .filter(|c| **c != word)
        .map(|c| {
            let lc = c.to_lowercase();
            (
                strsim::damerau_levenshtein(&lower, &lc),
                strsim::jaro_winkler(&lower, &lc),
                *c,
            )
        })
        .filter(|(d, jw, _)| *d <= budget && *jw >= 0.7)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn close_misspellings_are_suggested() {
        let fields = ["name", "host", "region", "priority", "votes", "arbiter"];
        assert_eq!(did_you_mean("priorty", fields), Some("priority"));
        assert_eq!(did_you_mean("vote", fields), Some("votes"));
        assert_eq!(did_you_mean("Region", fields), Some("region"));
        assert_eq!(did_you_mean("owner", fields), None);
        let regions = ["chicago", "dallas", "phoenix"];
        assert_eq!(did_you_mean("chicgo", regions), Some("chicago"));
        assert_eq!(did_you_mean("dalas", regions), Some("dallas"));
        assert_eq!(did_you_mean("boston", regions), None);
    }

    #[test]
    fn store_kind_aliases_are_understood() {
        let kinds = ["mongodb", "postgres", "cosmosdb", "eventstoredb", "redis"];
        assert_eq!(did_you_mean("postgresql", kinds), Some("postgres"));
        assert_eq!(did_you_mean("mongo", kinds), Some("mongodb"));
        assert_eq!(did_you_mean("esdb", kinds), Some("eventstoredb"));
        assert_eq!(did_you_mean("mysql", kinds), None);
    }
}
