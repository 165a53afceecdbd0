"""Tests for signalprop.vnidepth: streamed deep networks, depth crossings and ordered correlation maps.

Oracles: the closed form R_sq(x_L) = R_sq(x_0) of linear orthogonal networks and their exact row norms,
exact homogeneity (a weight scale of 4 is a factor 4**l on layer l of a ReLU network), Monte Carlo moments of one
layer with fixed seeds, brute-force loops for the grid, the crossing and the off-diagonal mean, and a planted
block structure for the clustering order.
"""

import math

import numpy as np
import pytest
import torch
from signalprop import vni, vnidepth


def gaussian_inputs(m: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((m, n)) * math.sqrt(0.1))


def test_linear_orthogonal_network_keeps_rsq_of_its_inputs():
    x = gaussian_inputs(40, 30)
    expected = vni.vni(x)
    got = vnidepth.vni_profile(x, 30, [1, 10, 100, 300], "linear", "orthogonal", sigma_w2=1.0, seed=3)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_single_precision_network_keeps_rsq_of_its_inputs_to_rounding():
    x = gaussian_inputs(40, 30, seed=2)
    got = vnidepth.vni_profile(x, 30, [200], "linear", "orthogonal", sigma_w2=1.0, seed=4, dtype=torch.float32)
    assert got[0] == pytest.approx(vni.vni(x), rel=1e-4)


def test_linear_orthogonal_layers_scale_every_row_norm_by_sqrt_sigma_w2():
    x = gaussian_inputs(10, 20, seed=1)
    norms0 = torch.linalg.vector_norm(x, dim=1).numpy()
    for layer, out in enumerate(vnidepth.layers(x, 20, 70, "linear", "orthogonal", sigma_w2=1.5, seed=2), start=1):
        np.testing.assert_allclose(torch.linalg.vector_norm(out, dim=1).numpy(), norms0 * 1.5 ** (layer / 2),
                                   rtol=1e-11)


def test_orthogonal_first_layer_from_wider_inputs_has_orthonormal_rows():
    x = torch.eye(50, dtype=torch.float64)  # inputs = the unit vectors, so x_1 = phi(W^T) row by row
    out = next(vnidepth.layers(x, 20, 1, "linear", "orthogonal", sigma_w2=1.0, seed=0))
    w = out.T.numpy()  # (20, 50)
    np.testing.assert_allclose(w @ w.T, np.eye(20), atol=1e-12)


def test_gaussian_layer_has_variance_sigma_w2_q():
    x = gaussian_inputs(400, 200, seed=4)
    q = float((x**2).mean())
    out = next(vnidepth.layers(x, 200, 1, "linear", "gaussian", sigma_w2=1.7, seed=5))
    assert float((out**2).mean()) == pytest.approx(1.7 * q, rel=0.05)  # 200 x 200 weights: sd of the ratio ~0.01


def test_residual_branch_variance_is_divided_by_branch_depth():
    x = gaussian_inputs(400, 200, seed=6)
    q = float((x**2).mean())
    out = next(vnidepth.layers(x, 200, 1, "linear", "gaussian", architecture="residual", sigma_w2=2.0,
                               branch_depth=50, seed=7))
    assert float(((out - x) ** 2).mean()) == pytest.approx(2.0 * q / 50, rel=0.05)


def test_relu_network_is_exactly_homogeneous_in_the_weight_scale():
    x = gaussian_inputs(30, 25, seed=8)
    depths = [1, 5, 20, 60]
    small = vnidepth.vni_profile(x, 25, depths, "relu", "gaussian", sigma_w2=1.0, seed=9)
    big = vnidepth.vni_profile(x, 25, depths, "relu", "gaussian", sigma_w2=16.0, seed=9)  # 4**60 = 2**120: rescaled
    np.testing.assert_allclose(big, small, rtol=1e-12)


def test_profile_reads_the_layers_of_one_deep_network():
    x = gaussian_inputs(30, 20, seed=10)
    outs = [o.clone() for o in vnidepth.layers(x, 20, 150, "tanh", "gaussian", sigma_w2=1.0, seed=11)]
    depths = [1, 7, 64, 65, 130]
    got = vnidepth.vni_profile(x, 20, depths, "tanh", "gaussian", sigma_w2=1.0, seed=11)
    np.testing.assert_allclose(got, [vni.vni(outs[d - 1]) for d in depths], rtol=1e-13)


def test_profile_stops_at_the_threshold():
    x = gaussian_inputs(30, 10, seed=12)
    depths = list(range(1, 401))
    full = vnidepth.vni_profile(x, 10, depths, "relu", "gaussian", sigma_w2=2.0, seed=13)
    cut = vnidepth.vni_profile(x, 10, depths, "relu", "gaussian", sigma_w2=2.0, seed=13, threshold=0.9)
    k = int(np.argmax(full >= 0.9))
    assert full[k] >= 0.9 and np.all(full[:k] < 0.9)
    np.testing.assert_allclose(cut, full[: k + 1], rtol=0)


