"""Experiments: a JSON configuration wired to data, a model, the training loop and the result store.

An experiment configuration has the sections ``data``, ``model``, ``train`` and
``meta`` (:func:`check_experiment`).  :func:`run_experiment` runs one into a job
directory: under the job's lock (:class:`signalprop.store.JobLock`) it removes the
temporary files of killed writers, returns the stored result if there is one,
and otherwise loads the data (by default :func:`signalprop.data.load_dataset`),
builds the model (by default :func:`signalprop.models.build_model`) under a fixed
seed, trains (:func:`signalprop.train.train`) with checkpoints in the directory and
writes ``result.json`` (:mod:`signalprop.store`) with the configuration, the
history, the status and a provenance record (:mod:`signalprop.provenance`).

Job identity.  Some settings say how a job is carried out, not what it computes:
how often it checkpoints and the evaluation batch size (:data:`OPERATIONAL`), the
fused or reference deep block and its gradient-checkpoint segments, and the number
of threads (recorded in the provenance only).  :func:`job_identity` drops them, so
:func:`signalprop.sweep.config_key` and the checkpoint's fingerprint do not change
when they do; the result still records the configuration it was run with.

Command line: ``python -m signalprop.experiment --config CONFIG.json --out DIR``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signalprop import store
from signalprop.train import OPERATIONAL_FIELDS, TrainConfig, resolve_device, train

__all__ = [
    "OPERATIONAL",
    "job_identity",
    "check_experiment",
    "load_experiment_data",
    "build_experiment_model",
    "run_experiment",
    "main",
]

#: Keys of each section that are operational settings: recorded, never part of a job's identity.
OPERATIONAL: dict[str, tuple[str, ...]] = {
    "train": OPERATIONAL_FIELDS,
    "model": ("fast", "checkpoint_segments"),
}

_EXPERIMENT_SECTIONS = ("data", "model", "train", "meta")
_DATA_OWN_KEYS = ("name", "loader", "n_train", "n_test", "subset_seed", "stratified")


def job_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as plain JSON without its operational settings (:data:`OPERATIONAL`): what a job's key hashes.

    Raises
    ------
    ValueError
        ``config`` is not a mapping of plain JSON data.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"a configuration must be a mapping, got {type(config).__name__}")
    plain = json.loads(store.canonical_json(config))
    for section, keys in OPERATIONAL.items():
        if isinstance(plain.get(section), dict):
            plain[section] = {k: v for k, v in plain[section].items() if k not in keys}
    return plain


def _import_object(spec: Any, what: str) -> Callable[..., Any]:
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"{what} must be 'module:function', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import {what} {spec!r}: {err}") from None
    if not callable(obj):
        raise ValueError(f"{what} {spec!r} is not callable")
    return obj


def check_experiment(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check an experiment configuration and return it as plain JSON data (a deep copy).

    An experiment configuration is a JSON object with sections

    ``data`` (required)
        ``name`` (data set name), optional ``loader`` (``"module:function"`` called as
        ``loader(name, split, **options)``; default :func:`signalprop.data.load_dataset`),
        optional ``n_train`` / ``n_test`` (seeded subsets of that size, drawn with
        :func:`signalprop.data.subset_indices`), ``subset_seed`` (default 0),
        ``stratified`` (default false); every other key is passed to the loader.
    ``model`` (required)
        Passed to :func:`signalprop.models.build_model`, or, when it has a
        ``factory`` key (``"module:function"``), the other keys are passed to
        ``factory(**kwargs)``, which returns the module.
    ``train`` (optional)
        :class:`TrainConfig` fields.
    ``meta`` (optional)
        Free-form labels (figure, notes); they change the configuration's identity only.

    Raises
    ------
    ValueError
        A missing or unknown section, a section that is not an object, a data
        section without ``name``, an invalid ``train`` section, or a value JSON
        cannot hold.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"an experiment configuration must be a mapping, got {type(config).__name__}")
    plain = json.loads(store.canonical_json(config))
    unknown = sorted(set(plain) - set(_EXPERIMENT_SECTIONS))
    if unknown:
        raise ValueError(f"unknown configuration section(s) {unknown}; known: {list(_EXPERIMENT_SECTIONS)}")
    for section in ("data", "model"):
        if section not in plain:
            raise ValueError(f"the configuration has no {section!r} section")
    for section in _EXPERIMENT_SECTIONS:
        if section in plain and not isinstance(plain[section], dict):
            raise ValueError(f"section {section!r} must be an object, got {plain[section]!r}")
    if not isinstance(plain["data"].get("name"), str):
        raise ValueError("the data section needs a 'name' (string)")
    TrainConfig.from_dict(plain.get("train", {}))
    return plain


def _as_pair(obj: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(obj, "tensors"):  # TensorDataset (signalprop.data.ImageDataset)
        obj = obj.tensors
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return obj[0], obj[1]
    raise ValueError(f"the data loader must return (x, y) or a TensorDataset for {what}, got {type(obj).__name__}")


def load_experiment_data(
    data_config: Mapping[str, Any], root: str | os.PathLike[str] | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The training and held-out ``(x, y)`` pairs described by the ``data`` section (see :func:`check_experiment`)."""
    options = {k: v for k, v in data_config.items() if k not in _DATA_OWN_KEYS}
    if root is not None and "root" not in options:
        options["root"] = os.fspath(root)
    if "loader" in data_config:
        loader = _import_object(data_config["loader"], "data loader")
    else:
        from signalprop import data as sp_data

        loader = sp_data.load_dataset
    out = []
    for split, n_key in (("train", "n_train"), ("test", "n_test")):
        x, y = _as_pair(loader(data_config["name"], split, **options), split)
        n = data_config.get(n_key)
        if n is not None:
            from signalprop.data import subset_indices

            rows = subset_indices(
                y, n, data_config.get("subset_seed", 0), stratified=bool(data_config.get("stratified", False))
            )
            x, y = x[rows], y[rows]
        out.append((x, y))
    return out[0], out[1]


