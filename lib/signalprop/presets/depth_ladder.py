"""Presets of the chapter ``xiao2018/depth_ladder``: Figure 1 of Xiao et al. (2018).

Figure 1 trains critical Delta-Orthogonal vanilla tanh CNNs (Algorithm 2) of depth
1,250, 2,500, 5,000 and 10,000 on MNIST and CIFAR-10 and finds a learning time,
measured in epochs, that does not depend on depth.

Every job is the paper's architecture (:class:`signalprop.models.VanillaCNN`) with
Delta-Orthogonal deep-block kernels at the critical point ``q* = 1 / depth`` of the
authors' demo (:func:`signalprop.models.critical_parameters`), trained with SGD with
momentum 0.95 (the demo's optimiser) in the depth-scaled parameterisation derived in
the chapter (:mod:`signalprop.parameterisation`): the read-out sees the pooled
features times ``G = 1 / rms`` measured at initialisation (``readout_scale="auto"``),
stem and read-out learn at the base rate 1e-2, the block's kernels at
``1e-2 / (9 L)``, the block's biases are frozen.  Each depth comes in two
variants: ``"trained"`` and its control ``"frozen"`` (the whole deep block fixed at
initialisation; stem and read-out trained as in ``"trained"``).  The same number of
steps at every depth, on the same data, so that learning curves can be compared in epochs.

* ``smoke``: a few steps of tiny networks, for the tests;
* ``cpu``: the full Fashion-MNIST training set (60,000 images), width ``c = 16``,
  depths 10, 100, 1,000 (seeds 0, 1, 2) and 10,000 (seed 0), batch 32, 1,500 steps
  (0.8 epoch), test accuracy every 150 steps on a fixed stratified 2,000-image
  subset of the test set and after the last step on all 10,000 test images; and one
  run of the demo's parameterisation (one rate 1e-2 for everything, no read-out
  scale) at depth 100 (variant ``"demo"``), the collapse it shows;
* ``paper``: MNIST and CIFAR-10, the paper's depths and widths (``c = 128`` beyond
  256 layers, :func:`signalprop.models.paper_width`), batch 40 (our reading of the
  paper's "90,000 steps, about 60 epochs"), 15,000 steps (10 epochs of 60,000 MNIST
  images; 12 of 50,000 CIFAR-10 images), the same parameterisation.  Defined, not
  trained here.
"""

from __future__ import annotations

from typing import Any

from signalprop import models, parameterisation

CHAPTER = "xiao2018/depth_ladder"

#: Depths of each preset (``paper``: Xiao et al. 2018, Figure 1).
DEPTHS = {"smoke": (2, 8), "cpu": (10, 100, 1000, 10000), "paper": (1250, 2500, 5000, 10000)}
#: Seeds of each depth (one seed where a run costs hours on this machine's CPU).
SEEDS = {"smoke": {2: (0,), 8: (0,)}, "cpu": {10: (0, 1, 2), 100: (0, 1, 2), 1000: (0, 1, 2), 10000: (0,)}}
#: Data sets of each preset (the paper: MNIST and CIFAR-10; here only Fashion-MNIST is available).
DATASETS = {"smoke": ("fashion-mnist",), "cpu": ("fashion-mnist",), "paper": ("mnist", "cifar10")}
#: Width of the cpu and smoke networks (the paper's is :func:`signalprop.models.paper_width`).
WIDTH = {"smoke": 4, "cpu": 16}
#: Base learning rate (stem and read-out) and momentum: the demo's values.
BASE_LR, MOMENTUM = 1e-2, 0.95
#: Variants of every depth: the trained network and its frozen-block control.
VARIANTS = parameterisation.VARIANTS
#: Depth of the extra run in the demo's parameterisation (``cpu`` preset only).
DEMO_DEPTH = 100

#: Training accuracy whose first crossing defines the learning time (the chapter's criterion).
THRESHOLD = {"smoke": 0.2, "cpu": 0.6, "paper": 0.9}

_TRAIN = {
    "smoke": dict(batch_size=16, steps=12, eval_every=4, eval_batch_size=128, checkpoint_every=0),
    "cpu": dict(batch_size=32, steps=1500, eval_every=150, eval_subset=2000, eval_batch_size=500, checkpoint_every=0),
    "paper": dict(
        batch_size=40, steps=15000, eval_every=500, eval_subset=2000, eval_batch_size=1000, checkpoint_every=500
    ),
}
_DATA = {
    "smoke": dict(n_train=160, n_test=60, subset_seed=0, stratified=True),
    "cpu": dict(),  # the full training and test sets
    "paper": dict(),
}

