"""A training parameterisation for very deep critical tanh CNNs: read-out scale and per-group learning rates.

The paper trains its deep networks without stating its optimiser's settings.  The
authors' demo uses one learning rate for every parameter.  In a deep block close to
isometry that rate is too large for the block by a factor that grows with depth:
this module holds the rules derived in the chapter ``xiao2018/depth_ladder`` and the
measurements that check them.

Read-out scale
    At the critical point ``q* = 1 / L`` the pooled features ``p`` entering the read-out
    have a mean square of order ``q*``, so logits and the read-out's gradient are small.
    A fixed multiplier ``G = 1 / rms(p)`` (measured at initialisation on calibration
    images, :func:`readout_scale`) gives the read-out features of unit mean square;
    the model applies it as ``logits = readout(G p)``
    (:class:`signalprop.models.VanillaCNN`, ``readout_scale``).

Per-group rates
    For one logit ``f = G u . p_L + b`` of a block of ``L`` layers whose Jacobian is
    close to orthogonal (Delta-Orthogonal kernels, ``tanh' ~ 1``), the back-propagated
    signal reaching layer ``l`` is ``G u / (H W)`` at every position, so the gradient
    of the ``k x k`` kernel of layer ``l`` has the same value ``G u p_l^T`` at each of
    its ``k^2`` taps, ``p_l`` being the pooled input of that layer.  Summing the
    squared gradients (the neural tangent kernel's diagonal, per parameter group):

    * read-out weights: ``Theta_R = G^2 |p_L|^2``;
    * block kernels: ``Theta_W = k^2 G^2 |u|^2 sum_l |p_l|^2``, which is ``k^2 L |u|^2`` when
      every layer's pooled input has the read-out's mean square ``|p_l|^2 = |p_L|^2 = c / G^2``;
    * block biases: ``Theta_b = L G^2 |u|^2``

    (:func:`linear_ntk_prediction`; measured by :func:`group_ntk_traces`).  A
    gradient step of rate ``eta_g`` on group ``g`` changes ``f`` by
    ``eta_g Theta_g dloss/df``.  Asking the block's kernels to move the logits as
    much as the read-out gives ``eta_W = eta_R Theta_R / Theta_W = eta_R / (k^2 L |u|^2)``,
    with ``|u|^2 ~ 1`` for read-out rows drawn with variance ``1 / c``
    (:func:`depth_scaled_rates`).  The same argument for the biases gives
    ``eta_b = eta_R |p_L|^2 / (L |u|^2)``, which is ``eta_R c / (L G^2)``: below
    ``1e-4 eta_R`` for every depth of the book, so the rule freezes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from signalprop.layers import circular_pad

__all__ = [
    "GROUPS",
    "CALIBRATION_IMAGES",
    "readout_scale",
    "depth_scaled_rates",
    "VARIANTS",
    "variant_rates",
    "check_group_rates",
    "group_ntk_traces",
    "linear_ntk_prediction",
    "relative_change",
]

#: Parameter groups of :meth:`signalprop.models.VanillaCNN.parameter_groups`, in order.
GROUPS = ("stem", "block_weight", "block_bias", "readout")
#: Training images (the first ones of the training set) on which ``readout_scale="auto"`` is measured.
CALIBRATION_IMAGES = 512


def _check_images(model: nn.Module, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"x must be a (batch, channels, height, width) tensor with batch >= 1, got {x!r:.80}")
    if not hasattr(model, "features"):
        raise ValueError(f"{type(model).__name__} has no features() method (a VanillaCNN is expected)")
    return x


def readout_scale(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> float:
    """The read-out scale ``G = 1 / sqrt(mean(p^2))`` of ``model`` on images ``x``.

    ``p`` are the pooled features entering the read-out (``model.features(x)``,
    before any scale), the mean runs over images and channels.  The chapter
    ``xiao2018/depth_ladder`` derives why: it gives the read-out features of unit
    mean square whatever the depth.

    Parameters
    ----------
    model : VanillaCNN
        At initialisation.
    x : torch.Tensor
        ``(n, in_channels, H, W)`` calibration images, cast to the model's dtype and device.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        ``x`` not a batch of images, a model without ``features``, ``batch_size < 1``,
        or features that are all zero or not finite.
    """
    x = _check_images(model, x)
    if not isinstance(batch_size, Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    param = next(model.parameters())
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            p = model.features(x[start : start + batch_size].to(param.device, param.dtype)).double()
            total += float((p**2).sum())
            count += p.numel()
    ms = total / count
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError(f"the pooled features have mean square {ms!r}: no read-out scale")
    return 1.0 / math.sqrt(ms)


def depth_scaled_rates(depth: int, base_lr: float, kernel_size: int = 3) -> dict[str, float]:
    """Per-group learning rates of the depth-scaled parameterisation (module docstring).

    ``stem`` and ``readout`` keep ``base_lr``; the block's kernels get
    ``base_lr / (kernel_size^2 depth)``; the block's biases are frozen (rate 0).

    Parameters
    ----------
    depth : int
        Number of deep-block layers, ``>= 0`` (``0``: the block rates are 0, there is no block).
    base_lr : float
        ``> 0``: the rate of the read-out and the stem.
    kernel_size : int
        Odd, ``>= 1``.

    Returns
    -------
    dict
        ``{"stem", "block_weight", "block_bias", "readout"}`` -> rate.

    Raises
    ------
    ValueError
        Invalid arguments.
    """
    if not isinstance(depth, Integral) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    if not isinstance(base_lr, Real) or isinstance(base_lr, bool) or not (math.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr must be a finite number > 0, got {base_lr!r}")
    if (
        not isinstance(kernel_size, Integral)
        or isinstance(kernel_size, bool)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    block = float(base_lr) / (kernel_size**2 * depth) if depth > 0 else 0.0
    return {"stem": float(base_lr), "block_weight": block, "block_bias": 0.0, "readout": float(base_lr)}


#: Training variants of a deep configuration: the network and its frozen-block control.
VARIANTS = ("trained", "frozen")


def variant_rates(depth: int, base_lr: float, variant: str, kernel_size: int = 3) -> dict[str, float]:
    """Per-group rates of ``variant`` of a network with a ``depth``-layer block.

    ``"trained"`` is :func:`depth_scaled_rates`; ``"frozen"`` is the control that
    trains only the stem and the read-out: the same rates with the block's kernels
    frozen as well (its biases already are).  The gap between the two measures
    what the deep block learns.

    Parameters
    ----------
    depth, base_lr, kernel_size
        As for :func:`depth_scaled_rates`.
    variant : str
        One of :data:`VARIANTS`.

    Returns
    -------
    dict
        ``{"stem", "block_weight", "block_bias", "readout"}`` -> rate.

    Raises
    ------
    ValueError
        An unknown variant, or invalid arguments of :func:`depth_scaled_rates`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    out = depth_scaled_rates(depth, base_lr, kernel_size)
    if variant == "frozen":
        out["block_weight"] = 0.0
    return out


