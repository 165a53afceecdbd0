"""Presets of the chapter ``xiao2018/generalisation_depth`` (Xiao et al. 2018, Figs. 3 and 4a, sec. 3).

Every job is a job of the depth ladder (:func:`signalprop.presets.depth_ladder.config`: the
critical point ``q* = 1 / depth`` of the tanh critical line, the depth-scaled
parameterisation, trained and with the deep block frozen) with only the deep block's kernels
or the stem's strides changed:

* Fig. 3 (``meta["figure"] == "fig3"``): spatially uniform orthogonal kernels (Algorithm 1,
  ``kernel_init="orthogonal"``) on a ladder of depths, against Delta-Orthogonal kernels
  (Algorithm 2), which keep every Fourier mode;
* Fig. 4a (``"fig4a"``): critical Gaussian kernels with the spatial variance profiles GS0
  (delta) ... GS4 (uniform) of :func:`signalprop.models.gs_profile`, at two depths;
* ``"no_downsampling"`` (:func:`no_downsampling_configs`): the paper's 50-layer network
  without downsampling (its section 3; CIFAR-10, 89.90 % test accuracy), Delta-Orthogonal
  at depth 50 with the stem's strides 1, 2, 2 and 1, 1, 1 (``downsample=False``).

Every configuration carries ``meta = {"figure": ..., "family": ..., "variant": ...}``;
``family`` is the kernel name (``"orthogonal"``, ``"delta_orthogonal"``, ``"gaussian"``) or
``"GS<level>"``.

At the ``cpu`` preset the Fig. 3 ladder reuses runs of other chapters that are, key for key,
the jobs this chapter would define (:func:`reference_configs`): the depth ladder's
Delta-Orthogonal runs at depths 10, 100 and 1,000 and the uniform orthogonal 1,000-layer runs
of ``xiao2018/orthogonal_vs_gaussian``.  This chapter trains the uniform orthogonal networks at
depths 10 and 100 and the GS family.

Scales:

* ``smoke``: the depth ladder's smoke settings (160 Fashion-MNIST images, width 4, 12 steps),
  both Fig. 3 kernels and GS0-GS4 at depths 2 and 4;
* ``cpu``: the full Fashion-MNIST training set, ``c = 16``, 1,500 steps of batch 32
  (0.8 epoch), seeds 0, 1, 2, GS0-GS4 at depths 10 and 100;
* ``paper``: CIFAR-10 at ``c = paper_width(depth)``, the paper's depths 32 ... 8192 for
  uniform orthogonal, Delta-Orthogonal and uniform Gaussian kernels, GS0-GS4 at depths 32 and
  256, the depth ladder's ``paper`` settings trained for :data:`PAPER_STEPS` steps (our
  choice: the paper states neither the optimiser nor the number of steps).
"""

from __future__ import annotations

from typing import Any

from signalprop import parameterisation
from signalprop.models import gs_profile
from signalprop.presets import depth_ladder
from signalprop.presets import orthogonal_vs_gaussian as ovg

CHAPTER = "xiao2018/generalisation_depth"

#: Depths of this chapter's own Fig. 3 jobs.
DEPTHS = {
    "smoke": (2, 4),
    "cpu": (10, 100),
    "paper": tuple(2**k for k in range(5, 14)),  # 32, 64, ..., 8192 (Fig. 3)
}
#: Depths of the Fig. 4a part (GS0-GS4 at each).
GS_DEPTHS = {"smoke": (2, 4), "cpu": (10, 100), "paper": (32, 256)}
#: Kernel families of this chapter's own Fig. 3 jobs (``cpu``: the others are reference runs).
FIG3_KERNELS = {
    "smoke": ("orthogonal", "delta_orthogonal"),
    "cpu": ("orthogonal",),
    # the paper's Fig. 3 family plus the uniform Gaussian of its section 4 and the reference
    "paper": ("orthogonal", "delta_orthogonal", "gaussian"),
}
GS_LEVELS = (0, 1, 2, 3, 4)
#: Seeds of the Fig. 3 and Fig. 4a jobs.
SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0,)}
#: Data set of each preset (the paper: CIFAR-10).
DATA = {"smoke": "fashion-mnist", "cpu": "fashion-mnist", "paper": "cifar10"}
#: Training steps of the ``paper`` Fig. 3/4a jobs: 50,000 steps of batch 40 = 40 CIFAR-10 epochs (our choice).
PAPER_STEPS = 50_000

