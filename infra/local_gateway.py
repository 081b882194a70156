#!/usr/bin/env python3
"""The local stand-in for API Gateway, Lambda's invoke limits, the SQS event source
mapping and the EventBridge schedule, in front of the functions (processes started by
infra/run.sh that poll cargo lambda's runtime API emulator).

- HTTP on 127.0.0.1:PORT: each route of ROUTES becomes an API Gateway HTTP API
  (payload 2.0) event for its function, with the JWT authorizer's claims filled in as
  AWS would after verifying a token. Locally the tenant comes from `X-Tenant` (default
  `local`), the admin scope from `X-Admin: true`, and `X-Anonymous: true` sends no
  claims at all (an unauthenticated call).
- Load behaviour as in AWS: a deep listen backlog (thousands of connections wait
  instead of being reset); per function at most `--concurrency` invocations in flight
  (reserved concurrency) and a bounded FIFO of waiting requests, beyond which the
  answer is 429 `throttled` with `Retry-After`; an optional stage rate limit (token
  bucket, as HTTP API stage throttling); API Gateway's payload limits (10 MB body;
  Lambda's 6 MB on the event with the body base64-encoded) answered 413; 504 after
  the integration timeout, and every invocation abandoned after its function
  timeout, so that nothing waits forever.
- SQS: long-polls the task queue and delivers batches of up to 10 messages to
  `process` within its concurrency, deleting only the messages not reported in
  `batchItemFailures`; the others (and a whole batch whose invocation failed) come
  back after the queue's visibility timeout and reach the DLQ after maxReceiveCount.
- Schedule: invokes `cache-cleanup` with an EventBridge scheduled event.
- `GET /_gateway/stats`: the gateway's own counters (not an API route).

Why the emulator guard: `cargo lambda watch` keeps one bounded queue (100) of
invocations per function and pushes into it while holding a lock that the function's
`/next` poll also needs, so a 101st waiting invocation deadlocks the whole emulator
(every function, /health included). The gateway therefore never has more than
`--concurrency` invocations outstanding per function, and it counts the ones it gave
up on (they may still sit in that queue) until a later invocation of the same
function completes, which proves the FIFO queue has moved past them.

Standard library (asyncio) plus boto3, which comes with moto in .local/venv.
"""
import argparse
import asyncio
import base64
import collections
import http
import itertools
import json
import os
import re
import resource
import sys
import time
import urllib.parse
import uuid

# The API: the route table of the code (facesvg::api::routes), as written to
# infra/routes.json by `cargo run -q -p facesvg --bin facesvg-routes` (tests/routes.rs
# keeps the file current). The SAM template and openapi.json are checked against the
# same table.
def _pattern(template):
    """A route template as a regex: `{name}` is one non-empty segment, `{name}.svg`
    one ending in `.svg`."""
    return "".join(
        re.escape(part) if not part.startswith("{") else "[^/]+" + re.escape(part.split("}", 1)[1])
        for part in re.split(r"(\{[^}]+\}[^/]*)", template)
    )


with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "routes.json")) as _f:
    ROUTES = [(r["method"], _pattern(r["path"]), r["function"]) for r in json.load(_f)]
_ROUTES = [(m, re.compile(f"^{p}$"), fn) for m, p, fn in ROUTES]
FUNCTIONS = sorted({fn for _, _, fn in ROUTES} | {"process"})

MAX_BODY = 10 * 1024 * 1024  # HTTP API request payload
MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024  # Lambda synchronous invocation, request and response
MAX_HEAD = 10 * 1024  # HTTP API: request line plus headers
EMULATOR_QUEUE_CAP = 64  # below cargo lambda's 100 (see the module comment)
EMULATOR_QUEUE_HARD_CAP = 96


def log(*args):
    print("[gateway]", *args, file=sys.stderr, flush=True)