def test_depth_grid_brute_force():
    for top, ratio in ((1, 1.05), (2, 1.5), (10_000, 1.05), (777, 1.2)):
        grid = vnidepth.depth_grid(top, ratio)
        assert grid[0] == 1 and grid[-1] == top and np.all(np.diff(grid) > 0)
        steps = grid[1:-1] / grid[:-2]
        assert np.all((np.diff(grid)[:-1] == 1) | (steps <= ratio * (1 + 1e-12) + 0.5 / grid[:-2]))


@pytest.mark.parametrize(
    ("r_sq", "expected"),
    [([0.1, 0.5, 0.95, 0.2], (3, 7)), ([0.91], (1, 1)), ([0.1, 0.2], None), ([0.1, 0.2, 0.3, 0.9], (8, 9))],
)
def test_crossing_depth_brute_force(r_sq, expected):
    depths = [1, 2, 7, 9]
    first = next((k for k, r in enumerate(r_sq) if r >= 0.9), None)  # brute force
    brute = None if first is None else ((depths[first - 1] + 1) if first else 1, depths[first])
    assert brute == expected
    assert vnidepth.crossing_depth(depths, r_sq, 0.9) == expected


def test_crossing_depth_on_a_profile():
    assert vnidepth.crossing_depth([1, 2, 7], [0.1, 0.2, 0.9], 0.9) == (3, 7)
    assert vnidepth.crossing_depth([5, 10, 20, 40], [0.1, 0.95], 0.9) == (6, 10)


def test_cluster_order_recovers_planted_blocks():
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(4), 6))
    rho2 = np.where(labels[:, None] == labels[None, :], 0.9, 0.05) + rng.uniform(0, 0.02, (24, 24))
    rho2 = np.minimum((rho2 + rho2.T) / 2, 1.0)
    np.fill_diagonal(rho2, 1.0)
    order = vnidepth.cluster_order(rho2)
    assert sorted(order.tolist()) == list(range(24))
    ordered = labels[order]
    assert np.count_nonzero(np.diff(ordered)) == 3  # each block contiguous


def test_mean_offdiagonal_brute_force():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (7, 7))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    brute = np.mean([a[i, j] for i in range(7) for j in range(7) if i != j])
    assert vnidepth.mean_offdiagonal(a) == pytest.approx(brute, rel=1e-14)
    assert vnidepth.mean_offdiagonal(np.eye(5)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, "width"),
        ({"depth": 0}, "depth"),
        ({"seed": -1}, "seed"),
        ({"weights": "uniform"}, "weights"),
        ({"architecture": "dense"}, "architecture"),
        ({"sigma_w2": 0.0}, "sigma_w2"),
        ({"q": -1.0}, "q"),
        ({"branch_depth": 10}, "branch_depth"),
        ({"architecture": "residual", "width": 7}, "in_features"),
        ({"inputs": np.ones(5)}, "shape"),
        ({"inputs": np.full((3, 5), np.nan)}, "finite"),
        ({"activation": "nonsense"}, "nonsense"),
    ],
)
def test_layers_rejects_bad_input(kwargs, match):
    args = {"inputs": np.ones((3, 5)), "width": 5, "depth": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        next(vnidepth.layers(**args))


@pytest.mark.parametrize(
    ("depths", "threshold", "match"),
    [([], None, "at least one"), ([3, 2], None, "increasing"), ([0, 2], None, ">= 1"), ([1, 2], 1.5, "threshold"),
     ([1.5], None, "integers")],
)
def test_vni_profile_rejects_bad_input(depths, threshold, match):
    with pytest.raises(ValueError, match=match):
        vnidepth.vni_profile(np.ones((3, 5)), 5, depths, threshold=threshold)


def test_depth_grid_and_crossing_reject_bad_input():
    with pytest.raises(ValueError, match="max_depth"):
        vnidepth.depth_grid(0)
    with pytest.raises(ValueError, match="ratio"):
        vnidepth.depth_grid(10, 1.0)
    with pytest.raises(ValueError, match="values for"):
        vnidepth.crossing_depth([1, 2], [0.1, 0.2, 0.3], 0.5)
    with pytest.raises(ValueError, match="finite"):
        vnidepth.crossing_depth([1, 2], [0.1, np.nan], 0.5)
    with pytest.raises(ValueError, match="threshold"):
        vnidepth.crossing_depth([1, 2], [0.1, 0.2], np.inf)


@pytest.mark.parametrize(
    ("rho2", "match"),
    [(np.ones((3, 2)), "square"), (np.ones((1, 1)), "square"), (np.full((2, 2), 1.5), r"\[0, 1\]"),
     (np.array([[1.0, 0.2], [0.3, 1.0]]), "symmetric")],
)
def test_maps_reject_bad_input(rho2, match):
    with pytest.raises(ValueError, match=match):
        vnidepth.cluster_order(rho2)
    with pytest.raises(ValueError, match=match):
        vnidepth.mean_offdiagonal(rho2)
