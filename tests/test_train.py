"""Tests of signalprop.train: optimisers, metrics, divergence, determinism, checkpoints and resumption.

Everything runs on tiny synthetic data (Gaussian blobs of 4 x 4 one-channel
"images") and a two-layer tanh perceptron, so the whole file takes seconds.
The data loader and model factory below are referred to by import path
(``"test_train:blobs"``) from experiment configurations, also in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from signalprop import experiment as E
from signalprop import store as S
from signalprop import train as T
from torch import nn

TESTS = Path(__file__).resolve().parent

# --- tiny data and models, importable by path --------------------------------------------------

LOADER_CALLS = {"n": 0}


def blobs(name: str, split: str, n: int = 64, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs around fixed class means, as (n, 1, 4, 4) float32 images and int64 labels."""
    LOADER_CALLS["n"] += 1
    means = 1.5 * torch.randn(classes, 16, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(2 * seed + (split == "test"))
    y = torch.randint(0, classes, (n,), generator=g)
    x = means[y] + torch.randn(n, 16, generator=g)
    return x.view(n, 1, 4, 4), y


class CrashingMLP(nn.Sequential):
    """The tiny perceptron, raising ``Interrupted`` at training forward pass ``crash_at`` (1-based)."""

    def __init__(self, *layers: nn.Module, crash_at: int) -> None:
        super().__init__(*layers)
        self.crash_at, self.calls = crash_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.crash_at:
                raise Interrupted(self.calls)
        return super().forward(x)


class Interrupted(Exception):
    pass


def tiny_mlp(hidden: int = 8, classes: int = 3, crash_at: int | None = None) -> nn.Module:
    layers = (nn.Flatten(), nn.Linear(16, hidden), nn.Tanh(), nn.Linear(hidden, classes))
    return nn.Sequential(*layers) if crash_at is None else CrashingMLP(*layers, crash_at=crash_at)


class PoisonedMLP(nn.Sequential):
    """The tiny perceptron with NaN logits at training pass ``nan_at``, or inf ones in eval mode after ``inf_after``."""

    def __init__(self, nan_at: int | None = None, inf_after: int | None = None) -> None:
        super().__init__(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
        self.nan_at, self.inf_after, self.calls = nan_at, inf_after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls == self.nan_at:
                return out * float("nan")
        elif self.inf_after is not None and self.calls >= self.inf_after:
            return out * float("inf")
        return out


def seeded(factory, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return factory(**kwargs)


@pytest.fixture
def data():
    return blobs("blobs", "train"), blobs("blobs", "test", n=32)


def experiment(**train) -> dict:
    base = {"optimizer": "momentum", "lr": 0.05, "batch_size": 16, "steps": 30, "eval_every": 5, "seed": 3}
    return {
        "data": {"name": "blobs", "loader": "test_train:blobs"},
        "model": {"factory": "test_train:tiny_mlp", "hidden": 8},
        "train": {**base, **train},
    }


# --- configuration -----------------------------------------------------------------------------


def test_defaults_are_the_authors_demo():
    cfg = T.TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.batch_size) == ("momentum", 1e-2, 0.95, 100)
    assert T.TrainConfig.from_dict({"lr": 0.1}) == T.TrainConfig(lr=0.1)
    assert T.TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_numpy_numbers_become_plain_python_numbers():
    cfg = T.TrainConfig.from_dict({"lr": np.float32(0.5), "steps": np.int64(7), "weight_decay": 0})
    assert (type(cfg.lr), type(cfg.steps), type(cfg.weight_decay)) == (float, int, float)
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"optimizer": "lbfgs"}, "unknown optimizer"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"lr": -1e-3}, "lr must be positive"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"lr": "0.1"}, "lr must be a finite number"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"weight_decay": -1.0}, "weight_decay must be non-negative"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"eval_every": 0}, "eval_every must be at least 1"),
        ({"eval_batch_size": 0}, "eval_batch_size must be at least 1"),
        ({"checkpoint_every": -1}, "checkpoint_every must be at least 0"),
        ({"seed": True}, "seed must be an integer"),
        ({"init_seed": -2}, "init_seed must be at least 0"),
        ({"deterministic": "yes"}, "deterministic must be true or false"),
        ({"learning_rate": 0.1}, r"unknown training option\(s\) \['learning_rate'\]"),
    ],
)
def test_bad_configuration_raises(overrides, match):
    with pytest.raises(ValueError, match=match):
        T.TrainConfig.from_dict(overrides)


