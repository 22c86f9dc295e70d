"""Metric definitions, one place: the analytics report and the analytics API both use these."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

COUNTS = ("messages", "attempted", "delivered", "bounced", "bounced_hard", "bounced_soft", "blocked", "failed", "skipped", "opened_all", "opened_human",
          "clicked_all", "clicked_human", "unsubscribed", "complained")

# name: (numerator, denominator). Opens are inflated by machine opens (Apple MPP, scanners),
# so the human figures lead and "all" is shown beside them; clicks count people, not scanners.
RATES: dict[str, tuple[str, str]] = {
    "delivery_rate": ("delivered", "attempted"),
    "bounce_rate": ("bounced", "attempted"),
    # hard: the address is gone (suppressed); soft: it refused for now (full, or blocked after acceptance)
    "hard_bounce_rate": ("bounced_hard", "attempted"),
    "soft_bounce_rate": ("bounced_soft", "attempted"),
    # refused for policy or reputation: the sender's standing, not the addresses
    "block_rate": ("blocked", "attempted"),
    "open_rate_human": ("opened_human", "delivered"),
    "open_rate_all": ("opened_all", "delivered"),
    "click_through_rate": ("clicked_human", "delivered"),
    "click_to_open_rate": ("clicked_human", "opened_human"),
    "unsubscribe_rate": ("unsubscribed", "delivered"),
    "complaint_rate": ("complained", "delivered"),
}


def ratio(numerator: float, denominator: float) -> float | None:
    """A rate as a fraction; None when there is nothing to divide by."""
    return float(numerator) / float(denominator) if denominator else None


def rates_of(counts: Mapping[str, float]) -> dict[str, float | None]:
    """Every rate for one set of counts."""
    return {name: ratio(counts.get(num, 0), counts.get(den, 0)) for name, (num, den) in RATES.items()}


def with_rates(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sum the counts the frame has per group and add every rate they make (empty denominators give NaN)."""
    counts = [c for c in COUNTS if c in frame.columns]
    grouped = frame.groupby(by, dropna=False)[counts].sum().reset_index() if by else frame[counts].sum().to_frame().T
    for name, (num, den) in RATES.items():
        if num in grouped and den in grouped:
            grouped[name] = (grouped[num] / grouped[den].where(grouped[den] != 0)).astype(float)
    return grouped
