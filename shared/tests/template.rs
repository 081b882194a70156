//! The SAM template checked against the code: what cfn-lint cannot see.

use std::collections::{BTreeMap, BTreeSet};
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

/// The environment each function gets in a deployed stack (Globals merged with its own).
fn environments(stack: &Stack) -> Vec<(String, BTreeMap<String, Value>)> {
    let t = &stack.t;
    let globals = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    functions(t)
        .into_iter()
        .map(|(name, f)| {
            let mut env: BTreeMap<String, Value> = globals
                .iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
                .collect();
            if let Some(local) = f["Properties"]["Environment"]["Variables"].as_mapping() {
                for (k, v) in local {
                    env.insert(k.as_str().unwrap().to_owned(), v.clone());
                }
            }
            (name, env)
        })
        .collect()
}

/// Settings that only configure the Redis tier: absent when there is none.
const REDIS_ONLY: &[&str] = &["REDIS_AUTH_SECRET_ARN", "REDIS_TIMEOUT_MS", "REDIS_PREFIX"];

#[test]
fn every_variable_the_code_reads_is_set() {
    for (tier, stack) in [
        ("redis", Stack::new(&[])),
        ("none", Stack::new(&[("CacheTier", "none")])),
    ] {
        for (name, env) in environments(&stack) {
            for var in facesvg::config::VARIABLES {
                if tier == "none" && REDIS_ONLY.contains(var) {
                    continue;
                }
                assert!(
                    env.contains_key(*var),
                    "{name} (CacheTier={tier}): {var} is read by the code but not set in template.yaml"
                );
            }
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
            "AWS::S3::BucketPolicy"
            | "AWS::SQS::QueuePolicy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::EC2::VPCEndpoint" => {
                let doc = &r["Properties"]["PolicyDocument"];
                if doc.is_null() {
                    vec![]
                } else {
                    vec![doc.clone()]
                }
            }
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
    assert_eq!(
        number(&redrive["maxReceiveCount"]),
        f64::from(facesvg::tasks::failure::MAX_RECEIVES),
        "the redrive policy and tasks::failure::MAX_RECEIVES disagree"
    );
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
fn routes_match_the_api_and_only_health_and_static_pages_are_open() {
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
    // The route table of the code, every route of it, and nothing else; open (no
    // authorizer) exactly where its access is public.
    let expected: BTreeSet<(String, String, String, bool)> = facesvg::api::routes::ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_owned(),
                r.gateway_path.to_owned(),
                r.function.name().to_owned(),
                r.access == facesvg::api::routes::Access::Public,
            )
        })
        .collect();
    assert_eq!(routes, expected);
}

// ------------------------------------------------------------------ values AWS accepts

/// `infra/aws-valid-values.json`: the values AWS accepts today, with their sources.
fn valid_values() -> serde_json::Value {
    let path = root().join("infra/aws-valid-values.json");
    let text = std::fs::read_to_string(&path).expect("infra/aws-valid-values.json");
    serde_json::from_str(&text).expect("aws-valid-values.json parses")
}

