"""Tests for signalprop.init: orthogonality checked on dense operator matrices built by explicit loops."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from signalprop import init


def dense_operator(w: np.ndarray, n: int, padding: str = "circular") -> np.ndarray:
    """Matrix of x -> cross-correlation(x, w) with stride 1 on an n (or n x n) image, built tap by tap."""
    c_out, c_in = w.shape[:2]
    dims = w.ndim - 2
    k = w.shape[2]
    shift = k // 2
    positions = list(np.ndindex(*(n,) * dims))
    index = {p: i for i, p in enumerate(positions)}
    m = np.zeros((c_out * len(positions), c_in * len(positions)))
    for a in positions:
        for t in np.ndindex(*(k,) * dims):
            src = tuple(ai + ti - shift for ai, ti in zip(a, t, strict=True))
            if padding == "circular":
                src = tuple(s % n for s in src)
            elif any(s < 0 or s >= n for s in src):
                continue  # zero padding
            for o in range(c_out):
                for i in range(c_in):
                    m[o * len(positions) + index[a], i * len(positions) + index[src]] += w[(o, i, *t)]
    return m


SIZES = [(1, 3, 3), (2, 3, 3), (3, 4, 4), (3, 3, 6), (4, 5, 5), (5, 2, 6), (3, 1, 1)]


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("k,c_in,c_out", SIZES)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_orthogonal_kernel_is_an_isometry(dims, k, c_in, c_out, n):
    if dims == 2 and n == 7 and k * c_out > 20:
        n = 5  # keep the dense matrix small
    g = torch.Generator().manual_seed(100 * k + 10 * c_in + c_out)
    w = init.orthogonal_kernel(k, c_in, c_out, dims=dims, gain=1.3, generator=g, dtype=torch.float64)
    assert w.shape == (c_out, c_in) + (k,) * dims
    m = dense_operator(w.numpy(), n)
    np.testing.assert_allclose(m.T @ m, 1.69 * np.eye(m.shape[1]), atol=1e-12)
    sv = init.conv_operator_singular_values(w, n)
    np.testing.assert_allclose(sv, np.sort(np.linalg.svd(m, compute_uv=False))[::-1][: sv.size], atol=1e-12)


@pytest.mark.parametrize("dims", [1, 2])
def test_delta_orthogonal_is_an_isometry_for_any_padding(dims):
    g = torch.Generator().manual_seed(3)
    w = init.delta_orthogonal_kernel(3, 4, 6, dims=dims, gain=0.8, generator=g, dtype=torch.float64)
    nonzero = torch.nonzero(w.abs().sum(dim=(0, 1))).tolist()
    assert nonzero == [[1] * dims]
    for padding in ("circular", "zeros"):
        m = dense_operator(w.numpy(), 5, padding)
        np.testing.assert_allclose(m.T @ m, 0.64 * np.eye(m.shape[1]), atol=1e-12)


def test_zero_padding_breaks_algorithm_1():
    g = torch.Generator().manual_seed(4)
    w = init.orthogonal_kernel(3, 8, 8, generator=g, dtype=torch.float64)
    sv = np.linalg.svd(dense_operator(w.numpy(), 7, "zeros"), compute_uv=False)
    assert sv.min() < 0.5 and sv.max() == pytest.approx(1.0, abs=1e-9)


def test_torch_circular_conv_preserves_norms_in_float32():
    g = torch.Generator().manual_seed(5)
    w = torch.empty(16, 8, 3, 3)
    init.conv_orthogonal_(w, gain=math.sqrt(1.05), generator=g)
    x = torch.randn(4, 8, 9, 9, generator=g)
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w)
    ratio = y.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    np.testing.assert_allclose(ratio.numpy(), math.sqrt(1.05), rtol=1e-6)


def test_tap_sum_is_the_input_embedding():
    # The symbol at frequency zero is gain * O.T: its columns are orthonormal up to gain.
    w = init.orthogonal_kernel(4, 3, 5, gain=2.0, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    s = w.sum(dim=(2, 3))
    np.testing.assert_allclose((s.T @ s).numpy(), 4.0 * np.eye(3), atol=1e-12)


def test_tap_energy_profile_is_binomial():
    """Expected energy per tap of a 3x3 Algorithm 1 kernel: outer((1/4, 1/2, 1/4), same)."""
    g = torch.Generator().manual_seed(7)
    energy = sum(
        init.orthogonal_kernel(3, 16, 16, generator=g, dtype=torch.float64).pow(2).sum(dim=(0, 1)) for _ in range(200)
    )
    energy = (energy / energy.sum()).numpy()
    expected = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(energy, expected, atol=0.01)


def test_haar_orthogonal_statistics():
    g = torch.Generator().manual_seed(8)
    qs = torch.stack([init.haar_orthogonal(4, generator=g) for _ in range(2000)])
    np.testing.assert_allclose((qs[0].T @ qs[0]).numpy(), np.eye(4), atol=1e-13)
    # Under Haar measure each entry times sqrt(n) has mean 0, variance 1, and the
    # first entry is distributed like a coordinate of a uniform point on the sphere:
    # (q11 + 1) / 2 ~ Beta((n-1)/2, (n-1)/2).
    q11 = qs[:, 0, 0].numpy()
    assert stats.kstest((q11 + 1) / 2, stats.beta(1.5, 1.5).cdf).pvalue > 1e-4
    # Without the sign correction the diagonal of Q would be biased (QR gives diag(R) > 0).
    assert abs(np.mean(np.diagonal(qs.numpy(), axis1=1, axis2=2))) < 0.03


def test_symmetric_projection():
    p = init.random_symmetric_projection(10, generator=torch.Generator().manual_seed(9))
    np.testing.assert_allclose((p @ p).numpy(), p.numpy(), atol=1e-13)
    np.testing.assert_allclose(p.numpy(), p.T.numpy(), atol=1e-15)
    assert abs(torch.trace(p).item() - round(torch.trace(p).item())) < 1e-12


def test_generator_makes_kernels_reproducible():
    a = init.orthogonal_kernel(3, 4, 4, generator=torch.Generator().manual_seed(1))
    b = init.orthogonal_kernel(3, 4, 4, generator=torch.Generator().manual_seed(1))
    c = init.orthogonal_kernel(3, 4, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gaussian_kernel_variance_profile():
    g = torch.Generator().manual_seed(10)
    w = torch.empty(128, 64, 3, 3, dtype=torch.float64)
    v = np.outer([0.1, 0.8, 0.1], [0.1, 0.8, 0.1])
    init.conv_gaussian_(w, gain=math.sqrt(1.8), v=v, generator=g)
    rel_se = math.sqrt(2 / (128 * 64))  # relative standard error of a variance from 8192 samples
    np.testing.assert_allclose(w.var(dim=(0, 1)).numpy(), 1.8 * v / 64, rtol=4 * rel_se)
    init.conv_gaussian_(w, gain=1.0, generator=g)  # uniform: fan-in normalisation
    assert w.var().item() == pytest.approx(1 / (9 * 64), rel=4 * rel_se / 3)


def test_in_place_initialisers_return_their_argument():
    w = torch.empty(6, 4, 3)
    assert init.conv_orthogonal_(w) is w
    assert init.delta_orthogonal_(w) is w
    assert init.conv_gaussian_(w) is w


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: init.orthogonal_kernel(3, 8, 4), "c_in <= c_out"),
        (lambda: init.delta_orthogonal_kernel(0, 2, 4), "k must be a positive integer"),
        (lambda: init.orthogonal_kernel(3, 2, 4, gain=0.0), "gain must be a positive"),
        (lambda: init.orthogonal_kernel(3, 2, 4, gain=-1.0), "gain must be a positive"),
        (lambda: init.orthogonal_kernel(3, 2, 4, dims=3), "dims must be 1 or 2"),
        (lambda: init.conv_orthogonal_(torch.empty(4, 4)), "rank 2"),
        (lambda: init.delta_orthogonal_(torch.empty(4, 4, 3, 3, 3)), "rank 5"),
        (lambda: init.conv_orthogonal_(torch.empty(4, 8, 3, 3)), "c_in <= c_out"),
        (lambda: init.conv_orthogonal_(torch.empty(4, 4, 3, 2)), "square"),
        (lambda: init.conv_gaussian_(torch.empty(4, 4, 3), v=[0.5, 0.5]), "spatial shape"),
        (lambda: init.conv_gaussian_(torch.empty(4, 4, 3), v=[0.5, 0.5, 0.5]), "sum to 1"),
        (lambda: init.conv_operator_singular_values(torch.empty(4, 4), 3), "rank 2"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
