"""Tests for signalprop.vni: the vanishing node indicator of Chang (2019), eqs. (3.2)-(3.7).

Oracles: a double loop over node pairs with np.corrcoef (eq. (3.4) as written), scipy quadrature and closed
forms for the activation moments, Fuss-Catalan numbers for products of Gaussian matrices, the Wishart moments
for independent nodes, and independently computed reference values for the thesis's settings.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
from signalprop import vni

# --- the indicator, eqs. (3.2)-(3.6) ---------------------------------------------------------------------------


def brute_force_vni(x: np.ndarray) -> float:
    """Eq. (3.4) literally: sum over all pairs (i, j), diagonal included, of rho_ij^2 sigma_i^2 sigma_j^2."""
    n = x.shape[1]
    var = [np.var(x[:, i]) for i in range(n)]
    num = den = 0.0
    for i in range(n):
        for j in range(n):
            rho2 = 1.0 if i == j else np.corrcoef(x[:, i], x[:, j])[0, 1] ** 2
            num += rho2 * var[i] * var[j]
            den += var[i] * var[j]
    return num / den


def mixed_nodes(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """Correlated nodes with unequal variances and non-zero means."""
    z = rng.standard_normal((m, n))
    mix = np.eye(n) + 0.6 * rng.standard_normal((n, n))
    return z @ mix * rng.uniform(0.2, 3.0, n) + rng.normal(0, 5, n)


@pytest.mark.parametrize("m,n", [(50, 7), (5, 8), (2, 2), (300, 12)])
def test_vni_matches_a_double_loop_over_node_pairs(m, n):
    rng = np.random.default_rng(m * 100 + n)
    x = mixed_nodes(rng, m, n)
    expected = brute_force_vni(x)
    assert vni.vni(x) == pytest.approx(expected, rel=1e-11)
    assert vni.vni(torch.from_numpy(x)) == pytest.approx(expected, rel=1e-11)
    assert vni.vni_from_covariance(np.cov(x, rowvar=False)) == pytest.approx(expected, rel=1e-11)


def test_vni_is_the_variance_weighted_average_of_all_squared_correlations():
    rng = np.random.default_rng(3)
    x = mixed_nodes(rng, 200, 6)
    rho2 = np.corrcoef(x, rowvar=False) ** 2
    np.testing.assert_allclose(vni.squared_correlations(x), rho2, rtol=1e-12, atol=1e-14)
    # equal variances: the plain mean over all N^2 ordered pairs, diagonal included
    xs = (x - x.mean(0)) / x.std(0)
    assert vni.vni(xs) == pytest.approx(rho2.mean(), rel=1e-12)
    assert vni.vni(xs) != pytest.approx(rho2[~np.eye(6, dtype=bool)].mean(), rel=1e-3)


def test_vni_under_shifts_sign_flips_and_scalings():
    rng = np.random.default_rng(4)
    x = mixed_nodes(rng, 100, 9)
    r = vni.vni(x)
    shift = rng.normal(0, 100, 9)
    signs = rng.choice([-1.0, 1.0], 9)
    assert vni.vni(x + shift) == pytest.approx(r, rel=1e-10)
    assert vni.vni(3.7 * signs * x) == pytest.approx(r, rel=1e-12)
    assert vni.vni(1e-150 * x) == pytest.approx(r, rel=1e-12)  # no underflow of the fourth powers
    assert vni.vni(1e150 * x) == pytest.approx(r, rel=1e-12)
    assert vni.vni(1e306 * x) == pytest.approx(r, rel=1e-12)  # nor overflow of the column sums
    # rho_ij^2 is invariant to any per-node affine map, so the correlation map is too ...
    scales = rng.uniform(0.1, 10, 9) * signs
    np.testing.assert_allclose(vni.squared_correlations(x * scales + shift), vni.squared_correlations(x), atol=1e-12)
    # ... but R_sq weights pairs by sigma_i^2 sigma_j^2 (eq. (3.4)), so per-node rescaling changes it
    assert vni.vni(x * scales) == pytest.approx(brute_force_vni(x * scales), rel=1e-11)
    assert abs(vni.vni(x * scales) - r) > 1e-3


def test_perfectly_correlated_nodes_give_one():
    rng = np.random.default_rng(5)
    col = rng.standard_normal((500, 1))
    assert vni.vni(np.repeat(col, 10, axis=1)) == pytest.approx(1.0, abs=1e-12)
    copies = col * rng.uniform(-4, 4, 10) + rng.normal(0, 1, 10)  # affine copies: rho_ij^2 = 1
    assert vni.vni(copies) == pytest.approx(1.0, abs=1e-12)


def test_exactly_uncorrelated_nodes_give_one_over_n():
    # centred, mutually orthogonal columns of equal norm: the sample covariance is a multiple of I
    rng = np.random.default_rng(6)
    a = rng.standard_normal((100, 10))
    q, _ = np.linalg.qr(a - a.mean(0))
    assert vni.vni(q) == pytest.approx(1 / 10, rel=1e-12)
    # with these inputs the output covariance is exactly proportional to J J^T: eq. (3.5) = eq. (3.6)
    j = rng.standard_normal((10, 10))
    assert vni.vni(q @ j.T) == pytest.approx(vni.vni_from_jacobian(j), rel=1e-12)
    ev = np.linalg.eigvalsh(j @ j.T)
    assert vni.vni_from_jacobian(j) == pytest.approx(np.sum(ev**2) / np.sum(ev) ** 2, rel=1e-12)


def test_independent_gaussian_nodes_match_the_wishart_value():
    # For N independent Gaussian nodes and M inputs the centred scatter matrix S is Wishart(I, M' = M - 1), with
    # E tr(S^2) = M' N (M' + N + 1) and E tr(S)^2 = M' N (M' N + 2), so R_sq ~ (M' + N + 1) / (M' N + 2):
    # 1/N plus the finite-sample bias ~1/M (with i = j excluded it would be ~1/M alone, 0.0005 here).
    # The spread of one draw at M = 2000, N = 50 is ~2e-5 (200 draws, measured while writing the test), so 1.5e-4
    # is > 7 sd yet 3x smaller than the 5e-4 bias that separates it from 1/N.
    m, n = 2000, 50
    x = np.random.default_rng(7).standard_normal((m, n))
    expected = (m - 1 + n + 1) / ((m - 1) * n + 2)
    assert vni.vni(x) == pytest.approx(expected, abs=1.5e-4)
    assert abs(vni.vni(x) - 1 / n) > 3e-4


def test_constant_nodes_get_zero_weight_and_all_constant_is_an_error():
    rng = np.random.default_rng(8)
    x = mixed_nodes(rng, 60, 5)
    with_dead = np.column_stack([x[:, :2], np.full(60, 0.1), x[:, 2:], np.zeros(60)])
    assert vni.vni(with_dead) == pytest.approx(vni.vni(x), rel=1e-12)
    # a constant whose floating-point mean is off by an ulp (0.1 here) is still a constant node: it must not
    # acquire a spurious variance, which would matter next to nodes of tiny spread
    assert np.full(60, 0.1).mean() != 0.1
    tiny = 1e-15 * x / np.abs(x).max()
    padded = np.column_stack([tiny, np.full(60, 0.1), np.ones(60)])
    assert vni.vni(padded) == pytest.approx(vni.vni(tiny), rel=1e-12)
    with pytest.raises(ValueError, match="constant"):
        vni.vni(np.full((10, 4), 0.3))
    with pytest.raises(ValueError, match="constant"):
        vni.squared_correlations(with_dead)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.ones(5), "2-D"),
        (np.ones((2, 2, 2)), "2-D"),
        (np.ones((1, 5)), "2 inputs"),
        (np.ones((5, 1)), "2 nodes"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "finite"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "finite"),
        ([["a", "b"], ["c", "d"]], "real"),
    ],
)
def test_vni_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        vni.vni(bad)


def test_covariance_and_jacobian_forms_reject_bad_input():
    with pytest.raises(ValueError, match="square"):
        vni.vni_from_covariance(np.ones((2, 3)))
    with pytest.raises(ValueError, match="trace"):
        vni.vni_from_covariance(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="zero"):
        vni.vni_from_jacobian(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        vni.vni_from_jacobian(np.full((2, 2), np.nan))


def test_effective_nodes():
    assert vni.effective_nodes(1 / 200, 200) == pytest.approx(200.0)
    assert vni.effective_nodes(1.0, 200) == pytest.approx(1.0)
    np.testing.assert_allclose(vni.effective_nodes(np.array([0.5, 0.25]), 100), [51.0, 76.0])
    with pytest.raises(ValueError, match="r_sq"):
        vni.effective_nodes(1.5, 10)
    with pytest.raises(ValueError, match="width"):
        vni.effective_nodes(0.5, 0)


# --- the ingredients of eq. (3.7) ------------------------------------------------------------------------------


def gauss_quad(f, q: float) -> float:
    """E f(h), h ~ N(0, q), by adaptive quadrature (independent of the library's Gauss-Hermite rule)."""
    s = math.sqrt(q)
    return integrate.quad(
        lambda z: f(s * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40, epsabs=1e-14, epsrel=1e-13,
        limit=400,
    )[0]  # fmt: skip


@pytest.mark.parametrize("q", [1e-4, 0.01, 0.1, 0.5, 1.0])
def test_moments_against_independent_quadrature_and_closed_forms(q):
    mu1, mu2 = vni.moments("tanh", q)
    assert mu1 == pytest.approx(gauss_quad(lambda h: math.cosh(h) ** -4, q), abs=1e-12)
    assert mu2 == pytest.approx(gauss_quad(lambda h: math.cosh(h) ** -8, q), abs=1e-12)
    # hard-tanh: phi' = 1{|h| < 1}, so mu_1 = mu_2 = P(|h| < 1) = erf(1 / sqrt(2 q))
    p = math.erf(1 / math.sqrt(2 * q))
    for name in ("hardtanh", "hard_tanh", "hard-tanh"):
        assert vni.moments(name, q) == pytest.approx((p, p), abs=1e-15)
    assert vni.moments("relu", q) == pytest.approx((0.5, 0.5), abs=1e-15)
    assert vni.moments("linear", q) == pytest.approx((1.0, 1.0), abs=1e-13)


def test_moments_reproduce_the_reference_table_and_vectorise():
    # reference table of mu_1, mu_2 (10 decimals, computed independently of this library)
    assert vni.moments("hardtanh", 0.1) == pytest.approx((0.9984345977, 0.9984345977), abs=1e-10)
    assert vni.moments("hardtanh", 1.0) == pytest.approx((0.6826894921, 0.6826894921), abs=1e-10)
    assert vni.moments("tanh", 0.1) == pytest.approx((0.8492070684, 0.7497889838), abs=1e-10)
    assert vni.moments("tanh", 0.5) == pytest.approx((0.5924257934, 0.4559935292), abs=1e-10)
    assert vni.moments("tanh", 1.0) == pytest.approx((0.4644029024, 0.3415092073), abs=1e-10)
    mu1, mu2 = vni.moments("tanh", np.array([0.1, 1.0]))
    np.testing.assert_allclose(mu1, [0.8492070684, 0.4644029024], atol=1e-10)
    mu1, _ = vni.moments("relu", np.array([0.1, 1.0, 2.0]))
    np.testing.assert_allclose(mu1, [0.5, 0.5, 0.5])
    assert vni.moments("hardtanh", 0.0) == (1.0, 1.0)  # the q -> 0+ limit
    with pytest.raises(ValueError, match="q"):
        vni.moments("tanh", -0.1)
    with pytest.raises(ValueError, match="unknown activation"):
        vni.moments("softsign", 0.1)


def test_s1_of_the_weight_laws():
    assert vni.s1("gaussian") == -1.0
    assert vni.s1("orthogonal") == 0.0
    with pytest.raises(ValueError, match="weights"):
        vni.s1("uniform")


def test_growth_term_reproduces_the_reference_table():
    # mu_2 / mu_1^2 - 1 - s_1 (reference table, Gaussian and orthogonal weights)
    table = [
        ("linear", 0.3, 1.0, 0.0),
        ("relu", 0.3, 2.0, 1.0),
        ("hardtanh", 0.1, 1.0015678566, 0.0015678566),
        ("hardtanh", 0.5, 1.1866608034, 0.1866608034),
        ("hardtanh", 1.0, 1.4647947735, 0.4647947735),
        ("tanh", 0.01, 1.0007273237, 0.0007273237),
        ("tanh", 0.1, 1.0397091225, 0.0397091225),
        ("tanh", 1.0, 1.5834799414, 0.5834799414),
    ]
    for name, q, gauss, orth in table:
        assert vni.growth_term(name, "gaussian", q) == pytest.approx(gauss, abs=1e-10), name
        assert vni.growth_term(name, "orthogonal", q) == pytest.approx(orth, abs=1e-10), name


# --- eq. (3.7) -----------------------------------------------------------------------------------------------


def fuss_catalan(depth: int, k: int) -> float:
    """k-th moment of the squared singular values of a product of `depth` square Ginibre matrices (variance 1/N)."""
    return special.comb((depth + 1) * k, k, exact=True) / (depth * k + 1)


def test_fuss_catalan_oracle():
    assert [fuss_catalan(1, k) for k in range(1, 5)] == [1, 2, 5, 14]  # Catalan numbers (Marchenko-Pastur)
    assert [fuss_catalan(2, k) for k in range(1, 4)] == [1, 3, 12]
    assert all(fuss_catalan(L, 2) == L + 1 for L in range(1, 30))


@pytest.mark.parametrize("width", [10, 200, 500])
def test_linear_theory_is_the_fuss_catalan_ratio(width):
    # eq. (3.6): R_sq ~ m_2 / (N m_1^2); for a linear Gaussian network J J^T is a product of Ginibre matrices
    for depth in (1, 2, 5, 10, 37, 100):
        fc = fuss_catalan(depth, 2) / (width * fuss_catalan(depth, 1) ** 2)
        assert vni.vni_theory("linear", depth, width, "gaussian", 0.1) == pytest.approx(fc, rel=1e-12)
        m1, m2 = vni.jacobian_spectrum_moments("linear", depth, "gaussian", 0.1)
        assert (m1, m2) == pytest.approx((fuss_catalan(depth, 1), fuss_catalan(depth, 2)), rel=1e-12)
        # a product of orthogonal matrices is orthogonal: J J^T = I, no spectral variance, R_sq = 1/N
        assert vni.vni_theory("linear", depth, width, "orthogonal", 0.1) == pytest.approx(1 / width, rel=1e-12)
        assert vni.jacobian_spectrum_moments("linear", depth, "orthogonal", 0.1) == pytest.approx((1.0, 1.0))


def test_sigma_w2_scales_the_moments_but_cancels_in_the_prediction():
    for sw in (0.5, 1.0, 1.7):
        m1, m2 = vni.jacobian_spectrum_moments("linear", 4, "gaussian", 0.1, sigma_w2=sw)
        assert m1 == pytest.approx(sw**4, rel=1e-12)
        assert m2 == pytest.approx(sw**8 * fuss_catalan(4, 2), rel=1e-12)
        m1, m2 = vni.jacobian_spectrum_moments("tanh", 7, "gaussian", 0.3, sigma_w2=sw)
        assert m2 / (150 * m1**2) == pytest.approx(vni.vni_theory("tanh", 7, 150, "gaussian", 0.3), rel=1e-12)
    with pytest.raises(ValueError, match="sigma_w2"):
        vni.jacobian_spectrum_moments("linear", 4, "gaussian", 0.1, sigma_w2=0.0)


def test_one_relu_layer_with_orthogonal_weights():
    # J = sqrt(2) D W with W orthogonal: J J^T = 2 D^2 = 2 D has eigenvalues 0 and 2 with probability 1/2,
    # so m_1 = 1 and m_2 = 2 (a closed form) and R_sq = 2/N
    assert vni.jacobian_spectrum_moments("relu", 1, "orthogonal", 0.2, sigma_w2=2.0) == pytest.approx((1.0, 2.0))
    assert vni.vni_theory("relu", 1, 64, "orthogonal", 0.2) == pytest.approx(2 / 64)
    rng = np.random.default_rng(9)
    n = 300
    w, _ = np.linalg.qr(rng.standard_normal((n, n)))
    d = (w @ rng.normal(0, math.sqrt(0.2), n) > 0).astype(float)
    j = math.sqrt(2) * d[:, None] * w
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(j @ j.T)), np.sort(2 * d), atol=1e-10)
    # E[d_i] = 1/2: the fraction of active units is Binomial(n, 1/2) / n, sd 0.029, so 0.12 is 4 sd
    assert np.mean(d) == pytest.approx(0.5, abs=0.12)


