"""Named presets of the heavy (training) chapters, and running or loading their sweeps.

Every training chapter of Part III has one module in this package that defines its
experiments at three scales:

* ``"smoke"``: seconds, for the tests (tiny subsets, a few steps);
* ``"cpu"``: this project's 2-core CPU, minutes to about an hour per chapter; its
  results are committed under ``book/<part>/results/<chapter>/cpu/`` and rendered by the book;
* ``"paper"``: the settings of the paper on a GPU (MNIST and CIFAR-10).

A chapter module defines ``CHAPTER`` (the chapter's path in the book, e.g.
``"xiao2018/trainability"``), ``DESCRIPTION`` (a dict preset -> one sentence giving the
scale and the data, printed by the chapter) and ``configs(preset) -> list[dict]``
(experiment configurations of :func:`signalprop.experiment.run_experiment`).

A chapter calls :func:`run_or_load`.  The book build and ``pytest --nbval`` only
load stored results (``allow_training=False``): a missing result is an error that
says which command produces it, never a silent retraining.
``python3 tasks.py run <chapter> <preset>`` executes the chapter through papermill
with training allowed: unfinished jobs run (resuming from their checkpoints),
finished ones are loaded.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "PRESETS",
    "chapter_modules",
    "module_for",
    "configs",
    "description",
    "results_dir",
    "missing",
    "run_or_load",
]

PRESETS = ("smoke", "cpu", "paper")


def chapter_modules() -> dict[str, ModuleType]:
    """Every chapter module of this package, keyed by its ``CHAPTER``."""
    out: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        chapter = getattr(module, "CHAPTER", None)
        if chapter is None:
            continue
        if chapter in out:
            raise RuntimeError(f"two preset modules claim chapter {chapter!r}")
        out[chapter] = module
    return out


def module_for(chapter: str) -> ModuleType:
    """The preset module of ``chapter`` (e.g. ``"xiao2018/trainability"``).

    Raises
    ------
    ValueError
        No module defines that chapter.
    """
    modules = chapter_modules()
    if chapter not in modules:
        raise ValueError(f"no presets for chapter {chapter!r}; known: {sorted(modules)}")
    return modules[chapter]


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")


def configs(chapter: str, preset: str) -> list[dict[str, Any]]:
    """The experiment configurations of ``chapter`` at ``preset``."""
    _check_preset(preset)
    return module_for(chapter).configs(preset)


def description(chapter: str, preset: str) -> str:
    """One sentence giving the scale and the data of ``chapter`` at ``preset``."""
    _check_preset(preset)
    return module_for(chapter).DESCRIPTION[preset]


def results_dir(results_root: str | os.PathLike[str], chapter: str, preset: str) -> Path:
    """``<results_root>/<chapter name>/<preset>``: where a chapter's jobs live."""
    _check_preset(preset)
    return Path(results_root) / Path(chapter).name / preset


def missing(configs: Sequence[Mapping[str, Any]], root: str | os.PathLike[str]) -> list[str]:
    """Keys of the jobs of ``configs`` with no final result under ``root``."""
    from signalprop import sweep

    return [sweep.config_key(c) for c in configs if not sweep.is_done(_load(sweep.job_dir(root, c)))]


def _load(directory: Path) -> dict[str, Any] | None:
    from signalprop import store

    return store.load_result(directory / store.RESULT_NAME)


def run_or_load(
    chapter: str,
    preset: str,
    results_root: str | os.PathLike[str],
    *,
    allow_training: bool,
    backend: str | None = None,
    ray_address: str | None = None,
    progress: bool | None = None,
    device: str | None = None,
    workers: int | None = None,
    allow_missing: bool = False,
) -> list[dict[str, Any]]:
    """Results of every job of ``chapter`` at ``preset``, training the missing ones if allowed.

    Returns the rows of :func:`signalprop.sweep.collect` in the order of :func:`configs`.
    Missing jobs run locally, or on the Ray cluster at ``ray_address``; with ``backend=None``
    the environment decides: ``TTL_RAY_ADDRESS`` (e.g. ``auto``) selects Ray at that
    address, so ``TTL_RAY_ADDRESS=auto python3 tasks.py run <chapter> paper`` sends a
    chapter's jobs to a cluster (one GPU per job where GPUs exist).  Local jobs run in
    ``workers`` processes of one thread each (``None``: the environment variable
    ``TTL_WORKERS`` if set, else one job after another at the ``smoke`` preset, whose jobs
    take less time than a worker's start-up, and :func:`signalprop.sweep.default_workers`
    otherwise).  Every job runs under its lock, so concurrent runs of a chapter share its jobs.
    With ``allow_missing`` (and no training) absent jobs come back as rows of status
    ``"missing"`` instead of raising, for a chapter that reports them as not yet run.

    Raises
    ------
    FileNotFoundError
        Some results are missing and neither ``allow_training`` nor ``allow_missing``
        is true; the message names the command that produces them.
    """
    from signalprop import experiment, sweep

    todo = configs(chapter, preset)
    root = results_dir(results_root, chapter, preset)
    absent = missing(todo, root)
    if absent and not allow_training and allow_missing:
        return sweep.collect(root, todo)
    if absent:
        if not allow_training:
            raise FileNotFoundError(
                f"{len(absent)} of {len(todo)} results of {chapter!r} at preset {preset!r} are missing "
                f"under {root} (first: {absent[0]}). Produce them with "
                f"`python3 tasks.py run {chapter} {preset}` (resumes where a previous run stopped)."
            )
        if backend is None:
            ray_address = ray_address or os.environ.get("TTL_RAY_ADDRESS") or None
            backend = "ray" if ray_address else "local"
        if workers is None and os.environ.get("TTL_WORKERS"):
            workers = _positive_int("TTL_WORKERS", os.environ["TTL_WORKERS"])
        if workers is None and preset == "smoke":
            workers = 1  # jobs of a second or two: starting a worker process costs more than it saves
        runner = partial(experiment.run_experiment, progress=progress, device=device)
        sweep.run_sweep(todo, root, runner=runner, backend=backend, ray_address=ray_address, workers=workers)
    return sweep.collect(root, todo)


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return value
