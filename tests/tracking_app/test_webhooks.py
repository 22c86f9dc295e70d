"""Provider webhooks: the providers' documented payloads, carrying our Message-ID, mapped to exact report lines,
events and suppressions; SNS signatures (v1, v2), SendGrid's ECDSA and Postmark's Basic auth refused when wrong,
with nothing recorded; retries recorded once; unknown events kept; signed garbage never a 5xx. Both databases."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import select

from db.models import EmailMessage, EmailPreference, EmailReport, EmailSuppression, EmailTrackingEvent
from db.session import transaction
from tasks.mime import message_id_header
from tracking_app.app import create_app
from tracking_app.webhooks import ses

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
SNS_ID = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"  # the notification fixture's MessageId
PASSWORD = "pm-webhook-password-for-tests"
DOWN = "postgresql+psycopg2://postgres@127.0.0.1:1/unreachable"
GENERATED = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _configure(app, **fields):
    app.config["SETTINGS"] = app.config["SETTINGS"].model_copy(update=fields)
    return app


def _payload(name: str, db_url: str | None = None, mid: int | None = None) -> str:
    """A fixture's text, carrying our message's Message-ID (and, for Postmark, its number in Metadata)."""
    text = (FIXTURES / name).read_text()
    if mid is not None:
        with transaction(db_url) as s:
            header = message_id_header(mid, s.get(EmailMessage, mid).idempotency_key, "tutormax.example")
        text = text.replace("<OUR-MESSAGE-ID>", header).replace("OUR-MESSAGE-NUMBER", str(mid))
    return text


def _stored(db_url):
    """(report lines, events, suppressions) as stored, oldest first."""
    with transaction(db_url) as s:
        return ([(r.kind, r.action, r.status, r.diagnostic, r.recipient, r.message_id, r.report_id)
                 for r in s.scalars(select(EmailReport).order_by(EmailReport.id))],
                [(e.message_id, e.event_type, e.event_data.get("bounce_type"))
                 for e in s.scalars(select(EmailTrackingEvent).order_by(EmailTrackingEvent.event_id))],
                [(x.email, x.reason, x.scope, x.source, x.message_id)
                 for x in s.scalars(select(EmailSuppression).order_by(EmailSuppression.id))])


def _raws(db_url) -> list[str]:
    with transaction(db_url) as s:
        return list(s.scalars(select(EmailReport.raw).order_by(EmailReport.id)))


def _unsubscribed(db_url, email) -> bool:
    with transaction(db_url) as s:
        return bool(s.scalar(select(EmailPreference.unsubscribed_all).where(EmailPreference.email == email)))


NOTHING = ([], [], [])

# signed garbage: JSON of any shape, with the providers' own keys among the random ones
def _json(keys):
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
                        st.sampled_from(["", "\x00", "\ud800", "A" * 400, "<1.0123456789abcdef@x>", "Permanent",
                                         "Transient", "blocked", "Bounced Address", "HardBounce", "9" * 30]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), inner,
                                                     max_size=5)), max_leaves=12)


# --- Amazon SES through SNS -------------------------------------------------------------------------------

def _certificate(key: rsa.RSAPrivateKey, path: Path) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(datetime(2026, 1, 1, tzinfo=timezone.utc))
            .not_valid_after(datetime(2036, 1, 1, tzinfo=timezone.utc)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


@pytest.fixture(scope="module")
def sns_keys(tmp_path_factory):
    """AWS's signing key and certificate, and another pair (a certificate that is not the one configured)."""
    folder = tmp_path_factory.mktemp("sns")
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    return [(key, _certificate(key, folder / f"{i}.pem")) for i, key in enumerate(keys)]


# the signed fields in AWS's documented order, written out here rather than taken from the code under test
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def _sign(message: dict, key: rsa.RSAPrivateKey, version: str = "1") -> dict:
    names = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
    signed = "".join(f"{name}\n{message[name]}\n" for name in names if name in message).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = base64.b64encode(key.sign(signed, padding.PKCS1v15(), digest)).decode()
    return {**message, "SignatureVersion": version, "Signature": signature}


def _sns(fixture: str = "sns_notification.json", **fields) -> dict:
    return {**json.loads((FIXTURES / fixture).read_text()), **fields}


def _post_sns(client, message: dict):
    # as SNS posts: JSON sent as text/plain, with its type and id in headers too
    return client.post("/webhooks/ses", data=json.dumps(message), content_type="text/plain; charset=UTF-8",
                       headers={"x-amz-sns-message-type": str(message.get("Type")),
                                "x-amz-sns-message-id": str(message.get("MessageId"))})