def error_body(code, message):
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class GatewayError(Exception):
    """An answer the gateway gives itself, without (or instead of) the function's."""

    def __init__(self, status, code, message, retry_after=None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Function:
    """One function behind the emulator: its slots (reserved concurrency), the FIFO of
    requests waiting for one, kept-alive connections to the emulator, and the
    invocations given up on that may still be queued there."""

    def __init__(self, name, cfg):
        self.name = name
        self.limit = cfg.concurrency.get(name, cfg.default_concurrency)
        self.queue_max = cfg.queue
        self.queue_wait = cfg.queue_wait
        self.timeout = cfg.function_timeout.get(name, cfg.default_function_timeout)
        self.host, self.port = cfg.lambda_host, cfg.lambda_port
        self.busy = 0
        self.waiting = collections.deque()
        self.idle = []  # (reader, writer) kept alive
        self.abandoned = []  # sequence numbers of invocations given up on
        self.seq = itertools.count()
        self.counts = collections.Counter()

    # --- slots -------------------------------------------------------------------
    def _outstanding(self):
        return self.busy + len(self.abandoned)

    async def acquire(self, bounded=True, wait=None):
        """Takes a slot; False when the request is throttled. `bounded=False` (event
        sources) waits as long as it takes, as an SQS poller does."""
        if len(self.abandoned) >= EMULATOR_QUEUE_HARD_CAP or (
                self._outstanding() >= EMULATOR_QUEUE_CAP and self.busy > 0):
            # The emulator may be holding many lost invocations: one probe at a time
            # until an answer shows that its queue moves again. Past the hard cap not
            # even a probe (one more could deadlock the emulator): only its restart
            # (seen as a refused connection) clears the count.
            self.counts["refused_stuck"] += 1
            raise GatewayError(503, "unavailable", f"function {self.name} is not answering; retry later", 5)
        if self.busy < self.limit and not self.waiting:
            self.busy += 1
            return True
        if bounded and len(self.waiting) >= self.queue_max:
            return False
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        try:
            # A slot handed over by release() is the future's result; on a timeout
            # that races with a hand-over, wait_for returns the result, so no slot leaks.
            return await asyncio.wait_for(fut, min(self.queue_wait, wait or self.queue_wait) if bounded else None)
        except asyncio.TimeoutError:
            return False
        finally:
            try:
                self.waiting.remove(fut)
            except ValueError:
                pass

    def release(self):
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(True)  # the slot passes on; busy is unchanged
                return
        self.busy -= 1

    # --- invocation ----------------------------------------------------------------
    async def invoke(self, payload: bytes):
        """POSTs one event (the caller holds a slot, released here). Returns
        (status, body) from the emulator; raises GatewayError."""
        seq = next(self.seq)
        self.counts["invocations"] += 1
        try:
            status, body = await asyncio.wait_for(self._call(payload), self.timeout)
        except asyncio.TimeoutError:
            self.abandoned.append(seq)
            self.counts["timeouts"] += 1
            log(f"{self.name}: invocation abandoned after {self.timeout:g} s "
                f"({len(self.abandoned)} possibly still queued in the emulator)")
            raise GatewayError(504, "gateway_timeout", f"function {self.name} did not answer within {self.timeout:g} s")
        except (ConnectionRefusedError, FileNotFoundError) as e:
            # Nothing listens: the emulator is gone, and with it every queued invocation.
            self.counts["unreachable"] += 1
            for fn in ALL.values():
                fn.abandoned.clear()
            raise GatewayError(502, "bad_gateway", f"function {self.name} is unreachable: {e}")
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            self.counts["unreachable"] += 1
            raise GatewayError(502, "bad_gateway", f"function {self.name} did not answer: {e!r}")
        finally:
            self.release()
        # The emulator's queue is FIFO: an answer to this invocation means the ones
        # abandoned before it have left the queue.
        self.abandoned = [s for s in self.abandoned if s > seq]
        return status, body

    async def _call(self, payload):
        for attempt in (0, 1):
            reused = bool(self.idle)
            reader, writer = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(
                    f"POST /2015-03-31/functions/{self.name}/invocations HTTP/1.1\r\n"
                    f"Host: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                await writer.drain()
                status, headers, body = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                writer.close()
                # A kept-alive connection the emulator closed while idle: the request
                # never reached it, so sending it once more cannot run it twice.
                if reused and attempt == 0 and (not isinstance(e, asyncio.IncompleteReadError) or not e.partial):
                    continue
                raise
            except BaseException:
                writer.close()
                raise
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer))
            return status, body
        raise ConnectionError("no connection")

    def stats(self):
        return {"limit": self.limit, "in_flight": self.busy, "waiting": len(self.waiting),
                "abandoned": len(self.abandoned), "timeout_s": self.timeout, **self.counts}


