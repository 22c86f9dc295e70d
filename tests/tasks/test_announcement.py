"""Announcements: the operator's Markdown made safe HTML and a text part, in the layout, tracked, per variant."""

from __future__ import annotations

import email
import re
from email import policy
from html.parser import HTMLParser

import pytest

from tasks.announcement import SAMPLE_BODY, to_html, words
from tasks.email_types import SAMPLE_NOW
from tasks.render import Renderer, message_context, track
from tutormax.links import Links
from tutormax.settings import load_settings

ATTACKS = [
    "<script>alert(1)</script>",
    '<img src="x" onerror="alert(1)">',
    "[click](javascript:alert(1))",
    '<a href="https://x.org" onclick="steal()">x</a>',
    "![pixel](data:image/png;base64,AAAA)",
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    "[x](vbscript:msgbox)",
    "<form action=https://evil.example><input name=p></form>",
    "[x](JaVaScRiPt:alert(1))",
    "![x](https://example.com/a.png \"t\")",
]


class _Elements(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("markdown", ATTACKS)
def test_nothing_executable_survives(markdown):
    html = to_html(f"Hello\n\n{markdown}\n\n[ok](https://example.com/a)")
    for tag, attrs in _Elements(html).found:
        assert tag in {"p", "a", "img"}, html
        assert not [a for a in attrs if a.startswith("on") or a in ("style", "class", "id")], html
        for url in (attrs.get("href"), attrs.get("src")):
            assert url is None or url.startswith(("https://", "http://", "mailto:")), html
    assert '<a href="https://example.com/a"' in html  # the good link next to it stays


def test_raw_html_in_markdown_is_shown_as_text_not_obeyed():
    assert "&lt;b&gt;bold&lt;/b&gt;" in to_html("<b>bold</b>")


def test_links_only_to_http_https_and_mailto():
    html = to_html("[a](https://a.example) [b](http://b.example) [c](mailto:c@example.com) [d](ftp://d.example) "
                   "[e](file:///etc/passwd) bare https://f.example/x and g@example.com")
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs == ["https://a.example", "http://b.example", "mailto:c@example.com", "https://f.example/x",
                     "mailto:g@example.com"]


def test_markdown_becomes_styled_html_and_readable_text():
    made = words("Winter", "Shorter hours", SAMPLE_BODY, "marketing_emails")
    assert '<strong>shorter hours</strong>' in made.body_html and "<table" in made.body_html
    assert re.search(r'<h2 style="[^"]*font-size: 19px', made.body_html)  # the look is inline: clients drop <style>
    text = made.body_text
    assert "**" not in text and "##" not in text and "](" not in text
    assert "holiday calendar: https://example.com/holidays, or write to help@example.com." in text
    assert re.search(r"Weekdays\s+9 am to 3 pm", text)


def _render(category="marketing_emails", content=None):
    settings = load_settings()
    links = Links(settings)
    metadata = {"category": category, "content": content or {"subject": "Winter break hours", "preheader": "Shorter",
                                                             "body_markdown": SAMPLE_BODY}}
    context = message_context(template_type="announcement", message_id=42, recipient_name="Imani Nelson",
                              metadata=metadata, settings=settings, links=links, now=SAMPLE_NOW)
    rendered = Renderer(settings.timezone).render("announcement", "v1", context)
    return track(rendered, links, 42, {context["unsubscribe_url"], context["preferences_url"]})


def test_in_the_layout_with_subject_preheader_and_tracked_links():
    out = _render()
    assert out.subject == "Winter break hours"
    assert re.search(r'<div class="preheader"[^>]*>Shorter', out.html) and "Hi Imani," in out.html and "Hi Imani," in out.text
    assert "https://example.com/holidays" not in out.html and "https://example.com/holidays" not in out.text
    assert out.html.count("/c/") >= 2 and "/c/" in out.text and "/o/" in out.html  # clicks and the open pixel
    assert "100 Learning Way" in out.html and "/u/" in out.text  # CAN-SPAM footer and unsubscribe, both parts


def test_the_footer_says_why_by_category():
    assert "news and offers" in _render().text
    notice = _render("system_notifications")
    assert "service notice" in notice.text and "news and offers" not in notice.html


def test_the_operator_s_words_are_escaped_in_the_subject_and_preheader():
    out = _render(content={"subject": "Fish & <chips>", "preheader": "<b>now</b>", "body_markdown": "x"})
    assert out.subject == "Fish & <chips>"
    assert "&lt;b&gt;now&lt;/b&gt;" in out.html


def test_a_campaign_s_variants_come_from_its_stored_content(enqueue, db_url, smtp_server, now):
    from sqlalchemy import update

    from db.models import EmailMessage
    from db.session import transaction
    from tasks import campaign_control
    from tasks.campaign_control import ABTest, CampaignForm, Content
    from tasks.deliver import deliver_batch

    form = CampaignForm(name="Hours", segment="all-tutors", content=Content(subject="A words", body_markdown="aaa"),
                        ab_test=ABTest(b=Content(subject="B words", body_markdown="bbb")))
    cid = campaign_control.create(form, actor="ops", now=now).campaign_id
    ids = {v: enqueue(f"{v}@example.com", template_type="announcement") for v in ("a", "b")}
    with transaction(db_url) as s:
        for variant, mid in ids.items():  # as the planner writes them: the variant on the row and in metadata
            s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(
                ab_variant=variant, campaign_id=cid, message_metadata={"campaign_id": cid, "variant": variant}))
    deliver_batch.fn(now=now, limit=10)
    got = {rcpt[0]: email.message_from_bytes(raw, policy=policy.default) for rcpt, raw in smtp_server.received}
    assert got["a@example.com"]["Subject"] == "A words" and got["b@example.com"]["Subject"] == "B words"
    assert "bbb" in got["b@example.com"].get_body(("plain",)).get_content()
