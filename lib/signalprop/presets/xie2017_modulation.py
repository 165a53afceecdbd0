"""Presets of the chapters ``xie2017/modulation`` and ``xie2017/table2``: Xie, Xiong & Pu (2017), §5.3 and Table 2.

Plain 6n+2-layer networks of Conv-BN-ReLU triples (:class:`signalprop.plainnet.PlainNet`) at two
depths, ``n = 7`` (44 layers) and ``n = 18`` (110 layers), trained by the methods of the paper's
Table 2 and by the variants of §5.3 that isolate what error modulation does:

* ``"sgd"``, ``"nesterov"``, ``"adagrad"``, ``"adadelta"``, ``"adam"``, ``"rmsprop"``: He et
  al.'s Gaussian initialisation (``"msra"``) and L2 weight decay (``lambda = 1e-4``), the
  optimiser named.  The paper: "all the common hyper-parameters are identical and specific ones
  are default (except for AdaDelta)", "L2 for all methods except Ours".  Our reading: learning
  rate 0.1 for all (He et al.'s), momentum 0.9 for ``"sgd"`` (He et al.'s SGD has momentum) and
  ``"nesterov"``, torch's default constants otherwise; AdaDelta's learning rate is "ignored"
  (footnote 6), which we read as Zeiler's method proper, torch's ``lr = 1``.
* ``"ortho"``: orthonormal initialisation and the orthonormal regulariser (eq. (3),
  ``lambda = 1e-4``), SGD with momentum 0.9, no modulation;
* ``"ours"``: ``"ortho"`` plus error modulation during the first ``MODULATE_STEPS`` steps,
  consecutive layers rescaled where their error second moments differ by the factor
  :data:`signalprop.modulation.DEFAULT_MISMATCH` or more (the paper's "Ours");
* ``"ours_mismatch1.2"``, ``"ours_mismatch1"`` (110 layers only): ``"ours"`` with the mismatch
  factors 1.2 and 1 (every layer rescaled during the modulation steps): the paper gives no
  criterion, and the default factor 2 was fixed before any training (a sensitivity check);
* ``"isometric"`` (110 layers only): ``"ortho"`` with every layer rescaled at every step
  (``mismatch = 1``), the "isometric" modulation the paper reports as harmful (§5.3);
* ``"ortho_lr0.01"``, ``"ours_lr0.01"``, ``"sgd_lr0.01"`` (110 layers only): ``"ortho"``,
  ``"ours"`` and ``"sgd"`` at learning rate 0.01, the rate at which He et al. (2016) trained their
  110-layer network until its training error fell below 80 % (about 400 iterations), a warm-up the
  paper does not mention (a check of the set-up: our runs are about that long).

Every method carries its regulariser in the model (:meth:`PlainNet.regularization_loss`), so the
optimiser's ``weight_decay`` is 0.  The error second moments of every convolution are recorded
at every record (the paper's Fig. 4 for the 110-layer networks).

The configurations are listed in the order a CPU should train them: one seed at a time, the
110-layer runs of the methods that decide §5.3 first.

Presets: ``smoke`` (tiny, for the tests; one depth, every method once); ``cpu`` (quarter widths,
Fashion-MNIST, 400 steps, modulation during the first 100, 3 seeds at 44 layers and 2 at 110); ``paper`` (CIFAR-10, full
widths, 32,000 steps at the constant rate 0.1 (the part of He et al.'s schedule before its first
division; the training loop has no schedule), modulation during the first 2,500 steps (the paper's Fig. 4 settles after
2,000-3,000 iterations), 3 seeds).
"""

from __future__ import annotations

from typing import Any

from signalprop.modulation import DEFAULT_MISMATCH
from signalprop.presets.xie2017_orthonormality import _DATA, _IMAGES, BATCH, LAM, MOMENTUM  # the same data and settings

CHAPTER = "xie2017/modulation"

#: method -> (initialisation, regulariser, optimiser, learning rate, modulation): modulation ``None`` (none),
#: ``"selective"`` (the first ``MODULATE_STEPS`` steps, mismatch :data:`DEFAULT_MISMATCH`), a number (the same
#: steps with that mismatch factor) or ``"always"`` (every step, mismatch 1)
METHODS = {
    "sgd": ("msra", "l2", "momentum", 0.1, None),
    "nesterov": ("msra", "l2", "nesterov", 0.1, None),
    "adagrad": ("msra", "l2", "adagrad", 0.1, None),
    "adadelta": ("msra", "l2", "adadelta", 1.0, None),
    "adam": ("msra", "l2", "adam", 0.1, None),
    "rmsprop": ("msra", "l2", "rmsprop", 0.1, None),
    "ortho": ("orthonormal", "orthonormal", "momentum", 0.1, None),
    "ours": ("orthonormal", "orthonormal", "momentum", 0.1, "selective"),
    "ours_mismatch1.2": ("orthonormal", "orthonormal", "momentum", 0.1, 1.2),
    "ours_mismatch1": ("orthonormal", "orthonormal", "momentum", 0.1, 1.0),
    "isometric": ("orthonormal", "orthonormal", "momentum", 0.1, "always"),
    "ortho_lr0.01": ("orthonormal", "orthonormal", "momentum", 0.01, None),
    "ours_lr0.01": ("orthonormal", "orthonormal", "momentum", 0.01, "selective"),
    "sgd_lr0.01": ("msra", "l2", "momentum", 0.01, None),
}
#: the methods of the paper's Table 2, in its row order ("ours" last)
TABLE2 = ("nesterov", "adagrad", "adadelta", "adam", "rmsprop", "sgd", "ours")
#: training order within a seed: the 110-layer runs that decide §5.3, then the rest
_PRIORITY = (("ours", 1), ("ortho", 1), ("sgd", 1), ("isometric", 1), ("ours_mismatch1.2", 1),
             ("ours_mismatch1", 1), ("ortho_lr0.01", 1), ("ours_lr0.01", 1), ("ours", 0), ("ortho", 0), ("sgd", 0),
             ("nesterov", 0), ("adagrad", 0), ("adadelta", 0), ("adam", 0), ("rmsprop", 0),
             ("sgd_lr0.01", 1), ("nesterov", 1), ("adagrad", 1), ("adadelta", 1), ("adam", 1), ("rmsprop", 1))
