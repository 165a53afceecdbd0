"""The vanishing node indicator (VNI) ``R_sq`` and its random-matrix prediction.

Chang (2019), "Vanishing Nodes", chapter 3.  For a layer with nodes
``x_(1), ..., x_(N)`` observed on a set of inputs ``x_0``, the VNI is the
average of the squared correlation coefficients ``rho_ij**2`` of the nodes
(eq. (3.2)), weighted by the products of their variances ``sigma_i**2 sigma_j**2``
(eq. (3.4)); equivalently ``tr(C C^T) / tr(C)**2`` for the nodes' covariance
matrix ``C`` (eq. (3.5)).  It lies in ``[1/N, 1]``: ``1/N`` for uncorrelated
nodes, 1 when all nodes are perfectly correlated.

For a deep network at initialisation the first-order approximation
``C ~ sigma_x**2 J J^T`` (eq. (3.3)) turns it into a ratio of moments of the
spectrum of ``J J^T`` (eq. (3.6)), and the free-probability moments of
Pennington et al. (2018) give the prediction (eq. (3.7))::

    R_sq ~ 1/N + (L/N) (mu_2 / mu_1**2 - 1 - s_1)

with ``mu_k = E[phi'(h)**(2k)]`` for ``h ~ N(0, q)`` and ``s_1`` the first
coefficient of the S-transform of ``W^T W`` (-1 for Gaussian, 0 for orthogonal
weights).  The prediction does not depend on ``sigma_w2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from signalprop import gaussian, spectra
from signalprop.activations import HARDTANH, RELU, Activation, get

Array = NDArray[np.float64]

__all__ = [
    "WEIGHT_LAWS",
    "vni",
    "vni_from_covariance",
    "vni_from_jacobian",
    "squared_correlations",
    "effective_nodes",
    "moments",
    "s1",
    "growth_term",
    "jacobian_spectrum_moments",
    "vni_theory",
]

#: Weight laws of the thesis and the first S-transform coefficient ``s_1`` of ``W^T W`` for each.
WEIGHT_LAWS: dict[str, float] = {"gaussian": -1.0, "orthogonal": 0.0}

# Spellings of hard-tanh other than the library's canonical "hardtanh".
_ALIASES = {"hard_tanh": "hardtanh", "hard-tanh": "hardtanh"}

# Built-in activations whose derivative takes only the values 0 and 1, so that
# phi'**(2k) = phi'**2 and every mu_k equals mu_1 (which has a closed form).
_INDICATOR_DERIVATIVE = (RELU, HARDTANH)


# --- The indicator, eqs. (3.2)-(3.6) ------------------------------------------------------------------------------


def _as_samples(x: Any, name: str = "x") -> Array:
    """``x`` as a finite float64 ``(inputs, nodes)`` array with at least 2 of each."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real 2-D array of shape (inputs, nodes): {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, of shape (inputs, nodes), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 inputs (rows) to define variances, got {arr.shape[0]}")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 nodes (columns) to define correlations, got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (it contains NaN or inf)")
    return arr


def _centred(x: Array) -> tuple[Array, NDArray[np.bool_]]:
    """Columns of ``x`` minus their means; constant columns are set exactly to 0 (returned as a mask).

    A column is constant when all its values are identical; its computed mean can differ from that value by an
    ulp, which would otherwise leave a spurious non-zero variance.  ``x`` is first divided by ``max |x|`` so that
    the column sums cannot overflow.
    """
    constant = np.ptp(x, axis=0) == 0
    scale = np.max(np.abs(x))
    if scale > 0:
        x = x / scale
    xc = x - x.mean(axis=0)
    xc[:, constant] = 0.0
    return xc, constant


