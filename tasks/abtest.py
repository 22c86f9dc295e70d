"""A/B-test statistics for campaigns: stable variant assignment and a verdict you can trust.

Clicks (unique clickers per delivered message) are the default decision metric: open rates are
inflated by machine opens (Apple Mail Privacy Protection), so `human_opens` is opt-in. A verdict
names a winner only when the two-proportion test is significant, both variants reached
`min_sample` deliveries, and the delivered split matches the planned weights (no sample-ratio
mismatch). Pure functions, no database and no Prefect, so they can be used from flows and notebooks.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

METRICS = ("clicks", "human_opens")
SRM_ALPHA = 0.001  # the customary SRM threshold: strict, since an SRM voids the whole experiment


def _normalized(weights: Mapping[str, float]) -> dict[str, float]:
    if not weights:
        raise ValueError("weights must name at least one variant")
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError(f"weights must be finite and non-negative: {dict(weights)}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return {name: w / total for name, w in weights.items()}


def assign_variant(recipient_key: str, campaign_id: str, weights: Mapping[str, float], secret: bytes) -> str:
    """Deterministically assign a recipient to a variant of a campaign, in proportion to the weights."""
    shares = _normalized(weights)
    if not secret:
        raise ValueError("secret must not be empty (assignments would be predictable)")
    if "\0" in campaign_id:
        raise ValueError("campaign_id must not contain NUL (it separates campaign from recipient)")
    # keyed hash: recipients can't predict or steer their variant; the campaign id in the message
    # re-shuffles recipients per campaign so the same people aren't always in the treatment group
    digest = hmac.new(secret, f"{campaign_id}\0{recipient_key}".encode(), hashlib.sha256).digest()
    # keep 53 of the first 64 bits: a float holds them exactly, so u stays strictly below 1.0
    u = (int.from_bytes(digest[:8], "big") >> 11) / 2.0**53
    cumulative, chosen = 0.0, None
    # sorted names: the mapping's insertion order must not change who gets what
    for name in sorted(shares):
        if shares[name] <= 0:
            continue
        cumulative += shares[name]
        chosen = name
        if u < cumulative:
            return name
    return chosen  # float rounding left the cumulative sum a hair under 1.0


@dataclass(frozen=True)
class VariantStats:
    """Counts for one variant; `human_opens` and `clicks` count unique recipients, not events."""

    variant: str
    sent: int
    delivered: int
    human_opens: int
    clicks: int

    def __post_init__(self) -> None:
        if min(self.sent, self.delivered, self.human_opens, self.clicks) < 0:
            raise ValueError(f"{self.variant}: counts must be non-negative")
        if self.delivered > self.sent or max(self.human_opens, self.clicks) > self.delivered:
            raise ValueError(f"{self.variant}: need delivered <= sent and opens, clicks <= delivered")

    @property
    def open_rate(self) -> float | None:
        return self.human_opens / self.delivered if self.delivered else None

    @property
    def click_rate(self) -> float | None:
        return self.clicks / self.delivered if self.delivered else None


@dataclass(frozen=True)
class ABResult:
    """The verdict of `compare`; `reason` is the one line to show a campaign owner."""

    metric: str
    control: str
    treatment: str
    control_rate: float | None
    treatment_rate: float | None
    test: str  # "chi_square", "fisher_exact" or "insufficient_sample"
    p_value: float | None
    lift: float | None  # treatment_rate - control_rate, absolute (0.05 = 5 percentage points)
    relative_lift: float | None  # lift / control_rate
    ci_low: float | None  # Newcombe interval of `lift` at 1 - alpha
    ci_high: float | None
    alpha: float
    significant: bool  # p < alpha with enough sample; says nothing about SRM, `winner` does
    winner: str | None
    srm_p_value: float | None
    srm_detected: bool
    min_sample: int
    reason: str


def _wilson(count: int, n: int, z: float) -> tuple[float, float]:
    p, z2 = count / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(center - half, 0.0), min(center + half, 1.0)


def newcombe_diff_ci(count1: int, n1: int, count2: int, n2: int, alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p1 - p2, built from two Wilson intervals."""
    # unlike Wald it stays inside [-1, 1] and keeps its coverage at small n and rates near 0 or 1
    z = stats.norm.isf(alpha / 2)
    p1, p2 = count1 / n1, count2 / n2
    (l1, u1), (l2, u2) = _wilson(count1, n1, z), _wilson(count2, n2, z)
    return (p1 - p2 - math.hypot(p1 - l1, u2 - p2), p1 - p2 + math.hypot(u1 - p1, p2 - l2))


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> tuple[str, float]:
    """Two-sided test of equal proportions on the 2x2 table: ("chi_square" | "fisher_exact", p)."""
    table = [[s1, n1 - s1], [s2, n2 - s2]]
    total, successes = n1 + n2, s1 + s2
    expected = [n * c / total for n in (n1, n2) for c in (successes, total - successes)]
    if min(expected) >= 5:
        # no Yates correction: chi2 then equals z^2 of the pooled two-proportion z-test, the test
        # analysts know; Yates is needlessly conservative, and small tables go to Fisher anyway
        return "chi_square", float(stats.chi2_contingency(table, correction=False).pvalue)
    return "fisher_exact", float(stats.fisher_exact(table).pvalue)


