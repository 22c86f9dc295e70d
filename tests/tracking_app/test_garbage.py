"""Bad input never gets a 5xx: random, truncated, oversized and non-UTF-8 tokens, garbage forms
behind genuine tokens, garbage API paths and query strings, wrong methods, garbage posted to the
provider webhooks, request bodies that cannot be read or parsed (over raw sockets to a real
gunicorn); on both databases."""

from __future__ import annotations

import base64
import json
import socket
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from db.models import EmailCampaign, EmailPreference, EmailReport, EmailTrackingEvent, Feedback, SurveyResponse
from db.session import transaction
from tutormax.tokens import Purpose

ROUTES = ["/o/{}.gif", "/c/{}", "/u/{}", "/p/{}", "/f/{}", "/s/{}"]
METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
AUTH = {"Authorization": "Bearer api-token-for-tests"}
NASTY = ["' OR 1=1 --", "%00", "\x00", "a\x00b", "..%2F..%2Fetc%2Fpasswd", "A" * 5000, "%ff%fe",
         "<script>alert(1)</script>", "${jndi:ldap://x}", "²", "9" * 5000, "99999999999999999999", "-1", "1e9"]
text = st.one_of(st.text(max_size=60), st.sampled_from(NASTY))
tokens = st.one_of(
    st.text(min_size=1, max_size=300),
    st.binary(min_size=1, max_size=200).map(lambda b: b.decode("latin-1")),
    st.sampled_from([n for n in NASTY if n] + ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]),
)
forms = st.one_of(st.none(), st.dictionaries(st.one_of(text, st.sampled_from(
    ["rating", "comment", "engaged", "concern", "csrf", "scope", "List-Unsubscribe", "weekly_digests"])), text,
    max_size=5))
GENERATED = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# every provider webhook switched on; no key here signs anything, so garbage meets every check
WEBHOOKS = {"SES_SNS_CERTIFICATE": str(Path(__file__).resolve().parents[1] / "fixtures/webhooks/sns_certificate.pem"),
            "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2Qf1T2TftddMyqxpprcGssdJVn+ukPXQLK+gZr7qfv"
                                           "d1YqoipCnZG8scyoIeNwyub5yRAspGyy8n0O8L6lDsnw==",
            "POSTMARK_WEBHOOK_USER": "postmark", "POSTMARK_WEBHOOK_PASSWORD": "pm-password"}
POSTMARK_AUTH = "Basic " + base64.b64encode(b"postmark:pm-password").decode()


def _no_5xx(response, *what) -> None:
    assert response.status_code < 500, (*what, response.status_code)


@GENERATED
@given(route=st.sampled_from(ROUTES), method=st.sampled_from(METHODS), token=tokens, body=forms)
def test_routes_never_answer_5xx(client, route, method, token, body):
    path = route.format(quote(token, safe=""))
    response = client.open(path, method=method, data=body)
    _no_5xx(response, path, method)
    if "/c/" in path:
        assert "Location" not in response.headers


@GENERATED
@given(purpose=st.sampled_from([Purpose.UNSUBSCRIBE, Purpose.PREFERENCES, Purpose.FEEDBACK, Purpose.SURVEY]),
       method=st.sampled_from(["GET", "POST"]), query=forms, body=forms,
       rating=st.sampled_from([None, "1", "5"]), engaged=st.sampled_from([None, "yes", "no"]))
def test_garbage_behind_a_genuine_token_is_never_a_5xx(client, reminder, token, purpose, method, query, body,
                                                        rating, engaged):
    route = {Purpose.UNSUBSCRIBE: "u", Purpose.PREFERENCES: "p", Purpose.FEEDBACK: "f", Purpose.SURVEY: "s"}[purpose]
    path = f"/{route}/{token(purpose, reminder[0])}?{urlencode(query or {})}"
    # a valid rating and answer now and then, so that the garbage beside them reaches the database
    body = {**(body or {}), **({"rating": rating} if rating else {}), **({"engaged": engaged} if engaged else {})}
    _no_5xx(client.open(path, method=method, data=body), path, method, body)


