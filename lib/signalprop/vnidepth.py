"""Very deep networks streamed layer by layer: correlation maps and the maximum depth of Chang (2019), chapter 3.

Chang (2019), Fig. 3.3 draws the squared correlation coefficients ``rho_ij**2`` (eq. (3.2)) of the
output nodes of networks up to 1,000 layers deep, with the node indices "rearranged to cluster the
correlated nodes", and Table 3.1 gives a "maximum depth for representation power" of feed-forward
and residual networks, up to and beyond 10,000 layers.  A :class:`signalprop.fcnet.FCNet` of depth
10,000 would store all its weights; the functions here draw the weights of each layer when they
are needed and keep only the current layer, so that the cost is that of the forward pass.

* :func:`layers` yields ``x_1, x_2, ...`` of a feed-forward network, eq. (3.1), or of a residual
  network ``x_l = x_{l-1} + phi(W_l x_{l-1})`` (our choice of residual form; section 3.5 of the
  thesis is missing from its text);
* :func:`vni_profile` reads ``R_sq`` (eqs. (3.4)/(3.5)) off chosen layers, optionally stopping at
  the first that reaches a threshold;
* :func:`depth_grid` and :func:`crossing_depth` locate the first depth at which ``R_sq`` reaches
  a threshold: the criterion the book chooses for Table 3.1, whose own criterion is not stated;
* :func:`cluster_order` and :func:`mean_offdiagonal` order and summarise a ``rho_ij**2`` map.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from signalprop import vni as _vni
from signalprop.init import haar_orthogonal

__all__ = [
    "ARCHITECTURES",
    "layers",
    "vni_profile",
    "depth_grid",
    "crossing_depth",
    "cluster_order",
    "mean_offdiagonal",
]

#: Architectures understood by :func:`layers`.
ARCHITECTURES = ("feedforward", "residual")

#: Weight laws understood by :func:`layers` (those of :mod:`signalprop.fcnet`).
WEIGHT_LAWS = tuple(_vni.WEIGHT_LAWS)

# Layers whose weights are drawn in one call (a batched QR for orthogonal weights).
_CHUNK = 64

# Activations with phi(2**k h) = 2**k phi(h) exactly in floating point: the layers may be rescaled by powers of two.
_HOMOGENEOUS = ("linear", "relu")


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_depths(depths: Any) -> list[int]:
    try:
        out = list(depths)
    except TypeError:
        raise ValueError(f"depths must be a sequence of integers, got {depths!r}") from None
    if not out:
        raise ValueError("depths must name at least one layer")
    for d in out:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"depths must be integers >= 1, got {d!r}")
    ints = [int(d) for d in out]
    if any(b <= a for a, b in zip(ints[:-1], ints[1:], strict=True)):
        raise ValueError("depths must be strictly increasing")
    return ints


def _draw(
    law: str, count: int, fan_out: int, fan_in: int, variance: float, generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``count`` weight matrices ``(fan_out, fan_in)``, entries of mean square ``variance / fan_in``.

    Gaussian weights are drawn in ``dtype``; orthogonal ones in float64 and cast.

    Gaussian: i.i.d. ``N(0, variance / fan_in)``.  Orthogonal: Haar orthogonal (QR of a Gaussian matrix with the
    signs of ``diag(R)``, as :func:`signalprop.init.haar_orthogonal`) times ``sqrt(variance)``; for a non-square
    layer the rows or columns of a Haar matrix of size ``max(fan_out, fan_in)``, scaled as
    :func:`signalprop.fcnet.init_linear_` does.
    """
    if law == "gaussian":
        return torch.randn((count, fan_out, fan_in), generator=generator, dtype=dtype) * math.sqrt(variance / fan_in)
    if fan_out != fan_in:
        n = max(fan_out, fan_in)
        scale = math.sqrt(variance * max(1.0, fan_out / fan_in))
        return torch.stack(
            [haar_orthogonal(n, generator=generator)[:fan_out, :fan_in] * scale for _ in range(count)]
        ).to(dtype)
    a = torch.randn((count, fan_out, fan_in), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs[signs == 0] = 1.0
    return (q * signs.unsqueeze(-2) * math.sqrt(variance)).to(dtype)


def layers(
    inputs: Any,
    width: int,
    depth: int,
    activation: Any = "tanh",
    weights: str = "gaussian",
    *,
    architecture: str = "feedforward",
    sigma_w2: float | None = None,
    q: float = 0.1,
    branch_depth: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Iterator[torch.Tensor]:
    """Yield the nodes ``x_1, ..., x_depth`` of a random network, drawing each layer's weights when it is reached.

    Feed-forward: Chang (2019), eq. (3.1) with zero biases, ``x_l = phi(W_l x_{l-1})``, ``N x N`` weights of
    variance ``sigma_w2 / N`` (Gaussian or scaled orthogonal, as :class:`signalprop.fcnet.FCNet`), the first
    layer ``in_features -> N``.

    Residual (our choice; the thesis's section 3.5 and the residual networks of its Table 3.1 are not
    described in its text): ``x_l = x_{l-1} + phi(W_l x_{l-1})`` with the weights of the branch scaled by
    ``1 / branch_depth``, ``Var[W_ij] = sigma_w2 / (N branch_depth)``.  Without that factor the variance of
    the nodes of a linear or ReLU residual network grows by a factor ``1 + sigma_w2 mu_1``-ish per layer;
    with it, it grows by at most ``exp(sigma_w2 E[phi(h)**2] / q)`` over ``branch_depth`` layers (the
    "stable ResNet" scaling of the residual branches).  Residual networks need ``in_features == width``.

    The weights are drawn from one seeded generator in blocks of layers, so the first ``l`` layers of any
    network are the same whatever ``depth`` is: layer ``l`` of a deep network is the output of a
    depth-``l`` network.

    Parameters
    ----------
    inputs : torch.Tensor or array_like, shape (M, in_features)
        The inputs ``x_0``, one per row.
    width : int
        ``N``.
    depth : int
        Number of layers yielded, ``>= 1``.
    activation : str, Activation or callable
        ``"tanh"``, ``"hardtanh"``, ``"relu"``, ``"linear"``, ... (:func:`signalprop.activations.get`).
    weights : {"gaussian", "orthogonal"}
    architecture : {"feedforward", "residual"}
    sigma_w2 : float, optional
        ``N Var[W_ij]`` (before the residual factor); default ``1 / mu_1(q)`` as :class:`~signalprop.fcnet.FCNet`.
    q : float
        Pre-activation variance at which the default ``mu_1`` is evaluated.
    branch_depth : int, optional
        Residual only: the ``L`` of the factor ``1 / L`` of the branch variance; default ``depth``.
    seed : int
    dtype : torch.dtype
        Precision of the forward pass and of the Gaussian weights (orthogonal weights are made in float64 and
        cast), so a float32 network is not the float64 network of the same seed rounded.

    Yields
    ------
    torch.Tensor, shape (M, width)
        ``x_l`` for ``l = 1, ..., depth``.  For the positively homogeneous activations ``"linear"`` and
        ``"relu"`` (feed-forward) a layer may come multiplied by a power of two, chosen to keep its entries
        in the floating-point range over thousands of layers.  That is exact in floating point and leaves
        ``R_sq`` and ``rho_ij**2`` unchanged (they are scale-free); every later layer carries the same factor.

    Raises
    ------
    ValueError
        For bad sizes, an unknown activation, law or architecture, ``sigma_w2 <= 0``, inputs that are not a
        finite ``(M, in_features)`` array, or a residual network with ``in_features != width``.
    """
    n = _check_int("width", width)
    total = _check_int("depth", depth)
    seed = _check_int("seed", seed, minimum=0)
    if not isinstance(weights, str) or weights.lower() not in WEIGHT_LAWS:
        raise ValueError(f"unknown weights {weights!r}; known: {', '.join(WEIGHT_LAWS)}")
    law = weights.lower()
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    act = _vni._activation(activation)
    q = _check_positive("q", q)
    sw = 1.0 / float(_vni.moments(act, q)[0]) if sigma_w2 is None else _check_positive("sigma_w2", sigma_w2)
    x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs, dtype=float))
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"inputs must have shape (M, in_features), got {tuple(x.shape)}")
    x = x.detach().to(dtype)
    if not bool(torch.all(torch.isfinite(x))):
        raise ValueError("inputs must be finite")
    residual = architecture == "residual"
    if residual:
        if x.shape[1] != n:
            raise ValueError(f"a residual network needs in_features == width, got {x.shape[1]} and {n}")
        b = total if branch_depth is None else _check_int("branch_depth", branch_depth)
        sw = sw / b
    elif branch_depth is not None:
        raise ValueError("branch_depth applies to residual networks only")
    rescale = (not residual) and act.name in _HOMOGENEOUS
    g = torch.Generator().manual_seed(seed)
    fn = act.torch_fn
    layer = 0
    if not residual and x.shape[1] != n:  # the first layer in_features -> N, drawn on its own
        w = _draw(law, 1, n, x.shape[1], sw, g, dtype)[0]
        x = fn(x @ w.T)
        layer = 1
        yield x
    while layer < total:
        block = _draw(law, min(_CHUNK, total - layer), n, n, sw, g, dtype)
        for w in block:
            h = x @ w.T
            x = x + fn(h) if residual else fn(h)
            if rescale:
                big = float(torch.max(torch.abs(x)))
                if big > 0 and not 2.0**-60 < big < 2.0**60:
                    x = torch.ldexp(x, torch.tensor(-math.frexp(big)[1], dtype=torch.int32))
            layer += 1
            yield x