fn valid_list(valid: &serde_json::Value, path: &[&str]) -> BTreeSet<String> {
    let mut v = valid;
    for p in path {
        v = &v[*p];
    }
    v.as_array()
        .unwrap_or_else(|| panic!("aws-valid-values.json has no list at {path:?}"))
        .iter()
        .map(|x| match x {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn samconfig() -> String {
    std::fs::read_to_string(root().join("samconfig.toml")).expect("samconfig.toml")
}

/// Every `Name=value` of every `parameter_overrides` line in samconfig.toml.
fn samconfig_overrides(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("parameter_overrides"))
        .filter_map(|rest| rest.split_once('"').map(|(_, v)| v.trim_end_matches('"')))
        .flat_map(|v| v.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// Every value `v` can take in a deployed stack: both sides of each `!If`, and for a
/// `!Ref` to a parameter its default, each of its AllowedValues and each samconfig
/// override. A parameter without AllowedValues is reported (as `Err`): any string
/// could be passed at deploy time.
fn possible_values(
    t: &Value,
    overrides: &[(String, String)],
    v: &Value,
) -> Result<Vec<String>, String> {
    match v {
        Value::String(_) | Value::Number(_) => Ok(vec![tagged(v)]),
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(possible_values(t, overrides, i)?);
            }
            Ok(out)
        }
        Value::Tagged(tv) if tv.tag == "If" => {
            let args = tv.value.as_sequence().expect("!If takes a list");
            let mut out = possible_values(t, overrides, &args[1])?;
            out.extend(possible_values(t, overrides, &args[2])?);
            Ok(out)
        }
        Value::Tagged(tv) if tv.tag == "Ref" => {
            let name = tv.value.as_str().unwrap_or_default();
            if name == "AWS::NoValue" {
                return Ok(vec![]);
            }
            let param = &t["Parameters"][name];
            if param.is_null() {
                return Err(format!("!Ref {name} is not a parameter"));
            }
            let allowed = param["AllowedValues"]
                .as_sequence()
                .ok_or_else(|| format!("parameter {name} has no AllowedValues"))?;
            let mut out: Vec<String> = allowed.iter().map(tagged).collect();
            out.extend(param.get("Default").map(tagged));
            out.extend(
                overrides
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
            );
            Ok(out)
        }
        other => Err(format!("cannot enumerate {}", tagged(other))),
    }
}

/// The properties that name an engine, a version, a runtime, an architecture or an
/// instance class, with the list each must be in. A property of these names on any
/// other resource type is reported, so that a new resource cannot slip past.
fn invalid_values(t: &Value, samconfig: &str, valid: &serde_json::Value) -> Vec<String> {
    let overrides = samconfig_overrides(samconfig);
    let bad = std::cell::RefCell::new(Vec::new());
    let check = |what: &str, v: &Value, allowed: &BTreeSet<String>| -> Vec<String> {
        match possible_values(t, &overrides, v) {
            Ok(values) if values.is_empty() => {
                bad.borrow_mut().push(format!("{what}: no value"));
                vec![]
            }
            Ok(values) => {
                for x in &values {
                    if !allowed.contains(x) {
                        bad.borrow_mut()
                            .push(format!("{what}: {x:?} is not among the values AWS accepts"));
                    }
                }
                values
            }
            Err(e) => {
                bad.borrow_mut().push(format!("{what}: {e}"));
                vec![]
            }
        }
    };
    let globals = &t["Globals"]["Function"];
    for (name, r) in resources(t) {
        let props = &r["Properties"];
        let ty = r["Type"].as_str().unwrap_or_default();
        let known: &[&str] = match ty {
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
                let runtime = props.get("Runtime").unwrap_or(&globals["Runtime"]);
                check(
                    &format!("{name}.Runtime"),
                    runtime,
                    &valid_list(valid, &["lambda", "runtimes"]),
                );
                let arch = props
                    .get("Architectures")
                    .unwrap_or(&globals["Architectures"]);
                check(
                    &format!("{name}.Architectures"),
                    arch,
                    &valid_list(valid, &["lambda", "architectures"]),
                );
                &["Runtime", "Architectures"]
            }
            "AWS::RDS::DBInstance" => {
                let engines = check(
                    &format!("{name}.Engine"),
                    &props["Engine"],
                    &valid
                        .pointer("/rds/engine_versions")
                        .unwrap()
                        .as_object()
                        .unwrap()
                        .keys()
                        .cloned()
                        .collect(),
                );
                for engine in engines {
                    check(
                        &format!("{name}.EngineVersion ({engine})"),
                        &props["EngineVersion"],
                        &valid_list(valid, &["rds", "engine_versions", &engine]),
                    );
                }
                check(
                    &format!("{name}.DBInstanceClass"),
                    &props["DBInstanceClass"],
                    &valid_list(valid, &["rds", "instance_classes"]),
                );
                &["Engine", "EngineVersion", "DBInstanceClass"]
            }
            "AWS::RDS::DBProxy" => {
                check(
                    &format!("{name}.EngineFamily"),
                    &props["EngineFamily"],
                    &valid_list(valid, &["rds", "proxy_engine_families"]),
                );
                &["EngineFamily"]
            }
            "AWS::ElastiCache::ReplicationGroup" => {
                let engines = check(
                    &format!("{name}.Engine"),
                    &props["Engine"],
                    &valid
                        .pointer("/elasticache/engine_versions")
                        .unwrap()
                        .as_object()
                        .unwrap()
                        .keys()
                        .cloned()
                        .collect(),
                );
                for engine in engines {
                    check(
                        &format!("{name}.EngineVersion ({engine})"),
                        &props["EngineVersion"],
                        &valid_list(valid, &["elasticache", "engine_versions", &engine]),
                    );
                }
                check(
                    &format!("{name}.CacheNodeType"),
                    &props["CacheNodeType"],
                    &valid_list(valid, &["elasticache", "node_types"]),
                );
                &["Engine", "EngineVersion", "CacheNodeType"]
            }
            "AWS::Logs::LogGroup" => {
                check(
                    &format!("{name}.RetentionInDays"),
                    &props["RetentionInDays"],
                    &valid_list(valid, &["lambda", "log_retention_days"]),
                );
                &["RetentionInDays"]
            }
            _ => &[],
        };
        if let Some(map) = props.as_mapping() {
            for key in map.keys().filter_map(|k| k.as_str()) {
                let watched = [
                    "Engine",
                    "EngineVersion",
                    "EngineFamily",
                    "Runtime",
                    "Architectures",
                ]
                .contains(&key)
                    || key.ends_with("InstanceClass")
                    || key.ends_with("NodeType");
                if watched && !known.contains(&key) {
                    bad.borrow_mut().push(format!(
                        "{name} ({ty}).{key}: not checked against aws-valid-values.json; add the type to this test"
                    ));
                }
            }
        }
    }
    bad.into_inner()
}

#[test]
fn every_engine_version_runtime_and_instance_class_is_one_aws_offers() {
    let bad = invalid_values(&template(), &samconfig(), &valid_values());
    assert!(bad.is_empty(), "template.yaml:\n{}", bad.join("\n"));
}

/// The check itself: the ElastiCache version that once shipped (the PostgreSQL
/// version, "17.6") and an unknown override are both caught.
#[test]
fn the_values_check_catches_a_version_aws_does_not_offer() {
    let valid = valid_values();
    let mut t = template();
    t["Resources"]["RedisGroup"]["Properties"]["EngineVersion"] = Value::String("17.6".into());
    let bad = invalid_values(&t, &samconfig(), &valid);
    assert!(
        bad.iter()
            .any(|b| b.contains("RedisGroup.EngineVersion") && b.contains("\"17.6\"")),
        "{bad:?}"
    );
    let bad = invalid_values(
        &template(),
        "parameter_overrides = \"Stage=prod CacheNodeType=cache.r5.huge\"",
        &valid,
    );
    assert!(bad.iter().any(|b| b.contains("cache.r5.huge")), "{bad:?}");
}

#[test]
fn the_valid_values_name_their_sources() {
    let valid = valid_values();
    for section in ["lambda", "rds", "elasticache"] {
        let sources = valid_list(&valid, &[section, "sources"]);
        assert!(!sources.is_empty(), "{section} has no sources");
        assert!(
            sources
                .iter()
                .any(|s| s.starts_with("https://docs.aws.amazon.com/")),
            "{section}: name the AWS documentation page"
        );
    }
    assert!(valid["checked"].as_str().is_some_and(|d| d.len() == 10));
}

// ------------------------------------------------------------------ logs, schedule, lint

fn resource(t: &Value, name: &str) -> Value {
    let r = t["Resources"][name].clone();
    assert!(!r.is_null(), "no resource {name}");
    r
}

/// The logical id behind `!Ref X`, `!GetAtt X.Attr` or `${X}` / `${X.Attr}` in a `!Sub`.
fn referenced(v: &Value) -> Vec<String> {
    match v {
        Value::Tagged(tv) if tv.tag == "Ref" => vec![tagged(&tv.value)],
        Value::Tagged(tv) if tv.tag == "GetAtt" => {
            vec![tagged(&tv.value)
                .split(['.', ','])
                .next()
                .unwrap_or_default()
                .to_owned()]
        }
        Value::Tagged(tv) if tv.tag == "Sub" => {
            let text = match &tv.value {
                Value::Sequence(s) => tagged(&s[0]),
                other => tagged(other),
            };
            text.split("${")
                .skip(1)
                .filter_map(|p| p.split('}').next())
                .map(|p| p.split('.').next().unwrap_or_default().to_owned())
                .collect()
        }
        _ => vec![],
    }
}

#[test]
fn every_function_logs_to_its_own_log_group_with_retention() {
    let t = template();
    let groups: Vec<(String, Value)> = resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::Logs::LogGroup")
        .collect();
    for (name, f) in functions(&t) {
        // Lambda writes to /aws/lambda/<function name>: the group must carry that name.
        let mine: Vec<&(String, Value)> = groups
            .iter()
            .filter(|(_, g)| {
                let n = &g["Properties"]["LogGroupName"];
                tagged(n).contains("/aws/lambda/${") && referenced(n) == vec![name.clone()]
            })
            .collect();
        assert_eq!(mine.len(), 1, "{name}: one log group named after it");
        let (group, g) = mine[0];
        assert!(
            !g["Properties"]["RetentionInDays"].is_null(),
            "{group} keeps {name}'s logs forever"
        );
        // The function's own name is fixed, so that its role can name the group
        // without a dependency cycle (role -> group -> function -> role).
        assert_eq!(
            tagged(&f["Properties"]["FunctionName"]),
            format!("!Sub ${{AWS::StackName}}-{}", binary(&f)),
            "{name}"
        );
    }
    // Migrations run at deploy: their logs go to the group with retention too.
    let migrations = resource(&t, "DatabaseMigrations");
    assert!(tagged(&migrations["DependsOn"]).contains("CacheCleanupLogGroup"));
}

#[test]
fn the_schedule_retries_then_dead_letters_and_failed_sweeps_are_kept() {
    let t = template();
    let (name, cleanup) = functions(&t)
        .into_iter()
        .find(|(_, f)| binary(f) == "cache-cleanup")
        .unwrap();
    let events = cleanup["Properties"]["Events"].as_mapping().unwrap();
    let schedule = &events
        .values()
        .find(|e| e["Type"] == "Schedule")
        .expect("a schedule")["Properties"];
    assert!(number(&schedule["RetryPolicy"]["MaximumRetryAttempts"]) >= 1.0);
    assert!(number(&schedule["RetryPolicy"]["MaximumEventAgeInSeconds"]) <= 3600.0);
    let dlq = referenced(&schedule["DeadLetterConfig"]["Arn"]);
    assert_eq!(
        dlq.len(),
        1,
        "the schedule's DLQ is a queue of this template"
    );
    assert_eq!(resource(&t, &dlq[0])["Type"], "AWS::SQS::Queue");
    // Lambda's own async retries end in the same queue.
    let on_failure = &cleanup["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
    assert_eq!(on_failure["Type"], "SQS");
    assert_eq!(referenced(&on_failure["Destination"]), dlq, "{name}");
    // EventBridge may send to that queue only for this function's rule.
    let (_, policy) = resources(&t)
        .into_iter()
        .find(|(_, r)| {
            r["Type"] == "AWS::SQS::QueuePolicy"
                && tagged(&r["Properties"]["Queues"]) == format!("!Ref {}", dlq[0])
        })
        .expect("a queue policy on the schedule's DLQ");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(tagged(&s["Action"]), "sqs:SendMessage");
    let source = tagged(&s["Condition"]["ArnEquals"]["aws:SourceArn"]);
    assert!(source.contains(&format!("{name}Hourly")), "{source}");
}

/// `cfn-lint -a cfn_lint_serverless.rules` and `sam validate --lint` run in
/// infra/test.sh and must be clean: every check switched off in the template is
/// written down with its reason, in a comment right above it.
#[test]
fn every_lint_exception_has_its_reason() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut exceptions = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.contains("ignore_checks") {
            exceptions += 1;
            let above = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap();
            assert!(
                above.trim_start().starts_with('#'),
                "template.yaml:{}: an ignored check needs its reason above it",
                i + 1
            );
            let ids = line.split('[').nth(1).unwrap_or_default();
            for id in ids.trim_end_matches(']').split(',').map(str::trim) {
                let reason: String = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| l.trim_start().starts_with('#'))
                    .copied()
                    .collect();
                assert!(
                    reason.contains(id),
                    "template.yaml:{}: {id} has no reason",
                    i + 1
                );
            }
        }
    }
    assert!(
        exceptions <= 4,
        "{exceptions} lint exceptions: fix the template instead"
    );
    let test_sh = std::fs::read_to_string(root().join("infra/test.sh")).unwrap();
    assert!(test_sh.contains("cfn-lint\" template.yaml -a cfn_lint_serverless.rules"));
    assert!(test_sh.contains("validate --lint"));
}

