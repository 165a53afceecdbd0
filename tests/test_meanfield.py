"""Tests for signalprop.meanfield, against reference tables written by an independent route
(tests/data/make_reference_tables.py: adaptive quadrature and Brent's method), closed forms,
finite differences, Monte Carlo and explicit loops."""

import numpy as np
import pytest
import torch
from conftest import decimal_tolerance
from scipy import optimize, special
from signalprop import activations, gaussian, meanfield

# --- tabulated reference values (tests/data/make_reference_tables.py) -------------------------


def _check_row(row, column, value, floor=0.0):
    """``value`` equals the table's entry to one unit of its last digit (or ``floor``, when larger)."""
    text = row[column]
    if text:
        tol = max(decimal_tolerance(text), floor)
        assert value == pytest.approx(float(text), abs=tol, rel=1e-9), (column, row)


def test_tanh_sweep_matches_reference_table(table):
    rows = table("tanh_sweep_sb005.csv")
    sw = np.array([float(r["sigma_w2"]) for r in rows])
    results = {
        "q_star": meanfield.q_star("tanh", sw, 0.05),
        "c_star": meanfield.c_star("tanh", sw, 0.05),
        "chi_1": meanfield.chi_1("tanh", sw, 0.05),
        "chi_q": meanfield.chi_q("tanh", sw, 0.05),
        "chi_c": meanfield.chi_c("tanh", sw, 0.05),
        "xi_q": meanfield.depth_scale_q("tanh", sw, 0.05),
    }
    for i, row in enumerate(rows):
        for column, values in results.items():
            _check_row(row, column, values[i])
        # xi_c = -1/ln chi_c is ill-conditioned near criticality (chi_c -> 1): check it where xi_c < 100.
        if float(row["xi_c"]) < 100:
            assert meanfield.depth_scale_c("tanh", sw[i], 0.05) == pytest.approx(float(row["xi_c"]), rel=1e-4)


def test_chi_c_check_value():
    # SciPy's dblquad at tolerance 1e-13 (tests/data/make_reference_tables.py) gives 0.9611147919740...
    assert meanfield.chi_c("tanh", 2.0, 0.05) == pytest.approx(0.96111479197, abs=5e-12)


def test_tanh_critical_line_parametrisation(table):
    for row in table("tanh_critical_line.csv"):
        sw, sb = meanfield.critical_line("tanh", float(row["q_star"]))
        _check_row(row, "sigma_w2", sw)
        # sigma_b2 = q* - sigma_w2 E[tanh^2] cancels catastrophically for small q* (sigma_b2 ~ q*^3): in double
        # precision it is known only to about 1e-14 q* absolute (the table is computed with 40 digits)
        _check_row(row, "sigma_b2", sb, floor=1e-14 * float(row["q_star"]))
        if row["chi_q"]:
            qs = float(row["q_star"])
            # chi_q* = V'(q*): compare with a central finite difference of the length map.
            h = 1e-5 * qs
            slope = (meanfield.q_map(qs + h, "tanh", sw, sb) - meanfield.q_map(qs - h, "tanh", sw, sb)) / (2 * h)
            assert slope == pytest.approx(float(row["chi_q"]), abs=decimal_tolerance(row["chi_q"]) + 1e-8)


def test_tanh_critical_sigma_w2(table):
    rows = table("tanh_critical_sigma_w2.csv")
    sb = np.array([float(r["sigma_b2"]) for r in rows])
    q, sw = meanfield.critical_point("tanh", sb)
    np.testing.assert_allclose(meanfield.critical_sigma_w2("tanh", sb), sw, rtol=0)
    for i, row in enumerate(rows):
        _check_row(row, "q_star", q[i])
        _check_row(row, "sigma_w2", sw[i])


def test_points_of_the_critical_line_have_chi_1_equal_one():
    q = np.array([1e-3, 0.05, 0.3, 1.0])
    for name in ("tanh", "erf"):
        sw, sb = meanfield.critical_line(name, q)
        np.testing.assert_allclose(meanfield.chi_1(name, sw, sb), 1.0, rtol=1e-10)
        np.testing.assert_allclose(meanfield.q_star(name, sw, sb), q, rtol=1e-9)


# --- erf: closed forms -------------------------------------------------------------------------