def vni(x: Any) -> float:
    """Vanishing node indicator ``R_sq`` of one layer: Chang (2019), eqs. (3.4) and (3.5).

    ``R_sq = sum_ij rho_ij**2 sigma_i**2 sigma_j**2 / sum_ij sigma_i**2 sigma_j**2``, where
    ``sigma_i**2`` is the variance of node ``i`` across the inputs and ``rho_ij**2`` the
    squared correlation coefficient of nodes ``i`` and ``j`` across the inputs (eq. (3.2)).

    Both sums run over **all** ordered pairs ``i, j = 1..N, including i = j``, exactly as in
    eq. (3.4); the diagonal terms (``rho_ii**2 = 1``) are what make the minimum ``1/N``
    (uncorrelated nodes) and the maximum 1 (all nodes perfectly correlated).  It is the
    average of ``rho_ij**2`` weighted by ``sigma_i**2 sigma_j**2``, the plain average over
    all ``N**2`` pairs when the variances are equal.  It is computed through the exact identity
    of eq. (3.5), ``R_sq = tr(C C^T) / tr(C)**2`` with ``C`` the nodes' covariance matrix, from
    the ``N x N`` covariance or the ``M x M`` Gram matrix of the centred data, whichever is
    smaller; no loop over pairs.  The normalisation of the covariance (``1/M`` or ``1/(M - 1)``)
    cancels in the ratio.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (M, N)
        Rows are the ``M >= 2`` inputs (samples of ``x_0``), columns the ``N >= 2`` nodes of the
        layer.

    Returns
    -------
    float
        ``R_sq`` in ``[1/N', 1]``, ``N'`` the number of non-constant nodes.  With a finite
        sample of ``M`` inputs it is biased upwards: independent Gaussian nodes give about
        ``1/N + 1/M`` rather than ``1/N``.

    Raises
    ------
    ValueError
        If ``x`` is not 2-D, has fewer than 2 rows or 2 columns, is not finite, or every node
        is constant (then ``tr(C) = 0`` and ``R_sq`` is undefined).

    Notes
    -----
    Constant nodes (all values identical, zero variance) have an undefined ``rho_ij``, but
    their weight ``sigma_i**2 sigma_j**2`` in eq. (3.4) is zero, and they contribute nothing
    to either trace of eq. (3.5).  Convention (not stated in the thesis: our choice, which is
    the continuous extension of eq. (3.5)): they are left out, so ``R_sq`` is that of the other
    nodes.  Dead ReLU units and saturated hard-tanh units are such nodes.
    """
    arr = _as_samples(x)
    xc, constant = _centred(arr)
    if np.all(constant):
        raise ValueError("every node is constant over the inputs: tr(C) = 0 and R_sq (eq. (3.5)) is undefined")
    xc = xc / np.max(np.abs(xc))  # the ratio is scale-free; this keeps the fourth powers in range
    m, n = xc.shape
    gram = xc.T @ xc if n <= m else xc @ xc.T  # tr((X^T X)^2) = tr((X X^T)^2)
    return float(np.sum(gram * gram) / np.trace(gram) ** 2)


