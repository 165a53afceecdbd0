"""Tests for signalprop.batchnorm: Xie et al. (2017), eq. (1), eqs. (4)-(6) and (11)-(18).

Oracles: torch autograd through torch.nn.functional.batch_norm in training mode, central finite differences of
a float64 forward pass written out here, and numpy.linalg.eigvalsh / svd of the dense matrices.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from signalprop import batchnorm as bn

MS = (2, 3, 8, 64, 256)
EPSS = (0.0, 1e-5, 0.1)


def batch(m: int, d: int | None = None, seed: int = 0) -> np.ndarray:
    """A mini-batch with a non-zero mean and unequal unit scales, as BN sees after a convolution."""
    rng = np.random.default_rng(seed)
    shape = (m,) if d is None else (m, d)
    scale = 3.0 if d is None else rng.uniform(0.3, 3.0, d)
    return 2.0 + scale * rng.standard_normal(shape)


def torch_bn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """torch's batch normalisation of an (m, d) batch in training mode (biased batch variance).

    torch refuses eps = 0 in training mode; then the same map is written with torch.var (autograd still differentiates
    it independently of the library).
    """
    if eps == 0:
        return gamma * (x - x.mean(dim=0)) / torch.sqrt(torch.var(x, dim=0, correction=0)) + beta
    return F.batch_norm(x, None, None, weight=gamma, bias=beta, training=True, eps=eps)


def forward_by_hand(x: np.ndarray, gamma, beta, eps: float) -> np.ndarray:
    """The forward pass written out directly, for finite differences."""
    mu = x.sum(axis=0) / x.shape[0]
    var = ((x - mu) ** 2).sum(axis=0) / x.shape[0]
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def central_jacobian(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d f(x).ravel() / d x.ravel() by central differences."""
    flat = x.ravel()
    cols = []
    for a in range(flat.size):
        e = np.zeros_like(flat)
        e[a] = h
        cols.append((f((flat + e).reshape(x.shape)) - f((flat - e).reshape(x.shape))).ravel() / (2 * h))
    return np.stack(cols, axis=1)


# --- forward ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", EPSS)
def test_forward_matches_torch_batch_norm_in_training_mode(eps):
    x = batch(16, 5, seed=1)
    gamma, beta = np.linspace(0.5, 2.0, 5), np.linspace(-1.0, 1.0, 5)
    ref = torch_bn(torch.from_numpy(x), torch.from_numpy(gamma), torch.from_numpy(beta), eps).numpy()
    np.testing.assert_allclose(bn.forward(x, gamma, beta, eps), ref, rtol=0, atol=1e-12)
    mu, var = bn.batch_statistics(x)
    np.testing.assert_allclose(var, np.var(x, axis=0, ddof=0), rtol=1e-13)
    np.testing.assert_allclose(mu, np.mean(x, axis=0), rtol=1e-13)


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", EPSS)
def test_the_two_sums_of_x_hat_are_exact_for_every_batch_size(m, eps):
    x = batch(m, seed=m)
    x_hat = bn.normalise(x, eps)
    var = np.var(x)
    assert abs(math.fsum(x_hat)) < 1e-12 * m
    assert math.fsum(x_hat**2) == pytest.approx(m * var / (var + eps), rel=1e-13)


# --- backward, eq. (1) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", EPSS)
def test_backward_formula_1_matches_autograd(m, eps):
    d = 3
    x = batch(m, d, seed=10 + m)
    rng = np.random.default_rng(m)
    gamma, grad_y = rng.uniform(0.5, 2.0, d), rng.standard_normal((m, d))
    xt = torch.from_numpy(x).requires_grad_(True)
    y = torch_bn(xt, torch.from_numpy(gamma), torch.zeros(d, dtype=torch.float64), eps)
    (ref,) = torch.autograd.grad(y, xt, torch.from_numpy(grad_y))
    got = bn.backward(x, grad_y, gamma, eps)
    # at m = 2 and eps = 0 the gradient is exactly zero (both directions are projected out): an absolute tolerance
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("eps", EPSS)
def test_backward_formula_1_matches_finite_differences(eps):
    m, d = 8, 2
    x = batch(m, d, seed=5)
    gamma = np.array([0.7, 1.9])
    grad_y = np.random.default_rng(6).standard_normal((m, d))
    loss = lambda z: np.sum(grad_y * forward_by_hand(z, gamma, 0.3, eps))  # noqa: E731
    fd = central_jacobian(lambda z: np.array([loss(z)]), x)[0].reshape(m, d)
    np.testing.assert_allclose(bn.backward(x, grad_y, gamma, eps), fd, rtol=0, atol=1e-8)