def test_erf_appendix_f_fixed_point(table):
    (row,) = table("erf_appendix_f.csv")  # closed forms of the erf expectations, 40 digits
    sw2, sb2 = float(row["sigma_w2"]), float(row["sigma_b2"])
    for name in ("q_star", "c_star", "chi_1", "chi_q", "chi_c"):
        assert getattr(meanfield, name)("erf", sw2, sb2) == pytest.approx(float(row[name]), abs=1e-12)
    assert meanfield.depth_scale_c("erf", sw2, sb2) == pytest.approx(float(row["xi_c"]), abs=1e-6)
    # The other reading of sigma_w, sigma_b (as variances rather than standard deviations) is ordered.
    assert meanfield.c_star("erf", 1.5, 0.5) == 1.0
    # ordered phase: chi_c = chi_1 = sigma_w2 (4 / pi) / sqrt(1 + 4 q*), q* the root of the arcsine length map
    q = optimize.brentq(lambda q: 1.5 * (2 / np.pi) * np.arcsin(2 * q / (1 + 2 * q)) + 0.5 - q, 1e-6, 10, xtol=1e-15)
    assert meanfield.chi_c("erf", 1.5, 0.5) == pytest.approx(1.5 * (4 / np.pi) / np.sqrt(1 + 4 * q), abs=1e-12)


def test_erf_chis_match_their_closed_forms():
    sw = np.array([1.2, 2.0, 2.25, 3.0])
    sb = 0.25
    q = meanfield.q_star("erf", sw, sb)
    c = meanfield.c_star("erf", sw, sb)
    np.testing.assert_allclose(meanfield.chi_1("erf", sw, sb), sw * 4 / np.pi / np.sqrt(1 + 4 * q), rtol=1e-12)
    np.testing.assert_allclose(
        meanfield.chi_q("erf", sw, sb), sw * 4 / np.pi / ((1 + 2 * q) * np.sqrt(1 + 4 * q)), rtol=1e-9
    )
    np.testing.assert_allclose(
        meanfield.chi_c("erf", sw, sb), sw * 4 / np.pi / np.sqrt((1 + 2 * q) ** 2 - 4 * c**2 * q**2), rtol=1e-12
    )


def test_quadrature_path_agrees_with_closed_form_path():
    # An erf given as an opaque callable has no closed form: every moment goes through
    # quadrature and autograd derivatives.
    opaque = activations.from_callable(lambda x: torch.erf(x), name="opaque erf")
    sw = np.array([1.5, 2.25, 3.0])
    for name, rel in [("q_star", 1e-9), ("chi_1", 1e-9), ("chi_q", 1e-9), ("c_star", 1e-8), ("chi_c", 1e-8)]:
        f = getattr(meanfield, name)
        np.testing.assert_allclose(f(opaque, sw, 0.25), f("erf", sw, 0.25), rtol=rel, err_msg=name)


# --- ReLU and linear -----------------------------------------------------------------------


def test_relu_closed_forms():
    sw = np.array([0.5, 1.0, 1.9])
    np.testing.assert_allclose(meanfield.q_star("relu", sw, 0.1), 0.1 / (1 - sw / 2), rtol=1e-13)
    np.testing.assert_allclose(meanfield.chi_1("relu", sw, 0.1), sw / 2, rtol=1e-14)
    np.testing.assert_allclose(meanfield.chi_q("relu", sw, 0.1), sw / 2, rtol=1e-14)
    assert meanfield.q_star("relu", 2.5, 0.1) == np.inf
    assert meanfield.critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="no critical point"):
        meanfield.critical_sigma_w2("relu", 0.05)


def test_tanh_without_bias():
    assert meanfield.q_star("tanh", 0.9, 0.0) == 0.0  # the origin is the stable fixed point
    assert meanfield.q_star("tanh", 1.5, 0.0) > 0.1
    assert meanfield.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, rel=1e-9)


