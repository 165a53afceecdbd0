"""Tests for signalprop.orthonormal: Xie et al. (2017), eqs. (3) and (8), §3.2 and §4.

Oracles: Gram matrices computed with numpy, torch autograd of a penalty written out with explicit loops, central
finite differences, and a double loop over pairs of filters with numpy dot products.
"""

import math

import numpy as np
import pytest
import torch
from signalprop import orthonormal as on

SHAPES = [(16, 16, 3, 3), (64, 16, 3, 3), (16, 3, 3, 3), (256, 64, 1, 1)]


def filters(weight: np.ndarray) -> list[np.ndarray]:
    """The filters of a (M, C, kh, kw) weight, one flattened vector per output channel, by indexing."""
    return [weight[j].ravel() for j in range(weight.shape[0])]


# --- reshaping --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES + [(5, 7)])
def test_to_matrix_puts_one_filter_per_column_and_round_trips(shape):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mat = on.to_matrix(w)
    f_in, f_out = math.prod(shape[1:]), shape[0]
    assert tuple(mat.shape) == (f_in, f_out)
    for j, v in enumerate(filters(w.numpy())):
        np.testing.assert_array_equal(mat[:, j].numpy(), v)
    assert torch.equal(on.from_matrix(mat, shape), w)


# --- initialisation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_orthonormal_kernel_is_exactly_orthonormal_within_each_group(shape):
    w = on.orthonormal_kernel(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    vs = np.stack(filters(w), axis=1)  # (f_in, f_out), built by indexing, not by the library's reshape
    f_in, f_out = vs.shape
    if f_in >= f_out:
        assert np.abs(vs.T @ vs - np.eye(f_out)).max() < 1e-10
    else:
        n_groups = -(-f_out // f_in)
        for g in range(n_groups):
            block = vs[:, g * f_in:min((g + 1) * f_in, f_out)]
            assert np.abs(block.T @ block - np.eye(block.shape[1])).max() < 1e-10


def test_grouped_case_has_ceil_groups_and_the_paper_formula_differs_when_f_in_does_not_divide_f_out():
    assert [(g.start, g.stop) for g in on.groups(64, 256)] == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert on.paper_group_count(64, 256) == 4
    assert [(g.start, g.stop) for g in on.groups(64, 100)] == [(0, 64), (64, 100)]
    assert on.paper_group_count(64, 100) == 1 + 36
    assert [(g.start, g.stop) for g in on.groups(27, 16)] == [(0, 16)]


def test_last_group_of_an_uneven_split_is_orthonormal():
    w = on.orthonormal_matrix(4, 10, generator=torch.Generator().manual_seed(0)).numpy()
    for cols in ((0, 4), (4, 8), (8, 10)):
        block = w[:, cols[0]:cols[1]]
        assert np.abs(block.T @ block - np.eye(block.shape[1])).max() < 1e-12


def test_orthonormal_matrix_is_gram_schmidt_of_the_gaussian_vectors():
    """Classical Gram-Schmidt, channel by channel, of the same Gaussian draws gives the same columns."""
    f_in, f_out = 9, 6
    a = torch.randn((f_in, f_out), generator=torch.Generator().manual_seed(7), dtype=torch.float64).numpy()
    q = np.zeros_like(a)
    for j in range(f_out):
        v = a[:, j] - q[:, :j] @ (q[:, :j].T @ a[:, j])
        q[:, j] = v / np.linalg.norm(v)
    got = on.orthonormal_matrix(f_in, f_out, generator=torch.Generator().manual_seed(7)).numpy()
    np.testing.assert_allclose(got, q, rtol=0, atol=1e-12)


def test_seeds_are_reproducible_and_different_seeds_differ():
    a = on.orthonormal_kernel((32, 8, 3, 3), generator=torch.Generator().manual_seed(11))
    b = on.orthonormal_kernel((32, 8, 3, 3), generator=torch.Generator().manual_seed(11))
    c = on.orthonormal_kernel((32, 8, 3, 3), generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float32


def test_in_place_initialiser_fills_a_conv_weight():
    conv = torch.nn.Conv2d(8, 16, 3, bias=False).double()
    on.orthonormal_(conv.weight, generator=torch.Generator().manual_seed(5))
    mat = conv.weight.detach().reshape(16, -1).T.numpy()
    assert np.abs(mat.T @ mat - np.eye(16)).max() < 1e-12


def test_filters_are_uniform_on_the_sphere_in_mean():
    """Haar columns: E[W_ij^2] = 1/f_in; checked over many draws with a 5-sigma band."""
    f_in, f_out, reps = 12, 5, 400
    gen = torch.Generator().manual_seed(21)
    sq = np.stack([on.orthonormal_matrix(f_in, f_out, generator=gen).numpy() ** 2 for _ in range(reps)])
    mean = sq.mean()
    # entries of one draw are dependent, so the band uses the spread of the per-draw means
    per_draw = sq.reshape(reps, -1).mean(axis=1)
    assert abs(mean - 1 / f_in) < 5 * per_draw.std(ddof=1) / math.sqrt(reps)


# --- the regulariser, eq. (3) -----------------------------------------------------------------------------------------


def penalty_by_loops(weights, lam: float, grouped: bool = True) -> torch.Tensor:
    """(lam/2) sum over layers (and groups) of sum_{a, b} (v_a . v_b - delta_ab)^2, with explicit loops."""
    total = torch.zeros((), dtype=torch.float64)
    for w in weights:
        vs = [w[j].reshape(-1) for j in range(w.shape[0])]
        f_in, f_out = vs[0].numel(), len(vs)
        size = f_in if grouped and f_in < f_out else f_out
        for start in range(0, f_out, size):
            group = vs[start:start + size]
            for a in range(len(group)):
                for b in range(len(group)):
                    total = total + (torch.dot(group[a], group[b]) - (1.0 if a == b else 0.0)) ** 2
    return 0.5 * lam * total


@pytest.mark.parametrize("grouped", [True, False])
def test_penalty_matches_a_loop_over_filter_pairs(grouped):
    gen = torch.Generator().manual_seed(2)
    ws = [0.3 * torch.randn((6, 2, 2, 2), generator=gen, dtype=torch.float64),
          0.3 * torch.randn((10, 4), generator=gen, dtype=torch.float64)]  # the second has f_in < f_out
    got = on.penalty(ws, 0.01, grouped=grouped)
    assert float(got) == pytest.approx(float(penalty_by_loops(ws, 0.01, grouped)), rel=1e-12)


def test_penalty_is_zero_at_the_orthonormal_initialisation():
    gen = torch.Generator().manual_seed(4)
    ws = [on.orthonormal_kernel(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    assert float(on.penalty(ws, 1.0)) < 1e-20
    assert float(on.penalty(ws[-1], 1.0, grouped=False)) > 1.0  # 256 filters in R^64 cannot all be orthonormal


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (12, 2, 1, 1), (5, 7)])
@pytest.mark.parametrize("grouped", [True, False])
def test_penalty_grad_matches_autograd(shape, grouped):
    lam = 0.05
    w = 0.4 * torch.randn(shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    w.requires_grad_(True)
    (ref,) = torch.autograd.grad(penalty_by_loops([w], lam, grouped), w)
    got = on.penalty_grad(w.detach(), lam, grouped=grouped)
    assert got.shape == w.shape
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-10
    (ref_lib,) = torch.autograd.grad(on.penalty(w, lam, grouped=grouped), w)
    assert float((got - ref_lib).abs().max() / ref.abs().max()) < 1e-12


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (12, 2, 1, 1)])
def test_penalty_grad_matches_central_finite_differences(shape):
    lam, h = 0.05, 1e-6
    w = 0.4 * torch.randn(shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    flat = w.reshape(-1)
    fd = torch.empty_like(flat)
    for a in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[a] = h
        fd[a] = (on.penalty((flat + e).reshape(shape), lam) - on.penalty((flat - e).reshape(shape), lam)) / (2 * h)
    got = on.penalty_grad(w, lam).reshape(-1)
    assert float((got - fd).abs().max() / fd.abs().max()) < 1e-6


def test_penalty_grad_is_two_lambda_w_times_gram_minus_identity():
    w = torch.randn((7, 10), generator=torch.Generator().manual_seed(10), dtype=torch.float64)  # f_in 10 >= f_out 7
    mat = w.T
    expected = 2 * 0.3 * mat @ (mat.T @ mat - torch.eye(7, dtype=torch.float64))
    assert torch.allclose(on.penalty_grad(w, 0.3), expected.T, rtol=1e-13, atol=0)


# --- filter correlation, eq. (8) --------------------------------------------------------------------------------------


def correlation_by_loops(weights) -> float:
    """Eq. (8) over distinct pairs j > i: a double loop of numpy cosines."""
    total, count = 0.0, 0
    for w in weights:
        vs = filters(np.asarray(w, dtype=float))
        for i in range(len(vs)):
            for j in range(i + 1, len(vs)):
                total += float(vs[i] @ vs[j] / (np.linalg.norm(vs[i]) * np.linalg.norm(vs[j])))
                count += 1
    return total / count


def test_filter_correlation_matches_a_double_loop():
    rng = np.random.default_rng(13)
    base = rng.standard_normal((1, 4, 3, 3))
    ws = [base + 0.8 * rng.standard_normal((10, 4, 3, 3)),  # correlated filters: a positive mean cosine
          rng.standard_normal((6, 5))]
    got = on.filter_correlation([torch.from_numpy(w) for w in ws])
    assert got == pytest.approx(correlation_by_loops(ws), rel=1e-12)
    assert got > 0.1
    assert on.filter_correlation(ws[1]) == pytest.approx(correlation_by_loops(ws[1:]), rel=1e-12)


def test_filter_correlation_is_signed_and_zero_for_orthonormal_filters():
    w = on.orthonormal_kernel((16, 16, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(on.filter_correlation(w)) < 1e-14
    v = np.array([[1.0, 0.0], [-1.0, 0.0]])  # two opposite filters
    assert on.filter_correlation(v) == pytest.approx(-1.0)


# --- errors -----------------------------------------------------------------------------------------------------------


def test_one_dimensional_weight_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        on.to_matrix(torch.ones(5))


def test_from_matrix_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="needs a matrix of shape"):
        on.from_matrix(torch.ones((9, 4)), (4, 2, 2, 2))


def test_non_positive_fan_is_rejected():
    with pytest.raises(ValueError, match="f_out must be a positive integer"):
        on.orthonormal_matrix(4, 0)


def test_paper_group_count_needs_grouping():
    with pytest.raises(ValueError, match="f_in < f_out"):
        on.paper_group_count(16, 16)


def test_negative_lambda_is_rejected():
    with pytest.raises(ValueError, match="lam"):
        on.penalty(torch.ones((3, 3)), -1.0)


def test_empty_layer_list_is_rejected():
    with pytest.raises(ValueError, match="empty sequence"):
        on.penalty([], 1e-4)


def test_zero_filter_is_rejected_by_the_correlation():
    with pytest.raises(ValueError, match="norm zero"):
        on.filter_correlation(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_single_filter_layers_have_no_correlation():
    with pytest.raises(ValueError, match="two filters"):
        on.filter_correlation(np.ones((1, 4)))


def test_non_finite_weight_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        on.penalty(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))


def test_bad_shape_for_the_kernel_is_rejected():
    with pytest.raises(ValueError, match="positive sizes"):
        on.orthonormal_kernel((16, 0, 3, 3))
