"""Delivery against a real SMTP server: each outcome, reconnects, bad recipients, a dead server."""

from __future__ import annotations

import email
import re
import time
from datetime import timedelta
from email import policy
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from db.models import EmailMessage, EmailPreference, EmailTrackingEvent
from db.session import transaction
from tasks.deliver import ServerDown, deliver_batch
from tutormax.links import Links
from tutormax.settings import get_settings
from tutormax.tokens import Purpose, Signer


@pytest.fixture(params=["pipelining", "lockstep"])
def smtp(request, smtp_server):
    """The fault-injecting server, with and without PIPELINING: both ways the client talks."""
    smtp_server.pipelining = request.param == "pipelining"
    return smtp_server


def _by_id(url, message_id):
    with transaction(url) as s:
        return s.get(EmailMessage, message_id)


def _events(url, message_id):
    with transaction(url) as s:
        return [e.event_type for e in s.scalars(select(EmailTrackingEvent).where(
            EmailTrackingEvent.message_id == message_id).order_by(EmailTrackingEvent.event_id))]


def test_2xx_is_sent_as_multipart_alternative_with_list_headers(smtp, enqueue, db_url, now):
    mid = enqueue("sam@example.com", "Sam O'Neil")
    result = deliver_batch.fn(now=now)
    assert result["counts"] == {"claimed": 1, "sent": 1}

    message = _by_id(db_url, mid)
    assert (message.status, message.sent_at, message.retry_count) == ("sent", now, 0)
    assert message.subject == "How was your Algebra session with Tara Tutor?"
    assert _events(db_url, mid) == ["sent"]

    ((rcpts, raw),) = smtp.received
    assert rcpts == ["sam@example.com"]
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Subject"] == message.subject
    assert parsed["To"] == "Sam O'Neil <sam@example.com>"
    assert parsed["Message-ID"].startswith(f"<{mid}.")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = Links(get_settings())
    assert parsed["List-Unsubscribe"] == f"<{links.unsubscribe(mid)}>"  # a token, never the address
    assert parsed["List-ID"] == "<feedback-reminder.tutormax.example>"
    html = parsed.get_body(("html",)).get_content()
    assert 'style="' in html  # CSS inlined for Gmail
    text = parsed.get_body(("plain",)).get_content()
    assert "Tara Tutor" in text and "30 hours" in text
    # every link is tracked but unsubscribe and preferences; the pixel is in the HTML only
    signer = Signer(get_settings().secret_bytes())
    hrefs = re.findall(r'href="(https?://[^"]+)"', html)
    assert {h.split("/")[3] for h in hrefs} == {"c", "u", "p"}
    targets = {signer.verify(Purpose.CLICK, h.rsplit("/", 1)[1]).extra.decode() for h in hrefs if "/c/" in h}
    assert targets == {f"feedback_cta\n{links.feedback(mid)}",
                       "footer_support\nhttps://track.tutormax.example/help"}
    assert re.search(r'<img src="https://track.tutormax.example/o/[\w-]+\.gif"', html)
    text_urls = re.findall(r"https?://\S+", text)
    assert {u.split("/")[3] for u in text_urls} == {"c", "u", "p"}


def test_message_id_is_stable_across_resends(smtp_server, enqueue, db_url, now):
    mid = enqueue("sam@example.com")
    deliver_batch.fn(now=now)
    with transaction(db_url) as s:  # the commit after SMTP accepted it was "lost"
        s.get(EmailMessage, mid).status = "queued"
    deliver_batch.fn(now=now)
    first, second = (email.message_from_bytes(raw)["Message-ID"] for _, raw in smtp_server.received)
    assert first == second


