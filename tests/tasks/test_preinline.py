"""CSS inlined at compile time gives the same page as inlining every rendered message."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import css_inline
import pytest

from tasks.preinline import Unsupported, flatten, preinline
from tasks.render import Renderer, message_context
from tasks.email_types import SAMPLE_NOW, all_types
from tutormax.links import Links
from tutormax.settings import load_settings


class _Canonical(HTMLParser):
    """A page as a list of tags (attributes unescaped and sorted), text (whitespace collapsed) and comments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[tuple] = []
        self.text = ""

    def _flush(self) -> None:
        text = " ".join(self.text.split())
        if text:
            self.items.append(("text", text))
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self._flush()
        self.items.append(("start", tag, tuple(sorted((k, _value(k, v)) for k, v in attrs))))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        self._flush()
        self.items.append(("end", tag))

    def handle_data(self, data):
        self.text += data

    def handle_comment(self, data):
        self._flush()
        self.items.append(("comment", data.strip()))


def _value(name: str, value: str | None) -> str:
    """An attribute's value, whitespace collapsed; a style's declarations without a trailing semicolon."""
    value = " ".join((value or "").split())
    if name == "style":  # an inline style inlined again comes back without its last semicolon
        value = "; ".join(d.strip() for d in value.split(";") if d.strip())
    return value


def canonical(html: str) -> list[tuple]:
    parser = _Canonical()
    parser.feed(html)
    parser.close()
    parser._flush()
    return parser.items


def _variations(metadata: dict) -> list[dict]:
    """The sample, plus flipped flags and emptied lists, so both sides of each conditional render."""
    out = [metadata]
    for key, value in metadata.items():
        changed = copy.deepcopy(metadata)
        if isinstance(value, bool):
            changed[key] = not value
        elif isinstance(value, list) and value:
            changed[key] = []
        elif key == "average_rating":
            changed[key] = None if value is not None else 4.25
        else:
            continue
        out.append(changed)
    return out


@pytest.fixture(scope="module")
def renderer():
    return Renderer("America/New_York")


def test_every_template_renders_the_same_page_as_inlining_each_message(renderer):
    settings = load_settings()
    links = Links(settings)
    per_message = set()
    for template_type, name in renderer.available():
        templates = renderer.templates(template_type, name)
        recipient, metadata = all_types()[template_type].sample
        for variation in _variations(metadata):
            context = message_context(template_type=template_type, message_id=7, recipient_name=recipient,
                                      metadata=variation, settings=settings, links=links, now=SAMPLE_NOW)
            expected = renderer.inliner.inline(templates.html.render(context))
            actual = renderer.render(template_type, name, context).html
            assert canonical(actual) == canonical(expected), (template_type, name, variation)
        if templates.inlined is None:
            per_message.add((template_type, name))
    # every template is inlined ahead but two with elements opened and closed across a loop or a condition
    assert per_message == {("manager_digest", "v1"), ("performance_report", "v1")}


def test_inlined_styles_are_in_the_template_and_media_queries_stay():
    renderer = Renderer("America/New_York")
    source = renderer.templates("feedback_reminder", "v1").inlined
    assert source is not None
    settings = load_settings()
    context = message_context(template_type="feedback_reminder", message_id=7, recipient_name="Mia",
                              metadata=all_types()["feedback_reminder"].sample[1], settings=settings,
                              links=Links(settings), now=SAMPLE_NOW)
    html = source.render(context)
    assert re.search(r'<td class="card" style="[^"]*;padding: 32px;', html)
    assert "@media (prefers-color-scheme:dark)" in html
    assert ".card p{" not in html  # the rules themselves are gone, applied inline


BASE = """<html><head><title>{% block subject %}{% endblock %}</title><style>
.a{color:red}
.a p{margin:0}
{% block extra_css %}{% endblock %}
</style></head><body><div class="a">{% block content %}{% endblock %}</div></body></html>"""


def _inliner():
    return css_inline.CSSInliner(keep_style_tags=False, keep_at_rules=True)


def test_flatten_puts_child_blocks_in_the_base_and_the_stylesheet_without_tags():
    child = '{% extends "base.html" %}{% block extra_css %}.b{color:blue}{% endblock %}{% block content %}<p>x</p>{% endblock %}'
    flat = flatten(child, BASE)
    assert "{% block content %}<p>x</p>{% endblock %}" in flat
    assert ".b{color:blue}" in flat and "{% block extra_css %}" not in flat


