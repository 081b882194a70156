//! Every Redis command the service sends touches one hash slot, so the key layout
//! works on ElastiCache in cluster mode without a migration (README "A way past one
//! Redis node"). Real Redis, watched with `MONITOR`: the test drives every operation
//! that touches several keys (the outcome tier's pipelines and `DEL`, the folds'
//! `RENAME` and `DEL` scripts, the general cache's read, write, invalidate and
//! unlock scripts and its multi-key `DEL`, the tenants' bucket script), then computes
//! the slot of every key of every command, and of every command a script ran.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Form, TestApp};
use facesvg::cache::kv::{Entry, KeyBuilder, Scope, Tier};
use facesvg::cache::OutcomeTier;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of `key`: only the part between the first `{` and the next `}`
/// is hashed, when that part is not empty.
fn slot(key: &[u8]) -> u16 {
    let mut hashed = key;
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                hashed = &key[open + 1..open + 1 + len];
            }
        }
    }
    crc16(hashed) % 16384
}

#[test]
fn the_slot_function_is_redis_clusters() {
    // The check value of CRC16/XMODEM, and slots Redis's documentation gives.
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(slot(b"foo"), 12182);
    assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
    assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
    assert_eq!(slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16384);
}

/// One line of `MONITOR`: who sent it (`lua` for a script's own calls) and the
/// command with its arguments, unescaped.
#[derive(Debug)]
struct Seen {
    client: String,
    args: Vec<Vec<u8>>,
}

fn parse_monitor(line: &str) -> Option<Seen> {
    let line = line.strip_prefix('+')?;
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let client = line[open + 1..close].split_whitespace().nth(1)?.to_owned();
    let mut args = Vec::new();
    let bytes = &line.as_bytes()[close + 1..];
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut arg = Vec::new();
        while i < bytes.len() && bytes[i] != b'"' {
            if bytes[i] == b'\\' && i + 1 < bytes.len() {
                i += 1;
                match bytes[i] {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                        arg.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    other => arg.push(other),
                }
            } else {
                arg.push(bytes[i]);
            }
            i += 1;
        }
        args.push(arg);
        i += 1;
    }
    (!args.is_empty()).then_some(Seen { client, args })
}

/// The keys among a command's arguments (the commands the service sends).
fn keys(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let rest = &args[1..];
    match name.as_str() {
        "EVAL" | "EVALSHA" => {
            let n: usize = String::from_utf8_lossy(&rest[1]).parse().unwrap();
            rest[2..2 + n].to_vec()
        }
        "DEL" | "UNLINK" | "EXISTS" | "MGET" | "TOUCH" | "RENAME" | "RENAMENX" => rest.to_vec(),
        "MSET" => rest.iter().step_by(2).cloned().collect(),
        "PING" | "ECHO" | "TIME" | "SCRIPT" | "INFO" | "CLIENT" | "HELLO" | "SELECT" | "AUTH"
        | "SCAN" | "MULTI" | "EXEC" | "DBSIZE" | "MEMORY" => vec![],
        _ => rest.first().cloned().into_iter().collect(),
    }
}

struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
    addr: String,
    sentinel: String,
}