def test_products_of_gaussian_matrices_follow_fuss_catalan_and_eq_3_6():
    # Monte Carlo of the Jacobian spectrum that eqs. (3.6)/(3.7) rely on. N = 400, L = 3, 5 draws: the measured
    # per-draw sd is 0.4 % (m_1), 1 % (m_2), 2 % (m_3) and 0.6 % (R_sq), finite-N bias ~2 % for m_3; the
    # tolerances are > 4 sd of the 5-draw mean plus that bias.
    rng = np.random.default_rng(10)
    n, depth = 400, 3
    stats = []
    for _ in range(5):
        j = np.eye(n)
        for _ in range(depth):
            j = rng.standard_normal((n, n)) / math.sqrt(n) @ j
        ev = np.linalg.eigvalsh(j @ j.T)
        stats.append([np.mean(ev), np.mean(ev**2), np.mean(ev**3), vni.vni_from_jacobian(j)])
    m1, m2, m3, r = np.mean(stats, axis=0)
    assert m1 == pytest.approx(fuss_catalan(depth, 1), rel=0.02)
    assert m2 == pytest.approx(fuss_catalan(depth, 2), rel=0.04)
    assert m3 == pytest.approx(fuss_catalan(depth, 3), rel=0.08)
    assert r == pytest.approx(vni.vni_theory("linear", depth, n, "gaussian", 0.1), rel=0.03)
    # orthogonal factors: exactly 1/N
    j = np.eye(n)
    for _ in range(depth):
        j = np.linalg.qr(rng.standard_normal((n, n)))[0] @ j
    assert vni.vni_from_jacobian(j) == pytest.approx(vni.vni_theory("linear", depth, n, "orthogonal", 0.1), rel=1e-9)


