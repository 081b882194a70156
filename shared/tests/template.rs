//! The SAM template checked against the code: what cfn-lint cannot see.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

/// `!Ref X` / `!GetAtt X.Arn` / plain strings, as a comparable string.
fn tagged(v: &Value) -> String {
    match v {
        Value::Tagged(t) => format!("{} {}", t.tag, tagged(&t.value)),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Sequence(s) => s.iter().map(tagged).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other:?}"),
    }
}

fn resources(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

fn functions(t: &Value) -> Vec<(String, Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect()
}

fn binary(f: &Value) -> String {
    f["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn workspace_binaries() -> BTreeSet<String> {
    ["submit", "process", "status", "cache-cleanup"]
        .iter()
        .map(|dir| {
            let manifest =
                std::fs::read_to_string(root().join("functions").join(dir).join("Cargo.toml"))
                    .unwrap();
            let name = manifest
                .split("[[bin]]")
                .nth(1)
                .and_then(|bin| bin.lines().find(|l| l.trim_start().starts_with("name")))
                .and_then(|l| l.split('"').nth(1))
                .unwrap()
                .to_owned();
            assert!(root()
                .join("functions")
                .join(dir)
                .join("src/main.rs")
                .exists());
            name
        })
        .collect()
}

#[test]
fn every_function_is_a_workspace_binary_on_arm64_al2023() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    let bins: BTreeSet<String> = functions(&t).iter().map(|(_, f)| binary(f)).collect();
    assert_eq!(bins, workspace_binaries());
    for (name, f) in functions(&t) {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        let runtime = f["Properties"]
            .get("Runtime")
            .unwrap_or(&globals["Runtime"]);
        assert_eq!(runtime, "provided.al2023", "{name}");
        let arch = f["Properties"]
            .get("Architectures")
            .unwrap_or(&globals["Architectures"]);
        assert_eq!(tagged(arch), "arm64", "{name}");
        let handler = f["Properties"]
            .get("Handler")
            .unwrap_or(&globals["Handler"]);
        assert_eq!(handler, "bootstrap", "{name}");
    }
}

#[test]
fn every_variable_the_code_reads_is_set() {
    let t = template();
    let globals = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    for (name, f) in functions(&t) {
        let local = f["Properties"]["Environment"]["Variables"].as_mapping();
        for var in facesvg::config::VARIABLES {
            let key = Value::String((*var).to_owned());
            let set = globals.contains_key(&key) || local.is_some_and(|m| m.contains_key(&key));
            assert!(
                set,
                "{name}: {var} is read by the code but not set in template.yaml"
            );
        }
    }
}

fn statements(t: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, r) in resources(t) {
        let docs: Vec<Value> = match r["Type"].as_str().unwrap() {
            "AWS::Serverless::Function" => r["Properties"]["Policies"]
                .as_sequence()
                .cloned()
                .unwrap_or_default(),
            "AWS::IAM::Role" => r["Properties"]["Policies"]
                .as_sequence()
                .map(|ps| ps.iter().map(|p| p["PolicyDocument"].clone()).collect())
                .unwrap_or_default(),
            "AWS::S3::BucketPolicy" => vec![r["Properties"]["PolicyDocument"].clone()],
            _ => vec![],
        };
        for doc in docs {
            assert!(
                doc.is_mapping(),
                "{name}: policies must be inline statements, not managed policy names"
            );
            for s in doc["Statement"].as_sequence().unwrap() {
                out.push((name.clone(), s.clone()));
            }
        }
    }
    out
}

#[test]
fn no_policy_grants_wildcard_actions() {
    let t = template();
    let all = statements(&t);
    assert!(all.len() >= 8, "found {} statements", all.len());
    for (name, s) in all {
        if s["Effect"] == "Deny" {
            continue; // denying everything insecure is the point of those
        }
        let actions = tagged(&s["Action"]);
        for a in actions.split(',') {
            assert!(!a.contains('*'), "{name} grants {a}");
        }
    }
}

