"""Back-propagation of given output gradients: the synthetic training of Chang (2019), Fig. 3.6.

The thesis (section 3.2) trains a network without a loss function: inputs ``x_0`` and the
gradients ``G = dCost/dx_L`` of the output layer are both drawn from ``N(0, sigma_x**2)``, and
plain SGD updates every weight with the gradient that back-propagation of ``G`` gives.  This is the
gradient of the linear cost ``Cost = sum_m sum_i x_L[m, i] G[m, i]`` (summed over the ``M``
inputs of the batch and the ``N`` output nodes), for which ``dCost/dx_L = G`` exactly.
Whether the thesis divides by the batch size is not stated; ``reduction="sum"`` (the plain
back-propagation of the given gradients, no ``1/M``) is our default, ``"mean"`` divides by ``M``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from signalprop.fcnet import FCNet

__all__ = ["REDUCTIONS", "output_gradient_step"]

#: How the per-input gradients of a batch are combined.
REDUCTIONS = ("sum", "mean")


def output_gradient_step(
    net: FCNet, x: torch.Tensor, grad_output: torch.Tensor, lr: float, *, reduction: str = "sum"
) -> float:
    """One SGD step of ``net`` that back-propagates the output gradients ``grad_output``.

    Every parameter ``p`` (weights and biases of the hidden layers, and of the readout if the
    network has one) becomes ``p - lr * dCost/dp`` with ``Cost = sum_(m,i) y[m, i] G[m, i]``
    (``reduction="sum"``) or that sum divided by the batch size ``M`` (``"mean"``), where
    ``y = net(x)`` is the output and ``G = grad_output``; so ``dCost/dy = G`` (or ``G / M``), as in
    the synthetic back-propagation of Chang (2019), section 3.2 and Fig. 3.6.  Gradients are
    computed with autograd on a fresh graph; the network's ``.grad`` fields are left as ``None``.

    Parameters
    ----------
    net : FCNet
        Updated in place.
    x : torch.Tensor, shape (M, in_features)
        The batch of inputs ``x_0``.
    grad_output : torch.Tensor, shape (M, out)
        ``dCost/dy`` for every input and output node (``out`` is the width, or ``out_features``
        with a readout).
    lr : float
        Learning rate, > 0.
    reduction : {"sum", "mean"}
        ``"sum"``: back-propagate ``G`` as given; ``"mean"``: back-propagate ``G / M``.

    Returns
    -------
    float
        ``Cost`` before the step (``sum(y * G)``, divided by ``M`` for ``"mean"``).

    Raises
    ------
    ValueError
        ``net`` not an :class:`~signalprop.fcnet.FCNet`; ``x`` or ``grad_output`` not a 2-D
        tensor of the right shape, or not finite; ``lr`` not a finite positive number; an unknown
        ``reduction``.
    """
    if not isinstance(net, FCNet):
        raise ValueError(f"net must be an FCNet, got {type(net).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    lr = _check_lr(lr)
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != net.in_features or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (M >= 1, {net.in_features}), got {shape}")
    out = net.out_features if net.readout is not None else net.width
    if not isinstance(grad_output, torch.Tensor) or tuple(grad_output.shape) != (x.shape[0], out):
        shape = tuple(grad_output.shape) if isinstance(grad_output, torch.Tensor) else type(grad_output).__name__
        raise ValueError(f"grad_output must be a tensor of shape ({x.shape[0]}, {out}), got {shape}")
    if not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(grad_output).all()):
        raise ValueError("x and grad_output must be finite")
    params = [p for p in net.parameters() if p.requires_grad]
    dtype = params[0].dtype
    with torch.enable_grad():
        y = net(x.to(dtype))
        cost = (y * grad_output.to(dtype)).sum()
        if reduction == "mean":
            cost = cost / x.shape[0]
        grads = torch.autograd.grad(cost, params)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.sub_(lr * g)
    return float(cost.detach())


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    return value
