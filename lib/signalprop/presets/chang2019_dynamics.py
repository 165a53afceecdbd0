"""Presets of the chapter ``chang2019/training_dynamics``: Chang (2019), Figs. 3.4 and 3.5.

A fully connected tanh network of constant width (:class:`signalprop.fcnet.FCNet`), depth 100,
scaled Gaussian weights with ``sigma_w2 mu_1 = 1`` and zero biases, trained with plain SGD at
batch 100 and three learning rates.  Every record of a run's history holds, on the first 256
held-out images, the vanishing node indicator ``R_sq`` of every hidden layer (the output layer's
is Fig. 3.4, all layers' Fig. 3.5) and ``sigma_w2 mu_1`` per layer.

Choices the thesis does not state (ours): ``sigma_w2 = 1`` (``mu_1`` in the limit ``q -> 0``,
the zero-bias critical point of tanh); the two learning rates beside 1e-2 (1e-3 and 1e-4);
standardised pixels; ``R_sq`` measured on held-out images.

Presets: ``smoke`` (tiny, for the tests); ``cpu`` (width N = 200 instead of the thesis's 500,
5 seeds instead of 20-50, one epoch of Fashion-MNIST, a record every 10 steps); ``paper``
(N = 500, MNIST, 20 seeds, 50 epochs).
"""

from __future__ import annotations

from typing import Any

CHAPTER = "chang2019/training_dynamics"

DEPTH = {"smoke": 4, "cpu": 100, "paper": 100}
WIDTH = {"smoke": 8, "cpu": 200, "paper": 500}
LEARNING_RATES = {"smoke": (1e-3, 1e-2), "cpu": (1e-4, 1e-3, 1e-2), "paper": (1e-4, 1e-3, 1e-2)}
SEEDS = {"smoke": (0,), "cpu": (0, 1, 2, 3, 4), "paper": tuple(range(20))}
_DATA = {
    "smoke": {"name": "fashion-mnist", "n_train": 250, "n_test": 120, "subset_seed": 0, "stratified": True},
    "cpu": {"name": "fashion-mnist"},
    "paper": {"name": "mnist"},
}
_TRAIN = {
    "smoke": {"batch_size": 25, "steps": 10, "eval_every": 5, "eval_batch_size": 120},
    "cpu": {"batch_size": 100, "steps": 600, "eval_every": 10, "eval_subset": 1000, "eval_batch_size": 1000},
    "paper": {"batch_size": 100, "steps": 30000, "eval_every": 100, "eval_subset": 2000, "eval_batch_size": 1000,
              "checkpoint_every": 3000},
}

DESCRIPTION = {
    "smoke": "Smoke test: tanh networks of width 8 and depth 4, 10 SGD steps of batch 25 on 250 Fashion-MNIST images.",
    "cpu": (
        "CPU scale: tanh networks of width N = 200 and depth L = 100 (scaled Gaussian, sigma_w2 = 1, zero biases), "
        "plain SGD at learning rates 1e-4, 1e-3 and 1e-2, 5 seeds each, 600 steps of batch 100 (one epoch of the "
        "Fashion-MNIST training set); R_sq of every layer on the first 256 test images every 10 steps."
    ),
    "paper": (
        "Paper scale (Chang 2019, Figs. 3.4 and 3.5): tanh networks of width N = 500 and depth 100 on MNIST, plain "
        "SGD at 1e-4, 1e-3 and 1e-2, 20 seeds, 50 epochs of batch 100; defined, not trained here."
    ),
}


def configs(preset: str) -> list[dict[str, Any]]:
    """The runs of ``preset``, learning-rate-major.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in DEPTH:
        raise ValueError(f"preset must be one of {tuple(DEPTH)}, got {preset!r}")
    out = []
    for lr in LEARNING_RATES[preset]:
        for seed in SEEDS[preset]:
            out.append({
                "data": dict(_DATA[preset]),
                "model": {
                    "factory": "signalprop.fcnet:FCNet",
                    "width": WIDTH[preset],
                    "depth": DEPTH[preset],
                    "activation": "tanh",
                    "weights": "gaussian",
                    "sigma_w2": 1.0,
                    "in_features": 784,
                    "out_features": 10,
                    "flatten_input": True,
                    "seed": seed,
                },
                "train": {"optimizer": "sgd", "lr": lr, "seed": seed, **_TRAIN[preset]},
                "meta": {"chapter": CHAPTER, "preset": preset, "figure": "Chang (2019), Figs. 3.4-3.5"},
            })
    return out