def vni_from_covariance(c: ArrayLike) -> float:
    """``R_sq = tr(C C^T) / tr(C)**2`` of a covariance matrix: Chang (2019), eq. (3.5).

    Parameters
    ----------
    c : array_like, shape (N, N)
        A symmetric positive semi-definite covariance matrix of ``N >= 1`` nodes (symmetry and
        definiteness are not checked; only finiteness and a non-zero trace).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``c`` is not square, not finite, or has zero trace.
    """
    arr = np.asarray(c, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise ValueError(f"c must be a square (N, N) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("c must be finite")
    scale = np.max(np.abs(arr))
    if scale == 0 or np.trace(arr) == 0:
        raise ValueError("c has zero trace: every node is constant and R_sq is undefined")
    arr = arr / scale
    return float(np.sum(arr * arr) / np.trace(arr) ** 2)


def vni_from_jacobian(j: Any) -> float:
    """``tr(J J^T J J^T) / tr(J J^T)**2 = m_2 / (N m_1**2)``: Chang (2019), eq. (3.6).

    The VNI that the first-order approximation ``C ~ sigma_x**2 J J^T`` (eq. (3.3)) assigns to a
    network with input-output Jacobian ``J``; ``m_k`` are the moments of the eigenvalues of
    ``J J^T``.  Equals :func:`vni` of the outputs ``J x_0`` for inputs whose sample covariance is
    exactly proportional to the identity.

    Parameters
    ----------
    j : array_like or torch.Tensor, shape (N, N_in)
        The Jacobian ``d x_L / d x_0`` (square in the thesis).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``j`` is not 2-D, not finite, or zero.
    """
    if isinstance(j, torch.Tensor):
        j = j.detach().cpu().double().numpy()
    arr = np.asarray(j, dtype=float)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"j must be a non-empty 2-D matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("j must be finite")
    if not np.any(arr):
        raise ValueError("j is zero: tr(J J^T) = 0 and eq. (3.6) is undefined")
    return vni_from_covariance(arr @ arr.T)


def squared_correlations(x: Any) -> Array:
    """Matrix of squared correlation coefficients ``rho_ij**2`` across inputs: Chang (2019), eq. (3.2).

    The maps of Figs. 3.3 and 3.6 of the thesis.  Vectorised (one correlation matrix).

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (M, N)
        Rows are inputs, columns nodes, as in :func:`vni`.

    Returns
    -------
    ndarray, shape (N, N)
        Symmetric, values in ``[0, 1]``, ones on the diagonal.

    Raises
    ------
    ValueError
        As :func:`vni`, and if any node is constant (its ``rho_ij`` is undefined; unlike
        :func:`vni`, where such a node has zero weight, there is no natural value to put here).
    """
    arr = _as_samples(x)
    xc, constant = _centred(arr)
    if np.any(constant):
        bad = np.flatnonzero(constant)
        raise ValueError(
            f"{bad.size} node(s) are constant over the inputs (e.g. column {bad[0]}): their correlation "
            "coefficients (eq. (3.2)) are undefined"
        )
    xn = xc / np.linalg.norm(xc, axis=0)
    rho = np.clip(xn.T @ xn, -1.0, 1.0)
    out = rho * rho
    np.fill_diagonal(out, 1.0)
    return out


def effective_nodes(r_sq: ArrayLike, width: ArrayLike) -> Any:
    """Effective number of nodes ``N (1 - R_sq) + 1``: Chang (2019), section 3.3.

    ``R_sq`` read as the fraction of redundant nodes: one node plus the non-redundant others.

    Raises
    ------
    ValueError
        If ``r_sq`` is outside ``[0, 1]`` or ``width < 1``.
    """
    r = np.asarray(r_sq, dtype=float)
    n = np.asarray(width, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r < 0) or np.any(r > 1):
        raise ValueError(f"r_sq must lie in [0, 1], got {r_sq!r}")
    if np.any(~np.isfinite(n)) or np.any(n < 1):
        raise ValueError(f"width must be >= 1, got {width!r}")
    out = n * (1.0 - r) + 1.0
    return float(out) if out.ndim == 0 else out


# --- The prediction, eq. (3.7) ------------------------------------------------------------------------------------


def _activation(activation: Any) -> Activation:
    if isinstance(activation, str):
        activation = _ALIASES.get(activation.lower(), activation)
    return get(activation)


def _check_weights(weights: str) -> float:
    if not isinstance(weights, str) or weights.lower() not in WEIGHT_LAWS:
        raise ValueError(f"unknown weights {weights!r}; known: {', '.join(sorted(WEIGHT_LAWS))}")
    return WEIGHT_LAWS[weights.lower()]


def _check_q(q: ArrayLike, *, allow_zero: bool) -> Array:
    arr = np.asarray(q, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"q is a variance and must be finite and {bound}, got {q!r}")
    return arr


def _check_count(name: str, value: ArrayLike) -> Array:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    arr = arr.astype(float)
    if np.any(~np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return arr


def _out(x: Array) -> Any:
    return float(x) if np.ndim(x) == 0 else x


def moments(activation: Any, q: ArrayLike, *, n_nodes: int | None = None) -> tuple[Any, Any]:
    """``mu_1 = E[phi'(h)**2]`` and ``mu_2 = E[phi'(h)**4]`` for ``h ~ N(0, q)``.

    Chang (2019), eq. (3.7) and section 4.1 ("the k-th moments of the series expansion of the
    moment generating function associated with activation functions"), after Pennington et
    al. (2018): ``mu_k`` is the k-th moment of the squared diagonal ``D_l**2`` of the Jacobian
    ``J = prod_l D_l W_l``, ``D_l = diag(phi'(h_l))`` (section 3.1).  ``sigma_w2 mu_1`` is the
    per-layer gain of eqs. (4.4)-(4.5).

    ReLU and hard-tanh have ``phi'`` in {0, 1}, so ``mu_1 = mu_2 = P(phi'(h) = 1)`` in closed
    form (1/2, and ``erf(1 / sqrt(2 q))``); every other activation (tanh, linear, custom) is
    integrated by Gauss-Hermite quadrature (:func:`signalprop.spectra.jacobian_moments`, 400
    nodes, ~1e-13 for tanh at ``q <= 2``).

    Parameters
    ----------
    activation : str, Activation or callable
        A name of :mod:`signalprop.activations` (``"tanh"``, ``"hardtanh"`` -- ``"hard_tanh"`` is
        accepted too --, ``"relu"``, ``"linear"``, ``"erf"``) or anything
        :func:`signalprop.activations.get` accepts.
    q : array_like
        Pre-activation variance(s), ``>= 0``; ``q = 0`` gives the limit ``q -> 0+``
        (``phi'(0)**2`` for smooth activations, 1/2 for ReLU, 1 for hard-tanh).
    n_nodes : int, optional
        Quadrature nodes.

    Returns
    -------
    mu_1, mu_2 : float or ndarray
        Floats for scalar ``q``, arrays of the shape of ``q`` otherwise.

    Raises
    ------
    ValueError
        For an unknown activation or a negative or non-finite ``q``.
    """
    act = _activation(activation)
    qs = _check_q(q, allow_zero=True)
    if act in _INDICATOR_DERIVATIVE:
        mu1 = np.asarray(act.derivative_second_moment(qs), dtype=float)
        if np.ndim(mu1) != np.ndim(qs):
            mu1 = np.broadcast_to(mu1, qs.shape).copy()
        return _out(mu1), _out(mu1.copy())
    n = gaussian.DEFAULT_NODES_1D if n_nodes is None else n_nodes
    mu1, mu2 = spectra.jacobian_moments(act, qs, n_nodes=n)
    return _out(np.asarray(mu1, dtype=float)), _out(np.asarray(mu2, dtype=float))


def s1(weights: str) -> float:
    """First coefficient ``s_1`` of the S-transform ``S(z) = 1 + s_1 z + ...`` of ``W^T W``.

    Chang (2019), eq. (3.7) ("the first moment of the series expansion of the S-transform
    associated with the weight matrices"), after Pennington et al. (2018); ``W`` normalised to
    ``sigma_w2 = 1``.  Square Gaussian ``W``: ``W^T W`` is Wishart with ratio 1 (Marchenko-Pastur),
    ``S(z) = 1 / (1 + z)``, ``s_1 = -1``.  Orthogonal ``W``: ``W^T W = I``, ``S = 1``, ``s_1 = 0``.

    Parameters
    ----------
    weights : {"gaussian", "orthogonal"}

    Raises
    ------
    ValueError
        For any other law.
    """
    return _check_weights(weights)


def growth_term(activation: Any, weights: str, q: ArrayLike) -> Any:
    """``mu_2 / mu_1**2 - 1 - s_1``, the per-layer growth of ``N R_sq``: Chang (2019), eq. (3.7).

    ``dR_sq / dL = growth_term / N``.  At ``sigma_w2 mu_1 = 1`` it is also the per-layer growth of
    the variance ``m_2 - m_1**2`` of the spectrum of ``J J^T`` (Pennington et al. 2018), which
    :func:`signalprop.spectra.predicted_spectral_variance` computes for ``depth`` layers.  It
    vanishes only for orthogonal weights with ``mu_2 = mu_1**2`` (``phi'`` constant on the
    pre-activations: linear, or tanh/hard-tanh as ``q -> 0``), Chang (2019), section 5.1.

    Parameters
    ----------
    activation : str, Activation or callable
        See :func:`moments`.
    weights : {"gaussian", "orthogonal"}
    q : array_like
        Pre-activation variance(s) ``> 0`` at which ``mu_k`` are evaluated.

    Raises
    ------
    ValueError
        For an unknown activation or law, or ``q <= 0``.
    """
    s = _check_weights(weights)
    mu1, mu2 = moments(activation, _check_q(q, allow_zero=False))
    return _out(np.asarray(mu2) / np.asarray(mu1) ** 2 - 1.0 - s)


def jacobian_spectrum_moments(
    activation: Any, depth: ArrayLike, weights: str, q: ArrayLike, *, sigma_w2: ArrayLike | None = None
) -> tuple[Any, Any]:
    """Moments ``m_1, m_2`` of the eigenvalues of ``J J^T``: Chang (2019), section 3.1, after (3.6).

    As quoted in the thesis from Pennington et al. (2018)::

        m_1 = (sigma_w2 mu_1)**L
        m_2 = (sigma_w2 mu_1)**(2L) L (mu_2 / mu_1**2 + 1/L - 1 - s_1)

    for ``L`` layers with the same diagonal law ``D_l`` (all pre-activations at variance ``q``) in
    the large-width limit.  For linear Gaussian networks (``mu_k = 1``, ``s_1 = -1``,
    ``sigma_w2 = 1``) they are the Fuss-Catalan numbers 1 and ``L + 1``.

    Parameters
    ----------
    activation, weights, q
        See :func:`growth_term`.
    depth : array_like of int
        ``L >= 1``.
    sigma_w2 : array_like, optional
        ``N Var[W_ij]``; default ``1 / mu_1(q)``, the thesis's initialisation ``sigma_w2 mu_1 = 1``
        (then ``m_1 = 1``).

    Returns
    -------
    m_1, m_2 : float or ndarray

    Raises
    ------
    ValueError
        For an unknown activation or law, ``depth < 1``, ``q <= 0`` or ``sigma_w2 <= 0``.
    """
    s = _check_weights(weights)
    L = _check_count("depth", depth)
    qs = _check_q(q, allow_zero=False)
    mu1, mu2 = (np.asarray(m) for m in moments(activation, qs))
    if sigma_w2 is None:
        gain = np.ones_like(mu1)
    else:
        sw = np.asarray(sigma_w2, dtype=float)
        if np.any(~np.isfinite(sw)) or np.any(sw <= 0):
            raise ValueError(f"sigma_w2 must be finite and > 0, got {sigma_w2!r}")
        gain = sw * mu1
    m1 = gain**L
    m2 = gain ** (2 * L) * L * (mu2 / mu1**2 + 1.0 / L - 1.0 - s)
    return _out(m1), _out(m2)


def vni_theory(activation: Any, depth: ArrayLike, width: ArrayLike, weights: str, q: ArrayLike) -> Any:
    """Predicted VNI of a random network at initialisation: Chang (2019), eq. (3.7).

    ::

        R_sq ~ m_2 / (N m_1**2) = 1/N + (L/N) (mu_2 / mu_1**2 - 1 - s_1)

    i.e. eq. (3.6) with the moments of :func:`jacobian_spectrum_moments`; ``sigma_w2`` cancels.
    The thesis notes it is accurate when ``N >> L``; it is not clipped to the range ``[1/N, 1]``
    of ``R_sq`` and exceeds 1 once ``L`` is comparable to ``N / growth_term``.  It describes the
    population ``R_sq``; an estimate from ``M`` inputs (:func:`vni`) is larger by about ``1/M``.

    Parameters
    ----------
    activation : str, Activation or callable
        ``"tanh"``, ``"hardtanh"`` (or ``"hard_tanh"``), ``"relu"``, ``"linear"``, ... (see
        :func:`moments`).
    depth : array_like of int
        Number of layers ``L >= 1``.
    width : array_like of int
        Width ``N >= 1``.
    weights : {"gaussian", "orthogonal"}
        The weight law, through ``s_1`` (:func:`s1`).
    q : array_like
        Pre-activation variance ``> 0`` at which ``mu_1, mu_2`` are evaluated.  The thesis does
        not state it (our choice: the caller's).  Its Fig. 3.2 setting, inputs
        ``x_0 ~ N(0, 0.1)`` with ``sigma_w2 ~ 1``, gives ``q ~ 0.1`` in the first layer, and for
        hard-tanh ``q`` stays near 0.1 over 100 layers.  For tanh with zero bias ``q`` decays
        with depth towards 0, where ``mu_2 / mu_1**2 -> 1``.

    Returns
    -------
    float or ndarray
        Broadcast over ``depth``, ``width`` and ``q``.

    Raises
    ------
    ValueError
        For an unknown activation or weight law, ``depth < 1``, ``width < 1`` or ``q <= 0``.

    Examples
    --------
    >>> round(vni_theory("hardtanh", 10, 200, "gaussian", 0.1), 5)  # Fig. 3.2 setting
    0.05508
    """
    L = _check_count("depth", depth)
    n = _check_count("width", width)
    term = np.asarray(growth_term(activation, weights, q))
    return _out(1.0 / n + L / n * term)
