"""CSS inlined once per template, when it is compiled, instead of once per message.

css-inline on every rendered message was the largest single cost of a send
(about 0.1 ms of the 0.3 ms render). The styles an element gets depend only on
the template's markup, so the template source itself can be inlined: the base
layout and the child's blocks are joined into one source, every Jinja construct
is swapped for a placeholder the HTML parser leaves alone (a comment between
tags, a word inside an attribute value or the title), css-inline runs once, and
the constructs are put back.

Anything that could make the result differ from inlining the rendered page
raises Unsupported, and the renderer inlines that template per message instead:
a construct inside a tag but outside a quoted value, inside a class, id or style
attribute, or inside the stylesheet; selectors that depend on sibling order or
attribute values; an element opened in one branch of a condition and closed
outside it; markup made at render time (include, macros, |safe on anything but a
literal entity); content outside the child's blocks; other inheritance than one
child of one base; super(); a parser that would restructure the markup. Context
values are plain data (tasks.render's builders), never Markup. Tests render every
template both ways and compare.
"""

from __future__ import annotations

import re

import css_inline

_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_EXTENDS = re.compile(r"""\A\s*\{%-?\s*extends\s+["']([^"']+)["']\s*-?%\}""")
_BLOCK = re.compile(r"\{%-?\s*block\s+(\w+)\s*-?%\}(.*?)\{%-?\s*endblock(?:\s+\w+)?\s*-?%\}", re.S)
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.S | re.I)
# selectors whose match depends on which siblings a conditional renders, or on attribute values
_DATA_DEPENDENT = re.compile(r":(first|last|nth|only)-|:empty|:not\(|:has\(|[+~]\s*[.#\w\[*]|\[")
# constructs that bring in markup the inliner never saw (a literal entity marked safe is fine)
_FOREIGN_MARKUP = re.compile(r"\{%-?\s*(include|import|from|macro|call)\b|\bmarkup\b|\|\s*safe\b", re.I)
_SAFE_LITERAL = re.compile(r"""(['"])[^'"<>]*\1\s*\|\s*safe\b""")
_CONTROL = re.compile(r"\{%-?\s*(if|for|with|elif|else|endif|endfor|endwith)\b")
_START_TAG = re.compile(r"<([A-Za-z][\w-]*)\b[^>]*?(/?)>")
_END_TAG = re.compile(r"</([A-Za-z][\w-]*)\s*>")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_DYNAMIC_ATTRIBUTES = {"class", "id", "style"}
_RCDATA = ("title", "textarea")
_MARK = "tmjinja"


_TOKEN = re.compile(rf"<!--.*?-->|<(/?)([A-Za-z][\w-]*)([^>]*)>|{_MARK}\d+x", re.S)
_MARKS = re.compile(rf"{_MARK}\d+x")
# a table body the parser supplied after a construct would open once per loop pass
_IMPLIED_AFTER_CONSTRUCT = re.compile(rf"<table\b[^>]*>(?:\s|<!--{_MARK}\d+x-->)*<!--{_MARK}\d+x-->\s*<tbody")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _structure(html: str) -> list[str]:
    """Tags (with the placeholders among their attributes, in any order) and placeholders, in order.

    Not table bodies, which the parser supplies harmlessly, nor the stylesheet,
    which the inliner rewrites and moves, nor other comments.
    """
    tokens = []
    for match in _TOKEN.finditer(html):
        closing, name, attributes = match.groups()
        if name is None:
            tokens.extend(_MARKS.findall(match.group(0)))
            continue
        name = name.lower()
        if name in ("tbody", "style") or (closing and name in _VOID):
            continue
        tokens.append(f"<{closing}{name} {' '.join(sorted(_MARKS.findall(attributes)))}")
    return tokens


class Unsupported(ValueError):
    """This template cannot be inlined ahead of rendering; the renderer inlines it per message."""


def base_of(child: str) -> str | None:
    """The name of the template a child extends, if it extends one."""
    match = _EXTENDS.match(child)
    return match.group(1) if match else None


def _check_balanced(source: str) -> None:
    """Every branch of an if, for or with opens and closes the same elements.

    An element opened under a condition and closed outside it would give its
    descendants styles (say, ".card p") that a render without that element lacks.
    """
    keywords: list[str] = []

    def mask(match: re.Match[str]) -> str:
        control = _CONTROL.match(match.group(0))
        if control:
            keywords.append(control.group(1))
            return "\0"
        return "J"  # an expression inside a tag leaves the tag whole

    depth: list[int] = []
    for index, segment in enumerate(_CONSTRUCT.sub(mask, source).split("\0")):
        if depth:
            literal = _HTML_COMMENT.sub("", segment)
            opened = sum(1 for tag in _START_TAG.finditer(literal)
                         if tag.group(1).lower() not in _VOID and not tag.group(2))
            depth[-1] += opened - len(_END_TAG.findall(literal))
        if index == len(keywords):
            break
        keyword = keywords[index]
        if keyword in ("if", "for", "with"):
            depth.append(0)
            continue
        if not depth or depth[-1] != 0:
            raise Unsupported(f"elements opened and closed across an {keyword}")
        if keyword.startswith("end"):
            depth.pop()