def test_hardtanh_one_dimensional_closed_forms_match_adaptive_quadrature():
    from scipy import integrate

    sw, sb = 1.8, 0.1
    q = meanfield.q_star("hardtanh", sw, sb)

    def expect(f, q):
        def integrand(z):
            return f(np.sqrt(q) * z) * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)

        a = 1 / np.sqrt(q)  # kinks of clip(sqrt(q) z) at z = +-a
        return sum(
            integrate.quad(integrand, lo, hi, epsabs=1e-14, epsrel=1e-13)[0]
            for lo, hi in [(-np.inf, -a), (-a, a), (a, np.inf)]
        )

    assert meanfield.q_map(q, "hardtanh", sw, sb) == pytest.approx(
        sw * expect(lambda u: np.clip(u, -1, 1) ** 2, q) + sb, rel=1e-11
    )
    assert q == pytest.approx(sw * expect(lambda u: np.clip(u, -1, 1) ** 2, q) + sb, rel=1e-11)
    assert meanfield.chi_1("hardtanh", sw, sb) == pytest.approx(
        sw * expect(lambda u: 1.0 * (np.abs(u) < 1), q), rel=1e-11
    )
    h = 1e-5 * q
    slope = (
        sw
        * (expect(lambda u: np.clip(u, -1, 1) ** 2, q + h) - expect(lambda u: np.clip(u, -1, 1) ** 2, q - h))
        / (2 * h)
    )
    assert meanfield.chi_q("hardtanh", sw, sb) == pytest.approx(slope, rel=1e-7)


# --- the correlation map: fixed point, slope, Monte Carlo --------------------------------------


@pytest.mark.parametrize("sw", [1.2, 1.9, 2.5, 4.0])
def test_c_star_is_a_fixed_point_and_chi_c_its_slope(sw):
    cs = meanfield.c_star("tanh", sw, 0.05)
    assert meanfield.c_map(cs, "tanh", sw, 0.05) == pytest.approx(cs, abs=1e-12)
    if cs < 1:
        h = 1e-5
        slope = (meanfield.c_map(cs + h, "tanh", sw, 0.05) - meanfield.c_map(cs - h, "tanh", sw, 0.05)) / (2 * h)
        assert meanfield.chi_c("tanh", sw, 0.05) == pytest.approx(slope, rel=1e-7)


@pytest.mark.parametrize("sw", [3.0, 4.0, 5.0])
def test_c_star_deep_in_the_chaotic_phase_solves_the_exact_fixed_point_equation(sw):
    # At large q* the 2-D rule near c = 1 is off by ~1e-9, which once faked a root next
    # to 1; c* must be the nontrivial root, checked with q* and M(c) from adaptive
    # quadrature (scipy).  (At sigma_w2 = 8, q* = 7.5, the 200^2 rule itself is only
    # good to ~1e-8: documented in c_star.)
    from scipy import integrate, optimize

    sb = 0.05

    def length(q):
        s = np.sqrt(q)
        return (
            sw
            * integrate.quad(lambda z: np.tanh(s * z) ** 2 * np.exp(-z * z / 2), -12, 12, epsabs=1e-14)[0]
            / np.sqrt(2 * np.pi)
            + sb
        )

    q = optimize.brentq(lambda q: length(q) - q, 0.01, 50.0, xtol=1e-14)
    cs = meanfield.c_star("tanh", sw, sb)
    assert cs < 0.9

    def corr(c):
        s = np.sqrt(q)

        def f(z2, z1):
            return np.tanh(s * z1) * np.tanh(s * (c * z1 + np.sqrt(1 - c * c) * z2)) * np.exp(-(z1 * z1 + z2 * z2) / 2)

        return (sw * integrate.dblquad(f, -10, 10, -10, 10, epsabs=1e-12, epsrel=1e-12)[0] / (2 * np.pi) + sb) / q

    assert corr(cs) == pytest.approx(cs, abs=1e-8)


def test_c_map_matches_monte_carlo():
    rng = np.random.default_rng(1)
    sw, sb, q, c = 2.0, 0.05, 0.8, 0.3
    u1 = np.sqrt(q) * rng.standard_normal(1_000_000)
    u2 = c * u1 + np.sqrt(q * (1 - c**2)) * rng.standard_normal(u1.size)
    samples = (sw * np.tanh(u1) * np.tanh(u2) + sb) / q
    se = samples.std() / np.sqrt(samples.size)
    assert abs(meanfield.c_map(c, "tanh", sw, sb, q=q) - samples.mean()) < 4 * se


