"""Batched opens (db.tracking.OpenRecorder) on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from db.models import EmailMessage, EmailTrackingEvent
from db.session import get_engine, transaction
from db.tracking import _EXECUTE_OPEN_BATCH, OPEN_FIELDS, OpenRecorder, _array_literal

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def sent(enqueue, db_url):
    """sent(n, ago=1h): ids of n messages sent that long before NOW."""

    def make(n: int, ago: timedelta = timedelta(hours=1)) -> list[int]:
        ids = [enqueue(f"reader{i}@example.com") for i in range(n)]
        with transaction(db_url) as s:
            s.execute(update(EmailMessage).where(EmailMessage.message_id.in_(ids))
                      .values(status="sent", sent_at=NOW - ago))
        return ids

    return make


def _open(mid: int, at: datetime = NOW, first_reason=None, late_reason=None, ua="Mozilla/5.0 (X11; Linux x86_64)"):
    return {"mid": mid, "at": at, "soon": at - timedelta(seconds=2), "ua": ua, "ip": "198.51.100.7",
            "first_reason": first_reason, "late_reason": late_reason, "device": "desktop", "browser": "Firefox 120",
            "os": "Linux", "key": uuid.uuid4().hex}


def _events(url):
    with transaction(url) as s:
        return list(s.scalars(select(EmailTrackingEvent).order_by(EmailTrackingEvent.event_id)))


def _counts(url, ids):
    with transaction(url) as s:
        rows = s.execute(select(EmailMessage.message_id, EmailMessage.open_count, EmailMessage.opened_at)
                         .where(EmailMessage.message_id.in_(ids))).all()
    return {r.message_id: (r.open_count, r.opened_at) for r in rows}


def test_a_batch_counts_each_open_once_even_for_the_same_message_twice(db_url, sent):
    a, b = sent(2)
    later = NOW + timedelta(minutes=5)
    opens = [_open(a, later), _open(b), _open(a, NOW)]
    OpenRecorder(get_engine(db_url))(opens)
    assert _counts(db_url, [a, b]) == {a: (2, NOW), b: (1, NOW)}  # opened_at is the earliest open
    events = _events(db_url)
    assert sorted(e.event_key for e in events) == sorted(o["key"] for o in opens)  # the journal's dedup key
    assert sorted((e.message_id, e.event_time) for e in events) == sorted([(a, later), (b, NOW), (a, NOW)])
    assert {(e.event_type, e.ip_address, e.device, e.browser, e.os, e.is_machine) for e in events} == {
        ("opened", "198.51.100.7", "desktop", "Firefox 120", "Linux", False)}


@pytest.mark.parametrize("ua", [
    'Mozilla/5.0 "quoted" \\ back\\slash, {braces}, comma',  # what an array literal treats specially
    "NULL", "", "  padded  ", "Ünïcödé 😀 ✉", "'; DROP TABLE email_messages; --", None])
def test_a_user_agent_is_stored_exactly_as_it_came(db_url, sent, ua):
    a, b = sent(2)
    OpenRecorder(get_engine(db_url))([_open(a, ua=ua), _open(b, ua="plain")])
    assert {e.message_id: e.user_agent for e in _events(db_url)} == {a: ua, b: "plain"}


def test_opens_of_unknown_messages_record_nothing_and_spoil_nothing(db_url, sent):
    (a,) = sent(1)
    OpenRecorder(get_engine(db_url))([_open(987654), _open(a)])
    assert [e.message_id for e in _events(db_url)] == [a]


def test_the_open_rules_keep_their_order_around_too_soon(db_url, sent):
    (fresh,) = sent(1, ago=timedelta(seconds=1))
    (old,) = sent(1)
    OpenRecorder(get_engine(db_url))([
        _open(fresh, first_reason="apple_mpp_user_agent"),  # a rule before "too soon" wins over it
        _open(fresh, late_reason="no_user_agent", ua=None),  # "too soon" wins over a rule after it
        _open(old, late_reason="no_user_agent", ua=None),  # not too soon: the later rule stands
        _open(old),  # human
    ])
    reasons = sorted((e.message_id == fresh, e.machine_reason or "") for e in _events(db_url))
    assert reasons == [(False, ""), (False, "no_user_agent"),
                       (True, "apple_mpp_user_agent"), (True, "too_soon_after_send")]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has no session time zone
def test_times_are_stored_as_utc_whatever_the_session_time_zone(db_url, sent):
    (a,) = sent(1)
    engine = create_engine(db_url, connect_args={"options": "-c timezone=America/New_York"})
    try:
        OpenRecorder(engine)([_open(a)])
    finally:
        engine.dispose()
    (event,) = _events(db_url)
    assert event.event_time == NOW and _counts(db_url, [a])[a] == (1, NOW)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite serializes writers: row-lock order is PostgreSQL's matter
def test_overlapping_batches_from_many_workers_never_deadlock(db_url, sent):
    ids = sent(6)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        engine = create_engine(db_url)
        recorder, rng = OpenRecorder(engine), random.Random(seed)
        try:
            for _ in range(40):
                recorder([_open(mid) for mid in rng.sample(ids, len(ids))])  # every order of the same rows
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert {mid: count for mid, (count, _) in _counts(db_url, ids).items()} == dict.fromkeys(ids, 4 * 40)
    assert len(_events(db_url)) == 4 * 40 * 6


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a server-side disconnect needs a server
def test_a_dropped_connection_fails_that_batch_and_the_next_one_reconnects(db_url, sent):
    (a,) = sent(1)
    recorder = OpenRecorder(get_engine(db_url))
    recorder([_open(a)])
    with get_engine(db_url).connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                           "AND query LIKE 'EXECUTE tutormax_open_batch%'"))
        admin.commit()
    with pytest.raises(OperationalError):
        recorder([_open(a)])
    recorder([_open(a)])
    assert _counts(db_url, [a])[a][0] == 2 and len(_events(db_url)) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a row lock held elsewhere needs a server
def test_a_batch_stuck_behind_a_lock_fails_within_the_timeout(db_url, sent):
    (a,) = sent(1)
    recorder = OpenRecorder(get_engine(db_url), timeout_s=0.3)
    with get_engine(db_url).connect() as other:
        other.execute(text("SELECT 1 FROM email_messages WHERE message_id = :a FOR UPDATE"), {"a": a})
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            recorder([_open(a)])
        assert time.monotonic() - started < 3
        other.rollback()
    recorder([_open(a)])  # the lock gone, the next batch goes through on a fresh connection
    assert _counts(db_url, [a])[a][0] == 1


def test_an_open_that_cannot_be_stored_fails_alone_and_the_rest_of_its_batch_goes_in(db_url, sent):
    a, b = sent(2)
    outcomes = OpenRecorder(get_engine(db_url))([_open(a), {**_open(b), "at": None}, _open(b)])
    assert (outcomes[0], type(outcomes[1]), outcomes[2]) == (None, IntegrityError, None)  # event_time is NOT NULL
    assert sorted(e.message_id for e in _events(db_url)) == sorted([a, b])
    assert {mid: count for mid, (count, _) in _counts(db_url, [a, b]).items()} == {a: 1, b: 1}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite does not enforce VARCHAR lengths
def test_a_value_too_long_for_its_column_fails_only_its_own_open(db_url, sent):
    (a,) = sent(1)
    outcomes = OpenRecorder(get_engine(db_url))([{**_open(a), "ip": "f" * 60}, _open(a)])
    assert isinstance(outcomes[0], DataError) and outcomes[1] is None
    assert "f" * 60 not in str(outcomes[0])  # parameters stay out of errors (and so out of logs)
    assert _counts(db_url, [a])[a][0] == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # the SQLite path keeps no connection
def test_a_write_interrupted_mid_statement_leaves_no_half_used_connection_behind(db_url, sent):
    class Killed(BaseException):
        """Stands in for gevent killing the greenlet inside the driver call."""

    class Dying:
        def execute(self, *args):
            raise Killed

    (a,) = sent(1)
    recorder = OpenRecorder(get_engine(db_url))
    recorder([_open(a)])
    recorder._cursor = Dying()
    with pytest.raises(Killed):
        recorder([_open(a)])
    recorder([_open(a)])  # a fresh connection, not the interrupted one
    assert _counts(db_url, [a])[a][0] == 2


def test_a_batch_finds_its_messages_by_key_even_in_a_small_table_never_analyzed(scratch_pg_database):
    # the generic plan is made once per connection; on a small table without statistics the
    # planner's choice was a full scan of email_messages twice per batch, kept for good
    from db.migrate import upgrade

    url = scratch_pg_database()
    upgrade(url)
    engine = get_engine(url)
    with engine.begin() as conn:
        ids = list(conn.execute(EmailMessage.__table__.insert().returning(EmailMessage.message_id), [
            {"idempotency_key": f"plan:{i}", "recipient_email": f"r{i}@example.com", "recipient_type": "student",
             "template_type": "feedback_reminder", "category": "feedback_reminders", "status": "sent",
             "priority": 2, "sent_at": NOW} for i in range(2000)]).scalars())
    recorder = OpenRecorder(engine)
    opens = [_open(mid) for mid in ids[:9]]
    recorder(opens)
    cursor = recorder._cursor
    cursor.execute("EXPLAIN (FORMAT JSON) " + _EXECUTE_OPEN_BATCH,
                   tuple(_array_literal([o[f] for o in opens]) for f in OPEN_FIELDS))
    plan = cursor.fetchone()[0]

    def scans(node):
        yield node["Node Type"], node.get("Relation Name")
        for child in node.get("Plans", ()):
            yield from scans(child)

    reads = {kind for kind, table in scans(plan[0]["Plan"]) if table == "email_messages" and kind != "ModifyTable"}
    assert reads == {"Index Scan"}
    engine.dispose()