def check_group_rates(rates: Any) -> dict[str, float]:
    """``rates`` as a dict over exactly :data:`GROUPS` of finite numbers ``>= 0`` (0 freezes a group).

    Raises
    ------
    ValueError
        Not a mapping, missing or unknown groups, or a negative, infinite or non-numeric rate.
    """
    if not isinstance(rates, Mapping):
        raise ValueError(f"group learning rates must be a mapping over {GROUPS}, got {rates!r}")
    if set(rates) != set(GROUPS):
        raise ValueError(f"group learning rates must name exactly the groups {GROUPS}, got {sorted(rates)}")
    out = {}
    for g in GROUPS:
        r = rates[g]
        if isinstance(r, bool) or not isinstance(r, Real) or not math.isfinite(r) or r < 0:
            raise ValueError(f"the learning rate of group {g!r} must be a finite number >= 0, got {r!r}")
        out[g] = float(r)
    return out


def _groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    if not hasattr(model, "parameter_groups"):
        raise ValueError(f"{type(model).__name__} has no parameter_groups() method (a VanillaCNN is expected)")
    return model.parameter_groups()


def group_ntk_traces(model: nn.Module, x: torch.Tensor, logit: int = 0) -> dict[str, float]:
    """Per-group diagonal of the empirical neural tangent kernel: ``mean_x |d f(x) / d theta_g|^2``.

    ``f`` is logit number ``logit`` of ``model``; the mean runs over the images
    ``x`` (one backward pass each).  Parameters that do not require a gradient
    count as well (the trace describes the model, not an optimiser).

    Returns
    -------
    dict
        Group name (:data:`GROUPS`) -> trace; a group without parameters gives 0.

    Raises
    ------
    ValueError
        Bad images, a model without ``parameter_groups``, or ``logit`` out of range.
    """
    x = _check_images(model, x)
    groups = _groups(model)
    param = next(model.parameters())
    flags = {p: p.requires_grad for ps in groups.values() for p in ps}
    out = dict.fromkeys(groups, 0.0)
    try:
        for p in flags:
            p.requires_grad_(True)
        for i in range(x.shape[0]):
            logits = model(x[i : i + 1].to(param.device, param.dtype))
            if not isinstance(logit, Integral) or isinstance(logit, bool) or not 0 <= logit < logits.shape[1]:
                raise ValueError(f"logit must be an integer in [0, {logits.shape[1]}), got {logit!r}")
            names = [g for g, ps in groups.items() for _ in ps]
            grads = torch.autograd.grad(logits[0, logit], [p for ps in groups.values() for p in ps])
            for g, gr in zip(names, grads, strict=True):  # one backward pass (the fused block allows one)
                out[g] += float((gr.double() ** 2).sum())
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return {g: v / x.shape[0] for g, v in out.items()}