DESCRIPTION = {
    "smoke": (
        "Smoke test: critical Delta-Orthogonal tanh CNNs of width 4 and depths 2 and 8, trained and with the "
        "block frozen, 12 steps of batch 16 on 160 Fashion-MNIST training images, 60 test images."
    ),
    "cpu": (
        "CPU scale: critical Delta-Orthogonal tanh CNNs of width c = 16 and depths 10, 100 and 1,000 (3 seeds "
        "each) and 10,000 (1 seed), each trained and with its deep block frozen, 1,500 steps of batch 32 "
        "(0.8 epoch) on the full Fashion-MNIST training set (60,000 images), test accuracy on a stratified "
        "2,000-image test subset every 150 steps and on all 10,000 test images at the end."
    ),
    "paper": (
        "Paper scale (Xiao et al. 2018, Figure 1): critical Delta-Orthogonal tanh CNNs of width c = 128 and "
        "depths 1,250, 2,500, 5,000 and 10,000 on the full MNIST and CIFAR-10 training sets, 15,000 steps of "
        "batch 40 (10 MNIST epochs), full test sets, trained and with the block frozen; defined, not trained "
        "here (it needs a GPU)."
    ),
}


def _checkpoint_every(preset: str, depth: int) -> int:
    """Checkpoints only where a step is expensive (1,000 layers and more on the CPU)."""
    if preset == "cpu" and depth >= 1000:
        return 25 if depth < 10000 else 10
    return _TRAIN[preset]["checkpoint_every"]


def rates(depth: int, variant: str) -> dict[str, float]:
    """Per-group learning rates of ``variant`` (``"trained"``, ``"frozen"``) at ``depth``.

    :func:`signalprop.parameterisation.variant_rates` at the base rate :data:`BASE_LR`.
    """
    return parameterisation.variant_rates(depth, BASE_LR, variant)


def config(preset: str, name: str, depth: int, seed: int, variant: str) -> dict[str, Any]:
    """One job of ``preset``: data set ``name``, ``depth``, ``seed`` and ``variant``.

    ``variant`` is ``"trained"``, ``"frozen"`` (:func:`rates`) or ``"demo"`` (the demo's
    parameterisation: one rate for every parameter, no read-out scale).  Other
    chapters build on it (:mod:`signalprop.presets.orthogonal_vs_gaussian`,
    :mod:`signalprop.presets.generalisation_depth`).

    Raises
    ------
    ValueError
        An unknown preset or variant.
    """
    if preset not in DEPTHS:
        raise ValueError(f"preset must be one of {tuple(DEPTHS)}, got {preset!r}")
    if variant not in (*VARIANTS, "demo"):
        raise ValueError(f"variant must be one of {(*VARIANTS, 'demo')}, got {variant!r}")
    width = models.paper_width(depth) if preset == "paper" else WIDTH[preset]
    demo = variant == "demo"
    model = models.model_config_for_dataset(
        name, depth=depth, channels=width, kernel_init="delta_orthogonal", seed=seed
    )
    if not demo:
        model["readout_scale"] = "auto"
    train = dict(
        optimizer="momentum",
        lr=BASE_LR,
        momentum=MOMENTUM,
        seed=seed,
        **{**_TRAIN[preset], "checkpoint_every": _checkpoint_every(preset, depth)},
    )
    if not demo:
        train["lr_groups"] = rates(depth, variant)
    return {
        "data": {"name": name, **_DATA[preset]},
        "model": model,
        "train": train,
        "meta": {
            "chapter": CHAPTER,
            "preset": preset,
            "figure": "Xiao et al. 2018, Figure 1",
            "critical": "q* = 1/depth (authors' demo)",
            "variant": variant,
            "parameterisation": "demo: one rate" if demo else "depth-scaled (chapter section 'A parameterisation')",
        },
    }


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiment configurations of ``preset`` (``"smoke"``, ``"cpu"`` or ``"paper"``), cheapest first.

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
            for seed in SEEDS[preset][depth] if preset in SEEDS else (0,):
                for variant in VARIANTS:
                    out.append(config(preset, name, depth, seed, variant))
    if preset == "cpu":
        out.insert(0, config(preset, DATASETS[preset][0], DEMO_DEPTH, 0, "demo"))
    return out