ALL = {}


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        # HTTP forbids control characters in field values (RFC 9110 5.5); API Gateway
        # refuses such requests before any function runs, and so do we.
        if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value):
            raise ValueError(f"control character in header {name!r}")
        # Repeated headers are joined with commas, as API Gateway does.
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return lines[0], headers, len(head)


async def read_body(reader, headers, limit):
    """The body by Content-Length or chunked encoding; GatewayError 413 past `limit`."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts, size = [], 0
        while True:
            line = await reader.readuntil(b"\r\n")
            n = int(line.split(b";")[0].strip(), 16)
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            size += n
            if size > limit:
                raise GatewayError(413, "too_large", f"the body is over {limit} bytes")
            parts.append(await reader.readexactly(n))
            await reader.readexactly(2)
    length = int(headers.get("content-length") or 0)
    if length < 0:
        raise ValueError("negative Content-Length")
    if length > limit:
        raise GatewayError(413, "too_large", f"the body ({length} bytes) is over {limit} bytes")
    return await reader.readexactly(length) if length else b""


async def read_response(reader):
    status_line, headers, _ = await read_head(reader)
    status = int(status_line.split(" ", 2)[1])
    if "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower():
        try:
            body = await read_body(reader, headers, MAX_INVOKE_PAYLOAD + 1024)
        except GatewayError as e:
            raise ValueError(f"the function's answer is over 6 MB: {e.message}") from None
    else:
        body = await reader.read(MAX_INVOKE_PAYLOAD + 1024)
        headers["connection"] = "close"
    return status, headers, body


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
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "queryStringParameters": params,
        "headers": {k: v for k, v in headers.items() if k != "cookie"},
        "requestContext": ctx,
        "isBase64Encoded": True,
        "body": base64.b64encode(body).decode(),
    }
    if "cookie" in headers:
        event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
    return event


class TokenBucket:
    """HTTP API stage throttling: `rate` requests a second, bursts of `burst`."""

    def __init__(self, rate, burst):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Gateway:
    def __init__(self, cfg):
        self.cfg = cfg
        self.bucket = TokenBucket(cfg.rate, cfg.burst) if cfg.rate > 0 else None
        self.connections = 0
        self.max_connections = 0
        self.answers = collections.Counter()
        self.started = time.time()

    async def serve_client(self, reader, writer):
        self.connections += 1
        self.max_connections = max(self.max_connections, self.connections)
        try:
            while await self.serve_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        except Exception as e:  # one client's bad luck must not end the server
            log(f"connection error: {e!r}")
        finally:
            self.connections -= 1
            writer.close()

    async def serve_request(self, reader, writer):
        """Reads and answers one request; True to keep the connection for another."""
        try:
            request_line, headers, head_size = await asyncio.wait_for(read_head(reader), self.cfg.idle_timeout)
        except asyncio.LimitOverrunError:
            await self.reply(writer, 431, {"content-type": "application/json"},
                             error_body("headers_too_large", "request headers are too large"), False)
            return False
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return False
        except ValueError as e:
            await self.reply(writer, 400, {"content-type": "application/json"}, error_body("bad_request", str(e)), False)
            return False
        try:
            method, target, version = request_line.split(" ")
        except ValueError:
            await self.reply(writer, 400, {"content-type": "application/json"},
                             error_body("bad_request", "malformed request line"), False)
            return False
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        path, _, query = target.partition("?")
        # Until the body is read, an early answer (no route, throttled) must close
        # the connection: the unread body would be taken for the next request.
        body_read = not headers.get("transfer-encoding") and headers.get("content-length", "0").strip() in ("", "0")
        try:
            if head_size > MAX_HEAD:
                raise GatewayError(431, "headers_too_large", f"request line and headers are over {MAX_HEAD} bytes")
            if path == "/_gateway/stats" and method == "GET":
                body = json.dumps(self.stats()).encode()
                await self.reply(writer, 200, {"content-type": "application/json"}, body, keep)
                return keep
            fn = self.route(method, path)
            if self.bucket and not self.bucket.take():
                raise GatewayError(429, "throttled", "the stage rate limit is exceeded", 1)
            if headers.get("expect", "").lower() == "100-continue":
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY:
                    raise GatewayError(413, "too_large", f"the body ({length} bytes) is over {MAX_BODY} bytes")
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            body = await asyncio.wait_for(read_body(reader, headers, MAX_BODY), self.cfg.idle_timeout)
            body_read = True
            payload = json.dumps(http_event(method, path, query, headers, body)).encode()
            if len(payload) > MAX_INVOKE_PAYLOAD:
                raise GatewayError(413, "too_large",
                                   f"the request is over Lambda's 6 MB invocation payload limit "
                                   f"({len(payload)} bytes as an event, the body base64-encoded)")
            status, out_headers, out_body = await self.call(fn, payload)
            await self.reply(writer, status, out_headers, out_body, keep)
            return keep
        except GatewayError as e:
            extra = {"retry-after": str(e.retry_after)} if e.retry_after else {}
            # A refused body may still be on the wire: close rather than read it.
            keep = keep and body_read and e.status not in (413, 431)
            await self.reply(writer, e.status, {"content-type": "application/json", **extra},
                             error_body(e.code, e.message), keep)
            return keep
        except (ValueError, asyncio.LimitOverrunError) as e:
            await self.reply(writer, 400, {"content-type": "application/json"}, error_body("bad_request", str(e)), False)
            return False

    def route(self, method, path):
        allowed = False
        for m, pattern, fn in _ROUTES:
            if pattern.match(path):
                allowed = True
                if m == method:
                    return ALL[fn]
        if allowed:
            raise GatewayError(405, "method_not_allowed", f"no route for {method} {path}")
        raise GatewayError(404, "not_found", f"no route for {method} {path}")

    async def call(self, fn, payload):
        # The integration timeout counts from the request's arrival, waiting included.
        deadline = time.monotonic() + self.cfg.integration_timeout
        if not await fn.acquire(wait=self.cfg.integration_timeout):
            fn.counts["throttled"] += 1
            raise GatewayError(429, "throttled",
                               f"function {fn.name} is at its concurrency ({fn.limit} running, {len(fn.waiting)} waiting)",
                               self.cfg.retry_after)
        # The invocation runs on after an integration timeout, holding its slot until
        # its function timeout, as a Lambda instance does when API Gateway gives up.
        task = asyncio.ensure_future(fn.invoke(payload))
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # no "never retrieved" warning
            raise GatewayError(504, "gateway_timeout",
                               f"function {fn.name} did not answer within {self.cfg.integration_timeout:g} s")
        status, body = task.result()
        if len(body) > MAX_INVOKE_PAYLOAD:
            raise GatewayError(502, "bad_gateway", f"function {fn.name} answered more than 6 MB")
        try:
            out = json.loads(body or b"null")
        except ValueError:
            out = None
        if status != 200:
            fn.counts["function_errors"] += 1
            message = out.get("errorMessage") if isinstance(out, dict) else body[:200].decode("utf-8", "replace")
            raise GatewayError(500, "internal", f"function {fn.name} failed: {message}")
        if not isinstance(out, dict) or "statusCode" not in out:
            raise GatewayError(502, "bad_gateway", f"function {fn.name} returned no HTTP response")
        raw = out.get("body") or ""
        data = base64.b64decode(raw) if out.get("isBase64Encoded") else raw.encode()
        headers = dict(out.get("headers") or {})
        if out.get("cookies"):
            headers["set-cookie"] = out["cookies"]
        return int(out["statusCode"]), headers, data

    async def reply(self, writer, status, headers, body, keep):
        self.answers[status] += 1
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {status} {reason}"]
        for k, v in headers.items():
            if k.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            for item in (v if isinstance(v, list) else [v]):
                lines.append(f"{k}: {item}")
        lines.append(f"Content-Length: {len(body)}")
        if not keep:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    def stats(self):
        return {"uptime_s": round(time.time() - self.started, 1), "connections": self.connections,
                "max_connections": self.max_connections,
                "answers": {str(k): v for k, v in sorted(self.answers.items())},
                "functions": {name: fn.stats() for name, fn in ALL.items()}}


def sqs_records(messages, arn):
    """SQS messages (as ReceiveMessage returns them) as the event source hands them
    to the function: the `Records` of an SQS event."""
    return [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1",
    } for m in messages]


def scheduled_event():
    """An EventBridge schedule's event, as the cleanup schedule sends it."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "us-east-1", "resources": [], "detail": {}}


