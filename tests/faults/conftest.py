"""Fault-suite fixtures: the audit every scenario ends with, delivery processes to start and kill, claim ageing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256
from pathlib import Path

import pytest
from sqlalchemy import select, update

from db.models import EmailMessage
from db.session import transaction
from tutormax.settings import PROJECT_ROOT

_MESSAGE_ID = re.compile(rb"^Message-ID: <([0-9]+)\.([0-9a-f]{16})@[^>]+>", re.MULTILINE | re.IGNORECASE)
FINAL = {"sent", "failed", "skipped"}


@dataclass(frozen=True)
class Audit:
    """What the database and the SMTP server agree on, after every invariant held."""

    statuses: Counter[str]         # messages by final status
    copies: int                    # messages the server accepted, resends included
    resent: dict[int, int]         # message id -> copies beyond the first (always under the same Message-ID)


def sink_copies(handler) -> list[tuple[str, int, str]]:
    """Each message the server accepted, as (recipient, our message id, Message-ID digest), in arrival order."""
    out = []
    for recipients, raw in list(handler.received):
        match = _MESSAGE_ID.search(raw)
        assert match is not None, f"a message without our Message-ID reached the server: {raw[:300]!r}"
        (recipient,) = recipients
        out.append((recipient.lower(), int(match.group(1)), match.group(2).decode()))
    return out


def _audit(url: str, handler) -> Audit:
    with transaction(url) as s:
        rows = s.execute(select(EmailMessage.message_id, EmailMessage.idempotency_key, EmailMessage.recipient_email,
                                EmailMessage.status, EmailMessage.skip_reason, EmailMessage.failure_reason)).all()
    by_id = {r.message_id: r for r in rows}
    unfinished = [(r.message_id, r.status) for r in rows if r.status not in FINAL]
    assert not unfinished, f"messages neither sent nor final: {unfinished[:20]} ({len(unfinished)})"
    no_reason = [r.message_id for r in rows if (r.status == "failed" and not r.failure_reason)
                 or (r.status == "skipped" and not r.skip_reason)]
    assert not no_reason, f"final without a reason: {no_reason[:20]}"

    copies = sink_copies(handler)
    ids_by_recipient: dict[str, set[int]] = defaultdict(set)
    for recipient, mid, digest in copies:
        row = by_id.get(mid)
        assert row is not None, f"the server accepted message {mid}, which the database does not have"
        assert digest == sha256(row.idempotency_key.encode()).hexdigest()[:16], f"message {mid}: Message-ID not its own"
        assert recipient == (row.recipient_email or "").lower(), f"message {mid} went to {recipient}"
        ids_by_recipient[recipient].add(mid)
    two_ids = {r: ids for r, ids in ids_by_recipient.items() if len(ids) > 1}
    assert not two_ids, f"recipients with two different Message-IDs (duplicates): {two_ids}"

    at_server = Counter(mid for _, mid, _ in copies)
    sent_rows = {r.message_id for r in rows if r.status == "sent"}
    assert set(at_server) == sent_rows, (
        f"server and database disagree: {len(at_server)} distinct Message-IDs accepted, {len(sent_rows)} sent rows; "
        f"accepted but not sent: {sorted(set(at_server) - sent_rows)[:20]}, "
        f"sent but never accepted: {sorted(sent_rows - set(at_server))[:20]}")
    return Audit(Counter(r.status for r in rows), len(copies), {m: n - 1 for m, n in at_server.items() if n > 1})


@pytest.fixture
def audit():
    """audit(db_url, smtp_server): assert every message is sent or final with a reason, that no recipient got
    two Message-IDs and that the server's distinct Message-IDs are the database's sent rows; the figures."""
    return _audit


@pytest.fixture
def fill(db_url, now):
    """fill(addresses): queue a feedback reminder (the enqueue fixture's message) to each address, in one go."""
    from itertools import count

    from db import outbox
    from tasks.email_types import get

    kind, entities = get("feedback_reminder"), count(1)

    def plan(addresses: list[str]) -> None:
        planned = []
        for address in addresses:
            entity = next(entities)
            planned.append(outbox.PlannedMessage(
                workflow_type="feedback_reminder", entity_type="session", entity_id=entity, step="reminder",
                template_type="feedback_reminder", category=kind.category, recipient_type="student",
                recipient_email=address, recipient_name="Sam Student", recipient_id=entity, priority=kind.rank,
                metadata={"session_id": entity, "student_name": "Sam Student", "tutor_name": "Tara Tutor",
                          "subject_name": "Algebra", "session_ended_at": (now - timedelta(hours=30)).isoformat(),
                          "is_parent": False}))
        with transaction(db_url) as s:
            assert outbox.plan(s, planned, now).queued == len(addresses)

    return plan


@pytest.fixture
def accepted():
    """accepted(smtp_server): our message ids the server has accepted, each with how many times."""
    return lambda handler: Counter(mid for _, mid, _ in sink_copies(handler))


@pytest.fixture
def quiet():
    """quiet(smtp_server): wait until the server has accepted nothing new for a moment (a killed client's last
    bytes may still be on their way)."""

    def wait(handler, still: float = 0.3, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        seen = -1
        while len(handler.received) != seen and time.monotonic() < deadline:
            seen = len(handler.received)
            time.sleep(still)

    return wait


@pytest.fixture
def age_claims():
    """age_claims(db_url, seconds): move every held claim that far into the past, as if the wall clock had moved.

    The lease is judged on the wall clock, never on a run's `now`, so a test cannot step past it with `now`;
    this stands in for waiting out DELIVERY_CLAIM_LEASE_SECONDS.
    """

    def age(url: str, seconds: float) -> int:
        with transaction(url) as s:
            held = s.execute(select(EmailMessage.message_id, EmailMessage.claimed_at)
                             .where(EmailMessage.status == "sending")).all()
            for mid, claimed_at in held:
                s.execute(update(EmailMessage).where(EmailMessage.message_id == mid)
                          .values(claimed_at=claimed_at - timedelta(seconds=seconds)))
        return len(held)

    return age


@pytest.fixture
def held_claims():
    """held_claims(db_url): the messages claimed and not finished, as {message id: claim token}."""

    def read(url: str) -> dict[int, str]:
        with transaction(url) as s:
            return dict(s.execute(select(EmailMessage.message_id, EmailMessage.claim_token)
                                  .where(EmailMessage.status == "sending")).all())

    return read


# A delivery process: deliver_batch in a loop (or once), started together with others by a "go" file.
RUNNER = """
import json, sys, time
from datetime import datetime
from pathlib import Path
from tasks.deliver import deliver_batch
from tasks.email_types import get

get("feedback_reminder")  # loads every flow's email types (scipy among the imports): before the start, not in it
now, limit, rounds, sync = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
now = None if now == "-" else datetime.fromisoformat(now)
(sync.parent / (sync.name + ".ready")).touch()
while not (sync.parent / "go").exists():
    time.sleep(0.005)
totals = {}
while True:
    counts = deliver_batch.fn(now=now, limit=limit)["counts"]
    for k, v in counts.items():
        totals[k] = totals.get(k, 0) + v
    if rounds == "once" or counts.get("claimed", 0) == 0:
        break
print(json.dumps(totals))
"""


class Runners:
    """Delivery processes, each in its own process group (a host of its own, as far as a kill goes)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def start(self, now: datetime | None, limit: int, rounds: str = "until-empty") -> subprocess.Popen:
        """Start one runner; it waits for go() before it claims anything."""
        sync = self.folder / f"runner{len(self.procs)}"
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, now.isoformat() if now else "-", str(limit), rounds, str(sync)],
            cwd=PROJECT_ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.procs.append(proc)
        return proc

    def go(self, timeout: float = 60) -> None:
        """Wait until every runner has imported everything, then let them all start at once."""
        deadline = time.monotonic() + timeout
        while not all((self.folder / f"runner{i}.ready").exists() for i in range(len(self.procs))):
            for proc in self.procs:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "runners did not start"
            time.sleep(0.01)
        (self.folder / "go").touch()

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the runner's whole process group, as a dying host would."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def runners(db_url, smtp_server, tmp_path):
    """Start delivery processes against the test's database and SMTP server; any left running are killed."""
    env = {**os.environ, "DATABASE_URL": db_url, "PREFECT_LOGGING_LEVEL": "WARNING"}
    started = Runners(tmp_path, env)
    yield started
    started.stop_all()