def test_hard_tanh_prediction_at_the_fig_3_2_setting():
    # Reference table: hard-tanh, Gaussian, q = 0.1: R_sq = 1/N + 1.0015679 L / N, tabulated to 5 decimals
    slope = 1.0015678566
    table = {
        (200, 10): 0.05508, (200, 25): 0.13020, (200, 50): 0.25539, (200, 100): 0.50578,
        (500, 10): 0.02203, (500, 25): 0.05208, (500, 50): 0.10216, (500, 100): 0.20231,
    }  # fmt: skip
    for (n, depth), value in table.items():
        r = vni.vni_theory("hardtanh", depth, n, "gaussian", 0.1)
        assert r == pytest.approx(1 / n + slope * depth / n, abs=1e-11)
        assert r == pytest.approx(value, abs=5e-6)
    # the theory values quoted beside the Monte-Carlo means at N=200, L=10 and N=500, L=50: 0.0551 and 0.1022
    assert round(vni.vni_theory("hard_tanh", 10, 200, "gaussian", 0.1), 4) == 0.0551
    assert round(vni.vni_theory("hard_tanh", 50, 500, "gaussian", 0.1), 4) == 0.1022
    # vectorised over depth and width
    grid = vni.vni_theory("hardtanh", np.array([[10], [50]]), np.array([200, 500]), "gaussian", 0.1)
    np.testing.assert_allclose(grid, [[0.05508, 0.02203], [0.25539, 0.10216]], atol=5e-6)


