"""Scale-out: a backlog of due mail sent by Prefect process workers, and a worker's host dying mid-batch.

Everything runs as `tutormax cluster` runs it (tutormax.cluster): a Prefect server on a
PostgreSQL database of its own, the work pool prefect.yaml names, `prefect deploy --all`, the
automation that marks a run Crashed when its heartbeats stop (every 30 s; 90 s of silence), and
two `prefect worker start` processes, each running one flow run at a time (`--limit 1`: one
host's worth). The application's database is PostgreSQL; Postfix's smtp-sink writes each message
it accepts to a file, so what arrived, and when, is counted at the receiving end.

1. 20,000 sessions owe feedback; the feedback-reminders automation's planner writes their
   reminders into the outbox (the backlog). The deployments' schedules are switched off, so
   only the runs below go.
2. Two deliver-outbox runs go to the work pool, one to each worker. They are held at their first
   claim (the benchmark holds a table lock on the outbox) until both wait, then let go together.
3. Throughput, one worker against two, in the same seconds of this shared machine: short windows
   in turn with both runs sending and with one of them frozen (SIGSTOP on its process group,
   SIGCONT after), the frozen one alternating. Each rate is the sink's arrivals in its windows.
4. Then worker 1 and its flow run's process group are SIGKILLed while both send, as a dying host
   takes both (the run survives its worker's SIGKILL alone), and worker 1 is started again.
   Worker 2's run sends what is left, but for the dead run's claims.
5. Once the claim lease (DELIVERY_CLAIM_LEASE_SECONDS, short here) has passed, a run of the
   feedback-reminders automation (its planner finds every session planned already) and a
   deliver-outbox run go to the workers and send the reclaimed messages. The dead run must be
   marked Crashed by the automation.

Figures: messages, sent, workers; lost (sent in the database but never at the sink, or neither
sent nor final with a reason); duplicates (one reason, a session's reminder, under two
Message-IDs); resent_same_message_id (the in-flight window: accepted by the sink, its record
lost with the process); crashed_runs_recovered; the throughputs and their ratio, with how much
of the machine other work took meanwhile. One JSON line per figure on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import PG_ADMIN, _machine_ticks, emit, free_port, fresh_database, log, start_sink

DB_NAME = "tutormax_bench_scaleout"
PREFECT_DB = "tutormax_bench_scaleout_prefect"
MESSAGE_ID = re.compile(rb"^message-id:\s*<(\d+)\.", re.IGNORECASE | re.MULTILINE)
FINAL = {"sent", "failed", "skipped"}  # a message that will not be sent again by anyone
WARM_UP = 1.5  # seconds of both runs sending before the first window
MIN_WINDOW = 1.0
RESERVE = 5000  # messages left after the windows: the kill must find both runs mid-batch
SETTLE = 0.7  # seconds of both sending between the last window and the kill


class Gate:
    """An EXCLUSIVE lock on the outbox in an open transaction: runs wait at their first claim, readers do not."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url, isolation_level="READ COMMITTED")
        self.conn: Any = None

    def close(self) -> None:
        """Take the lock: from now on a claim waits."""
        from sqlalchemy import text

        self.conn = self.engine.connect()
        self.conn.execute(text("LOCK TABLE email_messages IN EXCLUSIVE MODE"))

    def waiting(self) -> int:
        """Sessions waiting for the lock (each a run at its first claim)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                    "WHERE c.relname = 'email_messages' AND NOT l.granted"))

    def open(self) -> None:
        """Let the waiting claims through together."""
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    def dispose(self) -> None:
        """Open the gate if closed and close its connections."""
        self.open()
        self.engine.dispose()


class Sink:
    """smtp-sink writing each accepted message to a file of its own in folder (mtime: when it had the last byte)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process = start_sink(self.port, folder)

    def count(self) -> int:
        """Messages accepted so far."""
        return sum(1 for _ in os.scandir(self.folder))

    def arrivals(self) -> list[tuple[float, int | None]]:
        """(time, our message id from its Message-ID) of every message accepted, by time."""
        found = []
        for entry in os.scandir(self.folder):
            try:
                with open(entry.path, "rb") as dump:
                    head = dump.read(8192)  # smtp-sink's own lines, then our headers: the Message-ID is early
                    accepted = os.fstat(dump.fileno()).st_mtime
            except FileNotFoundError:
                continue  # a transaction cut off mid-DATA (the killed run's): the sink drops its file
            match = MESSAGE_ID.search(head)
            found.append((accepted, int(match.group(1)) if match else None))
        return sorted(found, key=lambda arrival: arrival[0])

    def stop(self) -> None:
        """End the sink (its files stay)."""
        self.process.terminate()
        self.process.wait()