async def sqs_poller(cfg, stop, index):
    import boto3  # only the event source needs it

    sqs = boto3.client("sqs")
    fn = ALL["process"]
    arn = None
    while not stop.is_set():
        try:
            await fn.acquire(bounded=False)
        except GatewayError as e:
            log(f"sqs poller {index}: {e.message}")
            await asyncio.sleep(5)
            continue
        released = False
        try:
            if arn is None:
                attrs = await asyncio.to_thread(sqs.get_queue_attributes, QueueUrl=cfg.queue_url,
                                                AttributeNames=["QueueArn"])
                arn = attrs["Attributes"]["QueueArn"]
            got = await asyncio.to_thread(sqs.receive_message, QueueUrl=cfg.queue_url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=1, AttributeNames=["All"])
            messages = got.get("Messages", [])
            if not messages:
                continue
            records = sqs_records(messages, arn)
            released = True  # invoke() releases the slot
            try:
                status, body = await fn.invoke(json.dumps({"Records": records}).encode())
            except GatewayError as e:
                log(f"process: batch of {len(messages)} not delivered ({e.message}); back after the visibility timeout")
                continue
            out = json.loads(body or b"null") if status == 200 else None
            if status != 200 or not isinstance(out, dict):
                fn.counts["function_errors"] += 1
                log(f"process: batch of {len(messages)} failed ({status}); back after the visibility timeout")
                continue
            failed = {f["itemIdentifier"] for f in out.get("batchItemFailures") or []}
            done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages) if m["MessageId"] not in failed]
            if done:
                await asyncio.to_thread(sqs.delete_message_batch, QueueUrl=cfg.queue_url, Entries=done)
            fn.counts["messages_done"] += len(done)
            fn.counts["messages_retried"] += len(failed)
            if failed:
                log(f"process: {len(messages)} delivered, {len(failed)} to retry")
        except Exception as e:  # keep polling: the queue or the function may come back
            log(f"sqs poller {index}: {e!r}")
            await asyncio.sleep(1)
        finally:
            if not released:
                fn.release()