@GENERATED
@given(campaign=st.one_of(st.just("camp_1"), text.filter(bool)), tail=st.sampled_from(["", "/messages", "/ab-test"]),
       query=forms)
def test_api_paths_and_query_strings_are_never_a_5xx(client, db_url, campaign, tail, query):
    with transaction(db_url) as s:
        if s.get(EmailCampaign, "camp_1") is None:
            s.add(EmailCampaign(campaign_id="camp_1", campaign_name="Spring", campaign_type="announcement",
                                template_type="feedback_reminder", created_at=datetime(2026, 3, 1, tzinfo=timezone.utc)))
    qs = urlencode(query or {})
    for path in (f"/api/email-analytics/campaigns/{quote(campaign, safe='')}{tail}?{qs}",
                 f"/api/email-analytics/metrics/template/{quote(campaign, safe='')}?{qs}",
                 f"/api/email-analytics/campaigns/camp_1/messages?{qs}"):
        _no_5xx(client.get(path, headers=AUTH), path)


@pytest.mark.parametrize("after,limit", [("²", "10"), ("0", "²"), ("9" * 5000, "10"), ("99999999999999999999", "10"),
                                         ("-1", "10"), ("0", "1e3")])
def test_a_page_position_that_is_not_a_small_whole_number_is_400(client, db_url, after, limit):
    with transaction(db_url) as s:
        s.add(EmailCampaign(campaign_id="camp_1", campaign_name="Spring", campaign_type="announcement",
                            template_type="feedback_reminder", created_at=datetime(2026, 3, 1, tzinfo=timezone.utc)))
    response = client.get(f"/api/email-analytics/campaigns/camp_1/messages?{urlencode({'after': after, 'limit': limit})}",
                          headers=AUTH)
    assert response.status_code == 400 and response.json == {"error": "bad_request"}


# no "@": never an address, whatever else it is
not_an_address = st.one_of(st.none(), st.booleans(), st.integers(), st.lists(st.integers(), max_size=3),
                           text.filter(lambda value: "@" not in value))


@GENERATED
@given(payload=st.one_of(st.none(), st.text(max_size=100), st.integers(), st.lists(text, max_size=3),
                         st.dictionaries(st.one_of(st.just("email"), st.text(max_size=10)), not_an_address)),
       path=st.sampled_from(["/api/email-analytics/preferences/lookup", "/api/email-analytics/unsubscribe",
                             "/api/email-analytics/preferences"]))
def test_api_garbage_bodies_are_400(client, db_url, payload, path):
    """A body that is not an object with a valid "email" is refused whole, and changes nothing."""
    method = "PUT" if path.endswith("/preferences") else "POST"
    response = client.open(path, method=method, json=payload, headers=AUTH)
    assert (response.status_code, response.json) == (400, {"error": "bad_request"}), (path, payload)
    with transaction(db_url) as s:
        assert s.scalar(select(func.count()).select_from(EmailPreference)) == 0


@pytest.fixture
def webhooks(db_url, tmp_path, monkeypatch):
    """A tracker with every provider webhook configured."""
    from tracking_app.app import create_app

    monkeypatch.setenv("TUTORMAX_VAR_DIR", str(tmp_path))
    return create_app({"database_url": db_url, **{k.lower(): v for k, v in WEBHOOKS.items()}}).test_client()


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), text),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.one_of(text, st.sampled_from(
                                                       ["Type", "Message", "Signature", "SignatureVersion", "event",
                                                        "RecordType", "Email", "email", "TopicArn"])), inner,
                                                       max_size=4)), max_leaves=10)


