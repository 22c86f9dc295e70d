"""Send-rate limit: two deliver-outbox processes share SMTP_RATE_LIMIT; critical mail jumps a backlog.

A backlog of low-priority weekly digests worth about two minutes at the limit is planned
straight into the outbox; a local Prefect server of its own (home in a temporary folder)
holds the limit; two deliver-outbox flows run at once as separate processes against
Postfix's smtp-sink. The sink writes every message it accepts to a file of its own, so the
count and the times (each file's mtime: when the sink had the message's last byte) come
from the receiving side, not from the system under test. 20 s into the sending, one
critical message is queued; its wait runs from just before it is queued to its arrival.

The measured window runs from the first message accepted to the last: the runners' start-up
before it and their idle end after it are left out. Prints one JSON line per figure;
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import ROOT, emit, free_port, fresh_database, log, percentile, start_sink

DB_NAME = "tutormax_bench_ratelimit"
CRITICAL_TO = "critical-manager@example.com"
PAGE = 1000


def runner(stats: Path, budget: float) -> None:
    """One deliver-outbox process: the flow for up to budget seconds, each acquire timed; what it did, to stats."""
    from flows.deliver_outbox import deliver_outbox
    from tasks import send_rate

    waits: list[float] = []
    acquire = send_rate.acquire

    def timed(rate, messages):
        started = time.perf_counter()
        acquire(rate, messages)
        waits.append(time.perf_counter() - started)

    send_rate.acquire = timed  # delivery looks it up on the module at each chunk
    summary = deliver_outbox(budget_seconds=budget)
    stats.write_text(json.dumps({"sent": summary["sent"], "acquires": len(waits), "acquire_waits": waits}))


def planned(template_type: str, index: int, email: str, priority: int | None = None):
    """One message of a type, with the type's sample metadata, for entity index."""
    from db import outbox
    from tasks.email_types import get

    kind = get(template_type)
    name, metadata = kind.sample
    return outbox.PlannedMessage(
        workflow_type=template_type, entity_type="bench", entity_id=index, step="send", template_type=template_type,
        category=kind.category, recipient_type="tutor", recipient_email=email, recipient_name=name,
        recipient_id=index, priority=kind.rank if priority is None else priority, metadata=metadata)


def plan(messages: list) -> None:
    from db import outbox
    from db.session import transaction

    with transaction() as session:
        outbox.plan(session, messages, datetime.now(timezone.utc))


def queue_backlog(n: int) -> None:
    """n weekly digests (low priority), due now, planned in pages."""
    for start in range(0, n, PAGE):
        plan([planned("weekly_digest", i, f"digest{i}@example.com") for i in range(start + 1, min(n, start + PAGE) + 1)])


def arrivals(folder: Path) -> list[tuple[float, str]]:
    """(time accepted, recipient) of every message smtp-sink wrote to folder, by time."""
    found = []
    for entry in os.scandir(folder):
        with open(entry.path, "rb") as dump:
            # a file holds one transaction; its envelope recipient is one of smtp-sink's own header lines
            recipients = [line[len(b"X-Rcpt-Args: <"):].split(b">")[0].decode() for line in dump
                          if line.startswith(b"X-Rcpt-Args: <")]
        found += [(entry.stat().st_mtime, recipient) for recipient in recipients]
    return sorted(found)


def max_in_any(times: list[float], seconds: float) -> int:
    """The most arrivals in any window of that many seconds (each window starting at an arrival)."""
    return max(bisect.bisect_left(times, t + seconds, lo=i) - i for i, t in enumerate(times))


