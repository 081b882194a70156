//! The README stands alone: every variable the code reads is in its configuration
//! table, every route the service answers is in its API table, and nothing links
//! outside the repository.

fn readme() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(path).expect("README.md")
}

fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} section"));
    let rest = &text[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn every_configuration_variable_is_documented() {
    let text = readme();
    let table = section(&text, "## Configuration");
    for var in facesvg::config::VARIABLES {
        assert!(
            table.contains(&format!("`{var}`")),
            "{var} is read by the code but not in the README"
        );
    }
}

#[test]
fn every_route_is_in_the_api_table() {
    let text = readme();
    let table = section(&text, "## API");
    let spec: serde_json::Value =
        serde_json::from_str(include_str!("../src/api/openapi.json")).expect("openapi.json");
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let row = format!(
                "`{} {}",
                method.to_uppercase(),
                path.split('?').next().unwrap()
            );
            assert!(
                table.contains(&row),
                "{row}` is served but not in the README's API table"
            );
        }
    }
}

#[test]
fn nothing_links_outside_the_repository() {
    let text = readme();
    assert!(
        !text.contains("../"),
        "the README links outside the repository"
    );
    for doc in ["SECURITY.md", "docs/viewer.png"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(doc);
        assert!(
            !text.contains(doc) || path.exists(),
            "{doc} is linked but missing"
        );
    }
}