class CpuShare:
    """How busy the machine was, how much of that was other people's work, and where ours went, window by window.

    These 2-core machines are shared: a test suite elsewhere takes a core from the workers. Ours
    is this process, the sink, the Prefect server, the workers and their flow runs, and the
    PostgreSQL backends serving our two databases; the rest of the machine's busy time is others'.
    """

    def __init__(self, parts: dict[str, int], databases: dict[str, str]) -> None:
        self.parts = parts  # component -> the pid at its root (its descendants are counted with it)
        self.databases = databases  # component -> a database whose backends it owns
        self.busy: Counter[str] = Counter()  # machine busy ticks by kind of window
        self.total: Counter[str] = Counter()
        self.ours: dict[str, Counter[str]] = defaultdict(Counter)  # by kind of window, by component

    def sample(self) -> tuple[int, int, Counter[str]]:
        """(machine busy, machine total, ours by component): clock ticks summed over every core."""
        return (*_machine_ticks(), self._our_ticks())

    def add(self, kind: str, before: tuple[int, int, Counter[str]], after: tuple[int, int, Counter[str]]) -> None:
        self.busy[kind] += after[0] - before[0]
        self.total[kind] += after[1] - before[1]
        for part in after[2].keys() | before[2].keys():
            self.ours[kind][part] += after[2][part] - before[2][part]

    def figures(self, kind: str, messages: int) -> dict[str, Any]:
        """machine_busy (0-1 of every core), others_busy (the part of it that was not this benchmark's), and the
        CPU this benchmark's processes spent per message sent, in all and by component."""
        total, ours = self.total[kind] or 1, sum(self.ours[kind].values())
        per_message = 1000 / os.sysconf("SC_CLK_TCK") / max(1, messages)
        return {"machine_busy": round(self.busy[kind] / total, 3),
                "others_busy": round(max(0, self.busy[kind] - ours) / total, 3), "cores": os.cpu_count(),
                "cpu_ms_per_msg": round(ours * per_message, 3),
                # a PostgreSQL backend that closes takes its ticks along: a part can come out a bit low
                "cpu_ms_per_msg_by_part": {part: round(max(0, ticks) * per_message, 3)
                                           for part, ticks in sorted(self.ours[kind].items())}}

    def _our_ticks(self) -> Counter[str]:
        from tutormax.cluster import descendants

        owner = {os.getpid(): "benchmark"}
        for part, root in self.parts.items():
            for pid in (root, *descendants(root)):
                owner.setdefault(pid, part)
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    command = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0]
                except OSError:
                    continue
                if command.startswith(b"postgres: "):
                    # "postgres: 15/main: <user> <database> <client> <state>": the database is the 4th word
                    words = command.split()
                    database = words[3].decode() if len(words) > 3 else ""
                    part = next((p for p, db in self.databases.items() if db == database), None)
                    if part:
                        owner[int(entry.name)] = part
        ticks: Counter[str] = Counter()
        for pid, part in owner.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, and those of its children it has reaped (fields 14-17 of proc(5))
            ticks[part] += sum(int(f) for f in fields[11:15])
        return ticks


def freeze(pid: int, frozen: bool) -> None:
    """Stop or continue a flow run's whole process group."""
    os.killpg(os.getpgid(pid), signal.SIGSTOP if frozen else signal.SIGCONT)


# --- Prefect: runs through the work pool ------------------------------------------------------


def client():
    """A Prefect client on the benchmark's server (PREFECT_API_URL)."""
    from prefect import get_client

    return get_client(sync_client=True)


def schedules_off() -> int:
    """Switch off every deployment's schedules and delete the runs they already scheduled; how many runs."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with client() as c:
        for deployment in c.read_deployments():
            for schedule in c.read_deployment_schedules(deployment.id):
                c.update_deployment_schedule(deployment.id, schedule.id, active=False)
        scheduled = c.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))), limit=200)
        for run in scheduled:
            c.delete_flow_run(run.id)
    return len(scheduled)


def trigger(name: str, **parameters: Any):
    """A run of the deployment `name` (its flow has the same name), queued for the work pool."""
    with client() as c:
        deployment = c.read_deployment_by_name(f"{name}/{name}")
        return c.create_flow_run_from_deployment(deployment.id, parameters=parameters).id


def run_state(run_id) -> Any:
    """The flow run as the server has it now."""
    with client() as c:
        return c.read_flow_run(run_id)


def crashed_state(run_id) -> Any:
    """The run's Crashed state once Prefect has marked it so, else None."""
    state = run_state(run_id).state
    return state if state is not None and state.type.value == "CRASHED" else None


