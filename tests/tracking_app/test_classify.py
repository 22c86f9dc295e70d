"""Client parsing and machine/bot flags, on user agents real mail clients and scanners send."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking_app import classify
from tracking_app.classify import (
    KNOWN_PREFETCHERS,
    Client,
    Verdict,
    classify_click,
    classify_open,
    parse_client,
    parse_networks,
)
from tutormax.settings import Settings

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
)
IPAD_MAIL = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
MAC_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
ANDROID_GMAIL = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
OUTLOOK_DESKTOP = "Microsoft Outlook 16.0.5422; Microsoft Outlook 16.0.5422; Pro"
OUTLOOK_WORD_RENDERER = (
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
    "Microsoft Outlook 16.0.5422; ms-office; MSOffice 16)"
)
APPLE_MPP = "Mozilla/5.0"
GOOGLE_IMAGE_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
BARRACUDA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
MIMECAST = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/91.0.4472.124 Safari/537.36 Mimecast"
)
CURL = "curl/8.4.0"
OFFICE_DISCOVERY = "Microsoft Office Existence Discovery"

SENT = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
LATER = SENT + timedelta(hours=3)
APPLE = parse_networks(Settings.model_fields["apple_proxy_networks"].default)


def open_verdict(**kw) -> Verdict:
    args = {"user_agent": CHROME_WINDOWS, "ip": "203.0.113.7", "sent_at": SENT, "at": LATER, "apple_proxy_networks": APPLE}
    return classify_open(**(args | kw))


def click_verdict(**kw) -> Verdict:
    args = {"method": "GET", "user_agent": CHROME_WINDOWS, "sent_at": SENT, "at": LATER, "previous_click_times": ()}
    return classify_click(**(args | kw))


# --- parse_client -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (CHROME_WINDOWS, Client("desktop", "Chrome 120", "Windows 10")),
        # ua-parser cannot tell Apple Mail on iOS from any other in-app WebKit view
        (IPHONE_MAIL, Client("mobile", "Mobile Safari UI/WKWebView", "iOS 17.0")),
        (IPAD_MAIL, Client("tablet", "Mobile Safari UI/WKWebView", "iOS 16.6")),
        (MAC_MAIL, Client("desktop", "Apple Mail", "Mac OS X 10.15")),
        (ANDROID_GMAIL, Client("mobile", "Chrome Mobile WebView 116", "Android 13")),
        (ANDROID_TABLET, Client("tablet", "Chrome 120", "Android 13")),
        # ua-parser calls every Outlook 16.0 "2016", Microsoft 365 included, so no version
        (OUTLOOK_DESKTOP, Client("desktop", "Outlook", "unknown")),
        (OUTLOOK_WORD_RENDERER, Client("desktop", "Outlook", "Windows 10")),
        (APPLE_MPP, Client("proxy", "Apple Mail Privacy Protection", "unknown")),
        (GOOGLE_IMAGE_PROXY, Client("proxy", "Gmail Image Proxy", "Windows XP")),
        (YAHOO_PROXY, Client("proxy", "Yahoo Mail Proxy", "unknown")),
        (BARRACUDA, Client("bot", "unknown", "unknown")),
        (MIMECAST, Client("bot", "Chrome 91", "Windows 10")),
        (CURL, Client("bot", "curl 8", "unknown")),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Client("bot", "Googlebot 2", "unknown")),
    ],
)
def test_parse_client_realistic(ua, expected):
    assert parse_client(ua) == expected


@pytest.mark.parametrize("ua", [None, "", "   ", "\x00\xff\x01", "\ud800 lone surrogate", "x" * 100_000, 42])
def test_parse_client_garbage_is_unknown_not_an_error(ua):
    assert parse_client(ua) == Client("unknown", "unknown", "unknown")


def test_parse_client_reads_only_the_first_512_characters():
    padded = CHROME_WINDOWS.ljust(512) + "Googlebot/2.1 (+http://www.google.com/bot.html)"
    assert parse_client(padded) == parse_client(CHROME_WINDOWS)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary().map(lambda b: b.decode("latin-1")))
def test_nothing_raises_on_arbitrary_user_agents(ua):
    assert isinstance(parse_client(ua), Client)
    assert isinstance(open_verdict(user_agent=ua, ip=ua), Verdict)
    assert isinstance(click_verdict(user_agent=ua, method=ua), Verdict)


def test_parse_client_is_cached_on_the_clipped_user_agent():
    classify._parse_clipped.cache_clear()
    first = parse_client(IPHONE_MAIL)
    assert parse_client(IPHONE_MAIL) is first
    padded = (IPHONE_MAIL + " ").ljust(512, "z")
    assert parse_client(padded + "x" * 1000) is parse_client(padded + "y" * 1000)  # same first 512
    info = classify._parse_clipped.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (2, 2, 4096)


# --- classify_open ------------------------------------------------------------------------


@pytest.mark.parametrize("ua", [CHROME_WINDOWS, IPHONE_MAIL, ANDROID_GMAIL, OUTLOOK_DESKTOP, MAC_MAIL])
def test_real_clients_open_as_humans(ua):
    assert open_verdict(user_agent=ua) == Verdict(False, None)


def test_gmail_image_proxy_is_a_human_open():
    # Gmail fetches through its proxy only when the reader opens the message
    assert open_verdict(user_agent=GOOGLE_IMAGE_PROXY, ip="66.249.84.1") == Verdict(False, None)


@pytest.mark.parametrize("ua", [APPLE_MPP, "  Mozilla/5.0\t"])
def test_apple_mpp_user_agent(ua):
    assert open_verdict(user_agent=ua) == Verdict(True, "apple_mpp_user_agent")


@pytest.mark.parametrize("ip", ["17.58.101.12", "::ffff:17.58.101.12", "2620:149:a44::10"])
def test_apple_mpp_proxy_ip(ip):
    networks = parse_networks("17.0.0.0/8, 2620:149::/32")
    assert open_verdict(user_agent=IPHONE_MAIL, ip=ip, apple_proxy_networks=networks) == Verdict(
        True, "apple_mpp_proxy_ip"
    )


@pytest.mark.parametrize("ip", ["18.0.0.1", "2620:14a::1", None, "", "not-an-ip", "17.0.0.1:443"])
def test_outside_apple_or_unparseable_ip_is_not_mpp(ip):
    assert open_verdict(ip=ip) == Verdict(False, None)


def test_mpp_wins_over_later_rules():
    # rules are ordered: the MPP user agent also arrives within a second of delivery
    assert open_verdict(user_agent=APPLE_MPP, at=SENT).reason == "apple_mpp_user_agent"
    assert open_verdict(user_agent=BARRACUDA, ip="17.1.1.1").reason == "apple_mpp_proxy_ip"


@pytest.mark.parametrize(
    "ua",
    [YAHOO_PROXY, BARRACUDA, MIMECAST, CURL, OFFICE_DISCOVERY, "python-requests/2.31.0", "Go-http-client/1.1",
     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
     "Proofpoint URL Defense", "okhttp/4.12.0", "Java/17.0.2", "Wget/1.21.4"],
)
def test_known_prefetchers(ua):
    assert open_verdict(user_agent=ua) == Verdict(True, "known_prefetcher")


def test_prefetcher_list_is_lower_case_and_spares_gmail():
    assert all(needle == needle.lower() for needle in KNOWN_PREFETCHERS)
    assert not any(needle in GOOGLE_IMAGE_PROXY.lower() for needle in KNOWN_PREFETCHERS)


@pytest.mark.parametrize(("seconds", "reason"), [(0.0, "too_soon_after_send"), (1.99, "too_soon_after_send"),
                                                 (2.0, None), (2.01, None)])
def test_open_too_soon_after_send_boundary(seconds, reason):
    verdict = open_verdict(at=SENT + timedelta(seconds=seconds))
    assert verdict == Verdict(reason is not None, reason)


def test_open_min_human_seconds_is_a_parameter_and_sent_at_may_be_unknown():
    assert open_verdict(at=SENT + timedelta(seconds=5), min_human_seconds=10).reason == "too_soon_after_send"
    assert open_verdict(sent_at=None, at=SENT) == Verdict(False, None)


def test_open_compares_instants_across_time_zones():
    eastern = timezone(timedelta(hours=-5))
    assert open_verdict(at=(SENT + timedelta(seconds=1)).astimezone(eastern)).reason == "too_soon_after_send"
    assert open_verdict(at=(SENT + timedelta(seconds=3)).astimezone(eastern)).reason is None


@pytest.mark.parametrize("ua", [None, "", "   "])
def test_open_without_user_agent(ua):
    assert open_verdict(user_agent=ua) == Verdict(True, "no_user_agent")
    assert open_verdict(user_agent=ua, at=SENT).reason == "too_soon_after_send"  # timing is checked first


# --- classify_click -----------------------------------------------------------------------


@pytest.mark.parametrize("ua", [CHROME_WINDOWS, IPHONE_MAIL, ANDROID_GMAIL, OUTLOOK_WORD_RENDERER])
def test_real_clients_click_as_humans(ua):
    assert click_verdict(user_agent=ua) == Verdict(False, None)


@pytest.mark.parametrize("method", ["HEAD", "head"])
def test_head_request(method):
    assert click_verdict(method=method) == Verdict(True, "head_request")
    assert click_verdict(method=method, user_agent=BARRACUDA).reason == "head_request"  # first rule wins


@pytest.mark.parametrize("ua", [BARRACUDA, MIMECAST, CURL, "python-requests/2.31.0"])
def test_scanner_user_agent_click(ua):
    assert click_verdict(user_agent=ua) == Verdict(True, "scanner_user_agent")


@pytest.mark.parametrize("ua", [None, "", " "])
def test_click_without_user_agent(ua):
    assert click_verdict(user_agent=ua, at=SENT) == Verdict(True, "no_user_agent")


@pytest.mark.parametrize(("seconds", "machine"), [(1.99, True), (2.0, False)])
def test_click_too_soon_after_send_boundary(seconds, machine):
    verdict = click_verdict(at=SENT + timedelta(seconds=seconds))
    assert verdict == (Verdict(True, "too_soon_after_send") if machine else Verdict(False, None))
    assert click_verdict(sent_at=None, at=SENT + timedelta(seconds=seconds)) == Verdict(False, None)


@pytest.mark.parametrize(("gap", "machine"), [(0.0, True), (0.9, True), (1.0, True), (1.1, False), (60.0, False)])
def test_burst_of_clicks_boundary(gap, machine):
    previous = [LATER - timedelta(minutes=5), LATER - timedelta(seconds=gap)]
    verdict = click_verdict(previous_click_times=previous)
    assert verdict == (Verdict(True, "burst_of_clicks") if machine else Verdict(False, None))


def test_burst_counts_a_previous_click_recorded_slightly_later():
    # concurrent requests can be stored out of order
    assert click_verdict(previous_click_times=[LATER + timedelta(seconds=0.5)]).reason == "burst_of_clicks"


# --- parse_networks -----------------------------------------------------------------------


def test_parse_networks():
    assert parse_networks("17.0.0.0/8, 2620:149::/32,") == (
        ipaddress.IPv4Network("17.0.0.0/8"),
        ipaddress.IPv6Network("2620:149::/32"),
    )
    assert parse_networks("") == ()
    assert APPLE == (ipaddress.IPv4Network("17.0.0.0/8"),)


@pytest.mark.parametrize("bad", ["17.0.0.0/33", "apple", "17.0.0.0/8;10.0.0.0/8"])
def test_parse_networks_names_the_bad_entry(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_networks(f"10.0.0.0/8, {bad}")