# --- the Jacobian, eqs. (4), (6), (9)-(14) --------------------------------------------------------------------------


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", EPSS)
def test_unit_jacobian_eq6_matches_autograd(m, eps):
    x = batch(m, seed=20 + m)
    gamma = 1.7
    g = torch.tensor([gamma], dtype=torch.float64)
    b = torch.zeros(1, dtype=torch.float64)
    ref = torch.autograd.functional.jacobian(lambda z: torch_bn(z[:, None], g, b, eps)[:, 0], torch.from_numpy(x))
    np.testing.assert_allclose(bn.unit_jacobian(x, gamma, eps), ref.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", (2, 3, 8, 64))
@pytest.mark.parametrize("eps", EPSS)
def test_unit_jacobian_eq6_matches_finite_differences(m, eps):
    x = batch(m, seed=30 + m)
    fd = central_jacobian(lambda z: forward_by_hand(z, 0.8, 0.1, eps), x)
    np.testing.assert_allclose(bn.unit_jacobian(x, 0.8, eps), fd, rtol=0, atol=1e-8)


def test_unit_jacobian_is_rho_times_i_minus_u_over_m_entry_by_entry():
    m, eps, gamma = 7, 1e-3, -1.3
    x = batch(m, seed=4)
    s = math.sqrt(np.var(x) + eps)
    x_hat = (x - x.mean()) / s
    rho = gamma / s
    expected = np.array([[rho * ((i == j) - (1 + x_hat[i] * x_hat[j]) / m) for i in range(m)] for j in range(m)])
    np.testing.assert_allclose(bn.unit_jacobian(x, gamma, eps), expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(bn.u_matrix(x, eps), 1 + np.outer(x_hat, x_hat), rtol=1e-13)
    assert float(bn.rho(x, gamma, eps)) == pytest.approx(rho, rel=1e-14)


@pytest.mark.parametrize("eps", EPSS)
def test_full_jacobian_matches_autograd_in_both_orders(eps):
    m, d = 6, 4
    x = batch(m, d, seed=40)
    gamma = np.array([0.5, 1.0, 2.0, -0.7])
    g, b = torch.from_numpy(gamma), torch.zeros(d, dtype=torch.float64)
    ref = torch.autograd.functional.jacobian(lambda z: torch_bn(z, g, b, eps), torch.from_numpy(x)).numpy()
    sample_major = ref.reshape(m * d, m * d)                                    # index i d + k, eqs. (9)-(10)
    unit_major = ref.transpose(1, 0, 3, 2).reshape(m * d, m * d)                # index k m + i, eqs. (4), (11)
    np.testing.assert_allclose(bn.jacobian(x, gamma, eps, order="sample"), sample_major, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bn.jacobian(x, gamma, eps), unit_major, rtol=0, atol=1e-12)
    # block diagonal by unit, each block diagonal in the sample-major layout
    for k in range(d):
        for k2 in range(d):
            block = unit_major[k * m:(k + 1) * m, k2 * m:(k2 + 1) * m]
            assert (k == k2) or np.all(block == 0)


# --- exact eigenvalues, eqs. (15)-(18) --------------------------------------------------------------------------------


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", EPSS)
def test_u_eigenvalues_are_exact_for_every_batch_size(m, eps):
    x = batch(m, seed=50 + m)
    measured = np.sort(np.linalg.eigvalsh(bn.u_matrix(x, eps)))[::-1]
    var = np.var(x)
    predicted = bn.u_eigenvalues(x, eps)
    np.testing.assert_allclose(predicted[:2], [m, m * var / (var + eps)], rtol=1e-14)
    assert np.all(predicted[2:] == 0)
    np.testing.assert_allclose(measured, predicted, rtol=0, atol=1e-8)


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", EPSS)
def test_jacobian_singular_values_are_exact(m, eps):
    x = batch(m, seed=60 + m)
    gamma = -0.9
    measured = np.linalg.svd(bn.unit_jacobian(x, gamma, eps), compute_uv=False)
    predicted = bn.jacobian_singular_values(x, gamma, eps)
    rho = abs(gamma) / math.sqrt(np.var(x) + eps)
    assert np.all(predicted[: m - 2] == pytest.approx(rho, rel=1e-14))
    assert predicted[m - 2] == pytest.approx(rho * eps / (np.var(x) + eps), rel=1e-13, abs=1e-300)
    assert predicted[m - 1] == 0
    np.testing.assert_allclose(measured, predicted, rtol=0, atol=1e-10 * rho)


def test_constant_unit_with_positive_eps():
    x = np.full(5, 3.0)
    np.testing.assert_array_equal(bn.normalise(x, 0.1), np.zeros(5))
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(bn.u_matrix(x, 0.1)))[::-1], bn.u_eigenvalues(x, 0.1),
                               atol=1e-12)


# --- errors -----------------------------------------------------------------------------------------------------------


def test_batch_of_one_sample_is_rejected():
    with pytest.raises(ValueError, match="m >= 2"):
        bn.forward(np.ones((1, 3)))


def test_negative_eps_is_rejected():
    with pytest.raises(ValueError, match="eps"):
        bn.unit_jacobian(batch(4), 1.0, -1e-5)


def test_grad_y_of_another_shape_is_rejected():
    with pytest.raises(ValueError, match="grad_y must have the shape"):
        bn.backward(batch(4, 2), np.ones((4, 3)))


def test_gamma_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="gamma must be a scalar or have shape"):
        bn.forward(batch(4, 2), gamma=np.ones(3))


def test_three_dimensional_batch_is_rejected():
    with pytest.raises(ValueError, match=r"shape \(m,\) or \(m, d\)"):
        bn.forward(np.ones((4, 2, 2)))


def test_unit_functions_reject_several_units():
    with pytest.raises(ValueError, match="one unit"):
        bn.u_eigenvalues(batch(4, 2))


def test_full_jacobian_rejects_one_dimensional_batch():
    with pytest.raises(ValueError, match=r"shape \(m, d\)"):
        bn.jacobian(batch(4))


def test_unknown_order_is_rejected():
    with pytest.raises(ValueError, match="order"):
        bn.jacobian(batch(4, 2), order="row")


def test_constant_unit_without_eps_is_rejected():
    with pytest.raises(ValueError, match="constant"):
        bn.normalise(np.full(4, 2.0), eps=0.0)


def test_non_finite_batch_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        bn.forward(np.array([1.0, np.nan, 2.0]))
