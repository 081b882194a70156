#!/usr/bin/env python3
"""The local stand-in for API Gateway, the SQS event source mapping and the
EventBridge schedule, in front of the functions running under `cargo lambda watch`.

- HTTP on 127.0.0.1:PORT: the routes of DESIGN.md, each turned into an API Gateway
  HTTP API (payload 2.0) event for its function, with the JWT authorizer's claims
  filled in as AWS would after verifying a token. Locally the tenant comes from the
  `X-Tenant` header (default `local`), the admin scope from `X-Admin: true`, and
  `X-Anonymous: true` sends no claims at all (as an unauthenticated call).
- SQS: long-polls the task queue and delivers batches of up to 10 messages to
  `process`, deleting only those not reported in `batchItemFailures`.
- Schedule: invokes `cache-cleanup` with an EventBridge scheduled event.

Standard library plus boto3 (installed with moto in .local/venv).
"""
import argparse
import base64
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

ROUTES = [
    ("POST", re.compile(r"^/api/v1/frontal/crop/submit$"), "submit"),
    ("GET", re.compile(r"^/api/v1/frontal/crop/status/[^/]+$"), "status"),
    ("GET", re.compile(r"^/api/v1/frontal/crop/result/[^/]+\.svg$"), "status"),
    ("GET", re.compile(r"^/api/v1/cache/(stats|recent)$"), "status"),
    ("GET", re.compile(r"^/health$"), "status"),
    ("POST", re.compile(r"^/api/v1/cache/cleanup$"), "cache-cleanup"),
]
MAX_BODY = 10 * 1024 * 1024  # API Gateway HTTP API payload limit


def log(*args):
    print("[gateway]", *args, file=sys.stderr, flush=True)


def invoke(lambda_url, function, event, timeout=120):
    req = urllib.request.Request(
        f"{lambda_url}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def http_event(method, path, query, headers, body):
    tenant = headers.get("x-tenant", "local")
    ctx = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": headers.get("user-agent", "")},
        "requestId": str(uuid.uuid4()),
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "timeEpoch": int(time.time() * 1000),
    }
    if headers.get("x-anonymous", "").lower() != "true":
        scopes = ["facesvg/admin"] if headers.get("x-admin", "").lower() == "true" else []
        ctx["authorizer"] = {"jwt": {"claims": {"tenant": tenant, "sub": f"local-{tenant}"}, "scopes": scopes}}
    params = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "queryStringParameters": params,
        "headers": headers,
        "requestContext": ctx,
        "isBase64Encoded": True,
        "body": base64.b64encode(body).decode(),
    }


def make_handler(lambda_url):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            log(self.address_string(), fmt % args)

        def reply(self, status, headers, body):
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, code, message):
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            self.reply(status, {"content-type": "application/json"}, body)

        def handle_any(self, method):
            path, _, query = self.path.partition("?")
            function = None
            allowed = False
            for m, pattern, fn in ROUTES:
                if pattern.match(path):
                    allowed = True
                    if m == method:
                        function = fn
            if function is None:
                return self.error(405 if allowed else 404, "method_not_allowed" if allowed else "not_found",
                                  f"no route for {method} {path}")
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                return self.error(413, "too_large", "request body is over 10 MB")
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                out = invoke(lambda_url, function, http_event(method, path, query, headers, body))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                return self.error(502, "bad_gateway", f"function {function} did not answer: {e}")
            if not isinstance(out, dict) or "statusCode" not in out:
                return self.error(502, "bad_gateway", f"function {function} returned no HTTP response")
            raw = out.get("body") or ""
            data = base64.b64decode(raw) if out.get("isBase64Encoded") else raw.encode()
            self.reply(int(out["statusCode"]), out.get("headers") or {}, data)

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

    return Handler


def sqs_poller(lambda_url, queue_url, stop):
    sqs = boto3.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    while not stop.is_set():
        try:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                      AttributeNames=["All"])
            messages = got.get("Messages", [])
            if not messages:
                continue
            records = [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1",
            } for m in messages]
            out = invoke(lambda_url, "process", {"Records": records})
            failed = {f["itemIdentifier"] for f in (out or {}).get("batchItemFailures", [])}
            done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages) if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
            log(f"process: {len(messages)} delivered, {len(failed)} to retry")
        except Exception as e:  # keep polling: the function may be restarting
            log(f"sqs poller: {e}")
            stop.wait(1)


def scheduler(lambda_url, every, stop):
    while not stop.wait(every):
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "region": "us-east-1", "resources": [], "detail": {}}
        try:
            log("cache-cleanup:", json.dumps(invoke(lambda_url, "cache-cleanup", event)))
        except Exception as e:
            log(f"scheduler: {e}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--lambda-url", default="http://127.0.0.1:9000")
    p.add_argument("--queue-url", required=True)
    p.add_argument("--cleanup-every", type=float, default=3600.0, help="seconds between scheduled sweeps")
    args = p.parse_args()
    stop = threading.Event()
    threading.Thread(target=sqs_poller, args=(args.lambda_url, args.queue_url, stop), daemon=True).start()
    threading.Thread(target=scheduler, args=(args.lambda_url, args.cleanup_every, stop), daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.lambda_url))
    log(f"listening on http://127.0.0.1:{args.port}")
    try:
        server.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