// ------------------------------------------------------------------ alarms and dashboard

/// Every HttpApi route of the template with its function, named as the code names it
/// in its metrics' `Route` dimension (`api::route_key` on a sample path). A route the
/// code does not know is reported: its answers would be counted under "other".
fn api_routes(t: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, f) in functions(t) {
        for e in f["Properties"]["Events"].as_mapping().unwrap().values() {
            if e["Type"] == "HttpApi" {
                let p = &e["Properties"];
                let method = p["Method"].as_str().unwrap();
                let path = p["Path"].as_str().unwrap();
                let id = "123e4567-e89b-12d3-a456-426614174000";
                let sample = path
                    .replace("{task_id}", id)
                    .replace("{file}", &format!("{id}.svg"));
                let key = facesvg::api::route_key(method, &sample);
                assert_ne!(
                    key, "other",
                    "{method} {path} is deployed but unknown to api::route_key"
                );
                out.push((key.to_owned(), name.clone()));
            }
        }
    }
    out
}

fn alarms(t: &Value) -> Vec<(String, Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(n, r)| (n, r["Properties"].clone()))
        .collect()
}

fn dims(dimensions: &Value) -> BTreeMap<String, String> {
    dimensions
        .as_sequence()
        .map(|ds| {
            ds.iter()
                .map(|d| (tagged(&d["Name"]), tagged(&d["Value"])))
                .collect()
        })
        .unwrap_or_default()
}

/// (namespace, metric name, dimensions, statistic) of an alarm's metric or of each
/// metric in its metric math.
fn alarm_metrics(a: &Value) -> Vec<(String, String, BTreeMap<String, String>, String)> {
    if let Some(metrics) = a["Metrics"].as_sequence() {
        metrics
            .iter()
            .filter(|m| !m["MetricStat"].is_null())
            .map(|m| {
                let ms = &m["MetricStat"];
                (
                    tagged(&ms["Metric"]["Namespace"]),
                    tagged(&ms["Metric"]["MetricName"]),
                    dims(&ms["Metric"]["Dimensions"]),
                    tagged(&ms["Stat"]),
                )
            })
            .collect()
    } else {
        let stat = a
            .get("ExtendedStatistic")
            .or_else(|| a.get("Statistic"))
            .map(tagged)
            .unwrap_or_default();
        vec![(
            tagged(&a["Namespace"]),
            tagged(&a["MetricName"]),
            dims(&a["Dimensions"]),
            stat,
        )]
    }
}

