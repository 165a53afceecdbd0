"""The zero spatial frequency of a deep block: what a pooled read-out sees of it.

A circular convolution maps a spatially constant image to a spatially constant image, its
``c`` channels mixed by the sum of the kernel's taps, ``M = sum_t W_t`` (the Fourier mode
``p = 0`` of the circular convolution of Xiao et al. (2018), eq. (2.1)).  No other
spatial frequency feeds the constant one.  At the critical point ``q* = 1 / L`` the
pre-activations of a tanh block are small, so the spatial mean of the block's output, the
pooled features a global-average-pooling read-out sees, is to first order the product
``M^L ... M^1`` applied to the spatial mean of the block's input, plus terms that are the same
for every image (the biases).  The modes ``p != 0``, on which the spatial variance profile of
the kernels acts (uniform against delta), enter the pooled features only through the tanh's
curvature.

This module computes the zero-mode matrices of a block (:func:`zero_mode_matrices`), the pooled
features of a :class:`signalprop.models.VanillaCNN` beside their zero-mode linear prediction
(:func:`pooled_and_zero_mode_prediction`), and the share of the image-dependent pooled variance
the prediction leaves unexplained (:func:`unexplained_fraction`).  The chapter
``xiao2018/generalisation_depth`` derives and uses it.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

__all__ = ["pooled_and_zero_mode_prediction", "unexplained_fraction", "zero_mode_matrices"]


def zero_mode_matrices(weight: torch.Tensor | ArrayLike) -> NDArray[np.float64]:
    """The ``c_out x c_in`` matrices ``M^l = sum_taps W^l_t`` by which a block's layers map constant images.

    Parameters
    ----------
    weight : tensor or array
        Kernels ``(depth, c_out, c_in, k, k)`` (the layout of
        :meth:`signalprop.models.VanillaCNN.deep_parameters`) or one kernel ``(c_out, c_in, k, k)``.

    Returns
    -------
    ndarray
        ``(depth, c_out, c_in)`` (or ``(c_out, c_in)`` for one kernel), float64.

    Raises
    ------
    ValueError
        ``weight`` is not 4- or 5-dimensional, has no taps, or is not finite.
    """
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, float)
    if w.ndim not in (4, 5) or w.shape[-1] < 1 or w.shape[-2] < 1:
        raise ValueError(f"weight must have shape (depth, c_out, c_in, k, k) or (c_out, c_in, k, k), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight must be finite")
    return w.sum(axis=(-2, -1))


def pooled_and_zero_mode_prediction(model: torch.nn.Module, x: torch.Tensor) -> tuple[NDArray, NDArray]:
    """The pooled features of ``model`` on images ``x`` and their zero-mode linear prediction.

    The prediction is ``M^L ... M^1 s`` (:func:`zero_mode_matrices` of the deep block), ``s`` being
    the spatial mean of the stem's output, with the biases and the tanh of the block left out:
    it is meant to be compared after centring over images (:func:`unexplained_fraction`).

    Parameters
    ----------
    model : signalprop.models.VanillaCNN
        A network with a deep block (``depth >= 1``).
    x : tensor
        Images ``(batch, in_channels, image_size, image_size)``, in the model's dtype.

    Returns
    -------
    pooled, predicted : ndarray
        ``(batch, c)`` each, float64.

    Raises
    ------
    ValueError
        ``model`` has no deep block or no stem, or ``x`` has the wrong shape.
    """
    if not hasattr(model, "deep_parameters") or not hasattr(model, "stem"):
        raise ValueError(f"model must be a signalprop.models.VanillaCNN, got {type(model).__name__}")
    params = model.deep_parameters()
    if params is None:
        raise ValueError("the model has no deep block (depth 0)")
    mats = zero_mode_matrices(params[0])
    with torch.no_grad():
        pooled = model.features(x).double().cpu().numpy()
        h = x
        for conv in model.stem:
            h = torch.tanh(conv(h))
        s = h.mean(dim=(2, 3)).double().cpu().numpy()
    for m in mats:
        s = s @ m.T
    return pooled, s


def unexplained_fraction(pooled: ArrayLike, predicted: ArrayLike) -> float:
    """The share of the image-dependent variance of ``pooled`` that ``predicted`` does not explain.

    Both are centred over images (rows); then ``1 - <P, Q>^2 / (|P|^2 |Q|^2)`` (Frobenius inner
    product), which is the residual ``min_a |P - a Q|^2 / |P|^2`` of the best single gain ``a``.
    0 when the prediction is exact up to a gain, 1 when it is orthogonal to the truth.

    Raises
    ------
    ValueError
        Shapes differ or are not ``(n, c)`` with ``n >= 2``, values not finite, or either matrix has no
        variance across rows.
    """
    p, q = np.asarray(pooled, float), np.asarray(predicted, float)
    if p.ndim != 2 or p.shape != q.shape or p.shape[0] < 2:
        raise ValueError(f"pooled and predicted must both be (n >= 2, c), got {p.shape} and {q.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise ValueError("pooled and predicted must be finite")
    p = p - p.mean(axis=0)
    q = q - q.mean(axis=0)
    pp, qq = float(np.sum(p * p)), float(np.sum(q * q))
    if pp == 0.0 or qq == 0.0:
        raise ValueError("pooled and predicted must vary across images")
    return float(max(0.0, 1.0 - float(np.sum(p * q)) ** 2 / (pp * qq)))
