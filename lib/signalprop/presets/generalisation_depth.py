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

from signalprop.models import gs_profile, paper_width

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
             "GS0-GS4 at depth 4, 8 steps.",
    "cpu": "CPU scale: a stratified Fashion-MNIST subset of 300 training images (1,000 test images), width c = 16, "
           "uniform orthogonal and Delta-Orthogonal kernels at depths 4, 16 and 64, GS0-GS4 at depths 8 and 32, "
           "1,000 Adam steps (lr 2e-4) of batch 100 (333 epochs); the paper used CIFAR-10, c = 256 and depths "
           "32 to 8,192.",
    "paper": "Paper scale: CIFAR-10 (50,000 training, 10,000 test images), c = 256 (depth <= 256) or 128, uniform "
             "orthogonal, uniform Gaussian and Delta-Orthogonal kernels at depths 32, 64, ..., 8192, GS0-GS4 at depths "
             "32 and 256, 50,000 steps of batch 100 (step count and optimiser: our choice, the paper states neither).",
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


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiments of ``preset``: the Fig. 3 depth ladders, then GS0-GS4 (Fig. 4a)."""
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
    return out
