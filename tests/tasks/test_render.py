"""Templates: every version and variant renders under StrictUndefined, escapes input, inlines CSS."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from jinja2 import UndefinedError

from tasks.email_types import all_types
from tasks.render import Renderer, TemplateMissing, brand, message_context, template_name
from tutormax.links import Links
from tutormax.settings import load_settings

NOW = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def renderer():
    return Renderer("America/New_York")


def _context(is_parent=False, student="Mia O'Brien <b>", ended_ago=timedelta(hours=30), recipient=None):
    settings = load_settings()
    return message_context(
        template_type="feedback_reminder", message_id=5,
        recipient_name=recipient or ("Pat & Co" if is_parent else student),
        metadata={"student_name": student, "tutor_name": "Tara Tutor", "subject_name": "Algebra",
                  "session_ended_at": (NOW - ended_ago).isoformat(), "is_parent": is_parent},
        settings=settings, links=Links(settings), now=NOW,
    )


# the subject is a header, not HTML: the name goes in as it is
REMINDER_SUBJECTS = {
    ("v1", False): "How was your Algebra session with Tara Tutor?",
    ("v1", True): "How was Mia O'Brien <b>'s Algebra session with Tara Tutor?",
    ("v1_b", False): "Quick question about your session with Tara Tutor",
    ("v1_b", True): "Quick question about Mia O'Brien <b>'s session with Tara Tutor",
    ("v2", False): "Rate your session with Tara Tutor in one tap",
    ("v2", True): "Rate Mia O'Brien <b>'s session with Tara Tutor in one tap",
}


def test_every_template_renders_for_students_and_parents(renderer):
    names = [(t, n) for t, n in renderer.available() if t == "feedback_reminder"]
    assert {("feedback_reminder", n) for n in ("v1", "v1_b", "v2")} == set(names)
    for template_type, name in names:
        for is_parent in (False, True):
            out = renderer.render(template_type, name, _context(is_parent))
            assert out.subject == REMINDER_SUBJECTS[name, is_parent]
            assert "Tara Tutor" in out.text
            assert "100 Learning Way" in out.html and "100 Learning Way" in out.text  # CAN-SPAM footer
            assert "/u/" in out.html and "/p/" in out.html


def test_personalization_and_escaping(renderer):
    # ended 02:00 UTC on Friday the 20th, which is 21:00 on Thursday the 19th in New York
    out = renderer.render("feedback_reminder", "v1", _context(recipient="<b>Mia</b> O'Brien",
                                                              ended_ago=timedelta(hours=13)))
    assert out.subject == "How was your Algebra session with Tara Tutor?"
    assert "Hi &lt;b&gt;Mia&lt;/b&gt;," in out.html and "<b>Mia" not in out.html
    assert "Hi <b>Mia</b>," in out.text  # plain text is not HTML-escaped
    assert "It's been 13 hours since your Algebra session with Tara Tutor on Thursday, November 19." in \
        " ".join(out.text.split())  # the local date, not the UTC one


def test_parent_wording(renderer):
    out = renderer.render("feedback_reminder", "v1", _context(is_parent=True, student="Mia"))
    assert out.subject == "How was Mia's Algebra session with Tara Tutor?"


def test_variants_are_chosen_by_name(renderer):
    subjects = {n: renderer.render("feedback_reminder", n, _context()).subject for n in ("v1", "v1_b", "v2")}
    assert subjects == {n: REMINDER_SUBJECTS[n, False] for n in ("v1", "v1_b", "v2")}
    assert template_name("v1", "b") == "v1_b" and template_name("v1", "a") == "v1" and template_name("v2", None) == "v2"


def test_css_is_inlined_but_media_queries_survive(renderer):
    html = renderer.render("feedback_reminder", "v1", _context()).html
    assert 'style="' in html
    assert "@media (prefers-color-scheme:dark)" in html
    assert "@media (max-width:600px)" in html


def test_strict_undefined_refuses_missing_variables(renderer):
    context = _context()
    del context["tutor_name"]
    with pytest.raises(UndefinedError):
        renderer.render("feedback_reminder", "v1", context)


@pytest.mark.parametrize("name", ["v9", "../../etc/passwd", "v1_zz", ""])
def test_unknown_or_hostile_names_are_missing_templates(renderer, name):
    with pytest.raises(TemplateMissing):
        renderer.render("feedback_reminder", name, _context())


def test_filters_use_the_configured_time_zone():
    tokyo = Renderer("Asia/Tokyo")
    tpl = tokyo.env.from_string("{{ t|format_datetime }} {{ n|format_number }}")
    assert tpl.render(t=datetime(2026, 11, 20, 15, tzinfo=timezone.utc), n=1234567) == \
        "Saturday, November 21 at 12:00 AM JST 1,234,567"


def test_brand_carries_the_configured_physical_address(monkeypatch):
    monkeypatch.setenv("MAIL_PHYSICAL_ADDRESS", "1 Main St, Springfield")
    assert brand(load_settings())["physical_address"] == "1 Main St, Springfield"


@pytest.mark.parametrize(("name", "greeting"), [
    ("Imani Nelson", "Imani"), ("  Mia  ", "Mia"), ("Dr. Ada Okafor", "Dr. Ada Okafor"), ("ms Lee", "ms Lee"),
    (None, "there"), ("", "there"),
])
def test_greetings_use_the_first_name(name, greeting):
    from tasks.render import first_name

    assert first_name(name) == greeting


def test_dashboard_links_go_to_dashboard_url_or_else_the_help_page(renderer, monkeypatch):
    settings = load_settings()
    context = lambda s: message_context(template_type="weekly_digest", message_id=5, recipient_name="Ana Rivera",  # noqa: E731
                                        metadata=all_types()["weekly_digest"].sample[1], settings=s,
                                        links=Links(s), now=NOW)
    assert context(settings)["dashboard_url"] == "https://track.tutormax.example/help"
    monkeypatch.setenv("DASHBOARD_URL", "https://app.tutormax.example/dashboard")
    html = renderer.render("weekly_digest", "v1", context(load_settings())).html
    assert re.search(r'<a class="btn" href="https://app.tutormax.example/dashboard" data-link-id="dashboard_cta"[^>]*>'
                     r'Open your dashboard</a>', html)


def test_track_rewrites_links_keeps_own_routes_and_adds_the_pixel():
    from tasks.render import Rendered, track
    from tutormax.tokens import Purpose, Signer

    settings = load_settings()
    links = Links(settings)
    rendered = Rendered(
        subject="s",
        html='<html><body><a class="btn" href="https://example.com/a?x=1&amp;y=2" data-link-id="cta">Go</a>'
             '<a href="https://example.com/other">Other</a><a href="mailto:help@example.com">Mail</a>'
             '<a href="https://t.example/u/TOKEN">Unsubscribe</a></body></html>',
        text="Go: https://example.com/a?x=1&y=2\nMore: https://example.com/more\nUnsubscribe: https://t.example/u/TOKEN\n",
    )
    out = track(rendered, links, 42, {"https://t.example/u/TOKEN"})
    signer = Signer(settings.secret_bytes())

    def decoded(url):
        data = signer.verify(Purpose.CLICK, url.rsplit("/", 1)[1])
        return data.message_id, data.extra.decode()

    hrefs = re.findall(r'href="([^"]+)"', out.html)
    assert decoded(hrefs[0]) == (42, "cta\nhttps://example.com/a?x=1&y=2")
    assert decoded(hrefs[1]) == (42, "link_2\nhttps://example.com/other")
    assert hrefs[2:] == ["mailto:help@example.com", "https://t.example/u/TOKEN"]
    assert out.html.count("/o/") == 1 and out.html.index("/o/") < out.html.index("</body>")
    text_urls = re.findall(r"https?://\S+", out.text)
    assert decoded(text_urls[0]) == (42, "cta\nhttps://example.com/a?x=1&y=2")  # same target, same name
    assert decoded(text_urls[1]) == (42, "text_1\nhttps://example.com/more")
    assert text_urls[2] == "https://t.example/u/TOKEN"


def test_two_template_links_to_the_same_target_keep_their_own_names():
    from tasks.render import Rendered, track
    from tutormax.tokens import Purpose, Signer

    settings = load_settings()
    rendered = Rendered(
        subject="s", text="Dashboard: https://example.com/help\n",
        html='<html><body><a href="https://example.com/help" data-link-id="dashboard_cta">Open</a>'
             '<a href="https://example.com/help" data-link-id="footer_support">Help</a></body></html>')
    out = track(rendered, Links(settings), 7, set())
    signer = Signer(settings.secret_bytes())

    def name(url):
        return signer.verify(Purpose.CLICK, url.rsplit("/", 1)[1]).extra.decode().split("\n")[0]

    assert [name(u) for u in re.findall(r'href="([^"]+)"', out.html)] == ["dashboard_cta", "footer_support"]
    assert [name(u) for u in re.findall(r"https?://\S+", out.text)] == ["dashboard_cta"]


SAMPLE_SUBJECTS = {
    ("announcement", "v1"): "Winter break hours",
    ("feedback_invitation", "v1"): "How did your Algebra session with Ana Rivera go?",
    ("feedback_reminder", "v1"): "How was your Algebra session with Ana Rivera?",
    ("feedback_reminder", "v1_b"): "Quick question about your session with Ana Rivera",
    ("feedback_reminder", "v2"): "Rate your session with Ana Rivera in one tap",
    ("first_session_checkin", "v1"): "How did your first session with Mia go?",
    ("intervention_notification", "v1"): "Check in with Ana Rivera: 7 reschedules in 14 days",
    ("manager_digest", "v1"): "Your team's week: 2 tutors, 2 items to follow up on",  # Ben flagged, one escalation
    ("monthly_summary", "v1"): "Your October 2026 at TutorMax: 8 sessions",
    ("parent_notification", "v1"): "Mia's week at TutorMax: 2 sessions",
    ("performance_report", "v1"): "Your October 2026 tutoring report: 1 number trending the right way",
    ("rescheduling_alert", "v1"): "We noticed you've rescheduled often. Need help?",
    ("weekly_digest", "v1"): "Your week at TutorMax: 2 sessions, 4.5 average rating",
}


def test_every_type_renders_from_sample_metadata_under_strict_undefined(renderer):
    from tasks.email_types import SAMPLE_NOW, all_types

    settings = load_settings()
    # every template folder is a type some deployment plans, and every type it plans has its templates
    assert {t for t, _ in renderer.available()} == set(all_types())
    assert set(renderer.available()) == set(SAMPLE_SUBJECTS)
    for template_type, name in renderer.available():
        recipient, metadata = all_types()[template_type].sample
        context = message_context(template_type=template_type, message_id=3, recipient_name=recipient,
                                  metadata=metadata, settings=settings, links=Links(settings), now=SAMPLE_NOW)
        out = renderer.render(template_type, name, context)
        assert out.subject == SAMPLE_SUBJECTS[template_type, name]
        assert recipient.split()[0] in out.text, template_type
        assert "/u/" in out.text and "100 Learning Way" in out.html, template_type


def test_preview_command_writes_html_and_text(tmp_path, monkeypatch):
    from tutormax import cli

    monkeypatch.setenv("TUTORMAX_VAR_DIR", str(tmp_path))
    cli.main(["preview", "weekly_digest"])
    assert (tmp_path / "previews" / "weekly_digest_v1.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "previews" / "weekly_digest_v1.txt").read_text().startswith("Subject: ")


def test_a_template_without_a_text_part_gets_one_made_from_its_html(tmp_path):
    import shutil

    from tasks.render import TEMPLATES_DIR

    shutil.copy(TEMPLATES_DIR / "base.html", tmp_path / "base.html")
    (tmp_path / "notice").mkdir()
    (tmp_path / "notice" / "v1.html").write_text(
        '{% extends "base.html" %}{% block subject %}A notice{% endblock %}{% block preheader %}Hidden '
        'preheader{% endblock %}{% block content %}<h1 class="h1">Hi {{ first_name }},</h1><p>Two &amp; three.</p>'
        '<ul><li>one</li><li>two</li></ul><p><a href="https://example.com/go" data-link-id="go">Go there</a></p>'
        '<p><a href="https://example.com/same">https://example.com/same</a></p>{% endblock %}')
    settings = load_settings()
    context = {"brand": brand(settings), "first_name": "Mia", "unsubscribe_url": "https://t.example/u/x",
               "preferences_url": "https://t.example/p/x", "now": NOW}
    text = Renderer("America/New_York", tmp_path).render("notice", "v1", context).text
    lines = text.splitlines()
    assert lines[:2] == ["TutorMax", "Hi Mia,"]
    assert "Two & three." in lines and "  * one" in lines and "  * two" in lines
    assert "Go there: https://example.com/go" in lines and "https://example.com/same" in lines
    assert "Hidden preheader" not in text  # display:none stays out
    assert "Unsubscribe: https://t.example/u/x" in text and "100 Learning Way" in text
    assert "\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n")
