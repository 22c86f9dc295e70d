"""Simulated recipients for the demo: real HTTP to the tracker, as mail clients and scanners behave."""

from __future__ import annotations

import email
import hashlib
import mailbox
import random
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from email import policy
from email.utils import format_datetime
from pathlib import Path

DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Version/4.0 Chrome/119.0.0.0 Mobile Safari/537.36")
APPLE_MPP = "Mozilla/5.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"

_PIXEL = re.compile(r'<img src="([^"]+/o/[^"]+\.gif)"')
_CLICK = re.compile(r'href="([^"]+/c/[^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _fetch(url: str, user_agent: str, method: str = "GET", data: dict | None = None) -> tuple[int, str | None]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method=method, headers={"User-Agent": user_agent})
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, None
    except urllib.error.HTTPError as answer:  # 302 from a click arrives here: the opener does not follow it
        return answer.code, answer.headers.get("Location")


def _click_and_rate(url: str, user_agent: str, rng: random.Random, tally: Counter) -> None:
    status, landing = _fetch(url, user_agent)
    tally["clicks"] += 1
    if status == 302 and landing and "/s/" in landing:  # a tutor answers the first-session check-in
        _fetch(landing, user_agent)
        worried = rng.random() < 0.5
        answers = {"rating": rng.choice("12") if worried else rng.choice("345"),
                   "engaged": "no" if worried else "yes", "comment": "Student seemed lost." if worried else ""}
        _fetch(landing, user_agent, "POST", {**answers, **({"concern": "on"} if worried else {})})
        tally["surveys_answered"] += 1
    if status == 302 and landing and "/f/" in landing:
        _fetch(landing, user_agent)  # the feedback page: GET shows the form
        if rng.random() < 0.7:
            stars = rng.choices("12345", weights=[1, 1, 3, 8, 12])[0]
            _fetch(landing, user_agent, "POST", {"rating": stars, "comment": "Very helpful session!"})
            tally["feedback_submitted"] += 1


def complaint(raw: bytes, at: datetime) -> bytes:
    """What a mailbox provider's feedback loop sends when its user marks a message as spam (RFC 5965 ARF)."""
    original = email.message_from_bytes(raw)
    recipient = (original["X-Sink-Rcpt-To"] or original["To"] or "").strip()
    boundary = "feedback-report-boundary-7d1"
    text = f"""From: Feedback Loop <feedback@fbl.mail.example>
To: {(original["Return-Path"] or "").strip("<> ")}
Subject: Complaint about a message from tutormax.example
Date: {format_datetime(at)}
Message-ID: <arf-{hashlib.sha1(raw).hexdigest()[:16]}@fbl.mail.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.10 on {format_datetime(at)}.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: FeedbackLoop/1.0
Version: 1
Original-Mail-From: {original["Return-Path"]}
Original-Rcpt-To: <{recipient}>
Arrival-Date: {format_datetime(at)}
Source-IP: 192.0.2.10

--{boundary}
Content-Type: message/rfc822

"""
    return (text.replace("\n", "\r\n").encode() + raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            + f"\r\n--{boundary}--\r\n".encode())


def simulate(maildir: Path, seed: int = 7, bounce_maildir: Path | None = None) -> Counter:
    """Open, click, rate and unsubscribe over HTTP like a realistic mix of recipients and machines; one files a
    complaint through their mailbox provider's feedback loop, into the bounce Maildir."""
    rng = random.Random(seed)
    tally: Counter = Counter()
    box = mailbox.Maildir(maildir, create=False)
    for index, key in enumerate(sorted(box.keys())):
        message = email.message_from_bytes(box.get_bytes(key), policy=policy.default)
        html = message.get_body(("html",)).get_content()
        pixel = _PIXEL.search(html)
        links = _CLICK.findall(html)
        unsubscribe = message["List-Unsubscribe"].strip("<>")
        roll = rng.random()
        if "first session" in message["Subject"] and links:  # tutors answer their check-ins; some are worried
            persona = "tutor_checkin"
            if pixel:
                _fetch(pixel.group(1), DESKTOP)
            _click_and_rate(links[0], DESKTOP, random.Random(index), tally)
        elif roll < 0.10:  # a gateway scanner: HEAD then GET every link, at once
            persona = "link_scanner"
            for link in links:
                _fetch(link, SCANNER, "HEAD")
                _fetch(link, SCANNER)
                tally["clicks"] += 2
            if pixel:
                _fetch(pixel.group(1), SCANNER)
        elif roll < 0.25:  # Apple Mail Privacy Protection prefetches the pixel; sometimes the reader clicks later
            persona = "apple_mpp"
            if pixel:
                _fetch(pixel.group(1), APPLE_MPP)
            if links and rng.random() < 0.3:
                _click_and_rate(links[0], IPHONE, rng, tally)
        elif roll < 0.85:  # a person reading on desktop or phone
            persona = "human"
            agent = rng.choice([DESKTOP, OUTLOOK, IPHONE, ANDROID])
            if pixel:
                _fetch(pixel.group(1), agent)
            # the simulated truth for the demo's A/B test: variant b's subject and button draw more clicks
            click_chance = 0.7 if message["Subject"].startswith("Quick question") else 0.5
            if links and rng.random() < click_chance:
                _click_and_rate(links[0], agent, rng, tally)
        else:
            persona = "ignored"
        tally[persona] += 1
        if index % 25 == 12:  # the mail client's own unsubscribe button (RFC 8058 one-click POST)
            status, _ = _fetch(unsubscribe, DESKTOP, "POST", {"List-Unsubscribe": "One-Click"})
            tally["one_click_unsubscribes"] += status == 200
        if index == 7 and bounce_maildir is not None:  # "Report spam", instead of unsubscribing
            mailbox.Maildir(bounce_maildir, create=False).add(complaint(box.get_bytes(key), datetime.now(timezone.utc)))
            tally["spam_complaints"] += 1
    return tally
