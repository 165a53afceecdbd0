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


@pytest.mark.parametrize(
    ("estimate", "se", "text"),
    [(8.81, 0.50, "8.8 ± 0.5"), (6.08, 0.52, "6.1 ± 0.5"), (1.13515, 0.00410, "1.135 ± 0.004"),
     (0.9466, 0.0143, "0.947 ± 0.014"), (12345.0, 340.0, "12300 ± 300"), (3.2, 0.96, "3.2 ± 1.0"),
     (3.2, 0.099, "3.20 ± 0.10"), (-0.04, 0.3, "0.0 ± 0.3")],
)
def test_format_pm_prints_at_the_precision_of_the_error(estimate, se, text):
    assert report.format_pm(estimate, se) == text


def test_round_to_error_and_its_errors():
    assert report.round_to_error(2.345, 0.012) == (2.345, 0.012, 3)
    assert report.error_decimals(0.5) == 1 and report.error_decimals(0.15) == 2 and report.error_decimals(40) == -1
    with pytest.raises(ValueError, match="finite and > 0"):
        report.error_decimals(0.0)
    with pytest.raises(ValueError, match="estimate must be finite"):
        report.round_to_error(float("nan"), 0.1)


def test_seed_mean_is_the_mean_and_the_half_width_of_the_95_percent_student_interval():
    # 70, 74, 78 %: mean 74, sample sd 4, t(0.975, 2 d.o.f.) = 4.302653 (tables): half-width 9.94
    assert report.seed_mean([0.70, 0.74, 0.78]) == report.format_pm(74.0, 4.302653 * 4 / 3**0.5)
    assert report.seed_mean([0.70, 0.74, 0.78]) == "74 ± 10"
    assert report.seed_mean([0.1, 0.1, 0.1]) == "10.0 (all 3 seeds)"  # no spread: no interval to print


def test_seed_mean_of_one_or_no_seed():
    assert report.seed_mean([0.778]) == "77.8 (1 seed)"
    assert report.seed_mean([4.6e-5], single=".2g") == "0.0046 (1 seed)"
    assert report.seed_mean([]) == "n/a"
    with pytest.raises(ValueError, match="finite"):
        report.seed_mean([float("nan")])
    with pytest.raises(ValueError, match="finite"):
        report.seed_mean([0.1, float("inf")])