#[test]
fn the_queue_outlasts_process_and_redrives_to_a_dlq() {
    let t = template();
    let res = resources(&t);
    let get = |n: &str| {
        res.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (_, process) = functions(&t)
        .into_iter()
        .find(|(_, f)| binary(f) == "process")
        .unwrap();
    let timeout = number(&process["Properties"]["Timeout"]);
    let event = process["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(event["Type"], "SQS");
    assert_eq!(
        tagged(&event["Properties"]["FunctionResponseTypes"]),
        "ReportBatchItemFailures"
    );
    // A cap on concurrent process instances protects the database.
    assert!(!tagged(&event["Properties"]["ScalingConfig"]["MaximumConcurrency"]).is_empty());
    let queue_ref = tagged(&event["Properties"]["Queue"]);
    let queue_name = queue_ref
        .trim_start_matches("!GetAtt ")
        .trim_end_matches(".Arn")
        .to_owned();
    let queue = get(&queue_name);
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let visibility = number(&queue["Properties"]["VisibilityTimeout"]);
    assert!(
        visibility >= 6.0 * timeout,
        "visibility {visibility} < 6 x {timeout}"
    );
    let redrive = &queue["Properties"]["RedrivePolicy"];
    assert!(number(&redrive["maxReceiveCount"]) >= 1.0);
    let dlq_name = tagged(&redrive["deadLetterTargetArn"])
        .trim_start_matches("!GetAtt ")
        .trim_end_matches(".Arn")
        .to_owned();
    assert_eq!(get(&dlq_name)["Type"], "AWS::SQS::Queue");
    // The stale-claim window sits between process's timeout and the visibility timeout.
    let stale = number(&t["Globals"]["Function"]["Environment"]["Variables"]["STALE_CLAIM_SECS"]);
    assert!(
        stale > timeout && stale < visibility,
        "STALE_CLAIM_SECS {stale}"
    );
}

#[test]
fn the_schedule_and_the_admin_route_target_cache_cleanup() {
    let t = template();
    let (_, cleanup) = functions(&t)
        .into_iter()
        .find(|(_, f)| binary(f) == "cache-cleanup")
        .unwrap();
    let events = cleanup["Properties"]["Events"].as_mapping().unwrap();
    let schedule = events
        .values()
        .find(|e| e["Type"] == "Schedule" || e["Type"] == "ScheduleV2")
        .expect("a schedule");
    assert!(schedule["Properties"]["Schedule"]
        .as_str()
        .unwrap()
        .starts_with("rate("));
    let admin = events
        .values()
        .find(|e| e["Type"] == "HttpApi")
        .expect("the admin route");
    assert_eq!(admin["Properties"]["Path"], "/api/v1/cache/cleanup");
    assert!(!tagged(&admin["Properties"]["Auth"]["AuthorizationScopes"]).is_empty());
    for (name, f) in functions(&t) {
        if binary(&f) != "cache-cleanup" {
            let evs = f["Properties"]["Events"].as_mapping().unwrap();
            assert!(
                evs.values().all(|e| e["Type"] != "Schedule"),
                "{name} has a schedule"
            );
        }
    }
    // Migrations run at deploy through the same function.
    let res = resources(&t);
    let (_, migrations) = res
        .iter()
        .find(|(_, r)| r["Type"] == "Custom::FacesvgMigrations")
        .expect("migrations resource");
    assert_eq!(
        tagged(&migrations["Properties"]["ServiceToken"]),
        "!GetAtt CacheCleanupFunction.Arn"
    );
}

#[test]
fn routes_match_the_api_and_only_health_is_open() {
    let t = template();
    let mut routes = BTreeSet::new();
    for (_, f) in functions(&t) {
        for e in f["Properties"]["Events"].as_mapping().unwrap().values() {
            if e["Type"] == "HttpApi" {
                let p = &e["Properties"];
                let open = tagged(&p["Auth"]["Authorizer"]) == "NONE";
                routes.insert((
                    p["Method"].as_str().unwrap().to_owned(),
                    p["Path"].as_str().unwrap().to_owned(),
                    binary(&f),
                    open,
                ));
            }
        }
    }
    let expected: BTreeSet<(String, String, String, bool)> = [
        ("POST", "/api/v1/frontal/crop/submit", "submit", false),
        (
            "GET",
            "/api/v1/frontal/crop/status/{task_id}",
            "status",
            false,
        ),
        ("GET", "/api/v1/frontal/crop/result/{file}", "status", false),
        ("GET", "/health", "status", true),
        ("GET", "/api/v1/cache/stats", "status", false),
        ("GET", "/api/v1/cache/recent", "status", false),
        ("POST", "/api/v1/cache/cleanup", "cache-cleanup", false),
    ]
    .iter()
    .map(|(m, p, b, o)| (m.to_string(), p.to_string(), b.to_string(), *o))
    .collect();
    assert_eq!(routes, expected);
}
