"""Tests for signalprop.spectra."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from signalprop import init, spectra
from test_init import dense_operator


def test_marchenko_pastur_moments_are_catalan_numbers():
    for k, catalan in [(0, 1), (1, 1), (2, 2), (3, 5), (4, 14)]:
        m = integrate.quad(lambda x, k=k: x**k * spectra.marchenko_pastur_pdf(x), 0, 4, limit=200)[0]
        assert m == pytest.approx(catalan, rel=1e-6)


def test_marchenko_pastur_matches_a_large_random_matrix():
    rng = np.random.default_rng(0)
    n, m = 400, 1000
    w = rng.standard_normal((n, m)) / np.sqrt(m)
    eig = np.linalg.eigvalsh(w @ w.T)
    lo, hi = (1 - np.sqrt(0.4)) ** 2, (1 + np.sqrt(0.4)) ** 2
    assert eig.min() > lo - 0.05 and eig.max() < hi + 0.05

    def cdf(x):
        return np.array([integrate.quad(spectra.marchenko_pastur_pdf, 0, xi, args=(0.4,), limit=200)[0] for xi in x])

    assert spectra.ks_distance(eig[::8], cdf) < 0.05


def test_quarter_circle_cdf_is_the_integral_of_its_pdf():
    s = np.linspace(0, 2, 9)
    num = [integrate.quad(spectra.quarter_circle_pdf, 0, x)[0] for x in s]
    np.testing.assert_allclose(spectra.quarter_circle_cdf(s), num, atol=1e-10)
    moments = [integrate.quad(lambda x, k=k: x**k * spectra.quarter_circle_pdf(x), 0, 2)[0] for k in (2, 4, 6)]
    np.testing.assert_allclose(moments, [1, 2, 5], rtol=1e-9)


def test_ks_distance_of_exact_quantiles_is_small_and_of_a_shift_large():
    u = (np.arange(1000) + 0.5) / 1000
    assert spectra.ks_distance(u, lambda x: np.clip(x, 0, 1)) == pytest.approx(0.0005, abs=1e-12)
    assert spectra.ks_distance(u + 0.2, lambda x: np.clip(x, 0, 1)) > 0.19


def test_conv_operator_matrix_matches_explicit_loops_and_fft():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)
    for n in (3, 8):
        m = spectra.conv_operator_matrix(w, n)
        np.testing.assert_allclose(m, dense_operator(w.numpy(), n), atol=1e-14)
        sv = np.sort(np.linalg.svd(m, compute_uv=False))[::-1][: 2 * n]
        np.testing.assert_allclose(init.conv_operator_singular_values(w, n), sv, atol=1e-12)


def _gauss_quad(f) -> float:
    """E f(z), z ~ N(0, 1), by adaptive quadrature (independent of the library's Gauss-Hermite rules)."""
    val, _ = integrate.quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40,
                            epsabs=1e-14, epsrel=1e-13, limit=200)  # fmt: skip
    return val


def test_predicted_variance_reference_values():
    # tanh at q* = 1/L on the critical line: mu_k = E[phi'(sqrt(q*) z)^(2k)], and the spectral variance of
    # the Jacobian is L (mu_2 / mu_1^2 - 1 - s_1) with s_1 = 0 (orthogonal) or -1 (Gaussian), Xiao et al. eq. (2.16)
    for depth in (16, 100, 1000):
        q = 1.0 / depth
        mu1 = _gauss_quad(lambda z, q=q: math.cosh(math.sqrt(q) * z) ** -4)
        mu2 = _gauss_quad(lambda z, q=q: math.cosh(math.sqrt(q) * z) ** -8)
        orth = depth * (mu2 / mu1**2 - 1)
        assert spectra.predicted_spectral_variance("tanh", q, depth, orthogonal=True) == pytest.approx(orth, rel=1e-8)
        assert spectra.predicted_spectral_variance("tanh", q, depth, orthogonal=False) == pytest.approx(
            orth + depth, rel=1e-10
        )
    q = 0.0259209482  # sigma_w2 = 1.05 on the critical line (tests/data/tanh_critical_line.csv)
    mu1, mu2 = spectra.jacobian_moments("tanh", q)
    assert mu1 == pytest.approx(_gauss_quad(lambda z: math.cosh(math.sqrt(q) * z) ** -4), abs=1e-12)
    assert mu2 == pytest.approx(_gauss_quad(lambda z: math.cosh(math.sqrt(q) * z) ** -8), abs=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="ratio"):
        spectra.marchenko_pastur_pdf(1.0, ratio=2.0)
    with pytest.raises(ValueError, match="shape"):
        spectra.conv_operator_matrix(np.zeros((2, 2)), 4)
    with pytest.raises(ValueError, match="at least one"):
        spectra.ks_distance([], spectra.quarter_circle_cdf)
    with pytest.raises(ValueError, match="depth"):
        spectra.predicted_spectral_variance("tanh", 0.1, 0, orthogonal=True)
