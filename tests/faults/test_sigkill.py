"""A delivery process SIGKILLed in the middle of a batch, and delivery run again: nothing lost, no second Message-ID."""

from __future__ import annotations

import time

from tasks.deliver import deliver_batch
from tutormax.settings import get_settings

LEASE = 60  # seconds, DELIVERY_CLAIM_LEASE_SECONDS: the claims are aged by hand, never waited out


def test_a_process_killed_mid_batch_loses_nothing_and_resends_only_its_held_claims(
        runners, smtp_server, fill, db_url, now, monkeypatch, audit, accepted, quiet, held_claims, age_claims):
    """150 messages; a process claims 100 in one batch and its process group is SIGKILLed after the server has
    taken 40. Its claims stay put until the lease runs out, then the next run sends them.

    The only resends allowed are the claims the process held at the kill whose message the server had
    already accepted (the outcome not yet committed), and they carry the same Message-ID.
    """
    monkeypatch.setenv("DELIVERY_CLAIM_LEASE_SECONDS", str(LEASE))
    get_settings.cache_clear()
    runners.env["DELIVERY_CLAIM_LEASE_SECONDS"] = str(LEASE)
    victim = runners.start(now, limit=100, rounds="once")  # it imports while the queue fills
    smtp_server.stall_data = 0.01  # a batch of 100 takes a second or more: time to kill it in the middle
    fill([f"r{i}@example.com" for i in range(150)])
    runners.go()
    deadline = time.monotonic() + 60
    while len(smtp_server.received) < 40:
        assert victim.poll() is None, f"the batch ended before the kill: {victim.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the batch never got going"
        time.sleep(0.002)
    runners.kill(victim)
    quiet(smtp_server)
    smtp_server.stall_data = 0

    held = held_claims(db_url)
    at_kill = accepted(smtp_server)
    in_flight_window = set(held) & set(at_kill)  # accepted by the server, outcome not committed
    assert 0 < len(held) < 100, held
    assert len(set(held.values())) == 1  # one batch's claim

    # before the lease runs out, nobody takes the dead process's claims: only the 50 it never claimed go
    get_settings.cache_clear()
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 50, "sent": 50}
    assert age_claims(db_url, LEASE / 2) == len(held)
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 0}
    assert held_claims(db_url) == held

    # past the lease, the next run takes them all
    age_claims(db_url, LEASE / 2 + 1)
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": len(held), "sent": len(held)}

    result = audit(db_url, smtp_server)
    report = (f"{len(held)} claims held at the kill, {len(in_flight_window)} of them already accepted by the "
              f"server; resent under the same Message-ID: {len(result.resent)}")
    assert result.statuses == {"sent": 150}, report
    assert set(result.resent) == in_flight_window, report
    assert set(result.resent.values()) <= {1}, report