@pytest.fixture
def sns(app, sns_keys):
    """The tracker with SES_SNS_CERTIFICATE set; post(event text or message) signs as SNS does and posts."""
    key, path = sns_keys[0]
    _configure(app, ses_sns_certificate=path)
    client = app.test_client()

    def post(event: str | dict, version: str = "1"):
        message = event if isinstance(event, dict) else _sns(Message=event)
        return _post_sns(client, _sign(message, key, version))

    return post


SES_CASES = [  # fixture, answer, (kind, action, status, diagnostic), event, suppressions (reason, scope)
    ("ses_bounce.json", {"hard": 1, "suppressed": 1},
     ("hard", "failed", "5.1.1", "smtp; 550 5.1.1 <jane@example.com>... User unknown"), ("bounced", "hard"),
     [("hard_bounce", "all")]),
    ("ses_bounce_transient.json", {"soft": 1},
     ("soft", "failed", "5.2.2", "smtp; 552 5.2.2 The email account that you tried to reach is over quota."),
     ("bounced", "soft"), []),
    ("ses_delivery_delay.json", {"delayed": 1},
     ("soft", "delayed", "4.4.1", "smtp; 421 4.4.0 Unable to lookup DNS for example.com"), ("deferred", "soft"), []),
    ("ses_complaint.json", {"complaint": 1, "suppressed": 1}, ("complaint", "", None, "abuse"), ("complained", None),
     [("complaint", "marketing")]),
    ("ses_delivery.json", {"delivered": 1}, ("delivered", "", None, "250 ok:  Message 64111812 accepted"),
     ("delivered", None), []),
    ("ses_reject.json", {"unknown": 1}, ("unknown", "", None, "Bad content"), ("unknown", None), []),
    ("ses_open.json", {"unknown": 1}, ("unknown", "", None, None), ("unknown", None), []),
    ("ses_rendering_failure.json", {"unknown": 1}, ("unknown", "", None, None), ("unknown", None), []),
]


@pytest.mark.parametrize(("fixture", "answer", "line", "event", "suppressions"), SES_CASES)
def test_each_ses_event_becomes_exactly_its_line_event_and_suppressions(sns, db_url, sent_message, fixture, answer,
                                                                         line, event, suppressions):
    mid = sent_message("jane@example.com")
    response = sns(_payload(fixture, db_url, mid))
    assert (response.status_code, response.json) == (200, answer)
    assert _stored(db_url) == ([(*line, "jane@example.com", mid, f"ses:{SNS_ID}")], [(mid, *event)],
                               [("jane@example.com", *s, "webhook", mid) for s in suppressions])
    (raw,) = _raws(db_url)
    assert json.loads(raw)["Message"] == _payload(fixture, db_url, mid)  # the SNS message, kept as it came


def test_a_send_event_is_ignored(sns, db_url, sent_message):
    mid = sent_message("jane@example.com")
    response = sns(_payload("ses_send.json", db_url, mid))
    assert (response.status_code, response.json, _stored(db_url)) == (200, {"ignored": 1}, NOTHING)


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_verify_and_a_retry_records_nothing_twice(sns, db_url, sent_message, version):
    mid = sent_message("jane@example.com")
    bounce = _payload("ses_bounce.json", db_url, mid)
    assert sns(bounce, version).json == {"hard": 1, "suppressed": 1}
    assert sns(bounce, version).json == {"already_recorded": 1}  # SNS retried it
    lines, events, suppressions = _stored(db_url)
    assert (len(lines), len(events), len(suppressions)) == (1, 1, 1)


def _tampered(message: dict, field: str) -> dict:
    return {**message, field: message[field] + "x"} if field in message else {**message, field: "x"}


