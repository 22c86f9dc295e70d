"""MIME built by hand must parse cleanly with the email package and resist header injection."""

from __future__ import annotations

import email
import html
from datetime import datetime, timezone
from email import policy

import pytest

from tasks.mime import InvalidRecipient, build, message_id_header


def _build(**overrides):
    args = dict(
        message_id=77, idempotency_key="feedback_reminder:session:9:reminder", from_email="noreply@tutormax.example",
        from_name="TutorMax", to_email="zoe@example.com", to_name="Zoë Ünal", subject="Wie war’s? " * 12,
        html="<p>Grüße " + "x" * 300 + "</p>", text="Grüße\n" + "long line " * 40, unsubscribe_url="https://t.example/u/tok",
        list_id="feedback-reminder.tutormax.example", date=datetime(2026, 11, 20, 15, tzinfo=timezone.utc),
    )
    args.update(overrides)
    return build(**args)


def test_parses_back_without_defects():
    envelope = _build()
    parsed = email.message_from_bytes(envelope.data, policy=policy.default)
    assert all(not part.defects for part in parsed.walk())
    assert parsed["Subject"] == "Wie war’s? " * 12
    assert parsed["To"].addresses[0].display_name == "Zoë Ünal"
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith("Grüße\nlong line")
    # non-ASCII in HTML goes as character references, so the part needs no transfer encoding
    assert html.unescape(parsed.get_body(("html",)).get_content()).startswith("<p>Grüße")
    assert parsed["Date"].datetime == datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
    assert parsed["List-ID"] == "<feedback-reminder.tutormax.example>"
    # RFC 5322: no line longer than 998 octets, CRLF line ends throughout
    assert max(len(line) for line in envelope.data.split(b"\r\n")) <= 998
    assert b"\n" not in envelope.data.replace(b"\r\n", b"")


def _encodings(envelope):
    parsed = email.message_from_bytes(envelope.data, policy=policy.default)
    return {part.get_content_subtype(): part["Content-Transfer-Encoding"] for part in parsed.walk()
            if part.get_content_maintype() == "text"}


@pytest.mark.parametrize(("html_part", "text_part", "expected"), [
    ("<p>plain ascii</p>", "plain ascii", {"html": "7bit", "plain": "7bit"}),
    ("<p>Grüße</p>", "Grüße", {"html": "7bit", "plain": "quoted-printable"}),
    ("<p>" + "x" * 1200 + "</p>", "y" * 1200, {"html": "quoted-printable", "plain": "quoted-printable"}),
    ("<style>p{font-family:'Zoë'}</style><p>Grüße</p>", "ok", {"html": "quoted-printable", "plain": "7bit"}),
])
def test_transfer_encoding_is_the_cheapest_that_keeps_the_part_intact(html_part, text_part, expected):
    envelope = _build(html=html_part, text=text_part)
    assert _encodings(envelope) == expected
    parsed = email.message_from_bytes(envelope.data, policy=policy.default)
    assert html.unescape(parsed.get_body(("html",)).get_content()).rstrip("\r\n") == html_part
    assert parsed.get_body(("plain",)).get_content().rstrip("\r\n") == text_part
    assert max(len(line) for line in envelope.data.split(b"\r\n")) <= 998


def test_a_body_that_contains_the_boundary_cannot_end_its_part():
    boundary = email.message_from_bytes(_build().data).get_boundary()  # the same message, so the same boundary
    forged = f"hello\n--{boundary}\nContent-Type: text/html\n\n<p>forged</p>"
    envelope = _build(text=forged, html="<p>ok</p>")
    assert _encodings(envelope) == {"plain": "quoted-printable", "html": "7bit"}
    parsed = email.message_from_bytes(envelope.data, policy=policy.default)
    assert len(parsed.get_payload()) == 2
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == forged


def test_message_id_is_derived_from_the_message():
    assert _build().data.count(message_id_header(77, "feedback_reminder:session:9:reminder", "tutormax.example").encode()) == 1
    assert message_id_header(77, "a", "d") == message_id_header(77, "a", "d") != message_id_header(78, "a", "d")


def test_subject_line_breaks_cannot_inject_headers():
    parsed = email.message_from_bytes(_build(subject="Hi\r\nBcc: victim@example.com").data, policy=policy.default)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Hi  Bcc: victim@example.com"  # CR and LF each become a space, in the subject


@pytest.mark.parametrize(
    ("to_email", "to_name"),
    [("zoe@example.com", "Zoë\nBcc: victim@example.com"), ("zoe@example.com\r\nBcc: v@example.com", "Zoë"),
     ("no-at-sign", "Zoë"), ("", "Zoë"), ("zoë@exämple.com", "Zoë")],
)
def test_bad_recipients_are_refused_with_a_reason(to_email, to_name):
    with pytest.raises(InvalidRecipient):
        _build(to_email=to_email, to_name=to_name)


def test_internationalized_domain_is_sent_as_punycode():
    envelope = _build(to_email="zoe@exämple.com")
    assert envelope.recipient == "zoe@xn--exmple-cua.com"


@pytest.mark.parametrize(
    "address",
    ["a@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.org", "x_y-z@a-b.example"],
)
def test_plain_addresses_take_the_fast_path_and_agree_with_the_validator(address):
    from email_validator import validate_email

    from tasks.mime import checked_address

    assert checked_address(address) == validate_email(address, check_deliverability=False).normalized


@pytest.mark.parametrize("address", ["a..b@example.com", ".a@example.com", "a@-example.com", "a@example", "a b@example.com"])
def test_malformed_addresses_fail_either_way(address):
    from tasks.mime import checked_address

    with pytest.raises(InvalidRecipient):
        checked_address(address)