def vni_profile(
    inputs: Any,
    width: int,
    depths: Sequence[int],
    activation: Any = "tanh",
    weights: str = "gaussian",
    *,
    threshold: float | None = None,
    **network: Any,
) -> NDArray[np.float64]:
    """``R_sq`` (Chang 2019, eqs. (3.4)/(3.5)) of layers ``depths`` of one network of :func:`layers`.

    One network of depth ``max(depths)`` is run forward; ``R_sq`` of layer ``l`` is that of the output
    layer of a depth-``l`` network.  With a ``threshold``, the run stops at the first listed depth whose
    ``R_sq`` is ``>= threshold``.

    Parameters
    ----------
    inputs, width, activation, weights
        See :func:`layers`.
    depths : sequence of int
        Strictly increasing layer indices ``>= 1``.
    threshold : float, optional
        In ``(0, 1]``.
    **network
        ``architecture``, ``sigma_w2``, ``q``, ``branch_depth``, ``seed``, ``dtype`` of :func:`layers`.

    Returns
    -------
    ndarray
        ``R_sq`` at ``depths[:k]``: ``k = len(depths)``, or, with a threshold, up to and including the first
        depth that reached it.

    Raises
    ------
    ValueError
        For bad ``depths`` or ``threshold``, what :func:`layers` rejects, and a layer whose nodes are all
        constant over the inputs (then ``R_sq`` is undefined).
    """
    wanted = _check_depths(depths)
    if threshold is not None:
        t = _check_positive("threshold", threshold)
        if t > 1:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    out: list[float] = []
    k = 0
    for layer, x in enumerate(layers(inputs, width, wanted[-1], activation, weights, **network), start=1):
        if layer == wanted[k]:
            out.append(_vni.vni(x))
            k += 1
            if k == len(wanted) or (threshold is not None and out[-1] >= threshold):
                break
    return np.array(out)


