"""Numbers as the book prints them: rounded so that re-executions store the same text.

Chapters glue numbers into their prose (``myst_nb.glue``) and the executed notebooks are
compared output by output (``pytest --nbval``).  A full-precision float changes its last
digits between CPUs (other SIMD code paths in BLAS and FFT libraries), so chapters glue
values rounded to a few significant digits, and deviations at the level of float64
rounding as the power of ten just above them.
"""

from __future__ import annotations

import math

__all__ = ["significant", "power_of_ten_above", "glue_round", "glue_bound"]


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


def glue_round(name: str, value: float, digits: int = 4) -> None:
    """Glue ``value`` rounded to ``digits`` significant digits under ``name`` (not displayed)."""
    from myst_nb import glue

    glue(name, significant(value, digits), display=False)


def glue_bound(name: str, value: float) -> None:
    """Glue :func:`power_of_ten_above` of ``value`` under ``name`` (not displayed)."""
    from myst_nb import glue

    glue(name, power_of_ten_above(value), display=False)
