"""Tracker throughput: open-pixel hits per second against PostgreSQL, under gunicorn, driven by wrk.

Each hit with a genuine token classifies the open and commits an `opened` event
plus the message's counters (in a batch with the opens in flight beside it)
before answering. The baseline, measured in the same run: a bare Flask app
(defined here) answering the same route with the same GIF and headers and no
database, under the same gunicorn settings and worker count, driven the same
way for the same time. The tracker
answers the pixel in front of Flask (tracking_app.pixel), so a second baseline,
a bare WSGI function serving the same GIF, shows its distance from the floor of
its own stack too. The load generator is wrk (C, Debian's package; installed on
first use), sharing the machine's cores with the server and PostgreSQL. Prints
one JSON line per figure; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import ROOT, emit, free_port, fresh_database, log

DB_NAME = "tutormax_bench_tracker"
SECRET_KEY = "bench-secret"
RESULT_MARK = "TRACKER-BENCH-RESULT "

# what fetches pixels: desktop webmail in Chrome, iPhone Mail, Apple MPP's bare UA, Outlook, Gmail's proxy
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
)

# wrk script: rotate through the pixel URLs (each thread from its own offset), pre-built requests,
# count 2xx and non-2xx in response(), and print one JSON line in done().
LUA = r"""
local paths = {%(paths)s}
local agents = {%(agents)s}
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  sent, ok, bad = 0, 0, 0
  reqs = {}
  for i, path in ipairs(paths) do
    reqs[i] = wrk.format("GET", path, {["User-Agent"] = agents[(i %% #agents) + 1], ["Accept"] = "image/*"})
  end
  idx = (tid * 997) %% #reqs
end

function request()
  idx = (idx %% #reqs) + 1
  sent = sent + 1
  return reqs[idx]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local s, o, b = 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); o = o + t:get("ok"); b = b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "sent": %%d, "responses_2xx": %%d, "non_2xx": %%d, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, ' ..
    '"duration_s": %%.6f, "requests_per_s": %%.2f, "p50_ms": %%.3f, "p90_ms": %%.3f, "p99_ms": %%.3f, ' ..
    '"max_ms": %%.3f}\n',
    summary.requests, s, o, b, e.connect, e.read, e.write, e.status, e.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""





def bare_app():
    """The baseline: the pixel route with the same GIF and headers, no token check, no database."""
    from flask import Flask

    from tracking_app.pixel import GIF, NO_STORE

    app = Flask("bare_pixel")
    headers = {"Content-Type": "image/gif", **NO_STORE}

    @app.get("/o/<token>.gif")
    def open_pixel(token: str):
        return GIF, 200, headers

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app


def bare_wsgi_app():
    """The floor under the tracker's own pixel: a plain WSGI function, no Flask, no token, no database."""
    from tracking_app.pixel import GIF, PIXEL_HEADERS

    def app(environ, start_response):
        start_response("200 OK", PIXEL_HEADERS)
        return [GIF]

    return app


def ensure_wrk() -> str:
    binary = shutil.which("wrk")
    if binary:
        return binary
    log("wrk not found: installing Debian's wrk package (apt-get install -y wrk)")
    if os.geteuid() != 0:
        sys.exit("wrk not found and not root: install it with `sudo apt-get install -y wrk`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, check=False, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False)
    binary = shutil.which("wrk")
    if not binary:
        sys.exit("could not install wrk: run `apt-get install -y wrk`")
    return binary



def sent_messages(url: str, n: int) -> list[int]:
    """n messages sent an hour ago; returns their ids."""
    from sqlalchemy import insert

    from db.models import EmailMessage
    from db.session import get_engine

    sent_at = datetime.now(UTC) - timedelta(hours=1)
    table = EmailMessage.__table__
    rows = [{"idempotency_key": f"bench-tracker:{i}", "recipient_email": f"student{i}@example.com",
             "recipient_type": "student", "recipient_id": i, "template_type": "feedback_reminder",
             "category": "feedback_reminders", "status": "sent", "priority": 2, "retry_count": 0, "open_count": 0,
             "click_count": 0, "metadata": {}, "created_at": sent_at, "updated_at": sent_at, "sent_at": sent_at}
            for i in range(1, n + 1)]
    with get_engine(url).begin() as conn:
        ids = conn.execute(insert(table).returning(table.c.message_id), rows).scalars().all()
    return list(ids)


def opened_events(url: str) -> int:
    from sqlalchemy import func, select

    from db.models import EmailTrackingEvent
    from db.session import get_engine

    e = EmailTrackingEvent
    with get_engine(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(e).where(e.event_type == "opened")).scalar_one()


def opens_counted(url: str) -> int:
    """Sum of email_messages.open_count: the counters bumped with each event."""
    from sqlalchemy import func, select

    from db.models import EmailMessage
    from db.session import get_engine

    with get_engine(url).connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(EmailMessage.open_count), 0))).scalar_one())


class Server:
    """One gunicorn with the tracker's own config file, bound to loopback."""

    def __init__(self, name: str, app: str, workers: int, env: dict[str, str], workdir: Path,
                 extra: list[str] = ()) -> None:
        self.name, self.port = name, free_port()
        self.log_path = workdir / f"{name}-gunicorn.log"
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "tracking_app" / "gunicorn.conf.py"), *extra, app],
            cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **env, "TRACKER_BIND": f"127.0.0.1:{self.port}", "TRACKER_WORKERS": str(workers)})

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        sys.exit(f"{self.name} did not become healthy on {self.base}; gunicorn said:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # gunicorn's graceful shutdown of its own workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def run_wrk(wrk: str, script: Path, base: str, *, seconds: float, connections: int, threads: int) -> dict:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "-s", str(script), base]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    sys.exit(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


def describe(result: dict) -> str:
    errors = sum(result["errors"][k] for k in ("connect", "read", "write", "timeout"))
    return (f"{result['requests_per_s']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
            f"{result['responses_2xx']:,} 2xx, {result['non_2xx']} non-2xx, {errors} socket errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each measured wrk run")
    parser.add_argument("--n", type=int, default=2000, help="messages (distinct pixel URLs)")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn workers (the tracker's gunicorn.conf.py, gevent), tracker and baseline alike")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load before each run")
    args = parser.parse_args()

    wrk = ensure_wrk()
    os.environ["SECRET_KEY"] = SECRET_KEY
    url = fresh_database(DB_NAME)
    os.environ["DATABASE_URL"] = url

    from db.migrate import upgrade
    from tutormax.settings import load_settings
    from tutormax.tokens import Purpose, Signer

    log(f"migrating and creating {args.n:,} sent messages in PostgreSQL")
    upgrade(url)
    ids = sent_messages(url, args.n)
    signer = Signer(load_settings().secret_bytes())
    paths = [f"/o/{signer.sign(Purpose.OPEN, message_id)}.gif" for message_id in ids]

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="tutormax-bench-tracker-") as tmp:
        workdir = Path(tmp)
        script = workdir / "pixels.lua"
        script.write_text(LUA % {
            "paths": ",".join(json.dumps(p) for p in paths),
            "agents": ",".join(json.dumps(ua) for ua in USER_AGENTS),
            "mark": RESULT_MARK})
        env = {"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "TUTORMAX_VAR_DIR": str(workdir / "var")}
        load = {"connections": args.connections, "threads": args.threads}
        try:
            log(f"starting the tracker and the bare baseline under gunicorn, {args.workers} gevent workers each")
            tracker = Server("tracker", "tracking_app.wsgi:app", args.workers, env, workdir)
            servers.append(tracker)
            bare = Server("bare", "tracker:bare_app()", args.workers, env, workdir,
                          extra=["--pythonpath", str(ROOT / "benchmarks")])
            servers.append(bare)
            bare_wsgi = Server("bare-wsgi", "tracker:bare_wsgi_app()", args.workers, env, workdir,
                               extra=["--pythonpath", str(ROOT / "benchmarks")])
            servers.append(bare_wsgi)
            for server in servers:
                server.wait_healthy()

            def look(server: Server) -> dict:
                if args.warmup > 0:
                    run_wrk(wrk, script, server.base, seconds=args.warmup, **load)
                result = run_wrk(wrk, script, server.base, seconds=args.seconds, **load)
                log(f"  {server.name}: {describe(result)}")
                return result

            log(f"baseline, first look: bare Flask pixel, {args.seconds:g} s with {args.connections} connections")
            bare_before = look(bare)
            log(f"tracker: pixel hits recording opens in PostgreSQL, {args.seconds:g} s")
            if args.warmup > 0:
                run_wrk(wrk, script, tracker.base, seconds=args.warmup, **load)
            time.sleep(0.5)  # let requests still in flight when the warm-up stopped commit
            events_before, counted_before = opened_events(url), opens_counted(url)
            result = run_wrk(wrk, script, tracker.base, seconds=args.seconds, **load)
            log(f"  tracker: {describe(result)}")
            time.sleep(1.0)
            events = opened_events(url) - events_before
            counted = opens_counted(url) - counted_before
            log("baseline, second look")
            # the machine is noisy: the better of two looks is the baseline, so the ratio errs low
            bare_after = look(bare)
            log("bare WSGI pixel (the tracker's pixel skips Flask too)")
            bare_wsgi_result = look(bare_wsgi)
        finally:
            for server in reversed(servers):
                server.stop()
        journaled = list((workdir / "var" / "journal").glob("events*"))

    bare_rate = max(bare_before["requests_per_s"], bare_after["requests_per_s"])
    rate = result["requests_per_s"]
    socket_errors = {k: v for k, v in result["errors"].items() if k != "status"}
    # wrk stops with requests in flight: the server may still commit those, so events can exceed
    # the 2xx count by at most the requests written but not answered (never fall short of it)
    unanswered = result["sent"] - result["requests"]
    consistent = result["responses_2xx"] <= events <= result["responses_2xx"] + unanswered and counted == events
    emit("tracker_hits_per_s", round(rate, 1), "hit/s", seconds=round(result["duration_s"], 2),
         connections=args.connections, wrk_threads=args.threads)
    emit("bare_hits_per_s", round(bare_rate, 1), "hit/s",
         looks=[round(bare_before["requests_per_s"], 1), round(bare_after["requests_per_s"], 1)])
    emit("ratio_to_bare", round(rate / bare_rate, 3), "ratio", baseline="bare_hits_per_s")
    wsgi_rate = bare_wsgi_result["requests_per_s"]
    emit("bare_wsgi_hits_per_s", round(wsgi_rate, 1), "hit/s")
    emit("ratio_to_bare_wsgi", round(rate / wsgi_rate, 3), "ratio", baseline="bare_wsgi_hits_per_s")
    emit("p50_ms", round(result["p50_ms"], 2), "ms")
    emit("p99_ms", round(result["p99_ms"], 2), "ms", p90_ms=round(result["p90_ms"], 2),
         max_ms=round(result["max_ms"], 2), bare_p99_ms=round(min(bare_before["p99_ms"], bare_after["p99_ms"]), 2))
    emit("non_2xx", result["non_2xx"], "responses", socket_errors=socket_errors)
    emit("responses_2xx", result["responses_2xx"], "responses", unanswered_at_stop=unanswered)
    emit("events_in_db", events, "events", open_count_sum=counted, journaled_files=len(journaled),
         consistent=consistent)
    emit("workers", args.workers, "workers", worker_class="gevent")
    if not consistent:
        log(f"MISMATCH: {events} opened events, {counted} counted opens, {result['responses_2xx']} 2xx responses, "
            f"{unanswered} unanswered at stop")


if __name__ == "__main__":
    main()
