//! Every function's environment in `template.yaml` goes through the real
//! configuration parser: a value the code would refuse at start-up (a body limit
//! Lambda cannot deliver, a bad number) fails here, not in the first cold start.

use std::collections::HashMap;

use serde_yaml::Value;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("template.yaml")).expect("parses")
}

/// Plain values as they are; `!Ref`, `!Sub`, `!If` and friends stand for values the
/// stack fills in, which are not numbers the parser checks: they are left out.
fn plain(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[test]
fn every_functions_environment_is_accepted_by_the_configuration() {
    let t = template();
    let globals = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    let mut checked = 0;
    for (name, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let mut env: HashMap<String, String> = HashMap::new();
        let local = r["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        for (k, v) in globals.iter().chain(local.iter()) {
            if let (Some(k), Some(v)) = (k.as_str(), plain(v)) {
                env.insert(k.to_owned(), v);
            }
        }
        let config = facesvg::config::Config::from_lookup(|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(
            config.auth_mode,
            facesvg::config::AuthMode::Jwt,
            "{name:?}: the deployed stack authenticates every request"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "the four functions");
}