def wait_final(run_ids: list, timeout: float) -> list[Any]:
    """The runs once each is in a final state; exits if one is not within timeout seconds."""
    give_up = time.monotonic() + timeout
    while True:
        runs = [run_state(r) for r in run_ids]
        if all(r.state and r.state.is_final() for r in runs):
            return runs
        if time.monotonic() > give_up:
            sys.exit("runs not final after %.0f s: %s" % (timeout, [(str(r.id), r.state_name) for r in runs]))
        time.sleep(1.0)


def wait_for(check, timeout: float, what: str, poll: float = 0.25):
    """check()'s first true value; exits naming what did not happen within timeout seconds."""
    give_up = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > give_up:
            sys.exit(f"scaleout: no {what} within {timeout:.0f} s")
        time.sleep(poll)


def worker_of(run_id: Any, logs: dict[str, Path]) -> str | None:
    """Which worker ran a flow run, from the workers' logs: each logs the runs it submits, and aborts
    the submission of a run another worker took first."""
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        if f"submitting flow run '{run_id}'" in text and f"Aborted submission of flow run '{run_id}'" not in text:
            return name
    return None


# --- the database's side ------------------------------------------------------------------------


def outbox_rows() -> list[Any]:
    """Every message's id, status, type, metadata and reasons, as the database has them at the end."""
    from sqlalchemy import select

    from db.models import EmailMessage
    from db.session import transaction

    m = EmailMessage
    with transaction() as session:
        return session.execute(select(m.message_id, m.status, m.template_type, m.message_metadata, m.skip_reason,
                                      m.failure_reason, m.claimed_at)).all()


def claimed_now() -> set[int]:
    """The messages claimed and not yet recorded (once the survivor has ended: the dead run's)."""
    from sqlalchemy import select

    from db.models import EmailMessage
    from db.session import transaction

    with transaction() as session:
        return set(session.scalars(select(EmailMessage.message_id).where(EmailMessage.status == "sending")))


def plan_backlog(n: int, now: datetime) -> dict[str, Any]:
    """n due sessions, and their reminders planned by the feedback-reminders automation's own planner."""
    from delivery import due_platform
    from flows.feedback_reminders import plan_feedback_reminders

    due_platform(os.environ["DATABASE_URL"], n, now)
    return plan_feedback_reminders.fn(now)


