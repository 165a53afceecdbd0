"""Batch normalisation over a mini-batch: forward pass, backward pass and its exact Jacobian.

Xie, Xiong & Pu (2017), "All You Need is Beyond a Good Init", §3.1, §3.3 and the supplementary §7.
Each of the ``d`` units (components) of a mini-batch of ``m`` samples is normalised on its own
(Ioffe & Szegedy 2015, training mode)::

    mu_B = (1/m) sum_i x_i,    sigma_B**2 = (1/m) sum_i (x_i - mu_B)**2    (biased batch variance)
    x_hat_i = (x_i - mu_B) / sqrt(sigma_B**2 + eps),    y_i = gamma x_hat_i + beta

The backward pass is the paper's eq. (1); the Jacobian of one unit is eq. (6) (= (12)),
``J_kk = rho (I - U/m)`` with ``U = e e^T + x_hat x_hat^T`` (eqs. (13), (14)) and
``rho = gamma / sqrt(sigma_B**2 + eps)``; the Jacobian of all ``d`` units is block diagonal when
ordered by unit (eqs. (4), (11)).

The paper argues that ``sum_i x_hat_i ~ 0`` and ``sum_i x_hat_i**2 ~ m`` "for a relatively large
mini-batch" (supplementary eq. (18)), so that the two nonzero eigenvalues of ``U`` are about ``m``.
Both sums are in fact exact for every ``m >= 2``: ``sum_i x_hat_i = 0`` and
``sum_i x_hat_i**2 = m sigma_B**2 / (sigma_B**2 + eps)``.  Hence ``e`` and ``x_hat`` are orthogonal
and ``U`` has the eigenvalues ``m`` (eigenvector ``e``), ``m sigma_B**2 / (sigma_B**2 + eps)``
(eigenvector ``x_hat``) and ``0`` (``m - 2`` times), for any batch size
(:func:`u_eigenvalues`); ``J_kk`` is symmetric with singular values ``|rho|`` (``m - 2`` times),
``|rho| eps / (sigma_B**2 + eps)`` and ``0`` (:func:`jacobian_singular_values`).

Arrays are float64 NumPy arrays of shape ``(m,)`` (one unit) or ``(m, d)`` (samples in rows,
units in columns, the layout of ``torch.nn.functional.batch_norm`` for 2-D input).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

__all__ = [
    "DEFAULT_EPS",
    "batch_statistics",
    "normalise",
    "forward",
    "rho",
    "backward",
    "unit_jacobian",
    "u_matrix",
    "jacobian",
    "u_eigenvalues",
    "jacobian_singular_values",
]

#: The ``eps`` of ``torch.nn.BatchNorm2d`` and of most implementations.
DEFAULT_EPS = 1e-5


# --- input checks --------------------------------------------------------------------------------------------------


def _as_batch(x: ArrayLike, name: str = "x") -> Array:
    """``x`` as a finite float64 array of shape ``(m,)`` or ``(m, d)`` with ``m >= 2``."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real array of shape (m,) or (m, d): {exc}") from None
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (m,) or (m, d), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"batch normalisation needs a mini-batch of m >= 2 samples, got m = {arr.shape[0]}")
    if arr.ndim == 2 and arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one unit (column), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (it contains NaN or inf)")
    return arr


def _check_eps(eps: float) -> float:
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number >= 0, got {eps!r}") from None
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return eps


