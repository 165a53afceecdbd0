"""Sweeps: many independent training runs, resumable, locally or on a Ray cluster.

A sweep is a list of experiment configurations (:func:`signalprop.experiment.check_experiment`).
Each configuration is one job whose key is a short prefix of the SHA-256 of the
canonical JSON text (sorted keys, no spaces: :func:`signalprop.store.canonical_json`)
of its identity (:func:`signalprop.experiment.job_identity`: the configuration
without its operational settings), so the key depends on what the job computes
only, not on the order of its keys, its place in the sweep, or how often it
checkpoints.  Job ``key`` lives in ``<root>/<key>/``: ``config.json`` (written when
the job starts), the lock file ``.lock``, the runner's checkpoint while it runs and
``result.json`` when it has finished or diverged.

Every job runs under its lock (:class:`signalprop.store.JobLock`): a second sweep
reaching a job that another process is running says so and waits for it, then
takes its result instead of training the job again.  Running a sweep again skips
the jobs that have a result and calls the runner for the others, which by default
(:func:`signalprop.experiment.run_experiment`) continue from their checkpoints: a
sweep stopped at any point resumes where it stopped.

``backend="local"`` with ``workers > 1`` runs independent jobs in that many worker
processes, each with one torch thread (:func:`default_workers` says how many
a sweep uses by default).

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
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch

from signalprop import store
from signalprop.experiment import job_identity, run_experiment

__all__ = [
    "KEY_LENGTH",
    "BACKENDS",
    "config_key",
    "job_dir",
    "grid",
    "is_done",
    "default_workers",
    "run_sweep",
    "collect",
]

#: Hexadecimal digits of the SHA-256 used as a job key (48 bits).
KEY_LENGTH = 12
BACKENDS = ("local", "ray")
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
    """The job key of ``config``: the first ``length`` hex digits of the SHA-256 of the canonical
    JSON of its :func:`~signalprop.experiment.job_identity` (operational settings left out).

    Raises
    ------
    ValueError
        ``config`` is not plain JSON data, or ``length`` is not in 1..64.
    """
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 64:
        raise ValueError(f"length must be an integer in 1..64, got {length!r}")
    return hashlib.sha256(store.canonical_json(job_identity(config)).encode("ascii")).hexdigest()[:length]


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
    return result is not None and result.get("status") in store.FINAL_STATUSES


def _stored(directory: Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The valid final result of ``config`` in ``directory``, or ``None``; raises for a foreign or invalid one."""
    path = directory / store.RESULT_NAME
    result = store.load_result(path)
    if result is not None and job_identity(result["config"]) != job_identity(config):
        raise ValueError(f"{path} holds another configuration (a key collision?); delete {directory} to retrain")
    return result if is_done(result) else None


def _run_job(runner: Runner, config: dict[str, Any], directory: str) -> dict[str, Any]:
    """Run one job under its lock; a job another process finished meanwhile is loaded, not run again."""
    path = Path(directory)
    with store.JobLock(path):
        store.remove_stale_temporaries(path)
        stored = _stored(path, config)
        if stored is not None:
            return stored
        if not (path / store.CONFIG_NAME).exists():
            store.write_json_atomic(path / store.CONFIG_NAME, config)
        return runner(config, path)


def _one_thread() -> None:
    torch.set_num_threads(1)