def test_4xx_defers_with_exponential_backoff_then_fails(smtp, enqueue, db_url, now):
    smtp.faults["busy@example.com"] = "defer"
    mid = enqueue("busy@example.com")

    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, "deferred": 1}
    message = _by_id(db_url, mid)
    assert (message.status, message.retry_count, message.next_attempt_at) == ("deferred", 1, now + timedelta(seconds=60))

    # not due yet at +59 s
    assert deliver_batch.fn(now=now + timedelta(seconds=59))["counts"] == {"claimed": 0}
    t = now + timedelta(seconds=60)
    assert deliver_batch.fn(now=t)["counts"]["deferred"] == 1
    assert _by_id(db_url, mid).next_attempt_at == t + timedelta(seconds=120)
    t += timedelta(seconds=120)
    deliver_batch.fn(now=t)
    assert _by_id(db_url, mid).next_attempt_at == t + timedelta(seconds=240)
    t += timedelta(seconds=240)
    assert deliver_batch.fn(now=t)["counts"] == {"claimed": 1, "failed": 1}
    message = _by_id(db_url, mid)
    assert (message.status, message.retry_count, message.failure_reason) == (
        "failed", 3, "gave up after 3 retries; last answer 451 4.2.1 Mailbox temporarily unavailable")
    assert _events(db_url, mid) == ["deferred", "deferred", "deferred", "failed"]
    assert smtp.received == []


def test_4xx_then_accepted_on_retry(smtp, enqueue, db_url, now):
    smtp.faults["busy@example.com"] = "defer"
    mid = enqueue("busy@example.com")
    deliver_batch.fn(now=now)
    del smtp.faults["busy@example.com"]
    assert deliver_batch.fn(now=now + timedelta(seconds=61))["counts"] == {"claimed": 1, "sent": 1}
    assert _by_id(db_url, mid).status == "sent"
    assert len(smtp.received) == 1


def _suppressions(url):
    from db.models import EmailSuppression

    with transaction(url) as s:
        return [(x.email, x.reason, x.source, x.detail, x.message_id) for x in s.scalars(select(EmailSuppression))]


def _suppressed(url):
    with transaction(url) as s:
        return sorted(s.scalars(select(EmailPreference.email).where(EmailPreference.suppressed)))


def test_an_unknown_address_is_a_hard_bounce_and_suppresses_the_address(smtp, enqueue, db_url, now):
    smtp.faults["gone@example.com"] = "bounce"
    mid = enqueue("Gone@Example.com")
    ok = enqueue("fine@example.com")
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 2, "bounced": 1, "sent": 1}
    message = _by_id(db_url, mid)
    assert (message.status, message.bounce_type) == ("failed", "hard")
    assert message.bounce_reason == "550 5.1.1 No such user"
    assert _by_id(db_url, ok).status == "sent"
    assert _suppressed(db_url) == ["gone@example.com"]
    assert _suppressions(db_url) == [("gone@example.com", "hard_bounce", "smtp", "550 5.1.1 No such user", mid)]
    # never retried
    assert deliver_batch.fn(now=now + timedelta(hours=1))["counts"] == {"claimed": 0}


def test_a_server_that_answers_500_to_every_message_suppresses_no_one_and_stops_the_batch(smtp, enqueue, db_url,
                                                                                        now):
    """The sink with a broken Maildir answered every DATA with 500: that is the server's trouble, not the addresses'."""
    from tasks.deliver import TROUBLE_IN_A_ROW, ServerTrouble

    smtp.data_reply = "500 Error: (FileNotFoundError) [Errno 2] No such file or directory"
    ids = [enqueue(f"real{i}@example.com") for i in range(TROUBLE_IN_A_ROW + 3)]
    with pytest.raises(ServerTrouble) as stopped:
        deliver_batch.fn(now=now)
    # the rule, never a recipient (500 has no enhanced status: hence the empty one)
    assert str(stopped.value) == (f"{TROUBLE_IN_A_ROW} answers in a row blamed the SMTP server, the last 500  "
                                  "(500-504: the server did not take our command)")
    statuses = [_by_id(db_url, i).status for i in ids]
    # the first five were deferred (a retry later), the rest went back to the queue untouched
    assert statuses == ["deferred"] * TROUBLE_IN_A_ROW + ["queued"] * 3
    assert _suppressed(db_url) == [] and _suppressions(db_url) == []
    assert {_events(db_url, i)[0] for i in ids[:TROUBLE_IN_A_ROW]} == {"deferred"}


