"""Verdicts decided from an estimate and its uncertainty.

A claim of a paper is checked against a criterion: a tolerance band around the
paper's value, a threshold, or a numerical bound.  A measurement is an
:class:`Interval` (an estimate with a confidence interval over independent
networks or seeds, a bootstrap interval, or a proven bound), and a verdict says
where that interval lies relative to the criterion:

* ``"reproduced"``: the whole interval satisfies the criterion;
* ``"not reproduced"``: the whole interval violates it;
* ``"inconclusive"``: the interval straddles the criterion's edge, so the
  measurement at this scale cannot decide;
* ``"partly reproduced"``: a claim made of several parts (:func:`combine`), some
  reproduced and some not;
* ``"not yet tested"``: no measurement.

Comparing a point estimate with a threshold inside its own error bar would be
a coin flip, which another seed, or another CPU, can turn; these functions never
do that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "REPRODUCED",
    "PARTLY",
    "NOT_REPRODUCED",
    "INCONCLUSIVE",
    "NOT_TESTED",
    "VERDICTS",
    "LEGEND",
    "Interval",
    "normal_interval",
    "mean_interval",
    "proportion_interval",
    "bootstrap_interval",
    "jackknife",
    "bound_interval",
    "within",
    "at_least",
    "at_most",
    "above",
    "below",
    "combine",
    "combine_available",
    "requires_seeds",
    "over_seeds",
]

REPRODUCED = "reproduced"
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not yet tested"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED)

LEGEND = {
    REPRODUCED: "the whole interval of our estimate (or its proven bound) lies inside the stated tolerance",
    PARTLY: "the claim has several parts; some are reproduced and others are not",
    NOT_REPRODUCED: "the whole interval of our estimate lies outside the stated tolerance",
    INCONCLUSIVE: "the interval straddles the tolerance: at our scale the measurement cannot decide",
    NOT_TESTED: "no chapter measures this claim yet",
}


@dataclass(frozen=True)
class Interval:
    """An estimate with an interval ``[low, high]`` that contains the true value at the stated confidence.

    Attributes
    ----------
    estimate : float
        The point estimate.
    low, high : float
        The interval's ends, ``low <= high`` (either may be infinite for a one-sided interval).
    method : str
        How the interval was made, e.g. ``"95% t-interval over 8 networks"``.
    """

    estimate: float
    low: float
    high: float
    method: str = ""

    def __post_init__(self) -> None:
        for name in ("estimate", "low", "high"):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.floating | np.integer) or math.isnan(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(self.estimate):
            raise ValueError(f"estimate must be finite, got {self.estimate!r}")
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high, got [{self.low!r}, {self.high!r}]")


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return level


def normal_interval(estimate: float, se: float, *, z: float = 2.0, method: str = "") -> Interval:
    """``estimate +- z * se``: a normal-approximation interval from a standard error.

    Raises
    ------
    ValueError
        ``estimate`` or ``se`` not finite, ``se < 0`` or ``z <= 0``.
    """
    estimate, se, z = _finite("estimate", estimate), _finite("se", se), _finite("z", z)
    if se < 0:
        raise ValueError(f"se must be >= 0, got {se!r}")
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z!r}")
    return Interval(estimate, estimate - z * se, estimate + z * se, method or f"estimate +- {z:g} standard errors")


def mean_interval(samples: ArrayLike, *, level: float = 0.95) -> Interval:
    """Student-t confidence interval for the mean of independent samples (networks, seeds).

    Raises
    ------
    ValueError
        Fewer than two samples, a non-finite sample, or ``level`` outside (0, 1).
    """
    x = np.asarray(samples, dtype=float).ravel()
    level = _check_level(level)
    if x.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 samples, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite")
    mean = float(x.mean())
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    t = float(stats.t.ppf(0.5 + level / 2, x.size - 1))
    return Interval(mean, mean - t * se, mean + t * se, f"{level:.0%} t-interval over {x.size} samples")


def proportion_interval(successes: int, trials: int, *, level: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) confidence interval for a probability from ``successes`` in ``trials``.

    For a fraction of independent runs (e.g. the share of seeds whose training succeeded): the
    interval's ends are the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the beta
    distributions ``Beta(k, n - k + 1)`` and ``Beta(k + 1, n - k)`` (0 and 1 at ``k = 0`` and
    ``k = n``), so its coverage is at least ``level`` for every true probability.

    Raises
    ------
    ValueError
        ``trials < 1``, ``successes`` outside ``0..trials``, non-integer counts, or ``level``
        outside (0, 1).
    """
    for name, value in (("successes", successes), ("trials", trials)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    k, n = int(successes), int(trials)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {k} of {n}")
    level = _check_level(level)
    alpha = 1 - level
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(k / n, min(low, k / n), max(high, k / n), f"{level:.0%} Clopper-Pearson interval, {k} of {n}")


def bootstrap_interval(
    samples: ArrayLike | Sequence[ArrayLike],
    statistic: Callable[[np.ndarray], float],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over independent units (rows of ``samples``).

    ``samples`` has one row (first axis) per independent unit, e.g. per network;
    each bootstrap replicate resamples rows with replacement and applies
    ``statistic`` to the ``(n, ...)`` array.  The estimate is ``statistic`` of the
    original rows.  The generator is seeded, so the interval is reproducible.

    Raises
    ------
    ValueError
        Fewer than two units, ``n_boot < 100``, ``level`` outside (0, 1), or a
        statistic that is not finite on the data.
    """
    x = np.asarray(samples, dtype=float)
    level = _check_level(level)
    if x.ndim == 0 or x.shape[0] < 2:
        raise ValueError("a bootstrap needs at least 2 independent units (rows)")
    if int(n_boot) != n_boot or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    estimate = float(statistic(x))
    if not math.isfinite(estimate):
        raise ValueError(f"the statistic is not finite on the data: {estimate!r}")
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    reps = np.array([statistic(x[rng.integers(0, n, n)]) for _ in range(int(n_boot))], dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size < 0.9 * n_boot:
        raise ValueError(f"the statistic is not finite on {int(n_boot) - reps.size} of {n_boot} bootstrap replicates")
    low, high = np.quantile(reps, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(estimate, float(min(low, estimate)), float(max(high, estimate)),
                    f"{level:.0%} percentile bootstrap over {n} units")


def jackknife(
    samples: ArrayLike | Sequence[ArrayLike], statistic: Callable[[np.ndarray], float]
) -> tuple[float, float]:
    """``(statistic(samples), jackknife standard error)`` over independent units (rows of ``samples``).

    The standard error is ``sqrt((n - 1)/n * sum_i (theta_i - mean theta)^2)`` with ``theta_i``
    the statistic of the rows without row ``i``; for the mean it equals ``s / sqrt(n)``.  Unlike
    a percentile bootstrap it is not biased upward for statistics that grow with resampling
    noise (a root-mean-square z-score, say).  Build an interval with :func:`normal_interval`.

    Raises
    ------
    ValueError
        Fewer than two units, or a statistic that is not finite on the data or on a replicate.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim == 0 or x.shape[0] < 2:
        raise ValueError("a jackknife needs at least 2 independent units (rows)")
    estimate = float(statistic(x))
    loo = np.array([statistic(np.delete(x, i, axis=0)) for i in range(x.shape[0])], dtype=float)
    if not math.isfinite(estimate) or not np.all(np.isfinite(loo)):
        raise ValueError("the statistic is not finite on the data or on a leave-one-out replicate")
    n = x.shape[0]
    return estimate, float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))


