"""Mean-field theory of signal propagation in wide random networks and CNNs.

Fully connected maps (Poole et al. 2016; Schoenholz et al. 2017) and their
convolutional extension (Xiao et al. 2018, section 2.1).  All hyper-parameters
are *variances*: ``sigma_w2`` is the weight variance summed over the receptive
field (per-entry variance ``sigma_w2 * v_beta / c``), ``sigma_b2`` the bias
variance.

Scalar functions broadcast over arrays of ``sigma_w2`` and ``sigma_b2``, so a
whole phase diagram is one call.  Quadrature (where no closed form exists) uses 400 Gauss-Hermite nodes for
1-D expectations and 200 x 200 for 2-D ones unless ``n_nodes`` sets both:
for tanh this is ~1e-13 relative in 1-D up to ``q ~ 2`` and ~1e-11 in 2-D up to
``q ~ 2``; accuracy falls for larger variances.

Root finding is vectorised bisection (in
``log q`` for the length, with Newton steps for the correlation), so every grid
point is solved to near machine precision without a Python loop per point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from signalprop import gaussian
from signalprop.activations import Activation, get

Array = NDArray[np.float64]
ActivationLike = Any  # str | Activation | callable

_LOG_Q_MIN = np.log(1e-30)
_LOG_Q_MAX = np.log(1e8)
_C_MARGIN = 1e-10  # c* is searched on [-1, 1 - _C_MARGIN]


def _n1(n_nodes: int | None) -> int:
    return gaussian.DEFAULT_NODES_1D if n_nodes is None else n_nodes


def _n2(n_nodes: int | None) -> int:
    return gaussian.DEFAULT_NODES_2D if n_nodes is None else n_nodes


def _params(sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> tuple[Array, Array]:
    sw = np.asarray(sigma_w2, dtype=float)
    sb = np.asarray(sigma_b2, dtype=float)
    for name, arr in (("sigma_w2", sw), ("sigma_b2", sb)):
        if np.any(~np.isfinite(arr)):
            raise ValueError(f"{name} must be finite, got {arr!r}")
        if np.any(arr < 0):
            raise ValueError(f"{name} is a variance and must be >= 0, got {arr!r}")
    sw, sb = np.broadcast_arrays(sw, sb)
    return sw.astype(float), sb.astype(float)


def _scalar_or_array(x: Array) -> Any:
    return float(x) if np.ndim(x) == 0 else x


# --- The length map and its fixed point ------------------------------------------------


def q_map(
    q: ArrayLike, activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None
) -> Any:
    """Length map: the variance of a pre-activation one layer up.

    Xiao et al. (2018), eq. (2.5), diagonal entry; Poole et al. (2016)::

        V(q) = sigma_w2 * E[phi(sqrt(q) z)**2] + sigma_b2,   z ~ N(0, 1)

    Parameters
    ----------
    q : array_like
        Pre-activation variance, ``>= 0``.
    activation : str, Activation or callable
        See :func:`signalprop.activations.get`.
    sigma_w2, sigma_b2 : array_like
        Weight and bias variances.
    n_nodes : int, optional
        Gauss-Hermite nodes when no closed form exists.

    Returns
    -------
    float or ndarray
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    return _scalar_or_array(sw * act.second_moment(q, n_nodes=_n1(n_nodes)) + sb)


