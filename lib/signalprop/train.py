"""Training classifiers with plain minibatch gradient methods, resumably and reproducibly.

Xiao et al. (2018), section 5, train their vanilla tanh CNNs with "no common
techniques (including learning rate decay)": a softmax cross-entropy loss, one
optimiser at a constant learning rate, no batch normalisation, no residual
connections.  This module is that training loop and nothing more:

* optimisers (``TrainConfig.optimizer``): ``"sgd"`` (plain), ``"momentum"``
  (heavy ball, ``v <- m v + g``, ``w <- w - lr v``: the update of TensorFlow's
  ``MomentumOptimizer`` used by the authors' demo, and of ``torch.optim.SGD``),
  ``"adam"``, ``"rmsprop"`` and ``"adagrad"`` (torch's definitions and default
  constants), all at a constant learning rate;
* minibatches are consecutive slices of a stream of random permutations of the
  training set drawn from one seeded :class:`torch.Generator`, so every batch
  has exactly ``batch_size`` examples and an epoch is ``N_train / batch_size``
  steps (epochs are reported as the float ``step * batch_size / N_train``);
* every ``eval_every`` steps, and after the last step, the history gains the
  running mean of the training loss and accuracy over the minibatches since the
  previous record, and the loss and accuracy on the whole held-out set;
* a non-finite loss (training minibatch or held-out set) stops the run with
  status ``"diverged"``: the history up to that point is kept and the step is
  recorded; nothing raises;
* every ``checkpoint_every`` steps the complete state (parameters, optimiser
  state, sampler generator and permutation, torch's global random state, the
  history and the running sums) is written atomically (a temporary file, then
  :func:`os.replace`), so a run killed at any moment resumes from its latest
  checkpoint and ends with exactly the numbers of an uninterrupted run.

Determinism.  On the CPU the same configuration, data and initial model give
bit-identical metrics: the batch order depends only on ``seed``, and
:func:`torch.use_deterministic_algorithms` is switched on for the duration of a
run (``deterministic=True``, restored afterwards).  Bit-identity holds for the
same torch build and the same number of intra-op threads
(:func:`torch.get_num_threads`, recorded in the provenance), since a parallel
reduction may add in a different order with a different thread count.  On a
GPU the same switch selects deterministic kernels where torch has them (and
sets ``CUBLAS_WORKSPACE_CONFIG`` if unset, as cuBLAS requires); an operation
without a deterministic CUDA kernel warns instead of failing.

Experiments.  :func:`run_experiment` wires a JSON configuration (sections
``data``, ``model``, ``train``) to the loop: it loads the data (by default with
:func:`signalprop.data.load_dataset`), builds the model (by default with
:func:`signalprop.models.build_model`) under a fixed seed, trains with
checkpoints in its output directory, and writes ``result.json`` with the
configuration, the history, the status and a provenance record
(:mod:`signalprop.provenance`).  It is also the command line
``python -m signalprop.train --config CONFIG.json --out DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "OPTIMIZERS",
    "SCHEMA",
    "RESULT_NAME",
    "CHECKPOINT_NAME",
    "TRACE_STEPS",
    "TrainConfig",
    "BatchSampler",
    "make_optimizer",
    "evaluate",
    "train",
    "save_checkpoint",
    "load_checkpoint",
    "canonical_json",
    "check_experiment",
    "load_experiment_data",
    "build_experiment_model",
    "write_json_atomic",
    "load_result",
    "run_experiment",
    "main",
]

#: Optimiser names accepted by :class:`TrainConfig`.
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad")
#: Value of the ``schema`` field of a result file.
SCHEMA = "signalprop.train/1"
#: File names inside a run's output directory.
RESULT_NAME = "result.json"
CHECKPOINT_NAME = "checkpoint.pt"
#: Number of first steps whose minibatch loss is kept in ``trace`` (for re-running checks).
TRACE_STEPS = 10

_EXPERIMENT_SECTIONS = ("data", "model", "train", "meta")
_DATA_OWN_KEYS = ("name", "loader", "n_train", "n_test", "subset_seed", "stratified")


# --- configuration -------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (the ``train`` section of an experiment).

    The defaults are those of the authors' demo for Xiao et al. (2018), section 5
    (science.md sec. 5: SGD with momentum 0.95, learning rate 1e-2, batch 100).

    Attributes
    ----------
    optimizer : str
        One of :data:`OPTIMIZERS`. Default ``"momentum"``.
    lr : float
        Constant learning rate, > 0. Default ``1e-2``.
    momentum : float
        Momentum coefficient in ``[0, 1)``, used by ``"momentum"`` only. Default ``0.95``.
    weight_decay : float
        L2 penalty coefficient added to the gradient by the optimiser, >= 0. Default 0
        (the paper uses none).
    batch_size : int
        Examples per step, >= 1 and at most the training-set size. Default 100.
    steps : int
        Number of optimiser updates, >= 1. Default 1000.
    eval_every : int
        Steps between two history records, >= 1 (a record is also made after the
        last step, and at step 0 for the held-out set). Default 100.
    eval_batch_size : int
        Examples per forward pass when evaluating, >= 1. Default 1000.
    checkpoint_every : int
        Steps between two checkpoints, >= 0; 0 writes none. Default 0.
    seed : int
        Seed of the minibatch generator. Default 0.
    init_seed : int or None
        Seed of torch's global generator while :func:`run_experiment` builds the
        model; ``None`` means ``seed``. Not used by :func:`train`.
    deterministic : bool
        Switch on :func:`torch.use_deterministic_algorithms` during the run. Default True.
    """

    optimizer: str = "momentum"
    lr: float = 1e-2
    momentum: float = 0.95
    weight_decay: float = 0.0
    batch_size: int = 100
    steps: int = 1000
    eval_every: int = 100
    eval_batch_size: int = 1000
    checkpoint_every: int = 0
    seed: int = 0
    init_seed: int | None = None
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if _check_real("lr", self.lr) <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= _check_real("momentum", self.momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if _check_real("weight_decay", self.weight_decay) < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        _check_int("batch_size", self.batch_size, 1)
        _check_int("steps", self.steps, 1)
        _check_int("eval_every", self.eval_every, 1)
        _check_int("eval_batch_size", self.eval_batch_size, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 0)
        _check_int("seed", self.seed, 0)
        if self.init_seed is not None:
            _check_int("init_seed", self.init_seed, 0)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"deterministic must be true or false, got {self.deterministic!r}")
        # plain Python numbers from here on (numpy scalars would not survive JSON or a weights-only load)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("lr", "momentum", "weight_decay"):
                object.__setattr__(self, f.name, float(value))
            elif isinstance(value, Integral) and not isinstance(value, bool):
                object.__setattr__(self, f.name, int(value))

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
        """Build from a mapping (missing keys take their defaults); unknown keys raise ``ValueError``."""
        if isinstance(mapping, TrainConfig):
            return mapping
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise ValueError(f"a training configuration must be a mapping, got {type(mapping).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**mapping)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)


# --- pieces of the loop --------------------------------------------------------------------------


class BatchSampler:
    """Minibatch indices: consecutive slices of a stream of seeded random permutations.

    The stream is ``randperm(n), randperm(n), ...`` drawn from one
    ``torch.Generator().manual_seed(seed)``; batch ``s`` (from 0) is entries
    ``[s * batch_size, (s + 1) * batch_size)`` of the stream, so a batch may
    straddle two permutations and every batch has ``batch_size`` indices.

    Parameters
    ----------
    n : int
        Size of the training set, >= 1.
    batch_size : int
        Between 1 and ``n``.
    seed : int
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        n = _check_int("n", n, 1)
        batch_size = _check_int("batch_size", batch_size, 1)
        if batch_size > n:
            raise ValueError(f"batch_size ({batch_size}) is larger than the training set ({n} examples)")
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(_check_int("seed", seed, 0))
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        """Indices (int64, CPU) of the next minibatch."""
        parts, need = [], self.batch_size
        while need:
            if self.pos == self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = min(need, self.n - self.pos)
            parts.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            need -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        """The generator state, current permutation and position (restores with :meth:`load_state_dict`)."""
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state returned by :meth:`state_dict`."""
        perm = state["perm"]
        if perm.shape != (self.n,):
            raise ValueError(f"sampler state is for {perm.numel()} examples, this sampler has {self.n}")
        self.generator.set_state(state["generator"])
        self.perm = perm.clone()
        self.pos = int(state["pos"])


def make_optimizer(parameters: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` with learning rate ``config.lr``.

    ``"momentum"`` is ``torch.optim.SGD(momentum=config.momentum)`` (heavy ball,
    no dampening, not Nesterov); Adam, RMSprop and Adagrad keep torch's default
    constants (Adam betas (0.9, 0.999), eps 1e-8; RMSprop alpha 0.99, eps 1e-8;
    Adagrad eps 1e-10, initial accumulator 0).
    """
    config = TrainConfig.from_dict(config)
    lr, wd = config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.0, weight_decay=wd)
    if config.optimizer == "momentum":
        return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=wd)
    return torch.optim.Adagrad(parameters, lr=lr, weight_decay=wd)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``(x, y)``, in evaluation mode.

    The loss is the sum of per-example losses divided by ``len(y)`` (NaN or inf
    when the logits are not finite); the accuracy is the fraction of examples
    whose largest logit is the label.  The model's training mode is restored.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of examples, got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    try:
        for start in range(0, len(y), batch_size):
            logits = model(x[start : start + batch_size])
            labels = y[start : start + batch_size]
            total += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == labels).sum().item())
    finally:
        model.train(was_training)
    return total / len(y), correct / len(y)


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write ``state`` with :func:`torch.save` atomically: a temporary file in the same folder, then a rename."""
    _write_atomically(Path(path), lambda fh: torch.save(dict(state), fh), binary=True, readable_by_all=False)


def _write_atomically(path: Path, write: Callable[[Any], Any], *, binary: bool, readable_by_all: bool) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, sync it, then rename it over ``path``.

    A process killed at any moment leaves either the old file or the new one, never a partial one.
    ``mkstemp`` creates the file ``0600``; ``readable_by_all`` applies the usual ``0666 & ~umask``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if readable_by_all:
            os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state saved at ``path`` (tensors on the CPU), or ``None`` if there is no such file."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _tensor_digest(h: Any, t: torch.Tensor) -> None:
    a = np.ascontiguousarray(t.detach().cpu().numpy())
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)


def _data_digest(train_data: Sequence[torch.Tensor], test_data: Sequence[torch.Tensor] | None) -> str:
    h = hashlib.sha256()
    for t in (*train_data, *(test_data or ())):
        _tensor_digest(h, t)
    return h.hexdigest()


def _check_data(name: str, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a pair (x, y) of tensors")
    x, y = data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a pair (x, y) of tensors, got {type(x).__name__}, {type(y).__name__}")
    if y.ndim != 1 or y.dtype != torch.int64:
        raise ValueError(f"{name} labels must be a 1-d int64 tensor, got {y.dtype} of shape {tuple(y.shape)}")
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{name} must hold the same, non-zero number of inputs and labels, got {len(x)}, {len(y)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} inputs must be floating point, got {x.dtype}")
    return x, y


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --- the loop ------------------------------------------------------------------------------------


def train(
    model: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor] | None,
    config: TrainConfig | Mapping[str, Any],
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    fingerprint: str = "",
) -> dict[str, Any]:
    """Train ``model`` on ``train_data`` and record its metrics; resume from ``checkpoint_path`` if it exists.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs to logits ``(batch, classes)``; trained in place.
        Its initial parameters are the caller's business (seed them).
    train_data, test_data : (x, y)
        Float inputs with the examples along dimension 0 and int64 class labels.
        Inputs are cast to the model's floating dtype and moved to ``device``.
        ``test_data`` may be ``None`` (the held-out fields of the history are then ``None``).
    config : TrainConfig or mapping
        See :class:`TrainConfig`.
    checkpoint_path : path-like, optional
        Where checkpoints are written every ``config.checkpoint_every`` steps. If the
        file exists the run continues from it (it must have been written for the
        same configuration, data, model shapes and ``fingerprint``).
    device : torch.device or str, optional
        Default: ``"cuda"`` if available, else ``"cpu"``.
    progress : bool, optional
        Show a :mod:`tqdm.auto` progress bar; ``None`` (default) shows it only when
        standard error is a terminal.
    fingerprint : str
        Any extra identity of the run (e.g. a hash of the experiment's
        configuration) that a checkpoint must match.

    Returns
    -------
    dict
        JSON-ready: ``status`` (``"finished"`` or ``"diverged"``), ``steps_completed``,
        ``diverged_at_step`` (the step whose loss was not finite, or ``None``),
        ``history`` (list of records ``{step, epoch, train_loss, train_accuracy,
        test_loss, test_accuracy}``; at step 0 the training fields are ``None``),
        ``trace`` (the minibatch loss of each of the first :data:`TRACE_STEPS`
        steps, so that a stored run can be checked by re-running its first steps),
        ``final`` (the last record or ``None``), ``resumed_from_steps`` (steps of
        the checkpoints this run was continued from), ``n_train``, ``n_test``,
        ``n_parameters``, ``data_sha256`` and ``wall_time_s`` (summed over
        resumed segments).

    Raises
    ------
    ValueError
        Invalid configuration or data, a batch larger than the training set, a
        model without floating-point parameters, or a checkpoint of another run.
    """
    t_start = time.perf_counter()
    cfg = TrainConfig.from_dict(config)
    x_train, y_train = _check_data("train_data", train_data)
    if test_data is not None:
        x_test, y_test = _check_data("test_data", test_data)
    n_train = len(y_train)
    if cfg.batch_size > n_train:
        raise ValueError(f"batch_size ({cfg.batch_size}) is larger than the training set ({n_train} examples)")
    float_params = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    if not float_params:
        raise ValueError("model has no trainable floating-point parameters")
    dev = _resolve_device(device)
    dtype = float_params[0].dtype

    identity = {
        "train": cfg.to_dict(),
        "data_sha256": _data_digest((x_train, y_train), None if test_data is None else (x_test, y_test)),
        "parameters": [[name, list(p.shape)] for name, p in model.named_parameters()],
        "fingerprint": fingerprint,
    }
    model.to(dev)
    x_train, y_train = x_train.to(dev, dtype), y_train.to(dev)
    if test_data is not None:
        x_test, y_test = x_test.to(dev, dtype), y_test.to(dev)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    sampler = BatchSampler(n_train, cfg.batch_size, cfg.seed)

    history: list[dict[str, Any]] = []
    trace: list[float] = []
    resumed: list[int] = []
    sums = {"loss": 0.0, "correct": 0, "count": 0}
    step, wall_before = 0, 0.0
    ckpt = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None:
        if ckpt.get("identity") != identity:
            raise ValueError(
                f"checkpoint {checkpoint_path} was written for a different configuration, data or model; "
                "delete it or use another output directory"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sampler.load_state_dict(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"])
        if dev.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        history, sums = list(ckpt["history"]), dict(ckpt["sums"])
        trace = list(ckpt.get("trace", []))
        step, wall_before = int(ckpt["step"]), float(ckpt["wall_time_s"])
        resumed = [*ckpt["resumed_from_steps"], step]

    def held_out() -> tuple[float | None, float | None]:
        if test_data is None:
            return None, None
        return evaluate(model, x_test, y_test, cfg.eval_batch_size)

    status, diverged_at = "finished", None
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if cfg.deterministic:
        if dev.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=dev.type != "cpu")
    bar = None
    try:
        model.train()
        if step == 0 and not history and test_data is not None:
            loss, acc = held_out()
            if not math.isfinite(loss):
                status, diverged_at = "diverged", 0
            else:
                history.append(_record(0, cfg, n_train, None, None, loss, acc))
        bar = _progress_bar(progress, cfg.steps, step)
        while status == "finished" and step < cfg.steps:
            idx = sampler.next().to(dev)
            xb, yb = x_train.index_select(0, idx), y_train.index_select(0, idx)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                status, diverged_at = "diverged", step + 1
                break
            correct = int((logits.detach().argmax(dim=1) == yb).sum().item())
            if step < TRACE_STEPS:
                trace.append(loss_value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            sums["loss"] += loss_value * cfg.batch_size
            sums["correct"] += correct
            sums["count"] += cfg.batch_size
            if step % cfg.eval_every == 0 or step == cfg.steps:
                test_loss, test_acc = held_out()
                if test_loss is not None and not math.isfinite(test_loss):
                    status, diverged_at = "diverged", step
                    break
                history.append(
                    _record(
                        step,
                        cfg,
                        n_train,
                        sums["loss"] / sums["count"],
                        sums["correct"] / sums["count"],
                        test_loss,
                        test_acc,
                    )
                )
                sums = {"loss": 0.0, "correct": 0, "count": 0}
                if bar is not None:
                    bar.set_postfix(_postfix(history[-1]), refresh=False)
            if checkpoint_path is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                state = {
                    "identity": identity,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "sampler": sampler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if dev.type == "cuda" else None,
                    "history": history,
                    "trace": trace,
                    "sums": sums,
                    "resumed_from_steps": resumed,
                    "wall_time_s": wall_before + time.perf_counter() - t_start,
                }
                save_checkpoint(checkpoint_path, state)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)

    return {
        "status": status,
        "steps_completed": step,
        "diverged_at_step": diverged_at,
        "history": history,
        "trace": trace,
        "final": history[-1] if history else None,
        "resumed_from_steps": resumed,
        "n_train": n_train,
        "n_test": None if test_data is None else len(y_test),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "data_sha256": identity["data_sha256"],
        "wall_time_s": wall_before + time.perf_counter() - t_start,
    }


def _record(
    step: int,
    cfg: TrainConfig,
    n_train: int,
    train_loss: float | None,
    train_acc: float | None,
    test_loss: float | None,
    test_acc: float | None,
) -> dict[str, Any]:
    return {
        "step": step,
        "epoch": step * cfg.batch_size / n_train,
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
    }


def _postfix(rec: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, label in (("train_loss", "loss"), ("train_accuracy", "acc"), ("test_accuracy", "test_acc")):
        if rec.get(key) is not None:
            out[label] = f"{rec[key]:.4f}"
    return out


def _progress_bar(progress: bool | None, total: int, initial: int) -> Any:
    show = sys.stderr is not None and sys.stderr.isatty() if progress is None else bool(progress)
    if not show:
        return None
    from tqdm.auto import tqdm  # imported only when shown: no notebook-widget warnings otherwise

    return tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)


# --- results -------------------------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: the canonical text of a configuration.

    Raises ``ValueError`` for anything JSON cannot hold exactly (NaN, infinities,
    non-string keys, objects).
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"configuration is not plain JSON: {err}") from None


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (threads may be writing files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting and restoring it
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (temporary file, then :func:`os.replace`)."""
    path = Path(path)
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"
    # Results are for everyone who may read the folder (mkstemp alone would make them 0600).
    _write_atomically(path, lambda fh: fh.write(text), binary=False, readable_by_all=True)
    return path


def load_result(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The result stored at ``path`` (a ``result.json`` or the run's directory), or ``None`` if absent."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_NAME
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# --- experiments: configuration -> data + model -> result.json -----------------------------------


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
    plain = json.loads(canonical_json(config))
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
    model_config: Mapping[str, Any], seed: int, device: torch.device | str | None = None
) -> nn.Module:
    """The model described by the ``model`` section, built with torch's global generator seeded by ``seed``.

    The global random state of the caller is left as it was.
    """
    kwargs = dict(model_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if "factory" in kwargs:
            model = _import_object(kwargs.pop("factory"), "model factory")(**kwargs)
        else:
            from signalprop import models as sp_models

            model = sp_models.build_model(kwargs, device=device)
    if not isinstance(model, nn.Module):
        raise ValueError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def run_experiment(
    config: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    data_root: str | os.PathLike[str] | None = None,
    keep_checkpoint: bool = False,
) -> dict[str, Any]:
    """Run one experiment into ``out_dir``, continuing it if it was interrupted.

    If ``out_dir/result.json`` exists for the same configuration it is returned
    without training.  Otherwise the data and the model are made from ``config``
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
        Invalid configuration, or ``out_dir`` holds the result or checkpoint of another configuration.
    """
    from signalprop import provenance

    plain = check_experiment(config)
    digest = hashlib.sha256(canonical_json(plain).encode()).hexdigest()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    for stale in out.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    existing = load_result(out / RESULT_NAME)
    if existing is not None:
        if existing.get("config") != plain:
            raise ValueError(f"{out / RESULT_NAME} holds the result of a different configuration")
        if not keep_checkpoint:
            ckpt_path.unlink(missing_ok=True)
        return existing

    cfg = TrainConfig.from_dict(plain.get("train", {}))
    dev = _resolve_device(device)
    train_data, test_data = load_experiment_data(plain["data"], data_root)
    init_seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    model = build_experiment_model(plain["model"], init_seed, dev)
    outcome = train(
        model,
        train_data,
        test_data,
        cfg,
        checkpoint_path=ckpt_path,
        device=dev,
        progress=progress,
        fingerprint=digest,
    )
    wall = outcome.pop("wall_time_s")
    result = {
        "schema": SCHEMA,
        "config": plain,
        "config_sha256": digest,
        **outcome,
        "provenance": {**provenance.collect(dev), "deterministic": cfg.deterministic, "wall_time_s": wall},
    }
    write_json_atomic(out / RESULT_NAME, result)
    if not keep_checkpoint:
        ckpt_path.unlink(missing_ok=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m signalprop.train --config CONFIG.json --out DIR [options]``."""
    parser = argparse.ArgumentParser(prog="python -m signalprop.train", description="Run one experiment.")
    parser.add_argument("--config", required=True, help="experiment configuration (JSON file)")
    parser.add_argument("--out", required=True, help="output directory (result.json, checkpoint.pt)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--data-root", default=None, help="directory the data loader searches")
    parser.add_argument("--keep-checkpoint", action="store_true", help="keep the final checkpoint")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        config = json.load(fh)
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
