"""Shared helpers for the library tests: the reference tables of tests/data/ (see make_reference_tables.py there)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, encoding="utf-8") as fh:
        lines = [line for line in fh if not line.startswith("#")]
    return list(csv.DictReader(lines))


def decimal_tolerance(text: str) -> float:
    """One unit in the last printed digit of a tabulated number.

    The reference tables print a fixed number of digits, sometimes rounded and
    sometimes truncated (e.g. 1.332534e-12 for 1.3325347e-12), so agreement can only
    be asked to within one unit of the last digit printed.
    """
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


@pytest.fixture(scope="session")
def table():
    return _rows
