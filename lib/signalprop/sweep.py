"""Sweeps: many independent training runs, resumable, locally or on a Ray cluster.

A sweep is a list of experiment configurations (:func:`signalprop.train.check_experiment`).
Each configuration is one job whose key is a short prefix of the SHA-256 of its
canonical JSON text (sorted keys, no spaces: :func:`signalprop.train.canonical_json`),
so the key depends on the configuration's content only, not on the order of its
keys or on its place in the sweep.  Job ``key`` lives in ``<root>/<key>/``:
``config.json`` (written when the job starts), the runner's checkpoint while it
runs and ``result.json`` when it has finished or diverged.

Running a sweep again skips the jobs that have a result and calls the runner for
the others, which by default (:func:`signalprop.train.run_experiment`) continue
from their checkpoints: a sweep stopped at any point resumes where it stopped.

``backend="ray"`` submits the pending jobs as Ray tasks (one CPU each, and one
GPU each when this machine has CUDA), on the cluster at ``ray_address`` or on a
Ray instance started for the sweep (and shut down after it); a Ray instance the
caller has already started is used as it is.  ``root`` must then be on a file
system that every worker sees.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch

from signalprop.train import RESULT_NAME, canonical_json, load_result, run_experiment, write_json_atomic

__all__ = ["KEY_LENGTH", "BACKENDS", "config_key", "job_dir", "grid", "is_done", "run_sweep", "collect"]

#: Hexadecimal digits of the SHA-256 used as a job key (48 bits).
KEY_LENGTH = 12
BACKENDS = ("local", "ray")
_DONE = ("finished", "diverged")
_COLUMNS = (
    "key",
    "status",
    "steps_completed",
    "diverged_at_step",
    "step",
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "history",
)

Runner = Callable[[dict[str, Any], Path], dict[str, Any]]


def config_key(config: Mapping[str, Any], length: int = KEY_LENGTH) -> str:
    """The job key of ``config``: the first ``length`` hex digits of the SHA-256 of its canonical JSON.

    Raises
    ------
    ValueError
        ``config`` is not plain JSON data, or ``length`` is not in 1..64.
    """
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 64:
        raise ValueError(f"length must be an integer in 1..64, got {length!r}")
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()[:length]


def job_dir(root: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    """The directory ``<root>/<config_key(config)>`` of a job."""
    return Path(root) / config_key(config)


def _axis_path(name: str) -> list[str]:
    parts = name.split(".") if "." in name else name.split("__")
    if not all(parts):
        raise ValueError(f"axis {name!r} is not a key path like 'train.lr' or 'train__lr'")
    return parts


def grid(base: Mapping[str, Any], **axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the values of ``axes`` applied to a copy of ``base`` (a Cartesian product).

    An axis name is a key path into the configuration, written with dots
    (``**{"train.lr": [...]}``) or double underscores (``train__lr=[...]``);
    missing intermediate objects are created.  The values of an axis are any
    iterable but a string or mapping (a NumPy array becomes Python numbers).
    The first axis varies slowest.

    Examples
    --------
    >>> [c["train"]["lr"] for c in grid({"train": {}}, train__lr=[0.1, 0.01])]
    [0.1, 0.01]

    Raises
    ------
    ValueError
        An axis without values, given as a string or mapping, or whose path
        crosses a value that is not an object.
    """
    if not isinstance(base, Mapping):
        raise ValueError(f"base must be a mapping, got {type(base).__name__}")
    names, values = [], []
    for name, vals in axes.items():
        if hasattr(vals, "tolist") and not isinstance(vals, Mapping):  # numpy arrays: plain Python numbers
            vals = vals.tolist()
        if isinstance(vals, (str, bytes, Mapping)) or not isinstance(vals, Iterable):
            raise ValueError(f"axis {name!r} must be a list of values, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise ValueError(f"axis {name!r} has no values")
        names.append(_axis_path(name))
        values.append(vals)
    out = []
    for combo in itertools.product(*values):
        config = deepcopy(dict(base))
        for path, value in zip(names, combo, strict=True):
            node = config
            for part in path[:-1]:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ValueError(f"axis {'.'.join(path)!r}: {part!r} holds {child!r}, not an object")
                node = child
            node[path[-1]] = deepcopy(value)
        out.append(config)
    return out


def is_done(result: Mapping[str, Any] | None) -> bool:
    """Whether a stored result is final (status ``"finished"`` or ``"diverged"``)."""
    return result is not None and result.get("status") in _DONE


def _stored(directory: Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    result = load_result(directory / RESULT_NAME)
    if result is not None and result.get("config") != config:
        raise ValueError(f"{directory / RESULT_NAME} holds another configuration (a key collision?)")
    return result if is_done(result) else None


def _run_job(runner: Runner, config: dict[str, Any], directory: str) -> dict[str, Any]:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "config.json").exists():
        write_json_atomic(path / "config.json", config)
    return runner(config, path)


def run_sweep(
    configs: Sequence[Mapping[str, Any]],
    root: str | os.PathLike[str],
    *,
    runner: Runner | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration of ``configs`` that has no final result under ``root``.

    Parameters
    ----------
    configs : sequence of mappings
        Plain-JSON configurations; duplicates run once.
    root : path-like
        The sweep's directory; job ``k`` runs in ``root/k``.
    runner : callable, optional
        ``runner(config, directory) -> result`` (a JSON-ready dict that it also
        writes to ``directory/result.json``); default
        :func:`signalprop.train.run_experiment`. Use :func:`functools.partial`
        for options such as ``device`` or ``progress``. On Ray it must be picklable.
    backend : {"local", "ray"}
        ``"local"`` runs the jobs one after another in this process; ``"ray"``
        runs them as Ray tasks with ``num_gpus=1`` when :func:`torch.cuda.is_available`,
        else 0.
    ray_address : str, optional
        Address of a Ray cluster (``"auto"`` for the local one); with ``None`` a
        Ray instance already started in this process is used, or a new local one
        is started and shut down after the sweep.

    Returns
    -------
    list of dict
        The result of each configuration, in the order of ``configs``.

    Raises
    ------
    ValueError
        Unknown backend, a configuration that is not plain JSON, or a result
        directory holding another configuration. Errors of the runner propagate
        (on Ray: after the other jobs have finished).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    runner = run_experiment if runner is None else runner
    root = Path(root)
    plain = [_plain(c) for c in configs]
    keys = [config_key(c) for c in plain]
    results: dict[str, dict[str, Any]] = {}
    pending: dict[str, dict[str, Any]] = {}
    for key, config in zip(keys, plain, strict=True):
        if key in results or key in pending:
            continue
        stored = _stored(root / key, config)
        if stored is not None:
            results[key] = stored
        else:
            pending[key] = config
    if pending and backend == "local":
        for key, config in pending.items():
            results[key] = _run_job(runner, config, str(root / key))
    elif pending:
        results.update(_run_on_ray(runner, pending, root, ray_address))
    return [results[k] for k in keys]


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ValueError(f"a configuration must be a mapping, got {type(config).__name__}")
    return json.loads(canonical_json(config))


def _run_on_ray(
    runner: Runner, pending: Mapping[str, dict[str, Any]], root: Path, ray_address: str | None
) -> dict[str, dict[str, Any]]:
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False)
        started = True
    try:
        task = ray.remote(num_cpus=1, num_gpus=1 if torch.cuda.is_available() else 0)(_run_job)
        refs = {key: task.remote(runner, config, str(root / key)) for key, config in pending.items()}
        ray.wait(list(refs.values()), num_returns=len(refs))  # let every job finish before raising any error
        return {key: ray.get(ref) for key, ref in refs.items()}
    finally:
        if started:
            ray.shutdown()


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = obj


def collect(root: str | os.PathLike[str], configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration with its stored outcome: a table as a list of dicts.

    Each row has ``key``, ``status`` (``"finished"``, ``"diverged"``, ``"running"``
    when the job directory exists without a final result, or ``"missing"``), the
    configuration flattened to dotted keys (``"train.lr"``), ``steps_completed``,
    ``diverged_at_step``, the last history record's ``step``, ``epoch``,
    ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` (``None``
    when absent) and the full ``history`` (an empty list when absent).

    Raises
    ------
    ValueError
        A configuration with a top-level key named like one of these columns, or
        a result directory holding another configuration.
    """
    root = Path(root)
    rows = []
    for config in configs:
        plain = _plain(config)
        key = config_key(plain)
        directory = root / key
        stored = _stored(directory, plain)
        row: dict[str, Any] = {}
        _flatten("", plain, row)
        clash = sorted(set(row) & set(_COLUMNS))
        if clash:
            raise ValueError(f"configuration keys {clash} clash with the table's own columns")
        row["key"] = key
        if stored is not None:
            row["status"] = stored["status"]
        else:
            row["status"] = "running" if directory.exists() else "missing"
        stored = stored or {}
        final = stored.get("final") or {}
        row["steps_completed"] = stored.get("steps_completed")
        row["diverged_at_step"] = stored.get("diverged_at_step")
        for name in ("step", "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            row[name] = final.get(name)
        row["history"] = stored.get("history", [])
        rows.append(row)
    return rows