def depth_grid(max_depth: int, ratio: float = 1.05) -> NDArray[np.int64]:
    """Integer depths ``1, ..., max_depth``, spaced (after the first few) by about the factor ``ratio``.

    ``d_{k+1} = max(d_k + 1, round(d_k * ratio))``, ending exactly at ``max_depth``: a depth located on
    this grid is known to within the factor ``ratio``.

    Raises
    ------
    ValueError
        ``max_depth < 1`` or ``ratio <= 1``.
    """
    top = _check_int("max_depth", max_depth)
    r = _check_positive("ratio", ratio)
    if r <= 1:
        raise ValueError(f"ratio must be > 1, got {ratio!r}")
    out = [1]
    while out[-1] < top:
        out.append(min(top, max(out[-1] + 1, int(round(out[-1] * r)))))
    return np.array(out, dtype=np.int64)


def crossing_depth(depths: ArrayLike, r_sq: ArrayLike, threshold: float) -> tuple[int, int] | None:
    """Bracket ``(lower, upper)`` of the first depth at which ``R_sq`` reaches ``threshold``; ``None`` if it never does.

    ``upper`` is the first entry of ``depths`` with ``r_sq >= threshold``, ``lower`` one more than the entry
    before it (1 for the first): the first *layer* at which ``R_sq >= threshold`` lies in ``[lower, upper]``
    provided ``R_sq`` stays below the threshold between the listed depths before ``upper``.  The criterion
    the book chooses for the "maximum depth for representation power" of Chang (2019), Table 3.1.

    Parameters
    ----------
    depths : array_like of int
        Strictly increasing.
    r_sq : array_like
        ``R_sq`` at ``depths[:len(r_sq)]`` (a profile cut short by :func:`vni_profile` is accepted).
    threshold : float

    Raises
    ------
    ValueError
        ``depths`` not strictly increasing integers, ``r_sq`` longer than ``depths`` or not finite.
    """
    d = _check_depths([int(v) if float(v).is_integer() else v for v in np.asarray(depths).tolist()])
    r = np.asarray(r_sq, dtype=float).ravel()
    if r.size > len(d):
        raise ValueError(f"r_sq has {r.size} values for {len(d)} depths")
    if not np.all(np.isfinite(r)):
        raise ValueError("r_sq must be finite")
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    hits = np.flatnonzero(r >= t)
    if hits.size == 0:
        return None
    k = int(hits[0])
    return (d[k - 1] + 1 if k > 0 else 1), d[k]


