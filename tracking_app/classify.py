"""Who opened or clicked: parse the user agent, and flag machine opens and bot clicks.

Machine events are flagged with a short reason and never dropped, so reports can
show both "human" and "all" (DESIGN.md, Event vocabulary). Everything here is a
pure function of its arguments: time comes in as `at`, so boundaries test without
sleeping.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import ua_parser

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Apple's own block. MPP fetches come from Apple-operated relays; operators can

# "bot" only where a crawler name ends ("Googlebot/2.1", "Slackbot-LinkExpanding", "bingbot;"): a bare
# substring would flag Cubot phones and names like "Abbott".
# Lower-case substrings of user agents that fetch mail without a person behind them:
# link scanners in mail gateways, prefetching webmail proxies, scripts and crawlers.
# "googleimageproxy" is deliberately absent: Gmail fetches images only when the
# reader opens the message, so those opens are human.
KNOWN_PREFETCHERS: tuple[str, ...] = (
    "yahoomailproxy", "barracuda", "mimecast", "proofpoint", "symantec", "forcepoint",
    "trendmicro", "microsoft office existence discovery", "linkchecker", "bot/", "bot-", "bot;", "crawler",
    "spider", "curl/", "python-requests", "wget", "headlesschrome", "go-http-client",
    "okhttp", "java/",
)

_MAX_UA = 512  # real UAs are far shorter; bounds parse time and cache memory
_APPLE_MPP_UA = "Mozilla/5.0"  # MPP sends exactly this, with no platform details
_IMAGE_PROXIES = ("GmailImageProxy", "YahooMailProxy")
# ua-parser's version for these is not the product's: Outlook 16.0 (also Microsoft 365)
# comes out as "2016" and Apple Mail as the WebKit build "605", so show the name alone.
_FIXED_NAMES = {"GmailImageProxy": "Gmail Image Proxy", "YahooMailProxy": "Yahoo Mail Proxy",
                "Outlook": "Outlook", "Apple Mail": "Apple Mail"}
_MOBILE_OS = ("iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS")
_DESKTOP_OS = ("Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD")
_DESKTOP_MAIL = ("Outlook", "Thunderbird", "Apple Mail")  # desktop apps that may omit the OS


@dataclass(frozen=True)
class Client:
    device: str  # "desktop" | "mobile" | "tablet" | "bot" | "proxy" | "unknown"
    browser: str  # e.g. "Chrome 120", "Apple Mail", "Outlook", "Gmail Image Proxy", "unknown"
    os: str  # e.g. "Windows 10", "iOS 17.0", "Mac OS X 10.15", "unknown"


@dataclass(frozen=True)
class Verdict:
    is_machine: bool
    reason: str | None  # short snake_case reason, None when human


HUMAN = Verdict(False, None)
UNKNOWN_CLIENT = Client("unknown", "unknown", "unknown")


def _clip(user_agent: str | None) -> str:
    # Headers are attacker-controlled: bound the length and drop lone surrogates,
    # which the Rust-accelerated parser refuses to encode.
    if not isinstance(user_agent, str):
        return ""
    return user_agent[:_MAX_UA].encode("utf-8", "replace").decode("utf-8").strip()


def _is_prefetcher(ua: str) -> bool:
    lowered = ua.lower()
    return any(needle in lowered for needle in KNOWN_PREFETCHERS)


def parse_client(user_agent: str | None) -> Client:
    """Describe the device, browser and OS behind a user agent; never raises."""
    return _parse_clipped(_clip(user_agent))


@functools.lru_cache(maxsize=4096)  # a campaign's opens come from a few hundred distinct UAs
def _parse_clipped(ua: str) -> Client:
    if not ua:
        return UNKNOWN_CLIENT
    if ua == _APPLE_MPP_UA:
        return Client("proxy", "Apple Mail Privacy Protection", "unknown")
    try:
        result = ua_parser.parse(ua)
    except Exception:  # noqa: BLE001 -- a third-party parser on hostile input must not lose the event
        return UNKNOWN_CLIENT
    agent, os_, dev = result.user_agent, result.os, result.device
    family = agent.family if agent and agent.family != "Other" else ""
    os_family = os_.family if os_ and os_.family != "Other" else ""

    if family in _FIXED_NAMES:
        browser = _FIXED_NAMES[family]
    elif family:
        browser = f"{family} {agent.major}" if agent.major else family
    else:
        browser = "unknown"
    os_version = ".".join(v for v in (os_.major, os_.minor) if v) if os_family else ""
    os_name = f"{os_family} {os_version}".strip() or "unknown"

    lowered = ua.lower()
    dev_text = f"{dev.family} {dev.brand} {dev.model}".lower() if dev else ""
    if family in _IMAGE_PROXIES:
        device = "proxy"
    elif _is_prefetcher(ua) or "spider" in dev_text:
        device = "bot"
    elif "ipad" in dev_text or "tablet" in dev_text or "tablet" in lowered or (
        # Android tablets are the Android UAs without the "Mobile" token
        os_family == "Android" and "mobile" not in lowered
    ):
        device = "tablet"
    elif os_family in _MOBILE_OS or "mobile" in lowered:
        device = "mobile"
    elif os_family in _DESKTOP_OS or family in _DESKTOP_MAIL:
        device = "desktop"
    else:
        device = "unknown"
    return Client(device, browser, os_name)


def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """Parse comma-separated CIDRs like "17.0.0.0/8, 2620:149::/32"; ValueError names a bad one."""
    networks = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue  # tolerate a trailing comma in an env var
        try:
            # strict=False like the tracker's other CIDR settings: "17.1.2.3/8" means 17.0.0.0/8
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"bad network {entry!r} in {spec!r}: {exc}") from None
    return tuple(networks)


def _in_networks(ip: str | None, networks: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return False
    # behind a dual-stack proxy an IPv4 client can arrive as ::ffff:a.b.c.d
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


# per kind of event, the rules that come before "too soon after sending" in its classifier's order
BEFORE_TOO_SOON = {
    "opened": frozenset({"head_request", "apple_mpp_user_agent", "apple_mpp_proxy_ip", "known_prefetcher"}),
    "clicked": frozenset({"head_request", "scanner_user_agent", "no_user_agent"}),
}


def too_soon_after_the_fact(kind: str, reason: str | None, sent_at: datetime | None, at: datetime,
                            min_human_seconds: float = 2.0) -> Verdict | None:
    """For an open or click classified without its message's sent_at (journaled while the
    database was down): the verdict now that sent_at is known, or None to keep the one it has."""
    if kind in BEFORE_TOO_SOON and reason not in BEFORE_TOO_SOON[kind] and _too_soon(sent_at, at, min_human_seconds):
        return Verdict(True, "too_soon_after_send")
    return None


def _too_soon(sent_at: datetime | None, at: datetime, min_human_seconds: float) -> bool:
    # nobody reads and acts on a message within a second or two of it leaving us
    return sent_at is not None and at - sent_at < timedelta(seconds=min_human_seconds)


def classify_open(*, user_agent: str | None, ip: str | None, sent_at: datetime | None, at: datetime,
                  apple_proxy_networks: Sequence[IPNetwork], min_human_seconds: float = 2.0,
                  method: str = "GET") -> Verdict:
    """Flag an open pixel fetch as machine-made (with why) or human."""
    # a mail client showing an image GETs it; a HEAD is a link checker or gateway probing the URL
    if method.upper() == "HEAD":
        return Verdict(True, "head_request")
    ua = _clip(user_agent)
    # Apple MPP preloads every image on delivery, whether or not anyone reads the mail.
    if ua == _APPLE_MPP_UA:
        return Verdict(True, "apple_mpp_user_agent")
    if _in_networks(ip, apple_proxy_networks):
        return Verdict(True, "apple_mpp_proxy_ip")
    # gateways and webmail prefetchers fetch images before (or without) a reader
    if _is_prefetcher(ua):
        return Verdict(True, "known_prefetcher")
    if _too_soon(sent_at, at, min_human_seconds):
        return Verdict(True, "too_soon_after_send")
    # every real mail client sends a user agent; scripts often do not
    if not ua:
        return Verdict(True, "no_user_agent")
    return HUMAN


def classify_click(*, method: str, user_agent: str | None, sent_at: datetime | None, at: datetime,
                   previous_click_times: Sequence[datetime], min_human_seconds: float = 2.0) -> Verdict:
    """Flag a link click as a bot's (with why) or human; previous_click_times excludes this click."""
    # browsers follow links with GET; link checkers probe with HEAD
    if (method or "").upper() == "HEAD":
        return Verdict(True, "head_request")
    ua = _clip(user_agent)
    # security gateways follow every link in a message to scan the target
    if _is_prefetcher(ua):
        return Verdict(True, "scanner_user_agent")
    if not ua:
        return Verdict(True, "no_user_agent")
    if _too_soon(sent_at, at, min_human_seconds):
        return Verdict(True, "too_soon_after_send")
    # a person cannot click several links of one message within a second; a scanner does
    if any(abs(at - earlier) <= timedelta(seconds=1.0) for earlier in previous_click_times):
        return Verdict(True, "burst_of_clicks")
    return HUMAN
