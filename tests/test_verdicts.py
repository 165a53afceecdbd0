"""Tests for signalprop.verdicts: intervals against textbook values and Monte Carlo coverage, every verdict outcome."""

import math

import numpy as np
import pytest
from scipy import stats
from signalprop import verdicts as vd
from signalprop.verdicts import Interval


def test_t_interval_matches_the_textbook_value():
    # samples 1..5: mean 3, s = sqrt(2.5), se = sqrt(0.5); t_{0.975, 4} = 2.776445 (printed tables)
    iv = vd.mean_interval([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(0.5)
    assert iv.estimate == pytest.approx(3.0)
    assert (iv.low, iv.high) == pytest.approx((3 - half, 3 + half), abs=1e-5)


def test_t_interval_covers_the_mean_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = sum(vd.within(vd.mean_interval(rng.normal(2.0, 3.0, 6)), 2.0, 2.0) != vd.NOT_REPRODUCED
               for _ in range(4000))
    # binomial standard error of the coverage: sqrt(.95 * .05 / 4000) = 0.0034
    assert abs(hits / 4000 - 0.95) < 0.012


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(300):
        x = rng.exponential(1.0, 40)
        iv = vd.bootstrap_interval(x, np.mean, n_boot=400, seed=3)
        covered += iv.low <= 1.0 <= iv.high
    # percentile bootstrap of a skewed mean at n = 40 covers a little less than 95 %
    assert 0.85 <= covered / 300 <= 0.99
    x = rng.normal(size=(10, 3))
    a = vd.bootstrap_interval(x, lambda r: float(r.mean()), seed=7)
    b = vd.bootstrap_interval(x, lambda r: float(r.mean()), seed=7)
    assert a == b
    assert a.estimate == pytest.approx(x.mean())


def test_jackknife_of_the_mean_is_the_standard_error():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(12, 3))
    est, se = vd.jackknife(x, lambda r: float(r[:, 0].mean()))
    assert est == pytest.approx(x[:, 0].mean())
    assert se == pytest.approx(x[:, 0].std(ddof=1) / math.sqrt(12), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 independent units"):
        vd.jackknife(x[:1], np.mean)
    with pytest.raises(ValueError, match="not finite"):
        vd.jackknife(x, lambda r: float("inf"))


def test_normal_and_bound_intervals():
    assert vd.normal_interval(1.0, 0.1) == Interval(1.0, 0.8, 1.2, "estimate +- 2 standard errors")
    iv = vd.normal_interval(1.0, 0.1, z=3)
    assert (iv.low, iv.high) == pytest.approx((0.7, 1.3))
    iv = vd.bound_interval(3e-15, 1e-15)
    assert (iv.low, iv.high) == pytest.approx((2e-15, 4e-15))


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.9, 1.1, vd.REPRODUCED), (1.3, 1.4, vd.NOT_REPRODUCED), (0.3, 0.4, vd.NOT_REPRODUCED),
     (1.1, 1.3, vd.INCONCLUSIVE), (0.4, 0.6, vd.INCONCLUSIVE), (0.0, 2.0, vd.INCONCLUSIVE)],
)
def test_within_decides_from_the_whole_interval(low, high, expected):
    assert vd.within(Interval((low + high) / 2, low, high), 0.5, 1.2) == expected


def test_one_sided_criteria():
    iv = Interval(25.0, 21.0, 29.0)
    assert vd.at_least(iv, 20) == vd.REPRODUCED
    assert vd.at_least(iv, 30) == vd.NOT_REPRODUCED
    assert vd.at_least(iv, 25) == vd.INCONCLUSIVE
    assert vd.at_most(iv, 30) == vd.REPRODUCED
    assert vd.at_most(iv, 20) == vd.NOT_REPRODUCED
    assert vd.at_most(iv, 25) == vd.INCONCLUSIVE