def linear_ntk_prediction(model: nn.Module, x: torch.Tensor, logit: int = 0) -> dict[str, float]:
    """The near-isometric prediction of :func:`group_ntk_traces` for the deep block and the read-out.

    With ``G`` the model's read-out scale, ``u`` row ``logit`` of the read-out
    weights, ``k`` the kernel size, ``L`` the depth, ``p_l`` the pooled input of
    block layer ``l`` (``p_L`` the block's pooled output; module docstring) and
    ``Pi_l = sigma_w^-2 prod_{j > l} chi_j`` the mean-field gain of the squared
    back-propagated signal between the block's output and layer ``l``, with
    ``chi_j = sigma_w^2 E[tanh'(z_j)^2]`` measured on ``x`` for the pre-activations
    ``z_{l+1}, ..., z_L`` that layers ``l, ..., L - 1`` produce:
    ``block_weight = k^2 G^2 |u|^2 sum_l |p_l|^2 Pi_l``, ``block_bias = G^2 |u|^2 sum_l Pi_l``
    and ``readout = G^2 |p_L|^2 + 1`` (the ``+1`` is the bias), each averaged over ``x``.
    ``block_weight_isometric`` and ``block_bias_isometric`` are the same with every
    ``Pi_l = 1``.  All are exact for a linear block of orthogonal centre-tap kernels;
    the chapter measures how close the tanh network comes.  Also returned:
    ``pooled_in`` (``|p_0|^2``) and ``pooled_sum`` (``sum_l |p_l|^2``), averaged over ``x``.

    Raises
    ------
    ValueError
        As :func:`group_ntk_traces`, or a model without a deep block.
    """
    x = _check_images(model, x)
    params = model.deep_parameters() if hasattr(model, "deep_parameters") else None
    if params is None:
        raise ValueError("the model has no deep block")
    weight, bias = params
    param = next(model.parameters())
    if not isinstance(logit, Integral) or isinstance(logit, bool) or not 0 <= logit < model.readout.weight.shape[0]:
        raise ValueError(f"logit must be an integer in [0, {model.readout.weight.shape[0]}), got {logit!r}")
    u2 = float((model.readout.weight[logit].detach().double() ** 2).sum())
    g2, depth, k = float(model.readout_scale) ** 2, weight.shape[0], weight.shape[-1]
    pad = (k // 2,) * 4
    with torch.no_grad():
        h = x.to(param.device, param.dtype)
        for conv in model.stem:
            h = torch.tanh(conv(h))
        pooled, slope = [], []
        for layer in range(depth):  # the block layer by layer, to see every layer's pooled input
            pooled.append(float((h.double().mean(dim=(2, 3)) ** 2).sum(dim=1).mean()))
            z = F.conv2d(circular_pad(h, pad), weight[layer], bias[layer])
            h = torch.tanh(z)
            slope.append(float(((1 - h.double() ** 2) ** 2).mean()))  # E[tanh'(z)^2] of this layer
        p_out = float((h.double().mean(dim=(2, 3)) ** 2).sum(dim=1).mean())
    # gain of the squared back-propagated signal from the block's output down to layer l's pre-activation:
    # prod_{j >= l} E[phi'(z_j)^2] * prod_{j > l} sigma_w^2 (the mean-field backward map, eq. (2.5) style)
    sw2 = float(model.sigma_w2)
    gain, suffix = [0.0] * depth, 1.0
    for layer in range(depth - 1, -1, -1):
        suffix *= slope[layer]
        gain[layer] = suffix
        suffix *= sw2
    return {
        "block_weight": k * k * g2 * u2 * sum(p * a for p, a in zip(pooled, gain, strict=True)),
        "block_bias": g2 * u2 * sum(gain),
        "block_weight_isometric": k * k * g2 * u2 * sum(pooled),
        "block_bias_isometric": depth * g2 * u2,
        "readout": g2 * p_out + 1.0,
        "pooled_in": pooled[0],
        "pooled_sum": sum(pooled),
    }


def relative_change(
    current: Mapping[str, list[torch.Tensor]], initial: Mapping[str, list[torch.Tensor]]
) -> dict[str, float | None]:
    """``|theta_g - theta_g(0)| / |theta_g(0)|`` (Frobenius norms over the whole group) for every group.

    ``None`` for a group without parameters or with zero initial norm.

    Raises
    ------
    ValueError
        The two mappings name different groups or hold differently shaped tensors.
    """
    if set(current) != set(initial):
        raise ValueError(f"groups differ: {sorted(current)} vs {sorted(initial)}")
    out: dict[str, float | None] = {}
    for g, ps in current.items():
        ps0 = initial[g]
        if len(ps) != len(ps0) or any(a.shape != b.shape for a, b in zip(ps, ps0, strict=False)):
            raise ValueError(f"group {g!r}: parameters of different shapes")
        num = sum(
            float(((a.detach().double() - b.detach().double().to(a.device)) ** 2).sum())
            for a, b in zip(ps, ps0, strict=True)
        )
        den = sum(float((b.detach().double() ** 2).sum()) for b in ps0)
        out[g] = math.sqrt(num / den) if ps and den > 0 else None
    return out