def srm_p_value(control: VariantStats, treatment: VariantStats, weights: Mapping[str, float] | None) -> float | None:
    """Chi-square goodness of fit of the delivered split against the planned weights (None if nothing delivered)."""
    planned = {control.variant: 1.0, treatment.variant: 1.0} if weights is None else weights
    missing = {control.variant, treatment.variant} - set(planned)
    if missing:
        raise ValueError(f"weights lack variants {sorted(missing)}")
    # only the two compared arms: a third variant's share drops out after renormalizing
    shares = _normalized({v: planned[v] for v in (control.variant, treatment.variant)})
    observed = [control.delivered, treatment.delivered]
    total = sum(observed)
    if total == 0 or min(shares.values()) == 0:
        return None
    expected = [total * shares[control.variant], total * shares[treatment.variant]]
    return float(stats.chisquare(observed, f_exp=expected).pvalue)


def compare(control: VariantStats, treatment: VariantStats, *, metric: str = "clicks", alpha: float = 0.05,
            min_sample: int = 100, weights: Mapping[str, float] | None = None) -> ABResult:
    """Test treatment against control on one metric and say whether there is a winner, and why."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    if not 0 < alpha < 1 or min_sample < 0:
        raise ValueError("need 0 < alpha < 1 and min_sample >= 0")
    if control.variant == treatment.variant:
        raise ValueError("control and treatment must be different variants")
    s1, n1 = getattr(treatment, metric), treatment.delivered
    s0, n0 = getattr(control, metric), control.delivered
    r1, r0 = (s1 / n1 if n1 else None), (s0 / n0 if n0 else None)
    srm_p = srm_p_value(control, treatment, weights)
    srm = srm_p is not None and srm_p < SRM_ALPHA
    base = dict(metric=metric, control=control.variant, treatment=treatment.variant, control_rate=r0,
                treatment_rate=r1, alpha=alpha, srm_p_value=srm_p, srm_detected=srm, min_sample=min_sample)
    if not (n0 and n1):
        return ABResult(**base, test="insufficient_sample", p_value=None, lift=None, relative_lift=None,
                        ci_low=None, ci_high=None, significant=False, winner=None,
                        reason="no deliveries in one variant: nothing to compare")
    test, p = two_proportion_test(s1, n1, s0, n0)
    lift = r1 - r0
    ci_low, ci_high = newcombe_diff_ci(s1, n1, s0, n0, alpha)
    numbers = (f"{metric} {treatment.variant} {r1:.1%} vs {control.variant} {r0:.1%}, lift {lift * 100:+.1f} pts "
               f"({1 - alpha:.0%} CI {ci_low * 100:+.1f} to {ci_high * 100:+.1f}), p={p:.3g}")
    significant, winner = False, None
    if min(n0, n1) < min_sample:
        # p and CI are still reported so analysts can see where things stand, but no verdict:
        # small arms give unstable estimates and invite stopping early on a lucky streak
        reason = f"insufficient sample: {min(n0, n1)} delivered < {min_sample} per variant; {numbers} (not a verdict)"
        test = "insufficient_sample"
    elif p >= alpha:
        reason = f"no significant difference: {numbers}"
    else:
        significant = True
        winner = treatment.variant if lift > 0 else control.variant
        reason = f"{winner} wins: {numbers}"
    if srm:
        # a split unlike the plan means assignment or delivery treated the arms differently
        winner = None
        reason = f"sample-ratio mismatch (p={srm_p:.2g}), do not trust this test: {reason}"
    return ABResult(**base, test=test, p_value=p, lift=lift, relative_lift=lift / r0 if r0 else None,
                    ci_low=ci_low, ci_high=ci_high, significant=significant, winner=winner, reason=reason)


def sequential_p_value(control: VariantStats, treatment: VariantStats, *, metric: str = "clicks",
                       tau: float = 0.02, previous: float = 1.0) -> float:
    """Always-valid p-value (mixture SPRT) for the rate difference; pass the last look's value as `previous`."""
    # Johari et al. 2017: with the estimate d ~ N(theta, V) and theta ~ N(0, tau^2) under the
    # alternative, the likelihood ratio against theta = 0 is a martingale under H0, so by Ville's
    # inequality min over looks of 1/LR stays valid however often one peeks. tau is the size of
    # plausible lifts (absolute, default 2 points). Normal approximation: needs ~100+ per arm.
    if metric not in METRICS or tau <= 0:
        raise ValueError(f"metric must be one of {METRICS} and tau > 0")
    n1, n0 = treatment.delivered, control.delivered
    if not (n1 and n0):
        return previous
    p1, p0 = getattr(treatment, metric) / n1, getattr(control, metric) / n0
    v = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0
    if v == 0:
        return previous  # all-or-nothing rates so far: no variance estimate, no evidence
    t2 = tau * tau
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * (p1 - p0) ** 2 / (2 * v * (v + t2))
    return min(previous, 1.0, math.exp(-log_lr))


def wilson_interval(count: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of one proportion (for charts); (0, 0) with no trials."""
    return _wilson(count, n, float(stats.norm.ppf(1 - alpha / 2))) if n else (0.0, 0.0)