def build_experiment_model(
    model_config: Mapping[str, Any],
    seed: int,
    device: torch.device | str | None = None,
    calibration: torch.Tensor | None = None,
) -> nn.Module:
    """The model described by the ``model`` section, built with torch's global generator seeded by ``seed``.

    The global random state of the caller is left as it was.  ``readout_scale="auto"``
    (:class:`signalprop.models.VanillaCNN` only) is measured on ``calibration``
    (images; :func:`run_experiment` passes the first
    :data:`signalprop.parameterisation.CALIBRATION_IMAGES` training images) with
    :func:`signalprop.parameterisation.readout_scale` and set on the model.

    Raises
    ------
    ValueError
        ``readout_scale="auto"`` without calibration images, or a factory that does not return a module.
    """
    kwargs = dict(model_config)
    auto = kwargs.get("readout_scale") == "auto"
    if auto:
        if calibration is None:
            raise ValueError("readout_scale 'auto' is measured on calibration images: pass calibration=")
        kwargs["readout_scale"] = 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if "factory" in kwargs:
            model = _import_object(kwargs.pop("factory"), "model factory")(**kwargs)
        else:
            from signalprop import models as sp_models

            model = sp_models.build_model(kwargs, device=device)
    if not isinstance(model, nn.Module):
        raise ValueError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
    if auto:
        from signalprop import parameterisation

        scale = parameterisation.readout_scale(model, calibration[: parameterisation.CALIBRATION_IMAGES])
        model.readout_scale = scale
        model.config["readout_scale"] = scale
    return model


