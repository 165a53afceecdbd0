"""Tests for signalprop.cnnvni: the vanishing node indicator of deep random periodic CNNs.

Oracles: dense block-circulant operator matrices built entry by entry from eq. (2.1) of Xiao et al. (2018), PyTorch's
own circular convolution, closed forms for linear networks (orthogonal products, Fuss-Catalan moments), scipy
quadrature for the activation moments, exact Haar-orthogonality of the kernels, and Monte Carlo over Gaussian samples
with fixed seeds for the Wishart finite-sample formula.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from signalprop import cnnvni, vni


def dense_conv(w: torch.Tensor, n: int) -> np.ndarray:
    """The (c n x c n) matrix of the periodic cross-correlation, entry by entry from eq. (2.1), channel-major."""
    w = w.numpy()
    c_out, c_in, k = w.shape
    out = np.zeros((c_out * n, c_in * n))
    for j in range(c_out):
        for i in range(c_in):
            for alpha in range(n):
                for t in range(k):
                    out[j * n + alpha, i * n + (alpha + t - k // 2) % n] += w[j, i, t]
    return out


def dense_forward(ws, bs, x0: np.ndarray, n: int, phi=np.tanh) -> list[np.ndarray]:
    """x^l = phi(W^l x^{l-1} + b^l) with dense matrices; x0 is (M, c n), channel-major."""
    xs, x = [], x0
    for w, b in zip(ws, bs, strict=True):
        x = phi(x @ dense_conv(w, n).T + np.repeat(b.numpy(), n))
        xs.append(x)
    return xs


@pytest.mark.parametrize("kind", cnnvni.KERNELS)
def test_activations_match_dense_block_circulant_matrices(kind):
    c, n, depth, m = 5, 7, 4, 6
    g = torch.Generator().manual_seed(1)
    ws, bs = cnnvni.sample_kernels(kind, depth, c, 3, 1.3, 0.05, generator=g)
    x0 = torch.randn(m, c, n, generator=g, dtype=torch.float64)
    got = cnnvni.cnn_activations(ws, bs, x0, depths=[2, 4, 1])
    want = dense_forward(ws, bs, x0.reshape(m, c * n).numpy(), n)
    for d, x in zip([2, 4, 1], got, strict=True):
        assert x.shape == (m, c * n)
        np.testing.assert_allclose(x.numpy(), want[d - 1], rtol=0, atol=1e-12)


def test_activations_in_2d_match_torch_circular_convolution():
    c, depth, m = 3, 3, 4
    g = torch.Generator().manual_seed(2)
    ws, bs = cnnvni.sample_kernels("gaussian", depth, c, 3, 1.0, 0.1, dims=2, generator=g)
    x0 = torch.randn(m, c, 5, 4, generator=g, dtype=torch.float64)
    x = x0
    for w, b in zip(ws, bs, strict=True):
        x = torch.tanh(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, b))
    got = cnnvni.cnn_activations(ws, bs, x0)[0]
    np.testing.assert_allclose(got.numpy(), x.reshape(m, -1).numpy(), rtol=0, atol=1e-12)


def test_tap_index_wraps_images_smaller_than_the_kernel():
    idx = cnnvni.circular_tap_index((2,), 5)
    np.testing.assert_array_equal(idx.numpy(), [[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]])


def test_kernel_families_have_the_stated_operators():
    c, n, sw2 = 6, 5, 1.7
    g = torch.Generator().manual_seed(3)
    for kind in ("orthogonal", "delta-orthogonal"):
        (w,), _ = cnnvni.sample_kernels(kind, 1, c, 3, sw2, 0.0, generator=g)
        op = dense_conv(w, n)
        np.testing.assert_allclose(op.T @ op, sw2 * np.eye(c * n), atol=1e-12)  # W^T W = sigma_w^2 I
    (w,), _ = cnnvni.sample_kernels("delta-orthogonal", 1, c, 3, sw2, 0.0, generator=g)
    assert torch.count_nonzero(w[:, :, [0, 2]]) == 0
    ws, bs = cnnvni.sample_kernels("gaussian", 400, 8, 3, sw2, 0.25, generator=g)
    entries = torch.stack(ws).numpy()
    assert abs(entries.var() / (sw2 / (8 * 3)) - 1) < 0.03  # 76,800 entries: sd of the ratio ~0.005
    assert abs(torch.stack(bs).numpy().var() / 0.25 - 1) < 0.1  # 3,200 biases: sd ~0.025


def test_linear_delta_orthogonal_network_has_the_minimal_vni():
    """Linear activation: x^L = sigma_w^L Q x^0 with Q orthogonal, so R_sq of the outputs equals that of the inputs."""
    g = torch.Generator().manual_seed(4)
    ws, bs = cnnvni.sample_kernels("delta-orthogonal", 6, 8, 3, 1.0, 0.0, generator=g)
    x0 = torch.randn(40, 8, 3, generator=g, dtype=torch.float64)
    out = cnnvni.cnn_activations(ws, bs, x0, activation="linear")[0]
    assert vni.vni(out) == pytest.approx(vni.vni(x0.reshape(40, -1)), rel=1e-10)


def test_prediction_is_the_moment_ratio_with_quadrature_moments():
    q, L, c, n = 0.05, 12, 16, 4

    def expect(f):
        return integrate.quad(lambda z: f(math.sqrt(q) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                              -12, 12, epsabs=1e-13)[0]

    mu1 = expect(lambda h: (1 - math.tanh(h) ** 2) ** 2)
    mu2 = expect(lambda h: (1 - math.tanh(h) ** 2) ** 4)
    for kind, s1 in (("gaussian", -1.0), ("orthogonal", 0.0), ("delta-orthogonal", 0.0)):
        want = (1 + L * (mu2 / mu1**2 - 1 - s1)) / (c * n)
        assert cnnvni.predicted_vni(kind, L, c, n, q) == pytest.approx(want, rel=1e-9)


def test_prediction_matches_linear_gaussian_cnn_jacobians():
    """Linear Gaussian CNN: tr((J J^T)^2) / tr(J J^T)^2 over networks is close to (1 + L) / N (Fuss-Catalan m_2)."""
    c, n, L = 48, 3, 3
    g = torch.Generator().manual_seed(5)
    r = []
    for _ in range(12):
        ws, _ = cnnvni.sample_kernels("gaussian", L, c, 3, 1.0, 0.0, generator=g)
        j = np.eye(c * n)
        for w in ws:
            j = dense_conv(w, n) @ j
        r.append(vni.vni_from_jacobian(j))
    want = cnnvni.predicted_vni("gaussian", L, c, n, 1e-12, activation="linear")
    assert want == pytest.approx((1 + L) / (c * n))
    assert np.mean(r) == pytest.approx(want, rel=0.08)  # finite-c corrections are O(L / c)


def test_expected_sample_vni_matches_monte_carlo():
    rng = np.random.default_rng(6)
    n, m = 30, 200
    a = rng.standard_normal((n, n)) * np.linspace(0.2, 1.5, n)
    cov = a @ a.T
    r_pop = vni.vni_from_covariance(cov)
    root = np.linalg.cholesky(cov)
    draws = [vni.vni(rng.standard_normal((m, n)) @ root.T + 3.0) for _ in range(3000)]
    se = np.std(draws) / math.sqrt(len(draws))
    # documented error: O(1 / m^2) from the ratio of expectations, on top of the Monte Carlo error
    assert abs(np.mean(draws) - cnnvni.expected_sample_vni(r_pop, m)) < 4 * se + 1 / (m - 1) ** 2
    assert abs(np.mean(draws) - r_pop) > 20 * se  # the correction matters at this size


def test_input_variance_puts_the_first_layer_at_q_star():
    assert cnnvni.input_variance(2.0, 0.1, 0.5) == pytest.approx(0.2)


# --- errors: one per documented ValueError ------------------------------------------------------------------------


def test_errors_sample_kernels():
    with pytest.raises(ValueError, match="unknown kernel family"):
        cnnvni.sample_kernels("uniform", 1, 2, 3, 1.0, 0.0)
    with pytest.raises(ValueError, match="depth"):
        cnnvni.sample_kernels("gaussian", 0, 2, 3, 1.0, 0.0)
    with pytest.raises(ValueError, match="odd"):
        cnnvni.sample_kernels("gaussian", 1, 2, 4, 1.0, 0.0)
    with pytest.raises(ValueError, match="dims"):
        cnnvni.sample_kernels("gaussian", 1, 2, 3, 1.0, 0.0, dims=3)
    with pytest.raises(ValueError, match="sigma_w2"):
        cnnvni.sample_kernels("gaussian", 1, 2, 3, 0.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        cnnvni.sample_kernels("gaussian", 1, 2, 3, 1.0, -1.0)


def test_errors_input_variance():
    with pytest.raises(ValueError, match="sigma_w2"):
        cnnvni.input_variance(0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        cnnvni.input_variance(1.0, -0.1, 1.0)
    with pytest.raises(ValueError, match="exceed"):
        cnnvni.input_variance(1.0, 0.2, 0.1)


def test_errors_tap_index():
    with pytest.raises(ValueError, match="image"):
        cnnvni.circular_tap_index((2, 2, 2), 3)
    with pytest.raises(ValueError, match="odd"):
        cnnvni.circular_tap_index((4,), 2)


def test_errors_cnn_activations():
    ws, bs = cnnvni.sample_kernels("gaussian", 2, 3, 3, 1.0, 0.0, generator=torch.Generator().manual_seed(0))
    x0 = torch.zeros(4, 3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="as many biases"):
        cnnvni.cnn_activations(ws, bs[:1], x0)
    with pytest.raises(ValueError, match="shape \\(c, c, k\\)"):
        cnnvni.cnn_activations([torch.zeros(3, 2, 3)], bs[:1], x0)
    with pytest.raises(ValueError, match="every kernel"):
        cnnvni.cnn_activations([ws[0], torch.zeros(3, 3, 5)], bs, x0)
    with pytest.raises(ValueError, match="every bias"):
        cnnvni.cnn_activations(ws, [bs[0], torch.zeros(2)], x0)
    with pytest.raises(ValueError, match="x0"):
        cnnvni.cnn_activations(ws, bs, torch.zeros(4, 2, 5))
    with pytest.raises(ValueError, match="depths"):
        cnnvni.cnn_activations(ws, bs, x0, depths=[3])


def test_errors_predicted_vni():
    with pytest.raises(ValueError, match="unknown kernel family"):
        cnnvni.predicted_vni("haar", 4, 8, 4, 0.01)
    with pytest.raises(ValueError, match="channels"):
        cnnvni.predicted_vni("gaussian", 4, 0, 4, 0.01)
    with pytest.raises(ValueError, match="positions"):
        cnnvni.predicted_vni("gaussian", 4, 8, 0, 0.01)
    with pytest.raises(ValueError, match="q"):
        cnnvni.predicted_vni("gaussian", 4, 8, 4, 0.0)


def test_errors_expected_sample_vni():
    with pytest.raises(ValueError, match="r_sq"):
        cnnvni.expected_sample_vni(1.5, 10)
    with pytest.raises(ValueError, match="n_inputs"):
        cnnvni.expected_sample_vni(0.5, 1)