def bound_interval(value: float, bound: float, *, method: str = "") -> Interval:
    """``[value - bound, value + bound]`` for a deterministic computation with a proven error ``bound``.

    Use ``bound = 0`` for exact arithmetic facts (a count, a sign).

    Raises
    ------
    ValueError
        ``value`` not finite or ``bound`` negative or not finite.
    """
    value, bound = _finite("value", value), _finite("bound", bound)
    if bound < 0:
        raise ValueError(f"bound must be >= 0, got {bound!r}")
    return Interval(value, value - bound, value + bound, method or f"deterministic, error <= {bound:.1e}")


def within(interval: Interval, lower: float, upper: float) -> str:
    """Verdict for the criterion ``lower <= true value <= upper``.

    ``"reproduced"`` if ``[low, high]`` lies inside ``[lower, upper]``, ``"not reproduced"``
    if it lies entirely outside, ``"inconclusive"`` if it straddles an edge.

    Raises
    ------
    ValueError
        ``interval`` is not an :class:`Interval`, a bound is NaN, or ``lower > upper``.
    """
    if not isinstance(interval, Interval):
        raise ValueError(f"interval must be an Interval, got {type(interval).__name__}")
    lower, upper = float(lower), float(upper)
    if math.isnan(lower) or math.isnan(upper) or lower > upper:
        raise ValueError(f"the criterion needs lower <= upper, got [{lower!r}, {upper!r}]")
    if lower <= interval.low and interval.high <= upper:
        return REPRODUCED
    if interval.high < lower or interval.low > upper:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def at_least(interval: Interval, threshold: float) -> str:
    """Verdict for the criterion ``true value >= threshold`` (see :func:`within`)."""
    return within(interval, threshold, math.inf)


def at_most(interval: Interval, threshold: float) -> str:
    """Verdict for the criterion ``true value <= threshold`` (see :func:`within`)."""
    return within(interval, -math.inf, threshold)


def above(interval: Interval, threshold: float) -> str:
    """Verdict for the strict criterion ``true value > threshold`` (e.g. "a difference is positive").

    ``"reproduced"`` if ``low > threshold``, ``"not reproduced"`` if ``high <= threshold`` (a
    degenerate interval at the threshold, such as a paired difference that is zero in every pair,
    is a failed strict criterion), ``"inconclusive"`` otherwise.

    Raises
    ------
    ValueError
        ``interval`` is not an :class:`Interval` or ``threshold`` is NaN.
    """
    if not isinstance(interval, Interval):
        raise ValueError(f"interval must be an Interval, got {type(interval).__name__}")
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must be a number, got nan")
    if interval.low > threshold:
        return REPRODUCED
    if interval.high <= threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def below(interval: Interval, threshold: float) -> str:
    """Verdict for the strict criterion ``true value < threshold`` (see :func:`above`)."""
    flipped = Interval(-interval.estimate, -interval.high, -interval.low, interval.method) if isinstance(
        interval, Interval) else interval
    return above(flipped, -float(threshold))