def flatten(child: str, base: str) -> str:
    """One source from a child template and the base it extends: the child's blocks in the base's places.

    Block tags stay where they were (their whitespace control and the subject
    block still work), except inside <style>, where the stylesheet is inlined now.
    """
    outside = _CONSTRUCT.sub(lambda m: "" if m.group(0).startswith("{#") else m.group(0),
                             _BLOCK.sub("", _EXTENDS.sub("", child, count=1)))
    if outside.strip():
        raise Unsupported("the child has content outside its blocks (a set or an import, say)")
    blocks: dict[str, str] = {}
    for match in _BLOCK.finditer(child):
        if "{% block" in match.group(2) or "super()" in match.group(2):
            raise Unsupported("nested blocks or super()")
        blocks[match.group(1)] = match.group(2)
    if _EXTENDS.match(base):
        raise Unsupported("the base template extends another")
    style = _STYLE.search(base)

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if "{% block" in default or "super()" in default:
            raise Unsupported("nested blocks in the base")
        body = blocks.get(name, default)
        if style and style.start(1) <= match.start() < style.end(1):
            return body
        return match.group(0)[: match.start(2) - match.start()] + body + match.group(0)[match.end(2) - match.start() :]

    return _BLOCK.sub(fill, base)


def _placeholders(source: str) -> tuple[str, dict[str, str]]:
    """The source with every Jinja construct replaced by a placeholder fit for where it stands."""
    constructs: dict[str, str] = {}
    out: list[str] = []
    state = _Scanner()
    position = 0
    for index, match in enumerate(_CONSTRUCT.finditer(source)):
        literal = source[position : match.start()]
        state.feed(literal)
        out.append(literal)
        key = f"{_MARK}{index}x"
        constructs[key] = match.group(0)
        out.append(state.placeholder(key))
        position = match.end()
    state.feed(source[position:])
    out.append(source[position:])
    return "".join(out), constructs


class _Scanner:
    """Just enough of HTML's tokenizer to know what a position is inside: text, a tag, a value, raw text."""

    def __init__(self) -> None:
        self.in_tag = False
        self.closing = False  # the tag is an end tag
        self.quote: str | None = None
        self.attribute = ""
        self.tag = ""
        self.raw: str | None = None  # inside <style>, <script>, <title> or <textarea>
        self.comment = False

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.comment:
                end = text.find("-->", i)
                if end < 0:
                    return
                self.comment, i = False, end + 3
            elif self.raw:
                end = text.lower().find(f"</{self.raw}", i)
                if end < 0:
                    return
                self.raw, i = None, end
            elif not self.in_tag:
                start = text.find("<", i)
                if start < 0:
                    return
                if text.startswith("<!--", start):
                    self.comment, i = True, start + 4
                    continue
                name = re.match(r"</?([A-Za-z][\w-]*)|<!", text[start:])
                if not name:
                    i = start + 1
                    continue
                self.in_tag, self.tag, self.attribute = True, (name.group(1) or "").lower(), ""
                self.closing = text.startswith("</", start)
                i = start + len(name.group(0))
            elif self.quote:
                end = text.find(self.quote, i)
                if end < 0:
                    return
                self.quote, i = None, end + 1
            else:
                char = text[i]
                if char == ">":
                    self.in_tag = False
                    if not self.closing and self.tag in ("style", "script", *_RCDATA):
                        self.raw = self.tag
                elif char in "\"'":
                    self.quote = char
                elif char.isalpha():
                    attribute = re.match(r"[^\s=>/]+", text[i:])
                    assert attribute is not None
                    self.attribute = attribute.group(0).lower()
                    i += len(attribute.group(0))
                    continue
                i += 1

    def placeholder(self, key: str) -> str:
        if self.comment:
            return key
        if self.raw in _RCDATA:
            return key
        if self.raw:
            raise Unsupported(f"a Jinja construct inside <{self.raw}>")
        if self.in_tag:
            if not self.quote:
                raise Unsupported(f"a Jinja construct inside <{self.tag}> outside a quoted value")
            if self.attribute in _DYNAMIC_ATTRIBUTES:
                raise Unsupported(f"a Jinja construct in a {self.attribute} attribute")
            return key
        return f"<!--{key}-->"


def preinline(child: str, base: str, inliner: css_inline.CSSInliner) -> str:
    """The child template's source, flattened into its base with the CSS inlined; Unsupported if it can't be.

    base is the source of the template the child extends (base_of(child) names it).
    """
    if not _EXTENDS.match(child):
        raise Unsupported("not a child of a base layout")
    source = flatten(child, base)
    for stylesheet in _STYLE.findall(source):
        if _DATA_DEPENDENT.search(re.sub(r"@media[^{]*\{", "", stylesheet)):
            raise Unsupported("a selector depends on sibling order or attribute values")
    for construct in _CONSTRUCT.findall(source):
        if _FOREIGN_MARKUP.search(_SAFE_LITERAL.sub("", construct)):
            raise Unsupported("markup made at render time (include, macro, |safe) would miss the styles")
    _check_balanced(source)
    protected, constructs = _placeholders(source)
    inlined = inliner.inline(protected)
    if _CONSTRUCT.search(inlined) or any(d in inlined for d in ("{{", "{%", "{#")):
        raise Unsupported("decoded character references spell Jinja syntax")
    if _structure(inlined) != _structure(protected) or _IMPLIED_AFTER_CONSTRUCT.search(inlined):
        # the parser closed, added or moved elements around a construct: rendering would not match
        raise Unsupported("the parser would restructure the markup")
    for key, construct in constructs.items():
        comment = f"<!--{key}-->"
        if inlined.count(key) != 1:
            raise Unsupported("a placeholder did not survive inlining")
        inlined = inlined.replace(comment, construct) if comment in inlined else inlined.replace(key, construct)
    return inlined