impl Monitor {
    fn start() -> Monitor {
        let url = common::env("REDIS_URL", "redis://127.0.0.1:6379/");
        let addr = url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let mut s = TcpStream::connect(&addr).expect("Redis is required (run infra/stack.sh up)");
        s.write_all(b"MONITOR\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut ok = String::new();
        r.read_line(&mut ok).unwrap();
        assert_eq!(ok.trim(), "+OK", "MONITOR refused");
        let sentinel = format!("hash-slots-end-{}", uuid::Uuid::new_v4().simple());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (into, end) = (lines.clone(), sentinel.clone());
        let reader = std::thread::spawn(move || {
            let _keep = s;
            for line in r.lines() {
                let line = line.expect("MONITOR stream");
                let done = line.contains(&end);
                into.lock().unwrap().push(line);
                if done {
                    break;
                }
            }
        });
        Monitor {
            lines,
            reader,
            addr,
            sentinel,
        }
    }

    /// Everything seen up to now (the sentinel `ECHO` marks the end).
    fn stop(self) -> Vec<String> {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let echo = format!(
            "*2\r\n$4\r\nECHO\r\n${}\r\n{}\r\n",
            self.sentinel.len(),
            self.sentinel
        );
        s.write_all(echo.as_bytes()).unwrap();
        self.reader.join().unwrap();
        Arc::try_unwrap(self.lines).unwrap().into_inner().unwrap()
    }
}

#[tokio::test]
async fn every_command_the_service_sends_touches_one_slot() {
    let t = TestApp::spawn().await;
    let prefix = t.app.config.redis_prefix.clone();
    assert!(prefix.starts_with('{') && prefix.ends_with('}'), "{prefix}");
    let monitor = Monitor::start();

    // Submit: a miss (the tenant's bucket script, counts), the render (the outcome's
    // two SETs in one pipeline), a hit (the counts' pipeline), status.
    let done = t.render(&Form::einstein()).await;
    let task = done["task_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hit = t.submit(&Form::einstein()).await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    t.get(&format!("/api/v1/frontal/crop/status/{task}")).await;
    // The general cache through the routes: stats reads and writes (scripts, the
    // single-flight lock and its unlock), an invalidation (its script).
    assert_eq!(t.get("/api/v1/cache/stats?days=1").await.status, 200);
    assert_eq!(t.get("/api/v1/cache/recent").await.status, 200);
    let event = common::http_event(
        "POST",
        "/api/v1/cache/invalidate",
        Some(&t.tenant),
        Some("application/json"),
        br#"{"namespace":"stats"}"#,
    );
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    let inv = common::to_resp(facesvg::api::status(&t.app, req).await);
    assert_eq!(inv.status, 200, "{}", inv.body);
    // The general cache directly: several entries read, written and deleted at once.
    let b = KeyBuilder::new("default").unwrap();
    let many: Vec<_> = (0..5)
        .map(|i| b.key(&t.tenant, &[&i.to_string()]).unwrap())
        .collect();
    let values: Vec<(_, u32)> = many.iter().cloned().zip(0..).collect();
    t.app
        .kv
        .set_many(&values, &Default::default())
        .await
        .unwrap();
    let got: Vec<Option<u32>> = t.app.kv.get_many(&many).await.unwrap();
    assert!(got.iter().all(Option::is_some));
    t.app.kv.invalidate(&Scope::tenant(&t.tenant)).await;
    let redis_tier = t
        .app
        .kv
        .tiers()
        .iter()
        .find(|tier| tier.tier() == Tier::Redis)
        .expect("a Redis tier")
        .clone();
    let entry = Entry::new(Arc::from(&b"1"[..]), Duration::from_secs(60));
    let refs: Vec<(&_, &Entry)> = many.iter().map(|k| (k, &entry)).collect();
    redis_tier.set_many(&refs).await.unwrap();
    let key_refs: Vec<&_> = many.iter().collect();
    assert_eq!(redis_tier.delete_many(&key_refs).await.unwrap(), 5);
    // The folds: requests and hits moved aside (RENAME in a script), the batches in
    // progress (one pipeline), finished (a script's DEL).
    let redis = &t.app.outcomes.redis;
    let requests = redis.take_request_counts().await.unwrap().expect("counts");
    assert!(!redis.folds_in_progress().await.unwrap().is_empty());
    redis.finish_request_fold(requests.batch).await.unwrap();
    let hits = redis.take_hits().await.unwrap().expect("hits");
    redis.finish_hit_fold(hits.batch).await.unwrap();
    // An entry removed from the tier: its two keys and its hit counter at once.
    let outcome = redis
        .get_by_task(task.parse().unwrap())
        .await
        .unwrap()
        .expect("in Redis");
    redis
        .remove(&outcome.tenant, &outcome.input_hash, outcome.task_id)
        .await
        .unwrap();
    let lines = monitor.stop();

    // Our instance's connection: the clients that sent a key of this test's prefix.
    let seen: Vec<Seen> = lines.iter().filter_map(|l| parse_monitor(l)).collect();
    let tag = prefix.as_bytes();
    let ours: std::collections::BTreeSet<String> = seen
        .iter()
        .filter(|s| s.client != "lua" && s.args.iter().any(|a| a.starts_with(tag)))
        .map(|s| s.client.clone())
        .collect();
    assert!(!ours.is_empty(), "no command of ours seen");
    // Each command of ours, with the commands its script ran (they follow it).
    let mut groups: Vec<Vec<&Seen>> = Vec::new();
    let mut in_ours = false;
    for s in &seen {
        if s.client == "lua" {
            if in_ours {
                groups.last_mut().unwrap().push(s);
            }
        } else {
            in_ours = ours.contains(&s.client);
            if in_ours {
                groups.push(vec![s]);
            }
        }
    }
    let mut multi_key = std::collections::BTreeSet::new();
    let mut all_slots = std::collections::BTreeSet::new();
    for group in &groups {
        let mut slots = std::collections::BTreeSet::new();
        let mut n = 0;
        for s in group {
            for k in keys(&s.args) {
                assert!(
                    k.starts_with(tag),
                    "a key outside the prefix: {}",
                    String::from_utf8_lossy(&k)
                );
                slots.insert(slot(&k));
                n += 1;
            }
        }
        let name = String::from_utf8_lossy(&group[0].args[0]).to_ascii_uppercase();
        assert!(
            slots.len() <= 1,
            "{name} touches {} slots: {group:?}",
            slots.len()
        );
        if n > 1 {
            multi_key.insert(name);
        }
        all_slots.extend(slots);
    }
    assert_eq!(all_slots.len(), 1, "every key in the prefix's slot");
    // The operations above were all seen, so the check covered them.
    for name in ["DEL", "RENAME"] {
        assert!(
            groups
                .iter()
                .flatten()
                .any(|s| String::from_utf8_lossy(&s.args[0]).eq_ignore_ascii_case(name)),
            "no {name} seen"
        );
    }
    assert!(
        multi_key.iter().any(|n| n.starts_with("EVAL")),
        "no multi-key script seen: {multi_key:?}"
    );
    assert!(multi_key.contains("DEL"), "{multi_key:?}");

    // Without the hash tag the same keys would spread over slots: the check can fail.
    let untagged: std::collections::BTreeSet<u16> = groups
        .iter()
        .flatten()
        .flat_map(|s| keys(&s.args))
        .map(|k| {
            let bare =
                String::from_utf8_lossy(&k).replacen(&prefix, prefix.trim_matches(['{', '}']), 1);
            slot(bare.as_bytes())
        })
        .collect();
    assert!(untagged.len() > 1, "untagged keys would share one slot");
}
