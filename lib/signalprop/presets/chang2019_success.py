"""Presets of the chapter ``chang2019/training_success``: Chang (2019), chapter 5.

The probability that a deep fully connected network of constant width trains, over a grid of
depth ``L`` x learning rate ``alpha``, for four optimisers (SGD, SGD with momentum 0.9, Adam,
RMSProp), two activations (tanh, ReLU) and two initialisations (scaled Gaussian, orthogonal),
all with ``sigma_w2 mu_1 = 1`` and zero biases (:class:`signalprop.fcnet.FCNet`), batch 100.
Every run's history records, on the first 256 held-out images, the vanishing node indicator
``R_sq`` and ``sigma_w2 mu_1`` of every hidden layer (:meth:`signalprop.fcnet.FCNet.probe_statistics`):
the quantities of Figs. 5.5-5.7.

Choices the thesis does not state (ours):

* ``sigma_w2 = 1 / mu_1`` with ``mu_1`` in the limit ``q -> 0`` of small pre-activations,
  i.e. ``sigma_w2 = 1`` for tanh (the zero-bias critical point) and 2 for ReLU (He et al.);
  the read-out ``width -> 10`` has ``sigma_w2 = 1`` and the same weight law;
* pixels standardised over the training set (:func:`signalprop.data.load_dataset`);
* the success criterion of the ``cpu`` preset (:data:`SUCCESS_ACCURACY`): the thesis counts a
  run as successful when its training accuracy exceeds 90 % within 100 epochs of MNIST,
  just under what a linear softmax classifier reaches there (about 92 %).  On Fashion-MNIST a
  linear classifier reaches about 84 %, and the ``cpu`` runs are 1,000 steps (1.7 epochs), so
  success is a running training accuracy (mean over the 100 minibatches before a record) of at
  least 80 % at any record;
* the learning rates of the ``cpu`` preset are the thesis's range moved up one decade
  (SGD and momentum 1e-3 to 1e-1, Adam and RMSProp 1e-5 to 1e-3), since the runs are 60 times
  shorter than the thesis's 100 epochs.

Presets:

* ``smoke``: 16 tiny networks (one per optimiser x activation x initialisation), 10 steps;
* ``cpu``: width 100, depths 10, 30, 100 (``L / N`` from 0.1 to 1, as the thesis's 25 to 500 at
  ``N = 500``), three learning rates per optimiser, seeds 0 and 1: 288 runs on Fashion-MNIST;
* ``paper``: the thesis's grid, MNIST, ``N = 500``, 11 depths from 25 to 500 x 9 learning
  rates (log-spaced; SGD and momentum 1e-4 to 1e-2, Adam and RMSProp 1e-6 to 1e-4), 20 seeds,
  100 epochs: 99 cells x 20 runs x 16 configurations = 31,680 runs, for a Ray cluster
  (``TTL_RAY_ADDRESS=auto python3 tasks.py run chang2019/training_success paper``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

CHAPTER = "chang2019/training_success"

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
ACTIVATIONS = ("tanh", "relu")
INITS = ("gaussian", "orthogonal")
#: sigma_w2 = 1 / mu_1(q -> 0) of each activation.
SIGMA_W2 = {"tanh": 1.0, "relu": 2.0}
#: Momentum coefficient of "SGD + momentum" (Chang 2019, section 5.1).
MOMENTUM = 0.9
#: Training accuracy a run must reach (at any record) to count as a success.
SUCCESS_ACCURACY = {"smoke": 0.5, "cpu": 0.80, "paper": 0.90}

WIDTH = {"smoke": 8, "cpu": 100, "paper": 500}
DEPTHS = {
    "smoke": (4,),
    "cpu": (10, 30, 100),
    "paper": tuple(int(round(v)) for v in np.geomspace(25, 500, 11)),
}
_LR_CPU = {"sgd": (1e-3, 1e-2, 1e-1), "momentum": (1e-3, 1e-2, 1e-1), "adam": (1e-5, 1e-4, 1e-3),
           "rmsprop": (1e-5, 1e-4, 1e-3)}
_LR_PAPER_SGD = tuple(float(v) for v in np.geomspace(1e-4, 1e-2, 9))
_LR_PAPER_ADAPTIVE = tuple(float(v) for v in np.geomspace(1e-6, 1e-4, 9))
LEARNING_RATES: dict[str, dict[str, tuple[float, ...]]] = {
    "smoke": {"sgd": (1e-2,), "momentum": (1e-2,), "adam": (1e-3,), "rmsprop": (1e-3,)},
    "cpu": _LR_CPU,
    "paper": {"sgd": _LR_PAPER_SGD, "momentum": _LR_PAPER_SGD, "adam": _LR_PAPER_ADAPTIVE,
              "rmsprop": _LR_PAPER_ADAPTIVE},
}
SEEDS = {"smoke": (0,), "cpu": (0, 1), "paper": tuple(range(20))}

_DATA = {
    "smoke": {"name": "fashion-mnist", "n_train": 250, "n_test": 120, "subset_seed": 0, "stratified": True},
    "cpu": {"name": "fashion-mnist"},
    "paper": {"name": "mnist"},
}
_TRAIN = {
    "smoke": {"batch_size": 25, "steps": 10, "eval_every": 5, "eval_batch_size": 120},
    "cpu": {"batch_size": 100, "steps": 1000, "eval_every": 100, "eval_subset": 2000, "eval_batch_size": 1000},
    # 100 epochs of the 60,000 MNIST training images at batch 100
    "paper": {"batch_size": 100, "steps": 60000, "eval_every": 600, "eval_subset": 2000, "eval_batch_size": 1000,
              "checkpoint_every": 3000},
}

DESCRIPTION = {
    "smoke": (
        "Smoke test: 16 fully connected networks of width 8 and depth 4 (4 optimisers x tanh/ReLU x "
        "Gaussian/orthogonal), 10 steps of batch 25 on 250 Fashion-MNIST training images (120 held out)."
    ),
    "cpu": (
        "CPU scale: 288 fully connected networks of width N = 100 on the full Fashion-MNIST training set: depths "
        "L in {10, 30, 100} x 3 learning rates per optimiser (SGD and SGD + momentum 0.9: 1e-3, 1e-2, 1e-1; Adam "
        "and RMSProp: 1e-5, 1e-4, 1e-3) x tanh/ReLU x scaled Gaussian/orthogonal x seeds 0 and 1, 1,000 steps of "
        "batch 100 (1.7 epochs); success = running training accuracy of at least 80 % at any record (every "
        "100 steps); R_sq and sigma_w2 mu_1 of every layer on the first 256 test images."
    ),
    "paper": (
        "Paper scale (Chang 2019, chapter 5): 31,680 fully connected networks of width N = 500 on MNIST: 11 "
        "depths from 25 to 500 x 9 learning rates (SGD and momentum 1e-4 to 1e-2, Adam and RMSProp 1e-6 to "
        "1e-4) x 4 optimisers x tanh/ReLU x scaled Gaussian/orthogonal x 20 seeds, 100 epochs of batch 100; "
        "success = training accuracy above 90 %. Defined for a Ray cluster, not trained here."
    ),
}


def _check_preset(preset: str) -> None:
    if preset not in WIDTH:
        raise ValueError(f"preset must be one of {tuple(WIDTH)}, got {preset!r}")


def config(preset: str, optimizer: str, activation: str, init: str, depth: int, lr: float,
           seed: int) -> dict[str, Any]:
    """One run: an :class:`~signalprop.fcnet.FCNet` classifier of ``preset``'s width and data.

    Raises
    ------
    ValueError
        Unknown preset, optimiser, activation or initialisation.
    """
    _check_preset(preset)
    for name, value, known in (("optimizer", optimizer, OPTIMIZERS), ("activation", activation, ACTIVATIONS),
                               ("init", init, INITS)):
        if value not in known:
            raise ValueError(f"{name} must be one of {known}, got {value!r}")
    train = {"optimizer": optimizer, "lr": float(lr), "seed": int(seed), **_TRAIN[preset]}
    if optimizer == "momentum":
        train["momentum"] = MOMENTUM
    return {
        "data": dict(_DATA[preset]),
        "model": {
            "factory": "signalprop.fcnet:FCNet",
            "width": WIDTH[preset],
            "depth": int(depth),
            "activation": activation,
            "weights": init,
            "sigma_w2": SIGMA_W2[activation],
            "in_features": 784,
            "out_features": 10,
            "flatten_input": True,
            "seed": int(seed),
        },
        "train": train,
        "meta": {"chapter": CHAPTER, "preset": preset, "figure": "Chang (2019), chapter 5"},
    }


def configs(preset: str) -> list[dict[str, Any]]:
    """Every run of ``preset``: optimiser-, then activation-, initialisation-, depth-, rate- and seed-major.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    _check_preset(preset)
    return [
        config(preset, opt, act, init, depth, lr, seed)
        for opt in OPTIMIZERS
        for act in ACTIVATIONS
        for init in INITS
        for depth in DEPTHS[preset]
        for lr in LEARNING_RATES[preset][opt]
        for seed in SEEDS[preset]
    ]


def succeeded(result: Mapping[str, Any], preset: str) -> bool:
    """Whether a stored run counts as a success at ``preset``: some record's running training accuracy
    reaches :data:`SUCCESS_ACCURACY` (a diverged run never does after its divergence).

    Raises
    ------
    ValueError
        Unknown preset, or a result without a history.
    """
    _check_preset(preset)
    history = result.get("history")
    if not isinstance(history, list):
        raise ValueError("result has no history")
    accs = [r.get("train_accuracy") for r in history]
    return any(a is not None and a >= SUCCESS_ACCURACY[preset] for a in accs)
