"""Linearisation of covariance maps at a fixed point.

Tools for Xiao et al. (2018), sections 2.1.2-2.1.3, Theorem B.1 and Lemma B.2:
the Jacobian of a map from symmetric ``n x n`` matrices to symmetric matrices
(taken numerically by finite differences), the eigenspaces that the theory
predicts for the Jacobian of the C-map at its fixed point ``Sigma*``, and the
linearised CNN dynamics of eq. (2.9).

Coordinates.  A symmetric matrix ``M`` is written in the canonical symmetric
basis ``{V_ab : a <= b}`` (``V_ab`` has ones at ``(a, b)`` and ``(b, a)``), so
that ``M = sum_{a <= b} M_ab V_ab``: the coordinate of ``V_ab`` is the entry
``M_ab`` itself.  The ``m = n (n + 1) / 2`` coordinates are ordered with the
``n`` diagonal pairs ``(a, a)`` first, then the off-diagonal pairs ``a < b`` in
row-major order (see :func:`symmetric_pairs`).  A Jacobian is the ``(m, m)``
matrix ``J`` with ``coords(f(X + D)) ~ coords(f(X)) + J @ coords(D)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from signalprop import meanfield

Array = NDArray[np.float64]


def _check_n(n: int) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _check_symmetric(x: ArrayLike, name: str = "X") -> Array:
    m = np.asarray(x, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {m.shape}")
    if np.any(~np.isfinite(m)):
        raise ValueError(f"{name} must be finite")
    scale = max(float(np.abs(m).max()), 1e-300)
    if np.abs(m - m.T).max() > 1e-12 * scale:
        raise ValueError(f"{name} must be symmetric")
    return m


def symmetric_pairs(n: int) -> tuple[NDArray[np.int_], NDArray[np.int_]]:
    """Index pairs ``(rows, cols)`` of the symmetric coordinates: diagonal first, then ``a < b``.

    Returns
    -------
    rows, cols : ndarray of int, each of length ``n (n + 1) / 2``
        ``(rows[k], cols[k])`` is the pair of the k-th basis matrix ``V_ab``.
    """
    n = _check_n(n)
    d = np.arange(n)
    iu = np.triu_indices(n, k=1)
    return np.concatenate([d, iu[0]]), np.concatenate([d, iu[1]])


def to_coordinates(m: ArrayLike) -> Array:
    """Coordinates of a symmetric matrix in the canonical basis ``V_ab`` (the entries ``M_ab``, ``a <= b``)."""
    arr = _check_symmetric(m, "m")
    rows, cols = symmetric_pairs(arr.shape[0])
    return arr[rows, cols].copy()


def from_coordinates(x: ArrayLike, n: int) -> Array:
    """The symmetric matrix ``sum_k x_k V_k`` with the ordering of :func:`symmetric_pairs`."""
    n = _check_n(n)
    x = np.asarray(x, dtype=float)
    if x.shape != (n * (n + 1) // 2,):
        raise ValueError(f"x must have n (n + 1) / 2 = {n * (n + 1) // 2} coordinates, got shape {x.shape}")
    rows, cols = symmetric_pairs(n)
    out = np.zeros((n, n))
    out[rows, cols] = x
    out[cols, rows] = x
    return out


def symmetric_basis(n: int) -> Array:
    """The canonical basis ``V_ab`` (``a <= b``) of symmetric ``n x n`` matrices, shape ``(m, n, n)``.

    Xiao et al. (2018), App. B: ``[V_ab]_{a'b'} = 1`` if ``(a', b') = (a, b)`` or ``(b, a)``, else 0.
    """
    n = _check_n(n)
    m = n * (n + 1) // 2
    return np.stack([from_coordinates(np.eye(m)[k], n) for k in range(m)])


def psd_directions(n: int) -> Array:
    """A basis of symmetric matrices made of positive semi-definite rank-one directions, shape ``(m, n, n)``.

    ``e_a e_a^T`` for each position, then ``(e_a - e_b)(e_a - e_b)^T`` for ``a < b``
    (same ordering as :func:`symmetric_pairs`).  Adding a non-negative multiple of any
    of them to a PSD matrix keeps it PSD, so one-sided finite differences along them
    stay inside the cone of covariance matrices: needed where the fixed point lies on
    its boundary (``c* = 1`` in the ordered phase, where ``Sigma*`` has rank one).
    """
    n = _check_n(n)
    rows, cols = symmetric_pairs(n)
    out = np.zeros((rows.size, n, n))
    for k, (a, b) in enumerate(zip(rows, cols, strict=True)):
        e = np.zeros(n)
        e[a] += 1.0
        if b != a:
            e[b] -= 1.0
        out[k] = np.outer(e, e)
    return out


def jacobian(
    f: Callable[[Array], ArrayLike],
    x: ArrayLike,
    *,
    step: float = 1e-4,
    directions: ArrayLike | None = None,
    one_sided: bool = False,
) -> Array:
    """Jacobian of a map between symmetric matrices, by finite differences, in symmetric coordinates.

    For each direction ``D_k`` the directional derivative of ``f`` at ``x`` is taken by

    * central differences, ``(f(x + h D) - f(x - h D)) / (2 h)`` (default), or
    * the one-sided three-point rule ``(-3 f(x) + 4 f(x + h D) - f(x + 2 h D)) / (2 h)``
      (``one_sided=True``), which only evaluates ``f`` on the side ``x + t D, t >= 0``.

    Both are exact for quadratic maps; the error is ``O(h**2)``.  With the default
    directions (the canonical basis ``V_ab``) the k-th column of the result is the
    derivative along ``V_k``; with other directions ``D_k`` (which must span the
    symmetric matrices) the derivatives are converted to the canonical basis by
    solving ``J T = F``, where ``T`` holds the coordinates of the ``D_k``.

    Parameters
    ----------
    f : callable
        Map from an ``(n, n)`` symmetric matrix to an ``(n, n)`` symmetric matrix.
    x : array_like
        The point, ``(n, n)`` symmetric.
    step : float, optional
        Finite-difference step ``h > 0``.
    directions : array_like, optional
        ``(m, n, n)`` symmetric directions spanning the space; default
        :func:`symmetric_basis`.  Use :func:`psd_directions` with ``one_sided=True``
        at a point on the boundary of the PSD cone.
    one_sided : bool, optional
        Use the forward three-point rule instead of central differences.

    Returns
    -------
    ndarray
        ``(m, m)`` Jacobian with ``m = n (n + 1) / 2``, ordering of :func:`symmetric_pairs`.

    Raises
    ------
    ValueError
        If ``x`` is not square and symmetric, ``step <= 0``, ``f`` does not return a
        symmetric ``(n, n)`` matrix, or the directions do not span the symmetric matrices.
    """
    x = _check_symmetric(x, "x")
    n = x.shape[0]
    m = n * (n + 1) // 2
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive number, got {step!r}")
    if directions is None:
        dirs = symmetric_basis(n)
    else:
        dirs = np.asarray(directions, dtype=float)
        if dirs.shape != (m, n, n):
            raise ValueError(f"directions must have shape {(m, n, n)}, got {dirs.shape}")
    t = np.stack([to_coordinates(d) for d in dirs], axis=1)
    if np.linalg.matrix_rank(t) < m:
        raise ValueError("directions must span the space of symmetric matrices")

    def coords(y: ArrayLike) -> Array:
        arr = np.asarray(y, dtype=float)
        if arr.shape != (n, n):
            raise ValueError(f"f must return an ({n}, {n}) matrix, got shape {arr.shape}")
        return to_coordinates(arr)

    h = float(step)
    deriv = np.empty((m, m))
    f0 = coords(f(x)) if one_sided else None
    for k, d in enumerate(dirs):
        if one_sided:
            deriv[:, k] = (-3.0 * f0 + 4.0 * coords(f(x + h * d)) - coords(f(x + 2.0 * h * d))) / (2.0 * h)
        else:
            deriv[:, k] = (coords(f(x + h * d)) - coords(f(x - h * d))) / (2.0 * h)
    if directions is None:
        return deriv
    return np.linalg.solve(t.T, deriv.T).T


# --- The predicted eigen-decomposition ------------------------------------------------------


def lemma_jacobian(n: int, chi_q: float, chi_c: float, gamma: float) -> Array:
    """Jacobian of the C-map at ``Sigma*`` as predicted by Lemma B.2 of Xiao et al. (2018), ``(m, m)``.

    In the coordinates of :func:`symmetric_pairs` (Price's theorem at the fixed point)::

        J V_ab = chi_c* V_ab                              (a != b)
        J V_aa = chi_q* V_aa + gamma sum_{b != a} V_ab

    i.e. ``J = [[chi_q I_n, 0], [G, chi_c I]]`` with ``G[(a, b), a] = G[(a, b), b] = gamma``.
    """
    n = _check_n(n)
    rows, cols = symmetric_pairs(n)
    m = rows.size
    jac = np.zeros((m, m))
    jac[np.arange(n), np.arange(n)] = float(chi_q)
    off = np.arange(n, m)
    jac[off, off] = float(chi_c)
    jac[off, rows[n:]] = float(gamma)
    jac[off, cols[n:]] = float(gamma)
    return jac


def diagonal_shift(chi_q: float, chi_c: float, gamma: float) -> float:
    """The weight ``t = gamma / (chi_q* - chi_c*)`` of the off-diagonal part of a diagonal eigenvector.

    Xiao et al. (2018), Theorem B.1: ``V_aa + t sum_{b != a} V_ab`` has eigenvalue ``chi_q*``.

    Raises
    ------
    ValueError
        If ``chi_q == chi_c`` (then the diagonal eigenspace does not exist when ``gamma != 0``).
    """
    chi_q, chi_c, gamma = float(chi_q), float(chi_c), float(gamma)
    if not all(np.isfinite([chi_q, chi_c, gamma])):
        raise ValueError("chi_q, chi_c and gamma must be finite")
    if chi_q == chi_c:
        raise ValueError("the diagonal eigenspace needs chi_q != chi_c")
    return gamma / (chi_q - chi_c)


def predicted_eigenbasis(n: int, chi_q: float, chi_c: float, gamma: float) -> tuple[Array, Array]:
    """Eigenvectors of the C-map's Jacobian at ``Sigma*`` predicted by Theorem B.1 of Xiao et al. (2018).

    Eq. (2.8)::

        diagonal (eigenvalue chi_q*):      M_a  = V_aa + gamma / (chi_q* - chi_c*) * sum_{b != a} V_ab
        off-diagonal (eigenvalue chi_c*):  V_ab,  a < b

    Returns
    -------
    diag_basis : ndarray, shape ``(n, n, n)``
        ``M_0, ..., M_{n-1}``.
    offdiag_basis : ndarray, shape ``(n (n - 1) / 2, n, n)``
        ``V_ab`` for ``a < b`` in row-major order.
    """
    n = _check_n(n)
    t = diagonal_shift(chi_q, chi_c, gamma)
    diag = np.zeros((n, n, n))
    for a in range(n):
        diag[a, a, :] = t
        diag[a, :, a] = t
        diag[a, a, a] = 1.0
    return diag, symmetric_basis(n)[n:]


def split_eigenspaces(eps: ArrayLike, chi_q: float, chi_c: float, gamma: float) -> tuple[Array, Array]:
    """Decompose a symmetric perturbation ``eps = eps_d + eps_od`` into the two eigenspaces.

    Only the ``M_a`` of :func:`predicted_eigenbasis` have diagonal entries, so the
    coefficient of ``M_a`` is ``eps_aa``::

        [eps_d]_aa = eps_aa,   [eps_d]_ab = t (eps_aa + eps_bb)  (a != b),   eps_od = eps - eps_d

    with ``t = gamma / (chi_q* - chi_c*)``; ``eps_od`` has a zero diagonal.
    """
    e = _check_symmetric(eps, "eps")
    t = diagonal_shift(chi_q, chi_c, gamma)
    d = np.diag(e)
    eps_d = t * (d[:, None] + d[None, :])
    np.fill_diagonal(eps_d, d)
    return eps_d, e - eps_d


def linearised_c_map(eps: ArrayLike, chi_q: float, chi_c: float, gamma: float) -> Array:
    """The Jacobian of the C-map at ``Sigma*`` applied to ``eps``: ``chi_q* eps_d + chi_c* eps_od``.

    Xiao et al. (2018), Theorem B.1 (the bracket of eq. (2.9)).
    """
    eps_d, eps_od = split_eigenspaces(eps, chi_q, chi_c, gamma)
    return chi_q * eps_d + chi_c * eps_od


def linearised_cnn_step(eps: ArrayLike, chi_q: float, chi_c: float, gamma: float, v: ArrayLike) -> Array:
    """One layer of the linearised CNN dynamics, Xiao et al. (2018), eq. (2.9) with ``A_v`` (eq. (2.13))::

        eps^{l+1} = A_v * (chi_q* eps_d^l + chi_c* eps_od^l)

    ``eps`` is ``Sigma* - Sigma^l`` for a 1-D image, ``(n, n)``; ``v`` the tap variances.
    """
    return meanfield.average_along_diagonals(linearised_c_map(eps, chi_q, chi_c, gamma), v)


def offdiagonal_fourier_eigenvalues(v: ArrayLike, n: int) -> NDArray[np.complex128]:
    """Eigenvalues of ``A_v *`` restricted to the off-diagonal symmetric matrices (1-D image, n positions).

    The shifts move ``V_{a, a+d}`` to ``V_{a-beta, a-beta+d}``, so each class of cyclic
    offsets ``{d, n - d}`` is one orbit on which ``A_v *`` is a circulant.  For
    ``d < n / 2`` the orbit has n members and the eigenvalues are all of
    ``lambda_p`` (:func:`signalprop.meanfield.fourier_eigenvalues`), ``p = 0..n-1``.
    For even n the offset ``d = n / 2`` gives an orbit of n / 2 members (``V_{a, a+n/2}``
    is its own shift by n / 2) with eigenvalues ``lambda_p`` for even p.  In all,
    ``n (n - 1) / 2`` values, ordered by offset class, then p.
    """
    n = _check_n(n)
    v = meanfield.check_variance_vector(v)
    if v.ndim != 1:
        raise ValueError("offdiagonal_fourier_eigenvalues is for 1-D variance vectors")
    lam = meanfield.fourier_eigenvalues(v, n)
    parts = [lam for _ in range(1, (n - 1) // 2 + 1)]
    if n % 2 == 0:
        parts.append(lam[::2])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=complex)


def fixed_point_slopes(activation: Any, sigma_w2: float, sigma_b2: float) -> tuple[float, float, float]:
    """``(chi_q*, chi_c*, gamma)`` at the fixed point, from :mod:`signalprop.meanfield` (eq. (2.7), Lemma B.2)."""
    return (
        float(meanfield.chi_q(activation, sigma_w2, sigma_b2)),
        float(meanfield.chi_c(activation, sigma_w2, sigma_b2)),
        float(meanfield.gamma(activation, sigma_w2, sigma_b2)),
    )