@pytest.mark.parametrize("field", ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Signature"])
def test_a_tampered_field_is_403_and_records_nothing(app, sns_keys, db_url, sent_message, field):
    key, path = sns_keys[0]
    client = _configure(app, ses_sns_certificate=path).test_client()
    mid = sent_message("jane@example.com")
    signed = _sign(_sns(Message=_payload("ses_bounce.json", db_url, mid)), key)
    response = _post_sns(client, _tampered(signed, field) if field != "Signature" else {
        **signed, "Signature": base64.b64encode(b"\x01" + base64.b64decode(signed["Signature"])[1:]).decode()})
    assert (response.status_code, response.json, _stored(db_url)) == (403, {"error": "forbidden"}, NOTHING)


@pytest.mark.parametrize("change", ["another certificate", "v1 signature as v2", "version 3", "no signature",
                                    "subject removed", "signature not base64"])
def test_a_signature_that_does_not_verify_with_the_configured_certificate_is_403(app, sns_keys, db_url, sent_message,
                                                                                   change, caplog):
    (key, path), (other, _) = sns_keys
    client = _configure(app, ses_sns_certificate=path).test_client()
    mid = sent_message("jane@example.com")
    message = _sns(Message=_payload("ses_bounce.json", db_url, mid))
    signed = {
        "another certificate": lambda: _sign(message, other),
        "v1 signature as v2": lambda: {**_sign(message, key, "1"), "SignatureVersion": "2"},
        "version 3": lambda: {**_sign(message, key, "2"), "SignatureVersion": "3"},
        "no signature": lambda: {k: v for k, v in _sign(message, key).items() if k != "Signature"},
        "subject removed": lambda: {k: v for k, v in _sign(message, key).items() if k != "Subject"},
        "signature not base64": lambda: {**_sign(message, key), "Signature": "not base64!"},
    }[change]()
    response = _post_sns(client, signed)
    assert (response.status_code, _stored(db_url)) == (403, NOTHING)
    # the log names the certificate SNS used (after AWS rotates it, the one to install), and nothing of the mail
    assert ("names https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
            in caplog.text) and "jane@example.com" not in caplog.text


def test_a_notification_without_a_subject_is_signed_without_one(sns, db_url, sent_message):
    mid = sent_message("jane@example.com")
    message = {k: v for k, v in _sns(Message=_payload("ses_delivery.json", db_url, mid)).items() if k != "Subject"}
    assert sns(message).json == {"delivered": 1}


def test_another_topic_is_refused_when_one_is_configured(sns, app, db_url, sent_message):
    mid = sent_message("jane@example.com")
    _configure(app, ses_sns_topic_arn="arn:aws:sns:us-west-2:123456789012:OurTopic")
    bounce = _payload("ses_bounce.json", db_url, mid)
    assert (sns(bounce).status_code, _stored(db_url)) == (403, NOTHING)
    assert sns(_sns(Message=bounce, TopicArn="arn:aws:sns:us-west-2:123456789012:OurTopic")).json == {
        "hard": 1, "suppressed": 1}


@pytest.fixture
def confirmations(monkeypatch):
    """The SubscribeURLs the tracker GETs (none really), and whether each GET is to succeed."""
    asked: list[str] = []
    outcome = {"ok": True}

    def get(url: str) -> bool:
        asked.append(url)
        return outcome["ok"]

    monkeypatch.setattr(ses, "confirm_subscription", get)
    return asked, outcome


def test_a_subscription_to_the_configured_topic_is_confirmed_and_a_failed_get_is_502(sns, app, db_url, confirmations,
                                                                                     caplog):
    asked, outcome = confirmations
    _configure(app, ses_sns_topic_arn=TOPIC)
    confirmation = _sns("sns_subscription_confirmation.json")
    response = sns(confirmation)
    assert (response.status_code, response.json) == (200, {"confirmed": True})
    assert asked == [confirmation["SubscribeURL"]]
    outcome["ok"] = False
    response = sns(confirmation)
    assert (response.status_code, response.json) == (502, {"error": "bad_gateway"})  # SNS sends it again
    assert confirmation["Token"] not in caplog.text and _stored(db_url) == NOTHING


def test_a_subscription_is_not_confirmed_without_a_configured_topic(sns, db_url, confirmations, caplog):
    asked, _ = confirmations
    assert sns(_sns("sns_subscription_confirmation.json")).status_code == 403
    assert asked == [] and "set SES_SNS_TOPIC_ARN" in caplog.text


@pytest.mark.parametrize("url", [
    "http://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
    "https://sns.us-west-2.amazonaws.com.evil.example/?Action=ConfirmSubscription",
    "https://evil.example/sns.us-west-2.amazonaws.com/",
    "https://user@sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
    "https://sns.us-west-2.amazonaws.com:8443/?Action=ConfirmSubscription",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1/",
])
def test_a_subscribe_url_that_is_not_sns_over_https_is_never_fetched(sns, app, confirmations, url):
    asked, _ = confirmations
    _configure(app, ses_sns_topic_arn=TOPIC)
    assert sns(_sns("sns_subscription_confirmation.json", SubscribeURL=url)).status_code == 403
    assert asked == []


def test_an_unsubscribe_confirmation_is_200_and_records_nothing(sns, db_url, confirmations):
    response = sns(_sns("sns_unsubscribe_confirmation.json"))
    assert (response.status_code, response.json, confirmations[0], _stored(db_url)) == (200, {}, [], NOTHING)


def test_confirm_subscription_gets_the_url_and_says_whether_it_answered_200():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            self.send_response(200 if self.path.startswith("/?Action=ConfirmSubscription") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert ses.confirm_subscription(f"{base}/?Action=ConfirmSubscription&Token=t") is True
        assert ses.confirm_subscription(f"{base}/elsewhere") is False
    finally:
        server.shutdown()
        server.server_close()
    assert ses.confirm_subscription(base) is False  # nobody listening any more


def test_an_unknown_or_unreadable_ses_message_is_kept_as_unknown(sns, db_url, sent_message):
    mid = sent_message("jane@example.com")
    event = json.loads(_payload("ses_open.json", db_url, mid))
    event["eventType"] = "SomethingNew"
    assert sns(json.dumps(event)).json == {"unknown": 1}
    validated = _sns(MessageId="5e1d4c8a-0000-4f6e-9a2b-7d3c1b0a9e8f",
                     Message="Successfully validated SNS topic for Amazon SES event publishing.")
    assert sns(validated).json == {"unknown": 1}
    lines, events, _ = _stored(db_url)
    assert lines == [("unknown", "", None, None, "jane@example.com", mid, f"ses:{SNS_ID}"),
                     ("unknown", "", None, None, "", None, "ses:5e1d4c8a-0000-4f6e-9a2b-7d3c1b0a9e8f")]
    assert events == [(mid, "unknown", None)]
    assert json.loads(_raws(db_url)[1])["Message"] == validated["Message"]


def test_our_message_is_found_in_the_headers_and_a_message_id_we_did_not_make_is_not_believed(sns, db_url,
                                                                                              sent_message):
    mid = sent_message("jane@example.com")
    event = json.loads(_payload("ses_delivery.json", db_url, mid))
    del event["mail"]["commonHeaders"]["messageId"]
    assert sns(json.dumps(event)).json == {"delivered": 1}
    # a digest we did not make; and a leading zero, which would otherwise slip past db.reports' digest check
    for n, forged_id in enumerate([f"<{mid}.{'0' * 16}@x>", f"<0{mid}.{'0' * 16}@x>"]):
        forged = json.loads(_payload("ses_bounce.json", db_url, mid))
        forged["mail"]["commonHeaders"]["messageId"] = forged["mail"]["headers"][4]["value"] = forged_id
        assert sns(_sns(MessageId=f"forged-{n}", Message=json.dumps(forged))).json["hard"] == 1
    lines, events, suppressions = _stored(db_url)
    assert [(line[0], line[5]) for line in lines] == [("delivered", mid), ("hard", None), ("hard", None)]
    # not our message's bounce, but an address we mailed: suppressed all the same (once), with no message named
    assert events == [(mid, "delivered", None)]
    assert suppressions == [("jane@example.com", "hard_bounce", "all", "webhook", None)]


def test_strings_no_database_can_store_are_cleaned_and_cut_to_fit(sns, db_url, sent_message):
    mid = sent_message("jane@example.com")
    event = json.loads(_payload("ses_bounce.json", db_url, mid))
    event["bounce"]["bouncedRecipients"] = [
        {"emailAddress": "jane@example.com", "status": "5.1.1\x00" * 10, "diagnosticCode": "no\ud800 such\x00 user"},
        {"emailAddress": "x" * 400 + "@example.com", "status": 5}]  # no address of that length: skipped
    assert sns(json.dumps(event)).json == {"hard": 1, "suppressed": 1}
    assert _stored(db_url)[0] == [("hard", "failed", "5.1.15.1.15.1.15.1.1", "no? such user", "jane@example.com", mid,
                                   f"ses:{SNS_ID}")]


@pytest.mark.parametrize("body", ["not json", "[]", '{"Type": "Other"}', '{"Type": ["Notification"]}', "\xff"])
def test_an_sns_body_that_is_not_an_sns_message_is_400(sns, app, db_url, body):
    response = app.test_client().post("/webhooks/ses", data=body.encode("latin-1"), content_type="text/plain")
    assert (response.status_code, response.json, _stored(db_url)) == (400, {"error": "bad_request"}, NOTHING)


def test_an_unreadable_certificate_is_503_for_sns_to_retry(sns, app, tmp_path):
    _configure(app, ses_sns_certificate=str(tmp_path / "gone.pem"))
    assert sns(_sns(Message="{}")).status_code == 503


@GENERATED
@given(event=_json(["eventType", "notificationType", "mail", "bounce", "bounceType", "bouncedRecipients",
                    "emailAddress", "status", "diagnosticCode", "action", "complaint", "complainedRecipients",
                    "delivery", "recipients", "deliveryDelay", "delayedRecipients", "destination", "commonHeaders",
                    "messageId", "headers", "name", "value", "reject", "reason"]),
       kind=st.sampled_from(["Bounce", "Complaint", "Delivery", "DeliveryDelay", "Reject", "Open", "Send", None]))
def test_signed_garbage_from_sns_is_never_a_5xx(sns, event, kind):
    if kind and isinstance(event, dict):
        event = {**event, "eventType": kind}
    assert sns(json.dumps(event)).status_code == 200


# --- SendGrid -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sendgrid_keys():
    return [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]


def _sendgrid_sign(key: ec.EllipticCurvePrivateKey, body: bytes, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


@pytest.fixture
def sendgrid(app, sendgrid_keys):
    """The tracker with SENDGRID_WEBHOOK_PUBLIC_KEY set (base64 DER, as SendGrid shows it); post(events) signs and posts."""
    der = sendgrid_keys[0].public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    client = _configure(app, sendgrid_webhook_public_key=SecretStr(base64.b64encode(der).decode())).test_client()

    def post(events, key=sendgrid_keys[0], at=None, body: bytes | None = None):
        data = json.dumps(events).encode() if body is None else body
        return client.post("/webhooks/sendgrid", data=data, content_type="application/json",
                           headers=_sendgrid_sign(key, data, at))

    return post


def _sendgrid_events(db_url, mid) -> list[dict]:
    return json.loads(_payload("sendgrid_events.json", db_url, mid))


SENDGRID_CASES = [  # the fixture's event, answer, (kind, action, status, diagnostic), event, suppressions
    ("deferred", {"delayed": 1}, ("soft", "delayed", None, "400 try again later"), ("deferred", "soft"), []),
    ("delivered", {"delivered": 1}, ("delivered", "", None, "250 OK"), ("delivered", None), []),
    ("open", {"unknown": 1}, ("unknown", "", None, None), ("unknown", None), []),
    ("click", {"unknown": 1}, ("unknown", "", None, None), ("unknown", None), []),
    ("bounce", {"hard": 1, "suppressed": 1}, ("hard", "failed", "5.0.0", "500 unknown recipient"), ("bounced", "hard"),
     [("hard_bounce", "all")]),
    ("blocked", {"soft": 1}, ("soft", "failed", "5.7.1", "550 5.7.1 Service unavailable; client host blocked using "
                                                           "Spamhaus"), ("bounced", "soft"), []),
    ("dropped: Bounced Address", {"hard": 1, "suppressed": 1}, ("hard", "failed", "5.0.0", "dropped: Bounced Address"),
     ("bounced", "hard"), [("hard_bounce", "all")]),
    ("dropped: Unsubscribed Address", {"unknown": 1}, ("unknown", "", "5.0.0", "dropped: Unsubscribed Address"),
     ("unknown", None), []),
    ("spamreport", {"complaint": 1, "suppressed": 1}, ("complaint", "", None, None), ("complained", None),
     [("complaint", "marketing")]),
    ("unsubscribe", {"unknown": 1, "unsubscribed": 1}, ("unknown", "", None, None), ("unknown", None), []),
    ("group_unsubscribe", {"unknown": 1}, ("unknown", "", None, None), ("unknown", None), []),
    ("group_resubscribe", {"unknown": 1}, ("unknown", "", None, None), ("unknown", None), []),
]


def _sendgrid_event(events: list[dict], name: str) -> dict:
    return next(e for e in events if name in (e["event"], e.get("type"), f"{e['event']}: {e.get('reason')}"))


@pytest.mark.parametrize(("name", "answer", "line", "event", "suppressions"), SENDGRID_CASES)
def test_each_sendgrid_event_becomes_exactly_its_line_event_and_suppressions(sendgrid, db_url, sent_message, name,
                                                                              answer, line, event, suppressions):
    mid = sent_message("example@test.com")
    posted = _sendgrid_event(_sendgrid_events(db_url, mid), name)
    response = sendgrid([posted])
    assert (response.status_code, response.json) == (200, answer)
    unsubscribed = [(mid, "unsubscribed", None)] if name == "unsubscribe" else []
    assert _stored(db_url) == ([(*line, "example@test.com", mid, f"sendgrid:{posted['sg_event_id']}")],
                               [(mid, *event), *unsubscribed],
                               [("example@test.com", *s, "webhook", mid) for s in suppressions])
    assert _raws(db_url) == [json.dumps(posted)]
    assert _unsubscribed(db_url, "example@test.com") is (name == "unsubscribe")


def test_a_whole_sendgrid_batch_is_recorded_once_and_processed_is_ignored(sendgrid, db_url, sent_message):
    mid = sent_message("example@test.com")
    events = _sendgrid_events(db_url, mid)
    # two hard lines (the bounce, then SendGrid dropping mail to the bounced address): one suppression
    assert sendgrid(events).json == {"ignored": 1, "delayed": 1, "delivered": 1, "unknown": 6, "hard": 2, "soft": 1,
                                     "complaint": 1, "suppressed": 2, "unsubscribed": 1}
    assert sendgrid(events).json == {"ignored": 1, "already_recorded": 12}  # SendGrid retried the batch
    assert len(_stored(db_url)[0]) == 12


def test_an_unsubscribe_counts_on_our_message_and_a_retry_after_a_resubscribe_does_not_undo_it(
        sendgrid, db_url, sent_message, stored_message):
    from db import tracking

    mid = sent_message("example@test.com")
    unsubscribe = [_sendgrid_event(_sendgrid_events(db_url, mid), "unsubscribe")]
    sendgrid(unsubscribe)
    assert stored_message(mid).unsubscribed_at is not None  # the analytics' unsubscribe rate counts it
    with transaction(db_url) as s:
        tracking.set_preferences(s, "example@test.com", {"unsubscribed_all": False}, datetime.now(timezone.utc))
    assert sendgrid(unsubscribe).json == {"already_recorded": 1}
    assert _unsubscribed(db_url, "example@test.com") is False


def test_an_unsubscribe_naming_no_message_of_ours_unsubscribes_the_address(sendgrid, db_url):
    event = {"email": "Someone@Example.com", "timestamp": 1796040005, "event": "unsubscribe", "sg_event_id": "u1=="}
    assert sendgrid([event]).json == {"unknown": 1, "unsubscribed": 1}
    assert _unsubscribed(db_url, "someone@example.com") is True and _stored(db_url)[1] == []


def test_an_unknown_sendgrid_event_is_kept_with_its_payload(sendgrid, db_url):
    event = {"email": "nobody@example.com", "timestamp": 1796040005, "event": "machine_open", "sg_event_id": "n3w=="}
    assert sendgrid([event, "not an event"]).json == {"unknown": 2}
    lines, events, suppressions = _stored(db_url)
    assert [line[0] for line in lines] == ["unknown", "unknown"] and (events, suppressions) == ([], [])
    assert lines[0][4:] == ("nobody@example.com", None, "sendgrid:n3w==")
    assert _raws(db_url) == [json.dumps(event), '"not an event"']


@pytest.mark.parametrize("change", ["tampered body", "another key", "10 minutes and a second old",
                                    "10 minutes and a second ahead", "no signature", "no timestamp",
                                    "signature not base64", "timestamp not a number"])
def test_a_sendgrid_batch_not_signed_lately_with_the_key_is_403(sendgrid, sendgrid_keys, app, db_url, sent_message,
                                                                 change):
    mid = sent_message("example@test.com")
    body = json.dumps([_sendgrid_event(_sendgrid_events(db_url, mid), "bounce")]).encode()
    headers = _sendgrid_sign(sendgrid_keys[0], body)
    if change == "tampered body":
        body = body.replace(b"500 unknown", b"550 unknown")
    elif change == "another key":
        headers = _sendgrid_sign(sendgrid_keys[1], body)
    elif change.startswith("10 minutes"):
        headers = _sendgrid_sign(sendgrid_keys[0], body, time.time() + (601 if "ahead" in change else -601))
    elif change.startswith("no "):
        del headers["X-Twilio-Email-Event-Webhook-" + change[3:].title()]
    elif change == "signature not base64":
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64!"
    else:
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = "1e9"
    response = app.test_client().post("/webhooks/sendgrid", data=body, headers=headers,
                                      content_type="application/json")
    assert (response.status_code, response.json, _stored(db_url)) == (403, {"error": "forbidden"}, NOTHING)


def test_a_batch_signed_nine_minutes_ago_is_accepted(sendgrid, db_url, sent_message):
    mid = sent_message("example@test.com")
    assert sendgrid([_sendgrid_event(_sendgrid_events(db_url, mid), "delivered")],
                    at=time.time() - 540).json == {"delivered": 1}


@pytest.mark.parametrize("body", [b"not json", b'{"event": "bounce"}', b"\xff"])
def test_a_signed_sendgrid_body_that_is_not_a_list_of_events_is_400(sendgrid, db_url, body):
    response = sendgrid(None, body=body)
    assert (response.status_code, response.json, _stored(db_url)) == (400, {"error": "bad_request"}, NOTHING)


@GENERATED
@given(events=st.lists(_json(["email", "event", "type", "reason", "status", "response", "sg_event_id", "smtp-id",
                              "timestamp"]), max_size=4),
       names=st.lists(st.sampled_from(["bounce", "dropped", "deferred", "delivered", "spamreport", "unsubscribe",
                                       "processed", "open"]), max_size=4))
def test_signed_garbage_from_sendgrid_is_never_a_5xx(sendgrid, events, names):
    events = [{**e, "event": n} if isinstance(e, dict) else e for e, n in zip(events, names + [None] * 4)]
    assert sendgrid(events).status_code == 200


# --- Postmark -------------------------------------------------------------------------------------------

def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def postmark(app):
    """The tracker with POSTMARK_WEBHOOK_USER and _PASSWORD set; post(body, auth) posts one event."""
    client = _configure(app, postmark_webhook_user="postmark",
                        postmark_webhook_password=SecretStr(PASSWORD)).test_client()

    def post(body: str | bytes, auth: dict | None = None):
        return client.post("/webhooks/postmark", data=body, content_type="application/json",
                           headers=_basic("postmark", PASSWORD) if auth is None else auth)

    return post


POSTMARK_KEYS = ["RecordType", "Type", "ID", "Email", "Recipient", "MessageID", "Metadata", "message_id", "Details",
                 "Description", "DeliveredAt", "ReceivedAt", "SuppressSending", "SuppressionReason", "Origin"]
PM_MESSAGE = "883953f4-6105-42a2-a16a-77a8eac79483"
POSTMARK_CASES = [  # fixture, answer, (kind, action, status, diagnostic), report id, event, suppressions
    ("postmark_bounce.json", {"hard": 1, "suppressed": 1},
     ("hard", "failed", None, "smtp;550 5.1.1 The email account that you tried to reach does not exist."),
     "4323372036854775807", ("bounced", "hard"), [("hard_bounce", "all")]),
    ("postmark_soft_bounce.json", {"soft": 1}, ("soft", "failed", None, "smtp;552 5.2.2 Mailbox full"),
     "4323372036854775808", ("bounced", "soft"), []),
    ("postmark_transient.json", {"delayed": 1}, ("soft", "delayed", None, "smtp;421 4.4.2 Connection timed out"),
     "4323372036854775809", ("deferred", "soft"), []),
    ("postmark_spam_complaint.json", {"complaint": 1, "suppressed": 1}, ("complaint", "", None, None), "42",
     ("complained", None), [("complaint", "marketing")]),
    ("postmark_delivery.json", {"delivered": 1},
     ("delivered", "", None, "smtp;250 2.0.0 OK  1575563634 q8si1234567qkc.22 - gsmtp"),
     f"Delivery:{PM_MESSAGE}:2026-11-30T14:00:03.9070259Z", ("delivered", None), []),
    ("postmark_open.json", {"unknown": 1}, ("unknown", "", None, None),
     f"Open:{PM_MESSAGE}:2026-11-30T14:22:54.9070259Z", ("unknown", None), []),
    ("postmark_subscription_change.json", {"unknown": 1, "unsubscribed": 1}, ("unknown", "", None, None),
     f"SubscriptionChange:{PM_MESSAGE}:2026-11-30T14:30:34.416071Z", ("unknown", None), []),
]


@pytest.mark.parametrize(("fixture", "answer", "line", "report_id", "event", "suppressions"), POSTMARK_CASES)
def test_each_postmark_event_becomes_exactly_its_line_event_and_suppressions(postmark, db_url, sent_message, fixture,
                                                                              answer, line, report_id, event,
                                                                              suppressions):
    mid = sent_message("john@example.com")
    body = _payload(fixture, db_url, mid)
    response = postmark(body)
    assert (response.status_code, response.json) == (200, answer)
    unsubscribed = [(mid, "unsubscribed", None)] if "subscription" in fixture else []
    assert _stored(db_url) == ([(*line, "john@example.com", mid, f"postmark:{report_id}")],
                               [(mid, *event), *unsubscribed],
                               [("john@example.com", *s, "webhook", mid) for s in suppressions])
    assert _raws(db_url) == [body]
    assert _unsubscribed(db_url, "john@example.com") is ("subscription" in fixture)
    assert postmark(body).json == {"already_recorded": 1}  # Postmark retried it


def test_without_our_number_in_metadata_a_postmark_bounce_acts_on_an_address_we_mailed(postmark, db_url,
                                                                                        sent_message):
    sent_message("john@example.com")
    event = json.loads(_payload("postmark_bounce.json"))
    del event["Metadata"]
    assert postmark(json.dumps(event)).json == {"hard": 1, "suppressed": 1}
    assert _stored(db_url)[2] == [("john@example.com", "hard_bounce", "all", "webhook", None)]


def test_a_second_open_is_its_own_line_and_an_unknown_record_type_is_kept(postmark, db_url):
    first = _payload("postmark_open.json")
    second = first.replace("14:22:54", "18:01:12")
    new = json.dumps({"RecordType": "Inbound", "MessageID": "m-1", "Email": "x@example.com", "ReceivedAt": "now"})
    assert [postmark(body).json for body in (first, second, new)] == [{"unknown": 1}] * 3
    assert [line[0] for line in _stored(db_url)[0]] == ["unknown"] * 3 and _raws(db_url)[2] == new


@pytest.mark.parametrize("auth", [{}, _basic("postmark", "wrong"), _basic("someone", PASSWORD),
                                  {"Authorization": f"Bearer {PASSWORD}"}, {"Authorization": "Basic !!!"}])
def test_postmark_without_the_right_credentials_is_401_with_a_challenge(postmark, db_url, sent_message, auth, caplog):
    mid = sent_message("john@example.com")
    response = postmark(_payload("postmark_bounce.json", db_url, mid), auth)
    assert (response.status_code, response.json, response.headers["WWW-Authenticate"], _stored(db_url)) == (
        401, {"error": "unauthorized"}, 'Basic realm="postmark-webhook"', NOTHING)
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("body", ["not json", "[]", "\xff"])
def test_a_postmark_body_that_is_not_an_event_is_400(postmark, db_url, body):
    response = postmark(body.encode("latin-1"))
    assert (response.status_code, response.json, _stored(db_url)) == (400, {"error": "bad_request"}, NOTHING)


@GENERATED
@given(event=st.dictionaries(st.sampled_from(POSTMARK_KEYS), _json(POSTMARK_KEYS), max_size=8),
       kind=st.sampled_from(["Bounce", "SpamComplaint", "Delivery", "Open", "SubscriptionChange", None]))
def test_garbage_from_postmark_is_never_a_5xx(postmark, event, kind):
    assert postmark(json.dumps({**event, "RecordType": kind} if kind else event)).status_code == 200


# --- all three ------------------------------------------------------------------------------------------

def test_a_webhook_whose_secret_is_not_set_does_not_exist(client, db_url):
    for path in ("/webhooks/ses", "/webhooks/sendgrid", "/webhooks/postmark"):
        response = client.post(path, data="[]", content_type="application/json", headers=_basic("postmark", PASSWORD))
        assert (response.status_code, response.json) == (404, {"error": "not_found"}), path


def test_postmark_with_a_user_and_no_password_does_not_exist(app):
    client = _configure(app, postmark_webhook_user="postmark").test_client()
    assert client.post("/webhooks/postmark", data="{}", headers=_basic("postmark", "")).status_code == 404


def test_with_the_database_down_each_webhook_answers_503_for_the_provider_to_retry(app, sns_keys, sendgrid_keys,
                                                                                   caplog):
    key, path = sns_keys[0]
    der = sendgrid_keys[0].public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    down = create_app({"database_url": DOWN, "ses_sns_certificate": path, "postmark_webhook_user": "postmark",
                       "postmark_webhook_password": PASSWORD,
                       "sendgrid_webhook_public_key": base64.b64encode(der).decode()})
    client = down.test_client()
    bounce = (FIXTURES / "ses_bounce.json").read_text()
    events = (FIXTURES / "sendgrid_events.json").read_bytes()
    answers = [_post_sns(client, _sign(_sns(Message=bounce), key)),
               client.post("/webhooks/sendgrid", data=events, headers=_sendgrid_sign(sendgrid_keys[0], events)),
               client.post("/webhooks/postmark", data=(FIXTURES / "postmark_bounce.json").read_text(),
                           headers=_basic("postmark", PASSWORD))]
    assert [(r.status_code, r.json) for r in answers] == [(503, {"error": "service_unavailable"})] * 3
    assert PASSWORD not in caplog.text


def test_a_batch_larger_than_a_form_is_taken(sendgrid, db_url, sent_message):
    mid = sent_message("example@test.com")
    delivered = _sendgrid_event(_sendgrid_events(db_url, mid), "delivered")
    batch = [{**delivered, "sg_event_id": f"id-{i}"} for i in range(400)]  # about 150 KB; forms stop at 64 KiB
    assert len(json.dumps(batch)) > 64 * 1024
    assert sendgrid(batch).json == {"delivered": 400}