def run_experiment(
    config: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    data_root: str | os.PathLike[str] | None = None,
    keep_checkpoint: bool = False,
    wait: bool = True,
) -> dict[str, Any]:
    """Run one experiment into ``out_dir``, continuing it if it was interrupted.

    The whole call holds the job's lock (:class:`signalprop.store.JobLock`): a
    second process running the same job waits for the first (and then returns its
    result) or, with ``wait=False``, raises :class:`signalprop.store.JobBusy`.
    Temporary files of writers killed mid-write are removed once the lock is held.
    If ``out_dir/result.json`` holds a valid result of the same job (equal
    :func:`job_identity`) it is returned without training.  Otherwise the data and the model are made from ``config``
    (see :func:`check_experiment`), :func:`train` runs with its checkpoint at
    ``out_dir/checkpoint.pt`` (resuming from it if present), and the result is
    written atomically to ``out_dir/result.json``; the checkpoint is then removed
    unless ``keep_checkpoint``.

    Parameters
    ----------
    config : mapping
        Experiment configuration (sections ``data``, ``model``, ``train``, ``meta``).
    out_dir : path-like
        The run's directory (created).
    device, progress
        As for :func:`train`.
    data_root : path-like, optional
        Passed to the data loader as ``root`` unless the data section sets one.
    keep_checkpoint : bool
        Keep the last checkpoint (with the trained parameters) after the run.
    wait : bool
        Wait for another process running this job (default), or raise ``JobBusy``.

    Returns
    -------
    dict
        The result document: ``schema``, ``config``, ``config_sha256``, the fields
        returned by :func:`train` (``wall_time_s`` moved into ``provenance``) and
        ``provenance`` (:func:`signalprop.provenance.collect` plus
        ``deterministic`` and ``wall_time_s``).

    Raises
    ------
    ValueError
        Invalid configuration; ``out_dir`` holds the result or checkpoint of another
        job, or an invalid result (the message names the file and what to do).
    """
    plain = check_experiment(config)
    identity = job_identity(plain)
    out = Path(out_dir)
    with store.JobLock(out, wait=wait):
        store.remove_stale_temporaries(out)
        ckpt_path = out / store.CHECKPOINT_NAME
        existing = store.load_result(out / store.RESULT_NAME)
        if existing is not None:
            if job_identity(existing["config"]) != identity:
                raise ValueError(
                    f"{out / store.RESULT_NAME} holds the result of a different configuration; "
                    "use another directory, or delete this one to retrain"
                )
            if not keep_checkpoint:
                ckpt_path.unlink(missing_ok=True)
            return existing
        if not (out / store.CONFIG_NAME).exists():
            store.write_json_atomic(out / store.CONFIG_NAME, plain)
        result = _train_job(plain, identity, ckpt_path, device, progress, data_root)
        store.write_json_atomic(out / store.RESULT_NAME, result)
        if not keep_checkpoint:
            ckpt_path.unlink(missing_ok=True)
        return result


def _train_job(
    plain: dict[str, Any],
    identity: dict[str, Any],
    ckpt_path: Path,
    device: torch.device | str | None,
    progress: bool | None,
    data_root: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """Load the data, build the model, train (resuming from ``ckpt_path``) and make the result document."""
    from signalprop import provenance

    cfg = TrainConfig.from_dict(plain.get("train", {}))
    dev = resolve_device(device)
    train_data, test_data = load_experiment_data(plain["data"], data_root)
    init_seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    model = build_experiment_model(plain["model"], init_seed, dev, calibration=train_data[0])
    outcome = train(
        model,
        train_data,
        test_data,
        cfg,
        checkpoint_path=ckpt_path,
        device=dev,
        progress=progress,
        fingerprint=store.config_sha256(identity),
    )
    wall = outcome.pop("wall_time_s")
    return {
        "schema": store.SCHEMA,
        "config": plain,
        "config_sha256": store.config_sha256(plain),
        **outcome,
        "readout_scale": getattr(model, "readout_scale", None),
        "provenance": {**provenance.collect(dev), "deterministic": cfg.deterministic, "wall_time_s": wall},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m signalprop.experiment --config CONFIG.json --out DIR [options]``."""
    parser = argparse.ArgumentParser(prog="python -m signalprop.experiment", description="Run one experiment.")
    parser.add_argument("--config", required=True, help="experiment configuration (JSON file)")
    parser.add_argument("--out", required=True, help="output directory (result.json, checkpoint.pt)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--data-root", default=None, help="directory the data loader searches")
    parser.add_argument("--keep-checkpoint", action="store_true", help="keep the final checkpoint")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    args = parser.parse_args(argv)
    config = store.read_json(args.config)
    result = run_experiment(
        config,
        args.out,
        device=args.device,
        progress=args.progress,
        data_root=args.data_root,
        keep_checkpoint=args.keep_checkpoint,
    )
    final = result["final"] or {}
    summary = {k: final.get(k) for k in ("step", "train_accuracy", "test_accuracy")}
    print(json.dumps({"status": result["status"], "out": str(args.out), **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
