"""Numbers as the book prints them: rounded so that re-executions store the same text.

Chapters glue numbers into their prose (``myst_nb.glue``) and the executed notebooks are
compared output by output (``pytest --nbval``).  A full-precision float changes its last
digits between CPUs (other SIMD code paths in BLAS and FFT libraries), so chapters glue
values rounded to a few significant digits, and deviations at the level of float64
rounding as the power of ten just above them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["significant", "power_of_ten_above", "error_decimals", "round_to_error", "format_pm", "seed_mean",
           "glue_round", "glue_bound", "glue_pm", "markdown_table"]


def significant(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits.

    Raises
    ------
    ValueError
        ``digits < 1``.
    """
    if int(digits) != digits or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    return float(f"{float(value):.{int(digits)}g}")


def power_of_ten_above(value: float) -> float:
    """The smallest power of ten ``>= value``: a bound for a round-off-sized deviation (3.1e-15 -> 1e-14).

    Values below 1e-300 (zero included) give 1e-300.

    Raises
    ------
    ValueError
        ``value`` is negative or not finite.
    """
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a deviation must be finite and >= 0, got {value!r}")
    return float(10.0 ** math.ceil(math.log10(max(value, 1e-300))))


def error_decimals(se: float) -> int:
    """Decimal places at which a standard error ``se`` is known: one significant digit, two if it starts with 1.

    An error's own relative error is large (about ``1/sqrt(2(n - 1))`` for ``n`` samples, 25 % at
    ``n = 9``), so its second digit is noise unless the first is a 1.  The result may be negative
    (``se = 340`` gives ``-2``: round to hundreds).

    Raises
    ------
    ValueError
        ``se`` is not finite and positive.
    """
    se = float(se)
    if not math.isfinite(se) or se <= 0:
        raise ValueError(f"a standard error must be finite and > 0, got {se!r}")
    one_digit = float(f"{se:.0e}")  # 0.96 -> 1.0, 0.52 -> 0.5
    decimals = -math.floor(math.log10(one_digit))
    return decimals + 1 if f"{one_digit:.0e}".startswith("1") else decimals


def round_to_error(estimate: float, se: float) -> tuple[float, float, int]:
    """``(estimate, se, decimals)`` with both rounded to :func:`error_decimals` of ``se``.

    Raises
    ------
    ValueError
        ``estimate`` not finite, or ``se`` not finite and positive.
    """
    estimate = float(estimate)
    if not math.isfinite(estimate):
        raise ValueError(f"estimate must be finite, got {estimate!r}")
    d = error_decimals(se)
    return round(estimate, d) + 0.0, round(float(se), d) + 0.0, d


def format_pm(estimate: float, se: float, *, sep: str = " ± ") -> str:
    """``"6.1 ± 0.5"``: an estimate and its standard error, printed at the precision of the error.

    Raises
    ------
    ValueError
        As :func:`round_to_error`.
    """
    est, err, d = round_to_error(estimate, se)
    if d <= 0:
        return f"{est:.0f}{sep}{err:.0f}"
    return f"{est:.{d}f}{sep}{err:.{d}f}"


def seed_mean(samples: Sequence[float], *, scale: float = 100.0, single: str = ".1f") -> str:
    """``"77.8 ± 1.2"``: the mean of ``samples`` (one per seed) times ``scale`` and the half-width of its
    95 % Student interval (:func:`signalprop.verdicts.mean_interval`), at the precision of that half-width.

    One sample has no interval: it is printed alone in the format ``single`` with ``" (1 seed)"``;
    equal samples are printed once with ``" (all n seeds)"``; no sample gives ``"n/a"``.
    ``scale=100`` prints fractions as percentages.

    Raises
    ------
    ValueError
        A non-finite sample.
    """
    from signalprop import verdicts

    x = [float(v) for v in samples]
    if not x:
        return "n/a"
    if len(x) == 1:
        if not math.isfinite(x[0]):
            raise ValueError("samples must be finite")
        return f"{scale * x[0]:{single}} (1 seed)"
    iv = verdicts.mean_interval([scale * v for v in x])
    if iv.high == iv.low:
        return f"{scale * x[0]:{single}} (all {len(x)} seeds)"
    return format_pm(iv.estimate, (iv.high - iv.low) / 2)


def glue_round(name: str, value: float, digits: int = 4) -> None:
    """Glue ``value`` rounded to ``digits`` significant digits under ``name`` (not displayed)."""
    from myst_nb import glue

    glue(name, significant(value, digits), display=False)


def glue_bound(name: str, value: float) -> None:
    """Glue :func:`power_of_ten_above` of ``value`` under ``name`` (not displayed)."""
    from myst_nb import glue

    glue(name, power_of_ten_above(value), display=False)


def glue_pm(name: str, estimate: float, se: float) -> None:
    """Glue ``"estimate ± se"`` (:func:`format_pm`) as Markdown under ``name``; cite it with ``{glue:md}``."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(format_pm(estimate, se)), display=False)


def markdown_table(rows: list[dict[str, object]]) -> str:
    """A Markdown pipe table of ``rows`` (dicts with the same keys, in order; cells as ``str``).

    ``|`` in a cell is escaped.  Show it with ``IPython.display.Markdown``.

    Raises
    ------
    ValueError
        No rows, or rows with different keys.
    """
    if not rows:
        raise ValueError("a table needs at least one row")
    keys = list(rows[0])
    if any(list(r) != keys for r in rows):
        raise ValueError("every row must have the same keys in the same order")

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(k) for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
