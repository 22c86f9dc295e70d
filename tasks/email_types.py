"""Email types: each template type's pieces in one declaration, and where to find them all.

A type is declared where it is planned (its flow module, or its planning module in tasks/),
with the preference category that governs it, whether it is a critical alert, how a message's
stored metadata becomes the template's variables, and sample metadata for previews and tests.
Everything planned is reachable from prefect.yaml, so the first lookup of a type this process
has not imported yet imports every deployment's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from db.events import PRIORITY_RANK, Category, Priority
from tutormax.links import Links

# the moment sample metadata is written around (previews, template tests, the render benchmark)
SAMPLE_NOW = datetime(2026, 11, 23, 14, tzinfo=timezone.utc)

Metadata = dict[str, Any]
ContextBuilder = Callable[[Metadata, Links, int, datetime], dict[str, Any]]


@dataclass(frozen=True)
class EmailType:
    """One template type: templates/<name>/ holds its versions; this says what the rest of the system needs."""

    name: str
    category: Category          # the preference that lets a recipient opt out of it
    priority: Priority          # its place in the queue, unless the planner says otherwise
    critical: bool              # a critical alert: its human open rate is a success metric
    context: ContextBuilder     # (metadata, links, message id, now) -> the template's own variables
    sample: tuple[str, Metadata]  # a recipient's name and metadata to preview and test it with
    variants_in_content: bool = False  # A/B variants differ in stored words, not in templates (announcements)

    @property
    def rank(self) -> int:
        return PRIORITY_RANK[self.priority]


_TYPES: dict[str, EmailType] = {}


def email_type(name: str, *, category: Category, priority: Priority, context: ContextBuilder,
               sample: tuple[str, Metadata], critical: bool = False, variants_in_content: bool = False) -> EmailType:
    """Declare a type (once per process: a module imported twice declares the same one again)."""
    declared = EmailType(name, category, priority, critical, context, sample, variants_in_content)
    known = _TYPES.setdefault(name, declared)
    if known.context.__qualname__ != declared.context.__qualname__:
        raise ValueError(f"email type {name!r} is declared twice, differently")
    return known


def _load_all() -> None:
    from flows.registry import load_all_flows

    load_all_flows()


def get(name: str) -> EmailType:
    """The declared type; imports every deployment's module if this one is not known yet."""
    if name not in _TYPES:
        _load_all()
    try:
        return _TYPES[name]
    except KeyError:
        raise LookupError(f"no email type {name!r} is declared by any automation in prefect.yaml") from None


def all_types() -> dict[str, EmailType]:
    """Every type some deployment in prefect.yaml plans, by name."""
    _load_all()
    return dict(sorted(_TYPES.items()))


def critical_types() -> list[str]:
    """The types whose human open rate the success metrics hold to the critical-alert target."""
    return [name for name, t in all_types().items() if t.critical]
