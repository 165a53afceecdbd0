"""Constant-width fully connected networks of Chang (2019), with per-layer statistics.

The network of Chang (2019), eq. (3.1)::

    h_l = W_l x_{l-1} + b_l,   x_l = phi(h_l),   l = 1..L

with ``N x N`` weights, one activation for all layers, zero initial biases and
weights initialised with ``sigma_w2 mu_1 = 1`` (sections 3.1, 4.1 and 5.1): i.i.d.
Gaussian entries of variance ``sigma_w2 / N`` ("scaled Gaussian") or a Haar
orthogonal matrix scaled by ``sqrt(sigma_w2)`` ("orthogonal", Saxe et al. 2014).

:class:`FCNet` is a ``torch.nn.Module``, so the training chapters can optimise it
with SGD; :func:`layer_activations`, :func:`layer_vni`, :func:`jacobians`, :func:`weight_sigma_w2` and
:func:`sigma_w2_mu1` read off the per-layer quantities of chapters 3 to 5:
the VNI of every hidden layer (Figs. 3.2, 3.5, 5.7), the input-output Jacobian of
eq. (3.6) and ``sigma_w2 mu_1`` of trained
weights (Figs. 5.5, 5.6).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from signalprop import vni as _vni
from signalprop.init import haar_orthogonal

Array = NDArray[np.float64]

__all__ = [
    "FCNet",
    "init_linear_",
    "sample_inputs",
    "layer_activations",
    "layer_vni",
    "jacobians",
    "weight_sigma_w2",
    "sigma_w2_mu1",
]

#: Weight laws understood by :class:`FCNet` and :func:`init_linear_`.
WEIGHT_LAWS = tuple(_vni.WEIGHT_LAWS)


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_law(weights: Any) -> str:
    if not isinstance(weights, str) or weights.lower() not in WEIGHT_LAWS:
        raise ValueError(f"unknown weights {weights!r}; known: {', '.join(WEIGHT_LAWS)}")
    return weights.lower()


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def init_linear_(
    layer: nn.Linear, weights: str, sigma_w2: float, generator: torch.Generator | None = None
) -> nn.Linear:
    """Initialise a linear layer in place as in Chang (2019): zero bias, ``Var[W_ij] = sigma_w2 / fan_in``.

    ``"gaussian"``: i.i.d. ``N(0, sigma_w2 / fan_in)`` entries (the "scaled Gaussian" of the thesis,
    section 3.1, assumption (2); ``sigma_w2 = N Var[W_ij]`` as in eq. (4.4)).  ``"orthogonal"``: a
    Haar orthogonal matrix (QR with sign correction, :func:`signalprop.init.haar_orthogonal`)
    scaled by ``sqrt(sigma_w2)``, so ``W W^T = sigma_w2 I`` for square layers.  For a non-square
    layer (not in the thesis: our choice) the rows (``fan_out <= fan_in``) or columns
    (``fan_out > fan_in``) are orthonormal, scaled so that the entries still have mean square
    ``sigma_w2 / fan_in``.

    Parameters
    ----------
    layer : torch.nn.Linear
    weights : {"gaussian", "orthogonal"}
    sigma_w2 : float
        ``fan_in * Var[W_ij]``, > 0.
    generator : torch.Generator, optional
        Source of randomness (the draw is made in float64 and cast to the layer's dtype).

    Returns
    -------
    torch.nn.Linear
        ``layer``.
    """
    law = _check_law(weights)
    sw = _check_positive("sigma_w2", sigma_w2)
    fan_out, fan_in = layer.weight.shape
    if law == "gaussian":
        w = torch.randn((fan_out, fan_in), generator=generator, dtype=torch.float64) * math.sqrt(sw / fan_in)
    else:
        w = haar_orthogonal(max(fan_out, fan_in), generator=generator)[:fan_out, :fan_in]
        w = w * math.sqrt(sw * max(1.0, fan_out / fan_in))
    with torch.no_grad():
        layer.weight.copy_(w.to(layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


class FCNet(nn.Module):
    """Fully connected network of constant width: Chang (2019), eq. (3.1).

    ``depth`` hidden layers ``h_l = W_l x_{l-1} + b_l``, ``x_l = phi(h_l)`` of width ``width``,
    optionally followed by a linear readout (no activation) for classification.

    Initialisation (Chang 2019, sections 3.1 and 5.1): zero biases and ``sigma_w2 mu_1 = 1``
    with ``mu_1 = E[phi'(h)**2]``, ``h ~ N(0, q)`` (:func:`signalprop.vni.moments`), Gaussian
    or orthogonal weights (:func:`init_linear_`).  The thesis's section on the initialisation
    (4.2) is missing from the text; at which pre-activation variance ``mu_1`` is evaluated is
    not stated (our choice: ``q``, default 0.1, the input variance of the thesis's synthetic
    inputs ``x_0 ~ N(0, 0.1)``, Fig. 3.2).  This gives ``sigma_w2 = 1`` (linear), 2 (ReLU),
    1.00157 (hard-tanh) and 1.17757 (tanh).  Pass ``sigma_w2`` to override, e.g.
    ``sigma_w2=1.0`` for tanh in the ``q -> 0`` limit (``q = 0`` is the only zero-bias fixed
    point with ``sigma_w2 mu_1 = 1`` for tanh and hard-tanh).

    Parameters
    ----------
    width : int
        ``N``, the width of every hidden layer.
    depth : int
        ``L``, the number of hidden layers (each with the activation); the readout is not counted.
    activation : str, Activation or callable
        Any name of :mod:`signalprop.activations` (``"tanh"``, ``"hardtanh"``, ``"relu"``,
        ``"linear"``, ``"erf"``; ``"hard_tanh"`` is accepted), or a callable on torch tensors.
    weights : {"gaussian", "orthogonal"}
    q : float
        Pre-activation variance at which ``mu_1`` is evaluated for the initialisation, > 0.
    sigma_w2 : float, optional
        ``N Var[W_ij]`` of the hidden layers; default ``1 / mu_1(q)``.
    in_features : int, optional
        Input dimension of the first layer (default ``width``, the thesis's ``N x N`` setting;
        e.g. 784 for MNIST).  Its weights have variance ``sigma_w2 / in_features``.
    out_features : int, optional
        If given, a linear readout ``width -> out_features`` with the same weight law,
        ``sigma_w2 = 1`` (the identity has ``mu_1 = 1``; our choice) and zero bias.
    seed : int
        Seed of the initialisation (a private ``torch.Generator``; the global RNG is untouched).
    dtype : torch.dtype
        Parameter dtype (float32 for training, float64 for exact checks).
    flatten_input : bool
        Accept batches of any shape ``(batch, ...)`` and flatten each input to ``in_features``
        numbers (images for classification, e.g. ``(batch, 1, 28, 28)`` with ``in_features=784``).
        Default False: inputs must already have shape ``(batch, in_features)``.

    Attributes
    ----------
    layers : torch.nn.ModuleList
        The ``depth`` hidden ``nn.Linear`` layers.
    readout : torch.nn.Linear or None
    act : signalprop.activations.Activation
    sigma_w2, mu_1 : float
        The initialisation's ``sigma_w2`` and ``mu_1(q)``.

    Raises
    ------
    ValueError
        For non-positive or non-integer sizes, an unknown activation or law, ``q <= 0`` or
        ``sigma_w2 <= 0``.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        activation: Any = "tanh",
        weights: str = "gaussian",
        *,
        q: float = 0.1,
        sigma_w2: float | None = None,
        in_features: int | None = None,
        out_features: int | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        flatten_input: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(flatten_input, bool):
            raise ValueError(f"flatten_input must be True or False, got {flatten_input!r}")
        self.flatten_input = flatten_input
        self.width = _check_int("width", width)
        self.depth = _check_int("depth", depth)
        self.in_features = self.width if in_features is None else _check_int("in_features", in_features)
        self.out_features = None if out_features is None else _check_int("out_features", out_features)
        self.weights = _check_law(weights)
        self.q = _check_positive("q", q)
        self.act = _vni._activation(activation)
        self.mu_1 = float(_vni.moments(self.act, self.q)[0])
        self.sigma_w2 = 1.0 / self.mu_1 if sigma_w2 is None else _check_positive("sigma_w2", sigma_w2)
        self.seed = _check_int("seed", seed, minimum=0)
        sizes = [self.in_features] + [self.width] * self.depth
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own default init must not advance the global RNG
            self.layers = nn.ModuleList(
                nn.Linear(a, b, bias=True, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            )
            self.readout = None if self.out_features is None else nn.Linear(self.width, self.out_features, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw all weights (zero biases) from ``seed`` (default: the constructor's)."""
        g = torch.Generator().manual_seed(self.seed if seed is None else _check_int("seed", seed, minimum=0))
        for layer in self.layers:
            init_linear_(layer, self.weights, self.sigma_w2, generator=g)
        if self.readout is not None:
            init_linear_(self.readout, self.weights, 1.0, generator=g)

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, depth={self.depth}, activation={self.act.name!r}, weights={self.weights!r}, "
            f"sigma_w2={self.sigma_w2:.6g}, in_features={self.in_features}, out_features={self.out_features}"
        )

    def hidden(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(h_l, x_l)`` for ``l = 1..L``, eq. (3.1), one layer at a time (nothing is stored)."""
        if self.flatten_input and x.ndim > 2:
            x = x.flatten(1)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (batch, {self.in_features}), got {tuple(x.shape)}")
        for layer in self.layers:
            h = layer(x)
            x = self.act.torch_fn(h)
            yield h, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x_L`` (or the readout of ``x_L`` if the network has one) for a batch ``x`` of shape (M, in_features)."""
        out = x
        for _, a in self.hidden(x):
            out = a
        return out if self.readout is None else self.readout(out)

    @torch.no_grad()
    def probe_statistics(self, x: torch.Tensor) -> dict[str, list[float | None]]:
        """Per-layer ``R_sq`` and ``sigma_w2 mu_1`` on a batch ``x`` (rows: inputs), for the training history.

        :func:`signalprop.train.train` calls this at every record on its probe batch (the first
        held-out images), so a run's history holds the quantities of Chang (2019), Figs. 3.4, 3.5
        (``"vni"``: :func:`layer_vni`, eqs. (3.4)/(3.5), entry ``l - 1`` for hidden layer ``l``) and
        5.5-5.7 (``"sigma_w2_mu1"``: :func:`sigma_w2_mu1` with the empirical ``mu_1``, eq. (4.5)).

        Returns
        -------
        dict
            ``{"vni": [...], "sigma_w2_mu1": [...]}``, each a list of ``depth`` floats; ``None``
            where the value is undefined (a layer whose nodes are all constant over ``x``, or
            non-finite weights).
        """
        if self.flatten_input and x.ndim > 2:
            x = x.flatten(1)
        x = _batch(self, x)
        rsq: list[float | None] = []
        for _, a in self.hidden(x):
            try:
                v = _vni.vni(a)
            except ValueError:  # every node of the layer constant over the batch (e.g. dead ReLUs)
                v = math.nan
            rsq.append(float(v) if math.isfinite(v) else None)
        swm = [float(v) if math.isfinite(v) else None for v in sigma_w2_mu1(self, x)]
        return {"vni": rsq, "sigma_w2_mu1": swm}


def sample_inputs(
    n_inputs: int, n_features: int, variance: float = 0.1, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n_inputs`` i.i.d. inputs ``x_0 ~ N(0, variance I)``: the synthetic inputs of Chang (2019), Figs. 3.2 and 3.6.

    Returns a tensor of shape ``(n_inputs, n_features)``.
    """
    n = _check_int("n_inputs", n_inputs)
    f = _check_int("n_features", n_features)
    v = _check_positive("variance", variance)
    g = torch.Generator().manual_seed(_check_int("seed", seed, minimum=0))
    return (torch.randn((n, f), generator=g, dtype=torch.float64) * math.sqrt(v)).to(dtype)


def _batch(net: FCNet, x: Any) -> torch.Tensor:
    if not isinstance(net, FCNet):
        raise ValueError(f"net must be an FCNet, got {type(net).__name__}")
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=float))
    if x.ndim != 2 or x.shape[1] != net.in_features:
        raise ValueError(f"x must have shape (batch, {net.in_features}), got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("x must hold at least one input")
    return x.to(net.layers[0].weight.dtype)


@torch.no_grad()
def layer_activations(net: FCNet, x: Any, *, pre_activations: bool = False) -> list[torch.Tensor]:
    """Per-layer nodes ``[x_1, ..., x_L]`` (or ``[h_1, ..., h_L]``) for a batch of inputs: eq. (3.1).

    Parameters
    ----------
    net : FCNet
    x : torch.Tensor or array_like, shape (M, in_features)
        The inputs ``x_0``, one per row.
    pre_activations : bool
        Return ``h_l`` instead of ``x_l = phi(h_l)``.

    Returns
    -------
    list of torch.Tensor
        ``depth`` tensors of shape ``(M, width)`` (rows: inputs, columns: nodes), without gradient.
        For wide and deep networks this is large (``M L N`` numbers); :func:`layer_vni` and
        :func:`sigma_w2_mu1` run layer by layer instead.
    """
    x = _batch(net, x)
    return [h if pre_activations else a for h, a in net.hidden(x)]


def _check_depths(net: FCNet, depths: Any) -> list[int]:
    """``depths`` as a non-empty list of layer indices in ``1..net.depth`` (order kept)."""
    try:
        out = list(depths)
    except TypeError:
        raise ValueError(f"depths must be a sequence of integers, got {depths!r}") from None
    if not out:
        raise ValueError("depths must name at least one layer")
    for d in out:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d <= net.depth:
            raise ValueError(f"depths must be integers in 1..{net.depth}, got {d!r}")
    return [int(d) for d in out]


@torch.no_grad()
def layer_vni(net: FCNet, x: Any, *, pre_activations: bool = False, depths: Any = None) -> Array:
    """VNI ``R_sq`` (Chang 2019, eqs. (3.4)/(3.5)) of every hidden layer for the inputs ``x``.

    Computed on the nodes ``x_l = phi(h_l)`` of eq. (3.2) (``h_l`` with ``pre_activations``), in
    float64, layer by layer, by :func:`signalprop.vni.vni` (rows of ``x`` are the inputs over
    which correlations are taken).  The readout, if any, is not included.

    Parameters
    ----------
    net : FCNet
    x : torch.Tensor or array_like, shape (M, in_features)
    pre_activations : bool
        Use ``h_l`` instead of ``x_l``.
    depths : sequence of int, optional
        Only these layers (``1..net.depth``, in the order given); the forward pass stops at the
        deepest of them.  Layer ``l`` of a depth-``L`` network is a depth-``l`` network of its own
        (its first ``l`` layers), so one deep network gives the VNI at several depths; the
        ``R_sq`` computation, as costly as a layer's forward pass, is skipped at the other layers.

    Returns
    -------
    ndarray, shape (depth,) or (len(depths),)
        Entry ``l - 1`` is ``R_sq`` of layer ``l`` (entry ``k`` is that of layer ``depths[k]``);
        the entry of layer ``depth`` is the output-layer VNI of the thesis (Figs. 3.2, 3.4).

    Raises
    ------
    ValueError
        For a batch of fewer than 2 inputs, a layer whose nodes are all constant, or ``depths``
        outside ``1..net.depth``.
    """
    x = _batch(net, x)
    if depths is None:
        return np.array([_vni.vni(h if pre_activations else a) for h, a in net.hidden(x)])
    wanted = _check_depths(net, depths)
    found: dict[int, float] = {}
    for layer, (h, a) in enumerate(net.hidden(x), start=1):
        if layer in wanted:
            found[layer] = _vni.vni(h if pre_activations else a)
        if layer == max(wanted):
            break
    return np.array([found[d] for d in wanted])


@torch.no_grad()
def jacobians(net: FCNet, x: Any, *, depths: Any = None) -> list[Array]:
    """Input-output Jacobians ``J_l = dx_l / dx_0 = D_l W_l ... D_1 W_1`` at one input: Chang (2019), section 3.1.

    ``D_l = diag(phi'(h_l))`` holds the slopes of the activation at the pre-activations ``h_l`` of
    the input ``x``, so ``J_l`` is the Jacobian of the map ``x_0 -> x_l`` of eq. (3.1) at ``x``
    (biases included in ``h_l``; they do not enter ``J_l`` otherwise).  Its singular values are
    what eq. (3.6) needs: ``signalprop.vni.vni_from_jacobian(J_l)``.  Computed in float64 from the
    stored weights, whatever the network's dtype, by the product above (one ``N x N`` by
    ``N x in_features`` product per layer).  At a kink of ``phi`` (ReLU at 0, hard-tanh at +-1)
    the slope is the one :attr:`signalprop.activations.Activation.dphi` assigns there.

    Parameters
    ----------
    net : FCNet
    x : torch.Tensor or array_like, shape (in_features,) or (1, in_features)
        The input ``x_0`` at which the slopes are taken.
    depths : sequence of int, optional
        Layers ``l`` (``1..net.depth``) whose Jacobian is returned, in the order given; default
        ``(net.depth,)``, the end-to-end Jacobian.

    Returns
    -------
    list of ndarray
        One float64 array of shape ``(width, in_features)`` per entry of ``depths``.

    Raises
    ------
    ValueError
        ``x`` is not one input of ``in_features`` numbers, or ``depths`` is outside ``1..net.depth``.
    """
    if not isinstance(net, FCNet):
        raise ValueError(f"net must be an FCNet, got {type(net).__name__}")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    xv = np.asarray(x, dtype=float)
    if xv.ndim == 2 and xv.shape[0] == 1:
        xv = xv[0]
    if xv.shape != (net.in_features,):
        raise ValueError(f"x must be one input of shape ({net.in_features},), got {np.shape(x)}")
    wanted = [net.depth] if depths is None else _check_depths(net, depths)
    out: dict[int, Array] = {}
    jac = np.eye(net.in_features)
    for layer, lin in enumerate(net.layers, start=1):
        w = lin.weight.detach().cpu().double().numpy()
        h = w @ xv + lin.bias.detach().cpu().double().numpy()
        jac = net.act.dphi(h)[:, None] * (w @ jac)
        xv = net.act.phi(h)
        if layer in wanted:
            out[layer] = jac.copy()
        if layer == max(wanted):
            break
    return [out[d] for d in wanted]


@torch.no_grad()
def weight_sigma_w2(net: FCNet) -> Array:
    """Estimate ``sigma_w2 = fan_in * Var[W_ij]`` of every hidden layer: Chang (2019), eq. (4.4).

    Estimator: ``fan_in`` times the variance of the layer's ``fan_out * fan_in`` weight entries
    about their own mean (denominator ``fan_out * fan_in``).  The thesis (section 5.2) reports
    ``sigma_w2`` "the variance of weights at each layer" of trained models without saying how it
    was estimated (our choice).  For ``N x N`` Gaussian weights its relative standard error is
    ``sqrt(2) / N``.

    Returns
    -------
    ndarray, shape (depth,)
    """
    if not isinstance(net, FCNet):
        raise ValueError(f"net must be an FCNet, got {type(net).__name__}")
    out = []
    for layer in net.layers:
        w = layer.weight.detach().double()
        out.append(w.shape[1] * float(torch.var(w, correction=0)))
    return np.array(out)


@torch.no_grad()
def sigma_w2_mu1(net: FCNet, x: Any, *, estimator: str = "empirical") -> Array:
    """Per-layer ``sigma_w2 mu_1`` of a (trained) network on inputs ``x``: Chang (2019), eqs. (4.4)-(4.5).

    The quantity of Figs. 5.5 and 5.6 (1 means neither vanishing nor exploding gradients).

    ``sigma_w2`` is estimated by :func:`weight_sigma_w2`.  ``mu_1`` (the thesis does not say how
    it was estimated for trained weights; our choice, selected by ``estimator``):

    * ``"empirical"`` (default): the mean of ``phi'(h_l)**2`` over the inputs and nodes of layer
      ``l``, ``h_l`` its pre-activations for the inputs ``x`` (what ``mu_1`` is when the
      pre-activations are not Gaussian);
    * ``"gaussian"``: ``mu_1(q_l) = E[phi'(h)**2]``, ``h ~ N(0, q_l)`` (:func:`signalprop.vni.moments`),
      with ``q_l`` the mean of ``h_l**2`` over the inputs and nodes.

    Parameters
    ----------
    net : FCNet
    x : torch.Tensor or array_like, shape (M, in_features)
    estimator : {"empirical", "gaussian"}

    Returns
    -------
    ndarray, shape (depth,)
        1 at the thesis's initialisation (up to sampling error and the drift of ``q_l`` with depth).
    """
    if estimator not in ("empirical", "gaussian"):
        raise ValueError(f"estimator must be 'empirical' or 'gaussian', got {estimator!r}")
    x = _batch(net, x)
    sw = weight_sigma_w2(net)
    mu = []
    for h, _ in net.hidden(x):
        hs = h.detach().cpu().double().numpy()
        if estimator == "empirical":
            mu.append(float(np.mean(net.act.dphi(hs) ** 2)))
        else:
            mu.append(float(_vni.moments(net.act, float(np.mean(hs * hs)))[0]))
    return sw * np.array(mu)
