"""Shared helpers for the library tests: the reference tables of tests/data/ (see make_reference_tables.py there)."""

from __future__ import annotations

import csv
import gc
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


@pytest.fixture
def ray_local(monkeypatch):
    """A Ray instance in local mode (tasks run in this process) for the duration of a test."""
    ray = pytest.importorskip("ray")
    # Ray 2.54 warns (FutureWarning) that it will stop overriding CUDA_VISIBLE_DEVICES for
    # tasks with num_gpus=0 unless this is set; setting it opts in to the future behaviour.
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(local_mode=True, num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    gc.collect()  # Ray leaves closed-process handles and /dev/null files to the collector: collect them here