#: Depth of the network without downsampling ("a 50 layers network without downsampling", Xiao et al. 2018, sec. 3).
NO_DOWNSAMPLING_DEPTH = {"smoke": 2, "cpu": 50, "paper": 50}
#: Seeds of the no-downsampling comparison.
NO_DOWNSAMPLING_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0,)}
#: Data set of the no-downsampling comparison (the paper: CIFAR-10).
NO_DOWNSAMPLING_DATA = DATA

DESCRIPTION = {
    "smoke": "Smoke test: the depth ladder's smoke settings (160 Fashion-MNIST training and 60 test images, width 4, "
             "12 steps of batch 16), uniform orthogonal and Delta-Orthogonal kernels and GS0-GS4 at depths 2 and 4, "
             "and the depth-2 network with and without downsampling, each trained and with the block frozen.",
    "cpu": "CPU scale: the depth ladder's settings (the full Fashion-MNIST training set, width c = 16, 1,500 steps of "
           "batch 32 = 0.8 epoch, the depth-scaled parameterisation, test accuracy on a stratified 2,000-image subset "
           "every 150 steps and on all 10,000 test images at the end), each network trained and with its deep block "
           "frozen, seeds 0, 1, 2: uniform orthogonal kernels at depths 10 and 100 (depth 1,000 and the "
           "Delta-Orthogonal reference at 10, 100 and 1,000 are runs of the depth_ladder and orthogonal_vs_gaussian "
           "chapters), GS0-GS4 at depths 10 and 100, and the 50-layer Delta-Orthogonal network with and without "
           "downsampling (stem strides 1, 2, 2 or 1, 1, 1).  The paper used CIFAR-10, c = 256 and depths 32 to 8,192.",
    "paper": "Paper scale: CIFAR-10 (50,000 training, 10,000 test images), c = 256 (depth <= 256) or 128, uniform "
             "orthogonal, uniform Gaussian and Delta-Orthogonal kernels at depths 32, 64, ..., 8192, GS0-GS4 at depths "
             "32 and 256, the depth ladder's paper settings (batch 40, depth-scaled parameterisation) for 50,000 steps "
             "(40 epochs; our choice, the paper states neither optimiser nor steps), trained and with the block "
             "frozen.  "
             "The 50-layer Delta-Orthogonal network with and without downsampling on CIFAR-10, c = 256.",
}


def kernel_config(preset: str, depth: int, seed: int, variant: str, family: str, figure: str) -> dict[str, Any]:
    """The depth ladder's job of ``preset``, ``depth``, ``seed`` and ``variant`` with the deep block's
    kernels of ``family`` (``"orthogonal"``, ``"delta_orthogonal"``, ``"gaussian"`` or ``"GS0"`` ... ``"GS4"``).

    Raises
    ------
    ValueError
        Unknown preset, variant or family.
    """
    if preset not in SEEDS:
        raise ValueError(f"preset must be one of {tuple(SEEDS)}, got {preset!r}")
    gs = {f"GS{k}": k for k in GS_LEVELS}
    if family not in ("orthogonal", "delta_orthogonal", "gaussian", *gs):
        raise ValueError(f"unknown kernel family {family!r}")
    c = depth_ladder.config(preset, DATA[preset], depth, seed, variant)
    c["model"]["kernel_init"] = "gaussian" if family in gs else family
    if family in gs:
        c["model"]["v"] = gs_profile(gs[family]).tolist()
    if preset == "paper":
        c["train"]["steps"] = PAPER_STEPS
    c["meta"] = {
        "chapter": CHAPTER,
        "preset": preset,
        "figure": figure,
        "family": family,
        "variant": variant,
        "critical": "q* = 1/depth (authors' demo)",
    }
    return c


