"""The vanilla tanh CNN of Xiao et al. (2018), section 3 (Experiments), and its critical initialisation.

Architecture (Xiao et al. 2018, section 3; the authors'
demo ``Delta_Orthogonal_Convolution_Demo.ipynb`` in brain-research/mean-field-cnns):

1. three 3 x 3 convolutions + tanh, strides 1, 2, 2, taking the ``in_channels``
   input to ``c`` channels and the image from 28 x 28 to 7 x 7 (MNIST,
   Fashion-MNIST) or from 32 x 32 to 8 x 8 (CIFAR-10); with ``downsample=False``
   all three strides are 1 and the deep block sees the full image (the paper's
   50-layer network "without downsampling", section 3).  Zero padding of 1 pixel
   on every side (the demo's 'SAME' padding; for stride 2 TensorFlow pads 0
   before and 1 after, PyTorch's ``padding=1`` pads 1 on both sides: the output
   size is the same, the sampling grid is shifted by one pixel, which the theory
   does not see);
2. the deep block: ``depth`` 3 x 3, ``c -> c``, stride-1 convolutions with
   **circular** padding, each followed by tanh (eq. (2.1) on a periodic image),
   by default the fused :class:`signalprop.deepblock.DeepTanhBlock`; ``fast=False``
   uses a plain stack of :class:`signalprop.layers.CircularConv2d` and ``tanh``
   computing the same function (for comparisons and tests);
3. global average pooling over the 7 x 7 (8 x 8) positions and one linear
   read-out to ``num_classes`` logits (softmax cross-entropy is the loss).

Initialisation (the demo's choices; the paper does not state those of its
stem and read-out):

* stem convolutions: i.i.d. Gaussian weights of standard deviation
  ``sqrt(sigma_w2 / (9 c_in))``, biases ``N(0, sigma_b2)``;
* deep block: every layer's kernel independently from ``kernel_init``:
  ``"delta_orthogonal"`` (Algorithm 2, the default), ``"orthogonal"``
  (Algorithm 1) or ``"gaussian"`` (eq. (2.13), with an optional spatial variance
  profile ``v``, e.g. :func:`gs_profile` for GS0-GS4 of Figure 4), gain
  ``sqrt(sigma_w2)``; biases ``N(0, sigma_b2)``;
* read-out: weights ``N(0, 1 / c)``, zero bias;
* ``(sigma_w2, sigma_b2)`` on the tanh critical line ``chi_1 = 1`` with
  ``q* = 1 / depth`` unless given (:func:`critical_parameters`, the demo's
  heuristic); the same pair is used for the stem and the deep block.

The width rule of the paper (``c = 256`` for ``depth <= 256``, 128 beyond) is
:func:`paper_width`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from signalprop import meanfield
from signalprop.deepblock import DeepTanhBlock
from signalprop.layers import CircularConv2d

__all__ = [
    "KERNEL_INITS",
    "IMAGE_SIZES",
    "paper_width",
    "critical_parameters",
    "gs_profile",
    "ModelConfig",
    "model_config_defaults",
    "model_config_for_dataset",
    "build_model",
    "VanillaCNN",
]

KERNEL_INITS = ("delta_orthogonal", "orthogonal", "gaussian")
#: Input size -> spatial size after the three stem convolutions (strides 1, 2, 2; padding 1).
IMAGE_SIZES = {28: 7, 32: 8}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _is_int(val: Any) -> bool:
    return isinstance(val, (int, np.integer)) and not isinstance(val, bool)


def paper_width(depth: int) -> int:
    """The width of Xiao et al. (2018), section 3 (Experiments): ``c = 256`` if ``depth <= 256``, else 128."""
    if not _is_int(depth) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    return 256 if depth <= 256 else 128


def critical_parameters(depth: int | None = None, q_star: float | None = None) -> tuple[float, float]:
    """``(sigma_w2, sigma_b2)`` on the tanh critical line ``chi_1 = 1``.

    The authors' demo picks the point of the critical line whose fixed point is
    ``q* = 1 / depth``: the deeper the network, the
    closer to the origin of the line, where tanh is nearly linear and the
    Jacobian spectrum concentrates (Xiao et al. 2018, section 2.4).  Solved by
    :func:`signalprop.meanfield.critical_line`.

    Parameters
    ----------
    depth : int, optional
        ``>= 1``; gives ``q* = 1 / depth``.
    q_star : float, optional
        ``> 0``; the fixed point directly.  Give exactly one of ``depth`` and ``q_star``.

    Returns
    -------
    (sigma_w2, sigma_b2) : tuple of float

    Raises
    ------
    ValueError
        Neither or both given, ``depth < 1`` or ``q_star <= 0``.

    Examples
    --------
    >>> sw, sb = critical_parameters(16)   # the demo: sigma_w2 = 1.1153806, sigma_b2 = 2.36877e-4
    """
    if (depth is None) == (q_star is None):
        raise ValueError("give exactly one of depth and q_star")
    if depth is not None:
        if not _is_int(depth) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        q = 1.0 / int(depth)
    else:
        if isinstance(q_star, bool) or not isinstance(q_star, (int, float, np.floating)):
            raise ValueError(f"q_star must be a positive number, got {q_star!r}")
        q = float(q_star)
        if not (math.isfinite(q) and q > 0):
            raise ValueError(f"q_star must be a positive finite variance, got {q_star!r}")
    sw, sb = meanfield.critical_line("tanh", q)
    return float(sw), float(sb)


def gs_profile(level: int, kernel_size: int = 3) -> NDArray[np.float64]:
    """Spatial variance profile ``v`` of the critical Gaussian initialisation GS``level`` (0..4).

    Xiao et al. (2018), section 3.3 / Figure 4: GS0 is the delta profile (all
    variance on the centre tap), GS4 the uniform one, GS1-GS3 interpolate.  The
    interpolation weights are not given in the paper; we take ``v = (1 - t) delta + t uniform`` with ``t = level / 4``.

    Returns
    -------
    ndarray
        ``(kernel_size, kernel_size)``, non-negative, summing to 1.
    """
    if not _is_int(level) or not 0 <= level <= 4:
        raise ValueError(f"level must be an integer in 0..4, got {level!r}")
    if not _is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    t = level / 4
    delta = np.zeros((kernel_size, kernel_size))
    delta[kernel_size // 2, kernel_size // 2] = 1.0
    return (1 - t) * delta + t * np.full((kernel_size, kernel_size), 1.0 / kernel_size**2)


def _check_profile(v: ArrayLike) -> list:
    """A valid 3 x 3 (or length-3, separable) variance profile as nested lists (JSON-able)."""
    arr = np.asarray(v, dtype=float)
    if arr.shape not in ((3,), (3, 3)):
        raise ValueError(f"v must have shape (3, 3) or (3,) (the 3 x 3 kernel), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or abs(arr.sum() - 1.0) > 1e-10:
        raise ValueError("v must be non-negative and sum to 1")
    return arr.tolist()


def _check_variance(name: str, val: Any, positive: bool) -> float:
    if isinstance(val, bool) or not isinstance(val, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {val!r}")
    val = float(val)
    if not math.isfinite(val) or val < 0 or (positive and val == 0):
        raise ValueError(f"{name} must be a finite variance {'> 0' if positive else '>= 0'}, got {val!r}")
    return val


class VanillaCNN(nn.Module):
    """The vanilla tanh CNN of Xiao et al. (2018), section 3 (Experiments) (see the module docstring).

    Parameters
    ----------
    channels : int
        Width ``c >= 1`` of the stem output and the deep block (the paper:
        :func:`paper_width`).
    depth : int
        Number ``d >= 0`` of deep-block layers (``0``: no deep block).
    in_channels : int
        1 (MNIST, Fashion-MNIST) or 3 (CIFAR-10); any ``>= 1``.
    num_classes : int
    image_size : {28, 32}
        Input height and width; the deep block then sees 7 x 7 or 8 x 8 (with ``downsample``).
    downsample : bool
        Stem strides 1, 2, 2 (default, the paper's network) or 1, 1, 1 (no
        downsampling: the deep block works on the full ``image_size`` grid).
    kernel_init : {"delta_orthogonal", "orthogonal", "gaussian"}
        Deep-block kernels: Algorithm 2, Algorithm 1 or eq. (2.13).
    v : array_like, optional
        ``kernel_init="gaussian"`` only: the 3 x 3 spatial variance profile (eq. (2.13)),
        e.g. :func:`gs_profile`; ``None`` is uniform.
    sigma_w2, sigma_b2 : float, optional
        Weight and bias variances; give both or neither.  Neither: the critical
        point of :func:`critical_parameters` with ``q_star``, or ``q* = 1 / max(depth, 1)``.
    q_star : float, optional
        Fixed point of the critical point used when the variances are not given.
    fast : bool
        Deep block as the fused :class:`~signalprop.deepblock.DeepTanhBlock`
        (default) or as a stack of :class:`~signalprop.layers.CircularConv2d` + tanh.
    checkpoint_segments : int or "sqrt", optional
        Activation checkpointing of the fused block (see :class:`DeepTanhBlock`);
        validated but unused with ``fast=False`` (it does not change the function).
    readout_scale : float
        A fixed multiplier ``G > 0`` on the pooled features before the read-out,
        ``logits = readout(G * pooled)`` (default 1: the paper's network).  Not a
        parameter: it sets the scale at which the read-out sees features of size
        ``sqrt(q*)`` (see :func:`signalprop.parameterisation.readout_scale`).
    generator : torch.Generator, optional
        Source of every initial draw.  Without it (and without ``seed``) one seed
        is drawn from torch's global generator and recorded in ``config``, so
        ``torch.manual_seed`` makes construction reproducible too.
    seed : int, optional
        Alternative to ``generator``: ``torch.Generator().manual_seed(seed)``.
    device, dtype : optional
        Of the parameters (initial values are drawn in float64 on the CPU, so they
        do not depend on these).

    Attributes
    ----------
    stem : nn.ModuleList
        The three zero-padded :class:`torch.nn.Conv2d`.
    block : DeepTanhBlock, nn.Sequential or None
        The deep block (fused, layer stack or absent for ``depth = 0``).
    readout : nn.Linear
    sigma_w2, sigma_b2 : float
        The variances used.
    spatial_size : int
        7 or 8, or ``image_size`` without downsampling.
    config : dict
        JSON-able configuration, with every default resolved (see :func:`build_model`).

    Raises
    ------
    ValueError
        ``depth < 0``, ``channels < 1``, ``in_channels < 1``, ``num_classes < 1``,
        an image size other than 28 or 32, an unknown ``kernel_init``, ``v`` with
        another kernel or malformed, negative (or zero ``sigma_w2``) variances, only
        one variance given, ``q_star`` together with the variances, both
        ``generator`` and ``seed``, a bad ``checkpoint_segments``, an unknown dtype, a
        ``downsample`` that is not a bool.
    """

    def __init__(
        self,
        channels: int,
        depth: int,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        downsample: bool = True,
        kernel_init: str = "delta_orthogonal",
        v: ArrayLike | None = None,
        sigma_w2: float | None = None,
        sigma_b2: float | None = None,
        q_star: float | None = None,
        fast: bool = True,
        checkpoint_segments: int | str | None = None,
        readout_scale: float = 1.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        for name, val, low in (
            ("channels", channels, 1),
            ("depth", depth, 0),
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 1),
        ):
            if not _is_int(val) or val < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {val!r}")
        channels, depth, in_channels, num_classes = int(channels), int(depth), int(in_channels), int(num_classes)
        if not _is_int(image_size) or int(image_size) not in IMAGE_SIZES:
            raise ValueError(
                f"image_size must be 28 (giving 7 x 7 after the stem) or 32 (giving 8 x 8), got {image_size!r}"
            )
        image_size = int(image_size)
        if not isinstance(downsample, bool):
            raise ValueError(f"downsample must be a bool, got {downsample!r}")
        strides = (1, 2, 2) if downsample else (1, 1, 1)
        spatial = image_size
        for stride in strides:
            spatial = (spatial + 2 - 3) // stride + 1
        expected = IMAGE_SIZES[image_size] if downsample else image_size
        if spatial != expected:  # pragma: no cover - guards the table against the formula
            raise ValueError(f"image_size {image_size} gives {spatial} x {spatial}, not {expected}")
        if not isinstance(fast, bool):
            raise ValueError(f"fast must be a bool, got {fast!r}")
        if kernel_init not in KERNEL_INITS:
            raise ValueError(f"kernel_init must be one of {KERNEL_INITS}, got {kernel_init!r}")
        if v is not None:
            if kernel_init != "gaussian":
                raise ValueError(f"v (a spatial variance profile) needs kernel_init='gaussian', got {kernel_init!r}")
            v = _check_profile(v)
        if (sigma_w2 is None) != (sigma_b2 is None):
            raise ValueError("give both sigma_w2 and sigma_b2, or neither (then the critical point is used)")
        if sigma_w2 is None:
            sigma_w2, sigma_b2 = critical_parameters(depth=None if q_star is not None else max(depth, 1), q_star=q_star)
        elif q_star is not None:
            raise ValueError("q_star only chooses the variances when sigma_w2 and sigma_b2 are not given")
        sigma_w2 = _check_variance("sigma_w2", sigma_w2, positive=True)
        sigma_b2 = _check_variance("sigma_b2", sigma_b2, positive=False)
        if generator is not None and seed is not None:
            raise ValueError("give generator or seed, not both")
        if seed is not None:
            if not _is_int(seed):
                raise ValueError(f"seed must be an integer, got {seed!r}")
            generator = torch.Generator().manual_seed(int(seed))
        elif generator is None:  # one draw from the global generator; recorded, so the model can be rebuilt
            seed = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator().manual_seed(seed)
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
            dtype = _DTYPES[dtype]
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if isinstance(readout_scale, bool) or not isinstance(readout_scale, (int, float, np.floating, np.integer)):
            raise ValueError(f"readout_scale must be a number > 0, got {readout_scale!r}")
        readout_scale = float(readout_scale)
        if not (math.isfinite(readout_scale) and readout_scale > 0):
            raise ValueError(f"readout_scale must be a finite number > 0, got {readout_scale!r}")
        if checkpoint_segments is not None and depth == 0:
            checkpoint_segments = None

        self.channels, self.depth, self.in_channels, self.num_classes = channels, depth, in_channels, num_classes
        self.image_size, self.spatial_size, self.downsample = image_size, spatial, downsample
        self.kernel_init, self.v, self.fast = kernel_init, v, fast
        self.sigma_w2, self.sigma_b2 = sigma_w2, sigma_b2
        self.checkpoint_segments = checkpoint_segments
        self.readout_scale = readout_scale
        self.config: dict[str, Any] = {
            "channels": channels,
            "depth": depth,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "image_size": image_size,
            "downsample": downsample,
            "kernel_init": kernel_init,
            "v": v,
            "sigma_w2": sigma_w2,
            "sigma_b2": sigma_b2,
            "q_star": None,
            "fast": self.fast,
            "checkpoint_segments": checkpoint_segments,
            "readout_scale": readout_scale,
            "seed": None if seed is None else int(seed),
            "dtype": next(k for k, t in _DTYPES.items() if t == dtype),
        }

        factory = {"device": device, "dtype": dtype}
        self.stem = nn.ModuleList(
            [
                nn.Conv2d(c_in, channels, 3, stride=stride, padding=1, **factory)
                for c_in, stride in zip((in_channels, channels, channels), strides, strict=True)
            ]
        )
        self.block: nn.Module | None = None

        with torch.no_grad():
            for conv in self.stem:  # the demo's Gaussian stem: std sqrt(sigma_w2 / (9 c_in)), bias N(0, sigma_b2)
                fan_in = conv.in_channels * 9
                w = torch.randn(conv.weight.shape, generator=generator, dtype=torch.float64)
                conv.weight.copy_(w * math.sqrt(sigma_w2 / fan_in))
                b = torch.randn(conv.bias.shape, generator=generator, dtype=torch.float64)
                conv.bias.copy_(b * math.sqrt(sigma_b2))
            if depth > 0:
                block = DeepTanhBlock(
                    channels,
                    depth,
                    3,
                    checkpoint_segments,
                    device=device if self.fast else None,
                    dtype=dtype,
                )
                block.initialise_(kernel_init, sigma_w2, sigma_b2, generator=generator, v=v)
                self.block = block if self.fast else _layer_stack(block, device)
        self.readout = nn.Linear(channels, num_classes, **factory)
        with torch.no_grad():
            w = torch.randn(self.readout.weight.shape, generator=generator, dtype=torch.float64)
            self.readout.weight.copy_(w / math.sqrt(channels))
            self.readout.bias.zero_()

    # --- structure ---------------------------------------------------------------------------

    def deep_parameters(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The deep block's kernels ``(depth, c, c, 3, 3)`` and biases ``(depth, c)`` (detached copies).

        The same layout for both implementations; ``None`` when ``depth = 0``.
        """
        if self.block is None:
            return None
        if isinstance(self.block, DeepTanhBlock):
            return self.block.weight.detach().clone(), self.block.bias.detach().clone()
        convs = [m for m in self.block if isinstance(m, CircularConv2d)]
        return (
            torch.stack([m.weight.detach() for m in convs]).clone(),
            torch.stack([m.bias.detach() for m in convs]).clone(),
        )

    def converted(self, fast: bool) -> VanillaCNN:
        """A copy with the fused (``fast=True``) or the layer-stack deep block and the same parameters."""
        cfg = dict(self.config, fast=bool(fast), seed=0)
        device = self.readout.weight.device
        other = build_model(cfg, device=device)
        other.config["seed"] = self.config["seed"]
        with torch.no_grad():
            for a, b in zip(other.stem.parameters(), self.stem.parameters(), strict=True):
                a.copy_(b)
            for a, b in zip(other.readout.parameters(), self.readout.parameters(), strict=True):
                a.copy_(b)
            params = self.deep_parameters()
            if params is not None:
                weight, bias = params
                if isinstance(other.block, DeepTanhBlock):
                    other.block.weight.copy_(weight)
                    other.block.bias.copy_(bias)
                else:
                    convs = [m for m in other.block if isinstance(m, CircularConv2d)]
                    for layer, conv in enumerate(convs):
                        conv.weight.copy_(weight[layer])
                        conv.bias.copy_(bias[layer])
        return other

    # --- forward -----------------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"input must have shape (batch, {', '.join(map(str, expected))}), got {shape}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled ``(batch, c)`` representation fed to the read-out."""
        self._check_input(x)
        h = x
        for conv in self.stem:
            h = torch.tanh(conv(h))
        if self.block is not None:
            h = self.block(h)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for images ``(batch, in_channels, image_size, image_size)``.

        Raises
        ------
        ValueError
            If ``x`` does not have that shape.
        """
        features = self.features(x)
        return self.readout(features if self.readout_scale == 1.0 else features * self.readout_scale)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters in the groups that may get their own learning rates.

        ``"stem"`` (the three input convolutions, weights and biases),
        ``"block_weight"`` and ``"block_bias"`` (the deep block's kernels and
        biases; empty lists when ``depth = 0``) and ``"readout"`` (weights and
        bias), in that order; every parameter is in exactly one group.
        """
        if self.block is None:
            block_w, block_b = [], []
        elif isinstance(self.block, DeepTanhBlock):
            block_w, block_b = [self.block.weight], [self.block.bias]
        else:
            convs = [m for m in self.block if isinstance(m, CircularConv2d)]
            block_w, block_b = [m.weight for m in convs], [m.bias for m in convs]
        return {
            "stem": list(self.stem.parameters()),
            "block_weight": block_w,
            "block_bias": block_b,
            "readout": list(self.readout.parameters()),
        }

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, depth={self.depth}, kernel_init={self.kernel_init!r}, "
            f"sigma_w2={self.sigma_w2:.8g}, sigma_b2={self.sigma_b2:.6g}, fast={self.fast}"
        )