def test_trouble_between_good_answers_does_not_stop_the_batch(smtp, enqueue, db_url, now):
    for i in (1, 3):
        smtp.replies[f"r{i}@example.com"] = ("data", "554 5.3.0 Mail system temporarily unavailable")
    ids = [enqueue(f"r{i}@example.com") for i in range(5)]
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 5, "sent": 3, "deferred": 2}
    assert [_by_id(db_url, i).status for i in ids] == ["sent", "deferred", "sent", "deferred", "sent"]


@pytest.mark.parametrize(("stage", "answer", "kind", "event"), [
    ("rcpt", "550 5.7.1 Service unavailable, Client host [192.0.2.10] blocked using Spamhaus", "blocked", "rejected"),
    ("data", "550 5.7.26 This mail has been blocked because the sender is unauthenticated", "blocked", "rejected"),
    ("data", "552 5.3.4 Message size exceeds fixed limit", "failed", "failed"),
    ("data", "554 5.6.0 Message exceeded 50 hops, this may indicate a mail loop", "failed", "failed"),
])
def test_a_refusal_that_is_not_about_the_address_fails_the_message_and_keeps_the_address(
        smtp, enqueue, db_url, now, stage, answer, kind, event):
    smtp.replies["kept@example.com"] = (stage, answer)
    mid = enqueue("kept@example.com")
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, kind: 1}
    message = _by_id(db_url, mid)
    assert (message.status, message.failure_reason, message.bounced_at) == ("failed", answer, None)
    assert message.bounce_type == ("blocked" if kind == "blocked" else None)
    assert _events(db_url, mid) == [event]
    assert _suppressed(db_url) == [] and _suppressions(db_url) == []
    assert deliver_batch.fn(now=now + timedelta(hours=1))["counts"] == {"claimed": 0}


def test_a_full_mailbox_is_deferred(smtp, enqueue, db_url, now):
    smtp.replies["full@example.com"] = ("rcpt", "552 5.2.2 The email account that you tried to reach is over quota")
    mid = enqueue("full@example.com")
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, "deferred": 1}
    assert (_by_id(db_url, mid).status, _suppressed(db_url)) == ("deferred", [])


def test_a_421_defers_its_message_and_the_next_one_goes_on_a_new_connection(smtp, enqueue, db_url, now):
    smtp.replies["closing@example.com"] = ("rcpt", "421 4.7.0 Try again later, closing connection.")
    first, second = enqueue("closing@example.com"), enqueue("next@example.com")
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 2, "deferred": 1, "sent": 1}
    assert (_by_id(db_url, first).status, _by_id(db_url, second).status) == ("deferred", "sent")
    assert _by_id(db_url, first).smtp_response == "421 4.7.0 Try again later, closing connection."
    assert [r[0] for r in smtp.received] == [["next@example.com"]]


def test_dropped_connection_reconnects_and_the_batch_resumes(smtp, enqueue, db_url, now):
    ids = [enqueue(f"r{i}@example.com") for i in range(5)]
    smtp.faults["r2@example.com"] = "drop_once"
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 5, "sent": 5}
    assert smtp.dropped == ["r2@example.com"]
    assert sorted(r[0][0] for r in smtp.received) == [f"r{i}@example.com" for i in range(5)]
    assert {_by_id(db_url, i).status for i in ids} == {"sent"}