def test_batch_larger_than_training_set_raises(data):
    with pytest.raises(ValueError, match="larger than the training set"):
        T.train(seeded(tiny_mlp), *data, {"batch_size": 65, "steps": 1}, device="cpu")


def test_float_labels_raise(data):
    (x, y), test = data
    with pytest.raises(ValueError, match="labels must be a 1-d int64 tensor"):
        T.train(seeded(tiny_mlp), (x, y.float()), test, {"batch_size": 8, "steps": 1}, device="cpu")


def test_mismatched_inputs_and_labels_raise(data):
    (x, y), test = data
    with pytest.raises(ValueError, match="same, non-zero number"):
        T.train(seeded(tiny_mlp), (x[:10], y), test, {"batch_size": 8, "steps": 1}, device="cpu")


def test_model_without_parameters_raises(data):
    with pytest.raises(ValueError, match="no trainable floating-point parameters"):
        T.train(nn.Flatten(), *data, {"batch_size": 8, "steps": 1}, device="cpu")


# --- optimisers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "extra"),
    [
        ("sgd", torch.optim.SGD, {"momentum": 0.0}),
        ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False, "dampening": 0}),
        ("adam", torch.optim.Adam, {"betas": (0.9, 0.999)}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.99}),
        ("adagrad", torch.optim.Adagrad, {"initial_accumulator_value": 0}),
        ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "dampening": 0}),
        ("adadelta", torch.optim.Adadelta, {"rho": 0.9, "eps": 1e-6}),
    ],
)
def test_optimizer_names(name, cls, extra):
    opt = T.make_optimizer(nn.Linear(2, 2).parameters(), T.TrainConfig(optimizer=name, lr=0.3, momentum=0.9))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.3 and group["weight_decay"] == 0
    for key, value in extra.items():
        assert group[key] == value


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        T.TrainConfig(optimizer="nesterov", momentum=0.0)


