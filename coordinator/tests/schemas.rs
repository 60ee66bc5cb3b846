//! docs/schemas/ holds the JSON Schemas generated (schemars) from the types
//! that print `--output json` lines; this keeps the files and the types in
//! step. `json_output.rs` validates real output against these files. Set
//! UPDATE_SCHEMAS=1 to rewrite them after an intended change.

#[test]
fn docs_schemas_are_the_generated_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
    for (file, schema) in switchyard::output::schema::all() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(file);
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_SCHEMAS=1", path.display()));
        assert!(
            on_disk == text,
            "{} differs from the types; run with UPDATE_SCHEMAS=1 and review",
            path.display()
        );
    }
}