def reference_configs(preset: str) -> list[tuple[str, dict[str, Any]]]:
    """The runs of other chapters that complete the Fig. 3 ladder of ``preset``, as ``(chapter, config)``.

    ``cpu``: the depth ladder's Delta-Orthogonal jobs at depths 10, 100 and 1,000 and the uniform
    orthogonal jobs of ``xiao2018/orthogonal_vs_gaussian`` (depth 1,000), trained and frozen, seeds
    0, 1, 2.  Other presets: none (their ladders are this chapter's own jobs).

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in SEEDS:
        raise ValueError(f"preset must be one of {tuple(SEEDS)}, got {preset!r}")
    if preset != "cpu":
        return []
    out = [(depth_ladder.CHAPTER, c) for c in depth_ladder.configs(preset)
           if c["meta"]["variant"] in parameterisation.VARIANTS and c["model"]["depth"] in (10, 100, 1000)]
    out += [(ovg.CHAPTER, c) for c in ovg.configs(preset) if c["model"]["kernel_init"] == "orthogonal"]
    return out


def figure_configs(preset: str) -> list[dict[str, Any]]:
    """This chapter's own Fig. 3 and Fig. 4a jobs of ``preset``, seed-major, deepest GS depth first."""
    if preset not in SEEDS:
        raise ValueError(f"preset must be one of {tuple(SEEDS)}, got {preset!r}")
    out = []
    for seed in SEEDS[preset]:
        for variant in parameterisation.VARIANTS:
            for kernel in FIG3_KERNELS[preset]:
                for depth in DEPTHS[preset]:
                    out.append(kernel_config(preset, depth, seed, variant, kernel, "fig3"))
            for depth in sorted(GS_DEPTHS[preset], reverse=True):
                for level in GS_LEVELS:
                    out.append(kernel_config(preset, depth, seed, variant, f"GS{level}", "fig4a"))
    return out


def no_downsampling_configs(preset: str) -> list[dict[str, Any]]:
    """The 50-layer networks with and without downsampling of ``preset``, seed-major.

    Each is :func:`signalprop.presets.depth_ladder.config` at depth
    :data:`NO_DOWNSAMPLING_DEPTH` (the ``cpu`` preset: the full Fashion-MNIST training set,
    ``c = 16``, 1,500 steps of batch 32; ``paper``: CIFAR-10 at ``c = 256``), in the variants
    ``"trained"`` and ``"frozen"``, with ``model.downsample`` left at its default (strides
    1, 2, 2) or set to ``False`` (strides 1, 1, 1).  A ``cpu`` job without downsampling
    costs about as much as a 1,000-layer job with it (16 times the positions per layer), so
    it is checkpointed every 25 steps.

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in NO_DOWNSAMPLING_DEPTH:
        raise ValueError(f"preset must be one of {tuple(NO_DOWNSAMPLING_DEPTH)}, got {preset!r}")
    out = []
    for seed in NO_DOWNSAMPLING_SEEDS[preset]:
        for downsample in (True, False):
            for variant in parameterisation.VARIANTS:
                c = depth_ladder.config(preset, NO_DOWNSAMPLING_DATA[preset], NO_DOWNSAMPLING_DEPTH[preset], seed,
                                        variant)
                if not downsample:
                    c["model"]["downsample"] = False
                    if preset == "cpu":
                        c["train"]["checkpoint_every"] = 25
                c["meta"] = {
                    "chapter": CHAPTER,
                    "preset": preset,
                    "figure": "no_downsampling",
                    "family": "delta_orthogonal",
                    "downsample": downsample,
                    "variant": variant,
                    "critical": "q* = 1/depth (authors' demo)",
                }
                out.append(c)
    return out


def configs(preset: str) -> list[dict[str, Any]]:
    """The experiments of ``preset``: the Fig. 3 and Fig. 4a jobs (:func:`figure_configs`), then
    the network without downsampling (:func:`no_downsampling_configs`).

    Raises
    ------
    ValueError
        Unknown preset.
    """
    if preset not in DESCRIPTION:
        raise ValueError(f"preset must be one of {sorted(DESCRIPTION)}, got {preset!r}")
    return figure_configs(preset) + no_downsampling_configs(preset)
