"""Bounce-mailbox reports, read: each real format gives its exact ParsedReport, garbage never raises."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.bounce_parse import DIAGNOSTIC_MAX, KINDS, ParsedReport, RecipientResult, parse
from tutormax.verp import Verp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
BOUNCE_ADDRESS = "bounces@bounce.tutormax.example"
SECRET = b"test-secret-key"
VERP = Verp(BOUNCE_ADDRESS, SECRET)
# the fixtures carry message 42's tag as the codec makes it with SECRET (checked below) and our Message-ID
VERP_42 = "bounces+aaaaaaaaaaacuu4joaquj2hn7pfrk@bounce.tutormax.example"
OURS = "<42.0123456789abcdef@tutormax.example>"
DOMAIN = "tutormax.example"


def _raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _parse(raw: bytes, verp: Verp | None = VERP) -> ParsedReport:
    return parse(raw, verp, DOMAIN)


def _failed(address: str, kind: str, status: str | None, diagnostic: str | None) -> RecipientResult:
    return RecipientResult(address, kind, "failed", status, diagnostic)


EXPECTED = {
    "postfix_user_unknown.eml": ParsedReport(
        "hard", (_failed("nosuchuser@example.net", "hard", "5.1.1", "550 5.1.1 <nosuchuser@example.net>: Recipient "
                         "address rejected: User unknown in virtual mailbox table"),),
        42, OURS, "<20261119103005.4Xk2Ln1Rq4z1yzA@mx1.example.net>", "dsn"),
    # Exim's Status says only 5.0.0 and the remote Exim only "550 Unrouteable address": the words decide
    "exim_unrouteable.eml": ParsedReport(
        "hard", (_failed("gone@example.org", "hard", "5.0.0", "550 Unrouteable address"),),
        42, OURS, "<E1vLq39-0001Cd-1x@mail.example.org>", "dsn"),
    "microsoft365_recipient_not_found.eml": ParsedReport(
        "hard", (_failed("alex.doe@contoso.com", "hard", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
                         "Recipient not found by SMTP address lookup"),),
        42, OURS, "<8f2c1e4a-3b7d-4c9e-a1f0-6d5b2e8c9a71@PH0PR12MB5432.namprd12.prod.outlook.com>", "dsn"),
    # Gmail's multi-line reply, read as one answer: the repeated "550-5.1.1" of each line dropped
    "gmail_no_such_user.eml": ParsedReport(
        "hard", (_failed("jamie.nosuch@gmail.com", "hard", "5.1.1",
                         "550 5.1.1 The email account that you tried to reach does not exist. Please try "
                         "double-checking the recipient's email address for typos or unnecessary spaces. For more "
                         "information, go to https://support.google.com/mail/?p=NoSuchUser "
                         "41be03b00d2f7-7f1a2b3c4d5sor1234567a.12 - gsmtp"),),
        42, OURS, "<6734c1e2.050a0220.3b7c1f.0a12.GMR@mx.google.com>", "dsn"),
    "postfix_delayed.eml": ParsedReport(
        "soft", (RecipientResult("taylor@slowmail.example", "soft", "delayed", "4.4.1",
                                 "connect to mx.slowmail.example[203.0.113.40]:25: Connection timed out"),),
        42, OURS, "<20261119101506.4Xk5Wc6Sb1z3QrT@outbound1.relay.example>", "dsn"),
    # 5.2.2 is a full mailbox even though the server's words say "Recipient address rejected"
    "postfix_mailbox_full.eml": ParsedReport(
        "soft", (_failed("maria.full@example.com", "soft", "5.2.2",
                         "552 5.2.2 <maria.full@example.com> Quota exceeded (mailbox for user is full)"),),
        42, OURS, "<20261119103241.4Xk2Rt2Jw7z3SsU@outbound1.relay.example>", "dsn"),
    # our own relay's Message-ID (smtp-out1.tutormax.example) is not one of our messages' ids
    "postfix_policy_block.eml": ParsedReport(
        "soft", (_failed("pat.lee@example.com", "soft", "5.7.1",
                         "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org; "
                         "https://www.spamhaus.org/query/ip/192.0.2.25"),),
        42, OURS, "<20261119103412.8C1F2A0153@smtp-out1.tutormax.example>", "dsn"),
    # sent to the untagged feedback address: the tag is in Original-Mail-From and the returned Return-Path
    "arf_yahoo_abuse.eml": ParsedReport(
        "complaint", (RecipientResult("sam.student@yahoo.com", "complaint", "", None, None),),
        42, OURS, "<1763626363.5532071.feedback@arf.mail.yahoo.com>", "arf", "abuse"),
    # Pigeonhole's vacation reply names our message in In-Reply-To
    "out_of_office.eml": ParsedReport(
        "auto_reply", (), 42, OURS, "<dovecot-sieve-1763548213-412553-0@imap.example.edu>", "auto_reply"),
    # qmail's bounce has no Message-ID of its own
    "qmail_no_mailbox.eml": ParsedReport(
        "hard", (_failed("casey@oldhost.example", "hard", None, None),),
        42, OURS, "sha256:" + hashlib.sha256(_raw("qmail_no_mailbox.eml")).hexdigest(), "flufl:Qmail"),
    "yahoo_legacy_disabled.eml": ParsedReport(
        "hard", (_failed("morgan.old@yahoo.com", "hard", None, None),),
        42, OURS, "<5Jmq0y2Kv@mta1004.mail.ac4.yahoo.com>", "flufl:Yahoo"),
    "unknown_spam.eml": ParsedReport("unknown", (), None, None, "<20261120030209.77a1c@seo-growth.example>", "none"),
}


def test_the_fixtures_carry_the_tag_the_codec_makes_and_every_fixture_is_checked():
    assert VERP.address(42) == VERP_42
    assert sorted(path.name for path in FIXTURES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_real_report_reads_exactly(name):
    assert _parse(_raw(name)) == EXPECTED[name]


def test_crlf_and_lf_read_alike():
    for name in ("postfix_user_unknown.eml", "gmail_no_such_user.eml", "qmail_no_mailbox.eml"):
        raw = _raw(name)
        lf, crlf = raw.replace(b"\r\n", b"\n"), raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        read_lf, read_crlf = _parse(lf), _parse(crlf)
        assert (read_lf.kind, read_lf.recipients, read_lf.message_id, read_lf.detector) == (
            read_crlf.kind, read_crlf.recipients, read_crlf.message_id, read_crlf.detector) == (
            EXPECTED[name].kind, EXPECTED[name].recipients, 42, EXPECTED[name].detector)


# --- finding our message ----------------------------------------------------------------------------

def _without_verp(raw: bytes) -> bytes:
    return raw.replace(VERP_42.encode(), b"noreply@tutormax.example")


@pytest.mark.parametrize("name", ["postfix_user_unknown.eml", "microsoft365_recipient_not_found.eml",
                                  "qmail_no_mailbox.eml", "out_of_office.eml", "arf_yahoo_abuse.eml"])
def test_our_message_id_alone_finds_the_message(name):
    # in the returned message, its headers part, a plain-text bounce's quoted copy, or In-Reply-To
    raw = _without_verp(_raw(name)).replace(b"<42.0123456789abcdef@", b"<77.0123456789abcdef@")
    report = _parse(raw)
    assert (report.message_id, report.original_message_id) == (77, "<77.0123456789abcdef@tutormax.example>")
    assert _parse(raw, verp=None).message_id == 77


def test_the_verified_tag_wins_over_the_message_id():
    raw = _raw("postfix_user_unknown.eml").replace(b"<42.0123456789abcdef@", b"<77.0123456789abcdef@")
    report = _parse(raw)
    # the caller checks the returned Message-ID against message 42 and sees they differ
    assert (report.message_id, report.original_message_id) == (42, "<77.0123456789abcdef@tutormax.example>")


def test_a_tag_only_in_the_body_or_x_postfix_sender_is_found():
    raw = _raw("postfix_user_unknown.eml").replace(OURS.encode(), b"<foreign-id@example.net>")
    headers, _, body = raw.partition(b"\n\n")
    raw = _without_verp(headers) + b"\n\n" + body.replace(b"Return-Path: <" + VERP_42.encode() + b">", b"")
    assert b"X-Postfix-Sender: rfc822; " + VERP_42.encode() in raw
    report = _parse(raw)
    assert (report.message_id, report.original_message_id) == (42, None)


@pytest.mark.parametrize("forged", [
    Verp(BOUNCE_ADDRESS, b"someone else's secret").address(43),  # a tag made with another key
    VERP_42.replace("joaquj", "joaqvj"),                          # our tag, one letter changed
    Verp("bounces@evil.example", SECRET).address(42),              # our key's tag for another address
])
def test_a_forged_tag_is_ignored(forged):
    raw = _raw("postfix_user_unknown.eml").replace(VERP_42.encode(), forged.encode())
    assert _parse(raw).message_id == 42  # from our Message-ID, not the forged tag
    foreign = raw.replace(OURS.encode(), b"<20261119.9F3A@mail.example.net>")
    assert (_parse(foreign).message_id, _parse(foreign).original_message_id) == (None, None)


def test_a_message_id_of_another_domain_or_shape_is_not_ours():
    raw = _without_verp(_raw("postfix_user_unknown.eml"))
    assert (_parse(raw).message_id, _parse(raw).original_message_id) == (42, OURS)
    other = parse(raw, VERP, "other.example")
    assert (other.message_id, other.original_message_id) == (None, None)
    short = raw.replace(OURS.encode(), b"<42.0123456789abcde@tutormax.example>")  # 15 hex digits
    assert (_parse(short).message_id, _parse(short).original_message_id) == (None, None)


# --- DSNs -----------------------------------------------------------------------------------------

def _dsn(*blocks: str, headers: str = "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n",
         ctype: str = "message/delivery-status") -> bytes:
    body = "\n".join(blocks)
    return (f"{headers}Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
            f"--b\nContent-Type: text/plain\n\nThe mail system\n\n"
            f"--b\nContent-Type: {ctype}\n\nReporting-MTA: dns; mx.example.net\n\n{body}\n--b--\n").encode()


def _block(address: str, action: str, status: str | None = None, diagnostic: str | None = None) -> str:
    lines = [f"Final-Recipient: {address}", f"Action: {action}"]
    lines += [f"Status: {status}"] * (status is not None) + [f"Diagnostic-Code: {diagnostic}"] * (diagnostic is not None)
    return "\n".join(lines) + "\n"


def test_a_report_is_hard_when_any_recipient_is_and_else_its_first_recipients_kind():
    delayed = _block("rfc822; Late@Example.com", "delayed", "4.4.1")
    full = _block("rfc822;<full@example.com>", "failed", "5.2.2", "smtp; 552 5.2.2 Mailbox full")
    gone = _block("RFC822; gone@example.com", "failed", "5.1.1", "smtp; 550 5.1.1 No such user")
    report = _parse(_dsn(delayed, full, gone))
    assert report.kind == "hard"
    assert report.recipients == (
        RecipientResult("late@example.com", "soft", "delayed", "4.4.1", None),
        _failed("full@example.com", "soft", "5.2.2", "552 5.2.2 Mailbox full"),
        _failed("gone@example.com", "hard", "5.1.1", "550 5.1.1 No such user"))
    assert _parse(_dsn(full, delayed)).kind == "soft"
    delivered = _block("rfc822; ok@example.com", "delivered", "2.0.0", "smtp; 250 2.0.0 Ok: queued as 4Xk2")
    relayed = _block("rfc822; on@example.com", "relayed (to a non-DSN MTA)", "2.0.0")
    report = _parse(_dsn(delivered, relayed))
    assert (report.kind, [(r.kind, r.action) for r in report.recipients]) == (
        "unknown", [("unknown", "delivered"), ("unknown", "relayed")])


@pytest.mark.parametrize(("status", "diagnostic", "kind", "read_status"), [
    ("5.1.1", "smtp; 550 5.1.1 <a@example.com>: Recipient address rejected: User unknown", "hard", "5.1.1"),
    # Exim's 5.0.0 takes the server's detail; a detail of another class leaves it alone
    ("5.0.0", "smtp; 550 5.1.1 <a@example.com>... User unknown", "hard", "5.1.1"),
    ("5.0.0", "smtp; 451 4.4.1 Timeout, giving up", "soft", "5.0.0"),
    (None, "smtp; 550-5.1.1 No such\n 550 5.1.1 user", "hard", "5.1.1"),
    # no enhanced code in the answer: the DSN's Status judges it, as the rule table would
    ("5.1.1", "smtp; 550 Requested action not taken: mailbox unavailable", "hard", "5.1.1"),
    ("5.7.1", "smtp; 550 Requested action not taken: mailbox unavailable", "soft", "5.7.1"),
    # the status alone: a local failure without an SMTP answer
    ("5.1.1", "X-Postfix; unknown user: \"someone\"", "hard", "5.1.1"),
    ("5.4.6", "X-Postfix; mail forwarding loop for a@example.com", "soft", "5.4.6"),
    ("5.0.0", None, "soft", "5.0.0"),
    (None, None, "soft", None),
    # a 4.x.x given up on is not a bad address
    ("4.4.7", "X-Postfix; delivery temporarily suspended: connect to mx.example.com: Connection refused",
     "soft", "4.4.7"),
    ("5.2.2", "smtp; 552 5.2.2 Recipient address rejected: mailbox full", "soft", "5.2.2"),
    ("5.7.1", "smtp; 550 5.7.1 Message rejected as spam", "soft", "5.7.1"),
    # our own sender refused is not the recipient's fault
    ("5.1.8", "smtp; 553 5.1.8 <bounces@bounce.tutormax.example>: Sender address rejected: Domain not found",
     "soft", "5.1.8"),
])
def test_a_failed_recipient_is_hard_only_when_the_rule_table_calls_the_address_bad(status, diagnostic, kind, read_status):
    (recipient,) = _parse(_dsn(_block("rfc822; a@example.com", "failed", status, diagnostic))).recipients
    assert (recipient.kind, recipient.status) == (kind, read_status)


def test_the_diagnostic_is_one_line_of_at_most_500_characters():
    words = " ".join(["blocked"] * 200)
    (recipient,) = _parse(_dsn(_block("rfc822; a@example.com", "failed", "5.7.1",
                                      f"smtp; 554 5.7.1\n    {words}\n\t{words}"))).recipients
    assert recipient.diagnostic == f"554 5.7.1 {words} {words}"[:DIAGNOSTIC_MAX]
    assert len(recipient.diagnostic) == DIAGNOSTIC_MAX


def test_a_global_delivery_status_is_read_too():
    # RFC 6533: the parser gives it as one message whose body holds the recipients' blocks
    block = _block("utf-8; jos\u00e9@example.com", "failed", "5.1.1", "smtp; 550 5.1.1 User unknown")
    report = _parse(_dsn(block, ctype="message/global-delivery-status"))
    assert report.recipients == (_failed("jos\u00e9@example.com", "hard", "5.1.1", "550 5.1.1 User unknown"),)


def test_a_dsn_stays_a_dsn_whatever_its_subject_and_auto_reply_headers_say():
    headers = ("From: Jo <jo@example.com>\nSubject: Out of Office\nAuto-Submitted: auto-replied\n"
               "X-Autoreply: yes\nPrecedence: auto_reply\n")
    report = _parse(_dsn(_block("rfc822; a@example.com", "failed", "5.1.1"), headers=headers))
    assert (report.kind, report.detector) == ("hard", "dsn")


# --- ARF complaints ---------------------------------------------------------------------------------

def test_a_complaint_without_original_rcpt_to_names_the_returned_messages_recipient():
    raw = _raw("arf_yahoo_abuse.eml").replace(b"Original-Rcpt-To: <Sam.Student@yahoo.com>\r\n", b"")
    assert b"Original-Rcpt-To" not in raw
    report = _parse(raw)
    assert (report.kind, report.recipients, report.feedback_type, report.message_id) == (
        "complaint", (RecipientResult("sam.student@yahoo.com", "complaint", "", None, None),), "abuse", 42)
    # Microsoft's reports return only the headers, and redact the recipient
    headers_only = raw.replace(b"Content-Type: message/rfc822", b"Content-Type: text/rfc822-headers")
    assert _parse(headers_only).recipients == report.recipients
    redacted = raw.replace(b"To: Sam Student <sam.student@yahoo.com>", b"To: [redacted]")
    assert (_parse(redacted).kind, _parse(redacted).recipients, _parse(redacted).message_id) == ("complaint", (), 42)


def test_the_feedback_type_is_the_reports_own():
    raw = _raw("arf_yahoo_abuse.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: Fraud")
    assert (_parse(raw).kind, _parse(raw).feedback_type) == ("complaint", "fraud")


# --- auto-replies -------------------------------------------------------------------------------------

_REPLY_HEADERS = "From: Jo Parent <jo@example.com>\nTo: {to}\nSubject: {subject}\nMessage-ID: <r1@example.com>\n"


def _reply(extra: str, subject: str = "Re: Your weekly progress digest") -> bytes:
    return (_REPLY_HEADERS.format(to=VERP_42, subject=subject) + extra + "\nI am away until Monday.\n").encode()


@pytest.mark.parametrize("header", [
    "Auto-Submitted: auto-replied", "Auto-Submitted: Auto-Generated", "Auto-Submitted: auto-replied (vacation)",
    "X-Autoreply: yes", "X-Autorespond: Out of office", "Precedence: auto_reply"])
def test_an_auto_reply_header_makes_an_auto_reply(header):
    assert _parse(_reply(header + "\n")) == ParsedReport("auto_reply", (), 42, None, "<r1@example.com>", "auto_reply")


@pytest.mark.parametrize(("extra", "subject"), [
    ("Auto-Submitted: no\n", "Re: Your weekly progress digest"),
    # Outlook sets X-Auto-Response-Suppress on ordinary mail too; a subject is what a person writes
    ("X-Auto-Response-Suppress: All\n", "Re: Your weekly progress digest"),
    ("Precedence: bulk\n", "Out of Office: Your weekly progress digest"),
])
def test_without_an_auto_reply_header_a_reply_is_unknown(extra, subject):
    assert (_parse(_reply(extra, subject)).kind, _parse(_reply(extra, subject)).detector) == ("unknown", "none")


def test_a_mailer_daemons_bounce_marked_auto_submitted_still_reaches_the_bounce_detectors():
    raw = _raw("qmail_no_mailbox.eml").replace(b"Subject: failure notice\n",
                                               b"Subject: failure notice\nAuto-Submitted: auto-replied\n")
    assert (_parse(raw).kind, _parse(raw).detector) == ("hard", "flufl:Qmail")


# --- flufl.bounce -----------------------------------------------------------------------------------

def test_a_warning_flufl_reads_is_a_soft_delay():
    raw = (b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
           b"To: " + VERP_42.encode() + b"\nSubject: Delivery Status Notification (Delay)\n\n"
           b"This is an automatically generated Delivery Status Notification\n\n"
           b"THIS IS A WARNING MESSAGE ONLY.\n\nYOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\n"
           b"Delivery to the following recipient has been delayed:\n\n     Slow@Example.com\n\n"
           b"Message will be retried for 2 more day(s)\n")
    report = _parse(raw)
    assert (report.kind, report.recipients, report.detector, report.message_id) == (
        "soft", (RecipientResult("slow@example.com", "soft", "delayed", None, None),), "flufl:SimpleWarning", 42)


@pytest.mark.parametrize("sender", [
    "From: Syst\u00e8me de messagerie <MAILER-DAEMON@mail.oldhost.example>".encode(),  # raw 8-bit
    b"From: ",
])
def test_a_flufl_detector_that_trips_on_the_headers_does_not_stop_the_others(sender):
    # flufl.bounce's all_failures() raises here (Yahoo's and Yale's detectors read From as a plain address)
    raw = _raw("qmail_no_mailbox.eml").replace(b"From: MAILER-DAEMON@mail.oldhost.example", sender, 1)
    assert (_parse(raw).recipients, _parse(raw).detector) == (EXPECTED["qmail_no_mailbox.eml"].recipients,
                                                              "flufl:Qmail")


# --- garbage ------------------------------------------------------------------------------------------

def _sane(report: ParsedReport) -> bool:
    return (report.kind in KINDS and all(r.kind in KINDS and "@" in r.address for r in report.recipients)
            and all(r.diagnostic is None or len(r.diagnostic) <= DIAGNOSTIC_MAX for r in report.recipients))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(raw):
    report = _parse(raw)
    assert _sane(report)
    assert report.kind == "unknown" or report.recipients or report.detector == "auto_reply"


_PIECES = [b"\n", b"\r\n", b"\n\n", b":", b";", b"<", b">", b"--", b"\x00", b"\xff\xfe", b"\xc3\xa9", b"=?utf-8?q?",
           b"Content-Type: multipart/report; boundary=\"x\"\n", b"Content-Type: message/delivery-status\n",
           b"Content-Type: message/rfc822\n", b"Content-Transfer-Encoding: base64\n", b"Action: failed\n",
           b"Final-Recipient: ", b"Status: 5.1.1\n", b"Diagnostic-Code: smtp; 550", b"From: \n", b"@"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EXPECTED)),
       st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["cut", "insert", "flip", "truncate"]),
                          st.integers(1, 400), st.sampled_from(_PIECES)), min_size=1, max_size=8))
def test_mutated_reports_never_raise(name, mutations):
    raw = bytearray(_raw(name))
    for position, operation, size, piece in mutations:
        position %= len(raw) + 1
        if operation == "cut":
            del raw[position:position + size]
        elif operation == "insert":
            raw[position:position] = piece
        elif operation == "flip" and position < len(raw):
            raw[position] ^= size & 0xFF
        elif operation == "truncate":
            del raw[position:]
    assert _sane(_parse(bytes(raw)))


def test_a_truncated_report_reads_what_it_still_has():
    raw = _raw("postfix_user_unknown.eml")
    cut = raw[:raw.index(b"Diagnostic-Code:")]
    assert _parse(cut).recipients == (_failed("nosuchuser@example.net", "hard", "5.1.1", None),)
    assert _parse(raw[:200]) == ParsedReport("unknown", (), 42, None, "sha256:" + hashlib.sha256(raw[:200]).hexdigest(),
                                             "none")


def test_huge_reports_are_read():
    raw = _raw("postfix_user_unknown.eml")
    attachment = b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + b"QUJD" * 2_000_000
    huge = raw.replace(b"--=_tm42_3f8a9c1d2e4b--", b"--=_tm42_3f8a9c1d2e4b\n" + attachment + b"\n--=_tm42_3f8a9c1d2e4b--")
    assert len(huge) > 8_000_000
    assert _parse(huge).recipients == EXPECTED["postfix_user_unknown.eml"].recipients
    noise = b"From: someone@example.com\nSubject: hello\n\n" + os.urandom(6_000_000)
    assert (_parse(noise).kind, _parse(noise).recipients) == ("unknown", ())