def test_constructs_between_table_rows_stay_in_place():
    child = ('{% extends "base.html" %}{% block content %}<table><tr><td>a</td></tr>'
             '{% for r in rows %}<tr><td><p>{{ r }}</p></td></tr>{% endfor %}</table>{% endblock %}')
    out = preinline(child, BASE, _inliner())
    assert '{% for r in rows %}<tr><td><p style="margin: 0;">{{ r }}</p></td></tr>{% endfor %}</tbody></table>' in out


def test_a_loop_right_inside_a_table_is_unsupported_without_its_own_tbody():
    # the parser would put the supplied <tbody> inside the loop: one table body per row
    child = '{% extends "base.html" %}{% block content %}<table>{% for r in rows %}<tr><td>{{ r }}</td></tr>{% endfor %}</table>{% endblock %}'
    with pytest.raises(Unsupported):
        preinline(child, BASE, _inliner())
    assert "{% for r in rows %}<tr>" in preinline(child.replace("<table>", "<table><tbody>"), BASE, _inliner())


@pytest.mark.parametrize("content", [
    '<p class="{{ kind }}">x</p>',                 # the selector match depends on the value
    '<p{% if x %} class="a"{% endif %}>x</p>',      # a construct inside a tag, outside any value
    '<p style="color:{{ c }}">x</p>',
])
def test_dynamic_markup_is_left_to_per_message_inlining(content):
    child = '{% extends "base.html" %}{% block content %}' + content + "{% endblock %}"
    with pytest.raises(Unsupported):
        preinline(child, BASE, _inliner())


def test_order_dependent_selectors_and_dynamic_css_are_unsupported():
    order = BASE.replace(".a p{margin:0}", ".a p:first-child{margin:0}")
    with pytest.raises(Unsupported):
        preinline('{% extends "base.html" %}{% block content %}<p>x</p>{% endblock %}', order, _inliner())
    with pytest.raises(Unsupported):
        preinline('{% extends "base.html" %}{% block extra_css %}.b{color:{{ c }}}{% endblock %}', BASE, _inliner())
    with pytest.raises(Unsupported):
        preinline("<p>no base</p>", BASE, _inliner())


def test_attribute_values_and_title_keep_their_constructs():
    child = ('{% extends "base.html" %}{% block subject %}Hi {{ name }}{% endblock %}'
             '{% block content %}<p><a href="{{ url }}" title="{{ t }}">go</a></p>{% endblock %}')
    out = preinline(child, BASE, _inliner())
    assert "<title>{% block subject %}Hi {{ name }}{% endblock %}</title>" in out
    assert 'href="{{ url }}"' in out and 'title="{{ t }}"' in out


@pytest.mark.parametrize(("child", "why"), [
    ('{% block content %}{% if x %}<div class="a">{% endif %}<p>x</p>{% if x %}</div>{% endif %}{% endblock %}',
     "an element opened under a condition and closed under another"),
    ("{% block content %}<p>{{ body|safe }}</p>{% endblock %}", "markup made at render time"),
    ('{% block content %}{% include "part.html" %}{% endblock %}', "markup from another template"),
    ("{% set greeting = 'hi' %}{% block content %}<p>{{ greeting }}</p>{% endblock %}", "a set outside the blocks"),
    ("{% block content %}<p>&#123;&#123; x }}</p>{% endblock %}", "references that decode to Jinja syntax"),
])
def test_templates_whose_inlining_could_differ_are_unsupported(child, why):
    with pytest.raises(Unsupported):
        preinline('{% extends "base.html" %}' + child, BASE, _inliner())


def test_safe_literals_and_balanced_conditionals_are_fine():
    child = ('{% extends "base.html" %}{% block content %}{% if x %}<p>{{ a }}</p>{% else %}<p>'
             "{{ n if n else '&mdash;'|safe }}</p>{% endif %}{% for i in items %}<p>{{ i }}</p>{% endfor %}{% endblock %}")
    out = preinline(child, BASE, _inliner())
    assert '{% if x %}<p style="margin: 0;">{{ a }}</p>{% else %}<p style="margin: 0;">' in out


def test_attribute_selectors_are_unsupported():
    with pytest.raises(Unsupported):
        preinline('{% extends "base.html" %}{% block content %}<a href="{{ u }}">x</a>{% endblock %}',
                  BASE.replace(".a p{margin:0}", 'a[href^="https"]{color:blue}'), _inliner())


def test_base_of_names_the_extended_template():
    from tasks.preinline import base_of

    assert base_of('{% extends "layouts/plain.html" %}{% block content %}{% endblock %}') == "layouts/plain.html"
    assert base_of("<p>no layout</p>") is None
