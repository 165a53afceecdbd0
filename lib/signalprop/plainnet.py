"""He et al. (2016)'s CIFAR networks of depth 6n+2, plain or residual, as trained by Xie, Xiong & Pu (2017).

Xie, Xiong & Pu (2017), §5.1 (after He et al. 2016, §4.2): a first 3x3 convolution, then three
stages of ``2n`` 3x3 convolutions with ``16, 32, 64`` feature maps, the first convolution of
stages 2 and 3 with stride 2 (halving the feature map), global average pooling and a 10-way fully
connected layer: ``6n + 2`` parametric layers (``n = 7``: 44 layers, ``n = 18``: 110).  Every
convolution is followed by batch normalisation and ReLU, the Conv-BN-ReLU triple the paper argues
for (§3.1).  The residual counterpart groups the ``2n`` convolutions of a stage into ``n`` basic
blocks of two (He et al. 2016): ``x -> relu(BN(conv(relu(BN(conv(x))))) + s(x))``, so the second
ReLU of a block follows the addition; ``s`` is the identity, or, where the number of feature maps
changes (the first block of stages 2 and 3), a 3x3 stride-2 projection convolution followed by
batch normalisation ("3x3 projection shortcuts", Xie et al. §5.1).  Projections are not counted
in the ``6n + 2`` layers, as in He et al.

Our choices and scale:

* **Widths** ``(16 k, 32 k, 64 k)`` with a width multiplier ``k`` (``16 k`` must be a positive
  integer).  The paper uses ``k = 1``; reduced widths (``k = 0.25, 0.5``) are our choice, to fit
  the experiments on a CPU.  Inputs are ``in_channels x image_size x image_size`` images:
  1 x 28 x 28 Fashion-MNIST at CPU scale, 3 x 32 x 32 CIFAR-10 for the paper's setting.
* Convolutions have no bias (batch normalisation follows each, and its ``beta`` plays that
  role); batch normalisation starts at ``gamma = 1, beta = 0`` with torch's ``eps = 1e-5``; the
  fully connected layer's bias starts at 0.
* **Initialisation** ``"msra"``: He et al. (2015)'s Gaussian, ``N(0, 2 / fan_in)`` with
  ``fan_in = C kh kw`` (the input channels times the kernel size; the fan-in mode of Caffe's
  "msra" filler that the paper names), for every convolution and the fully connected layer.
  ``"orthonormal"``: :func:`signalprop.orthonormal.orthonormal_`, unit-norm mutually orthogonal
  filters, group-wise where ``f_in < f_out`` (Xie et al. §4), for every convolution and the fully
  connected layer (whose 10 class vectors are then orthonormal).
* **Regulariser** (:meth:`PlainNet.regularization_loss`, added to the loss by
  :func:`signalprop.train.train`; set the training ``weight_decay`` to 0 with it): ``"l2"`` is
  weight decay ``(lambda/2) sum ||W||**2`` over the weights of all convolutions (projections
  included) and of the fully connected layer, not over biases or batch normalisation's
  ``gamma, beta``; ``"orthonormal"`` is eq. (3), :func:`signalprop.orthonormal.penalty` (per
  group where ``f_in < f_out``), over the same weights, **the fully connected layer included**:
  the paper's sum runs over "convolutional layers and/or fully connected layers" and it advises
  against mixing L2 and orthonormal regularisation.  The paper's ``lambda`` is 1e-4 with learning
  rate 0.1.
* **Modulation** (§3.3): :class:`signalprop.modulation.ErrorModulator` on the ``6n + 1``
  convolutions of the main path (projections are not in the chain), switched by
  :meth:`PlainNet.before_step`; see that module for the tensor measured and the mismatch rule.
  The paper modulates plain networks only; in a residual network the rescaled error reaches
  layer ``l`` through the main path only (the shortcut carries the unscaled one).

Parameters are drawn from a private generator (``seed``), main path first (stem, the ``6n``
convolutions in order, the fully connected layer), then the projections: a plain and a residual
network of the same seed share every weight of the main path.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from signalprop import modulation as _mod
from signalprop import orthonormal as _ortho

__all__ = ["INITS", "REGULARIZERS", "PlainNet", "build", "stage_widths"]

#: Initialisations understood by :class:`PlainNet`.
INITS = ("msra", "orthonormal")
#: Regularisers understood by :class:`PlainNet`.
REGULARIZERS = ("l2", "orthonormal")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_choice(name: str, value: Any, known: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"unknown {name} {value!r}; known: {', '.join(known)}")
    return value


def stage_widths(width: float) -> tuple[int, int, int]:
    """The feature maps ``(16 k, 32 k, 64 k)`` of the three stages for the width multiplier ``k = width``.

    Raises
    ------
    ValueError
        ``width`` is not a positive number with ``16 * width`` an integer.
    """
    if isinstance(width, bool) or not isinstance(width, Real) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    base = 16 * float(width)
    if base != round(base):
        raise ValueError(f"width must make 16 * width an integer (e.g. 0.25, 0.5, 1), got {width!r}")
    c = int(round(base))
    return c, 2 * c, 4 * c


def _as_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if dtype in (torch.float32, torch.float64):
        return dtype
    raise ValueError(f"dtype must be 'float32', 'float64' or the torch dtype, got {dtype!r}")


class PlainNet(nn.Module):
    """The 6n+2-layer CIFAR network of He et al. (2016) with Xie, Xiong & Pu (2017)'s training rules.

    See the module notes for the architecture and every choice.

    Parameters
    ----------
    n : int
        Blocks per stage; depth ``6n + 2`` (``n = 3, 7, 18``: 20, 44, 110 layers).
    width : float
        Width multiplier ``k`` (feature maps ``16 k, 32 k, 64 k``); ``16 k`` a positive integer.
    plain : bool
        ``True``: the plain network; ``False``: the residual one (basic blocks, 3x3 projection
        shortcuts where the number of feature maps changes, identity elsewhere).
    in_channels, image_size : int
        Input images ``(in_channels, image_size, image_size)``.
    classes : int
        Outputs of the fully connected layer (10 in the paper).
    init : {"msra", "orthonormal"}
    regularizer : {"l2", "orthonormal"}
    lam : float
        ``lambda >= 0`` of the regulariser (paper: 1e-4).
    modulate_steps : int
        Error modulation during the steps ``0 .. modulate_steps - 1`` (0: never; the paper's
        ``n`` is open, its Fig. 4 suggests 2,000-3,000).
    mismatch : float
        Modulate a layer when its error second moment and that of the layer above differ by at
        least this factor (``>= 1``; 1: always).  Default
        :data:`signalprop.modulation.DEFAULT_MISMATCH`.
    seed : int
        Seed of the initialisation (a private generator; torch's global generator is untouched).
    dtype : torch.dtype or {"float32", "float64"}

    Attributes
    ----------
    convs, bns : torch.nn.ModuleList
        The ``6n + 1`` convolutions of the main path (stem first) and their batch normalisations.
    fc : torch.nn.Linear
    projections : torch.nn.ModuleDict
        Residual only: key ``str(l)`` (``l`` the index in ``convs`` of the block's first
        convolution) maps to ``Sequential(conv, BN)``; empty for the plain network.
    modulator : signalprop.modulation.ErrorModulator

    Raises
    ------
    ValueError
        For any invalid argument.
    """

    def __init__(
        self,
        n: int = 3,
        width: float = 1.0,
        *,
        plain: bool = True,
        in_channels: int = 1,
        image_size: int = 28,
        classes: int = 10,
        init: str = "msra",
        regularizer: str = "l2",
        lam: float = 1e-4,
        modulate_steps: int = 0,
        mismatch: float = _mod.DEFAULT_MISMATCH,
        seed: int = 0,
        dtype: Any = torch.float32,
    ) -> None:
        super().__init__()
        self.n = _check_int("n", n, 1)
        self.widths = stage_widths(width)
        self.width = float(width)
        if not isinstance(plain, bool):
            raise ValueError(f"plain must be True or False, got {plain!r}")
        self.plain = plain
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.image_size = _check_int("image_size", image_size, 1)
        self.classes = _check_int("classes", classes, 1)
        self.init = _check_choice("init", init, INITS)
        self.regularizer = _check_choice("regularizer", regularizer, REGULARIZERS)
        if isinstance(lam, bool) or not isinstance(lam, Real) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        self.lam = float(lam)
        self.seed = _check_int("seed", seed, 0)
        dt = _as_dtype(dtype)
        self.modulator = _mod.ErrorModulator(6 * self.n + 1, mismatch, modulate_steps)

        # (in, out, stride) of the main path: stem, then 2n convolutions per stage
        specs = [(self.in_channels, self.widths[0], 1)]
        for s, w in enumerate(self.widths):
            for j in range(2 * self.n):
                c_in = specs[-1][1]
                specs.append((c_in, w, 2 if (s > 0 and j == 0) else 1))
        with torch.random.fork_rng(devices=[]):  # torch's own default init must not advance the global RNG
            self.convs = nn.ModuleList(
                nn.Conv2d(a, b, 3, stride=st, padding=1, bias=False, dtype=dt) for a, b, st in specs
            )
            self.bns = nn.ModuleList(nn.BatchNorm2d(b, dtype=dt) for _, b, _ in specs)
            self.fc = nn.Linear(self.widths[2], self.classes, dtype=dt)
            self.projections = nn.ModuleDict()
            if not self.plain:
                for first in range(1, len(specs), 2):  # the first convolution of each block
                    a, b, st = specs[first]
                    if a != b:
                        self.projections[str(first)] = nn.Sequential(
                            nn.Conv2d(a, b, 3, stride=st, padding=1, bias=False, dtype=dt), nn.BatchNorm2d(b, dtype=dt)
                        )
        self.reset_parameters()

    # --- structure ------------------------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """``6n + 2``, the number of parametric layers (projections not counted)."""
        return 6 * self.n + 2

    def conv_weights(self, *, projections: bool = True) -> list[torch.Tensor]:
        """The weights of the main-path convolutions (stem first), then of the projections (if asked)."""
        out = [c.weight for c in self.convs]
        if projections:
            out += [p[0].weight for p in self.projections.values()]
        return out

    def regularized_weights(self) -> list[torch.Tensor]:
        """The weights the regulariser acts on: every convolution (projections included), then the fc layer."""
        return [*self.conv_weights(), self.fc.weight]

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw the weights from ``seed`` (default: the constructor's): see the module notes."""
        g = torch.Generator().manual_seed(self.seed if seed is None else _check_int("seed", seed, 0))
        layers = [*self.convs, self.fc, *(p[0] for p in self.projections.values())]
        with torch.no_grad():
            for layer in layers:
                w = layer.weight
                if self.init == "msra":
                    fan_in = math.prod(w.shape[1:])
                    draw = torch.randn(tuple(w.shape), generator=g, dtype=torch.float64) * math.sqrt(2.0 / fan_in)
                    w.copy_(draw.to(w.dtype))
                else:
                    _ortho.orthonormal_(w, generator=g)
            self.fc.bias.zero_()
            for bn in [*self.bns, *(p[1] for p in self.projections.values())]:
                bn.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, depth={self.depth}, widths={self.widths}, plain={self.plain}, init={self.init!r}, "
            f"regularizer={self.regularizer!r}, lam={self.lam:g}, modulate_steps={self.modulator.modulate_steps}, "
            f"mismatch={self.modulator.mismatch:g}"
        )

    # --- forward ---------------------------------------------------------------------------------------------------

    def _triple(self, i: int, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        """Conv-BN(-ReLU) of main-path layer ``i`` (0: the stem), its output attached to the modulator."""
        h = self.modulator.attach(i, self.convs[i](x))
        h = self.bns[i](h)
        return F.relu(h) if relu else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes)`` of images ``(batch, in_channels, image_size, image_size)``."""
        shape = (self.in_channels, self.image_size, self.image_size)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, shape))}), got {got}")
        self.modulator.begin()
        x = self._triple(0, x)
        if self.plain:
            for i in range(1, len(self.convs)):
                x = self._triple(i, x)
        else:
            for first in range(1, len(self.convs), 2):
                h = self._triple(first, x)
                h = self._triple(first + 1, h, relu=False)
                proj = self.projections[str(first)] if str(first) in self.projections else None
                x = F.relu(h + (x if proj is None else proj(x)))
        return self.fc(x.mean(dim=(2, 3)))

    # --- training rules (signalprop.train) ------------------------------------------------------------------------

    def regularization_loss(self) -> torch.Tensor:
        """The regulariser, a 0-d tensor: ``(lambda/2) sum ||W||**2`` (``"l2"``) or eq. (3) (``"orthonormal"``).

        Over :meth:`regularized_weights` (all convolutions and the fully connected layer); eq. (3)
        as :func:`signalprop.orthonormal.penalty` with ``grouped=True`` computes it (groups of
        :func:`signalprop.orthonormal.groups`).  Non-finite weights give a non-finite value, not an
        error, so that :func:`signalprop.train.train` records a divergence.  Xie et al. (2017), §3.2.
        """
        weights = self.regularized_weights()
        if self.regularizer == "l2":
            return 0.5 * self.lam * sum(torch.sum(w * w) for w in weights)
        # eq. (3) as signalprop.orthonormal.penalty(weights, lam, grouped=True) computes it, without its input
        # checks: a non-finite weight gives a non-finite loss (the training loop reports a divergence) instead of
        # an error, and nothing waits on the device
        total = None
        for w in weights:
            mat = w.reshape(w.shape[0], -1).T  # signalprop.orthonormal.to_matrix: (f_in, f_out)
            for g in _ortho.groups(*mat.shape):
                wg = mat[:, g]
                gram = wg.T @ wg
                term = torch.sum((gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)) ** 2)
                total = term if total is None else total + term
        return 0.5 * self.lam * total

    def before_step(self, step: int) -> None:
        """Switch error modulation on for the (0-based) steps ``< modulate_steps``, off afterwards."""
        self.modulator.before_step(step)

    @property
    def modulating(self) -> bool:
        """Whether the next backward pass rescales the errors."""
        return self.modulator.active

    def error_moments(self) -> dict[str, Any]:
        """The per-layer error second moments of the last backward pass: :meth:`ErrorModulator.moments`."""
        return self.modulator.moments()

    @torch.no_grad()
    def probe_statistics(self, probe: torch.Tensor | None = None) -> dict[str, Any]:
        """Statistics for the training history (:func:`signalprop.train.train` calls this at every record).

        Cheap: nothing is computed on ``probe`` (accepted for the training loop's interface).  The
        error moments are those of the last training step's minibatch (the paper measures them
        during training, Figs. 3 and 4); ``None`` before the first step.

        Returns
        -------
        dict
            ``"filter_correlation"``: eq. (8) over all convolutions, projections included
            (:func:`signalprop.orthonormal.filter_correlation`; ``None`` if undefined); and the
            entries of :meth:`error_moments`: ``"error_q"`` (list of ``6n + 1``, the stem first;
            Fig. 4 is ``error_q[l] / error_q[-1]``), ``"error_q_raw"``, ``"error_rho"``,
            ``"error_ratio"`` (Fig. 3, ``error_q[0] / error_q[-1]``) and ``"modulated_layers"``.
        """
        try:
            corr: float | None = _ortho.filter_correlation(self.conv_weights())
        except ValueError:  # a zero or non-finite filter
            corr = None
        return {"filter_correlation": corr, **self.error_moments()}


_BUILD_KEYS = (
    "n", "width", "plain", "in_channels", "image_size", "classes", "init", "regularizer", "lam", "modulate_steps",
    "mismatch", "seed", "dtype",
)


def build(**kwargs: Any) -> PlainNet:
    """A :class:`PlainNet` from plain JSON keyword arguments: the experiment factory ``"signalprop.plainnet:build"``.

    ``dtype`` is ``"float32"`` (default) or ``"float64"``; the other keys are those of
    :class:`PlainNet`.

    Raises
    ------
    ValueError
        An unknown key or an invalid value.
    """
    unknown = sorted(set(kwargs) - set(_BUILD_KEYS))
    if unknown:
        raise ValueError(f"unknown plainnet option(s) {unknown}; known: {list(_BUILD_KEYS)}")
    return PlainNet(**kwargs)
