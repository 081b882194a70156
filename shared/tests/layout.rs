//! The README's "Where each decision lives" table names files that exist.

use std::path::PathBuf;

#[test]
fn every_file_the_decision_table_names_exists() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split("## Where each decision lives")
        .nth(1)
        .expect("the README has the decision table")
        .split("\n## ")
        .next()
        .unwrap();
    let mut named = 0;
    for row in section
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('`'))
    {
        let cell = row.rsplit('|').nth(1).unwrap_or_default();
        let path = cell.split('`').nth(1).expect("a path in backticks");
        assert!(
            root.join(path).is_file(),
            "{path} (named in the README) is gone"
        );
        named += 1;
    }
    assert!(named >= 9, "only {named} rows");
}
