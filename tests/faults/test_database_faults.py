"""PostgreSQL ends delivery's connection in the middle of a transaction (pg_terminate_backend from another
connection): the run fails with an error the task retries, a later run finishes the queue, nothing lost or doubled."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from db import outbox
from tasks.deliver import deliver_batch
from tasks.retry import DATABASE_DOWN
from tutormax.settings import get_settings

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def kill_backend(db_url):
    """kill_backend(session): terminate the PostgreSQL backend serving this session, from another connection."""
    engine = create_engine(db_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def kill(session) -> int:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        return pid

    yield kill
    engine.dispose()


def test_a_connection_killed_while_claiming_claims_nothing_and_a_rerun_sends_everything(
        smtp_server, fill, db_url, now, monkeypatch, audit, held_claims, kill_backend):
    """The claim's UPDATE has run, uncommitted, when the connection dies: it rolls back, nothing is sent."""
    fill([f"r{i}@example.com" for i in range(60)])
    claim, killed = outbox.claim, []

    def claim_then_die(session, *args, **kwargs):
        claimed = claim(session, *args, **kwargs)
        if not killed:
            killed.append((kill_backend(session), len(claimed)))
        return claimed

    monkeypatch.setattr(outbox, "claim", claim_then_die)
    with pytest.raises(DATABASE_DOWN):
        deliver_batch.fn(now=now)
    assert killed and killed[0][1] == 60
    assert smtp_server.received == []
    assert held_claims(db_url) == {}  # the claim died with its transaction

    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 60, "sent": 60}
    result = audit(db_url, smtp_server)
    assert result.statuses == {"sent": 60}
    assert result.resent == {}


def test_a_connection_killed_before_outcomes_commit_resends_only_those_after_the_lease(
        smtp_server, fill, db_url, now, monkeypatch, audit, accepted, held_claims, age_claims, kill_backend):
    """The first group of outcomes is written, uncommitted, when the connection dies: those messages went out but
    their record is lost. They keep their claim until the lease runs out; then they, and only they (with any
    message in flight when the batch stopped), go again under the same Message-ID."""
    smtp_server.stall_data = 0.002  # several groups of outcomes in one batch
    fill([f"r{i}@example.com" for i in range(120)])
    record, lost = outbox.record, []

    def record_then_die(session, outcomes):
        record(session, outcomes)
        if not lost:
            lost.extend(o.message_id for o in outcomes)
            kill_backend(session)

    monkeypatch.setattr(outbox, "record", record_then_die)
    with pytest.raises(DATABASE_DOWN):
        deliver_batch.fn(now=now)
    held = held_claims(db_url)
    at_failure = accepted(smtp_server)
    assert lost and set(lost) <= set(held)
    assert set(lost) <= set(at_failure)  # the server has them; the database does not know

    # the claims hold until the lease runs out: a run now sends only what the failed one released
    deliver_batch.fn(now=now)
    assert held_claims(db_url) == held
    age_claims(db_url, get_settings().claim_lease_seconds + 1)
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": len(held), "sent": len(held)}

    result = audit(db_url, smtp_server)
    window = set(held) & set(at_failure)
    report = (f"{len(lost)} outcomes lost with the connection, {len(held)} claims held after the failure, "
              f"{len(window)} of them accepted by the server; resent under the same Message-ID: {len(result.resent)}")
    assert result.statuses == {"sent": 120}, report
    assert set(result.resent) == window, report
    assert set(result.resent.values()) == {1}, report