async def scheduler(cfg, stop, every, make_event):
    """Invokes cache-cleanup with `make_event()` every `every` seconds, as one of the
    template's schedules does."""
    fn = ALL["cache-cleanup"]
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except asyncio.TimeoutError:
            pass
        event = make_event()
        try:
            await fn.acquire(bounded=False)
            status, body = await fn.invoke(json.dumps(event).encode())
            log(f"cache-cleanup ({status}): {body[:300].decode('utf-8', 'replace')}")
        except GatewayError as e:
            log(f"scheduler: {e.message}")


def per_function(text, cast):
    """`8` or `submit=8,process=2`: a default and overrides."""
    default, named = None, {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.rpartition("=")
        if sep:
            if name not in FUNCTIONS:
                raise argparse.ArgumentTypeError(f"unknown function {name!r} (one of {', '.join(FUNCTIONS)})")
            named[name] = cast(value)
        else:
            default = cast(value)
    return default, named


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--lambda-url", default="http://127.0.0.1:9000")
    p.add_argument("--queue-url", required=True)
    p.add_argument("--cleanup-every", type=float, default=3600.0, help="seconds between scheduled sweeps")
    p.add_argument("--relay-every", type=float, default=60.0,
                   help="seconds between relay jobs (the outbox relay and the request counts' fold)")
    p.add_argument("--concurrency", default="8",
                   help="invocations in flight per function: N or N,submit=N,... (reserved concurrency)")
    p.add_argument("--queue", type=int, default=64, help="requests waiting per function before 429")
    p.add_argument("--queue-wait", type=float, default=10.0, help="seconds a request may wait for a slot before 429")
    p.add_argument("--retry-after", type=int, default=1, help="Retry-After of a 429, seconds")
    p.add_argument("--integration-timeout", type=float, default=30.0, help="seconds before a 504 (API Gateway: 30)")
    p.add_argument("--function-timeout", default="60",
                   help="seconds before an invocation is abandoned: N or N,process=N,...")
    p.add_argument("--rate", type=float, default=0.0, help="stage rate limit, requests/s (0: none)")
    p.add_argument("--burst", type=int, default=200, help="stage burst limit")
    p.add_argument("--sqs-pollers", type=int, default=2, help="concurrent SQS batches (<= process concurrency)")
    p.add_argument("--backlog", type=int, default=4096, help="listen backlog (capped by net.core.somaxconn)")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="seconds a client connection may sit idle")
    cfg = p.parse_args()
    cfg.default_concurrency, cfg.concurrency = per_function(cfg.concurrency, int)
    cfg.default_function_timeout, cfg.function_timeout = per_function(cfg.function_timeout, float)
    if cfg.default_concurrency is None:
        cfg.default_concurrency = 8
    if cfg.default_function_timeout is None:
        cfg.default_function_timeout = 60.0
    if max([cfg.default_concurrency, *cfg.concurrency.values()]) > EMULATOR_QUEUE_CAP // 2:
        p.error(f"--concurrency above {EMULATOR_QUEUE_CAP // 2} risks cargo lambda's queue limit")
    url = urllib.parse.urlsplit(cfg.lambda_url)
    cfg.lambda_host, cfg.lambda_port = url.hostname, url.port or 80

    # One descriptor per connection: 1,000 clients and the emulator need more than
    # the usual soft limit of 1,024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    for name in FUNCTIONS:
        ALL[name] = Function(name, cfg)

    gateway = Gateway(cfg)
    stop = asyncio.Event()
    server = await asyncio.start_server(gateway.serve_client, "127.0.0.1", cfg.port, backlog=cfg.backlog,
                                        limit=64 * 1024)
    background = [asyncio.create_task(sqs_poller(cfg, stop, i)) for i in range(cfg.sqs_pollers)]
    # The template's two schedules: the sweep (hourly) and the relay with the request
    # counts' fold (every minute, `{"job": "relay"}`).
    background.append(asyncio.create_task(scheduler(cfg, stop, cfg.cleanup_every, scheduled_event)))
    background.append(asyncio.create_task(scheduler(cfg, stop, cfg.relay_every, lambda: {"job": "relay"})))
    limits = ", ".join(f"{n} {f.limit}" for n, f in ALL.items())
    log(f"listening on http://127.0.0.1:{cfg.port} (concurrency: {limits}; queue {cfg.queue}, "
        f"integration timeout {cfg.integration_timeout:g} s)")
    try:
        async with server:
            await server.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