def test_gamma_matches_finite_difference_of_the_c_map():
    sw, sb = 2.5, 0.05
    q, c = meanfield.q_star("tanh", sw, sb), meanfield.c_star("tanh", sw, sb)
    h = 1e-5

    def entry(s11):
        return sw * gaussian.expect2(np.tanh, np.tanh, s11, q, c * q) + sb

    assert meanfield.gamma("tanh", sw, sb) == pytest.approx((entry(q + h) - entry(q - h)) / (2 * h), rel=1e-6)


def test_vectorised_grid_equals_pointwise():
    sw, sb = np.meshgrid([1.3, 2.2], [0.01, 0.2])
    grid = meanfield.chi_c("tanh", sw, sb)
    assert grid.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            assert grid[i, j] == meanfield.chi_c("tanh", sw[i, j], sb[i, j])


# --- the CNN covariance map -------------------------------------------------------------


def _explicit_step_erf(sigma, sw, sb, v):
    """Eq. (2.3)-(2.5) with explicit loops and modular indices (1-D image)."""
    n, k = sigma.shape[0], len(v) // 2
    out = np.zeros_like(sigma)
    for a in range(n):
        for b in range(n):
            total = 0.0
            for i, vb in enumerate(v):
                beta = i - k
                x, y = (a + beta) % n, (b + beta) % n
                s11, s22, s12 = sigma[x, x], sigma[y, y], sigma[x, y]
                e = 2 / np.pi * np.arcsin(2 * s12 / np.sqrt((1 + 2 * s11) * (1 + 2 * s22)))
                total += vb * (sw * e + sb)
            out[a, b] = total
    return out


def _random_covariance(rng, n):
    a = rng.standard_normal((n, n))
    return a @ a.T / n + 0.1 * np.eye(n)


@pytest.mark.parametrize("v", [[1 / 3] * 3, [0.025, 0.95, 0.025], [0.1, 0.2, 0.4, 0.2, 0.1], [1.0]])
@pytest.mark.parametrize("n", [2, 5, 8])
def test_cnn_step_matches_explicit_loops(v, n):
    rng = np.random.default_rng(n)
    sigma = _random_covariance(rng, n)
    expected = _explicit_step_erf(sigma, 2.25, 0.25, v)
    np.testing.assert_allclose(meanfield.cnn_covariance_step(sigma, "erf", 2.25, 0.25, v), expected, rtol=1e-12)
    # The same through quadrature (an erf without closed form).
    opaque = activations.from_callable(lambda x: torch.erf(x))
    np.testing.assert_allclose(meanfield.cnn_covariance_step(sigma, opaque, 2.25, 0.25, v), expected, rtol=1e-10)


def test_cnn_step_2d_matches_explicit_loops():
    rng = np.random.default_rng(7)
    n1, n2 = 3, 4
    sigma = _random_covariance(rng, n1 * n2).reshape(n1, n2, n1, n2)
    v = np.outer([0.2, 0.6, 0.2], [0.25, 0.5, 0.25])
    sw, sb = 1.7, 0.1
    got = meanfield.cnn_covariance_step(sigma, "linear", sw, sb, v)
    expected = np.zeros_like(sigma)
    for a1, a2, b1, b2 in np.ndindex(sigma.shape):
        for i, j in np.ndindex(v.shape):
            d1, d2 = i - 1, j - 1
            expected[a1, a2, b1, b2] += v[i, j] * (
                sw * sigma[(a1 + d1) % n1, (a2 + d2) % n2, (b1 + d1) % n1, (b2 + d2) % n2] + sb
            )
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("name,sw,sb", [("tanh", 1.5, 0.05), ("tanh", 2.5, 0.05), ("erf", 2.25, 0.25)])
def test_fixed_point_covariance_is_fixed(name, sw, sb):
    star = meanfield.fixed_point_covariance(name, sw, sb, 6)
    for v in ([1 / 3] * 3, [0.1, 0.2, 0.4, 0.2, 0.1]):
        np.testing.assert_allclose(meanfield.cnn_covariance_step(star, name, sw, sb, v), star, rtol=1e-9, atol=1e-12)


# --- Fourier eigenvalues ------------------------------------------------------------------