def default_workers(n_jobs: int) -> int:
    """Worker processes a local sweep of ``n_jobs`` pending jobs uses by default.

    One job per CPU core, one thread each (at most ``n_jobs``; 1 on a one-core
    machine, and 1 where CUDA is available: the jobs would share one GPU).  Measured
    on this project's 2-core CPU (``benchmarks/parallel_sweep.py --steps 40``, two
    40-step jobs of the depth-ladder network at depth 1,000, width 16): 28.0 s in two
    single-threaded workers against 32.2 s one after another on two threads (best of
    two, on a shared machine), while for 10-step jobs the workers' start-up (about
    3 s: a fresh interpreter, torch and the data) made them slower (12.4 s against
    9.6 s); the chapters' ``cpu`` jobs run 150 steps.  Single-threaded workers also
    run with the thread count of the stored ``cpu`` results (one), on which
    bit-identity depends (:mod:`signalprop.train`).
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 0:
        raise ValueError(f"n_jobs must be a non-negative integer, got {n_jobs!r}")
    if torch.cuda.is_available():
        return 1
    return max(1, min(n_jobs, os.cpu_count() or 1))


def _run_local(
    runner: Runner, pending: Mapping[str, dict[str, Any]], root: Path, workers: int
) -> dict[str, dict[str, Any]]:
    if workers == 1 or len(pending) == 1:
        return {key: _run_job(runner, config, str(root / key)) for key, config in pending.items()}
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch's threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
        futures = {key: pool.submit(_run_job, runner, config, str(root / key)) for key, config in pending.items()}
        errors = [f.exception() for f in futures.values()]  # every job ends before any error is raised
        for err in errors:
            if err is not None:
                raise err
        return {key: f.result() for key, f in futures.items()}


def run_sweep(
    configs: Sequence[Mapping[str, Any]],
    root: str | os.PathLike[str],
    *,
    runner: Runner | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    workers: int | None = 1,
) -> list[dict[str, Any]]:
    """Run every configuration of ``configs`` that has no final result under ``root``.

    Parameters
    ----------
    configs : sequence of mappings
        Plain-JSON configurations; configurations of the same job (equal
        :func:`~signalprop.experiment.job_identity`) run once.
    root : path-like
        The sweep's directory; job ``k`` runs in ``root/k``.
    runner : callable, optional
        ``runner(config, directory) -> result`` (a JSON-ready dict that it also
        writes to ``directory/result.json``); default
        :func:`signalprop.experiment.run_experiment`. Use :func:`functools.partial`
        for options such as ``device`` or ``progress``. On Ray it must be picklable.
    backend : {"local", "ray"}
        ``"local"`` runs the jobs in this process (``workers=1``) or in worker
        processes; ``"ray"``
        runs them as Ray tasks with ``num_gpus=1`` when :func:`torch.cuda.is_available`,
        else 0.
    ray_address : str, optional
        Address of a Ray cluster (``"auto"`` for the local one); with ``None`` a
        Ray instance already started in this process is used, or a new local one
        is started and shut down after the sweep.
    workers : int or None
        Local backend: processes running jobs at once, each with one torch thread
        (``1``: one after another in this process, with its threads; ``None``:
        :func:`default_workers`). The runner must then be picklable.

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
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
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
        results.update(_run_local(runner, pending, root, default_workers(len(pending)) if workers is None else workers))
    elif pending:
        results.update(_run_on_ray(runner, pending, root, ray_address))
    return [results[k] for k in keys]


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ValueError(f"a configuration must be a mapping, got {type(config).__name__}")
    return json.loads(store.canonical_json(config))


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
    while a process holds the job's lock, ``"interrupted"`` when the job directory
    exists without a final result and nobody runs it, or ``"missing"``), the
    configuration flattened to dotted keys (``"train.lr"``), ``steps_completed``,
    ``diverged_at_step``, the last history record's ``step``, ``epoch``,
    ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` (``None``
    when absent) and the full ``history`` (an empty list when absent).

    Raises
    ------
    ValueError
        A configuration with a top-level key named like one of these columns, a
        result directory holding another configuration, or an invalid result file.
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
            row["status"] = store.job_state(directory)
        stored = stored or {}
        final = stored.get("final") or {}
        row["steps_completed"] = stored.get("steps_completed")
        row["diverged_at_step"] = stored.get("diverged_at_step")
        for name in ("step", "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            row[name] = final.get(name)
        row["history"] = stored.get("history", [])
        rows.append(row)
    return rows
