"""Presets of the chapter ``xie2017/orthonormality``: Xie, Xiong & Pu (2017), Figs. 2 and 3.

A plain 6n+2-layer network of Conv-BN-ReLU triples (:class:`signalprop.plainnet.PlainNet`,
``n = 7``: 44 layers) trained under two schemes that differ only in the initialisation and the
regulariser:

* ``"ortho"``: orthonormal filters (grouped where ``f_in < f_out``) and the orthonormal
  regulariser of eq. (3), ``lambda = 1e-4``;
* ``"msra+l2"``: He et al.'s Gaussian (``"msra"``) and L2 weight decay, ``lambda = 1e-4``.

Both carry their regulariser in the model (:meth:`PlainNet.regularization_loss`), so the
optimiser's ``weight_decay`` is 0.  No error modulation (``modulate_steps = 0``): the errors
are only measured.  Every history record holds the average filter correlation of eq. (8)
(Fig. 2) and the ratio of the second moments of the first and the last convolution's errors
(Fig. 3) from the model's ``probe_statistics``.  SGD with momentum 0.9 at learning rate 0.1,
batch 128: He et al. (2016)'s CIFAR settings, which the paper inherits.

Presets: ``smoke`` (tiny, for the tests); ``cpu`` (44 layers at half width, Fashion-MNIST,
1,000 steps, a record every 50 steps, 3 seeds); ``paper`` (CIFAR-10, full width; the training
loop has no learning-rate schedule, so He et al.'s 64,000 steps with the rate divided by 10 at
32,000 and 48,000 become 32,000 steps at the constant rate 0.1, the part of their schedule before
the first division).
"""

from __future__ import annotations

from typing import Any

CHAPTER = "xie2017/orthonormality"

#: scheme -> (initialisation, regulariser) of :class:`signalprop.plainnet.PlainNet`
SCHEMES = {"ortho": ("orthonormal", "orthonormal"), "msra+l2": ("msra", "l2")}
LAM = 1e-4
LR = 0.1
MOMENTUM = 0.9
BATCH = 128

N_BLOCKS = {"smoke": 1, "cpu": 7, "paper": 7}
WIDTH = {"smoke": 0.25, "cpu": 0.5, "paper": 1.0}
SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}
_DATA = {
    "smoke": {"name": "fashion-mnist", "n_train": 250, "n_test": 120, "subset_seed": 0, "stratified": True},
    "cpu": {"name": "fashion-mnist"},
    "paper": {"name": "cifar10"},
}
_IMAGES = {"smoke": (1, 28), "cpu": (1, 28), "paper": (3, 32)}
_TRAIN = {
    "smoke": {"batch_size": 25, "steps": 6, "eval_every": 2, "eval_batch_size": 120},
    "cpu": {"batch_size": BATCH, "steps": 1000, "eval_every": 50, "eval_subset": 1000, "eval_batch_size": 1000},
    "paper": {"batch_size": BATCH, "steps": 32000, "eval_every": 50, "eval_subset": 1000, "eval_batch_size": 1000,
              "checkpoint_every": 2000},
}

DESCRIPTION = {
    "smoke": ("Smoke test: plain 8-layer networks (n = 1) of widths 4, 8, 16, both schemes, one seed, 6 SGD steps "
              "of batch 25 on 250 Fashion-MNIST images."),
    "cpu": (
        "CPU scale: plain 44-layer networks (n = 7) of Conv-BN-ReLU triples with widths 8, 16, 32 (half the paper's), "
        "orthonormal init + orthonormal regulariser vs msra init + L2, both with lambda = 1e-4, SGD with momentum 0.9 "
        "at learning rate 0.1, 1,000 steps of batch 128 on the Fashion-MNIST training set (60,000 images of "
        "1 x 28 x 28), 3 seeds per scheme; filter correlation and error second moments recorded every 50 steps."
    ),
    "paper": (
        "Paper scale (Xie et al. 2017, Figs. 2-3): plain 44-layer networks of widths 16, 32, 64 on CIFAR-10, "
        "lambda = 1e-4, SGD with momentum 0.9 at learning rate 0.1, batch 128, 3 seeds; 32,000 steps at the constant "
        "rate (He et al.'s 64,000-step schedule needs a learning-rate schedule, which the training loop does not "
        "have); defined, not trained here."
    ),
}


def configs(preset: str) -> list[dict[str, Any]]:
    """The runs of ``preset``, scheme-major (``"ortho"`` first), seeds in order.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in N_BLOCKS:
        raise ValueError(f"preset must be one of {tuple(N_BLOCKS)}, got {preset!r}")
    channels, size = _IMAGES[preset]
    out = []
    for scheme, (init, regularizer) in SCHEMES.items():
        for seed in SEEDS[preset]:
            out.append({
                "data": dict(_DATA[preset]),
                "model": {
                    "factory": "signalprop.plainnet:build",
                    "n": N_BLOCKS[preset],
                    "width": WIDTH[preset],
                    "plain": True,
                    "in_channels": channels,
                    "image_size": size,
                    "classes": 10,
                    "init": init,
                    "regularizer": regularizer,
                    "lam": LAM,
                    "modulate_steps": 0,
                    "seed": seed,
                },
                "train": {"optimizer": "momentum", "lr": LR, "momentum": MOMENTUM, "weight_decay": 0.0,
                          "seed": seed, **_TRAIN[preset]},
                "meta": {"chapter": CHAPTER, "preset": preset, "scheme": scheme,
                         "figure": "Xie et al. (2017), Figs. 2-3"},
            })
    return out