@pytest.mark.parametrize(
    "v,n,expected",
    [
        ([1 / 3] * 3, 7, [1, 0.748993, 0.184986, -0.267313, -0.267313, 0.184986, 0.748993]),
        ([1 / 3] * 3, 8, [1, 0.804738, 0.333333, -0.138071, -0.333333, -0.138071, 0.333333, 0.804738]),
        ([0.2] * 5, 10, [1, 0.647214, 0, -0.247214, 0, 0.2, 0, -0.247214, 0, 0.647214]),
        ([0.025, 0.95, 0.025], 10, [1, 0.99045085, 0.96545085, 0.93454915, 0.90954915, 0.9] + [0] * 4),
    ],
)
def test_fourier_eigenvalues_reference_values(v, n, expected):
    lam = meanfield.fourier_eigenvalues(v, n)
    expected = np.array(expected, dtype=float)
    if n == 10 and v[0] == 0.025:
        expected[6:] = expected[4:0:-1]
    np.testing.assert_allclose(lam.real, expected, atol=5e-7)
    np.testing.assert_allclose(lam.imag, 0, atol=1e-14)


def test_fourier_eigenvalues_are_the_spectrum_of_the_diagonal_average():
    """Brute force: the matrix of C -> A_v * C on n x n matrices, built with explicit loops."""
    n, v = 6, np.array([0.1, 0.3, 0.6])  # asymmetric: complex eigenvalues
    op = np.zeros((n * n, n * n))
    for a, b in np.ndindex(n, n):
        for i, vb in enumerate(v):
            beta = i - 1
            op[a * n + b, ((a + beta) % n) * n + (b + beta) % n] += vb
    eig = np.linalg.eigvals(op)
    expected = np.repeat(meanfield.fourier_eigenvalues(v, n), n)  # n diagonals, each a copy of the DFT

    def ordered(z):
        return z[np.lexsort((np.round(z.imag, 9), np.round(z.real, 9)))]

    np.testing.assert_allclose(ordered(eig), ordered(expected), atol=1e-12)


def test_fourier_eigenvalues_2d_separable():
    a, b = np.array([0.2, 0.6, 0.2]), np.array([1 / 3] * 3)
    lam = meanfield.fourier_eigenvalues(np.outer(a, b), (5, 8))
    np.testing.assert_allclose(lam, np.outer(meanfield.fourier_eigenvalues(a, 5), meanfield.fourier_eigenvalues(b, 8)))


def test_mode_depth_scales():
    xi = meanfield.mode_depth_scales(0.9, np.array([1.0, 0.5, 0.0, -0.5]))
    np.testing.assert_allclose(xi, [-1 / np.log(0.9), -1 / np.log(0.45), 0.0, -1 / np.log(0.45)])
    assert meanfield.mode_depth_scales(1.0, np.array([1.0]))[0] == np.inf


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sigma_w2": -1.0}, "sigma_w2 is a variance"),
        ({"sigma_b2": -0.1}, "sigma_b2 is a variance"),
        ({"v": [0.5, 0.5]}, "odd length"),
        ({"v": [0.2, 0.2, 0.2]}, "sum to 1"),
        ({"v": [-0.5, 2.0, -0.5]}, "non-negative"),
        ({"sigma": np.array([[1.0, 0.5], [0.2, 1.0]])}, "symmetric"),
        ({"sigma": np.array([[1.0, 2.0], [2.0, 1.0]])}, "positive semi-definite"),
        ({"sigma": np.ones((2, 3))}, "n x n"),
        ({"activation": "sigmoidal"}, "unknown activation"),
    ],
)
def test_cnn_step_rejects_bad_input(kwargs, match):
    args = {"sigma": np.eye(2), "activation": "tanh", "sigma_w2": 1.0, "sigma_b2": 0.1, "v": [1 / 3] * 3}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        meanfield.cnn_covariance_step(**args)


@pytest.mark.parametrize("f", [meanfield.q_star, meanfield.c_star, meanfield.chi_1, meanfield.chi_q, meanfield.chi_c])
def test_scalar_functions_reject_bad_input(f):
    with pytest.raises(ValueError, match="variance"):
        f("tanh", 1.0, -0.5)
    with pytest.raises(ValueError, match="unknown activation"):
        f("swish!", 1.0, 0.1)


def test_critical_line_rejects_nonpositive_q():
    with pytest.raises(ValueError, match="positive"):
        meanfield.critical_line("tanh", 0.0)


def test_special_erf_is_recognised():
    assert meanfield.q_star(special.erf, 2.25, 0.25) == meanfield.q_star("erf", 2.25, 0.25)
