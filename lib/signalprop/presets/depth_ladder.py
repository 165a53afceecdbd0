"""Presets of the chapter ``xiao2018/depth_ladder``: Figure 1 of Xiao et al. (2018).

Figure 1 trains critical Delta-Orthogonal vanilla tanh CNNs (Algorithm 2) of depth
1,250, 2,500, 5,000 and 10,000 on MNIST and CIFAR-10 and finds a learning time,
measured in epochs, that does not depend on depth (science.md sec. 1.11).

Every job here is the paper's architecture (:class:`signalprop.models.VanillaCNN`)
with Delta-Orthogonal deep-block kernels at the critical point ``q* = 1 / depth``
of the authors' demo (:func:`signalprop.models.critical_parameters`), trained with
the demo's optimiser (SGD with momentum 0.95, learning rate 1e-2, constant; the
paper does not state its optimiser: UNCONFIRMED).  The same number of steps at
every depth, on the same data, so that learning curves can be compared in epochs.

* ``smoke``: a few steps of tiny networks, for the tests;
* ``cpu``: Fashion-MNIST (the only data set offline here), width ``c = 16``, depths
  10, 100, 1,000 and 10,000, batch 32, 150 steps on a stratified 4,000-image subset
  (1.2 epochs), held-out accuracy on 200 test images every 25 steps;
* ``paper``: MNIST and CIFAR-10, the paper's depths and widths (``c = 128`` beyond
  256 layers, :func:`signalprop.models.paper_width`), batch 40 (inferred from the
  paper's "90,000 steps, about 60 epochs": UNCONFIRMED), 15,000 steps (10 epochs of
  60,000 MNIST images; 12 of 50,000 CIFAR-10 images).  Defined, never trained here.
"""

from __future__ import annotations

from typing import Any

from signalprop import models

CHAPTER = "xiao2018/depth_ladder"

#: Depths of each preset (``paper``: Xiao et al. 2018, Figure 1).
DEPTHS = {"smoke": (2, 8), "cpu": (10, 100, 1000, 10000), "paper": (1250, 2500, 5000, 10000)}
#: Data sets of each preset (the paper: MNIST and CIFAR-10; here only Fashion-MNIST is available).
DATASETS = {"smoke": ("fashion-mnist",), "cpu": ("fashion-mnist",), "paper": ("mnist", "cifar10")}
#: Width of the cpu and smoke networks (the paper's is :func:`signalprop.models.paper_width`).
WIDTH = {"smoke": 4, "cpu": 16}

#: Training accuracy whose first crossing defines the learning time (the chapter's criterion).
THRESHOLD = {"smoke": 0.2, "cpu": 0.4, "paper": 0.9}

_TRAIN = {
    "smoke": dict(batch_size=16, steps=12, eval_every=4, eval_batch_size=128, checkpoint_every=0),
    "cpu": dict(batch_size=32, steps=150, eval_every=25, eval_batch_size=200, checkpoint_every=0),
    "paper": dict(batch_size=40, steps=15000, eval_every=500, eval_batch_size=1000, checkpoint_every=500),
}
_DATA = {
    "smoke": dict(n_train=160, n_test=60, subset_seed=0, stratified=True),
    "cpu": dict(n_train=4000, n_test=200, subset_seed=0, stratified=True),
    "paper": dict(),  # the full training and test sets
}

DESCRIPTION = {
    "smoke": (
        "Smoke test: critical Delta-Orthogonal tanh CNNs of width 4 and depths 2 and 8, 12 steps of batch 16 "
        "on 160 Fashion-MNIST training images, 60 test images."
    ),
    "cpu": (
        "CPU scale: critical Delta-Orthogonal tanh CNNs of width c = 16 and depths 10, 100, 1,000 and 10,000, "
        "150 steps of batch 32 (1.2 epochs) on a stratified 4,000-image Fashion-MNIST training subset, "
        "test accuracy on 200 Fashion-MNIST test images every 25 steps, one thread."
    ),
    "paper": (
        "Paper scale (Xiao et al. 2018, Figure 1): critical Delta-Orthogonal tanh CNNs of width c = 128 and "
        "depths 1,250, 2,500, 5,000 and 10,000 on the full MNIST and CIFAR-10 training sets, 15,000 steps of "
        "batch 40 (10 MNIST epochs), full test sets; defined, not trained here (it needs a GPU)."
    ),
}


def _checkpoint_every(preset: str, depth: int) -> int:
    """Checkpoints only where a step is expensive (1,000 layers and more on the CPU)."""
    if preset == "cpu" and depth >= 1000:
        return 10
    return _TRAIN[preset]["checkpoint_every"]


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiment configurations of ``preset`` (``"smoke"``, ``"cpu"`` or ``"paper"``), shallowest first.

    Raises
    ------
    ValueError
        An unknown preset.
    """
    if preset not in DEPTHS:
        raise ValueError(f"preset must be one of {tuple(DEPTHS)}, got {preset!r}")
    out = []
    for name in DATASETS[preset]:
        for depth in DEPTHS[preset]:
            width = models.paper_width(depth) if preset == "paper" else WIDTH[preset]
            model = models.model_config_for_dataset(
                name, depth=depth, channels=width, kernel_init="delta_orthogonal", seed=0
            )
            train = dict(
                optimizer="momentum",
                lr=1e-2,
                momentum=0.95,
                seed=0,
                **{**_TRAIN[preset], "checkpoint_every": _checkpoint_every(preset, depth)},
            )
            out.append(
                {
                    "data": {"name": name, **_DATA[preset]},
                    "model": model,
                    "train": train,
                    "meta": {
                        "chapter": CHAPTER,
                        "preset": preset,
                        "figure": "Xiao et al. 2018, Figure 1",
                        "critical": "q* = 1/depth (authors' demo)",
                    },
                }
            )
    return out
