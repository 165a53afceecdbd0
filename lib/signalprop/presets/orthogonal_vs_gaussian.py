"""Presets of the chapter ``xiao2018/orthogonal_vs_gaussian`` (Xiao et al. 2018, Fig. 5).

A deep vanilla tanh CNN (:class:`signalprop.models.VanillaCNN`) at the critical point
``q* = 1 / depth`` of the tanh critical line (the authors' demo heuristic,
:func:`signalprop.models.critical_parameters`) is trained from two initialisations of its
deep block that share those variances, and so the same mean-field propagation:

* ``"gaussian"``: spatially uniform i.i.d. Gaussian kernels (eq. (2.13) with uniform ``v``);
* ``"orthogonal"``: Algorithm 1 (spatially uniform orthogonal kernels).

The paper (Fig. 5) compares them at depth 4,000 on MNIST.  Every job is a job of the
depth ladder (:mod:`signalprop.presets.depth_ladder`, Fig. 1) with only the deep block's
kernels changed: the same data, width, steps, depth-scaled parameterisation (read-out scale
``G = 1 / rms`` at initialisation, stem and read-out at 1e-2, block kernels at
``1e-2 / (9 L)``, block biases frozen) and variants ``"trained"`` and ``"frozen"`` (the
control whose deep block stays at initialisation).  The depth ladder's Delta-Orthogonal
runs at the same depth (Algorithm 2) are the chapter's reference.

* ``smoke``: a few steps of tiny networks, for the tests;
* ``cpu``: the full Fashion-MNIST training set, ``c = 16``, depth 1,000, seeds 0, 1, 2,
  1,500 steps of batch 32 (0.8 epoch), as the depth ladder's 1,000-layer runs;
* ``paper``: MNIST, depth 4,000, ``c = 128`` (:func:`signalprop.models.paper_width`), the
  depth ladder's ``paper`` settings (batch 40) trained for the paper's 90,000 steps
  (about 60 epochs).  Defined, not trained here.
"""

from __future__ import annotations

from typing import Any

from signalprop import parameterisation
from signalprop.presets import depth_ladder

CHAPTER = "xiao2018/orthogonal_vs_gaussian"

#: Deep-block initialisations compared, in plotting order.
SCHEMES = ("gaussian", "orthogonal")
#: Variants of every network: trained and its frozen-block control.
VARIANTS = parameterisation.VARIANTS
#: Depth, data set and seeds of each preset (``paper``: Xiao et al. 2018, Fig. 5).
DEPTH = {"smoke": 8, "cpu": 1000, "paper": 4000}
DATASET = {"smoke": "fashion-mnist", "cpu": "fashion-mnist", "paper": "mnist"}
SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0,)}
#: Training steps of the ``paper`` preset: "after 90,000 steps (~60 epochs)" (Xiao et al. 2018, sec. 3.2).
PAPER_STEPS = 90000

DESCRIPTION = {
    "smoke": (
        "Smoke test: critical tanh CNNs of width 4 and depth 8 with i.i.d. Gaussian and spatially uniform "
        "orthogonal kernels, trained and with the block frozen, 12 steps of batch 16 on 160 Fashion-MNIST images."
    ),
    "cpu": (
        "CPU scale: critical tanh CNNs of width c = 16 and depth 1,000 with i.i.d. Gaussian and spatially "
        "uniform orthogonal (Algorithm 1) kernels, 3 seeds each, trained and with the deep block frozen, "
        "1,500 steps of batch 32 (0.8 epoch) on the full Fashion-MNIST training set in the depth-scaled "
        "parameterisation; test accuracy on a stratified 2,000-image test subset every 150 steps and on all "
        "10,000 test images at the end.  The depth ladder's Delta-Orthogonal runs of the same depth are the "
        "reference."
    ),
    "paper": (
        "Paper scale (Xiao et al. 2018, Fig. 5): critical tanh CNNs of width c = 128 and depth 4,000 with "
        "i.i.d. Gaussian and spatially uniform orthogonal kernels on the full MNIST training set, 90,000 steps "
        "of batch 40 (about 60 epochs), trained and with the block frozen; defined, not trained here (it needs "
        "a GPU)."
    ),
}


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiments of ``preset`` (``"smoke"``, ``"cpu"`` or ``"paper"``), seed-major.

    Each is :func:`signalprop.presets.depth_ladder.config` of the same preset, depth,
    seed and variant with ``model.kernel_init`` set to the scheme and this chapter's ``meta``.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in DEPTH:
        raise ValueError(f"preset must be one of {tuple(DEPTH)}, got {preset!r}")
    out = []
    for seed in SEEDS[preset]:
        for scheme in SCHEMES:
            for variant in VARIANTS:
                c = depth_ladder.config(preset, DATASET[preset], DEPTH[preset], seed, variant)
                c["model"]["kernel_init"] = scheme
                if preset == "paper":
                    c["train"]["steps"] = PAPER_STEPS
                c["meta"] = {
                    "chapter": CHAPTER,
                    "preset": preset,
                    "figure": "Xiao et al. (2018), Fig. 5",
                    "scheme": scheme,
                    "variant": variant,
                    "critical": "q* = 1/depth (authors' demo)",
                }
                out.append(c)
    return out
