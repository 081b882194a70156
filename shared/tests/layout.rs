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

/// The library's top-level modules depend on each other in one direction only: a
/// module never reaches, through any chain of `crate::` paths, back to itself. So
/// each can be read (and replaced) knowing only the modules below it.
#[test]
fn the_library_has_no_module_cycles() {
    use std::collections::{BTreeMap, BTreeSet};

    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "bin" || name == "lib.rs" {
            continue;
        }
        modules.insert(name.trim_end_matches(".rs").to_owned());
    }
    fn sources(path: &std::path::Path, out: &mut Vec<String>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                sources(&entry.unwrap().path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for module in &modules {
        let mut texts = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            sources(&dir, &mut texts);
        } else {
            sources(&src.join(format!("{module}.rs")), &mut texts);
        }
        let mut uses = BTreeSet::new();
        for text in texts {
            // Unit tests may reach anywhere; the code they test may not.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines() {
                let line = line.split("//").next().unwrap_or_default();
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(group) => group
                            .split('}')
                            .next()
                            .unwrap_or_default()
                            .split(',')
                            .map(|n| n.trim().split("::").next().unwrap_or_default())
                            .collect(),
                        None => vec![rest
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or_default()],
                    };
                    for name in names {
                        if name != module && modules.contains(name) {
                            uses.insert(name.to_owned());
                        }
                    }
                }
            }
        }
        deps.insert(module.clone(), uses);
    }
    // A depth-first walk from each module: reaching the module again is a cycle.
    for start in &modules {
        let mut stack: Vec<Vec<String>> = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            for next in &deps[last] {
                let mut longer = path.clone();
                longer.push(next.clone());
                assert!(next != start, "module cycle: {}", longer.join(" -> "));
                if seen.insert(next.clone()) {
                    stack.push(longer);
                }
            }
        }
    }
    assert!(
        deps["api"].contains("services"),
        "the scan finds dependencies"
    );
}
