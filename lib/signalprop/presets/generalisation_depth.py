"""Presets of the chapter ``xiao2018/generalisation_depth`` (Xiao et al. 2018, Figs. 3 and 4a).

Two families of critical vanilla tanh CNNs (:class:`signalprop.models.VanillaCNN`,
``(sigma_w2, sigma_b2)`` on the tanh critical line with ``q* = 1 / depth``, the
authors' demo heuristic):

* Fig. 3: spatially uniform orthogonal kernels (Algorithm 1,
  ``kernel_init="orthogonal"``) and, as the reference that keeps every Fourier
  mode, Delta-Orthogonal kernels (Algorithm 2), on a ladder of depths;
* Fig. 4a: critical Gaussian kernels with the spatial variance profiles GS0
  (delta) ... GS4 (uniform) of :func:`signalprop.models.gs_profile`, at one or
  more depths.

Every configuration carries ``meta = {"figure": "fig3" | "fig4a", "family": ...}``
so that the chapter can split the rows; ``family`` is the kernel name
(``"orthogonal"``, ``"delta_orthogonal"``) or ``"GS<level>"``.

A third group, ``meta["figure"] == "no_downsampling"``
(:func:`no_downsampling_configs`), is the paper's 50-layer network without
downsampling (its section 3; CIFAR-10, 89.90 % test accuracy): Delta-Orthogonal jobs of
the depth ladder (:func:`signalprop.presets.depth_ladder.config`, the depth-scaled
parameterisation, trained and with the block frozen) at depth 50, once with the stem's
strides 1, 2, 2 and once with strides 1, 1, 1 (``downsample=False``), so that the deep
block works on the whole image.

Scales:

* ``smoke``: synthetic-sized Fashion-MNIST subsets, depths 2 and 4, width 4, a few steps;
* ``cpu``: Fashion-MNIST (the paper used CIFAR-10), a small stratified training
  subset that the networks can fit, so that differences in generalisation show;
* ``paper``: CIFAR-10, the paper's depths 32 ... 8192 with ``c = paper_width(depth)``,
  uniform orthogonal and uniform Gaussian (GS4) ladders, Delta-Orthogonal reference,
  GS0-GS4 at two depths.  The optimiser and step counts are not given by the paper
  (not stated in the paper: our choice): demo optimiser (SGD, momentum 0.95, lr 1e-2, batch 100), and a
  fixed number of steps chosen by us.
"""

from __future__ import annotations

from typing import Any

from signalprop import parameterisation
from signalprop.models import gs_profile, paper_width
from signalprop.presets import depth_ladder

CHAPTER = "xiao2018/generalisation_depth"

#: Depth ladders of the Fig. 3 part (uniform orthogonal and Delta-Orthogonal at each).
DEPTHS = {
    "smoke": (2, 4),
    "cpu": (4, 16, 64),
    "paper": tuple(2**k for k in range(5, 14)),  # 32, 64, ..., 8192 (Fig. 3)
}
#: Depths of the Fig. 4a part (GS0-GS4 at each).
GS_DEPTHS = {"smoke": (4,), "cpu": (8, 32), "paper": (32, 256)}
#: Kernel families of the Fig. 3 part.
FIG3_KERNELS = {
    "smoke": ("orthogonal", "delta_orthogonal"),
    "cpu": ("orthogonal", "delta_orthogonal"),
    # the paper's Fig. 3 family plus the uniform Gaussian of its section 4 and the reference
    "paper": ("orthogonal", "delta_orthogonal", "gaussian"),
}
GS_LEVELS = (0, 1, 2, 3, 4)

#: Depth of the network without downsampling ("a 50 layers network without downsampling", Xiao et al. 2018, sec. 3).
NO_DOWNSAMPLING_DEPTH = {"smoke": 2, "cpu": 50, "paper": 50}
#: Seeds of the no-downsampling comparison.
NO_DOWNSAMPLING_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0,)}
#: Data set of the no-downsampling comparison (the paper: CIFAR-10).
NO_DOWNSAMPLING_DATA = {"smoke": "fashion-mnist", "cpu": "fashion-mnist", "paper": "cifar10"}

_DATA = {
    "smoke": {"name": "fashion-mnist", "n_train": 200, "n_test": 100, "subset_seed": 0, "stratified": True},
    "cpu": {"name": "fashion-mnist", "n_train": 300, "n_test": 1000, "subset_seed": 0, "stratified": True},
    "paper": {"name": "cifar10", "n_train": None, "n_test": None, "subset_seed": 0, "stratified": False},
}
_TRAIN = {
    "smoke": {"optimizer": "momentum", "lr": 1e-2, "momentum": 0.95, "batch_size": 50, "steps": 8,
              "eval_every": 4, "eval_batch_size": 100, "checkpoint_every": 0, "seed": 0, "init_seed": 0},
    # pilots (250 steps, depth 64): the demo's optimiser (momentum 0.95, lr 1e-2) left the uniform orthogonal
    # network at chance, Adam at lr 1e-3 too; Adam at lr 2e-4 trained both kernels (our choice; the paper states none)
    # 500 steps on 500 images left every network below 80 % training accuracy, hence more epochs on fewer images
    "cpu": {"optimizer": "adam", "lr": 2e-4, "momentum": 0.95, "batch_size": 100, "steps": 1000,
            "eval_every": 100, "eval_batch_size": 500, "checkpoint_every": 100, "seed": 0, "init_seed": 0},
    # not stated in the paper: the demo's optimiser; 50,000 steps of 100 = 100 epochs of CIFAR-10 (our choice)
    "paper": {"optimizer": "momentum", "lr": 1e-2, "momentum": 0.95, "batch_size": 100, "steps": 50_000,
              "eval_every": 1000, "eval_batch_size": 1000, "checkpoint_every": 1000, "seed": 0, "init_seed": 0},
}
_CHANNELS = {"smoke": 4, "cpu": 16, "paper": None}  # None: paper_width(depth)