def _per_unit(value: ArrayLike, shape: tuple[int, ...], name: str) -> Array:
    """A scale or shift: a scalar, or one value per unit (shape ``(d,)`` for a batch of shape ``(m, d)``)."""
    arr = np.asarray(value, dtype=float)
    units = shape[1:]  # () for one unit, (d,) for d units
    if arr.shape not in ((), units):
        raise ValueError(f"{name} must be a scalar or have shape {units} (one per unit), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _denominator(var: Array, eps: float) -> Array:
    s2 = var + eps
    if np.any(s2 <= 0):
        raise ValueError("a unit is constant over the batch and eps = 0: sigma_B**2 + eps = 0, x_hat is undefined")
    return np.sqrt(s2)


# --- forward ---------------------------------------------------------------------------------------------------------


def batch_statistics(x: ArrayLike) -> tuple[Array, Array]:
    """Batch mean ``mu_B`` and biased batch variance ``sigma_B**2`` of each unit.

    ``sigma_B**2 = (1/m) sum_i (x_i - mu_B)**2``, the variance that batch normalisation divides by
    in training mode (Ioffe & Szegedy 2015, Algorithm 1; Xie et al. (2017), §3.1).

    Parameters
    ----------
    x : array_like, shape (m,) or (m, d)
        The mini-batch, ``m >= 2`` samples in rows.

    Returns
    -------
    (mu, var) : arrays of shape ``()`` or ``(d,)``

    Raises
    ------
    ValueError
        ``x`` is not of shape ``(m,)`` or ``(m, d)``, ``m < 2``, or ``x`` is not finite.
    """
    arr = _as_batch(x)
    mu = arr.mean(axis=0)
    return mu, ((arr - mu) ** 2).mean(axis=0)


def normalise(x: ArrayLike, eps: float = DEFAULT_EPS) -> Array:
    """The normalised batch ``x_hat_i = (x_i - mu_B) / sqrt(sigma_B**2 + eps)`` (Xie et al. (2017), §3.1).

    Exactly (in real arithmetic) ``sum_i x_hat_i = 0`` and
    ``sum_i x_hat_i**2 = m sigma_B**2 / (sigma_B**2 + eps)`` in every unit, for every ``m``.

    Raises
    ------
    ValueError
        Bad ``x`` (see :func:`batch_statistics`), ``eps < 0``, or a constant unit with ``eps = 0``.
    """
    arr = _as_batch(x)
    eps = _check_eps(eps)
    mu, var = batch_statistics(arr)
    return (arr - mu) / _denominator(var, eps)


def forward(x: ArrayLike, gamma: ArrayLike = 1.0, beta: ArrayLike = 0.0, eps: float = DEFAULT_EPS) -> Array:
    """Batch normalisation ``y_i = gamma x_hat_i + beta`` of each unit (Xie et al. (2017), §3.1).

    Parameters
    ----------
    x : array_like, shape (m,) or (m, d)
        The mini-batch, ``m >= 2`` samples in rows, units in columns.
    gamma, beta : float or array_like of shape (d,)
        Scale and shift, one per unit (a scalar applies to all).
    eps : float
        The ``eps >= 0`` added to the batch variance.

    Raises
    ------
    ValueError
        Bad ``x``, ``eps < 0``, ``gamma`` or ``beta`` of the wrong shape or not finite, or a constant
        unit with ``eps = 0``.
    """
    arr = _as_batch(x)
    g, b = _per_unit(gamma, arr.shape, "gamma"), _per_unit(beta, arr.shape, "beta")
    return g * normalise(arr, eps) + b


def rho(x: ArrayLike, gamma: ArrayLike = 1.0, eps: float = DEFAULT_EPS) -> Array:
    """The scale ``rho = gamma / sqrt(sigma_B**2 + eps)`` of each unit: Xie et al. (2017), eq. (6).

    Returns an array of shape ``()`` for one unit, ``(d,)`` for ``d`` units.

    Raises
    ------
    ValueError
        As :func:`forward`.
    """
    arr = _as_batch(x)
    eps = _check_eps(eps)
    g = _per_unit(gamma, arr.shape, "gamma")
    return g / _denominator(batch_statistics(arr)[1], eps)


# --- backward: eq. (1) -----------------------------------------------------------------------------------------------


def backward(x: ArrayLike, grad_y: ArrayLike, gamma: ArrayLike = 1.0, eps: float = DEFAULT_EPS) -> Array:
    """The error ``dl/dx_i`` from ``dl/dy_i``: Xie et al. (2017), eq. (1) (after Ioffe & Szegedy 2015).

    ``dl/dx_i = (delta_i - mu_delta - (x_hat_i/m) sum_j delta_j x_hat_j) / sqrt(sigma_B**2 + eps)``
    with ``delta_i = gamma dl/dy_i`` and ``mu_delta = (1/m) sum_i delta_i``, unit by unit.  This is
    exact: it is ``J^T`` (here ``J``, which is symmetric) applied to ``dl/dy``, with ``J`` of eq. (6).

    Parameters
    ----------
    x : array_like, shape (m,) or (m, d)
        The forward input of batch normalisation.
    grad_y : array_like, same shape as ``x``
        ``dl/dy``, the paper's "input error" of the backward step.
    gamma : float or array_like of shape (d,)
        The scale of batch normalisation.
    eps : float
        The ``eps >= 0`` of the forward pass.

    Returns
    -------
    ndarray, same shape as ``x``
        ``dl/dx``, the paper's "output error".

    Raises
    ------
    ValueError
        As :func:`forward`, or ``grad_y`` of another shape than ``x`` or not finite.
    """
    arr = _as_batch(x)
    g = np.asarray(grad_y, dtype=float)
    if g.shape != arr.shape:
        raise ValueError(f"grad_y must have the shape of x, {arr.shape}, got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("grad_y must be finite")
    gam = _per_unit(gamma, arr.shape, "gamma")
    eps = _check_eps(eps)
    mu, var = batch_statistics(arr)
    s = _denominator(var, eps)
    x_hat = (arr - mu) / s
    m = arr.shape[0]
    delta = gam * g
    return (delta - delta.mean(axis=0) - x_hat * (delta * x_hat).sum(axis=0) / m) / s


# --- Jacobian: eqs. (4)-(6), (11)-(14) --------------------------------------------------------------------------------


def u_matrix(x: ArrayLike, eps: float = DEFAULT_EPS) -> Array:
    """``U = e e^T + x_hat x_hat^T``, ``U_ij = 1 + x_hat_i x_hat_j``, of one unit: Xie et al. (2017), eq. (13).

    Parameters
    ----------
    x : array_like, shape (m,)
        The batch of one unit.

    Raises
    ------
    ValueError
        ``x`` not 1-D, ``m < 2``, not finite, ``eps < 0``, or constant with ``eps = 0``.
    """
    arr = _as_batch(x)
    if arr.ndim != 1:
        raise ValueError(f"u_matrix takes the batch of one unit, shape (m,), got shape {arr.shape}")
    x_hat = normalise(arr, eps)
    return 1.0 + np.outer(x_hat, x_hat)


def unit_jacobian(x: ArrayLike, gamma: float = 1.0, eps: float = DEFAULT_EPS) -> Array:
    """The ``m x m`` Jacobian ``J_kk`` of one unit: Xie et al. (2017), eqs. (6), (12) and (14).

    ``(J_kk)_ji = dy_j/dx_i = rho [Delta(i = j) - (1 + x_hat_i x_hat_j) / m]``, that is
    ``J_kk = rho (I - U/m)`` with ``rho = gamma / sqrt(sigma_B**2 + eps)``; exact, ``eps`` included.
    Rows are outputs ``y_j``, columns inputs ``x_i``; the matrix is symmetric.

    Parameters
    ----------
    x : array_like, shape (m,)
        The batch of one unit.
    gamma : float
        Its scale.
    eps : float
        The ``eps >= 0`` of the forward pass.

    Raises
    ------
    ValueError
        As :func:`u_matrix`, or ``gamma`` not a finite scalar.
    """
    arr = _as_batch(x)
    if arr.ndim != 1:
        raise ValueError(f"unit_jacobian takes the batch of one unit, shape (m,), got shape {arr.shape}")
    r = float(rho(arr, gamma, eps))
    m = arr.shape[0]
    return r * (np.eye(m) - u_matrix(arr, eps) / m)


def jacobian(
    x: ArrayLike,
    gamma: ArrayLike = 1.0,
    eps: float = DEFAULT_EPS,
    *,
    order: Literal["unit", "sample"] = "unit",
) -> Array:
    """The full ``(m d) x (m d)`` Jacobian of batch normalisation of ``d`` units: Xie et al. (2017), eqs. (4), (9)-(11).

    Entry ``[a, b] = dy_a / dx_b`` for flattened indices ``a, b``.  With ``order="unit"`` the
    index of sample ``i`` of unit ``k`` is ``k m + i`` (the columns of ``x`` one after the other),
    and the matrix is block diagonal with the blocks ``J_kk`` of :func:`unit_jacobian` (eqs. (4),
    (11)): units are normalised independently.  With ``order="sample"`` the index is ``i d + k``
    (``x.ravel()`` of the ``(m, d)`` array, row-major), the layout of eqs. (9)-(10): ``m x m``
    blocks ``D_ij`` that are ``d x d`` diagonal.

    Parameters
    ----------
    x : array_like, shape (m, d)
        The mini-batch, samples in rows, units in columns.
    gamma : float or array_like of shape (d,)
        The scale of each unit.
    eps : float
        The ``eps >= 0`` of the forward pass.
    order : {"unit", "sample"}
        How samples and units are flattened into one index.

    Raises
    ------
    ValueError
        ``x`` not 2-D, bad ``x``, ``gamma`` or ``eps`` (as :func:`forward`), or an unknown ``order``.
    """
    arr = _as_batch(x)
    if arr.ndim != 2:
        raise ValueError(f"jacobian takes a batch of shape (m, d), got shape {arr.shape}")
    if order not in ("unit", "sample"):
        raise ValueError(f"order must be 'unit' or 'sample', got {order!r}")
    m, d = arr.shape
    gam = np.broadcast_to(_per_unit(gamma, arr.shape, "gamma"), (d,))
    full = np.zeros((m * d, m * d))
    for k in range(d):
        full[k * m:(k + 1) * m, k * m:(k + 1) * m] = unit_jacobian(arr[:, k], float(gam[k]), eps)
    if order == "sample":
        perm = (np.arange(m)[:, None] + m * np.arange(d)[None, :]).ravel()  # sample-major index -> unit-major index
        full = full[np.ix_(perm, perm)]
    return full


# --- exact eigen-decomposition ----------------------------------------------------------------------------------------


def u_eigenvalues(x: ArrayLike, eps: float = DEFAULT_EPS) -> Array:
    """The eigenvalues of ``U`` (eq. (13)) of one unit, in descending order, from the exact identities.

    ``sum_i x_hat_i = 0`` and ``sum_i x_hat_i**2 = m sigma_B**2 / (sigma_B**2 + eps)`` hold exactly
    for every ``m``, so ``e`` and ``x_hat`` are orthogonal eigenvectors of ``U = e e^T + x_hat x_hat^T``
    and its eigenvalues are::

        m,   m sigma_B**2 / (sigma_B**2 + eps),   0 (m - 2 times).

    Xie et al. (2017), supplementary eqs. (15)-(18), state the first two as "about m" for a
    relatively large batch; they are exact for every ``m >= 2`` (``= m`` when ``eps = 0``).

    Parameters
    ----------
    x : array_like, shape (m,)
        The batch of one unit.
    eps : float
        The ``eps >= 0`` of the forward pass.

    Raises
    ------
    ValueError
        As :func:`u_matrix`.
    """
    arr = _as_batch(x)
    if arr.ndim != 1:
        raise ValueError(f"u_eigenvalues takes the batch of one unit, shape (m,), got shape {arr.shape}")
    eps = _check_eps(eps)
    var = float(batch_statistics(arr)[1])
    _denominator(np.asarray(var), eps)
    m = arr.shape[0]
    out = np.zeros(m)
    out[0] = m
    out[1] = m * var / (var + eps)
    return out


def jacobian_singular_values(x: ArrayLike, gamma: float = 1.0, eps: float = DEFAULT_EPS) -> Array:
    """The singular values of ``J_kk = rho (I - U/m)`` (eq. (14)) of one unit, in descending order.

    ``J_kk`` is symmetric with the eigenvectors of ``U`` (:func:`u_eigenvalues`), so its singular
    values are ``|rho| |1 - lambda/m|``::

        |rho| (m - 2 times),   |rho| eps / (sigma_B**2 + eps),   0.

    ``J_kk`` is ``rho`` times the orthogonal projection that removes the batch mean (direction ``e``)
    and, up to ``eps / (sigma_B**2 + eps)``, the direction ``x_hat``: Xie et al. (2017), eqs. (7) and
    (17), with ``lambda_1 = m`` and ``lambda_2 = m sigma_B**2 / (sigma_B**2 + eps)`` exactly.

    Raises
    ------
    ValueError
        As :func:`unit_jacobian`.
    """
    arr = _as_batch(x)
    if arr.ndim != 1:
        raise ValueError(
            f"jacobian_singular_values takes the batch of one unit, shape (m,), got shape {arr.shape}"
        )
    r = abs(float(rho(arr, gamma, eps)))
    var = float(batch_statistics(arr)[1])
    m = arr.shape[0]
    out = np.full(m, r)
    out[m - 2] = r * eps / (var + eps)
    out[m - 1] = 0.0
    return out