def test_a_message_the_server_keeps_dropping_waits_and_the_batch_goes_on(smtp, enqueue, db_url, now):
    first, stuck, last = enqueue("a@example.com"), enqueue("b@example.com"), enqueue("c@example.com")
    smtp.faults["b@example.com"] = "drop"
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 3, "sent": 2, "deferred": 1}
    assert (_by_id(db_url, first).status, _by_id(db_url, last).status) == ("sent", "sent")
    message = _by_id(db_url, stuck)
    assert (message.status, message.retry_count, message.bounce_reason) == ("deferred", 1, None)
    assert message.smtp_response.startswith("451 4.4.2 the connection dropped at this message")


def test_a_server_that_drops_every_message_stops_the_batch(smtp, enqueue, db_url, now):
    from tasks.deliver import TROUBLE_IN_A_ROW, ServerTrouble

    ids = [enqueue(f"r{i}@example.com") for i in range(TROUBLE_IN_A_ROW + 3)]
    for i in range(len(ids)):
        smtp.faults[f"r{i}@example.com"] = "drop"
    with pytest.raises(ServerTrouble, match="answers in a row blamed the SMTP server"):
        deliver_batch.fn(now=now)
    statuses = [_by_id(db_url, mid).status for mid in ids]
    assert statuses == ["deferred"] * TROUBLE_IN_A_ROW + ["queued"] * 3  # the rest back in the queue, untouched


def test_dead_server_leaves_messages_queued(dead_smtp, enqueue, db_url, now):
    mid = enqueue("a@example.com")
    with pytest.raises(ServerDown) as err:
        deliver_batch.fn(now=now)
    assert str(err.value) == (f"cannot reach SMTP server 127.0.0.1:{dead_smtp}: "
                              "ConnectionRefusedError: [Errno 111] Connection refused")
    message = _by_id(db_url, mid)
    assert (message.status, message.claim_token) == ("queued", None)


@pytest.mark.parametrize(
    ("address", "name", "reason"),
    [
        ("not-an-address", "Sam", "invalid recipient address: An email address must have an @-sign."),
        ("sam@example.com", "Sam\r\nBcc: victim@example.com",
         "recipient name contains a line break (header injection)"),
        ("sam@example.com\r\nBcc: victim@example.com", "Sam", "recipient address contains a line break"),
        (None, "Sam", "no recipient address"),
    ],
)
def test_bad_recipient_fails_that_message_and_the_batch_goes_on(smtp, enqueue, db_url, now, address, name, reason):
    bad = enqueue(address, name)
    good = enqueue("good@example.com")
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 2, "failed": 1, "sent": 1}
    message = _by_id(db_url, bad)
    assert (message.status, message.failure_reason) == ("failed", reason)
    assert _by_id(db_url, good).status == "sent"
    assert [r[0] for r in smtp.received] == [["good@example.com"]]
    assert b"victim" not in smtp.received[0][1]


def test_a_refused_sender_defers_each_message_and_the_session_recovers(smtp, enqueue, db_url, now):
    ids = [enqueue(f"s{i}@example.com") for i in range(3)]
    smtp.sender_reply = "451 4.3.0 Sender temporarily rejected"
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 3, "deferred": 3}
    assert smtp.received == []
    assert {_by_id(db_url, i).smtp_response for i in ids} == {"451 4.3.0 Sender temporarily rejected"}
    smtp.sender_reply = None
    assert deliver_batch.fn(now=now + timedelta(minutes=2))["counts"] == {"claimed": 3, "sent": 3}
    assert sorted(r[0][0] for r in smtp.received) == [f"s{i}@example.com" for i in range(3)]


def test_lines_starting_with_a_dot_arrive_intact(smtp):
    # RFC 5321 4.5.2: a content line that starts with "." goes with the dot doubled; the server takes one off
    from tasks.deliver import SmtpConnection
    from tasks.mime import Envelope

    data = b".first\r\nSubject: dots\r\n\r\n.hidden line\r\n..two\r\n.\r\nend"
    with SmtpConnection(get_settings()) as connection:
        result = connection.send(Envelope(1, "noreply@tutormax.example", "dot@example.com", data))
        assert result.verdict == "sent"
        assert connection.send(Envelope(2, "noreply@tutormax.example", "next@example.com", b"Subject: x\r\n\r\nok\r\n")).code == 250
    assert smtp.received[0][1].replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n") + b"\n"
    assert [r[0] for r in smtp.received] == [["dot@example.com"], ["next@example.com"]]


