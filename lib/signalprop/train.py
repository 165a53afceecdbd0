"""Training classifiers with plain minibatch gradient methods, resumably and reproducibly.

Xiao et al. (2018), section 5, train their vanilla tanh CNNs with "no common
techniques (including learning rate decay)": a softmax cross-entropy loss, one
optimiser at a constant learning rate, no batch normalisation, no residual
connections.  This module is that training loop and nothing more:

* optimisers (``TrainConfig.optimizer``): ``"sgd"`` (plain), ``"momentum"``
  (heavy ball, ``v <- m v + g``, ``w <- w - lr v``: the update of TensorFlow's
  ``MomentumOptimizer`` used by the authors' demo, and of ``torch.optim.SGD``),
  ``"nesterov"`` (the same with Nesterov's look-ahead, ``torch.optim.SGD(nesterov=True)``),
  ``"adam"``, ``"rmsprop"``, ``"adagrad"`` and ``"adadelta"`` (torch's definitions and
  default constants), all at a constant learning rate;
* minibatches are consecutive slices of a stream of random permutations of the
  training set drawn from one seeded :class:`torch.Generator`, so every batch
  has exactly ``batch_size`` examples and an epoch is ``N_train / batch_size``
  steps (epochs are reported as the float ``step * batch_size / N_train``);
* every ``eval_every`` steps, and after the last step, the history gains the
  running mean of the training loss and accuracy over the minibatches since the
  previous record, the loss and accuracy on the held-out set (on a fixed subset
  of it before the last step when ``eval_subset`` is set), the relative change of
  every parameter group since initialisation and, for models with ``features``,
  the mean square of the pooled features on the first held-out images (the
  probe); a model with a ``probe_statistics(probe) -> dict`` method adds its
  entries (e.g. the per-layer vanishing node indicator of
  :meth:`signalprop.fcnet.FCNet.probe_statistics`);
* a model may carry its own training rules: ``regularization_loss() -> Tensor`` is
  added to the minibatch loss before the backward pass (the recorded loss is the
  data loss alone), and ``before_step(step)`` is called with the 0-based step
  before every update (e.g. to switch backward-error modulation off after a
  number of steps); both see the same step after a resume;
* ``lr_groups`` gives parameter groups their own learning rates, 0 freezing a group
  (:mod:`signalprop.parameterisation` derives the rates of the deep block);
* a non-finite loss (training minibatch or held-out set) stops the run with
  status ``"diverged"``: the history up to that point is kept and the step is
  recorded; nothing raises;
* every ``checkpoint_every`` steps the complete state (parameters, optimiser
  state, sampler generator and permutation, torch's global random state, the
  history and the running sums) is written atomically
  (:func:`signalprop.store.save_checkpoint`), so a run killed at any moment resumes
  from its latest checkpoint and ends with exactly the numbers of an uninterrupted run.

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

Storage and wiring live elsewhere: checkpoints are written and read by
:mod:`signalprop.store` (atomically; an unreadable checkpoint is moved aside and the
run starts again), and :mod:`signalprop.experiment` turns a JSON configuration into
data, a model and a stored result (also the command line).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from signalprop import parameterisation, store

__all__ = [
    "OPTIMIZERS",
    "OPERATIONAL_FIELDS",
    "TRACE_STEPS",
    "TrainConfig",
    "BatchSampler",
    "make_optimizer",
    "evaluate",
    "train",
    "resolve_device",
]

#: Optimiser names accepted by :class:`TrainConfig`.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad", "adadelta")
#: Fields of :class:`TrainConfig` that say how a run is carried out, not what it computes:
#: they are recorded with a result but are not part of a job's identity (a checkpoint written
#: with one value resumes under another).
OPERATIONAL_FIELDS = ("eval_batch_size", "checkpoint_every", "cuda_graph")
#: Held-out images (the first ones) on which the mean square of the pooled features is recorded.
PROBE_IMAGES = 256
#: Number of first steps whose minibatch loss is kept in ``trace`` (for re-running checks).
TRACE_STEPS = 10
#: Eager steps before a CUDA-graph run (``TrainConfig.cuda_graph``) captures its step.
GRAPH_WARMUP = 3


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
    (the notebook ``Delta_Orthogonal_Convolution_Demo.ipynb`` of brain-research/mean-field-cnns:
    SGD with momentum 0.95, learning rate 1e-2, batch 100).

    Attributes
    ----------
    optimizer : str
        One of :data:`OPTIMIZERS`. Default ``"momentum"``.
    lr : float
        Constant learning rate, > 0. Default ``1e-2``.
    momentum : float
        Momentum coefficient in ``[0, 1)``, used by ``"momentum"`` and ``"nesterov"`` only. Default ``0.95``.
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
        Examples per forward pass when evaluating, >= 1. Default 1000. Operational
        (:data:`OPERATIONAL_FIELDS`): not part of a job's or a checkpoint's identity.
    checkpoint_every : int
        Steps between two checkpoints, >= 0; 0 writes none. Default 0. Operational.
    seed : int
        Seed of the minibatch generator. Default 0.
    init_seed : int or None
        Seed of torch's global generator while :func:`signalprop.experiment.run_experiment` builds the
        model; ``None`` means ``seed``. Not used by :func:`train`.
    deterministic : bool
        Switch on :func:`torch.use_deterministic_algorithms` during the run. Default True.
    lr_groups : dict or None
        Per-group learning rates over the groups of the model's ``parameter_groups()``
        (:data:`signalprop.parameterisation.GROUPS`: ``stem``, ``block_weight``,
        ``block_bias``, ``readout``); a rate of 0 freezes the group (its parameters
        get ``requires_grad=False`` and are left out of the optimiser).  ``None``
        (default): ``lr`` for every parameter.  The momentum and the optimiser are shared.
    eval_subset : int or None
        Intermediate held-out evaluations use a fixed stratified subset of this many
        held-out examples (:func:`signalprop.data.subset_indices`, seed 0); the record
        after the last step uses the whole held-out set.  ``None`` (default): always the whole set.
    cuda_graph : bool
        On a CUDA device, replay the training step from a CUDA graph after
        :data:`GRAPH_WARMUP` eager steps (the same computation without per-kernel
        launch costs; the deep block launches about ten kernels per layer).  Ignored
        on the CPU. Default False. Operational.
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
    lr_groups: dict[str, float] | None = None
    eval_subset: int | None = None
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if _check_real("lr", self.lr) <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= _check_real("momentum", self.momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.optimizer == "nesterov" and self.momentum == 0:
            raise ValueError("the nesterov optimizer needs momentum > 0")
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
        if not isinstance(self.cuda_graph, bool):
            raise ValueError(f"cuda_graph must be true or false, got {self.cuda_graph!r}")
        if self.eval_subset is not None:
            _check_int("eval_subset", self.eval_subset, 1)
        if self.lr_groups is not None:
            from signalprop.parameterisation import check_group_rates

            object.__setattr__(self, "lr_groups", check_group_rates(self.lr_groups))
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

    def __hash__(self) -> int:  # lr_groups is a dict
        return hash(store.canonical_json(self.to_dict()))


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
    no dampening, not Nesterov); ``"nesterov"`` is the same with ``nesterov=True``
    (``v <- m v + g``, ``w <- w - lr (g + m v)``); Adam, RMSprop, Adagrad and Adadelta
    keep torch's default constants (Adam betas (0.9, 0.999), eps 1e-8; RMSprop alpha
    0.99, eps 1e-8; Adagrad eps 1e-10, initial accumulator 0; Adadelta rho 0.9, eps
    1e-6, where ``lr`` multiplies Zeiler's update and ``lr = 1`` is his method).
    """
    config = TrainConfig.from_dict(config)
    lr, wd = config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.0, weight_decay=wd)
    if config.optimizer == "momentum":
        return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "nesterov":
        return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, nesterov=True, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=wd)
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(parameters, lr=lr, weight_decay=wd)
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


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` means CUDA when available, else the CPU."""
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
        if cfg.eval_subset is not None and cfg.eval_subset > len(y_test):
            raise ValueError(
                f"eval_subset ({cfg.eval_subset}) is larger than the held-out set ({len(y_test)} examples)"
            )
    n_train = len(y_train)
    if cfg.batch_size > n_train:
        raise ValueError(f"batch_size ({cfg.batch_size}) is larger than the training set ({n_train} examples)")
    groups = _parameter_groups(model, cfg)
    float_params = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    if not float_params:
        raise ValueError("model has no trainable floating-point parameters")
    dev = resolve_device(device)
    dtype = float_params[0].dtype

    identity = {
        "train": {k: v for k, v in cfg.to_dict().items() if k not in OPERATIONAL_FIELDS},
        "data_sha256": _data_digest((x_train, y_train), None if test_data is None else (x_test, y_test)),
        "parameters": [[name, list(p.shape)] for name, p in model.named_parameters()],
        "fingerprint": fingerprint,
    }
    model.to(dev)
    x_train, y_train = x_train.to(dev, dtype), y_train.to(dev)
    if test_data is not None:
        x_test, y_test = x_test.to(dev, dtype), y_test.to(dev)
        if cfg.eval_subset is not None:
            from signalprop.data import subset_indices

            rows = subset_indices(y_test.cpu(), cfg.eval_subset, 0, stratified=True).to(dev)
            x_sub, y_sub = x_test.index_select(0, rows), y_test.index_select(0, rows)
    probe = (x_test if test_data is not None else x_train)[:PROBE_IMAGES]
    optimizer = make_optimizer(
        [{"params": ps, "lr": cfg.lr_groups[g]} for g, ps in groups.items() if ps and cfg.lr_groups[g] > 0]
        if cfg.lr_groups is not None
        else [p for p in model.parameters() if p.requires_grad],
        cfg,
    )
    sampler = BatchSampler(n_train, cfg.batch_size, cfg.seed)
    monitored = groups if groups is not None else {"all": list(model.parameters())}

    history: list[dict[str, Any]] = []
    trace: list[float] = []
    resumed: list[int] = []
    sums = {"loss": 0.0, "correct": 0, "count": 0}
    step, wall_before = 0, 0.0
    initial = {g: [p.detach().clone() for p in ps] for g, ps in monitored.items()}
    ckpt = store.load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None:
        if ckpt.get("identity") != identity:
            raise ValueError(
                f"checkpoint {checkpoint_path} was written for a different configuration, data or model; "
                "delete it or use another output directory"
            )
        history, trace, sums, step, wall_before = _restore(ckpt, model, optimizer, sampler, dev)
        initial = {g: [t.to(dev) for t in ts] for g, ts in ckpt["initial"].items()}
        resumed = [*ckpt["resumed_from_steps"], step]

    def held_out(final: bool) -> tuple[float | None, float | None, int | None]:
        if test_data is None:
            return None, None, None
        if cfg.eval_subset is not None and not final:
            return (*evaluate(model, x_sub, y_sub, cfg.eval_batch_size), len(y_sub))
        return (*evaluate(model, x_test, y_test, cfg.eval_batch_size), len(y_test))

    def statistics() -> dict[str, Any]:
        """Relative change of every parameter group, and the pooled features' mean square on the probe."""
        out: dict[str, Any] = {"weight_change": parameterisation.relative_change(monitored, initial)}
        if hasattr(model, "features"):
            with torch.no_grad():
                was_training = model.training
                model.eval()
                out["feature_mean_square"] = float((model.features(probe).double() ** 2).mean())
                model.train(was_training)
        if hasattr(model, "probe_statistics"):
            with torch.no_grad():
                was_training = model.training
                model.eval()
                extra = model.probe_statistics(probe)
                model.train(was_training)
            clash = set(extra) & set(out)
            if clash:
                raise ValueError(f"probe_statistics returned reserved keys {sorted(clash)}")
            out.update(extra)
        return out

    status, diverged_at = "finished", None
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if cfg.deterministic:
        if dev.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=dev.type != "cpu")
    stepper = _Stepper(model, optimizer, cfg.cuda_graph and dev.type == "cuda")
    bar = None
    try:
        model.train()
        if step == 0 and not history and test_data is not None:
            loss, acc, n_eval = held_out(cfg.steps == 0)
            if not math.isfinite(loss):
                status, diverged_at = "diverged", 0
            else:
                history.append({**_record(0, cfg, n_train, None, None, loss, acc, n_eval), **statistics()})
        bar = _progress_bar(progress, cfg.steps, step)
        while status == "finished" and step < cfg.steps:
            idx = sampler.next().to(dev)
            xb, yb = x_train.index_select(0, idx), y_train.index_select(0, idx)
            loss_value, correct = stepper.step(xb, yb, step)
            if not math.isfinite(loss_value):
                status, diverged_at = "diverged", step + 1
                break
            if step < TRACE_STEPS:
                trace.append(loss_value)
            step += 1
            sums["loss"] += loss_value * cfg.batch_size
            sums["correct"] += correct
            sums["count"] += cfg.batch_size
            if step % cfg.eval_every == 0 or step == cfg.steps:
                test_loss, test_acc, n_eval = held_out(step == cfg.steps)
                if test_loss is not None and not math.isfinite(test_loss):
                    status, diverged_at = "diverged", step
                    break
                history.append(
                    {
                        **_record(
                            step,
                            cfg,
                            n_train,
                            sums["loss"] / sums["count"],
                            sums["correct"] / sums["count"],
                            test_loss,
                            test_acc,
                            n_eval,
                        ),
                        **statistics(),
                    }
                )
                sums = {"loss": 0.0, "correct": 0, "count": 0}
                if bar is not None:
                    bar.set_postfix(_postfix(history[-1]), refresh=False)
            if checkpoint_path is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                state = {
                    "identity": identity,
                    "step": step,
                    **_snapshot(model, optimizer, sampler, dev),
                    "initial": {g: [t.cpu() for t in ts] for g, ts in initial.items()},
                    "history": history,
                    "trace": trace,
                    "sums": sums,
                    "resumed_from_steps": resumed,
                    "wall_time_s": wall_before + time.perf_counter() - t_start,
                }
                store.save_checkpoint(checkpoint_path, state)
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


def _parameter_groups(model: nn.Module, cfg: TrainConfig) -> dict[str, list[nn.Parameter]] | None:
    """The model's parameter groups (or ``None``); with ``cfg.lr_groups``, frozen groups lose ``requires_grad``."""
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else None
    if cfg.lr_groups is None:
        return groups
    if groups is None:
        raise ValueError(f"lr_groups needs a model with parameter_groups() (a VanillaCNN), got {type(model).__name__}")
    if set(groups) != set(cfg.lr_groups):
        raise ValueError(
            f"the model's parameter groups {sorted(groups)} are not those of lr_groups {sorted(cfg.lr_groups)}"
        )
    for g, ps in groups.items():
        if cfg.lr_groups[g] == 0:
            for p in ps:
                p.requires_grad_(False)
    return groups


class _Stepper:
    """One optimiser step on a minibatch, eagerly or replayed from a CUDA graph.

    With ``graph`` the first :data:`GRAPH_WARMUP` steps run eagerly (on a side
    stream, as CUDA graph capture requires); the next step is captured and replayed
    from then on with the minibatch copied into static tensors.  Both give the same
    updates; the graph saves the per-kernel launch cost.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, graph: bool):
        self.model, self.optimizer, self.graph = model, optimizer, graph
        self.eager_steps, self.captured = 0, None

    def _eager(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(xb)
        loss = F.cross_entropy(logits, yb)
        correct = (logits.detach().argmax(dim=1) == yb).sum()
        return loss, correct

    def _objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The minimised objective: the data loss plus the model's own penalty, if it has one."""
        penalty = getattr(self.model, "regularization_loss", None)
        return loss if penalty is None else loss + penalty()

    def _update(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[float, int]:
        """An eager step: the loss and correct count of the minibatch, then the update if the loss is finite."""
        loss, correct = self._eager(xb, yb)
        loss_value = loss.item()
        if math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            self._objective(loss).backward()
            self.optimizer.step()
        return loss_value, int(correct.item())

    def step(self, xb: torch.Tensor, yb: torch.Tensor, step: int = 0) -> tuple[float, int]:
        """One update at (0-based) ``step``; a model with ``before_step(step)`` is told the step first."""
        before = getattr(self.model, "before_step", None)
        if before is not None:
            if self.graph:
                raise ValueError("a model with before_step cannot be trained with cuda_graph")
            before(step)
        if not self.graph:
            return self._update(xb, yb)
        if self.captured is None and self.eager_steps < GRAPH_WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self._update(xb, yb)
            torch.cuda.current_stream().wait_stream(side)
            self.eager_steps += 1
            return out
        if self.captured is None:
            sx, sy = xb.clone(), yb.clone()
            graph = torch.cuda.CUDAGraph()
            self.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # jobs may run in other threads
                sloss, scorrect = self._eager(sx, sy)
                self._objective(sloss).backward()
                self.optimizer.step()
            self.captured = (graph, sx, sy, sloss, scorrect)
            # the capture recorded the step without running it: replay it for this minibatch below
        graph, sx, sy, sloss, scorrect = self.captured
        sx.copy_(xb)
        sy.copy_(yb)
        graph.replay()
        return sloss.item(), int(scorrect.item())


def _snapshot(
    model: nn.Module, optimizer: torch.optim.Optimizer, sampler: BatchSampler, dev: torch.device
) -> dict[str, Any]:
    """The random and learnt state of a run (parameters, optimiser, sampler, torch's generators)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if dev.type == "cuda" else None,
    }


def _restore(
    ckpt: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: BatchSampler,
    dev: torch.device,
) -> tuple[list[dict[str, Any]], list[float], dict[str, Any], int, float]:
    """Put a checkpoint's state back; return its history, trace, running sums, step and wall time."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    sampler.load_state_dict(ckpt["sampler"])
    torch.set_rng_state(ckpt["torch_rng"])
    if dev.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    history, trace, sums = list(ckpt["history"]), list(ckpt.get("trace", [])), dict(ckpt["sums"])
    return history, trace, sums, int(ckpt["step"]), float(ckpt["wall_time_s"])


def _record(
    step: int,
    cfg: TrainConfig,
    n_train: int,
    train_loss: float | None,
    train_acc: float | None,
    test_loss: float | None,
    test_acc: float | None,
    n_eval: int | None = None,
) -> dict[str, Any]:
    return {
        "test_n": n_eval,
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


