"""Rendering: Jinja2 templates -> subject, HTML (CSS inlined) and text, per message."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound, select_autoescape
from markupsafe import Markup

from tasks import email_types
from tasks.preinline import Unsupported, base_of, preinline
from tutormax.links import Links
from tutormax.settings import PROJECT_ROOT, Settings

TEMPLATES_DIR = PROJECT_ROOT / "templates"
_TEMPLATE_NAME = re.compile(r"^v\d+(_[a-z])?$")
_WHITESPACE = re.compile(r"\s+")


class TemplateMissing(LookupError):
    """No template exists for this type, version and variant."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def _local(value: datetime | date, tz: ZoneInfo) -> datetime | date:
    return value.astimezone(tz) if isinstance(value, datetime) else value


def _filters(tz: ZoneInfo) -> dict[str, Callable[..., str]]:
    def format_date(value: datetime | date, fmt: str = "%A, %B %-d") -> str:
        return _local(value, tz).strftime(fmt)

    def format_datetime(value: datetime, fmt: str = "%A, %B %-d at %-I:%M %p %Z") -> str:
        return _local(value, tz).strftime(fmt)

    def format_number(value: float | int, decimals: int = 0) -> str:
        return f"{value:,.{decimals}f}"

    return {"format_date": format_date, "format_datetime": format_datetime, "format_number": format_number}


def template_name(version: str, variant: str | None) -> str:
    """v1 + variant b -> "v1_b"; variant a (the control) is the version itself."""
    return version if not variant or variant == "a" else f"{version}_{variant}"


@dataclass(frozen=True)
class Templates:
    html: Template
    text: Template | None  # None: the text part is made from the HTML
    inlined: Template | None  # html with its CSS inlined ahead of rendering (tasks.preinline)