def test_the_client_pipelines_when_the_server_offers_it(smtp_server):
    from tasks.deliver import SmtpConnection

    with SmtpConnection(get_settings()) as connection:
        assert connection.pipelining is True
    smtp_server.pipelining = False
    with SmtpConnection(get_settings()) as connection:
        assert connection.pipelining is False


def _workflow_status(url, message_id):
    from db.models import EmailWorkflowState

    with transaction(url) as s:
        return s.scalar(select(EmailWorkflowState.status).where(EmailWorkflowState.message_id == message_id))


def test_a_retry_is_not_sent_to_someone_who_unsubscribed_meanwhile(smtp, enqueue, db_url, now):
    from db import tracking

    smtp.faults["busy@example.com"] = "defer"
    mid = enqueue("busy@example.com")
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, "deferred": 1}
    del smtp.faults["busy@example.com"]
    with transaction(db_url) as s:  # the recipient presses unsubscribe in the first message's copy
        tracking.set_preferences(s, "Busy@Example.com", {"unsubscribed_all": True}, now)
    retry = deliver_batch.fn(now=now + timedelta(minutes=2))
    assert retry["counts"] == {"claimed": 1, "withdrawn": 1}
    message = _by_id(db_url, mid)
    assert (message.status, message.skip_reason, message.claim_token) == ("skipped", "unsubscribed_all", None)
    assert _workflow_status(db_url, mid) == "cancelled"
    assert [rcpts for rcpts, _ in smtp.received] == []


def test_a_queued_message_honours_a_category_opt_out_made_after_it_was_planned(smtp, enqueue, db_url, now):
    from db import tracking

    opted, other = enqueue("opted@example.com"), enqueue("other@example.com")
    with transaction(db_url) as s:
        tracking.set_preferences(s, "opted@example.com", {"feedback_reminders": False, "weekly_digests": True}, now)
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 2, "withdrawn": 1, "sent": 1}
    assert _by_id(db_url, opted).skip_reason == "category_opt_out" and _by_id(db_url, other).status == "sent"
    assert [rcpts for rcpts, _ in smtp.received] == [["other@example.com"]]


def test_a_feedback_request_is_not_sent_once_the_session_has_its_feedback(smtp, enqueue, platform, db_url, now):
    from db import tracking

    student = platform.student()
    session_id = platform.session(platform.tutor(), student, ended_ago=timedelta(hours=30))
    mid = enqueue("sam@example.com", entity_id=session_id)
    with transaction(db_url) as s:  # given from an earlier email's link before this one went out
        tracking.record_feedback(s, session_id=session_id, student_id=student, rating=5, comment=None,
                                 message_id=mid, at=now)
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, "withdrawn": 1}
    assert (_by_id(db_url, mid).status, _by_id(db_url, mid).skip_reason) == ("skipped", "feedback_given")
    assert smtp.received == []


def test_the_smtp_timeout_bounds_every_read(smtp_server, enqueue, db_url, now, monkeypatch):
    """A server that sits on a message answers nobody: each wait ends after SMTP_TIMEOUT, then the message waits."""
    monkeypatch.setenv("SMTP_TIMEOUT", "0.5")
    get_settings.cache_clear()
    smtp_server.stall_data = 5
    mid = enqueue("slow@example.com")
    started = time.monotonic()
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, "deferred": 1}
    # three tries, each waiting SMTP_TIMEOUT for the answer (and a reconnect between them)
    assert 1.5 <= time.monotonic() - started < 4
    message = _by_id(db_url, mid)
    assert (message.status, message.retry_count) == ("deferred", 1)
    assert message.smtp_response.startswith("451 4.4.2 the connection dropped at this message")
    assert "timed out" in message.smtp_response and message.bounce_reason is None  # the address is not to blame