def test_other_activations_follow_the_notes():
    # tanh / ReLU predictions: (1 + L term) / N with the reference terms
    assert vni.vni_theory("tanh", 10, 200, "gaussian", 0.1) == pytest.approx((1 + 10 * 1.0397091225) / 200)
    assert vni.vni_theory("relu", 10, 200, "gaussian", 0.7) == pytest.approx(21 / 200)
    assert vni.vni_theory("relu", 10, 200, "orthogonal", 0.7) == pytest.approx(11 / 200)
    assert vni.vni_theory("tanh", 10, 200, "orthogonal", 1e-4) == pytest.approx(1 / 200, rel=1e-5)


def test_simulated_hard_tanh_networks_match_eq_3_7():
    # Fig. 3.2 setting at its smallest depth: N = 200, L = 10, hard-tanh, Gaussian sigma_w2 = 1/mu_1(0.1), zero bias,
    # M = 1000 inputs N(0, 0.1).  Reference Monte Carlo: 0.0552 +- 0.0024 (sd over seeds) vs 0.0551, so the mean of
    # 10 seeds has sd ~0.0008 (1.5 %) and the +-15 % band is > 8 sd wide; the finite-M bias is ~+1/M = 2 %.
    n, depth, m = 200, 10, 1000
    sw2 = 1 / math.erf(1 / math.sqrt(0.2))
    rng = np.random.default_rng(11)
    values = []
    for _ in range(10):
        x = rng.normal(0, math.sqrt(0.1), (m, n))
        for _ in range(depth):
            x = np.clip(x @ (rng.standard_normal((n, n)) * math.sqrt(sw2 / n)).T, -1, 1)
        values.append(vni.vni(x))
    theory = vni.vni_theory("hardtanh", depth, n, "gaussian", 0.1)
    assert np.mean(values) == pytest.approx(theory, rel=0.15)
    assert np.mean(values) > 5 / n  # far above the orthogonal / uncorrelated value 1/N + 1/M


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"activation": "softsign"}, "unknown activation"),
        ({"weights": "uniform"}, "weights"),
        ({"weights": None}, "weights"),
        ({"depth": 0}, "depth"),
        ({"depth": 2.5}, "depth"),
        ({"depth": True}, "depth"),
        ({"width": 0}, "width"),
        ({"width": -3}, "width"),
        ({"q": 0.0}, "q"),
        ({"q": -0.1}, "q"),
        ({"q": float("nan")}, "q"),
    ],
)
def test_vni_theory_rejects_bad_input(kwargs, match):
    args = {"activation": "tanh", "depth": 10, "width": 100, "weights": "gaussian", "q": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        vni.vni_theory(**args)