def _layer_stack(block: DeepTanhBlock, device: torch.device | str | None) -> nn.Sequential:
    """``CircularConv2d`` + ``Tanh`` modules holding copies of ``block``'s parameters."""
    mods: list[nn.Module] = []
    for layer in range(block.depth):
        conv = CircularConv2d(block.channels, block.channels, block.kernel_size).to(
            device=device, dtype=block.weight.dtype
        )
        with torch.no_grad():
            conv.weight.copy_(block.weight[layer])
            conv.bias.copy_(block.bias[layer])
        mods += [conv, nn.Tanh()]
    return nn.Sequential(*mods)


# --- configurations ------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """A plain, JSON-able description of a :class:`VanillaCNN` (see :func:`build_model`).

    ``channels=None`` means :func:`paper_width`; ``sigma_w2 = sigma_b2 = None``
    the critical point with ``q_star`` (or ``1 / depth``); ``v`` a nested list;
    ``dtype`` ``"float32"`` or ``"float64"``; ``seed=None`` draws the seed from
    torch's global generator (so ``torch.manual_seed`` before :func:`build_model`
    fixes the model) and records it in the model's ``config``.  The defaults are
    the demo's depth and the paper's rules, MNIST-sized input, Delta-Orthogonal kernels.
    """

    depth: int = 16
    channels: int | None = None
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    kernel_init: str = "delta_orthogonal"
    v: list | None = None
    sigma_w2: float | None = None
    sigma_b2: float | None = None
    q_star: float | None = None
    fast: bool = True
    checkpoint_segments: int | str | None = None
    seed: int | None = None
    dtype: str = "float32"
    readout_scale: float | str = 1.0
    downsample: bool = True


_CONFIG_KEYS = tuple(f.name for f in fields(ModelConfig))


#: Keys added after results were stored: left out of :func:`model_config_defaults` (and so of a
#: preset's configuration, which a stored job's key hashes) unless a configuration sets them.
_LATER_KEYS = {"readout_scale": 1.0, "downsample": True}


def model_config_defaults() -> dict[str, Any]:
    """The default configuration as a plain dict (the keys :func:`build_model` accepts).

    Keys of :data:`_LATER_KEYS` (``readout_scale``, ``downsample``) are left out: absent means their default.
    """
    return {k: v for k, v in asdict(ModelConfig()).items() if k not in _LATER_KEYS}


def model_config_for_dataset(name: str, **overrides: Any) -> dict[str, Any]:
    """The default configuration with ``in_channels``, ``image_size``, ``num_classes`` of data set ``name``.

    ``name`` as in :func:`signalprop.data.dataset_spec`; ``overrides`` replace any key.
    """
    from signalprop import data  # local: models does not need the data module otherwise

    spec = data.dataset_spec(name)
    cfg = model_config_defaults()
    cfg.update(in_channels=spec.channels, image_size=spec.image_size, num_classes=spec.num_classes)
    unknown = sorted(set(overrides) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown configuration keys {unknown}; known: {list(_CONFIG_KEYS)}")
    cfg.update(overrides)
    return cfg


def build_model(config: dict[str, Any] | ModelConfig, *, device: torch.device | str | None = None) -> VanillaCNN:
    """Build a :class:`VanillaCNN` from a plain configuration dict.

    Keys (all optional; defaults in :func:`model_config_defaults`):

    ``depth`` (int >= 0), ``channels`` (int >= 1 or ``None`` for :func:`paper_width`),
    ``in_channels``, ``num_classes``, ``image_size`` (28 or 32),
    ``kernel_init`` (``"delta_orthogonal"``, ``"orthogonal"``, ``"gaussian"``),
    ``v`` (3 x 3 nested list or ``None``), ``sigma_w2``, ``sigma_b2`` (both or neither),
    ``q_star``, ``fast`` (bool), ``checkpoint_segments`` (int, ``"sqrt"`` or ``None``),
    ``seed`` (int; ``None`` draws one from torch's global generator),
    ``dtype`` (``"float32"`` or ``"float64"``), ``readout_scale`` (a number ``> 0``, default 1;
    the string ``"auto"`` is resolved by :func:`signalprop.experiment.build_experiment_model`),
    ``downsample`` (bool, default ``True``: stem strides 1, 2, 2; ``False``: 1, 1, 1).

    The model's ``config`` attribute holds the same keys with every default
    resolved (width, variances), so ``build_model(model.config)`` rebuilds it
    with identical parameters when ``seed`` is set.

    Parameters
    ----------
    config : dict or ModelConfig
    device : torch.device or str, optional

    Returns
    -------
    VanillaCNN

    Raises
    ------
    ValueError
        Unknown keys, or any invalid value (see :class:`VanillaCNN`).
    """
    if isinstance(config, ModelConfig):
        config = asdict(config)
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown configuration keys {unknown}; known: {list(_CONFIG_KEYS)}")
    cfg = {**model_config_defaults(), **_LATER_KEYS, **config}
    if isinstance(cfg["readout_scale"], str):
        raise ValueError(
            f"readout_scale {cfg['readout_scale']!r} must be resolved to a number before the model is built "
            "(signalprop.experiment.build_experiment_model does it for 'auto' from calibration images)"
        )
    depth = cfg["depth"]
    if not _is_int(depth) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    channels = paper_width(depth) if cfg["channels"] is None else cfg["channels"]
    if cfg["dtype"] not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {cfg['dtype']!r}")
    model = VanillaCNN(
        channels,
        depth,
        in_channels=cfg["in_channels"],
        num_classes=cfg["num_classes"],
        image_size=cfg["image_size"],
        downsample=cfg["downsample"],
        kernel_init=cfg["kernel_init"],
        v=cfg["v"],
        sigma_w2=cfg["sigma_w2"],
        sigma_b2=cfg["sigma_b2"],
        q_star=cfg["q_star"],
        fast=cfg["fast"],
        checkpoint_segments=cfg["checkpoint_segments"],
        readout_scale=cfg["readout_scale"],
        seed=cfg["seed"],
        device=device,
        dtype=_DTYPES[cfg["dtype"]],
    )
    return model
