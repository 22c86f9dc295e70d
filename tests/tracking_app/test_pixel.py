"""The open pixel (tracking_app.pixel), in front of Flask: through the Flask test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError

from tracking_app.pixel import GIF
from tutormax.tokens import Purpose

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"


def test_open_pixel_records_and_counts(client, sent_message, token, events, stored_message):
    mid = sent_message()
    for _ in range(2):
        response = client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers={"User-Agent": IPHONE})
        assert response.status_code == 200 and response.data == GIF
        assert response.headers["Content-Type"] == "image/gif"
        assert "no-store" in response.headers["Cache-Control"]
    message = stored_message(mid)
    assert message.open_count == 2 and message.opened_at is not None
    first, second = events(mid)
    assert first.event_type == "opened" and not first.is_machine
    assert (first.device, first.browser, first.os) == ("mobile", "Mobile Safari UI/WKWebView", "iOS 17.1")
    assert second.event_time >= first.event_time
    assert message.opened_at == first.event_time  # the first open sets it, later ones do not move it


def test_head_records_a_machine_open_and_sends_no_body(client, sent_message, token, events):
    mid = sent_message()
    response = client.head(f"/o/{token(Purpose.OPEN, mid)}.gif", headers={"User-Agent": CHROME})
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Length"] == str(len(GIF)) and response.headers["Content-Type"] == "image/gif"
    # no mail client shows an image with HEAD: a gateway or link checker probed the URL
    assert [(e.event_type, e.is_machine, e.machine_reason) for e in events(mid)] == [("opened", True, "head_request")]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_go_on_to_flask_and_record_nothing(client, sent_message, token, events, method):
    mid = sent_message()
    response = client.open(f"/o/{token(Purpose.OPEN, mid)}.gif", method=method, data={"x": "1"})
    # Flask has no route there: its page for a link that is not ours
    assert (response.status_code, response.mimetype) == (404, "text/html")
    assert b"<h1>Link not found</h1>" in response.data
    assert events(mid) == []


def test_bad_pixel_tokens_still_get_a_gif_and_record_nothing(client, sent_message, token, events):
    mid = sent_message()
    good = token(Purpose.OPEN, mid)
    for bad in (good[:-1] + ("A" if good[-1] != "A" else "B"), good[:20], token(Purpose.CLICK, mid), "x" * 40,
                good[:16] + "/" + good[16:], "", "%ff%fe" + good, good + "%3D%3D", good + "~", "." + good):
        response = client.get(f"/o/{bad}.gif")
        assert response.status_code == 200 and response.data == GIF
    assert events(mid) == []


@pytest.mark.parametrize(
    ("headers", "sent_ago", "reason"),
    [
        ({"User-Agent": "Mozilla/5.0"}, timedelta(hours=1), "apple_mpp_user_agent"),
        ({"User-Agent": CHROME}, timedelta(seconds=0), "too_soon_after_send"),
        ({"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}, timedelta(hours=1), "known_prefetcher"),
    ],
)
def test_machine_opens_are_flagged_not_dropped(client, sent_message, token, events, stored_message, headers, sent_ago,
                                               reason):
    mid = sent_message(sent_ago=sent_ago)
    client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers=headers)
    (event,) = events(mid)
    assert (event.is_machine, event.machine_reason) == (True, reason)
    assert stored_message(mid).open_count == 1


def test_forwarded_for_only_behind_a_trusted_proxy(app, sent_message, token, events):
    from tracking_app.classify import parse_networks

    mid = sent_message()
    url = f"/o/{token(Purpose.OPEN, mid)}.gif"
    headers = {"User-Agent": CHROME, "X-Forwarded-For": "203.0.113.9"}
    app.test_client().get(url, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    app.config["TRUSTED_PROXIES"] = parse_networks("10.0.0.0/8")
    app.test_client().get(url, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    # a spoofed header from an untrusted peer is ignored
    app.test_client().get(url, headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert [e.ip_address for e in events(mid)] == ["10.0.0.5", "203.0.113.9", "198.51.100.7"]


def test_a_forwarded_ipv6_zone_is_dropped_not_stored(app, sent_message, token, events):
    """The zone comes from the client and can be any length; the column holds 45 characters."""
    from tracking_app.classify import parse_networks

    mid = sent_message()
    app.config["TRUSTED_PROXIES"] = parse_networks("10.0.0.0/8")
    response = app.test_client().get(f"/o/{token(Purpose.OPEN, mid)}.gif", environ_base={"REMOTE_ADDR": "10.0.0.5"},
                                     headers={"User-Agent": CHROME, "X-Forwarded-For": "fe80::1%" + "x" * 80})
    assert response.status_code == 200 and response.data == GIF
    assert [e.ip_address for e in events(mid)] == ["fe80::1"]


def test_an_open_the_database_refuses_still_gets_its_gif(app, client, sent_message, token, monkeypatch, events):
    from sqlalchemy.exc import DataError

    def refuse(rows):
        raise DataError("EXECUTE tutormax_open_batch", None, ValueError("value too long"))

    mid = sent_message()
    monkeypatch.setattr(app.config["OPENS"], "_write", refuse)
    response = client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers={"User-Agent": CHROME})
    assert response.status_code == 200 and response.data == GIF
    assert events(mid) == [] and not app.config["JOURNAL"].pending()  # not journaled: it would fail again


class Stop(BaseException):
    """What a worker shutting down raises in a request's greenlet (as gevent's GreenletExit)."""


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
@pytest.mark.parametrize("failure", [OperationalError("EXECUTE tutormax_open_batch", None, ConnectionError("lost")),
                                     Stop()], ids=["connection-lost", "stopped"])
def test_an_open_whose_write_may_have_committed_is_journaled_and_counted_once(
        app, client, sent_message, token, db_url, events, stored_message, monkeypatch, committed, failure):
    mid = sent_message()
    opens = app.config["OPENS"]
    write = opens._write

    def write_then_fail(rows):
        if committed:
            write(rows)
        raise failure

    monkeypatch.setattr(opens, "_write", write_then_fail)
    url = f"/o/{token(Purpose.OPEN, mid)}.gif"
    if isinstance(failure, Stop):
        with pytest.raises(Stop):
            client.get(url, headers={"User-Agent": CHROME})
    else:
        assert client.get(url, headers={"User-Agent": CHROME}).data == GIF
    assert len(app.config["JOURNAL"].path.read_text().splitlines()) == 1
    result = app.config["JOURNAL"].ingest(db_url)
    assert (result["events"], result["inserted"]) == (1, 0 if committed else 1)
    assert stored_message(mid).open_count == 1 and len(events(mid)) == 1
