"""Tests for signalprop.gaussian."""

import numpy as np
import pytest
from scipy import integrate, special
from signalprop import gaussian


def _adaptive(f, q):
    def integrand(z):
        return f(np.sqrt(q) * z) * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)

    return integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-15, epsrel=1e-13, limit=200)[0]


def test_nodes_integrate_polynomials_exactly():
    z, w = gaussian.hermite_nodes(20)
    assert w.sum() == pytest.approx(1.0, rel=1e-14)
    # E[z^{2m}] = (2m - 1)!!
    for m, moment in [(1, 1.0), (2, 3.0), (3, 15.0), (4, 105.0)]:
        assert np.sum(w * z ** (2 * m)) == pytest.approx(moment, rel=1e-12)


def test_many_nodes_stay_finite():
    z, w = gaussian.hermite_nodes(400)
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("q", [1e-4, 0.1, 0.7, 1.0, 2.0, 3.0])
@pytest.mark.parametrize(
    "name,f", [("tanh^2", lambda u: np.tanh(u) ** 2), ("sech^4", lambda u: (1 - np.tanh(u) ** 2) ** 2)]
)
def test_expect_matches_adaptive_quadrature(name, f, q):
    assert gaussian.expect(f, q) == pytest.approx(_adaptive(f, q), rel=1e-10, abs=1e-300)


def test_expect_is_vectorised_over_q():
    q = np.array([[0.1, 0.5], [1.0, 2.0]])
    out = gaussian.expect(np.cos, q)
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, np.exp(-q / 2), rtol=1e-13)  # E[cos(u)] = exp(-q/2)


@pytest.mark.parametrize("s11,s22,s12", [(1.0, 1.0, 0.744), (0.5, 2.0, -0.3), (1.45, 1.45, 1.18), (0.2, 0.2, 0.2)])
def test_expect2_matches_erf_closed_form(s11, s22, s12):
    quad = gaussian.expect2(special.erf, special.erf, s11, s22, s12)
    assert quad == pytest.approx(gaussian.erf_moment(s11, s22, s12), rel=1e-10)
    derf = gaussian.expect2(
        lambda x: 2 / np.sqrt(np.pi) * np.exp(-(x**2)), lambda x: 2 / np.sqrt(np.pi) * np.exp(-(x**2)), s11, s22, s12
    )
    assert derf == pytest.approx(gaussian.erf_derivative_moment(s11, s22, s12), rel=1e-10)


def test_expect2_tanh_matches_dblquad():
    q, c = 0.72176187, 0.74408242
    cov = q * np.array([[1.0, c], [c, 1.0]])
    inv, det = np.linalg.inv(cov), np.linalg.det(cov)

    def density(y, x):
        v = np.array([x, y])
        return np.tanh(x) * np.tanh(y) * np.exp(-0.5 * v @ inv @ v) / (2 * np.pi * np.sqrt(det))

    ref = integrate.dblquad(density, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-12)[0]
    assert gaussian.expect2(np.tanh, np.tanh, q, q, c * q) == pytest.approx(ref, rel=1e-10)


def test_relu_closed_forms_match_monte_carlo():
    rng = np.random.default_rng(0)
    cov = np.array([[1.3, 0.4], [0.4, 0.8]])
    u = rng.multivariate_normal([0, 0], cov, size=2_000_000)
    relu = np.maximum(u, 0)
    mc = np.mean(relu[:, 0] * relu[:, 1])
    se = np.std(relu[:, 0] * relu[:, 1]) / np.sqrt(len(u))
    assert abs(gaussian.relu_moment(1.3, 0.8, 0.4) - mc) < 4 * se
    both = (u[:, 0] > 0) & (u[:, 1] > 0)
    assert abs(gaussian.relu_derivative_moment(1.3, 0.8, 0.4) - both.mean()) < 4 * np.sqrt(0.25 / len(u))


def test_relu_closed_form_diagonal_is_half_the_variance():
    assert gaussian.relu_moment(0.7, 0.7, 0.7) == pytest.approx(0.35, rel=1e-14)


@pytest.mark.parametrize(
    "args,match",
    [
        ((-0.1, 1.0, 0.0), "s11 is a variance"),
        ((1.0, -1.0, 0.0), "s22 is a variance"),
        ((1.0, 1.0, 1.5), "positive semi"),
    ],
)
def test_expect2_rejects_bad_covariances(args, match):
    with pytest.raises(ValueError, match=match):
        gaussian.expect2(np.tanh, np.tanh, *args)


def test_expect_rejects_negative_variance_and_bad_nodes():
    with pytest.raises(ValueError, match="q is a variance"):
        gaussian.expect(np.tanh, -1.0)
    with pytest.raises(ValueError, match="positive integer"):
        gaussian.hermite_nodes(0)
