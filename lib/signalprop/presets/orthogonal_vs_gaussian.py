"""Presets of the chapter ``xiao2018/orthogonal_vs_gaussian`` (Xiao et al. 2018, Fig. 5).

A deep vanilla tanh CNN (:class:`signalprop.models.VanillaCNN`) at one critical point
``(sigma_w2, sigma_b2)`` of the tanh critical line with ``q* = 1 / depth`` (the authors'
demo heuristic, :func:`signalprop.models.critical_parameters`) is trained from three
initialisations of its deep block that share those variances:

* ``"gaussian"``: spatially uniform i.i.d. Gaussian kernels (eq. (2.13) with uniform ``v``);
* ``"orthogonal"``: Algorithm 1 (spatially uniform orthogonal kernels);
* ``"delta_orthogonal"``: Algorithm 2, for reference.

The paper (Fig. 5) compares the first two at depth 4,000 on MNIST for 90,000 steps.
Hyper-parameters the paper does not state are the authors' demo values (SGD with
momentum 0.95, learning rate 1e-2; the paper does not state its optimiser);
the batch size ~40 is derived from "90,000 steps (~60 epochs)" on 60,000 images
(the authors' demo; not stated in the paper).
"""

from __future__ import annotations

from typing import Any

from signalprop import models

CHAPTER = "xiao2018/orthogonal_vs_gaussian"

#: Deep-block initialisations compared, in plotting order.
SCHEMES = ("gaussian", "orthogonal", "delta_orthogonal")

#: The authors' demo learning rate (at depth 16); the paper does not state its own.
DEMO_LR = 1e-2

# Per preset: data, subset sizes (None: the whole split), deep block, batch, steps, evaluation
# interval, learning rate of the comparison, kernels, seeds, checkpoint interval, and the steps of
# an extra orthogonal run at the demo learning rate (0: none; only where ``lr`` differs from it),
# and further seeds of the Gaussian and orthogonal comparison runs (the two the paper compares).
_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": "fashion-mnist", "n_train": 200, "n_test": 100, "depth": 6, "channels": 4,
        "batch_size": 16, "steps": 12, "eval_every": 4, "lr": 1e-4, "schemes": SCHEMES, "seeds": (0,),
        "checkpoint_every": 0, "demo_lr_steps": 8, "extra_seeds": (1,),
    },
    "cpu": {
        "data": "fashion-mnist", "n_train": None, "n_test": 1000, "depth": 128, "channels": 16,
        "batch_size": 32, "steps": 2000, "eval_every": 100, "lr": 1e-4, "schemes": SCHEMES, "seeds": (0,),
        "checkpoint_every": 100, "demo_lr_steps": 400, "extra_seeds": (1,),
    },
    "paper": {
        "data": "mnist", "n_train": None, "n_test": None, "depth": 4000, "channels": models.paper_width(4000),
        "batch_size": 40, "steps": 90000, "eval_every": 500, "lr": DEMO_LR, "schemes": ("gaussian", "orthogonal"),
        "seeds": (0,), "checkpoint_every": 1000, "demo_lr_steps": 0, "extra_seeds": (),
    },
}


def _describe(preset: str) -> str:
    s = _SCALES[preset]
    data = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}[s["data"]]
    n_train = "all 60,000" if s["n_train"] is None else f"{s['n_train']:,}"
    n_test = "all 10,000" if s["n_test"] is None else f"{s['n_test']:,}"
    kinds = ", ".join(k.replace("_", "-") for k in s["schemes"])
    return (
        f"{data} ({n_train} training and {n_test} test images), depth {s['depth']:,}, {s['channels']} channels, "
        f"critical tanh with q* = 1/depth, deep-block kernels {kinds}, {s['steps']:,} steps of SGD with "
        f"momentum 0.95, learning rate {s['lr']:g}, batch {s['batch_size']}, "
        f"{len(s['seeds']) + len(s['extra_seeds'])} seed(s) for Gaussian and orthogonal, {len(s['seeds'])} otherwise"
        + (
            f"; plus one orthogonal run of {s['demo_lr_steps']:,} steps at the demo learning rate {DEMO_LR:g}."
            if s["demo_lr_steps"]
            else "."
        )
    )


DESCRIPTION = {preset: _describe(preset) for preset in _SCALES}


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiments of ``preset`` (``"smoke"``, ``"cpu"`` or ``"paper"``): one per kernel and seed.

    ``meta.role`` is ``"comparison"`` for the runs compared in the chapter (same learning
    rate for every kernel; Gaussian and orthogonal also with ``extra_seeds``) and
    ``"demo_lr"`` for the extra orthogonal run at the demo learning rate, which shows what
    that rate does at the preset's depth.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in _SCALES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {tuple(_SCALES)}")
    s = _SCALES[preset]
    sigma_w2, sigma_b2 = models.critical_parameters(depth=s["depth"])
    data: dict[str, Any] = {"name": s["data"], "subset_seed": 0, "stratified": True}
    if s["n_train"] is not None:
        data["n_train"] = s["n_train"]
    if s["n_test"] is not None:
        data["n_test"] = s["n_test"]
    jobs = [(seed, scheme, s["lr"], s["steps"], "comparison") for seed in s["seeds"] for scheme in s["schemes"]]
    if s["demo_lr_steps"]:
        jobs += [(seed, "orthogonal", DEMO_LR, s["demo_lr_steps"], "demo_lr") for seed in s["seeds"]]
    jobs += [
        (seed, scheme, s["lr"], s["steps"], "comparison")
        for seed in s["extra_seeds"]
        for scheme in ("gaussian", "orthogonal")
    ]
    out = []
    for seed, scheme, lr, steps, role in jobs:
        model = models.model_config_for_dataset(
            s["data"],
            depth=s["depth"],
            channels=s["channels"],
            kernel_init=scheme,
            sigma_w2=sigma_w2,
            sigma_b2=sigma_b2,
            seed=seed,
        )
        train = {
            "optimizer": "momentum",
            "lr": lr,
            "momentum": 0.95,
            "batch_size": s["batch_size"],
            "steps": steps,
            "eval_every": s["eval_every"],
            "eval_batch_size": 500,
            "checkpoint_every": s["checkpoint_every"],
            "seed": seed,
        }
        meta = {"figure": "Xiao et al. (2018), Fig. 5", "scheme": scheme, "role": role, "preset": preset}
        out.append({"data": dict(data), "model": model, "train": train, "meta": meta})
    return out