@pytest.mark.parametrize(("answers", "waits"), [
    (["250 2.0.0 OK"], []),
    (["421 4.7.0 Try again later"], [0.3]),
    (["451 4.7.500 Server busy"], [0.3]),
    (["421 4.7.0 Try again later", "451 4.7.500 Server busy"], [0.9]),
    (["451 4.3.0 Temporary failure"], []),
])
def test_a_slow_down_answer_halves_the_pace_for_the_rest_of_the_batch(monkeypatch, answers, waits):
    from tasks import deliver
    from tasks.smtp_replies import Stage, classify

    slept = []
    monkeypatch.setattr(deliver.time, "sleep", slept.append)
    pace = deliver.Pace()
    for answer in answers:
        code, text = answer.split(" ", 1)
        pace.heard(classify(int(code), text, Stage.DATA))
    pace.rest(0.3, None)  # a chunk that took 0.3 s
    assert slept == pytest.approx(waits)


@pytest.mark.parametrize("bounce_address", ["", "bounces@bounce.tutormax.example"])
def test_the_envelope_sender_names_the_message_when_bounce_address_is_set(smtp, enqueue, now, monkeypatch,
                                                                          bounce_address):
    from tutormax.verp import Verp

    monkeypatch.setenv("BOUNCE_ADDRESS", bounce_address)
    get_settings.cache_clear()
    mid = enqueue("sam@example.com")
    deliver_batch.fn(now=now)
    (sender,) = smtp.senders
    parsed = email.message_from_bytes(smtp.received[0][1], policy=policy.default)
    assert parsed["From"] == "TutorMax <noreply@tutormax.example>" and parsed["Reply-To"] is None
    if bounce_address:
        assert Verp(bounce_address, get_settings().secret_bytes()).message_id(sender) == mid
        assert sender.startswith("bounces+") and sender.endswith("@bounce.tutormax.example")
    else:
        assert sender == "noreply@tutormax.example"


def test_outcomes_wait_for_a_commit_in_small_groups_so_a_crash_loses_few_records(monkeypatch):
    """Group commit: a group is as big as the last commit was slow, but the sender never runs further ahead
    than MAX_PENDING outcomes plus the group being committed (what a SIGKILL would send a second time)."""
    import threading

    from tasks import deliver
    from tasks.deliver import OutcomeLog

    committed: list[int] = []
    unrecorded_seen: list[int] = []
    added = 0
    lock = threading.Lock()

    def slow_write(outcomes):
        time.sleep(0.02)  # a slow database: 20 ms a commit
        with lock:
            committed.extend(o.message_id for o in outcomes)

    monkeypatch.setattr(deliver.OutcomeLog, "_write_group", staticmethod(slow_write))
    log = OutcomeLog()
    for i in range(300):
        log.add(SimpleNamespace(message_id=i), "sent")
        added += 1
        with lock:
            unrecorded_seen.append(added - len(committed))
    log.close()
    assert sorted(committed) == list(range(300))  # nothing lost, nothing twice
    assert max(unrecorded_seen) <= 2 * OutcomeLog.MAX_PENDING
    assert max(unrecorded_seen) > OutcomeLog.MIN_GROUP  # the commits were slow enough for groups to form


def test_a_failed_commit_stops_the_sender_at_the_next_group(monkeypatch):
    from tasks import deliver
    from tasks.deliver import OutcomeLog

    def broken(outcomes):
        raise RuntimeError("database gone")

    monkeypatch.setattr(deliver.OutcomeLog, "_write_group", staticmethod(broken))
    log = OutcomeLog()
    with pytest.raises(RuntimeError, match="database gone"):
        for i in range(3 * OutcomeLog.MAX_PENDING):
            log.add(SimpleNamespace(message_id=i), "sent")
    assert log.pending  # kept: _salvage logs how many went unrecorded
