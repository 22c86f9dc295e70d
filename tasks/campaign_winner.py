"""An A/B campaign's winner: decided by the statistics after the wait, not by the higher raw rate.

The wait starts once every test message is final. Each scheduled run during the wait takes a look
when both variants have enough deliveries; looking again and again would inflate a fixed-horizon
test's false positives, so every look feeds the always-valid sequential p-value
(tasks.abtest.sequential_p_value), which may stop the wait early. At the end of the wait the
verdict is compare()'s when it is the only look, the sequential p-value's when there were others;
a sample-ratio mismatch voids either. No significant winner: the operator's fallback goes (the
control, a, unless they chose otherwise). The verdict and its numbers are stored on the campaign.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from db import campaigns
from db.events import CampaignStatus
from db.models import EmailCampaign
from db.session import transaction
from tasks.abtest import VariantStats, compare, sequential_p_value
from tasks.campaign_control import winner_wait
from tasks.plan import DB_RETRIES
from tasks.plan_campaigns import REST
from tutormax.logs import run_logger

ALPHA = 0.05
MIN_SAMPLE = 100  # deliveries per variant before a look counts
# the lifts the sequential test is tuned to find early (absolute, 5 points): a subject or a call to
# action that matters moves clicks by points, not tenths; smaller lifts wait for the final look
SEQUENTIAL_TAU = 0.05


def _stats(session, campaign: EmailCampaign) -> dict[str, VariantStats]:
    found = campaigns.test_portion(session, campaign)
    return {v: VariantStats(variant=v, sent=found[v].sent if v in found else 0,
                            delivered=found[v].delivered if v in found else 0,
                            human_opens=found[v].human_opens if v in found else 0,
                            clicks=found[v].clicks if v in found else 0) for v in ("a", "b")}


def decide(campaign: EmailCampaign, stats: dict[str, VariantStats], now: datetime) -> dict[str, Any] | None:
    """This run's look: the verdict when it decides (a winner, or the fallback), else None (and the look is kept)."""
    verdict = dict(campaign.ab_verdict or {})
    metric = campaign.winner_metric or "clicks"
    weights = {"a": campaign.ab_variant_a_weight, "b": campaign.ab_variant_b_weight}
    a, b = stats["a"], stats["b"]
    result = compare(a, b, metric=metric, alpha=ALPHA, min_sample=MIN_SAMPLE, weights=weights)
    wait = winner_wait(campaign)
    over = wait is None or now >= campaign.test_finished_at + wait
    looks = verdict.get("looks", 0)
    enough = min(a.delivered, b.delivered) >= MIN_SAMPLE
    winner, method = None, None
    if over and looks == 0:
        winner, method = result.winner, "compare"  # one look: the fixed-horizon test is valid as it is
    elif enough:
        looks += 1
        p = sequential_p_value(a, b, metric=metric, tau=SEQUENTIAL_TAU, previous=verdict.get("sequential_p", 1.0))
        verdict["sequential_p"] = p
        if p < ALPHA and not result.srm_detected and result.lift:
            winner, method = (b.variant if result.lift > 0 else a.variant), "sequential"
    verdict.update(looks=looks, last_look_at=now.isoformat(), metric=metric, compare=result.__dict__,
                   variants={v: s.__dict__ for v, s in stats.items()})
    if winner is None and not over:
        campaign.ab_verdict = verdict
        return None
    fallback = campaign.winner_fallback or "a"
    if winner is None:
        if looks and not result.srm_detected:
            why = (f"no significant winner after {looks} look(s), sequential p={verdict['sequential_p']:.3g}: "
                   f"{result.reason}")
        else:
            why = result.reason  # compare's own words: no difference, too few, or a sample-ratio mismatch
        reason = f"{why}; the fallback, {fallback}, goes to the rest"
    elif method == "sequential":
        reason = (f"{winner} wins: sequential p={verdict['sequential_p']:.3g} after {looks} look(s) "
                  f"(always valid, however often one looks); {result.reason}")
    else:
        reason = result.reason
    verdict.update(winner=winner, sent_to_rest=winner or fallback, fallback_used=winner is None, method=method
                   or "fallback", decided_at=now.isoformat(), reason=reason)
    return verdict


@task(name="pick-ab-winner", cache_policy=NO_CACHE, **DB_RETRIES)
def pick_winner(campaign_id: str, now: datetime) -> dict[str, Any] | None:
    """Look at an A/B campaign's test once its test portion is sent; after the wait, pick what the rest get."""
    with transaction() as session:
        campaign = campaigns.locked(session, campaign_id)
        if (campaign.status != CampaignStatus.SENDING or not campaign.ab_test_enabled or campaign.ab_winner
                or (campaign.plan_state or {}).get("phase") != REST):
            return None
        if campaign.test_finished_at is None:
            if campaigns.unfinished(session, campaign_id, test_only=True):
                return None
            # the wait runs from the last test message's outcome, not from this look, 15 minutes later
            finished = campaigns.test_finished(session, campaign_id)
            campaign.test_finished_at = min(now, finished) if finished else now
        verdict = decide(campaign, _stats(session, campaign), now)
        if verdict is None:
            return None
        campaign.ab_verdict = verdict
        campaign.ab_winner = verdict["sent_to_rest"]
    run_logger().info("campaign %s: %s", campaign_id, verdict["reason"])
    return verdict


def verdict_markdown(campaign: EmailCampaign) -> str:
    """The A/B verdict and its numbers, for the artifact and `tutormax campaign show`."""
    verdict = campaign.ab_verdict or {}
    if not verdict:
        return "No look at the test yet."
    rows = ["| variant | sent | delivered | opened (people) | clicked (people) |", "|---|---|---|---|---|"]
    for name, s in sorted(verdict.get("variants", {}).items()):
        rows.append(f"| {name} | {s['sent']:,} | {s['delivered']:,} | {s['human_opens']:,} | {s['clicks']:,} |")
    c = verdict.get("compare") or {}
    figures = [f"metric: {verdict.get('metric')}", f"looks: {verdict.get('looks', 0)}"]
    if c.get("p_value") is not None:
        figures.append(f"p (one look): {c['p_value']:.3g}")
    if verdict.get("sequential_p") is not None:
        figures.append(f"sequential p: {verdict['sequential_p']:.3g}")
    if c.get("lift") is not None:
        figures.append(f"lift {c['lift'] * 100:+.1f} pts ({1 - c['alpha']:.0%} CI {c['ci_low'] * 100:+.1f} to "
                       f"{c['ci_high'] * 100:+.1f})")
    head = (f"**Sent to the rest: {verdict['sent_to_rest']}** ({'fallback' if verdict['fallback_used'] else 'winner'}, "
            f"decided {verdict['decided_at'][:16].replace('T', ' ')} UTC by {verdict['method']}).\n\n"
            if verdict.get("sent_to_rest") else "Not decided yet: waiting.\n\n")
    reason = verdict.get("reason") or c.get("reason", "")
    return head + f"{reason}\n\n" + "\n".join(rows) + "\n\n" + "; ".join(figures) + ".\n"