DESCRIPTION = {
    "smoke": "Smoke test: Fashion-MNIST subsets of 200 training and 100 test images, width 4, depths 2 and 4, "
             "GS0-GS4 at depth 4, 8 steps; and the depth ladder's smoke jobs at depth 2 with and without "
             "downsampling, trained and with the block frozen.",
    "cpu": "CPU scale: a stratified Fashion-MNIST subset of 300 training images (1,000 test images), width c = 16, "
           "uniform orthogonal and Delta-Orthogonal kernels at depths 4, 16 and 64, GS0-GS4 at depths 8 and 32, "
           "1,000 Adam steps (lr 2e-4) of batch 100 (333 epochs); the paper used CIFAR-10, c = 256 and depths "
           "32 to 8,192.  The 50-layer Delta-Orthogonal network with and without downsampling (stem strides 1, 2, 2 "
           "or 1, 1, 1), trained and with the block frozen, 3 seeds: the depth ladder's settings (the full "
           "Fashion-MNIST training set, 1,500 steps of batch 32, depth-scaled parameterisation).",
    "paper": "Paper scale: CIFAR-10 (50,000 training, 10,000 test images), c = 256 (depth <= 256) or 128, uniform "
             "orthogonal, uniform Gaussian and Delta-Orthogonal kernels at depths 32, 64, ..., 8192, GS0-GS4 at depths "
             "32 and 256, 50,000 steps of batch 100 (step count and optimiser: our choice, the paper states neither).  "
             "The 50-layer Delta-Orthogonal network with and without downsampling on CIFAR-10, c = 256, in the depth "
             "ladder's paper settings.",
}


def _model(preset: str, depth: int, kernel_init: str, v: list | None = None) -> dict[str, Any]:
    image = {"cifar10": (3, 32)}.get(_DATA[preset]["name"], (1, 28))
    channels = _CHANNELS[preset]
    return {
        "depth": depth,
        "channels": paper_width(depth) if channels is None else channels,
        "in_channels": image[0],
        "num_classes": 10,
        "image_size": image[1],
        "kernel_init": kernel_init,
        "v": v,
        "seed": None,
    }


def _data(preset: str) -> dict[str, Any]:
    return {k: v for k, v in _DATA[preset].items() if v is not None}


def no_downsampling_configs(preset: str) -> list[dict[str, Any]]:
    """The 50-layer networks with and without downsampling of ``preset``, seed-major.

    Each is :func:`signalprop.presets.depth_ladder.config` at depth
    :data:`NO_DOWNSAMPLING_DEPTH` (the ``cpu`` preset: the full Fashion-MNIST training set,
    ``c = 16``, 1,500 steps of batch 32; ``paper``: CIFAR-10 at ``c = 256``), in the variants
    ``"trained"`` and ``"frozen"``, with ``model.downsample`` left at its default (strides
    1, 2, 2) or set to ``False`` (strides 1, 1, 1).  A ``cpu`` job without downsampling
    costs about as much as a 1,000-layer job with it (16 times the positions per layer), so
    it is checkpointed every 25 steps.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in NO_DOWNSAMPLING_DEPTH:
        raise ValueError(f"preset must be one of {tuple(NO_DOWNSAMPLING_DEPTH)}, got {preset!r}")
    out = []
    for seed in NO_DOWNSAMPLING_SEEDS[preset]:
        for downsample in (True, False):
            for variant in parameterisation.VARIANTS:
                c = depth_ladder.config(preset, NO_DOWNSAMPLING_DATA[preset], NO_DOWNSAMPLING_DEPTH[preset], seed,
                                        variant)
                if not downsample:
                    c["model"]["downsample"] = False
                    if preset == "cpu":
                        c["train"]["checkpoint_every"] = 25
                c["meta"] = {
                    "chapter": CHAPTER,
                    "preset": preset,
                    "figure": "no_downsampling",
                    "family": "delta_orthogonal",
                    "downsample": downsample,
                    "variant": variant,
                    "critical": "q* = 1/depth (authors' demo)",
                }
                out.append(c)
    return out


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiments of ``preset``: the Fig. 3 depth ladders, GS0-GS4 (Fig. 4a), then
    the network without downsampling (:func:`no_downsampling_configs`)."""
    if preset not in DESCRIPTION:
        raise ValueError(f"preset must be one of {sorted(DESCRIPTION)}, got {preset!r}")
    out = []
    for kernel in FIG3_KERNELS[preset]:
        for depth in DEPTHS[preset]:
            out.append({
                "data": _data(preset),
                "model": _model(preset, depth, kernel),
                "train": dict(_TRAIN[preset]),
                "meta": {"figure": "fig3", "family": kernel},
            })
    for depth in GS_DEPTHS[preset]:
        for level in GS_LEVELS:
            out.append({
                "data": _data(preset),
                "model": _model(preset, depth, "gaussian", gs_profile(level).tolist()),
                "train": dict(_TRAIN[preset]),
                "meta": {"figure": "fig4a", "family": f"GS{level}"},
            })
    return out + no_downsampling_configs(preset)