/// The 5xx statuses the HTTP edge can answer, read from its source.
fn server_error_statuses_in_code() -> BTreeSet<String> {
    let names = [
        ("INTERNAL_SERVER_ERROR", "500"),
        ("NOT_IMPLEMENTED", "501"),
        ("BAD_GATEWAY", "502"),
        ("SERVICE_UNAVAILABLE", "503"),
        ("GATEWAY_TIMEOUT", "504"),
        ("INSUFFICIENT_STORAGE", "507"),
    ];
    let mut found = BTreeSet::new();
    let dir = root().join("shared/src/api");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (name, code) in names {
                if text.contains(&format!("StatusCode::{name}")) {
                    found.insert(code.to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn every_route_has_a_server_error_rate_and_a_p99_alarm() {
    let t = template();
    let all = alarms(&t);
    let statuses = server_error_statuses_in_code();
    assert!(
        statuses.contains("503"),
        "the edge answers 503: {statuses:?}"
    );
    for (route, function) in api_routes(&t) {
        let fn_ref = format!("!Ref {function}");
        let on_route = |d: &BTreeMap<String, String>| {
            d.get("Function") == Some(&fn_ref) && d.get("Route") == Some(&route)
        };
        let rate = all.iter().find(|(_, a)| {
            let ms = alarm_metrics(a);
            ms.iter()
                .any(|(ns, m, d, _)| ns == "facesvg" && m == "Requests" && on_route(d))
        });
        let (name, a) = rate.unwrap_or_else(|| panic!("{route}: no 5xx rate alarm"));
        let ms = alarm_metrics(a);
        let counted: BTreeSet<String> = ms
            .iter()
            .filter(|(_, m, d, _)| m == "Requests" && on_route(d))
            .filter_map(|(_, _, d, _)| d.get("Status").cloned())
            .collect();
        assert!(
            statuses.is_subset(&counted),
            "{name} counts {counted:?}, the code can answer {statuses:?}"
        );
        // The rate's denominator: every answer of the route.
        assert!(
            ms.iter()
                .any(|(_, m, d, s)| m == "Latency" && s == "SampleCount" && on_route(d)),
            "{name}: no denominator"
        );
        let expr = a["Metrics"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| !m["Expression"].is_null())
            .map(|m| tagged(&m["Expression"]))
            .unwrap_or_default();
        assert!(expr.contains("100 *"), "{name}: {expr}");
        let p99 = all.iter().find(|(_, a)| {
            alarm_metrics(a)
                .iter()
                .any(|(ns, m, d, s)| ns == "facesvg" && m == "Latency" && s == "p99" && on_route(d))
        });
        assert!(p99.is_some(), "{route}: no p99 latency alarm");
    }
}

#[test]
fn queues_functions_and_the_gateway_have_alarms_that_notify() {
    let t = template();
    let all = alarms(&t);
    let has = |ns: &str, metric: &str, dim: &str, value: &str| {
        all.iter().any(|(_, a)| {
            alarm_metrics(a).iter().any(|(n, m, d, _)| {
                n == ns && m == metric && d.get(dim).map(String::as_str) == Some(value)
            })
        })
    };
    // The queue that process consumes: its oldest message's age. Every other queue is
    // a dead-letter queue: its depth.
    let consumed: BTreeSet<String> = functions(&t)
        .iter()
        .flat_map(|(_, f)| {
            f["Properties"]["Events"]
                .as_mapping()
                .unwrap()
                .values()
                .filter(|e| e["Type"] == "SQS")
                .flat_map(|e| referenced(&e["Properties"]["Queue"]))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!consumed.is_empty());
    for (name, r) in resources(&t) {
        if r["Type"] != "AWS::SQS::Queue" {
            continue;
        }
        let queue_name = format!("!GetAtt {name}.QueueName");
        if consumed.contains(&name) {
            assert!(
                has(
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    "QueueName",
                    &queue_name
                ),
                "{name}: no age alarm"
            );
        } else {
            assert!(
                has(
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    &queue_name
                ),
                "dead-letter queue {name}: no depth alarm"
            );
        }
    }
    for (name, _) in functions(&t) {
        let f = format!("!Ref {name}");
        assert!(
            has("AWS/Lambda", "Throttles", "FunctionName", &f),
            "{name}: throttles"
        );
        assert!(
            has("AWS/Lambda", "Errors", "FunctionName", &f),
            "{name}: errors"
        );
    }
    assert!(has("AWS/ApiGateway", "5xx", "ApiId", "!Ref HttpApi"));
    for (name, a) in &all {
        assert!(
            tagged(&a["AlarmActions"]).contains("!Ref AlarmTopic"),
            "{name} notifies no one"
        );
        assert_eq!(a["TreatMissingData"], "notBreaching", "{name}");
    }
}

#[test]
fn the_dashboard_shows_hit_ratio_latency_queues_and_render_time() {
    let t = template();
    let (_, dashboard) = resources(&t)
        .into_iter()
        .find(|(_, r)| r["Type"] == "AWS::CloudWatch::Dashboard")
        .expect("a dashboard");
    let body = &dashboard["Properties"]["DashboardBody"];
    let Value::Tagged(sub) = body else {
        panic!("DashboardBody is a !Sub")
    };
    let text = sub.value.as_str().unwrap();
    // What CloudFormation substitutes: `${X}` and `${X.Attr}` become plain strings.
    let mut substituted = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        substituted.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap() + i;
        let name = &rest[i + 2..end];
        if name != "AWS::Region" {
            assert!(
                !t["Resources"][name.split('.').next().unwrap()].is_null() || name == "Stage",
                "the dashboard names {name}, which is not in the template"
            );
        }
        substituted.push_str(name);
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let json: serde_json::Value =
        serde_json::from_str(&substituted).expect("the dashboard body is JSON");
    let widgets = json["widgets"].as_array().unwrap();
    let flat = substituted.as_str();
    for metric in ["CacheHits", "CacheRequests", "RenderTime", "TasksCompleted"] {
        assert!(flat.contains(metric), "dashboard: no {metric}");
    }
    // CacheRequests counts each submit once, under the tier that answered it or
    // "miss" (metrics::cache_request): the ratio's denominator is their sum.
    for tier in ["l0", "redis", "postgres", "miss"] {
        assert!(
            flat.contains(&format!("\"CacheRequests\", \"Tier\", \"{tier}\"")),
            "dashboard: hit ratio without CacheRequests of {tier}"
        );
    }
    for (route, function) in api_routes(&t) {
        for stat in ["p50", "p99"] {
            let shown = widgets.iter().any(|w| {
                w["properties"]["metrics"].as_array().is_some_and(|ms| {
                    ms.iter().any(|m| {
                        let m = m.as_array().unwrap();
                        let s: Vec<String> = m.iter().map(|x| x.to_string()).collect();
                        let s = s.join(" ");
                        s.contains("\"Latency\"")
                            && s.contains(&format!("\"{function}\""))
                            && s.contains(&format!("\"{route}\""))
                            && s.contains(&format!("\"stat\":\"{stat}\""))
                    })
                })
            });
            assert!(shown, "dashboard: no {stat} latency for {route}");
        }
    }
    for (name, r) in resources(&t) {
        if r["Type"] == "AWS::SQS::Queue" {
            assert!(
                flat.contains(&format!(
                    "\"ApproximateNumberOfMessagesVisible\", \"QueueName\", \"{name}.QueueName\""
                )),
                "dashboard: no depth of {name}"
            );
        }
    }
    assert!(
        flat.contains("\"ApproximateAgeOfOldestMessage\", \"QueueName\", \"TaskQueue.QueueName\"")
    );
}

// ------------------------------------------------------------------ evaluating the template

/// The template as CloudFormation deploys it for some parameter values: conditions
/// evaluated, resources whose condition is false dropped, each `!If` replaced by its
/// chosen side and `AWS::NoValue` removed. Other intrinsics stay as they are.
struct Stack {
    t: Value,
    conditions: BTreeMap<String, bool>,
}

impl Stack {
    fn new(overrides: &[(&str, &str)]) -> Stack {
        let t = template();
        let mut params = BTreeMap::new();
        if let Some(ps) = t["Parameters"].as_mapping() {
            for (k, p) in ps {
                let name = k.as_str().unwrap().to_owned();
                let value = overrides
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
                    .or_else(|| p.get("Default").map(tagged));
                if let Some(v) = value {
                    if let Some(allowed) = p["AllowedValues"].as_sequence() {
                        assert!(
                            allowed.iter().any(|a| tagged(a) == v),
                            "{name}={v} is not an allowed value"
                        );
                    }
                    params.insert(name, v);
                }
            }
        }
        let mut conditions = BTreeMap::new();
        let defs = t["Conditions"].as_mapping().cloned().unwrap_or_default();
        // Conditions may refer to each other: evaluate until all are known.
        for _ in 0..defs.len() + 1 {
            for (k, v) in &defs {
                let name = k.as_str().unwrap().to_owned();
                if let Some(b) = eval_condition(v, &params, &conditions) {
                    conditions.insert(name, b);
                }
            }
        }
        assert_eq!(conditions.len(), defs.len(), "unresolvable conditions");
        let mut stack = Stack {
            t: Value::Null,
            conditions,
        };
        let mut resolved = stack.resolve(&t);
        if let Some(res) = resolved["Resources"].as_mapping_mut() {
            let dropped: Vec<Value> = res
                .iter()
                .filter(|(_, r)| {
                    r.get("Condition")
                        .is_some_and(|c| !stack.conditions[c.as_str().unwrap()])
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in dropped {
                res.remove(&k);
            }
        }
        stack.t = resolved;
        stack
    }

    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::Tagged(tv) if tv.tag == "If" => {
                let args = tv.value.as_sequence().expect("!If takes a list");
                let cond = args[0].as_str().unwrap();
                let chosen = if self.conditions[cond] {
                    &args[1]
                } else {
                    &args[2]
                };
                self.resolve(chosen)
            }
            Value::Tagged(tv) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: tv.tag.clone(),
                value: self.resolve(&tv.value),
            })),
            Value::Sequence(items) => Value::Sequence(
                items
                    .iter()
                    .filter(|i| !is_no_value(i))
                    .map(|i| self.resolve(i))
                    .filter(|i| !is_no_value(i))
                    .collect(),
            ),
            Value::Mapping(m) => Value::Mapping(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .filter(|(_, v)| !is_no_value(v))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn is_no_value(v: &Value) -> bool {
    matches!(v, Value::Tagged(tv) if tv.tag == "Ref" && tv.value == "AWS::NoValue")
}

fn eval_condition(
    v: &Value,
    params: &BTreeMap<String, String>,
    known: &BTreeMap<String, bool>,
) -> Option<bool> {
    let Value::Tagged(tv) = v else {
        panic!("a condition is an intrinsic: {v:?}")
    };
    let args = || tv.value.as_sequence().cloned().unwrap_or_default();
    let operand = |x: &Value| -> Option<String> {
        match x {
            Value::Tagged(r) if r.tag == "Ref" => params.get(r.value.as_str()?).cloned(),
            other => Some(tagged(other)),
        }
    };
    if tv.tag == "Equals" {
        let a = args();
        Some(operand(&a[0])? == operand(&a[1])?)
    } else if tv.tag == "Not" {
        Some(!eval_condition(&args()[0], params, known)?)
    } else if tv.tag == "And" {
        args()
            .iter()
            .map(|c| eval_condition(c, params, known))
            .try_fold(true, |acc, b| Some(acc && b?))
    } else if tv.tag == "Or" {
        args()
            .iter()
            .map(|c| eval_condition(c, params, known))
            .try_fold(false, |acc, b| Some(acc || b?))
    } else if tv.tag == "Condition" {
        known.get(tv.value.as_str()?).copied()
    } else {
        panic!("unknown condition function {}", tv.tag)
    }
}

// ------------------------------------------------------------------ least privilege

/// Every `Allow` grant as (holder, action, resource), one per action and resource.
fn grants(t: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (holder, s) in statements(t) {
        if s["Effect"] != "Allow" {
            continue;
        }
        let list = |v: &Value| -> Vec<String> {
            match v {
                Value::Sequence(items) => items.iter().map(tagged).collect(),
                other => vec![tagged(other)],
            }
        };
        for a in list(&s["Action"]) {
            for r in list(&s["Resource"]) {
                out.push((holder.clone(), a.clone(), r.clone()));
            }
        }
    }
    out
}

/// The only grants on "*", with the reason AWS gives them no narrower resource.
const GRANTS_ON_STAR: &[(&str, &str)] = &[
    (
        "ec2:DescribeNetworkInterfaces",
        "Lambda's VPC access (Hyperplane ENIs); EC2 Describe actions support no resource-level permissions",
    ),
    (
        "ec2:DescribeSubnets",
        "Lambda's VPC access; EC2 Describe actions support no resource-level permissions",
    ),
    (
        "xray:PutTraceSegments",
        "active tracing; X-Ray defines no resource types for this action",
    ),
    (
        "xray:PutTelemetryRecords",
        "active tracing; X-Ray defines no resource types for this action",
    ),
];

fn role_of(f: &Value) -> String {
    let role = tagged(&f["Properties"]["Role"]);
    role.strip_prefix("!GetAtt ")
        .and_then(|r| r.strip_suffix(".Arn"))
        .unwrap_or_else(|| panic!("Role is !GetAtt <role>.Arn, got {role:?}"))
        .to_owned()
}

#[test]
fn every_function_has_a_role_of_its_own_without_aws_managed_policies() {
    let t = template();
    let mut roles = BTreeSet::new();
    for (name, f) in functions(&t) {
        // With Policies (or no Role), SAM creates a role with AWS managed policies whose
        // statements are on "*" (logs, ENIs, X-Ray).
        assert!(
            f["Properties"]["Policies"].is_null(),
            "{name}: use its role, not Policies"
        );
        let role = role_of(&f);
        assert!(roles.insert(role.clone()), "{name} shares {role}");
        let r = resource(&t, &role);
        assert_eq!(r["Type"], "AWS::IAM::Role");
        let trust = &r["Properties"]["AssumeRolePolicyDocument"]["Statement"];
        assert_eq!(
            tagged(&trust[0]["Principal"]["Service"]),
            "lambda.amazonaws.com"
        );
        assert_eq!(trust.as_sequence().unwrap().len(), 1);
        for arn in r["Properties"]["ManagedPolicyArns"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
        {
            let target = referenced(&arn);
            assert_eq!(
                target.len(),
                1,
                "{role}: {} is not a policy of this template",
                tagged(&arn)
            );
            assert_eq!(resource(&t, &target[0])["Type"], "AWS::IAM::ManagedPolicy");
        }
    }
}

/// What each function may do, as (action, resource). A change here is a change of
/// the attack surface: make it in the template and in this table together.
fn expected_grants(binary: &str, redis: bool) -> BTreeSet<(String, String)> {
    let logs = format!(
        "!Sub arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/${{AWS::StackName}}-{binary}:*"
    );
    let inputs = "!Sub ${ResultsBucket.Arn}/inputs/*";
    let results = "!Sub ${ResultsBucket.Arn}/results/*";
    let queue = "!GetAtt TaskQueue.Arn";
    let mut g: Vec<(&str, &str)> = match binary {
        "submit" => vec![
            ("s3:PutObject", inputs),
            ("s3:DeleteObject", inputs),
            ("s3:GetObject", results),
            ("sqs:SendMessage", queue),
            // Direct uploads: the signer of a POST form must be allowed to put.
            ("s3:PutObject", "!Sub ${ResultsBucket.Arn}/uploads/*"),
            ("s3:GetObject", "!Sub ${ResultsBucket.Arn}/uploads/*"),
            ("s3:DeleteObject", "!Sub ${ResultsBucket.Arn}/uploads/*"),
        ],
        "process" => vec![
            ("sqs:ReceiveMessage", queue),
            ("sqs:DeleteMessage", queue),
            ("sqs:GetQueueAttributes", queue),
            ("s3:GetObject", inputs),
            ("s3:DeleteObject", inputs),
            ("s3:PutObject", results),
        ],
        "status" => vec![
            ("s3:GetObject", results),
            ("s3:ListBucket", "!GetAtt ResultsBucket.Arn"),
            ("sqs:GetQueueAttributes", queue),
        ],
        "cache-cleanup" => vec![
            ("s3:DeleteObject", results),
            ("s3:DeleteObject", inputs),
            // A tenant's deletion: its uploads too, found by listing its prefixes.
            ("s3:DeleteObject", "!Sub ${ResultsBucket.Arn}/uploads/*"),
            ("s3:ListBucket", "!GetAtt ResultsBucket.Arn"),
            ("sqs:SendMessage", queue),
            ("sqs:SendMessage", "!GetAtt SweepDeadLetterQueue.Arn"),
            // The schema owner's secret: the migrations run here, and only here.
            ("secretsmanager:GetSecretValue", "!Ref DatabaseSecret"),
        ],
        other => panic!("no grants listed for {other}"),
    };
    g.push(("secretsmanager:GetSecretValue", "!Ref AppDatabaseSecret"));
    if redis {
        g.push(("secretsmanager:GetSecretValue", "!Ref RedisAuthSecret"));
    }
    let mut out: BTreeSet<(String, String)> = g
        .into_iter()
        .map(|(a, r)| (a.to_owned(), r.to_owned()))
        .collect();
    out.insert(("logs:CreateLogStream".into(), logs.clone()));
    out.insert(("logs:PutLogEvents".into(), logs));
    out
}

fn check_grants(stack: &Stack, redis: bool) {
    let t = &stack.t;
    let all = grants(t);
    for (name, f) in functions(t) {
        let role = role_of(&f);
        let mine: BTreeSet<(String, String)> = all
            .iter()
            .filter(|(h, _, _)| *h == role)
            .map(|(_, a, r)| (a.clone(), r.clone()))
            .collect();
        assert_eq!(mine, expected_grants(&binary(&f), redis), "{name} ({role})");
    }
}

#[test]
fn each_function_may_do_exactly_what_its_code_calls() {
    check_grants(&Stack::new(&[]), true);
    check_grants(&Stack::new(&[("CacheTier", "none")]), false);
}

#[test]
fn every_grant_on_star_is_one_aws_requires() {
    let t = template();
    let mut on_star = BTreeSet::new();
    for (holder, action, resource) in grants(&t) {
        if resource == "*" {
            let reason = GRANTS_ON_STAR.iter().find(|(a, _)| *a == action);
            assert!(reason.is_some(), "{holder} grants {action} on *: scope it");
            on_star.insert(action);
        }
    }
    // No stale entry: every listed exception is still needed.
    let listed: BTreeSet<String> = GRANTS_ON_STAR.iter().map(|(a, _)| a.to_string()).collect();
    assert_eq!(on_star, listed);
    for (action, reason) in GRANTS_ON_STAR {
        eprintln!("on *: {action}: {reason}");
    }
}

/// The network-interface actions, whose `network-interface/*` resource cannot name
/// the interfaces Lambda has yet to create: each grant of them holds only in the
/// stack's VPC (`ec2:Vpc`, carried by the network-interface, subnet and
/// security-group resources), not in every VPC of the account.
#[test]
fn network_interfaces_are_confined_to_the_stacks_vpc() {
    const ENI_ACTIONS: &[&str] = &[
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ];
    let vpc = "!Sub arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc/${Vpc}";
    let t = template();
    let mut granted = BTreeSet::new();
    for (holder, s) in statements(&t) {
        if s["Effect"] != "Allow" {
            continue;
        }
        let actions = tagged(&s["Action"]);
        let enis: Vec<&'static str> = ENI_ACTIONS
            .iter()
            .copied()
            .filter(|a| actions.split(',').any(|x| x == *a))
            .collect();
        if enis.is_empty() {
            continue;
        }
        assert_eq!(
            tagged(&s["Condition"]["ArnEquals"]["ec2:Vpc"]),
            vpc,
            "{holder} grants {enis:?} outside the stack's VPC"
        );
        assert_eq!(
            s["Condition"].as_mapping().map(|m| m.len()),
            Some(1),
            "{holder}: one condition, the VPC"
        );
        granted.extend(enis);
    }
    assert_eq!(
        granted,
        ENI_ACTIONS.iter().copied().collect(),
        "Lambda's VPC access needs them all"
    );
}

/// The status function's health probe lists the (empty) health prefix: its
/// `s3:ListBucket` holds for that prefix only, never for a tenant's keys. The
/// cache-cleanup function's deletion of a tenant lists the families under which
/// each tenant has a prefix of its own, and nothing else of the bucket.
#[test]
fn no_function_may_list_the_bucket_beyond_the_health_prefix() {
    let t = template();
    let roles: BTreeSet<String> = functions(&t).iter().map(|(_, f)| role_of(f)).collect();
    let mut listers = Vec::new();
    for (holder, s) in statements(&t) {
        if s["Effect"] != "Allow"
            || !roles.contains(&holder)
            || !tagged(&s["Action"])
                .split(',')
                .any(|a| a == "s3:ListBucket")
        {
            continue;
        }
        assert_eq!(
            tagged(&s["Action"]),
            "s3:ListBucket",
            "{holder}: the listing has a statement of its own"
        );
        assert_eq!(s["Condition"].as_mapping().map(|m| m.len()), Some(1));
        if holder == "CacheCleanupRole" {
            let listed: BTreeSet<String> = s["Condition"]["StringLike"]["s3:prefix"]
                .as_sequence()
                .expect("the tenant families, as a list")
                .iter()
                .map(tagged)
                .collect();
            let families: BTreeSet<String> = facesvg::objects::tenant_prefixes("any-tenant")
                .iter()
                .map(|(family, _)| format!("{family}/*"))
                .collect();
            assert_eq!(
                listed, families,
                "{holder} may list beyond the tenant prefixes"
            );
        } else {
            assert_eq!(
                s["Condition"]["StringEquals"]["s3:prefix"].as_str(),
                Some(facesvg::objects::HEALTH_PREFIX),
                "{holder} may list the whole bucket"
            );
        }
        listers.push(holder);
    }
    listers.sort();
    assert_eq!(listers, ["CacheCleanupRole", "StatusRole"]);
}

#[test]
fn the_s3_endpoint_admits_only_our_bucket_and_cloudformations_answers() {
    let t = template();
    let (name, endpoint) = resources(&t)
        .into_iter()
        .find(|(_, r)| {
            r["Type"] == "AWS::EC2::VPCEndpoint"
                && tagged(&r["Properties"]["ServiceName"]).ends_with(".s3")
        })
        .expect("the S3 gateway endpoint");
    let statements = endpoint["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{name} has no policy: any bucket is reachable"));
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        let resources: Vec<String> = match &s["Resource"] {
            Value::Sequence(items) => items.iter().map(tagged).collect(),
            other => vec![tagged(other)],
        };
        for r in resources {
            let ours = r == "!GetAtt ResultsBucket.Arn" || r == "!Sub ${ResultsBucket.Arn}/*";
            let answers = r.contains("s3:::cloudformation-custom-resource-response-")
                && tagged(&s["Action"]) == "s3:PutObject";
            assert!(ours || answers, "{name} admits {r}");
        }
        assert!(!tagged(&s["Action"]).contains('*'));
    }
}

#[test]
fn auth_mode_none_is_impossible_in_the_deployed_stack() {
    let t = template();
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    // A literal, not a parameter or a condition: no deploy-time value can change it.
    assert_eq!(globals["AUTH_MODE"], Value::String("jwt".into()));
    for (name, f) in functions(&t) {
        assert!(
            f["Properties"]["Environment"]["Variables"]["AUTH_MODE"].is_null(),
            "{name} overrides AUTH_MODE"
        );
    }
    // And the value is one the code accepts as the JWT mode.
    let config =
        facesvg::config::Config::from_lookup(|k| (k == "AUTH_MODE").then(|| "jwt".into())).unwrap();
    assert_eq!(config.auth_mode, facesvg::config::AuthMode::Jwt);
    // Every route but /health is behind the JWT authorizer (routes test) and the
    // API's default authorizer is the JWT one.
    let api = resource(&t, "HttpApi");
    assert_eq!(api["Properties"]["Auth"]["DefaultAuthorizer"], "Jwt");
}

fn lifecycle_days(t: &Value, prefix: &str) -> f64 {
    let rules =
        resource(t, "ResultsBucket")["Properties"]["LifecycleConfiguration"]["Rules"].clone();
    let rule = rules
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["Prefix"] == prefix && r["Status"] == "Enabled")
        .unwrap_or_else(|| panic!("no lifecycle rule for {prefix}"))
        .clone();
    number(&rule["ExpirationInDays"])
}

#[test]
fn objects_outlive_the_rows_and_messages_that_point_to_them() {
    let t = template();
    // CACHE_TTL_HOURS comes from the parameter, whose maximum the lifecycle outlasts
    // by at least a day (the sweep deletes the SVG with its row before that).
    let ttl = &t["Globals"]["Function"]["Environment"]["Variables"]["CACHE_TTL_HOURS"];
    assert_eq!(tagged(ttl), "!Ref CacheTtlHours");
    let param = &t["Parameters"]["CacheTtlHours"];
    let max_ttl_hours = number(&param["MaxValue"]);
    let results_days = lifecycle_days(&t, "results/");
    assert!(
        results_days * 24.0 >= max_ttl_hours + 24.0,
        "results/ expire after {results_days} days, a cache entry may live {max_ttl_hours} h"
    );
    for (k, v) in samconfig_overrides(&samconfig()) {
        if k == "CacheTtlHours" {
            assert!(
                v.parse::<f64>().unwrap() <= max_ttl_hours,
                "samconfig CacheTtlHours={v}"
            );
        }
    }
    // A claim-checked input outlives its message, in the queue and in the DLQ.
    let inputs_secs = lifecycle_days(&t, "inputs/") * 86400.0;
    for q in ["TaskQueue", "TaskDeadLetterQueue"] {
        let retention = number(&resource(&t, q)["Properties"]["MessageRetentionPeriod"]);
        assert!(
            inputs_secs >= retention,
            "inputs/ expire before a message of {q}"
        );
    }
}

// ------------------------------------------------------------------ CacheTier: redis | none

/// Every logical id that `v` refers to (`!Ref`, `!GetAtt`, `${...}` in `!Sub`), deep.
fn all_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Tagged(tv) => {
            out.extend(referenced(v));
            if tv.tag == "Sub" {
                if let Value::Sequence(s) = &tv.value {
                    // `!Sub [text, {Var: value}]`: the variables are not resources.
                    let vars: Vec<String> = s
                        .get(1)
                        .and_then(Value::as_mapping)
                        .map(|m| {
                            m.keys()
                                .filter_map(|k| k.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.retain(|r| !vars.contains(r));
                    for x in s.iter().skip(1) {
                        all_references(x, out);
                    }
                }
            } else {
                all_references(&tv.value, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| all_references(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| all_references(i, out)),
        _ => {}
    }
}

/// No resource, output or setting of the deployed stack names a resource that the
/// parameters left out (which CloudFormation would refuse at deploy time).
fn assert_no_dangling_references(stack: &Stack, what: &str) {
    let t = &stack.t;
    let mut refs = Vec::new();
    all_references(&t["Resources"], &mut refs);
    all_references(&t["Globals"], &mut refs);
    all_references(&t["Outputs"], &mut refs);
    let functions: Vec<String> = functions(t).into_iter().map(|(n, _)| n).collect();
    for r in refs {
        let known = r.starts_with("AWS::")
            || !t["Resources"][r.as_str()].is_null()
            || !t["Parameters"][r.as_str()].is_null()
            // Resources SAM generates from a function's events (its schedule rules).
            || functions.iter().any(|f| r.starts_with(f.as_str()) && r != *f);
        assert!(known, "{what}: {r} is referred to but not in the stack");
    }
}

fn security_group_ports(t: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (name, r) in resources(t) {
        let p = &r["Properties"];
        match r["Type"].as_str().unwrap() {
            "AWS::EC2::SecurityGroup" => {
                for key in ["SecurityGroupIngress", "SecurityGroupEgress"] {
                    for rule in p[key].as_sequence().cloned().unwrap_or_default() {
                        out.push((name.clone(), number(&rule["FromPort"])));
                    }
                }
            }
            "AWS::EC2::SecurityGroupIngress" | "AWS::EC2::SecurityGroupEgress" => {
                out.push((name.clone(), number(&p["FromPort"])));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn cache_tier_none_deploys_no_redis_at_all() {
    let stack = Stack::new(&[("CacheTier", "none")]);
    let t = &stack.t;
    assert_no_dangling_references(&stack, "CacheTier=none");
    for (name, r) in resources(t) {
        let ty = r["Type"].as_str().unwrap();
        assert!(!ty.starts_with("AWS::ElastiCache::"), "{name} ({ty})");
        assert!(
            !name.contains("Redis"),
            "{name} is deployed without a Redis tier"
        );
        if ty == "AWS::SecretsManager::Secret" {
            assert!(
                name == "DatabaseSecret" || name == "AppDatabaseSecret",
                "{name}: a secret other than the database's"
            );
        }
    }
    for (group, port) in security_group_ports(t) {
        assert_ne!(port, 6379.0, "{group} still opens the Redis port");
    }
    for (name, env) in environments(&stack) {
        assert_eq!(env["REDIS_URL"], Value::String("none".into()), "{name}");
        let redis: Vec<&String> = env
            .keys()
            .filter(|k| k.starts_with("REDIS_") && *k != "REDIS_URL")
            .collect();
        assert!(redis.is_empty(), "{name} gets Redis settings: {redis:?}");
    }
}

#[test]
fn cache_tier_redis_deploys_valkey_behind_tls_and_its_own_rules() {
    let stack = Stack::new(&[("CacheTier", "redis")]);
    let t = &stack.t;
    assert_no_dangling_references(&stack, "CacheTier=redis");
    let group = resource(t, "RedisGroup");
    assert_eq!(group["Type"], "AWS::ElastiCache::ReplicationGroup");
    assert_eq!(
        group["Properties"]["TransitEncryptionEnabled"],
        Value::Bool(true)
    );
    assert!(tagged(&group["Properties"]["AuthToken"]).contains("RedisAuthSecret"));
    let egress = resource(t, "FunctionToRedisEgress");
    assert_eq!(
        tagged(&egress["Properties"]["DestinationSecurityGroupId"]),
        "!Ref RedisSecurityGroup"
    );
    assert_eq!(
        tagged(&egress["Properties"]["GroupId"]),
        "!Ref FunctionSecurityGroup"
    );
    let ports: Vec<(String, f64)> = security_group_ports(t)
        .into_iter()
        .filter(|(_, p)| *p == 6379.0)
        .collect();
    assert_eq!(
        ports.len(),
        2,
        "one egress from the functions, one ingress to the cache: {ports:?}"
    );
    for (name, env) in environments(&stack) {
        assert!(
            tagged(&env["REDIS_URL"]).starts_with("!Sub rediss://"),
            "{name}: TLS"
        );
        assert_eq!(
            tagged(&env["REDIS_AUTH_SECRET_ARN"]),
            "!Ref RedisAuthSecret",
            "{name}"
        );
    }
}

/// CloudFormation runs the migrations custom resource only when one of its properties
/// changes: a new migration must change `Version`, or a stack update never applies it.
#[test]
fn the_migrations_resource_changes_with_every_migration() {
    let t = template();
    let latest = std::fs::read_dir(root().join("migrations"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sql"))
        .filter_map(|n| n.split('_').next().map(str::to_owned))
        .max()
        .expect("migrations");
    let (_, migrations) = resources(&t)
        .into_iter()
        .find(|(_, r)| r["Type"] == "Custom::FacesvgMigrations")
        .unwrap();
    assert_eq!(tagged(&migrations["Properties"]["Version"]), latest);
}

/// The functions connect as the application role; the schema owner's secret is
/// read by the migrations (cache-cleanup) and RDS Proxy alone, and the proxy knows
/// both identities.
#[test]
fn only_the_migrations_hold_the_schema_owners_secret() {
    let stack = Stack::new(&[]);
    let t = &stack.t;
    for (name, env) in environments(&stack) {
        assert_eq!(
            tagged(&env["DATABASE_SECRET_ARN"]),
            "!Ref AppDatabaseSecret",
            "{name}"
        );
        let migration = tagged(&env["MIGRATION_SECRET_ARN"]);
        if name == "CacheCleanupFunction" {
            assert_eq!(migration, "!Ref DatabaseSecret");
        } else {
            assert!(
                !migration.contains("DatabaseSecret"),
                "{name} gets the owner's secret"
            );
        }
    }
    let app_secret = resource(t, "AppDatabaseSecret");
    let template: Value = serde_yaml::from_str(
        app_secret["Properties"]["GenerateSecretString"]["SecretStringTemplate"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        template["username"].as_str(),
        Some(facesvg::migrate::APP_ROLE)
    );
    let proxy = resource(t, "DatabaseProxy");
    let auth: BTreeSet<String> = proxy["Properties"]["Auth"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| tagged(&a["SecretArn"]))
        .collect();
    assert_eq!(
        auth,
        BTreeSet::from([
            "!Ref DatabaseSecret".to_owned(),
            "!Ref AppDatabaseSecret".to_owned()
        ])
    );
    let readers: Vec<String> = grants(t)
        .into_iter()
        .filter(|(_, a, r)| a == "secretsmanager:GetSecretValue" && r == "!Ref DatabaseSecret")
        .map(|(holder, _, _)| holder)
        .collect();
    assert_eq!(
        readers.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            &"CacheCleanupRole".to_owned(),
            &"DatabaseProxyRole".to_owned()
        ]),
        "{readers:?}"
    );
}
