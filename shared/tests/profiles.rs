//! The size profiles (samconfig.toml's `small`, `medium` and `large` environments,
//! README "Capacity") deploy: every override names a parameter of template.yaml and
//! gives it a value that parameter allows, and the profiles grow in the knobs that
//! infra/capacity.py's model names.

use std::collections::BTreeMap;

use serde_yaml::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

/// Each environment's `deploy.parameters` overrides, by environment name.
fn environments() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(root().join("samconfig.toml")).expect("samconfig.toml");
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some(rest) = line.strip_prefix("parameter_overrides") {
            let env = section
                .strip_suffix(".deploy.parameters")
                .unwrap_or_else(|| panic!("parameter_overrides outside deploy: [{section}]"));
            let value = rest
                .split_once('"')
                .map(|(_, v)| v.trim_end_matches('"'))
                .expect("a quoted value");
            let map = out.entry(env.to_owned()).or_default();
            for kv in value.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("Name=value");
                assert!(
                    map.insert(k.to_owned(), v.to_owned()).is_none(),
                    "{env}: {k} twice"
                );
            }
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Why `value` is not one that `param` accepts, if it is not.
fn refusal(name: &str, param: &Value, value: &str) -> Option<String> {
    if param.is_null() {
        return Some(format!("{name} is not a parameter of template.yaml"));
    }
    if let Some(allowed) = param["AllowedValues"].as_sequence() {
        let allowed: Vec<String> = allowed.iter().map(scalar).collect();
        if !allowed.iter().any(|a| a == value) {
            return Some(format!("{name}={value} is not among {allowed:?}"));
        }
    }
    if param["Type"].as_str() == Some("Number") {
        let Ok(n) = value.parse::<f64>() else {
            return Some(format!("{name}={value} is not a number"));
        };
        if let Some(min) = param["MinValue"].as_f64() {
            if n < min {
                return Some(format!("{name}={value} is below its MinValue {min}"));
            }
        }
        if let Some(max) = param["MaxValue"].as_f64() {
            if n > max {
                return Some(format!("{name}={value} is above its MaxValue {max}"));
            }
        }
    }
    None
}

const PROFILES: [&str; 3] = ["small", "medium", "large"];

/// The knobs the capacity model names: every profile states each of them.
const KNOBS: &[&str] = &[
    "ApiThrottleRate",
    "ApiThrottleBurst",
    "SubmitReservedConcurrency",
    "StatusReservedConcurrency",
    "ProcessReservedConcurrency",
    "ProcessMaxConcurrency",
    "SubmitMemorySize",
    "ProcessMemorySize",
    "DbInstanceClass",
    "CacheNodeType",
    "AppLogLevel",
];

#[test]
fn every_environment_sets_only_parameters_the_template_allows() {
    let t = template();
    let envs = environments();
    for p in PROFILES {
        assert!(
            envs.contains_key(p),
            "samconfig.toml has no {p} environment"
        );
    }
    let mut bad = Vec::new();
    for (env, overrides) in &envs {
        for (name, value) in overrides {
            if let Some(why) = refusal(name, &t["Parameters"][name.as_str()], value) {
                bad.push(format!("[{env}] {why}"));
            }
        }
    }
    assert!(bad.is_empty(), "samconfig.toml:\n{}", bad.join("\n"));
}

/// The check itself: a made-up parameter, a value outside AllowedValues and a
/// number over its MaxValue are each refused.
#[test]
fn the_check_refuses_what_cloudformation_would() {
    let t = template();
    let p = |n: &str| t["Parameters"][n].clone();
    assert!(refusal("ApiThrotleRate", &p("ApiThrotleRate"), "100").is_some());
    assert!(refusal("ProcessMemorySize", &p("ProcessMemorySize"), "1000").is_some());
    assert!(refusal("ApiThrottleRate", &p("ApiThrottleRate"), "20000").is_some());
    assert!(refusal("ApiThrottleRate", &p("ApiThrottleRate"), "ten").is_some());
    assert!(refusal("AppLogLevel", &p("AppLogLevel"), "trace").is_some());
    assert!(refusal("ApiThrottleRate", &p("ApiThrottleRate"), "100").is_none());
}

#[test]
fn each_profile_states_every_knob_and_the_profiles_grow() {
    let envs = environments();
    for p in PROFILES {
        for k in KNOBS {
            assert!(envs[p].contains_key(*k), "[{p}] does not set {k}");
        }
        let env = &envs[p];
        let n = |k: &str| env[k].parse::<u64>().unwrap();
        let reserved = n("ProcessReservedConcurrency");
        assert!(
            reserved == 0 || reserved >= n("ProcessMaxConcurrency"),
            "[{p}] process's reserve is below its MaximumConcurrency: its pollers would be throttled"
        );
        assert!(
            n("ApiThrottleBurst") >= n("ApiThrottleRate").min(5000),
            "[{p}] a burst below the rate"
        );
    }
    for pair in PROFILES.windows(2) {
        let (a, b) = (&envs[pair[0]], &envs[pair[1]]);
        for k in ["ApiThrottleRate", "ProcessMaxConcurrency"] {
            let (x, y): (u64, u64) = (a[k].parse().unwrap(), b[k].parse().unwrap());
            assert!(
                y > x,
                "{k}: {} ({x}) is not below {} ({y})",
                pair[0],
                pair[1]
            );
        }
    }
}

/// Every parameter a profile leaves out has a default (or is one of the deploy-time
/// identity settings every deploy passes).
#[test]
fn what_a_profile_leaves_out_has_a_default() {
    let t = template();
    let envs = environments();
    for p in PROFILES {
        for (name, param) in t["Parameters"].as_mapping().unwrap() {
            let name = name.as_str().unwrap();
            if ["JwtIssuer", "JwtAudience"].contains(&name) {
                continue;
            }
            assert!(
                envs[p].contains_key(name) || param.get("Default").is_some(),
                "[{p}] {name} has neither an override nor a default"
            );
        }
    }
}
