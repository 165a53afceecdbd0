"""Presets of the chapter ``xiao2018/trainability``: Fig. 2 of Xiao et al. (2018).

A depth x sigma_w2 grid of vanilla tanh CNNs (:class:`signalprop.models.VanillaCNN`)
whose deep-block kernels are spatially uniform i.i.d. Gaussian (``kernel_init="gaussian"``,
eq. (2.13) with the uniform profile), at ``sigma_b2 = 0.05`` (not stated in the paper:
the value of Schoenholz et al. 2017) and ``sigma_w2`` across the
order-to-chaos transition (critical ``sigma_w2 = 1.7610`` at that ``sigma_b2``).  Every
network is trained for a fixed number of steps; the chapter compares the accuracy reached
with the mean-field depth scale ``xi_c(sigma_w2)``.

Training: the depth-scaled parameterisation of :mod:`signalprop.parameterisation`
(derived in the chapter ``xiao2018/depth_ladder``), with SGD with momentum 0.95 (the
authors' demo optimiser): stem and read-out at the base rate 1e-2, the block's kernels
at ``1e-2 / (9 L)``, its biases frozen, and the read-out scale ``G = 1 / rms`` of the
pooled features measured at initialisation (``readout_scale="auto"``).  Every cell
comes in two variants: ``"trained"`` and its control ``"frozen"``, whose deep block
stays at initialisation (only stem and read-out learn).  The paper states none of
optimiser, learning rate, batch size or step counts: these are our choices.
The same ``(sigma_w2, sigma_b2)`` initialises the stem and the deep block; the read-out is
``N(0, 1/c)`` (:mod:`signalprop.models`).
"""

from __future__ import annotations

from typing import Any

from signalprop import parameterisation, sweep

CHAPTER = "xiao2018/trainability"

#: sigma_b2 of the whole grid (Schoenholz et al. 2017; not stated for Xiao et al. 2018, Fig. 2).
SIGMA_B2 = 0.05

#: Base learning rate (stem and read-out) and momentum: the demo's values.
BASE_LR, MOMENTUM = 1e-2, 0.95
#: Variants of every cell: the network and its frozen-block control.
VARIANTS = parameterisation.VARIANTS

#: The grid of each preset: depths (deep-block layers L) and weight variances sigma_w2.
GRIDS: dict[str, dict[str, tuple]] = {
    "smoke": {"depths": (2, 8), "sigma_w2": (1.0, 1.76, 3.0)},
    "cpu": {"depths": (10, 20, 40, 80, 160), "sigma_w2": (1.0, 1.25, 1.5, 1.76, 2.0, 2.5, 3.0)},
    # Paper: L = 10 ... 600 (section 3.1), sigma_w2 over [1, 4] (the interval is lost in the
    # text extraction; Schoenholz et al. 2017's range, our reading).
    "paper": {
        "depths": (10, 20, 40, 60, 100, 150, 200, 300, 450, 600),
        "sigma_w2": (1.0, 1.25, 1.5, 1.6, 1.7, 1.76, 1.8, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0),
    },
}

DESCRIPTION = {
    "smoke": (
        "Smoke test: 6 tiny networks (width 8, depth 2 and 8, sigma_w2 in {1, 1.76, 3}), each trained and with "
        "its block frozen, for 10 steps on 250 Fashion-MNIST training images (120 held out)."
    ),
    "cpu": (
        "CPU scale: 35 networks of width c = 16 (depths L in {10, 20, 40, 80, 160} x sigma_w2 in "
        "{1, 1.25, 1.5, 1.76, 2, 2.5, 3}, sigma_b2 = 0.05), each trained and with its deep block frozen, "
        "600 steps of batch 32 on the full Fashion-MNIST training set (60,000 images) in the depth-scaled "
        "parameterisation; test accuracy on a stratified 2,000-image test subset every 200 steps and on all "
        "10,000 test images at the end; one seed."
    ),
    "paper": (
        "Paper scale: 130 cells (260 networks) of the paper's width (c = 256 up to depth 256, 128 beyond; "
        "depths 10 to 600 x 13 values of sigma_w2 in [1, 4], sigma_b2 = 0.05) trained on the full MNIST training set "
        "(10,000 test images) for 2,000 steps of batch 100 (step count ours; the paper's is not stated), in the "
        "depth-scaled parameterisation, each trained and with its deep block frozen."
    ),
}

_DATA = {
    "smoke": {"name": "fashion-mnist", "n_train": 250, "n_test": 120, "subset_seed": 0, "stratified": True},
    "cpu": {"name": "fashion-mnist"},  # the full training and test sets
    "paper": {"name": "mnist"},
}

_TRAIN = {
    "smoke": {"batch_size": 32, "steps": 10, "eval_every": 5, "eval_batch_size": 128},
    "cpu": {"batch_size": 32, "steps": 600, "eval_every": 200, "eval_subset": 2000, "eval_batch_size": 500},
    "paper": {"batch_size": 100, "steps": 2000, "eval_every": 250, "eval_batch_size": 1000, "checkpoint_every": 250},
}

_CHANNELS = {"smoke": 8, "cpu": 16, "paper": None}  # None: paper_width(depth)


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiment configurations of ``preset`` ("smoke", "cpu" or "paper"), depth-major.

    Raises
    ------
    ValueError
        An unknown preset.
    """
    if preset not in GRIDS:
        raise ValueError(f"preset must be one of {tuple(GRIDS)}, got {preset!r}")
    grid = GRIDS[preset]
    base = {
        "data": dict(_DATA[preset]),
        "model": {
            "channels": _CHANNELS[preset],
            "kernel_init": "gaussian",
            "sigma_b2": SIGMA_B2,
            "readout_scale": "auto",
            **({"image_size": 28, "in_channels": 1, "num_classes": 10}),
        },
        "train": {
            "optimizer": "momentum",
            "lr": BASE_LR,
            "momentum": MOMENTUM,
            "seed": 0,
            **_TRAIN[preset],
        },
        "meta": {"chapter": CHAPTER, "figure": "Xiao et al. (2018), Fig. 2", "preset": preset},
    }
    out = []
    for config in sweep.grid(base, **{"model.depth": list(grid["depths"]), "model.sigma_w2": list(grid["sigma_w2"])}):
        for variant in VARIANTS:
            c = {section: dict(values) for section, values in config.items()}
            c["train"]["lr_groups"] = parameterisation.variant_rates(c["model"]["depth"], BASE_LR, variant)
            c["meta"]["variant"] = variant
            out.append(c)
    return out
