"""The announcement type: an operator's Markdown, made safe HTML and a text part, in the base layout.

The words live on the campaign (db.campaigns.content), not on each of its messages: a message's
metadata names the campaign and its variant, and each process turns a variant's Markdown into
HTML once. Links are tracked afterwards like any template's (tasks.render.track).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import css_inline
import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

from db.events import Category, Priority
from db.models import EmailCampaign
from db.session import transaction
from tasks.email_types import Metadata, email_type
from tasks.render import text_from_html
from tutormax.links import Links
from tutormax.settings import get_settings

# what Markdown can make, and nothing else: no script, style, iframe, form or event attribute
_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "s", "del", "code", "pre",
         "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title", "width", "height"},
               "ol": {"start"}, "th": {"align"}, "td": {"align"}}
_SCHEMES = {"http", "https", "mailto"}
# the body's own look, inlined into its elements once per variant (mail clients drop <style> blocks);
# the template's <style> keeps only the dark-mode overrides
_BODY_CSS = """
h1,h2,h3{margin:24px 0 8px;line-height:1.35;color:#111827}
h1{font-size:22px} h2{font-size:19px} h3{font-size:17px}
p{margin:0 0 16px}
a{color:#2563eb}
ul,ol{margin:0 0 16px;padding-left:24px}
li{margin:0 0 6px}
blockquote{margin:0 0 16px;padding:0 0 0 12px;border-left:3px solid #93c5fd;color:#4b5563}
table{width:100%;margin:0 0 16px;border-collapse:collapse;font-size:14px;line-height:20px}
th,td{padding:6px 8px;border-bottom:1px solid #e5e7eb;text-align:left}
img{max-width:100%;height:auto}
pre{white-space:pre-wrap;font-size:13px}
"""


def _markdown() -> MarkdownIt:
    # CommonMark plus tables, strikethrough and bare URLs made links; raw HTML is escaped, not passed on
    return MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": True}).enable(
        ["table", "strikethrough", "linkify", "replacements", "smartquotes"])


def to_html(markdown: str) -> str:
    """The operator's Markdown as sanitized HTML: links only to http(s) and mailto."""
    html = _markdown().render(markdown)
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_SCHEMES, link_rel="noopener noreferrer")


@dataclass(frozen=True)
class Words:
    """One variant of a campaign, ready for the template."""

    subject: str
    preheader: str
    body_html: Markup
    body_text: str
    category: str


def words(subject: str, preheader: str, body_markdown: str, category: str) -> Words:
    """A variant's subject, preheader and body, rendered once."""
    html = to_html(body_markdown)
    return Words(subject, preheader, Markup(css_inline.inline_fragment(html, _BODY_CSS)), text_from_html(html), category)


@lru_cache(maxsize=64)
def _stored(database_url: str, campaign_id: str, variant: str) -> Words:
    # a campaign's words do not change once it exists (there is no edit), so a process keeps them
    with transaction(database_url) as session:
        campaign = session.get(EmailCampaign, campaign_id)
    chosen = (campaign.content or {}).get(variant) if campaign is not None else None
    if chosen is None:
        raise LookupError(f"campaign {campaign_id!r} has no content for variant {variant!r}")
    return words(chosen["subject"], chosen.get("preheader", ""), chosen["body_markdown"], campaign.category)


def announcement_context(metadata: Metadata, links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    """The campaign's words for this message's variant (metadata may carry them itself: previews)."""
    if "content" in metadata:
        c = metadata["content"]
        found = words(c["subject"], c.get("preheader", ""), c["body_markdown"], metadata["category"])
    else:
        found = _stored(get_settings().database_url, metadata["campaign_id"], metadata.get("variant") or "a")
    return {"subject": found.subject, "preheader": found.preheader, "body_html": found.body_html,
            "body_text": found.body_text, "service_notice": found.category == Category.SYSTEM_NOTIFICATIONS.value}


SAMPLE_BODY = """## Winter break hours

Our support team keeps **shorter hours** from December 22 to January 2:

| Days | Hours (ET) |
|---|---|
| Weekdays | 9 am to 3 pm |
| Weekends | closed |

Sessions you booked are not affected. See the [holiday calendar](https://example.com/holidays), or write to
help@example.com.

- Book early: evening slots fill fast.
- Reschedule at least 24 hours ahead.
"""

ANNOUNCEMENT = email_type(
    "announcement", category=Category.MARKETING_EMAILS, priority=Priority.LOW, context=announcement_context,
    sample=("Imani Nelson", {"category": Category.MARKETING_EMAILS.value, "content": {
        "subject": "Winter break hours", "preheader": "Shorter support hours from Dec 22 to Jan 2",
        "body_markdown": SAMPLE_BODY}}),
    variants_in_content=True)
