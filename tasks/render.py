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
    text: Template
    inlined: Template | None  # html with its CSS inlined ahead of rendering (tasks.preinline)


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
                text = self.env.select_template([f"{template_type}/{name}.txt", f"{template_type}/{version}.txt"])
            except TemplateNotFound as exc:
                raise TemplateMissing(f"no template {template_type}/{name}: {exc}") from None
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
        text = templates.text.render(context) + "\n"
        return Rendered(subject=subject, html=html, text=text)

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


def _feedback_reminder(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    ended = datetime.fromisoformat(meta["session_ended_at"])
    return {
        "student_name": meta["student_name"],
        "tutor_name": meta["tutor_name"],
        "subject_name": meta["subject_name"],
        "session_date": ended,
        "hours_since_session": max(0, int((now - ended).total_seconds() // 3600)),
        "feedback_url": links.feedback(message_id),
        "is_parent": bool(meta["is_parent"]),
    }


def _feedback_invitation(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    context = _feedback_reminder(meta, links, message_id, now)
    del context["hours_since_session"]
    return context


def _first_session_checkin(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    return {"tutor_name": meta["tutor_name"], "student_name": meta["student_name"], "subject_name": meta["subject_name"],
            "session_date": datetime.fromisoformat(meta["session_ended_at"]), "survey_url": links.survey(message_id)}


def _intervention_notification(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("manager_name", "tutor_name", "reason", "reschedules_7d", "reschedules_14d", "survey_rating",
            "survey_comment", "student_name")
    return {**{k: meta.get(k) for k in keys}, "dashboard_url": f"{links.base}/help"}


def _rescheduling_alert(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    return {"tutor_name": meta["tutor_name"], "reschedules_7d": meta["reschedules_7d"],
            "reschedules_14d": meta["reschedules_14d"], "scheduling_help_url": f"{links.base}/help#scheduling",
            "support_url": f"{links.base}/help"}


def _dates(meta: dict[str, Any]) -> dict[str, Any]:
    return {"period_start": date.fromisoformat(meta["period_start"]), "period_end": date.fromisoformat(meta["period_end"])}


def _session_rows(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**row, "date": date.fromisoformat(row["date"])} for row in meta.get("sessions", [])]


def _weekly_digest(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("audience", "sessions_completed", "no_shows", "reschedules", "average_rating", "feedback_count", "highlights")
    return {**{k: meta[k] for k in keys}, **_dates(meta), "sessions": _session_rows(meta),
            "dashboard_url": f"{links.base}/help"}


def _parent_notification(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("student_name", "kind", "sessions_completed", "no_shows", "average_rating")
    return {**{k: meta[k] for k in keys}, **_dates(meta), "sessions": _session_rows(meta),
            "dashboard_url": f"{links.base}/help"}


def _manager_digest(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    escalations = [{**e, "submitted_at": datetime.fromisoformat(e["submitted_at"])} for e in meta["escalations"]]
    return {"manager_name": meta["manager_name"], **_dates(meta), "tutors": meta["tutors"], "escalations": escalations,
            "dashboard_url": f"{links.base}/help"}


def _monthly_summary(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("student_name", "month_label", "sessions_completed", "total_minutes", "tutors", "subjects")
    return {**{k: meta[k] for k in keys}, "dashboard_url": f"{links.base}/help"}


def _performance_report(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    return {"tutor_name": meta["tutor_name"], "month_label": meta["month_label"], "metrics": meta["metrics"],
            "dashboard_url": f"{links.base}/help"}


# per template type: the message's stored metadata -> that template's variables
CONTEXT_BUILDERS: dict[str, Callable[[dict[str, Any], Links, int, datetime], dict[str, Any]]] = {
    "feedback_reminder": _feedback_reminder,
    "feedback_invitation": _feedback_invitation,
    "first_session_checkin": _first_session_checkin,
    "intervention_notification": _intervention_notification,
    "rescheduling_alert": _rescheduling_alert,
    "weekly_digest": _weekly_digest,
    "parent_notification": _parent_notification,
    "manager_digest": _manager_digest,
    "monthly_summary": _monthly_summary,
    "performance_report": _performance_report,
}


def message_context(
    *, template_type: str, message_id: int, recipient_name: str | None, metadata: dict[str, Any],
    settings: Settings, links: Links, now: datetime,
) -> dict[str, Any]:
    """Everything a template may reference for one message."""
    context = {
        "brand": brand(settings),
        "recipient_name": recipient_name or "there",
        "unsubscribe_url": links.unsubscribe(message_id),
        "preferences_url": links.preferences(message_id),
        "now": now,
    }
    context.update(CONTEXT_BUILDERS[template_type](metadata, links, message_id, now))
    return context


_ANCHOR = re.compile(r"<a\s[^>]*>", re.IGNORECASE)
_HREF = re.compile(r'\bhref\s*=\s*"([^"]*)"', re.IGNORECASE)
_LINK_NAME = re.compile(r'\bdata-link-id\s*=\s*"([^"]*)"', re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+")


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