@pytest.mark.parametrize(
    ("parts", "expected"),
    [([vd.REPRODUCED, vd.REPRODUCED], vd.REPRODUCED),
     ([vd.REPRODUCED, vd.NOT_REPRODUCED], vd.PARTLY),
     ([vd.REPRODUCED, vd.INCONCLUSIVE, vd.NOT_REPRODUCED], vd.PARTLY),
     ([vd.NOT_REPRODUCED, vd.NOT_REPRODUCED], vd.NOT_REPRODUCED),
     ([vd.NOT_REPRODUCED, vd.INCONCLUSIVE], vd.NOT_REPRODUCED),
     ([vd.REPRODUCED, vd.INCONCLUSIVE], vd.INCONCLUSIVE),
     ([vd.INCONCLUSIVE], vd.INCONCLUSIVE),
     ([vd.PARTLY, vd.REPRODUCED], vd.PARTLY)],
)
def test_combine(parts, expected):
    assert vd.combine(parts) == expected


def test_requires_seeds():
    assert vd.requires_seeds(vd.REPRODUCED, 1) == vd.INCONCLUSIVE
    assert vd.requires_seeds(vd.NOT_REPRODUCED, 1) == vd.INCONCLUSIVE
    assert vd.requires_seeds(vd.NOT_REPRODUCED, 2) == vd.NOT_REPRODUCED
    assert vd.requires_seeds(vd.REPRODUCED, 3, minimum=4) == vd.INCONCLUSIVE
    assert vd.requires_seeds(vd.NOT_TESTED, 1) == vd.NOT_TESTED
    with pytest.raises(ValueError, match="verdict must be one of"):
        vd.requires_seeds("fine", 3)
    with pytest.raises(ValueError, match="positive integers"):
        vd.requires_seeds(vd.REPRODUCED, 0)