def combine(verdicts: Iterable[str]) -> str:
    """The verdict of a claim made of several parts, each with its own verdict.

    All parts reproduced: ``"reproduced"``.  Some reproduced and some not:
    ``"partly reproduced"``.  None reproduced and at least one not: ``"not
    reproduced"``.  Otherwise (no part fails, some cannot decide):
    ``"inconclusive"``.  A part that is itself ``"partly reproduced"`` counts as
    one reproduced and one failed part.

    Raises
    ------
    ValueError
        No verdicts, or a verdict outside :data:`VERDICTS` or ``"not yet tested"``.
    """
    parts = list(verdicts)
    if not parts:
        raise ValueError("combine needs at least one verdict")
    for v in parts:
        if v not in VERDICTS or v == NOT_TESTED:
            raise ValueError(f"each part must be one of {VERDICTS[:4]}, got {v!r}")
    passed = any(v in (REPRODUCED, PARTLY) for v in parts)
    failed = any(v in (NOT_REPRODUCED, PARTLY) for v in parts)
    if failed:
        return PARTLY if passed else NOT_REPRODUCED
    if all(v == REPRODUCED for v in parts):
        return REPRODUCED
    return INCONCLUSIVE


def combine_available(verdicts: Iterable[str]) -> str:
    """:func:`combine` for a claim some of whose parts may not be measured yet (``"not yet tested"``).

    No part measured: ``"not yet tested"``.  Every part measured: :func:`combine`.  Some parts
    missing: :func:`combine` of the measured ones, except that ``"reproduced"`` becomes
    ``"inconclusive"``, since a missing part could still fail; a claim whose measured parts
    already fail (``"not reproduced"``, ``"partly reproduced"``) keeps that verdict.

    Raises
    ------
    ValueError
        No verdicts, or a verdict outside :data:`VERDICTS`.
    """
    parts = list(verdicts)
    if not parts:
        raise ValueError("combine_available needs at least one verdict")
    for v in parts:
        if v not in VERDICTS:
            raise ValueError(f"each part must be one of {VERDICTS}, got {v!r}")
    measured = [v for v in parts if v != NOT_TESTED]
    if not measured:
        return NOT_TESTED
    verdict = combine(measured)
    if len(measured) < len(parts) and verdict == REPRODUCED:
        return INCONCLUSIVE
    return verdict


def requires_seeds(verdict: str, n_seeds: int, minimum: int = 2) -> str:
    """``verdict``, or ``"inconclusive"`` when it rests on fewer than ``minimum`` independent seeds.

    An interval computed from one training run (a binomial test-set error, say) holds the
    run's seed fixed, so it cannot say whether another seed would decide the other way: a
    training claim is decided only over seeds.

    Raises
    ------
    ValueError
        ``verdict`` is not one of :data:`VERDICTS`, ``n_seeds < 1`` or ``minimum < 1``.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if int(n_seeds) != n_seeds or n_seeds < 1 or int(minimum) != minimum or minimum < 1:
        raise ValueError(f"n_seeds and minimum must be positive integers, got {n_seeds!r} and {minimum!r}")
    if verdict == NOT_TESTED or n_seeds >= minimum:
        return verdict
    return INCONCLUSIVE


def over_seeds(
    samples: ArrayLike, rule: Callable[..., str], *bounds: float, minimum: int = 2, level: float = 0.95
) -> tuple[str, Interval | None]:
    """A training claim decided over seeds: ``rule(mean_interval(samples), *bounds)`` and the interval.

    ``samples`` holds one value per seed (or per seed pair, for a paired difference); non-finite
    values (a seed whose quantity is undefined) are left out.  No finite sample: ``"not yet
    tested"``; fewer than ``minimum``: ``"inconclusive"`` (:func:`requires_seeds`), with no
    interval; otherwise the verdict of ``rule`` (e.g. :func:`above`, :func:`within`) on the
    Student interval at ``level`` (:func:`mean_interval`).

    Raises
    ------
    ValueError
        ``minimum < 1``, or what ``rule`` or :func:`mean_interval` raise.
    """
    if int(minimum) != minimum or minimum < 1:
        raise ValueError(f"minimum must be a positive integer, got {minimum!r}")
    x = np.asarray(samples, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return NOT_TESTED, None
    if x.size < max(int(minimum), 2):
        return requires_seeds(INCONCLUSIVE, int(x.size), int(minimum)), None
    interval = mean_interval(x, level=level)
    return requires_seeds(rule(interval, *bounds), int(x.size), int(minimum)), interval