def _check_map(rho2: Any) -> NDArray[np.float64]:
    arr = np.asarray(rho2, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2:
        raise ValueError(f"rho2 must be a square (N, N) matrix with N >= 2, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError("rho2 must hold finite values in [0, 1]")
    if not np.allclose(arr, arr.T, rtol=0, atol=1e-12):
        raise ValueError("rho2 must be symmetric")
    return arr


def cluster_order(rho2: Any) -> NDArray[np.int64]:
    """A node order that puts correlated nodes next to each other, as in Chang (2019), Fig. 3.3.

    The thesis "rearrange[s] the node index to cluster the correlated nodes" without saying how (our
    choice): the leaf order of average-linkage hierarchical clustering
    (:func:`scipy.cluster.hierarchy.linkage`) with the distance ``1 - rho_ij**2``, with the leaves of each
    merge ordered so that neighbouring leaves are as close as possible (``optimal_ordering``).

    Parameters
    ----------
    rho2 : array_like, shape (N, N)
        Squared correlation coefficients (:func:`signalprop.vni.squared_correlations`).

    Returns
    -------
    ndarray of int, shape (N,)
        A permutation: ``rho2[np.ix_(order, order)]`` is the clustered map.

    Raises
    ------
    ValueError
        ``rho2`` not square, smaller than 2 x 2, not symmetric, or with values outside ``[0, 1]``.
    """
    arr = _check_map(rho2)
    dist = 1.0 - arr
    np.fill_diagonal(dist, 0.0)
    dist = np.maximum((dist + dist.T) / 2, 0.0)
    tree = hierarchy.linkage(squareform(dist, checks=False), method="average", optimal_ordering=True)
    return hierarchy.leaves_list(tree).astype(np.int64)


def mean_offdiagonal(rho2: Any) -> float:
    """Mean of ``rho_ij**2`` over the ``N (N - 1)`` pairs ``i != j``: the unweighted summary of a Fig. 3.3 map.

    Unlike ``R_sq`` (eq. (3.4)), every pair has the same weight and the diagonal is left out, so it is 0
    (not ``1/N``) for uncorrelated nodes.

    Raises
    ------
    ValueError
        As :func:`cluster_order`.
    """
    arr = _check_map(rho2)
    n = arr.shape[0]
    return float((arr.sum() - np.trace(arr)) / (n * (n - 1)))