def _softmax_linear_grad(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Gradient of the mean softmax cross-entropy of logits x W^T + b, in closed form: (p - onehot)^T x / n."""
    logits = x @ weight.T + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p.T @ x / len(y), p.mean(axis=0)


def _linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_full_batch_steps_follow_the_heavy_ball_update(data, optimizer):
    # With batch = whole training set every step sees all examples, so the updates can be replayed
    # from the closed-form gradient: v <- m v + g, w <- w - lr v (m = 0 for plain SGD); Nesterov's
    # look-ahead in torch's form: w <- w - lr (g + m v).
    (x, y), test = data
    lr, m = 0.5, (0.0 if optimizer == "sgd" else 0.9)
    model = _linear_model()
    w = model[1].weight.detach().numpy().copy()
    b = model[1].bias.detach().numpy().copy()
    cfg = {"optimizer": optimizer, "lr": lr, "momentum": 0.9, "batch_size": 64, "steps": 3, "eval_every": 3}
    T.train(model, (x, y), test, cfg, device="cpu")
    xs, ys = x.reshape(64, 16).double().numpy(), y.numpy()
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(3):
        gw, gb = _softmax_linear_grad(w, b, xs, ys)
        vw, vb = m * vw + gw, m * vb + gb
        if optimizer == "nesterov":
            w, b = w - lr * (gw + m * vw), b - lr * (gb + m * vb)
        else:
            w, b = w - lr * vw, b - lr * vb
    np.testing.assert_allclose(model[1].weight.detach().numpy(), w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model[1].bias.detach().numpy(), b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("optimizer", "lr"), [("sgd", 0.2), ("momentum", 0.05), ("adam", 0.02), ("rmsprop", 0.01), ("adagrad", 0.1)]
)
def test_every_optimizer_fits_the_blobs(data, optimizer, lr):
    (x, y), test = data
    model = seeded(tiny_mlp)
    before, _ = T.evaluate(model, x, y)
    result = T.train(
        model, (x, y), test, {"optimizer": optimizer, "lr": lr, "batch_size": 16, "steps": 80}, device="cpu"
    )
    after, accuracy = T.evaluate(model, x, y)
    assert result["status"] == "finished"
    assert after < 0.5 * before and accuracy > 0.9


# --- metrics -------------------------------------------------------------------------------------


def test_evaluate_matches_a_direct_computation(data):
    _, (x, y) = data
    model = seeded(tiny_mlp).double()
    loss, acc = T.evaluate(model, x.double(), y, batch_size=5)
    w1, b1 = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    w2, b2 = model[3].weight.detach().numpy(), model[3].bias.detach().numpy()
    logits = np.tanh(x.reshape(32, 16).double().numpy() @ w1.T + b1) @ w2.T + b2
    logz = np.log(np.exp(logits).sum(axis=1))
    labels = y.numpy()
    assert loss == pytest.approx(np.mean(logz - logits[np.arange(32), labels]), rel=1e-12)
    assert acc == np.mean(logits.argmax(axis=1) == labels)
    assert model.training


def test_history_schedule_and_epochs(data):
    cfg = {"batch_size": 16, "steps": 10, "eval_every": 4}
    result = T.train(seeded(tiny_mlp), *data, cfg, device="cpu")
    hist = result["history"]
    assert [h["step"] for h in hist] == [0, 4, 8, 10]
    assert [h["epoch"] for h in hist] == [0.0, 1.0, 2.0, 2.5]  # step * 16 / 64
    assert hist[0]["train_loss"] is None and hist[0]["train_accuracy"] is None
    assert all(h["test_loss"] is not None for h in hist)
    assert result["final"] == hist[-1] and result["steps_completed"] == 10
    assert (result["n_train"], result["n_test"]) == (64, 32)
    assert result["n_parameters"] == 16 * 8 + 8 + 8 * 3 + 3


def test_running_metrics_of_a_frozen_model(data):
    # At lr = 1e-30 an SGD step changes no float32 parameter, so the model is fixed; 4 steps of 16
    # cover one permutation of the 64 examples, whose running mean must be the full-data metrics.
    (x, y), (xt, yt) = data
    model = seeded(tiny_mlp)
    initial = [p.detach().clone() for p in model.parameters()]
    train_loss, train_acc = T.evaluate(model, x, y)
    test_loss, test_acc = T.evaluate(model, xt, yt)
    cfg = {"optimizer": "sgd", "lr": 1e-30, "batch_size": 16, "steps": 4, "eval_every": 4}
    hist = T.train(model, (x, y), (xt, yt), cfg, device="cpu")["history"]
    assert all(torch.equal(a, b) for a, b in zip(initial, model.parameters(), strict=True))
    assert hist[1]["train_loss"] == pytest.approx(train_loss, rel=1e-6)
    assert hist[1]["train_accuracy"] == train_acc
    assert (hist[0]["test_loss"], hist[0]["test_accuracy"]) == (test_loss, test_acc)
    assert (hist[1]["test_loss"], hist[1]["test_accuracy"]) == (test_loss, test_acc)


def test_without_held_out_data(data):
    train_data, _ = data
    hist = T.train(seeded(tiny_mlp), train_data, None, {"batch_size": 16, "steps": 4, "eval_every": 2}, device="cpu")
    assert [h["step"] for h in hist["history"]] == [2, 4]
    assert hist["final"]["test_loss"] is None and hist["n_test"] is None


def test_batches_are_a_stream_of_permutations():
    sampler = T.BatchSampler(10, 4, seed=5)
    g = torch.Generator().manual_seed(5)
    stream = torch.cat([torch.randperm(10, generator=g) for _ in range(2)])
    assert torch.equal(torch.cat([sampler.next() for _ in range(5)]), stream)


# --- divergence ----------------------------------------------------------------------------------


def test_nan_training_loss_is_recorded_not_raised(data):
    result = T.train(PoisonedMLP(nan_at=7), *data, {"batch_size": 16, "steps": 20, "eval_every": 3}, device="cpu")
    assert result["status"] == "diverged"
    assert (result["diverged_at_step"], result["steps_completed"]) == (7, 6)
    assert [h["step"] for h in result["history"]] == [0, 3, 6]
    json.dumps(result, allow_nan=False)


def test_infinite_held_out_loss_is_divergence(data):
    model = PoisonedMLP(inf_after=5)
    result = T.train(model, *data, {"batch_size": 16, "steps": 20, "eval_every": 3}, device="cpu")
    assert result["status"] == "diverged"
    assert (result["diverged_at_step"], result["steps_completed"]) == (6, 6)
    assert [h["step"] for h in result["history"]] == [0, 3]


# --- determinism and resumption ------------------------------------------------------------------


def test_same_configuration_gives_bit_identical_metrics(data):
    cfg = {"optimizer": "adam", "lr": 0.01, "batch_size": 16, "steps": 12, "eval_every": 4, "seed": 7}
    first = T.train(seeded(tiny_mlp), *data, cfg, device="cpu")
    second = T.train(seeded(tiny_mlp), *data, cfg, device="cpu")
    other_seed = T.train(seeded(tiny_mlp), *data, {**cfg, "seed": 8}, device="cpu")
    assert first["history"] == second["history"]
    assert first["history"] != other_seed["history"]


def test_deterministic_mode_is_restored(data):
    before = torch.are_deterministic_algorithms_enabled()
    T.train(seeded(tiny_mlp), *data, {"batch_size": 16, "steps": 2}, device="cpu")
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_resume_after_an_exception_is_exact(data, tmp_path, optimizer):
    cfg = {"optimizer": optimizer, "lr": 0.02, "batch_size": 24, "steps": 20, "eval_every": 3, "checkpoint_every": 5}
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Interrupted):
        T.train(seeded(tiny_mlp, crash_at=13), *data, cfg, checkpoint_path=path, device="cpu")
    assert S.load_checkpoint(path)["step"] == 10
    resumed = T.train(seeded(tiny_mlp, seed=99), *data, cfg, checkpoint_path=path, device="cpu")
    straight = T.train(seeded(tiny_mlp), *data, cfg, device="cpu")
    assert resumed["resumed_from_steps"] == [10]
    assert resumed["history"] == straight["history"]  # floats compared exactly
    assert resumed["trace"] == straight["trace"] and len(straight["trace"]) == T.TRACE_STEPS


def test_trace_holds_the_first_minibatch_losses(data):
    # Recompute the first three minibatch losses by hand: same initial model, same batch
    # stream (BatchSampler with the run's seed), plain SGD steps applied explicitly.
    cfg = {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "steps": 3, "eval_every": 3, "seed": 5}
    result = T.train(seeded(tiny_mlp), *data, cfg, device="cpu")
    model, (x, y) = seeded(tiny_mlp), data[0]
    sampler = T.BatchSampler(len(y), 16, 5)
    expected = []
    for _ in range(3):
        idx = sampler.next()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        expected.append(loss.item())
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    assert result["trace"] == pytest.approx(expected, rel=1e-6)
    longer = T.train(seeded(tiny_mlp), *data, {**cfg, "steps": 12, "eval_every": 4}, device="cpu")
    assert len(longer["trace"]) == T.TRACE_STEPS and longer["trace"][:3] == result["trace"]


def test_checkpoint_of_another_run_is_refused(data, tmp_path):
    cfg = {"batch_size": 16, "steps": 4, "checkpoint_every": 2}
    path = tmp_path / "checkpoint.pt"
    T.train(seeded(tiny_mlp), *data, cfg, checkpoint_path=path, device="cpu")
    with pytest.raises(ValueError, match="different configuration"):
        T.train(seeded(tiny_mlp), *data, {**cfg, "lr": 0.5}, checkpoint_path=path, device="cpu")


def test_progress_bar_can_be_switched(data, capsys):
    T.train(seeded(tiny_mlp), *data, {"batch_size": 16, "steps": 3}, device="cpu", progress=True)
    assert "training" in capsys.readouterr().err
    T.train(seeded(tiny_mlp), *data, {"batch_size": 16, "steps": 3}, device="cpu", progress=False)
    assert capsys.readouterr().err == ""


# --- experiments and result files ----------------------------------------------------------------


def test_run_experiment_writes_the_result_once(tmp_path):
    config = experiment(checkpoint_every=10)
    (tmp_path / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")  # as if killed while saving
    result = E.run_experiment(config, tmp_path, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "config.json", "result.json"]
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored == result
    assert stored["schema"] == S.SCHEMA and stored["status"] == "finished"
    assert stored["config"] == config and len(stored["config_sha256"]) == 64
    assert stored["history"][-1]["step"] == 30
    prov = stored["provenance"]
    assert prov["device"] == "cpu" and prov["torch"] == torch.__version__ and prov["deterministic"] is True
    assert prov["signalprop"] and prov["python"] and prov["torch_threads"] >= 1 and prov["wall_time_s"] > 0
    assert prov["git"] is None or len(prov["git"]["commit"]) == 40
    calls = LOADER_CALLS["n"]
    assert E.run_experiment(config, tmp_path, device="cpu") == result
    assert LOADER_CALLS["n"] == calls  # answered from result.json, nothing loaded or trained


def test_run_experiment_refuses_a_directory_of_another_configuration(tmp_path):
    E.run_experiment(experiment(steps=2), tmp_path, device="cpu")
    with pytest.raises(ValueError, match="different configuration"):
        E.run_experiment(experiment(steps=3), tmp_path, device="cpu")


def test_init_seed_controls_the_initial_model(tmp_path):
    a = E.run_experiment(experiment(steps=1, init_seed=1), tmp_path / "a", device="cpu")
    b = E.run_experiment(experiment(steps=1, init_seed=1, seed=4), tmp_path / "b", device="cpu")
    c = E.run_experiment(experiment(steps=1, init_seed=2), tmp_path / "c", device="cpu")
    assert a["history"][0] == b["history"][0] != c["history"][0]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"model": {}}, "no 'data' section"),
        ({"data": {"name": "blobs"}}, "no 'model' section"),
        ({"data": {"name": "blobs"}, "model": {}, "optim": {}}, r"unknown configuration section\(s\) \['optim'\]"),
        ({"data": {"name": "blobs"}, "model": []}, "section 'model' must be an object"),
        ({"data": {"loader": "test_train:blobs"}, "model": {}}, "needs a 'name'"),
        ({"data": {"name": "blobs"}, "model": {}, "train": {"lr": -1}}, "lr must be positive"),
        ({"data": {"name": "blobs"}, "model": {}, "train": {"lr": float("inf")}}, "not plain JSON"),
    ],
)
def test_bad_experiment_configuration_raises(config, match):
    with pytest.raises(ValueError, match=match):
        E.check_experiment(config)


def test_bad_import_path_raises(tmp_path):
    config = experiment()
    config["model"]["factory"] = "test_train:no_such_factory"
    with pytest.raises(ValueError, match="cannot import model factory"):
        E.run_experiment(config, tmp_path, device="cpu")


def test_default_wiring_uses_signalprop_data_and_models(tmp_path, monkeypatch):
    sp_data = pytest.importorskip("signalprop.data")
    sp_models = pytest.importorskip("signalprop.models")
    seen = {}

    def fake_load(name, split, root=None, **kwargs):
        seen.setdefault("data", []).append((name, split, root, kwargs))
        return blobs(name, split, n=60)

    def fake_build(config, device=None):
        seen["model"] = dict(config)
        return tiny_mlp(hidden=config["hidden"])

    monkeypatch.setattr(sp_data, "load_dataset", fake_load)
    monkeypatch.setattr(sp_models, "build_model", fake_build)
    config = {
        "data": {"name": "mnist", "normalize": False, "n_train": 30, "n_test": 12, "subset_seed": 1},
        "model": {"hidden": 5},
        "train": {"batch_size": 10, "steps": 3},
    }
    result = E.run_experiment(config, tmp_path, device="cpu", data_root=tmp_path / "data")
    assert seen["data"] == [
        ("mnist", "train", os.fspath(tmp_path / "data"), {"normalize": False}),
        ("mnist", "test", os.fspath(tmp_path / "data"), {"normalize": False}),
    ]
    assert seen["model"] == {"hidden": 5}
    assert (result["n_train"], result["n_test"]) == (30, 12)
    (x, y), (xt, yt) = blobs("mnist", "train", n=60), blobs("mnist", "test", n=60)
    rows, rows_t = sp_data.subset_indices(y, 30, 1), sp_data.subset_indices(yt, 12, 1)
    assert result["data_sha256"] == T._data_digest((x[rows], y[rows]), (xt[rows_t], yt[rows_t]))


# --- a run killed with SIGKILL resumes exactly ---------------------------------------------------

_KILLABLE = """
import sys, time
import signalprop.experiment as E
import signalprop.store as S
_save = S.save_checkpoint
def save_then_wait(path, state):
    _save(path, state)
    while True:          # hold here until the test kills this process
        time.sleep(0.5)
S.save_checkpoint = save_then_wait
sys.exit(E.main(sys.argv[1:]))
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkilled_run_resumes_to_identical_metrics(tmp_path):
    config = experiment(steps=40, checkpoint_every=15, optimizer="adam", lr=0.01)
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps(config))
    out = tmp_path / "killed"
    args = ["--config", str(cfg_file), "--out", str(out), "--no-progress", "--device", "cpu"]
    with open(tmp_path / "child.log", "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", _KILLABLE, *args], env=_child_env(), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while not (out / "checkpoint.pt").exists():
                if child.poll() is not None:
                    pytest.fail(f"child exited early:\n{(tmp_path / 'child.log').read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail("no checkpoint within 120 s")
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert not (out / "result.json").exists() and S.load_checkpoint(out / "checkpoint.pt")["step"] == 15

    resume = subprocess.run(
        [sys.executable, "-m", "signalprop.experiment", *args],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resume.returncode == 0, resume.stderr
    assert json.loads(resume.stdout.strip().splitlines()[-1])["status"] == "finished"
    resumed = S.load_result(out)
    straight = E.run_experiment(config, tmp_path / "straight", device="cpu")
    assert resumed["resumed_from_steps"] == [15]
    assert resumed["history"] == straight["history"] and resumed["final"] == straight["final"]
    assert not math.isnan(resumed["final"]["test_loss"])


# --- the real wiring: signalprop.data + signalprop.models ----------------------------------------


def test_real_fashion_mnist_and_vanilla_cnn_are_deterministic(tmp_path, monkeypatch):
    sp_data = pytest.importorskip("signalprop.data")
    pytest.importorskip("signalprop.models")
    try:
        sp_data.find_dataset_dir("fashion-mnist", "test")
    except sp_data.DatasetNotFoundError:
        if os.environ.get("TTL_REQUIRE_DATA"):
            raise
        pytest.skip("Fashion-MNIST is not installed")
    config = {
        "data": {"name": "fashion-mnist", "n_train": 40, "n_test": 20},
        "model": {"depth": 3, "channels": 4},
        "train": {"batch_size": 10, "steps": 4, "eval_every": 2, "checkpoint_every": 2},
    }
    first = E.run_experiment(config, tmp_path / "a", device="cpu")
    assert first["status"] == "finished" and (first["n_train"], first["n_test"]) == (40, 20)
    assert [h["step"] for h in first["history"]] == [0, 2, 4]

    save = S.save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        raise Interrupted(state["step"])

    monkeypatch.setattr(S, "save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        E.run_experiment(config, tmp_path / "b", device="cpu")
    monkeypatch.setattr(S, "save_checkpoint", save)
    second = E.run_experiment(config, tmp_path / "b", device="cpu")
    assert second["resumed_from_steps"] == [2]
    assert first["history"] == second["history"]


def test_result_files_are_readable_by_others(tmp_path):
    mask = os.umask(0o022)
    try:
        path = S.write_json_atomic(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert json.loads(path.read_text()) == {"a": 1}


class _Penalised(nn.Module):
    """A linear classifier with an L2 penalty of its own and a record of the steps it was told."""

    def __init__(self, coefficient: float):
        super().__init__()
        self.lin = nn.Linear(16, 3)
        self.coefficient = coefficient
        self.steps: list[int] = []

    def forward(self, x):
        return self.lin(x.flatten(1))

    def regularization_loss(self):
        return self.coefficient * (self.lin.weight**2).sum()

    def before_step(self, step):
        self.steps.append(step)


def test_model_penalty_enters_the_update_and_before_step_sees_every_step(data):
    torch.manual_seed(0)
    model = _Penalised(0.5)
    w0, b0 = model.lin.weight.detach().clone(), model.lin.bias.detach().clone()
    cfg = T.TrainConfig(optimizer="sgd", lr=0.1, batch_size=len(data[0][1]), steps=1, eval_every=1)
    out = T.train(model, data[0], data[1], cfg, progress=False)
    # oracle: one full-batch gradient step on cross-entropy + 0.5 ||W||^2, by hand with autograd on a copy
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    x, y = data[0]
    loss = torch.nn.functional.cross_entropy(x.flatten(1) @ w.T + b, y)
    (loss + 0.5 * (w**2).sum()).backward()
    torch.testing.assert_close(model.lin.weight.detach(), w0 - 0.1 * w.grad)
    torch.testing.assert_close(model.lin.bias.detach(), b0 - 0.1 * b.grad)
    assert out["trace"][0] == pytest.approx(loss.item())  # the recorded loss is the data loss alone
    assert model.steps == [0]
    model2 = _Penalised(0.0)
    T.train(model2, data[0], data[1], T.TrainConfig(optimizer="sgd", lr=0.1, batch_size=10, steps=5, eval_every=2),
          progress=False)
    assert model2.steps == [0, 1, 2, 3, 4]
