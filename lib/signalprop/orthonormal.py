"""Orthonormal filters: initialisation, regulariser and filter correlation.

Xie, Xiong & Pu (2017), "All You Need is Beyond a Good Init", §3.2, §4 and §5.2.  A convolution
weight ``W~_l`` is read as a matrix ``W_l`` of shape ``(f_in, f_out)``, ``f_in = C kh kw`` (the
input channels times the kernel's height and width) and ``f_out = M`` (the output channels): each
column is one filter.  PyTorch stores the weight as ``(M, C, kh, kw)``, so
``W = weight.reshape(M, -1).T`` (:func:`to_matrix`, :func:`from_matrix`); a fully connected weight
``(out, in)`` is the case ``kh = kw = 1``.

* Orthonormal initialisation (§4): random Gaussian vectors made orthonormal by Gram-Schmidt, so
  that ``W^T W = I`` (unit-norm, mutually orthogonal filters).
* Group-wise orthogonalisation (§4): ``f_out > f_in`` orthonormal vectors in ``R^{f_in}`` cannot
  exist.  The paper divides the filters into "f_out/f_in + f_out mod f_in groups" and
  orthonormalises each group independently.  Read literally that count is odd (``f_in = 64``,
  ``f_out = 100`` would give 1 + 36 = 37 groups for 100 filters); **our reading** is
  ``ceil(f_out / f_in)`` groups of consecutive filters, each of ``f_in`` filters except perhaps
  the last (``f_out mod f_in`` filters), which is what the literal formula gives when ``f_in``
  divides ``f_out`` (:func:`groups`).
* The orthonormal regulariser, eq. (3): ``(lambda/2) sum_l ||W_l^T W_l - I||_F**2`` and its gradient
  ``2 lambda W_l (W_l^T W_l - I)``.  For a grouped layer (``f_in < f_out``) **our choice** is to sum
  the penalty over the groups, ``sum_g ||W_g^T W_g - I||_F**2``, so that the regulariser's minimum is
  the grouped initialisation (the paper does not say; the whole-layer penalty could not reach zero).
* The filter-correlation statistic, eq. (8): the mean over layers and pairs of filters of the
  signed cosine between them.  The printed sum starts at ``j = i``, which would add the self-pairs
  (cosine 1) to the average; **our reading** counts distinct pairs ``j > i`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike

__all__ = [
    "to_matrix",
    "from_matrix",
    "groups",
    "paper_group_count",
    "orthonormal_matrix",
    "orthonormal_kernel",
    "orthonormal_",
    "penalty",
    "penalty_grad",
    "filter_correlation",
]

Weights = torch.Tensor | ArrayLike


def _as_weight(weight: Weights, name: str = "weight") -> torch.Tensor:
    """A finite real tensor with at least 2 dimensions (floating point; NumPy input becomes float64)."""
    if not isinstance(weight, torch.Tensor):
        try:
            weight = torch.as_tensor(np.asarray(weight, dtype=float))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a real array: {exc}") from None
    if not torch.is_floating_point(weight):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {weight.dtype}")
    if weight.ndim < 2:
        raise ValueError(
            f"{name} must have shape (M, C, kh, kw) (conv) or (out, in) (fully connected), got shape "
            f"{tuple(weight.shape)}"
        )
    if weight.numel() == 0:
        raise ValueError(f"{name} is empty, shape {tuple(weight.shape)}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError(f"{name} must be finite")
    return weight


def _as_layers(weights: Weights | Sequence[Weights]) -> list[torch.Tensor]:
    """One weight or a sequence of weights (the layers ``l = 1..D``) as a list of tensors."""
    if isinstance(weights, torch.Tensor | np.ndarray):
        return [_as_weight(weights)]
    if isinstance(weights, Sequence) and not isinstance(weights, str):
        if len(weights) == 0:
            raise ValueError("weights is an empty sequence: give at least one layer")
        if all(isinstance(w, torch.Tensor | np.ndarray) for w in weights):
            return [_as_weight(w, f"weights[{i}]") for i, w in enumerate(weights)]
    return [_as_weight(weights)]


# --- reshaping --------------------------------------------------------------------------------------------------------


def to_matrix(weight: Weights) -> torch.Tensor:
    """The ``(f_in, f_out)`` matrix ``W_l`` of a weight: Xie et al. (2017), §3.2.

    ``weight`` has PyTorch's layout ``(M, C, kh, kw)`` (or ``(out, in)`` for a fully connected layer,
    or any ``(M, ...)``); column ``j`` of the result is filter ``j`` flattened,
    ``W = weight.reshape(M, -1).T`` with ``f_in = C kh kw`` and ``f_out = M``.  The result is a view
    of ``weight`` where possible, so gradients flow through it.

    Raises
    ------
    ValueError
        ``weight`` has fewer than 2 dimensions, is empty, not floating point or not finite.
    """
    w = _as_weight(weight)
    return w.reshape(w.shape[0], -1).T


def from_matrix(matrix: Weights, shape: Sequence[int]) -> torch.Tensor:
    """The inverse of :func:`to_matrix`: the ``(f_in, f_out)`` matrix back in the weight layout ``shape``.

    Raises
    ------
    ValueError
        ``matrix`` not 2-D, or its shape is not ``(prod(shape[1:]), shape[0])``.
    """
    mat = _as_weight(matrix, "matrix")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must have at least 2 positive sizes, got {shape}")
    f_in, f_out = math.prod(shape[1:]), shape[0]
    if mat.ndim != 2 or tuple(mat.shape) != (f_in, f_out):
        raise ValueError(f"a weight of shape {shape} needs a matrix of shape ({f_in}, {f_out}), got "
                         f"{tuple(mat.shape)}")
    return mat.T.reshape(shape)


# --- groups -----------------------------------------------------------------------------------------------------------


def _check_fans(f_in: int, f_out: int) -> tuple[int, int]:
    for name, val in (("f_in", f_in), ("f_out", f_out)):
        if isinstance(val, bool) or int(val) != val or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    return int(f_in), int(f_out)


def groups(f_in: int, f_out: int) -> list[slice]:
    """The groups of filters (columns of ``W``) that are orthonormalised together: our reading of §4.

    One group ``[0, f_out)`` when ``f_in >= f_out``.  Otherwise ``ceil(f_out / f_in)`` groups of
    consecutive filters, ``[0, f_in), [f_in, 2 f_in), ...``, the last holding the remaining
    ``f_out - f_in (ceil(f_out / f_in) - 1)`` filters.  The paper's printed count,
    ``f_out/f_in + f_out mod f_in`` (:func:`paper_group_count`), agrees when ``f_in`` divides
    ``f_out``.

    Raises
    ------
    ValueError
        ``f_in`` or ``f_out`` not a positive integer.
    """
    f_in, f_out = _check_fans(f_in, f_out)
    return [slice(start, min(start + f_in, f_out)) for start in range(0, f_out, f_in)]


def paper_group_count(f_in: int, f_out: int) -> int:
    """The number of groups as printed in Xie et al. (2017), §4, ``f_out/f_in + f_out mod f_in``, for ``f_in < f_out``.

    With integer division; it equals ``len(groups(f_in, f_out))`` only when ``f_in`` divides
    ``f_out``.  Kept to document the discrepancy; the library uses :func:`groups`.

    Raises
    ------
    ValueError
        ``f_in`` or ``f_out`` not a positive integer, or ``f_in >= f_out`` (no grouping needed).
    """
    f_in, f_out = _check_fans(f_in, f_out)
    if f_in >= f_out:
        raise ValueError(f"the paper groups filters only when f_in < f_out, got f_in={f_in}, f_out={f_out}")
    return f_out // f_in + f_out % f_in


# --- initialisation --------------------------------------------------------------------------------------------------


def orthonormal_matrix(
    f_in: int,
    f_out: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A random ``(f_in, f_out)`` matrix whose columns are orthonormal within each group: Xie et al. (2017), §4.

    For each group of :func:`groups` (one group when ``f_in >= f_out``), ``n`` independent standard
    Gaussian vectors in ``R^{f_in}`` are orthonormalised in order, as the Gram-Schmidt process does:
    column ``j`` is the unit vector along the part of Gaussian vector ``j`` orthogonal to the
    columns before it.  It is computed as the ``Q`` factor of a QR decomposition with the signs fixed
    so that ``diag(R) > 0``, which is the same matrix as classical Gram-Schmidt in exact arithmetic
    and orthonormal to rounding error in floating point.  The law of each group is then the Haar
    (uniform) law on the Stiefel manifold of ``n`` orthonormal vectors; the paper does not name the law
    of its starting vectors, Gaussian is our choice.  Within a group ``W_g^T W_g = I``; different
    groups are independent.

    Filters have unit norm, so each entry has variance ``1/f_in`` (not He's ``2/f_in``).

    Parameters
    ----------
    f_in, f_out : int
        Fan-in (length of a filter) and fan-out (number of filters).
    generator : torch.Generator, optional
        Source of the Gaussian vectors, for reproducibility.
    dtype : torch.dtype
        Of the result (computed in float64).

    Raises
    ------
    ValueError
        ``f_in`` or ``f_out`` not a positive integer, or ``dtype`` not floating point.
    """
    f_in, f_out = _check_fans(f_in, f_out)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    out = torch.empty((f_in, f_out), dtype=torch.float64)
    for g in groups(f_in, f_out):
        n = g.stop - g.start
        a = torch.randn((f_in, n), generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(a)  # reduced: q is (f_in, n)
        signs = torch.sign(torch.diagonal(r))
        signs[signs == 0] = 1.0
        out[:, g] = q * signs
    return out.to(dtype)


def orthonormal_kernel(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A weight of PyTorch layout ``shape = (M, C, kh, kw)`` (or ``(out, in)``) with orthonormal filters.

    ``from_matrix(orthonormal_matrix(C kh kw, M), shape)``: Xie et al. (2017), §4, grouped when
    ``C kh kw < M`` (:func:`groups`).

    Raises
    ------
    ValueError
        ``shape`` has fewer than 2 sizes or a size below 1, or ``dtype`` not floating point.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must have at least 2 positive sizes, got {shape}")
    mat = orthonormal_matrix(math.prod(shape[1:]), shape[0], generator=generator, dtype=dtype)
    return from_matrix(mat, shape).contiguous()


def orthonormal_(weight: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` in place with orthonormal filters (:func:`orthonormal_kernel`), like ``torch.nn.init``.

    Raises
    ------
    ValueError
        ``weight`` not a floating-point tensor with at least 2 dimensions.
    """
    if not isinstance(weight, torch.Tensor) or not torch.is_floating_point(weight) or weight.ndim < 2:
        raise ValueError("weight must be a floating-point tensor of shape (M, C, kh, kw) or (out, in)")
    with torch.no_grad():
        weight.copy_(orthonormal_kernel(tuple(weight.shape), generator=generator, dtype=weight.dtype))
    return weight


# --- regulariser, eq. (3) ---------------------------------------------------------------------------------------------


def _check_lam(lam: float) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam must be a number >= 0, got {lam!r}") from None
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    return lam


def penalty(weights: Weights | Sequence[Weights], lam: float = 1e-4, *, grouped: bool = True) -> torch.Tensor:
    """The orthonormal regulariser ``(lambda/2) sum_l ||W_l^T W_l - I||_F**2``: Xie et al. (2017), eq. (3).

    ``W_l = to_matrix(weight_l)`` is ``(f_in, f_out)`` and ``I`` the ``f_out x f_out`` identity.  With
    ``grouped=True`` (our default, see the module notes) a layer with ``f_in < f_out`` contributes
    ``sum_g ||W_g^T W_g - I||_F**2`` over its groups of filters (:func:`groups`), which is zero for the
    grouped initialisation; ``grouped=False`` uses the whole matrix, as printed.  The result is a
    0-d tensor that autograd can differentiate.

    Parameters
    ----------
    weights : tensor or sequence of tensors
        The weights of the layers ``l = 1..D``, each ``(M, C, kh, kw)`` or ``(out, in)``.
    lam : float
        The coefficient ``lambda >= 0`` (the paper uses it "as weight decay"; 1e-4 in its CIFAR runs).
    grouped : bool
        Whether to penalise groups separately when ``f_in < f_out``.

    Raises
    ------
    ValueError
        A bad weight (see :func:`to_matrix`), an empty sequence, or ``lam`` negative or not finite.
    """
    lam = _check_lam(lam)
    total = None
    for w in _as_layers(weights):
        mat = to_matrix(w)
        f_in, f_out = mat.shape
        for g in groups(f_in, f_out) if grouped else [slice(0, f_out)]:
            wg = mat[:, g]
            gram = wg.T @ wg
            term = torch.sum((gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)) ** 2)
            total = term if total is None else total + term
    return 0.5 * lam * total


def penalty_grad(weight: Weights, lam: float = 1e-4, *, grouped: bool = True) -> torch.Tensor:
    """The gradient of :func:`penalty` with respect to one layer's weight, in the weight's layout.

    ``d/dW [(lambda/2) ||W^T W - I||_F**2] = 2 lambda W (W^T W - I)`` (with ``W^T W - I``
    symmetric), applied group by group when ``grouped`` and ``f_in < f_out``, then reshaped back to
    the layout of ``weight`` (:func:`from_matrix`).

    Raises
    ------
    ValueError
        As :func:`penalty`.
    """
    lam = _check_lam(lam)
    w = _as_weight(weight)
    mat = to_matrix(w).detach()
    f_in, f_out = mat.shape
    grad = torch.empty_like(mat)
    for g in groups(f_in, f_out) if grouped else [slice(0, f_out)]:
        wg = mat[:, g]
        grad[:, g] = 2.0 * lam * wg @ (wg.T @ wg - torch.eye(wg.shape[1], dtype=wg.dtype, device=wg.device))
    return from_matrix(grad, tuple(w.shape))


# --- filter correlation, eq. (8) -------------------------------------------------------------------------------------


def filter_correlation(weights: Weights | Sequence[Weights]) -> float:
    """The average signed cosine between distinct filters of each layer: Xie et al. (2017), eq. (8).

    ``s = (1/N) sum_l sum_{i < j} cos(v_i^(l), v_j^(l))`` with ``v_i^(l)`` the ``i``-th column of
    ``W_l = to_matrix(weight_l)`` and ``N`` the number of terms, ``sum_l f_out(f_out - 1)/2``.  The
    paper calls ``D_cos`` a cosine distance but plots signed values near zero ("we allow negative
    correlations"), so it is the cosine similarity, not one minus it.  The printed inner sum starts
    at ``j = i``; we leave out the self-pairs (cosine 1), which would only add a constant that
    depends on ``f_out``.

    Parameters
    ----------
    weights : tensor or sequence of tensors
        The weights of the layers, each ``(M, C, kh, kw)`` or ``(out, in)``.

    Raises
    ------
    ValueError
        A bad weight, an empty sequence, no pair of filters in any layer (every ``f_out = 1``),
        or a filter of norm zero (its cosine is undefined).
    """
    num, count = 0.0, 0
    for w in _as_layers(weights):
        mat = to_matrix(w).detach().to(torch.float64)
        norms = torch.linalg.vector_norm(mat, dim=0)
        if bool((norms == 0).any()):
            raise ValueError("a filter has norm zero: its cosine with the other filters is undefined")
        unit = mat / norms
        cos = unit.T @ unit
        f_out = cos.shape[0]
        iu = torch.triu_indices(f_out, f_out, offset=1)
        num += float(cos[iu[0], iu[1]].sum())
        count += f_out * (f_out - 1) // 2
    if count == 0:
        raise ValueError("no layer has two filters: the filter correlation (eq. (8)) is undefined")
    return num / count