#: the methods trained at the deep network only
_DEEP_ONLY = ("ours_mismatch1.2", "ours_mismatch1", "isometric", "ortho_lr0.01", "ours_lr0.01", "sgd_lr0.01")

#: the shallow and the deep network of each preset (n of 6n + 2)
N_BLOCKS = {"smoke": (1, 1), "cpu": (7, 18), "paper": (7, 18)}
WIDTH = {"smoke": 0.25, "cpu": 0.25, "paper": 1.0}
SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}
#: the seeds of the deep (110-layer) runs: at ``cpu``, two (a 110-layer run costs about three 44-layer ones)
DEEP_SEEDS = {"smoke": (0,), "cpu": (0, 1), "paper": (0, 1, 2)}
MODULATE_STEPS = {"smoke": 2, "cpu": 100, "paper": 2500}
_TRAIN = {
    "smoke": {"batch_size": 25, "steps": 4, "eval_every": 2, "eval_batch_size": 120},
    "cpu": {"batch_size": BATCH, "steps": 400, "eval_every": 50, "eval_subset": 1000, "eval_batch_size": 1000},
    "paper": {"batch_size": BATCH, "steps": 32000, "eval_every": 100, "eval_subset": 1000, "eval_batch_size": 1000,
              "checkpoint_every": 2000},
}

DESCRIPTION = {
    "smoke": ("Smoke test: plain 8-layer networks (n = 1) of widths 4, 8, 16, every method, one seed, 4 steps of "
              "batch 25 on 250 Fashion-MNIST images."),
    "cpu": (
        "CPU scale: plain 44- and 110-layer networks (n = 7 and 18) of Conv-BN-ReLU triples with widths 4, 8, 16 (a "
        "quarter of the paper's), trained for 400 steps of batch 128 on the Fashion-MNIST training set (60,000 images "
        "of 1 x 28 x 28) by SGD with momentum 0.9, Nesterov, AdaGrad, AdaDelta, Adam and RMSProp (msra init + L2, "
        "lambda = 1e-4, learning rate 0.1; AdaDelta 1) and by ortho init + ortho reg with momentum SGD at learning "
        "rate 0.1, without ('ortho') and with ('ours') error modulation during the first 100 steps (mismatch factor "
        "2); at 110 layers also 'ours' with the mismatch factors 1.2 and 1, modulation of every layer at every step "
        "('isometric'), and 'ortho', 'ours' and SGD at learning rate 0.01; 3 seeds at 44 layers, 2 at 110."
    ),
    "paper": (
        "Paper scale (Xie et al. 2017, Table 2 and section 5.3): plain 44- and 110-layer networks of widths 16, 32, "
        "64 on CIFAR-10, the same methods, 32,000 steps of batch 128 at the constant rate (He et al.'s schedule before "
        "its first division; the training loop has no schedule), modulation during the first 2,500 steps, 3 seeds; "
        "defined, not trained here."
    ),
}


def configs(preset: str) -> list[dict[str, Any]]:
    """The runs of ``preset``: seed by seed, the 110-layer runs of "ours", "ortho", "sgd", "isometric" first.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in N_BLOCKS:
        raise ValueError(f"preset must be one of {tuple(N_BLOCKS)}, got {preset!r}")
    channels, size = _IMAGES[preset]
    depths = N_BLOCKS[preset]
    out = []
    for seed in SEEDS[preset]:
        for method, deep in _PRIORITY:
            if preset == "smoke" and deep and method not in _DEEP_ONLY:
                continue  # smoke: one depth (both entries n = 1), every method once
            if deep and seed not in DEEP_SEEDS[preset]:
                continue
            init, regularizer, optimizer, lr, modulated = METHODS[method]
            n = depths[deep]
            steps = _TRAIN[preset]["steps"]
            modulate = 0 if modulated is None else steps if modulated == "always" else MODULATE_STEPS[preset]
            mismatch = {"selective": DEFAULT_MISMATCH, "always": 1.0, None: DEFAULT_MISMATCH}.get(modulated, modulated)
            out.append({
                "data": dict(_DATA[preset]),
                "model": {
                    "factory": "signalprop.plainnet:build",
                    "n": n,
                    "width": WIDTH[preset],
                    "plain": True,
                    "in_channels": channels,
                    "image_size": size,
                    "classes": 10,
                    "init": init,
                    "regularizer": regularizer,
                    "lam": LAM,
                    "modulate_steps": modulate,
                    "mismatch": float(mismatch),
                    "seed": seed,
                },
                "train": {"optimizer": optimizer, "lr": lr, "momentum": MOMENTUM, "weight_decay": 0.0,
                          "seed": seed, **_TRAIN[preset]},
                "meta": {"chapter": CHAPTER, "preset": preset, "method": method, "depth": 6 * n + 2,
                         "figure": "Xie et al. (2017), Table 2, section 5.3, Fig. 4"},
            })
    return out