def wait_for_first(folder: Path, runners: list[subprocess.Popen], deadline: float) -> float:
    """Wall time at which the sink's first file was seen; exits if the runners end or the deadline passes first."""
    while not any(os.scandir(folder)):
        if all(r.poll() is not None for r in runners) or time.time() > deadline:
            sys.exit("ratelimit: no message reached the sink")
        time.sleep(0.02)
    return time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-minute", type=int, default=3000, help="SMTP_RATE_LIMIT for the run")
    parser.add_argument("--n", type=int, help="backlog size (default: two minutes' worth at the limit)")
    parser.add_argument("--critical-after", type=float, default=20.0, help="seconds after the first arrival")
    parser.add_argument("--runner", nargs=2, metavar=("STATS", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner:
        runner(Path(args.runner[0]), float(args.runner[1]))
        return
    n = args.n or 2 * args.per_minute
    # a cap, not a pace: a runner ends once the queue is empty
    budget = 1.5 * n / args.per_minute * 60 + 30

    folder = Path(tempfile.mkdtemp(prefix="tutormax-bench-ratelimit-"))
    kept = Path(tempfile.mkdtemp(prefix="tutormax-bench-ratelimit-sink-"))
    from tutormax.prefect_server import PrefectServer

    server = PrefectServer.launch(free_port(), home=folder / "prefect-server", log=folder / "prefect-server.log")
    sink_port = free_port()
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink_port), SMTP_USE_TLS="false", SECRET_KEY="bench-secret",
                      SMTP_RATE_LIMIT=str(args.per_minute), PREFECT_API_URL=server.api_url,
                      PREFECT_HOME=str(folder / "prefect-client"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING", TUTORMAX_VAR_DIR=str(folder))
    (folder / "prefect-client").mkdir()
    sink = None
    runners: list[subprocess.Popen] = []
    try:
        from db.migrate import upgrade
        from tasks import send_rate

        url = fresh_database(DB_NAME)
        os.environ["DATABASE_URL"] = url
        upgrade(url)
        log(f"queueing {n:,} weekly digests (low priority)")
        queue_backlog(n)
        log(f"waiting for the Prefect server at {server.api_url}")
        server.wait_healthy(180)
        log(send_rate.apply(args.per_minute))
        rate = send_rate.SendRate(args.per_minute)
        sink = start_sink(sink_port, kept)
        log(f"two deliver-outbox processes, {budget:.0f} s budget each")
        stats = [folder / f"runner{i}.json" for i in (1, 2)]
        runners = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--runner", str(path), str(budget)],
                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for path in stats]
        started = time.time()
        first_seen = wait_for_first(kept, runners, started + 120)
        log(f"first message at the sink {first_seen - started:.1f} s after the runners started")
        time.sleep(max(0.0, first_seen + args.critical_after - time.time()))
        queued = time.time()  # before the plan: its own commit counts as waiting
        plan([planned("intervention_notification", n + 1, CRITICAL_TO, priority=0)])
        log(f"critical message queued {queued - first_seen:.1f} s after the first arrival")
        for proc in runners:
            try:
                _, err = proc.communicate(timeout=budget + 120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode != 0:
                sys.exit(f"a runner failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}")
        ran = [json.loads(path.read_text()) for path in stats]
        received = arrivals(kept)  # both runners have ended: every message accepted is on file
    finally:
        for proc in runners:
            if proc.poll() is None:
                proc.kill()
        if sink is not None:
            sink.terminate()
            sink.wait()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(kept, ignore_errors=True)

    times = [t for t, _ in received]
    critical = [t for t, to in received if to == CRITICAL_TO]
    if len(critical) != 1:
        sys.exit(f"the critical message arrived {len(critical)} times")
    from sqlalchemy import func, select

    from db.models import EmailMessage
    from db.session import transaction

    with transaction() as session:
        sent_in_db = session.scalar(select(func.count()).where(EmailMessage.status == "sent"))
    window = times[-1] - times[0]
    achieved = (len(times) - 1) / window * 60  # arrivals after the first, over the time they took
    waits = [w for r in ran for w in r["acquire_waits"]]

    emit("achieved_per_min", round(achieved, 1), "msg/min", window_s=round(window, 2), counted="smtp-sink files")
    emit("limit_per_min", args.per_minute, "msg/min", burst=rate.burst, decay_per_s=round(rate.decay, 3),
         chunk=rate.chunk)
    emit("rate_accuracy", round(achieved / args.per_minute, 3), "ratio", baseline="limit_per_min")
    emit("critical_wait_s", round(critical[0] - queued, 2), "s",
         accepted_before_it=sum(1 for t in times if queued <= t < critical[0]))
    emit("max_in_any_60s", max_in_any(times, 60.0), "messages")
    emit("received", len(received), "messages", distinct=len({to for _, to in received}), sent_in_db=sent_in_db,
         queued=n + 1)
    for i, r in enumerate(ran, 1):
        emit(f"runner{i}_sent", r["sent"], "messages", acquires=r["acquires"])
    emit("acquires", len(waits), "acquires")
    emit("acquire_wait_ms_p50", round(statistics.median(waits) * 1000, 1), "ms")
    emit("acquire_wait_ms_p99", round(percentile(waits, 0.99) * 1000, 1), "ms")
    emit("acquire_wait_ms_max", round(max(waits) * 1000, 1), "ms")
    # a chunk claimed before its slots are granted: a critical message in it waits at least this long
    emit("acquires_over_5s", sum(1 for w in waits if w > 5), "acquires", target_s=5)


if __name__ == "__main__":
    main()