_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(((?:https?://|mailto:)[^)\s]+)\)")
_BLANK_LINES = re.compile(r"\n{3,}")


def _link_text(match: re.Match[str]) -> str:
    words, target = match[1].strip(), match[2]
    shown = target.removeprefix("mailto:")  # an address reads as itself
    return shown if words in ("", target, shown) else f"{words}: {shown}"


def text_from_html(html: str) -> str:
    """The plain-text part for a template without a hand-written one: the page's words, links as "text: URL"."""
    from inscriptis import get_text
    from inscriptis.css_profiles import CSS_PROFILES
    from inscriptis.model.config import ParserConfig

    text = get_text(html, ParserConfig(css=CSS_PROFILES["strict"], display_links=True))
    text = _MARKDOWN_LINK.sub(_link_text, text)
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", lines).strip("\n")


class Renderer:
    """Compiles each template once and renders many messages from it."""

    def __init__(self, timezone: str, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # compiled templates stay cached for the process
            cache_size=1000,
        )
        self.env.filters.update(_filters(ZoneInfo(timezone)))
        # keep @media rules (mobile and dark mode) in <style>; everything else goes inline for Gmail
        self.inliner = css_inline.CSSInliner(keep_style_tags=False, keep_at_rules=True)
        self._cache: dict[tuple[str, str], Templates] = {}

    def templates(self, template_type: str, name: str) -> Templates:
        """The templates for a type and name like "v1" or "v1_b"."""
        key = (template_type, name)
        if key not in self._cache:
            if not _TEMPLATE_NAME.match(name) or not re.fullmatch(r"[a-z_]+", template_type):
                raise TemplateMissing(f"bad template name {template_type}/{name}")
            version = name.split("_")[0]
            try:
                html = self.env.get_template(f"{template_type}/{name}.html")
            except TemplateNotFound as exc:
                raise TemplateMissing(f"no template {template_type}/{name}: {exc}") from None
            try:  # a variant without a text part of its own shares its version's
                text = self.env.select_template([f"{template_type}/{name}.txt", f"{template_type}/{version}.txt"])
            except TemplateNotFound:
                text = None
            self._cache[key] = Templates(html, text, self._preinlined(html))
        return self._cache[key]

    def _preinlined(self, html: Template) -> Template | None:
        """The HTML template with its CSS inlined once, or None where that must wait for each message."""
        loader = self.env.loader
        assert loader is not None and html.name is not None
        child = loader.get_source(self.env, html.name)[0]
        base_name = base_of(child)
        if base_name is None:
            return None
        try:
            base = loader.get_source(self.env, base_name)[0]
            return self.env.from_string(preinline(child, base, self.inliner))
        except (Unsupported, TemplateNotFound):
            return None

    def render(self, template_type: str, name: str, context: dict[str, Any]) -> Rendered:
        """Subject, inlined HTML and text for one message."""
        templates = self.templates(template_type, name)
        html_t = templates.html
        subject_parts = html_t.blocks["subject"](html_t.new_context(context))
        # the block renders autoescaped HTML; a Subject header wants plain text on one line
        subject = _WHITESPACE.sub(" ", Markup("".join(subject_parts)).unescape()).strip()
        if templates.inlined is not None:
            html = templates.inlined.render(context)
        else:
            html = self.inliner.inline(html_t.render(context))
        text = templates.text.render(context) if templates.text is not None else text_from_html(html)
        return Rendered(subject=subject, html=html, text=text + "\n")

    def available(self) -> list[tuple[str, str]]:
        """Every (type, name) that has an HTML template."""
        found = []
        for path in sorted(Path(self.env.loader.searchpath[0]).glob("*/v*.html")):  # type: ignore[attr-defined]
            found.append((path.parent.name, path.stem))
        return found


@lru_cache(maxsize=4)
def get_renderer(timezone: str) -> Renderer:
    """One renderer (and template cache) per process and time zone."""
    return Renderer(timezone)


def brand(settings: Settings) -> dict[str, str]:
    """Branding shared by every template."""
    return {
        "name": settings.smtp_from_name,
        "logo_text": settings.smtp_from_name,
        "physical_address": settings.physical_address,
        "support_url": f"{settings.tracking_base_url}/help",
    }


_HONORIFICS = {"mr", "mrs", "ms", "mx", "dr", "prof"}


def first_name(name: str | None) -> str:
    """What a greeting calls someone: "Imani" for "Imani Nelson", "Dr. Okafor" kept whole, "there" for nobody."""
    words = (name or "").split()
    if not words:
        return "there"
    if words[0].lower().rstrip(".") in _HONORIFICS:
        return " ".join(words)
    return words[0]


def message_context(
    *, template_type: str, message_id: int, recipient_name: str | None, metadata: dict[str, Any],
    settings: Settings, links: Links, now: datetime,
) -> dict[str, Any]:
    """Everything a template may reference for one message."""
    context = {
        "brand": brand(settings),
        "recipient_name": recipient_name or "there",
        "first_name": first_name(recipient_name),
        "unsubscribe_url": links.unsubscribe(message_id),
        "preferences_url": links.preferences(message_id),
        "dashboard_url": settings.dashboard_url,
        "now": now,
    }
    context.update(email_types.get(template_type).context(metadata, links, message_id, now))
    return context


_ANCHOR = re.compile(r"<a\s[^>]*>", re.IGNORECASE)
_HREF = re.compile(r'\bhref\s*=\s*"([^"]*)"', re.IGNORECASE)
_LINK_NAME = re.compile(r'\bdata-link-id\s*=\s*"([^"]*)"', re.IGNORECASE)
# a URL in running text ends before the punctuation that follows it ("see https://x.org/a, or")
_TEXT_URL = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]")


def track(rendered: Rendered, links: Links, message_id: int, own_routes: set[str]) -> Rendered:
    """Rewrite every http(s) link to its tracked form and add the open pixel.

    own_routes (unsubscribe, preferences) keep their URLs: they have routes of their own.
    A link's name comes from its data-link-id (stable per template link), so two links to the
    same target (a button and a footer link, say) keep apart; a link without one is named by
    its position, and a text-part link takes the name of the first HTML link to its target.
    """
    names: dict[str, str] = {}  # target -> the first name it was linked under
    urls: dict[tuple[str, str], str] = {}
    anchors = itertools.count(1)

    def tracked(target: str, name: str) -> str:
        names.setdefault(target, name)
        if (target, name) not in urls:  # the same link in HTML and text is signed once
            urls[target, name] = links.click(message_id, name, target)
        return urls[target, name]

    def rewrite_anchor(match: re.Match[str]) -> str:
        tag = match.group(0)
        href = _HREF.search(tag)
        if not href:
            return tag
        target = Markup(href.group(1)).unescape()
        if not target.startswith(("http://", "https://")) or target in own_routes:
            return tag
        position = next(anchors)
        named = _LINK_NAME.search(tag)
        name = named.group(1) if named else f"link_{position}"
        return tag[: href.start(1)] + str(Markup.escape(tracked(target, name))) + tag[href.end(1) :]

    html = _ANCHOR.sub(rewrite_anchor, rendered.html)
    pixel = f'<img src="{links.open_pixel(message_id)}" width="1" height="1" alt="" style="display:block;border:0;height:1px;width:1px">'
    closing = html.rfind("</body>")
    if closing < 0:  # lower-casing the whole page costs more than the rest of tracking: only when needed
        closing = html.lower().rfind("</body>")
    html = html[:closing] + pixel + html[closing:] if closing >= 0 else html + pixel

    counter = iter(range(1, 1000))

    def rewrite_text(match: re.Match[str]) -> str:
        target = match.group(0)
        if target in own_routes:
            return target
        return tracked(target, names.get(target) or f"text_{next(counter)}")

    return Rendered(subject=rendered.subject, html=html, text=_TEXT_URL.sub(rewrite_text, rendered.text))
