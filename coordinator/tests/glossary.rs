//! Every term the final report's footer defines has an entry in
//! docs/glossary.md, so the two cannot drift apart silently.

#[test]
fn every_footer_term_is_in_the_glossary() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/glossary.md");
    let glossary = std::fs::read_to_string(path).expect("docs/glossary.md");
    for line in switchyard::report::FOOTER {
        // Each footer sentence starts with the term(s) it defines, up to `:`.
        for term in line
            .split(". ")
            .filter_map(|s| s.split_once(':').map(|(t, _)| t))
        {
            if term.starts_with("More") {
                continue;
            }
            assert!(
                glossary.contains(&format!("**{term}**")),
                "docs/glossary.md lacks **{term}**"
            );
        }
    }
}