@GENERATED
@given(path=st.sampled_from(["/webhooks/ses", "/webhooks/sendgrid", "/webhooks/postmark", "/webhooks/", "/webhooks/x"]),
       method=st.sampled_from(METHODS),
       body=st.one_of(st.binary(max_size=300), text.map(str.encode), json_values.map(lambda v: json.dumps(v).encode())),
       headers=st.dictionaries(st.sampled_from(["X-Twilio-Email-Event-Webhook-Signature",
                                                "X-Twilio-Email-Event-Webhook-Timestamp", "Authorization",
                                                "x-amz-sns-message-type", "Content-Type"]),
                               st.one_of(st.just(POSTMARK_AUTH), st.text(st.characters(min_codepoint=32, max_codepoint=255),
                                                                         max_size=80)), max_size=4))
def test_webhook_garbage_is_never_a_5xx(webhooks, path, method, body, headers):
    response = webhooks.open(path, method=method, data=body, headers=headers)
    _no_5xx(response, path, method, body[:40])


# chunked framing gunicorn refuses while the app reads the body: a size that is not hex, a negative
# size, a control character in an extension, a NUL in a trailer, a chunk without its CRLF
BAD_CHUNKS = [b"zz\r\n\r\n", b"-5\r\n", b"5;\x01ext\r\n", b"0\r\nX-Note: a\x00b\r\n\r\n", b"3\r\nabcXY"]
BODY_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json"]
TOO_DEEP = b"[" * 1000 + b"]" * 1000  # more nesting than Python's JSON parser recurses through


def _raw(base: str, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
    """Send exactly these bytes to the server; its status, content type and body."""
    address = urlsplit(base)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": address.netloc, "Connection": "close", **headers}.items())
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    fields, _, content = rest.partition(b"\r\n\r\n")
    content_type = next((line.split(b":", 1)[1].strip().decode() for line in fields.split(b"\r\n")
                         if line.lower().startswith(b"content-type:")), "")
    return int(status_line.split()[1]), content_type, content


def _is_the_bad_request_page(path: str, response: tuple[int, str, bytes]) -> bool:
    status, content_type, content = response
    if path.startswith(("/api/", "/webhooks/")):
        return (status, content_type) == (400, "application/json") and json.loads(content) == {"error": "bad_request"}
    return status == 400 and content_type.startswith("text/html") and b"<h1>Bad request</h1>" in content


def test_a_body_that_cannot_be_read_or_parsed_is_400_on_every_route(db_url, reminder, token, serving, tmp_path):
    mid = reminder[0]
    requests = [("POST", f"/{p.value}/{token(p, mid)}") for p in
                (Purpose.UNSUBSCRIBE, Purpose.PREFERENCES, Purpose.FEEDBACK, Purpose.SURVEY, Purpose.CLICK)]
    requests += [("POST", f"/o/{token(Purpose.OPEN, mid)}.gif"),  # not the pixel's method: on to Flask
                 ("POST", "/api/email-analytics/preferences/lookup"), ("PUT", "/api/email-analytics/preferences"),
                 ("POST", "/api/email-analytics/unsubscribe"),
                 ("POST", "/webhooks/ses"), ("POST", "/webhooks/sendgrid"), ("POST", "/webhooks/postmark")]
    wrong = {}
    with serving(db_url, tmp_path, **WEBHOOKS) as base:
        for method, path in requests:
            sent = [({"Content-Type": kind, "Transfer-Encoding": "chunked"}, chunks)
                    for kind in BODY_TYPES for chunks in BAD_CHUNKS]
            sent.append(({"Content-Type": "application/json", "Content-Length": str(len(TOO_DEEP))}, TOO_DEEP))
            for headers, body in sent:
                auth = POSTMARK_AUTH if path == "/webhooks/postmark" else AUTH["Authorization"]
                response = _raw(base, method, path, {"Authorization": auth, **headers}, body)
                if not _is_the_bad_request_page(path, response):
                    route = path if path.startswith(("/api/", "/webhooks/")) else path[:3]
                    wrong[method, route, headers["Content-Type"], body[:20]] = response[:2]
    assert wrong == {}, sorted(wrong.items())
    with transaction(db_url) as s:  # and nothing was acted on
        assert [s.scalar(select(func.count()).select_from(t))
                for t in (EmailTrackingEvent, EmailPreference, Feedback, SurveyResponse, EmailReport)] == [0] * 5
