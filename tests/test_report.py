"""Tests of signalprop.report against values worked out by hand."""

import pytest
from signalprop import report


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [(3.14159265, 4, 3.142), (0.000123456, 3, 0.000123), (-2.71828, 2, -2.7), (123456.0, 3, 123000.0), (0.0, 4, 0.0)],
)
def test_significant(value, digits, expected):
    assert report.significant(value, digits) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(3.1e-15, 1e-14), (1e-14, 1e-14), (9.99e-11, 1e-10), (0.2, 1.0), (0.0, 1e-300)]
)
def test_power_of_ten_above(value, expected):
    assert report.power_of_ten_above(value) == pytest.approx(expected, rel=1e-12)


def test_bad_digits_raise():
    with pytest.raises(ValueError, match="digits"):
        report.significant(1.0, 0)


def test_negative_deviation_raises():
    with pytest.raises(ValueError, match="finite and >= 0"):
        report.power_of_ten_above(-1e-15)
