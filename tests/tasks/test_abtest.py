"""A/B statistics: reference values from scipy/statsmodels, guards, SRM, stable assignment, peeking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats import proportion  # test dependency: reference implementations

from tasks.abtest import (
    VariantStats,
    assign_variant,
    compare,
    newcombe_diff_ci,
    sequential_p_value,
    srm_p_value,
    two_proportion_test,
)

SECRET = b"test-ab-secret"


def vs(name: str, delivered: int, clicks: int, opens: int | None = None, sent: int | None = None) -> VariantStats:
    return VariantStats(name, sent if sent is not None else delivered, delivered,
                        opens if opens is not None else clicks, clicks)


# (treatment successes, treatment n, control successes, control n), all with every expected count >= 5
LARGE_TABLES = [(39, 75, 28, 75), (150, 1000, 120, 1000), (45, 380, 30, 400), (510, 5000, 455, 4600)]


@pytest.mark.parametrize(("s1", "n1", "s0", "n0"), LARGE_TABLES)
def test_chi_square_matches_scipy_and_the_two_proportion_z_test(s1, n1, s0, n0):
    test, p = two_proportion_test(s1, n1, s0, n0)
    assert test == "chi_square"
    chi2 = stats.chi2_contingency([[s1, n1 - s1], [s0, n0 - s0]], correction=False)
    z, p_z = proportion.proportions_ztest([s1, s0], [n1, n0])
    assert p == pytest.approx(chi2.pvalue, abs=1e-12)
    assert p == pytest.approx(p_z, abs=1e-10)  # uncorrected chi-square is the pooled z-test: chi2 = z^2
    assert chi2.statistic == pytest.approx(z**2, rel=1e-10)


@pytest.mark.parametrize(("s1", "n1", "s0", "n0"), [(2, 12, 7, 13), (0, 30, 4, 30), (1, 200, 0, 180)])
def test_small_tables_use_fisher_exact(s1, n1, s0, n0):
    test, p = two_proportion_test(s1, n1, s0, n0)
    assert test == "fisher_exact"
    assert p == pytest.approx(stats.fisher_exact([[s1, n1 - s1], [s0, n0 - s0]]).pvalue, abs=1e-12)


@pytest.mark.parametrize(("s1", "n1", "s0", "n0"), LARGE_TABLES + [(2, 12, 7, 13), (0, 20, 5, 20), (20, 20, 15, 20),
                                                                   (0, 10, 0, 10), (3, 7, 1, 250)])
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
def test_newcombe_interval_matches_statsmodels(s1, n1, s0, n0, alpha):
    low, high = newcombe_diff_ci(s1, n1, s0, n0, alpha)
    ref_low, ref_high = proportion.confint_proportions_2indep(s1, n1, s0, n0, method="newcomb", compare="diff",
                                                              alpha=alpha)
    assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-6)


def test_spec_example_does_not_support_winner_b_at_95_percent():
    # The spec's example: 75 delivered per variant, human opens 45 vs 58, clicks 28 vs 39; it claims
    # "winner B, confidence 0.95". What the numbers support (checked against scipy/statsmodels):
    #   clicks 28/75 = 37.3% vs 39/75 = 52.0%: chi2 = 3.264, p = 0.0708 (z = 1.807; Yates 0.101, Fisher 0.100),
    #     95% Newcombe CI of B - A: -1.2 to +29.5 points -> includes 0, not significant, no winner.
    #   opens 45/75 = 60.0% vs 58/75 = 77.3%: chi2 = 5.237, p = 0.0221 (Fisher 0.034), CI +2.5 to +31.2 points.
    #     Opens are inflated by machine opens (Apple MPP) and are the second metric tried, so
    #     this is not a trustworthy verdict either, and with 75 < 100 per arm the default guard refuses.
    a = VariantStats("A", 75, 75, 45, 28)
    b = VariantStats("B", 75, 75, 58, 39)

    clicks = compare(a, b, min_sample=50)
    assert clicks.test == "chi_square"
    assert clicks.control_rate == pytest.approx(28 / 75) and clicks.treatment_rate == pytest.approx(39 / 75)
    assert clicks.p_value == pytest.approx(0.0708, abs=5e-4)
    assert clicks.lift == pytest.approx(11 / 75) and clicks.relative_lift == pytest.approx(11 / 28)
    assert clicks.ci_low < 0 < clicks.ci_high
    ref = proportion.confint_proportions_2indep(39, 75, 28, 75, method="newcomb", compare="diff")
    assert (clicks.ci_low, clicks.ci_high) == pytest.approx(ref, abs=1e-6)  # -0.0120 to +0.2953
    assert (clicks.significant, clicks.winner) == (False, None)
    assert "no significant difference" in clicks.reason

    opens = compare(a, b, metric="human_opens", min_sample=50)
    assert opens.p_value == pytest.approx(0.0221, abs=5e-4)
    assert 0 < opens.ci_low < opens.ci_high
    assert (opens.significant, opens.winner) == (True, "B")

    guarded = compare(a, b)  # default min_sample=100
    assert guarded.test == "insufficient_sample"
    assert (guarded.significant, guarded.winner) == (False, None)
    assert guarded.p_value == pytest.approx(clicks.p_value)  # still shown to analysts
    assert "insufficient sample" in guarded.reason and "75 delivered < 100" in guarded.reason
    assert compare(a, b, metric="human_opens").winner is None


def test_clear_difference_names_the_winner_either_way_round():
    a, b = vs("a", 2000, 100), vs("b", 2000, 160)
    result = compare(a, b)
    assert result.test == "chi_square" and result.significant and result.winner == "b"
    assert result.ci_low > 0 and not result.srm_detected and result.reason.startswith("b wins")
    flipped = compare(b, a)
    assert flipped.winner == "b" and flipped.lift < 0 and flipped.ci_high < 0


def test_srm_voids_the_verdict():
    a, b = vs("a", 5000, 250), vs("b", 4600, 460)  # 5% vs 10% clicks: a huge difference
    assert srm_p_value(a, b, None) == pytest.approx(stats.chisquare([5000, 4600]).pvalue)
    result = compare(a, b, weights={"a": 0.5, "b": 0.5})
    assert result.srm_p_value < 0.001 and result.srm_detected
    assert result.p_value < 1e-10 and result.significant
    assert result.winner is None and "sample-ratio mismatch" in result.reason
    assert compare(a, b).srm_detected  # no weights: equal split assumed


def test_srm_uses_the_planned_weights():
    a, b = vs("a", 8000, 400), vs("b", 2000, 200)
    planned = compare(a, b, weights={"a": 4, "b": 1})
    assert planned.srm_p_value == pytest.approx(1.0) and not planned.srm_detected and planned.winner == "b"
    assert compare(a, b).srm_detected  # the same split against an assumed 50/50 is a mismatch
    # a third arm drops out: a and b were planned 1:1 between themselves
    assert compare(vs("a", 3000, 1), vs("b", 3000, 1), weights={"a": 1, "b": 1, "c": 2}).srm_p_value == 1.0
    with pytest.raises(ValueError):
        compare(a, b, weights={"a": 1})


def test_zero_deliveries_give_none_rates_and_no_crash():
    empty, some = vs("a", 0, 0, sent=50), vs("b", 500, 40)
    assert empty.open_rate is None and empty.click_rate is None
    result = compare(empty, some, min_sample=0)
    assert result.control_rate is None and result.treatment_rate == pytest.approx(0.08)
    assert result.test == "insufficient_sample" and result.p_value is None and result.lift is None
    assert result.ci_low is None and result.winner is None and not result.significant
    both = compare(vs("a", 0, 0), vs("b", 0, 0))
    assert both.srm_p_value is None and both.winner is None
    assert sequential_p_value(empty, some) == 1.0


def test_identical_rates_give_p_one_and_no_winner():
    result = compare(vs("a", 1000, 50), vs("b", 1000, 50))
    assert result.p_value == pytest.approx(1.0) and result.lift == 0 and result.relative_lift == 0
    assert result.ci_low < 0 < result.ci_high and result.winner is None
    none_clicked = compare(vs("a", 300, 0), vs("b", 300, 0))  # expected counts 0 -> Fisher, p = 1
    assert none_clicked.test == "fisher_exact" and none_clicked.p_value == 1.0
    assert none_clicked.relative_lift is None and none_clicked.winner is None


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError):
        VariantStats("a", 10, 11, 0, 0)  # delivered > sent
    with pytest.raises(ValueError):
        VariantStats("a", 10, 10, 0, 11)  # clicks must be unique clickers
    with pytest.raises(ValueError):
        compare(vs("a", 10, 1), vs("b", 10, 1), metric="opens")
    with pytest.raises(ValueError):
        compare(vs("a", 10, 1), vs("a", 10, 1))
    with pytest.raises(ValueError):
        compare(vs("a", 10, 1), vs("b", 10, 1), alpha=1.5)


def test_assignment_is_deterministic_and_keyed():
    w = {"a": 1, "b": 1}
    keys = [f"user-{i}" for i in range(200)]
    first = [assign_variant(k, "camp-1", w, SECRET) for k in keys]
    assert first == [assign_variant(k, "camp-1", w, SECRET) for k in keys]
    assert first == [assign_variant(k, "camp-1", {"b": 1, "a": 1}, SECRET) for k in keys]  # dict order irrelevant
    assert first == [assign_variant(k, "camp-1", {"a": 0.5, "b": 0.5}, SECRET) for k in keys]  # normalized
    assert first != [assign_variant(k, "camp-1", w, b"other-secret") for k in keys]
    assert first != [assign_variant(k, "camp-2", w, SECRET) for k in keys]
    assert {assign_variant(k, "camp-1", {"a": 0, "b": 3}, SECRET) for k in keys} == {"b"}


@pytest.mark.parametrize("weights", [{}, {"a": -1, "b": 2}, {"a": 0, "b": 0}, {"a": float("nan")}])
def test_assignment_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        assign_variant("user-1", "camp-1", weights, SECRET)


@pytest.mark.parametrize("weights", [{"a": 0.5, "b": 0.5}, {"a": 0.8, "b": 0.2}, {"a": 1, "b": 1, "c": 2}])
def test_assignment_follows_the_weights(weights):
    n = 100_000
    names = sorted(weights)
    picks = [assign_variant(f"recipient-{i}@example.com", "camp-42", weights, SECRET) for i in range(n)]
    counts = np.array([picks.count(name) for name in names])
    shares = np.array([weights[name] for name in names], dtype=float) / sum(weights.values())
    assert np.abs(counts / n - shares).max() < 0.01
    assert stats.chisquare(counts, f_exp=shares * n).pvalue > 0.001  # no SRM from the assignment itself


def test_sequential_p_value_survives_peeking_where_the_naive_test_does_not():
    # 1000 A/A tests (10% click rate both arms), 50 looks of 40 more deliveries per arm each.
    # Stopping at the first naive p < 0.05 "finds" a winner in ~31% of them; the always-valid
    # p-value, carried from look to look, stays under alpha (~1.4% with this seed).
    rng = np.random.default_rng(7)
    sims, looks, batch, alpha = 1000, 50, 40, 0.05
    clicks = rng.binomial(batch, 0.10, size=(sims, looks, 2)).cumsum(axis=1)
    n = batch * np.arange(1, looks + 1)
    p0, p1 = clicks[:, :, 0] / n, clicks[:, :, 1] / n
    pooled = (p0 + p1) / 2
    naive = 2 * stats.norm.sf(np.abs(p1 - p0) / np.sqrt(pooled * (1 - pooled) * 2 / n))  # = chi2, no correction
    assert (naive < alpha).any(axis=1).mean() > 2 * alpha

    false_positives = 0
    for sim in range(sims):
        p = 1.0
        for look in range(looks):
            k = int(n[look])
            p = sequential_p_value(vs("a", k, int(clicks[sim, look, 0])), vs("b", k, int(clicks[sim, look, 1])),
                                   previous=p)
        false_positives += p < alpha
    assert false_positives / sims <= alpha


def test_sequential_p_value_detects_a_real_lift_and_never_rises():
    p, history = 1.0, []
    for k in range(200, 4001, 200):
        p = sequential_p_value(vs("a", k, k // 10), vs("b", k, k * 3 // 20), previous=p)  # 10% vs 15%
        history.append(p)
    assert history == sorted(history, reverse=True) and history[-1] < 1e-4
