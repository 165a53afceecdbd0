"""Tests for signalprop.linearisation, against explicit matrices, hand-computed Jacobians,
the closed-form erf C-map and brute-force loops."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from signalprop import linearisation as lin
from signalprop import meanfield

# --- coordinates ----------------------------------------------------------------------------


def test_coordinates_round_trip_and_ordering():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(5, 5))
    m = b + b.T
    x = lin.to_coordinates(m)
    assert x.shape == (15,)
    np.testing.assert_array_equal(x[:5], np.diag(m))
    assert x[5] == m[0, 1] and x[-1] == m[3, 4]
    np.testing.assert_array_equal(lin.from_coordinates(x, 5), m)


def test_symmetric_basis_is_canonical():
    basis = lin.symmetric_basis(3)
    assert basis.shape == (6, 3, 3)
    expected_01 = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(basis[3], expected_01)  # (0, 1) follows the 3 diagonal pairs
    np.testing.assert_array_equal(basis.sum(axis=0), np.ones((3, 3)))


def test_psd_directions_are_psd_and_span():
    dirs = lin.psd_directions(4)
    assert all(np.linalg.eigvalsh(d).min() >= -1e-15 for d in dirs)
    t = np.stack([lin.to_coordinates(d) for d in dirs])
    assert np.linalg.matrix_rank(t) == 10


# --- the finite-difference Jacobian ---------------------------------------------------------


def _linear_map(k, n):
    return lambda x: lin.from_coordinates(k @ lin.to_coordinates(x), n)


@pytest.mark.parametrize("one_sided", [False, True])
def test_jacobian_of_linear_map_is_its_matrix(one_sided):
    rng = np.random.default_rng(1)
    n, m = 4, 10
    k = rng.normal(size=(m, m))
    x = np.eye(n) + 0.1
    dirs = lin.psd_directions(n) if one_sided else None
    jac = lin.jacobian(_linear_map(k, n), x, step=0.5, directions=dirs, one_sided=one_sided)
    np.testing.assert_allclose(jac, k, atol=1e-12)


@pytest.mark.parametrize("one_sided", [False, True])
def test_jacobian_of_matrix_square_by_hand(one_sided):
    # f(X) = X @ X at X = [[x, y], [y, z]]: outputs (x^2 + y^2, z^2 + y^2, y (x + z)) in
    # coordinates (00, 11, 01), inputs (x, z, y).  Quadratic, so both rules are exact.
    x, y, z = 0.7, -0.3, 1.9
    point = np.array([[x, y], [y, z]])
    expected = np.array([[2 * x, 0, 2 * y], [0, 2 * z, 2 * y], [y, y, x + z]])
    dirs = lin.psd_directions(2) if one_sided else None
    jac = lin.jacobian(lambda a: a @ a, point, step=0.25, directions=dirs, one_sided=one_sided)
    np.testing.assert_allclose(jac, expected, atol=1e-13)


def _erf_cmap_jacobian(s, sw2):
    """Closed-form Jacobian of C(S)_ab = sw2 (2/pi) arcsin(2 s_ab / sqrt((1 + 2 s_aa)(1 + 2 s_bb))) + sb2."""
    n = s.shape[0]
    rows, cols = lin.symmetric_pairs(n)
    m = rows.size
    pos = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(rows, cols, strict=True))}
    jac = np.zeros((m, m))
    for k, (a, b) in enumerate(zip(rows, cols, strict=True)):
        a, b = int(a), int(b)
        saa, sbb, sab = s[a, a], s[b, b], s[a, b]
        root = np.sqrt((1 + 2 * saa) * (1 + 2 * sbb))
        xx = 2 * sab / root
        outer = sw2 * 2 / np.pi / np.sqrt(1 - xx**2)
        if a == b:
            jac[k, pos[(a, a)]] = outer * 2 / (1 + 2 * saa) ** 2
        else:
            jac[k, pos[(a, b)]] = outer * 2 / root
            jac[k, pos[(a, a)]] = outer * (-xx / (1 + 2 * saa))
            jac[k, pos[(b, b)]] = outer * (-xx / (1 + 2 * sbb))
    return jac


def test_jacobian_of_erf_c_map_matches_closed_form_at_generic_point():
    rng = np.random.default_rng(2)
    b = rng.normal(size=(4, 4))
    s = b @ b.T / 4 + 0.2 * np.eye(4)
    sw2, sb2 = 1.7, 0.1
    jac = lin.jacobian(lambda x: meanfield.c_transform(x, "erf", sw2, sb2), s, step=1e-5)
    np.testing.assert_allclose(jac, _erf_cmap_jacobian(s, sw2), atol=1e-9)


def test_lemma_jacobian_matches_erf_closed_form_at_fixed_point():
    sw2, sb2, n = 2.25, 0.25, 5
    s = meanfield.fixed_point_covariance("erf", sw2, sb2, n)
    expected = _erf_cmap_jacobian(s, sw2)
    got = lin.lemma_jacobian(n, *lin.fixed_point_slopes("erf", sw2, sb2))
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_one_sided_jacobian_in_ordered_phase_matches_lemma():
    # c* = 1: Sigma* has rank one, so only PSD-preserving one-sided differences are possible.
    sw2, sb2, n = 1.2, 0.05, 3
    assert meanfield.c_star("tanh", sw2, sb2) == 1.0
    s = meanfield.fixed_point_covariance("tanh", sw2, sb2, n)
    jac = lin.jacobian(
        lambda x: meanfield.c_transform(x, "tanh", sw2, sb2),
        s,
        step=1e-5,
        directions=lin.psd_directions(n),
        one_sided=True,
    )
    chi_q, chi_c, gamma = lin.fixed_point_slopes("tanh", sw2, sb2)
    np.testing.assert_allclose(jac, lin.lemma_jacobian(n, chi_q, chi_c, gamma), atol=1e-8)
    # At c* = 1 both arguments coincide: gamma = (chi_q - chi_1) / 2, so t = 1/2.
    assert lin.diagonal_shift(chi_q, chi_c, gamma) == pytest.approx(0.5, abs=1e-10)


# --- the predicted eigenbasis ---------------------------------------------------------------


def test_predicted_eigenbasis_diagonalises_hand_built_lemma_matrix():
    n, chi_q, chi_c, gamma = 3, 0.4, 0.9, -0.3
    # Lemma B.2 for n = 3 written out: coordinates (00, 11, 22, 01, 02, 12).
    g = gamma
    jac = np.array(
        [
            [chi_q, 0, 0, 0, 0, 0],
            [0, chi_q, 0, 0, 0, 0],
            [0, 0, chi_q, 0, 0, 0],
            [g, g, 0, chi_c, 0, 0],
            [g, 0, g, 0, chi_c, 0],
            [0, g, g, 0, 0, chi_c],
        ]
    )
    np.testing.assert_array_equal(lin.lemma_jacobian(n, chi_q, chi_c, gamma), jac)
    diag, offdiag = lin.predicted_eigenbasis(n, chi_q, chi_c, gamma)
    assert diag.shape == (3, 3, 3) and offdiag.shape == (3, 3, 3)
    for mat in diag:
        np.testing.assert_allclose(jac @ lin.to_coordinates(mat), chi_q * lin.to_coordinates(mat), atol=1e-15)
    for mat in offdiag:
        np.testing.assert_allclose(jac @ lin.to_coordinates(mat), chi_c * lin.to_coordinates(mat), atol=1e-15)
    vectors = np.stack([lin.to_coordinates(mat) for mat in np.concatenate([diag, offdiag])])
    assert np.linalg.matrix_rank(vectors) == 6
    # t = gamma / (chi_q - chi_c) = 0.6 on the off-diagonal entries of row/column a.
    assert diag[0][0, 1] == pytest.approx(0.6) and diag[0][1, 2] == 0.0


def test_split_eigenspaces():
    rng = np.random.default_rng(3)
    b = rng.normal(size=(5, 5))
    eps = b + b.T
    chi_q, chi_c, gamma = 0.3, 0.8, 0.2
    eps_d, eps_od = lin.split_eigenspaces(eps, chi_q, chi_c, gamma)
    np.testing.assert_allclose(eps_d + eps_od, eps, atol=1e-15)
    np.testing.assert_array_equal(np.diag(eps_od), 0.0)
    diag, _ = lin.predicted_eigenbasis(5, chi_q, chi_c, gamma)
    basis = np.stack([lin.to_coordinates(mat) for mat in diag], axis=1)
    coef, *_ = np.linalg.lstsq(basis, lin.to_coordinates(eps_d), rcond=None)
    np.testing.assert_allclose(basis @ coef, lin.to_coordinates(eps_d), atol=1e-13)
    # The linearised C-map is the lemma matrix applied to eps.
    got = lin.to_coordinates(lin.linearised_c_map(eps, chi_q, chi_c, gamma))
    np.testing.assert_allclose(got, lin.lemma_jacobian(5, chi_q, chi_c, gamma) @ lin.to_coordinates(eps), atol=1e-13)


def _dense_average_operator(v, n):
    """A_v * as an (m, m) matrix in symmetric coordinates, by explicit index loops."""
    k = len(v) // 2
    rows, cols = lin.symmetric_pairs(n)
    pos = {}
    for idx, (a, b) in enumerate(zip(rows, cols, strict=True)):
        pos[(int(a), int(b))] = idx
        pos[(int(b), int(a))] = idx
    m = rows.size
    out = np.zeros((m, m))
    for i, (a, b) in enumerate(zip(rows, cols, strict=True)):
        for tap, weight in enumerate(v):
            beta = tap - k
            out[i, pos[((int(a) + beta) % n, (int(b) + beta) % n)]] += weight
    return out


def test_linearised_cnn_step_matches_dense_operator_and_finite_differences():
    sw2, sb2, n, v = 2.25, 0.25, 6, np.array([0.2, 0.5, 0.3])
    slopes = lin.fixed_point_slopes("erf", sw2, sb2)
    rng = np.random.default_rng(4)
    b = rng.normal(size=(n, n))
    eps = (b + b.T) * 1e-3
    got = lin.to_coordinates(lin.linearised_cnn_step(eps, *slopes, v))
    dense = _dense_average_operator(v, n) @ lin.lemma_jacobian(n, *slopes)
    np.testing.assert_allclose(got, dense @ lin.to_coordinates(eps), atol=1e-15)
    s = meanfield.fixed_point_covariance("erf", sw2, sb2, n)
    jac = lin.jacobian(lambda x: meanfield.cnn_covariance_step(x, "erf", sw2, sb2, v), s, step=1e-5)
    np.testing.assert_allclose(jac, dense, atol=1e-9)


def _same_multiset(a, b, tol):
    cost = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :])
    r, c = linear_sum_assignment(cost)
    return len(a) == len(b) and cost[r, c].max() < tol


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("v", [np.full(3, 1 / 3), np.array([0.1, 0.2, 0.4, 0.2, 0.1]), np.array([0.6, 0.3, 0.1])])
def test_offdiagonal_fourier_eigenvalues_match_brute_force(n, v):
    dense = _dense_average_operator(v, n)
    off = dense[n:, n:]
    np.testing.assert_array_equal(dense[n:, :n], 0.0)  # A_v * keeps off-diagonal matrices off-diagonal
    np.testing.assert_array_equal(dense[:n, n:], 0.0)
    assert _same_multiset(np.linalg.eigvals(off), lin.offdiagonal_fourier_eigenvalues(v, n), 1e-10)
    assert _same_multiset(np.linalg.eigvals(dense[:n, :n]), meanfield.fourier_eigenvalues(v, n), 1e-10)


# --- errors ---------------------------------------------------------------------------------


def test_jacobian_rejects_non_square_point():
    with pytest.raises(ValueError, match="square"):
        lin.jacobian(lambda x: x, np.zeros((2, 3)))


def test_jacobian_rejects_non_symmetric_point():
    with pytest.raises(ValueError, match="symmetric"):
        lin.jacobian(lambda x: x, np.array([[1.0, 2.0], [0.0, 1.0]]))


def test_jacobian_rejects_bad_step():
    with pytest.raises(ValueError, match="step"):
        lin.jacobian(lambda x: x, np.eye(2), step=0.0)


def test_jacobian_rejects_wrong_directions_shape():
    with pytest.raises(ValueError, match="directions must have shape"):
        lin.jacobian(lambda x: x, np.eye(2), directions=np.zeros((2, 2, 2)))


def test_jacobian_rejects_non_spanning_directions():
    with pytest.raises(ValueError, match="span"):
        lin.jacobian(lambda x: x, np.eye(2), directions=np.stack([np.eye(2)] * 3))


def test_jacobian_rejects_wrong_output_shape():
    with pytest.raises(ValueError, match="f must return"):
        lin.jacobian(lambda x: np.eye(3), np.eye(2))


def test_diagonal_shift_needs_distinct_slopes():
    with pytest.raises(ValueError, match="chi_q != chi_c"):
        lin.diagonal_shift(0.5, 0.5, 0.1)


def test_diagonal_shift_rejects_non_finite():
    with pytest.raises(ValueError, match="finite"):
        lin.diagonal_shift(0.5, np.nan, 0.1)


def test_from_coordinates_rejects_wrong_length():
    with pytest.raises(ValueError, match="coordinates"):
        lin.from_coordinates(np.zeros(4), 2)


def test_bad_n_rejected():
    with pytest.raises(ValueError, match="positive integer"):
        lin.symmetric_pairs(0)


def test_offdiagonal_fourier_eigenvalues_rejects_2d_v():
    with pytest.raises(ValueError, match="1-D"):
        lin.offdiagonal_fourier_eigenvalues(np.full((3, 3), 1 / 9), 4)