def q_star(activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> Any:
    """Fixed point ``q* = V(q*)`` of the length map.

    Xiao et al. (2018), eq. (2.6) (the diagonal of the fixed point); Poole et al. (2016).
    Found by bisection in ``log q`` on ``[1e-30, 1e8]``, which resolves ``q*``
    to ~1e-15 relative wherever the quadrature is accurate.  When
    ``sigma_b2 = 0`` and ``phi(0) = 0`` the origin is a fixed point; it is
    returned when it is stable (``sigma_w2 * phi'(0)**2 <= 1``).  If ``V(q) > q``
    up to ``q = 1e8`` (ReLU or linear with ``chi_1 >= 1`` and a bias) the
    length diverges and ``inf`` is returned.  For activations with several
    positive fixed points the largest one below 1e8 is bracketed.

    Returns
    -------
    float or ndarray
        Broadcast shape of ``sigma_w2`` and ``sigma_b2``.
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    shape = sw.shape
    sw, sb = sw.ravel(), sb.ravel()

    def g(log_q: Array, idx: Array) -> Array:
        q = np.exp(log_q)
        return sw[idx] * act.second_moment(q, n_nodes=_n1(n_nodes)) + sb[idx] - q

    out = np.full(sw.shape, np.nan)
    idx_all = np.arange(sw.size)
    lo = np.full(sw.size, _LOG_Q_MIN)
    hi = np.full(sw.size, _LOG_Q_MAX)
    g_lo = g(lo, idx_all)
    g_hi = g(hi, idx_all)
    zero_is_stable = (g_lo <= 0) & (sb == 0)
    out[zero_is_stable] = 0.0
    out[(g_hi > 0) & ~zero_is_stable] = np.inf
    todo = np.flatnonzero(np.isnan(out))
    if np.any(g_lo[todo] <= 0):
        bad = todo[g_lo[todo] <= 0]
        raise ValueError(f"no positive fixed point of the length map bracketed for parameters at {bad.tolist()}")
    lo, hi = lo[todo], hi[todo]
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = g(mid, todo) > 0
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    out[todo] = np.exp(0.5 * (lo + hi))
    return _scalar_or_array(out.reshape(shape))


# --- Slopes at the fixed point ---------------------------------------------------------


def chi_1(activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> Any:
    """Slope of the correlation map at ``c = 1``: ``sigma_w2 * E[phi'(sqrt(q*) z)**2]``.

    Xiao et al. (2018), eq. (2.7) and section 2.2: the mean squared singular value
    of one layer's input-output Jacobian, and the per-layer factor of the
    gradient's second moment (eq. (2.16)).  ``chi_1 = 1`` is the critical line.
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    qs = np.asarray(q_star(act, sw, sb, n_nodes=n_nodes))
    return _scalar_or_array(sw * act.derivative_second_moment(qs, n_nodes=_n1(n_nodes)))


def chi_q(activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> Any:
    """Slope of the length map at its fixed point, ``chi_q* = V'(q*)``.

    Xiao et al. (2018), eq. (2.7); Schoenholz et al. (2017)::

        chi_q* = sigma_w2 * E[phi'(u)**2 + phi(u) phi''(u)],   u ~ N(0, q*)

    For activations that are not smooth the kinks contribute delta functions to
    ``phi''``: closed forms are used for ReLU (``sigma_w2 / 2``) and hard-tanh
    (``sigma_w2 * (P(|u|<1) - 2 p_u(1))``), and the derivative-free Stein form
    ``sigma_w2 * E[phi(u)**2 (z**2 - 1)] / (2 q*)`` for other non-smooth activations
    (slowly convergent: ~1e-3).
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    qs = np.asarray(q_star(act, sw, sb, n_nodes=n_nodes))
    return _scalar_or_array(sw * _length_slope(act, qs, n_nodes))


def _length_slope(act: Activation, q: Array, n_nodes: int | None) -> Array:
    """``dE[phi(sqrt(q) z)**2]/dq`` (without the factor sigma_w2)."""
    if act.smooth:
        return gaussian.expect(lambda u: act.dphi(u) ** 2 + act.phi(u) * act.d2phi(u), q, n_nodes=_n1(n_nodes))
    if act.length_slope_1d is not None:
        return act.length_slope_1d(q)
    if act.name == "relu":
        return np.full(np.shape(q), 0.5)
    z, w = gaussian.hermite_nodes(_n1(n_nodes))
    q = np.asarray(q, dtype=float)
    u = np.sqrt(q)[..., None] * z
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(w * act.phi(u) ** 2 * (z**2 - 1.0), axis=-1) / (2.0 * q)


def c_map(
    c: ArrayLike,
    activation: ActivationLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    *,
    q: ArrayLike | None = None,
    n_nodes: int | None = None,
) -> Any:
    """Correlation map at length ``q`` (default ``q*``).

    Xiao et al. (2018), eq. (2.5), off-diagonal entry divided by ``q``; Poole et al. (2016)::

        M(c) = (sigma_w2 * E[phi(u1) phi(u2)] + sigma_b2) / q,
        (u1, u2) ~ N(0, q [[1, c], [c, 1]])
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    qq = np.asarray(q_star(act, sw, sb, n_nodes=n_nodes) if q is None else q, dtype=float)
    c = np.asarray(c, dtype=float)
    if np.any(np.abs(c) > 1):
        raise ValueError(f"a correlation must lie in [-1, 1], got {c!r}")
    return _scalar_or_array((sw * act.cross_moment(qq, qq, c * qq, n_nodes=_n2(n_nodes)) + sb) / qq)


def c_star(activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> Any:
    """Stable fixed point ``c*`` of the correlation map.

    Xiao et al. (2018), eq. (2.6).  ``c* = 1`` in the ordered phase and on the
    critical line (``chi_1 <= 1``).  In the chaotic phase ``c*`` is the root of
    ``M(c) = c`` in ``[-1, 1)``, found by bisection with Newton steps
    (``M'(c) = sigma_w2 * E[phi'(u1) phi'(u2)]``, Price's theorem), to ~1e-14.
    The root is searched in ``[-1, 1 - 1e-10]``.  Accuracy is that of the 2-D
    quadrature: about 1e-12 for tanh up to ``q* = 5`` (``sigma_w2 = 5``), but only
    about 1e-8 at ``q* = 7.5`` (``sigma_w2 = 8``) with the default 200 x 200 nodes;
    pass a larger ``n_nodes`` there.
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    shape = sw.shape
    sw, sb = sw.ravel(), sb.ravel()
    qs = np.asarray(q_star(act, sw, sb, n_nodes=n_nodes), dtype=float).ravel()
    x1 = sw * act.derivative_second_moment(qs, n_nodes=_n1(n_nodes))
    out = np.ones(sw.size)
    todo = np.flatnonzero((x1 > 1) & np.isfinite(qs) & (qs > 0))
    if todo.size:
        out[todo] = _solve_c_star(act, sw[todo], sb[todo], qs[todo], n_nodes)
    return _scalar_or_array(out.reshape(shape))


def _solve_c_star(act: Activation, sw: Array, sb: Array, qs: Array, n_nodes: int | None) -> Array:
    def g_and_slope(c: Array, i: Array) -> tuple[Array, Array]:
        q = qs[i]
        m = (sw[i] * act.cross_moment(q, q, c * q, n_nodes=_n2(n_nodes)) + sb[i]) / q
        slope = sw[i] * act.derivative_cross_moment(q, q, c * q, n_nodes=_n2(n_nodes))
        return m - c, slope - 1.0

    n = sw.size
    lo = np.full(n, -1.0)
    hi = np.full(n, 1.0 - _C_MARGIN)
    # Only called where chi_1 > 1: then M(1) = 1 and M'(1) = chi_1 > 1, so
    # M(c) - c < 0 just below 1 and the stable root lies in [-1, 1).  The sign at
    # the upper end is taken from this expansion, not from the 2-D rule: at c -> 1
    # the 2-D rule degenerates to a 1-D rule whose error for tanh at q* > 2
    # (about 1e-9) exceeds _C_MARGIN and would fake a root next to 1.
    result = np.full(n, np.nan)
    active = np.arange(n)
    x = np.full(n, 0.5)
    for _ in range(200):
        if active.size == 0:
            break
        g, dg = g_and_slope(x[active], active)
        above = g > 0  # M(c) > c: the stable root lies above c
        lo[active] = np.where(above, x[active], lo[active])
        hi[active] = np.where(above, hi[active], x[active])
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = x[active] - g / dg
        inside = (newton > lo[active]) & (newton < hi[active]) & np.isfinite(newton)
        new = np.where(inside, newton, 0.5 * (lo[active] + hi[active]))
        exact = g == 0  # x is the root: keep it (the bracket has collapsed onto it)
        new = np.where(exact, x[active], new)
        done = (np.abs(new - x[active]) < 1e-15) | (hi[active] - lo[active] < 1e-15) | exact
        x[active] = new
        result[active[done]] = new[done]
        active = active[~done]
    if active.size:
        raise RuntimeError("c* did not converge")  # pragma: no cover - bisection bounds it
    return result


def chi_c(activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> Any:
    """Slope of the correlation map at ``c*``: ``sigma_w2 * E[phi'(u1) phi'(u2)]``.

    Xiao et al. (2018), eq. (2.7): the eigenvalue of the linearised C-map on
    the off-diagonal subspace.  Equals ``chi_1`` in the ordered phase (``c* = 1``).
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    qs = np.asarray(q_star(act, sw, sb, n_nodes=n_nodes), dtype=float)
    cs = np.asarray(c_star(act, sw, sb, n_nodes=n_nodes), dtype=float)
    ordered = cs == 1.0
    cross = act.derivative_cross_moment(qs, qs, np.where(ordered, 0.0, cs) * qs, n_nodes=_n2(n_nodes))
    diag = act.derivative_second_moment(qs, n_nodes=_n1(n_nodes))
    return _scalar_or_array(sw * np.where(ordered, diag, cross))


def _depth(chi: Array) -> Array:
    chi = np.asarray(chi, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(chi >= 1.0, np.inf, -1.0 / np.log(np.abs(chi)))


def depth_scale_c(
    activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None
) -> Any:
    """Correlation depth scale ``xi_c = -1 / log(chi_c*)``; ``inf`` on the critical line.

    Xiao et al. (2018), eq. (2.12) for the uniform mode; Schoenholz et al. (2017).
    Near criticality ``xi_c`` is ill-conditioned (relative error ~ ``xi_c`` times
    that of ``chi_c*``).
    """
    return _scalar_or_array(_depth(chi_c(activation, sigma_w2, sigma_b2, n_nodes=n_nodes)))


def depth_scale_q(
    activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None
) -> Any:
    """Length depth scale ``xi_q = -1 / log(chi_q*)``; Schoenholz et al. (2017)."""
    return _scalar_or_array(_depth(chi_q(activation, sigma_w2, sigma_b2, n_nodes=n_nodes)))


def gamma(activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> Any:
    """Cross slope ``gamma = dC_ab / dSigma_aa`` at the fixed point (a != b).

    Xiao et al. (2018), Lemma B.2 (the constant it calls gamma): by Price's theorem::

        gamma = sigma_w2 / 2 * E[phi''(u_a) phi(u_b)],   (u_a, u_b) ~ N(0, q* [[1, c*], [c*, 1]])
    """
    act = get(activation)
    sw, sb = _params(sigma_w2, sigma_b2)
    qs = np.asarray(q_star(act, sw, sb, n_nodes=n_nodes), dtype=float)
    cs = np.asarray(c_star(act, sw, sb, n_nodes=n_nodes), dtype=float)
    e = gaussian.expect2(act.d2phi, act.phi, qs, qs, cs * qs, n_nodes=_n2(n_nodes))
    return _scalar_or_array(0.5 * sw * e)


# --- The critical line -------------------------------------------------------------------


def critical_line(activation: ActivationLike, q_star: ArrayLike, *, n_nodes: int | None = None) -> tuple[Any, Any]:
    """The point ``(sigma_w2, sigma_b2)`` on ``chi_1 = 1`` whose fixed point is ``q_star``.

    Solves ``chi_1 = 1`` and ``V(q*) = q*`` (Schoenholz et al. 2017; the
    parametrisation used by Xiao et al.'s demo)::

        sigma_w2 = 1 / E[phi'(sqrt(q*) z)**2],   sigma_b2 = q* - sigma_w2 * E[phi(sqrt(q*) z)**2]

    Raises
    ------
    ValueError
        If ``q_star <= 0``, or no non-negative bias variance gives this ``q*``.
    """
    act = get(activation)
    q = np.asarray(q_star, dtype=float)
    if np.any(~np.isfinite(q)) or np.any(q <= 0):
        raise ValueError(f"q_star must be a positive variance, got {q_star!r}")
    sw = 1.0 / act.derivative_second_moment(q, n_nodes=_n1(n_nodes))
    sb = q - sw * act.second_moment(q, n_nodes=_n1(n_nodes))
    # Round-off: sb is a small difference of O(q) numbers.
    sb = np.where(np.abs(sb) <= 1e-13 * q, np.maximum(sb, 0.0), sb)
    if np.any(sb < 0):
        raise ValueError(f"{act.name}: no critical point with a non-negative bias variance has q* = {q[sb < 0]!r}")
    return _scalar_or_array(sw), _scalar_or_array(sb)


def critical_point(activation: ActivationLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> tuple[Any, Any]:
    """``(q*, sigma_w2)`` on the critical line ``chi_1 = 1`` for a given bias variance.

    Bisection in ``log q*`` over ``[1e-30, 100]`` on ``sigma_b2(q*) = sigma_b2`` along the
    parametrisation of :func:`critical_line`.  For ``sigma_b2 = 0`` and an
    activation with ``phi(0) = 0`` the critical point is the limit
    ``q* -> 0``, ``sigma_w2 = 1 / phi'(0)**2`` (returned with ``q* = 0``).

    Raises
    ------
    ValueError
        If the activation has no critical point at this bias variance
        (ReLU with ``sigma_b2 > 0``, for instance).
    """
    act = get(activation)
    target = np.asarray(sigma_b2, dtype=float)
    if np.any(~np.isfinite(target)) or np.any(target < 0):
        raise ValueError(f"sigma_b2 is a variance and must be >= 0, got {sigma_b2!r}")
    shape = target.shape
    target = target.ravel()

    def f(log_q: Array, t: Array) -> Array:
        q = np.exp(log_q)
        sw = 1.0 / act.derivative_second_moment(q, n_nodes=_n1(n_nodes))
        return q - sw * act.second_moment(q, n_nodes=_n1(n_nodes)) - t

    lo = np.full(target.size, _LOG_Q_MIN)
    hi = np.full(target.size, np.log(1e2))
    f_lo, f_hi = f(lo, target), f(hi, target)
    q_out = np.full(target.size, np.nan)
    limit = (target == 0) & (np.abs(f_lo) <= 1e-25)
    q_out[limit] = 0.0
    bracketed = (f_lo < 0) & (f_hi > 0) & ~limit
    if not np.all(bracketed | limit):
        bad = target[~(bracketed | limit)]
        raise ValueError(f"{act.name} has no critical point (chi_1 = 1 with finite q*) at sigma_b2 = {bad.tolist()}")
    idx = np.flatnonzero(bracketed)
    lo, hi = lo[idx], hi[idx]
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = f(mid, target[idx]) < 0
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    q_out[idx] = np.exp(0.5 * (lo + hi))
    q_eval = np.where(q_out == 0.0, np.exp(_LOG_Q_MIN), q_out)
    sw_out = 1.0 / act.derivative_second_moment(q_eval, n_nodes=_n1(n_nodes))
    return _scalar_or_array(q_out.reshape(shape)), _scalar_or_array(sw_out.reshape(shape))


def critical_sigma_w2(activation: ActivationLike, sigma_b2: ArrayLike, *, n_nodes: int | None = None) -> Any:
    """Weight variance on the critical line ``chi_1 = 1`` for a given bias variance.

    The order-to-chaos boundary of Xiao et al. (2018), section 2.1.4 and
    Appendix D; see :func:`critical_point` for the method and errors.
    """
    return critical_point(activation, sigma_b2, n_nodes=n_nodes)[1]


# --- The convolutional covariance map ----------------------------------------------------


def check_variance_vector(v: ArrayLike) -> Array:
    """Validate a spatial variance vector (1-D) or grid (2-D) and return it as floats.

    ``v`` gives the share of the weight variance on each kernel tap, indexed by
    offsets ``beta = -k..k`` (``v[0]`` is ``beta = -k``).  It must have odd
    length(s), be non-negative and sum to 1 (Xiao et al. 2018, eq. (2.13)).

    Raises
    ------
    ValueError
        Naming the violated condition.
    """
    arr = np.asarray(v, dtype=float)
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(f"v must be a non-empty 1-D vector or 2-D grid of tap variances, got shape {arr.shape}")
    if any(s % 2 == 0 for s in arr.shape):
        raise ValueError(f"v must have odd length along each axis (taps -k..k), got shape {arr.shape}")
    if np.any(~np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("v must be finite and non-negative")
    if abs(arr.sum() - 1.0) > 1e-10:
        raise ValueError(f"v must sum to 1 (it shares sigma_w2 among the taps), got sum {arr.sum():.12g}")
    return arr


def _check_covariance(sigma: ArrayLike, ndim: int) -> Array:
    s = np.asarray(sigma, dtype=float)
    if ndim == 1:
        if s.ndim != 2 or s.shape[0] != s.shape[1]:
            raise ValueError(f"sigma must be an n x n covariance for a 1-D image, got shape {s.shape}")
    else:
        if s.ndim != 4 or s.shape[:2] != s.shape[2:]:
            raise ValueError(f"sigma must have shape (n1, n2, n1, n2) for a 2-D image, got {s.shape}")
    m = s.reshape(int(np.sqrt(s.size)), -1)
    if np.any(~np.isfinite(m)):
        raise ValueError("sigma must be finite")
    scale = max(np.abs(m).max(), 1e-300)
    if np.abs(m - m.T).max() > 1e-10 * scale:
        raise ValueError("sigma must be symmetric")
    eig_min = np.linalg.eigvalsh(0.5 * (m + m.T)).min()
    if eig_min < -1e-10 * scale:
        raise ValueError(f"sigma must be positive semi-definite (smallest eigenvalue {eig_min:.3g})")
    return s


def c_transform(
    sigma: ArrayLike, activation: ActivationLike, sigma_w2: float, sigma_b2: float, *, n_nodes: int | None = None
) -> Array:
    """The entrywise C-map ``C(Sigma)_{a,b} = sigma_w2 E[phi(h_a) phi(h_b)] + sigma_b2``, h ~ N(0, Sigma).

    Xiao et al. (2018), eq. (2.5).  Each entry needs only the 2x2 marginal
    ``(Sigma_aa, Sigma_bb, Sigma_ab)``.  ``sigma`` is any covariance matrix
    (``(m, m)``); it is validated to be symmetric and positive semi-definite.
    """
    act = get(activation)
    sw, sb = (float(x) for x in _params(sigma_w2, sigma_b2))
    s = np.asarray(sigma, dtype=float)
    m = s.reshape(int(np.sqrt(s.size)), -1) if s.ndim == 4 else s
    m = _check_covariance(m, 1)
    d = np.diag(m)
    iu = np.triu_indices(m.shape[0])
    out = np.empty_like(m)
    chunk = max(1, 2_000_000 // (_n2(n_nodes) ** 2))
    vals = np.empty(iu[0].size)
    for start in range(0, iu[0].size, chunk):
        a, b = iu[0][start : start + chunk], iu[1][start : start + chunk]
        s12 = np.clip(m[a, b], -np.sqrt(d[a] * d[b]), np.sqrt(d[a] * d[b]))
        vals[start : start + chunk] = act.cross_moment(d[a], d[b], s12, n_nodes=_n2(n_nodes))
    out[iu] = sw * vals + sb
    out.T[iu] = out[iu]
    return out.reshape(s.shape)


def average_along_diagonals(c: ArrayLike, v: ArrayLike) -> Array:
    """The operator ``A_v *``: average each entry along its cyclic diagonal with weights ``v``.

    Xiao et al. (2018), eqs. (2.4) and (2.13), periodic boundaries::

        [A_v * C]_{a,a'} = sum_beta v_beta C_{a+beta, a'+beta}   (indices mod n)

    1-D: ``c`` is ``(n, n)`` and ``v`` has odd length ``2k+1``.  2-D: ``c`` is
    ``(n1, n2, n1, n2)`` and ``v`` is ``(2k1+1, 2k2+1)``; offsets act on both
    image axes.  Taps may wrap more than once when ``2k+1 > n``.
    """
    v = check_variance_vector(v)
    c = np.asarray(c, dtype=float)
    if v.ndim == 1:
        if c.ndim != 2:
            raise ValueError(f"a 1-D variance vector needs an (n, n) matrix, got shape {c.shape}")
        k = v.size // 2
        return sum(v[i] * np.roll(c, shift=(-(i - k), -(i - k)), axis=(0, 1)) for i in range(v.size))
    if c.ndim != 4:
        raise ValueError(f"a 2-D variance grid needs an (n1, n2, n1, n2) array, got shape {c.shape}")
    k1, k2 = v.shape[0] // 2, v.shape[1] // 2
    out = np.zeros_like(c)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            b1, b2 = i - k1, j - k2
            out += v[i, j] * np.roll(c, shift=(-b1, -b2, -b1, -b2), axis=(0, 1, 2, 3))
    return out


def cnn_covariance_step(
    sigma: ArrayLike,
    activation: ActivationLike,
    sigma_w2: float,
    sigma_b2: float,
    v: ArrayLike,
    *,
    n_nodes: int | None = None,
) -> Array:
    """One layer of the CNN covariance map ``Sigma^{l+1} = A_v * C(Sigma^l)``.

    Xiao et al. (2018), eqs. (2.3)-(2.5) and (2.13), for a random CNN (2.1) with
    stride 1, periodic boundaries, ``omega_ij(beta) ~ N(0, sigma_w2 v_beta / c)``
    and ``b_j ~ N(0, sigma_b2)``, in the limit of many channels.

    Parameters
    ----------
    sigma : array_like
        Spatial covariance of the pre-activations at layer l: ``(n, n)`` for a
        1-D image, ``(n1, n2, n1, n2)`` for a 2-D one.  Symmetric and PSD.
    activation : str, Activation or callable
    sigma_w2, sigma_b2 : float
        Weight and bias variances, ``>= 0``.
    v : array_like
        Tap variances: odd length ``2k+1`` (1-D) or an odd-by-odd grid (2-D),
        non-negative, summing to 1.  ``np.full(3, 1/3)`` is the uniform kernel.

    Returns
    -------
    ndarray
        ``Sigma^{l+1}``, same shape as ``sigma``.

    Raises
    ------
    ValueError
        On a negative variance, a non-symmetric or non-PSD ``sigma``, or a ``v``
        of even length, with negative entries or not summing to 1.
    """
    v = check_variance_vector(v)
    _params(sigma_w2, sigma_b2)
    s = _check_covariance(sigma, v.ndim)
    return average_along_diagonals(c_transform(s, activation, sigma_w2, sigma_b2, n_nodes=n_nodes), v)


def fixed_point_covariance(activation: ActivationLike, sigma_w2: float, sigma_b2: float, n: int) -> Array:
    """``Sigma* = q* [delta_ab + (1 - delta_ab) c*]`` for n positions; Xiao et al. (2018), eq. (2.6)."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    qs = float(q_star(activation, sigma_w2, sigma_b2))
    cs = float(c_star(activation, sigma_w2, sigma_b2))
    return qs * (cs * np.ones((n, n)) + (1.0 - cs) * np.eye(n))


def fourier_eigenvalues(v: ArrayLike, n: int | tuple[int, int]) -> NDArray[np.complex128]:
    """Eigenvalues ``lambda_p`` of ``A_v *`` on one cyclic diagonal: the DFT of ``v``.

    Xiao et al. (2018), section 2.1.3 and eqs. (2.10)-(2.12)::

        lambda_p = sum_{beta=-k}^{k} v_beta exp(2 pi i p beta / n),   p = 0..n-1

    The eigenvector is the Fourier mode ``exp(2 pi i p a / n)`` along the
    diagonal.  For a 2-D grid ``v`` and ``n = (n1, n2)`` (or an int for a
    square image) the result is the ``(n1, n2)`` array of 2-D DFT values.
    Real (up to rounding) when ``v`` is symmetric.
    """
    v = check_variance_vector(v)
    ns = (n,) * v.ndim if np.isscalar(n) else tuple(n)
    if len(ns) != v.ndim or any(int(m) != m or m < 1 for m in ns):
        raise ValueError(f"n must be a positive integer per image axis, got {n!r}")
    out = np.zeros(ns, dtype=complex)
    grids = np.meshgrid(*(np.arange(m) for m in ns), indexing="ij")
    for idx in np.ndindex(v.shape):
        phase = sum(g * (i - s // 2) / m for g, i, s, m in zip(grids, idx, v.shape, ns, strict=False))
        out += v[idx] * np.exp(2j * np.pi * phase)
    return out


def mode_depth_scales(chi: ArrayLike, eigenvalues: ArrayLike) -> Array:
    """Depth scales ``xi_p = -1 / log|chi * lambda_p|`` of the Fourier modes, eq. (2.12).

    ``chi`` is ``chi_c*`` for off-diagonal modes (``chi_q*`` for diagonal ones);
    ``inf`` where ``|chi lambda_p| >= 1`` and 0 where ``lambda_p = 0``.
    """
    x = np.abs(np.asarray(chi, dtype=float) * np.asarray(eigenvalues))
    with np.errstate(divide="ignore"):
        return np.where(x >= 1.0, np.inf, np.where(x == 0, 0.0, -1.0 / np.log(np.where(x == 0, 0.5, x))))