# --- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="due messages in the backlog")
    parser.add_argument("--lease", type=int, default=30, help="DELIVERY_CLAIM_LEASE_SECONDS for the run")
    parser.add_argument("--window", type=float, default=2.5,
                        help="seconds of each throughput window, at most (shorter when the backlog would run out)")
    parser.add_argument("--cycles", type=int, default=4, help="pairs of windows: both runs, then one")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the sink's files")
    args = parser.parse_args()
    started = time.monotonic()

    folder = Path(tempfile.mkdtemp(prefix="tutormax-bench-scaleout-"))
    kept = Path(tempfile.mkdtemp(prefix="tutormax-bench-scaleout-sink-"))
    url = fresh_database(DB_NAME)
    # the Prefect server's database: dropped and made again, so no run of an earlier benchmark is in it
    fresh_database(PREFECT_DB)
    sink = Sink(kept)
    from tutormax import cluster

    config = cluster.ClusterConfig(root=folder / "cluster", pool=cluster.work_pool_name(), database_url=url,
                                   postgres_url=PG_ADMIN, prefect_database=PREFECT_DB, port=free_port(),
                                   workers=2, worker_limit=1, heartbeat_seconds=30, crash_after_seconds=90)
    os.environ.update(
        DATABASE_URL=url, SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port), SMTP_USE_TLS="false",
        SECRET_KEY="bench-secret", DELIVERY_CLAIM_LEASE_SECONDS=str(args.lease), TUTORMAX_VAR_DIR=str(folder / "var"),
        PREFECT_API_URL=config.api_url, PREFECT_HOME=str(config.prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING")
    config.prefect_home.mkdir(parents=True, exist_ok=True)
    env = {**cluster.base_env(config), "PREFECT_LOGGING_LEVEL": "INFO"}  # the workers' logs name their runs
    registry = cluster.Registry(config.root)
    gate = Gate(url)
    frozen: int | None = None
    failed = True
    try:
        from db.migrate import upgrade

        upgrade(url)
        now = datetime.now(timezone.utc)
        log(f"planning {args.n:,} feedback reminders (the automation's planner) in PostgreSQL")
        planned = plan_backlog(args.n, now)
        if planned["queued"] != args.n:
            sys.exit(f"planned {planned}, expected {args.n} queued")
        log("Prefect server on PostgreSQL, work pool, prefect deploy --all, crash automation")
        server = cluster.start_server(config, registry, log)
        cluster.prepare_server(config, env, log)
        log(f"schedules off; {schedules_off()} scheduled runs deleted: only this benchmark's runs go")
        workers = {n: cluster.start_worker(config, n, env, registry, log) for n in (1, 2)}
        logs = {cluster.worker_name(n): Path(w.log) for n, w in workers.items()}

        # -- a deliver-outbox run on each worker, let go together
        gate.close()
        two = [trigger("deliver-outbox", budget_seconds=600) for _ in range(2)]
        log("two deliver-outbox runs, held at their first claim until both wait")
        wait_for(lambda: gate.waiting() >= 2, 180, "two runs waiting at the gate")
        run_pid: dict[int, int] = {}
        run_id: dict[int, Any] = {}
        for run in (run_state(r) for r in two):
            pid = int(run.infrastructure_pid)
            n = next(n for n, w in workers.items() if pid in cluster.descendants(w.pid))
            run_pid[n], run_id[n] = pid, run.id
        if sorted(run_pid) != [1, 2]:
            sys.exit(f"the two runs did not go one to each worker: {run_pid}")
        cpu = CpuShare({"prefect server": server.pid, "sink": sink.process.pid, "worker-1 + its run": workers[1].pid,
                        "worker-2 + its run": workers[2].pid},
                       {"postgres (application)": DB_NAME, "postgres (prefect)": PREFECT_DB})
        gate.open()
        released = time.time()
        wait_for(lambda: sink.count() > 0, 60, "first arrival after the gate", 0.05)
        warm = sink.count()
        time.sleep(WARM_UP)  # the first batches: not counted
        # windows as long as the backlog allows: what is left after them must outlast the kill
        pace = max(1.0, (sink.count() - warm) / WARM_UP)
        budget = (args.n - sink.count() - RESERVE) / pace
        window = min(args.window, max(MIN_WINDOW, budget / (2 * args.cycles)))
        log(f"windows of {window:.1f} s (both sending, then one), at about {pace:,.0f}/s so far")
        windows: list[tuple[str, float, float]] = []
        for cycle in range(args.cycles):
            for kind, freezing in (("two", None), ("one", 2 if cycle % 2 == 0 else 1)):
                # the pace so far (the warm-up's is low): stop while a window's worth and the reserve are left
                if args.n - sink.count() < RESERVE + pace * window:
                    break
                if freezing:
                    frozen = run_pid[freezing]
                    freeze(frozen, True)
                before, begin, count = cpu.sample(), time.time(), sink.count()
                time.sleep(window)
                end = time.time()
                cpu.add(kind, before, cpu.sample())
                pace = max(pace, (sink.count() - count) / (end - begin))
                if frozen:
                    freeze(frozen, False)
                    frozen = None
                windows.append((kind, begin, end))
            else:
                continue
            break

        # -- worker 1's host dies while both send: both mid-batch again first (a run thawed this instant may
        # still sit between two batches, holding no claim)
        time.sleep(SETTLE)
        if not run_state(run_id[1]).state.is_running():
            sys.exit("scaleout: the backlog ran out before the kill; a larger --n gives the windows room")
        os.killpg(os.getpgid(run_pid[1]), signal.SIGKILL)  # the run and its worker at once
        os.killpg(workers[1].pid, signal.SIGKILL)
        killed = time.time()
        log(f"killed worker-1 (pid {workers[1].pid}) and its flow run's process group (pid {run_pid[1]}) "
            f"{killed - released:.1f} s after the gate opened, {sink.count():,} messages at the sink")
        arrived = [t for t, _ in sink.arrivals()]
        rates = {}
        for kind in ("one", "two"):
            spans = [(b, e) for k, b, e in windows if k == kind]
            count = sum(1 for t in arrived if any(b <= t < e for b, e in spans))
            rates[kind] = (count / sum(e - b for b, e in spans) if spans else 0.0, count, len(spans))
            log(f"{kind} sending: {rates[kind][1]:,} messages in {len(spans)} windows, "
                f"{rates[kind][0]:,.0f}/s ({cpu.figures(kind, count)})")
        cluster.start_worker(config, 1, env, registry, log)  # started again, as a supervisor would
        wait_final([run_id[2]], 300)
        left = claimed_now()
        log(f"worker-2's run has ended; the dead run left {len(left)} claims"
            + ("" if left else " (it was between two batches when it died: no in-flight window to measure)"))
        # the lease runs on the wall clock from each claim, the newest made before the kill
        wait_for(lambda: time.time() > killed + args.lease + 1, args.lease + 5, "lease", 0.5)
        recovery = [trigger("feedback-reminders"), trigger("deliver-outbox")]
        log(f"lease of {args.lease} s over: a feedback-reminders run and a deliver-outbox run go to the workers")
        wait_final(recovery, 300)
        recovered_after = time.time() - killed
        crash_deadline = config.crash_after_seconds + config.heartbeat_seconds + 60
        log(f"waiting for Prefect to mark the dead run Crashed (up to {crash_deadline} s after the kill)")
        crashed = wait_for(lambda: crashed_state(run_id[1]), max(5.0, crash_deadline - (time.time() - killed)),
                           "Crashed state on the dead run", 1.0)
        crashed_after = crashed.timestamp.timestamp() - killed
        log(f"marked Crashed {crashed_after:.0f} s after the kill: {crashed.message}")
        rows = outbox_rows()
        arrivals = sink.arrivals()
        labels = {"deliver-outbox killed": run_id[1], "deliver-outbox survivor": run_id[2],
                  "feedback-reminders after the lease": recovery[0], "deliver-outbox after the lease": recovery[1]}
        runs_on = {label: worker_of(run, logs) for label, run in labels.items()}
        failed = False
    finally:
        if frozen:
            freeze(frozen, False)  # a stopped process ignores SIGTERM until it continues
        gate.dispose()
        stopped = cluster.stop_all(registry.load(), log)
        sink.stop()
        log(f"stopped {len(stopped)} processes; the cluster's logs are in {folder}" if failed or args.keep
            else f"stopped {len(stopped)} processes")
        if not (failed or args.keep):
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(kept, ignore_errors=True)

    by_id = {row.message_id: row for row in rows}
    at_sink = Counter(mid for _, mid in arrivals)
    sent = {mid for mid, row in by_id.items() if row.status == "sent"}
    unaccounted = [mid for mid, row in by_id.items()
                   if row.status not in FINAL or (row.status != "sent" and not (row.skip_reason or row.failure_reason))]
    lost_sent = sorted(sent - set(at_sink))
    reasons: dict[tuple[str, Any], set[int]] = defaultdict(set)
    for mid in at_sink:
        row = by_id.get(mid)
        reasons[(row.template_type, row.message_metadata.get("session_id")) if row else ("unknown", mid)].add(mid)
    duplicates = sum(1 for ids in reasons.values() if len(ids) > 1)
    resent = sum(count - 1 for count in at_sink.values() if count > 1)
    recovered = all(by_id[mid].status in FINAL for mid in left)

    emit("messages", args.n, "messages", planned_rows=len(rows), replanned_new=len(rows) - args.n)
    emit("sent", len(sent), "messages", at_sink=sum(at_sink.values()), distinct_at_sink=len(at_sink))
    emit("workers", 2, "workers", worker_limit=1, runs_on=runs_on)
    emit("lost", len(lost_sent) + len(unaccounted), "messages", target=0, sent_not_at_sink=len(lost_sent),
         not_final=len(unaccounted))
    emit("duplicates", duplicates, "reasons", target=0, unknown_message_ids=at_sink.get(None, 0))
    emit("resent_same_message_id", resent, "messages", claims_left_by_kill=len(left), mid_batch=bool(left),
         lease_s=args.lease)
    emit("crashed_runs_recovered", int(recovered), "runs", baseline="killed_runs",
         killed_runs=1, ratio=float(recovered), crashed_after_s=round(crashed_after, 1),
         claims_recovered_after_s=round(recovered_after, 1), heartbeat_s=config.heartbeat_seconds,
         crash_after_s=config.crash_after_seconds)
    (one_rate, one_count, one_windows), (two_rate, two_count, two_windows) = rates["one"], rates["two"]
    emit("throughput_1_worker_msgs_per_s", round(one_rate, 1), "msg/s", messages=one_count, windows=one_windows,
         window_s=round(window, 2), **cpu.figures("one", one_count))
    emit("throughput_2_workers_msgs_per_s", round(two_rate, 1), "msg/s", messages=two_count, windows=two_windows,
         window_s=round(window, 2), **cpu.figures("two", two_count))
    ratio = round(two_rate / one_rate, 3) if one_rate else None
    emit("throughput_2_workers_over_1", ratio, "ratio", baseline="throughput_1_worker_msgs_per_s", ratio=ratio)
    emit("elapsed_s", round(time.monotonic() - started, 1), "s", target_s=1200)


if __name__ == "__main__":
    main()