def test_every_verdict_has_a_legend_entry():
    assert set(vd.LEGEND) == set(vd.VERDICTS) and len(vd.VERDICTS) == 5


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="low must be <= high"):
        Interval(1.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="estimate must be a number"):
        Interval(float("nan"), 0.0, 1.0)
    with pytest.raises(ValueError, match="estimate must be finite"):
        Interval(float("inf"), 0.0, math.inf)
    with pytest.raises(ValueError, match="se must be >= 0"):
        vd.normal_interval(1.0, -0.1)
    with pytest.raises(ValueError, match="z must be > 0"):
        vd.normal_interval(1.0, 0.1, z=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        vd.mean_interval([1.0])
    with pytest.raises(ValueError, match="samples must be finite"):
        vd.mean_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="level must be in"):
        vd.mean_interval([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="at least 2 independent units"):
        vd.bootstrap_interval([1.0], np.mean)
    with pytest.raises(ValueError, match="n_boot"):
        vd.bootstrap_interval([1.0, 2.0], np.mean, n_boot=10)
    with pytest.raises(ValueError, match="not finite on the data"):
        vd.bootstrap_interval([1.0, 2.0], lambda x: float("nan"))
    with pytest.raises(ValueError, match="bound must be >= 0"):
        vd.bound_interval(1.0, -1.0)
    with pytest.raises(ValueError, match="interval must be an Interval"):
        vd.within((0.0, 1.0), 0.0, 1.0)
    with pytest.raises(ValueError, match="lower <= upper"):
        vd.within(Interval(1.0, 0.0, 2.0), 2.0, 1.0)
    with pytest.raises(ValueError, match="at least one verdict"):
        vd.combine([])
    with pytest.raises(ValueError, match="each part"):
        vd.combine([vd.NOT_TESTED])


# --- proportions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (17, 48), (1, 1)])
def test_proportion_interval_is_the_exact_binomial_interval(k, n):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    iv = vd.proportion_interval(k, n)
    assert iv.estimate == k / n
    assert iv.low == pytest.approx(ref.low, abs=1e-12) and iv.high == pytest.approx(ref.high, abs=1e-12)


def test_proportion_interval_covers_at_least_its_level():
    # coverage of the exact interval, summed over the binomial distribution at p = 0.3, n = 20
    n, p = 20, 0.3
    cover = sum(stats.binom.pmf(k, n, p) for k in range(n + 1)
                if vd.proportion_interval(k, n).low <= p <= vd.proportion_interval(k, n).high)
    assert cover >= 0.95


@pytest.mark.parametrize("k, n", [(-1, 5), (6, 5), (0, 0), (1.5, 3), (True, 3)])
def test_proportion_interval_rejects_bad_counts(k, n):
    with pytest.raises(ValueError):
        vd.proportion_interval(k, n)


@pytest.mark.parametrize(
    "low, high, above, below",
    [(0.1, 0.5, "reproduced", "not reproduced"), (-0.5, -0.1, "not reproduced", "reproduced"),
     (-0.1, 0.2, "inconclusive", "inconclusive"), (0.0, 0.0, "not reproduced", "not reproduced"),
     (1.0, 1.0, "reproduced", "not reproduced"), (0.0, 0.3, "inconclusive", "not reproduced")],
)
def test_strict_criteria(low, high, above, below):
    iv = Interval((low + high) / 2, low, high)
    assert vd.above(iv, 0.0) == above
    assert vd.below(iv, 0.0) == below


def test_strict_criteria_reject_bad_input():
    with pytest.raises(ValueError):
        vd.above((0, 1), 0.0)
    with pytest.raises(ValueError):
        vd.below(Interval(0.5, 0, 1), float("nan"))


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([vd.NOT_TESTED, vd.NOT_TESTED], vd.NOT_TESTED),
        ([vd.REPRODUCED, vd.REPRODUCED], vd.REPRODUCED),
        ([vd.REPRODUCED, vd.NOT_TESTED], vd.INCONCLUSIVE),
        ([vd.NOT_REPRODUCED, vd.NOT_TESTED], vd.NOT_REPRODUCED),
        ([vd.REPRODUCED, vd.NOT_REPRODUCED, vd.NOT_TESTED], vd.PARTLY),
        ([vd.INCONCLUSIVE, vd.NOT_TESTED], vd.INCONCLUSIVE),
        ([vd.REPRODUCED, vd.INCONCLUSIVE], vd.INCONCLUSIVE),
    ],
)
def test_combine_available(parts, expected):
    assert vd.combine_available(parts) == expected


def test_combine_available_rejects_bad_input():
    with pytest.raises(ValueError):
        vd.combine_available([])
    with pytest.raises(ValueError):
        vd.combine_available(["maybe"])


def test_over_seeds_decides_from_the_student_interval():
    samples = [0.30, 0.34, 0.32, np.nan]  # the NaN seed is left out
    verdict, iv = vd.over_seeds(samples, vd.above, 0.2)
    x = np.array([0.30, 0.34, 0.32])
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert iv.estimate == pytest.approx(0.32) and iv.low == pytest.approx(0.32 - half)
    assert verdict == vd.REPRODUCED
    assert vd.over_seeds(samples, vd.above, 0.4)[0] == vd.NOT_REPRODUCED
    assert vd.over_seeds(samples, vd.above, 0.31)[0] == vd.INCONCLUSIVE
    assert vd.over_seeds(samples, vd.within, 0.0, 1.0)[0] == vd.REPRODUCED


def test_over_seeds_without_enough_seeds():
    assert vd.over_seeds([], vd.above, 0.0) == (vd.NOT_TESTED, None)
    assert vd.over_seeds([np.nan], vd.above, 0.0) == (vd.NOT_TESTED, None)
    assert vd.over_seeds([5.0], vd.above, 0.0) == (vd.INCONCLUSIVE, None)
    assert vd.over_seeds([5.0, 6.0], vd.above, 0.0, minimum=3)[0] == vd.INCONCLUSIVE
    with pytest.raises(ValueError):
        vd.over_seeds([1.0, 2.0], vd.above, 0.0, minimum=0)
