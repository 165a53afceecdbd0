"""Tests of signalprop.store: atomic writes, validated results, corrupt checkpoints, one writer per job,
and that every stored result of the book still loads under its job key.

Each fault found when the store was written is replayed here: truncated, wrong-typed, incomplete and
out-of-range result files, truncated and garbage checkpoints, two runners of one job at once, a job
whose process died, and operational settings that must not change a job's key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from signalprop import claims, experiment, store, sweep
from torch import nn

TESTS = Path(__file__).resolve().parent
BOOK = TESTS.parent / "book"

# --- a tiny job, importable by path (``"test_store:..."``) ----------------------------------------


def blobs(name: str, split: str, n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    calls = os.environ.get("TTL_TEST_LOADER_LOG")
    if calls:  # a line per call, so that a test can count how often a job loaded its data
        with open(calls, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {split}\n")
    means = 2.0 * torch.randn(3, 16, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(int(split == "test"))
    y = torch.randint(0, 3, (n,), generator=g)
    return (means[y] + torch.randn(n, 16, generator=g)).view(n, 1, 4, 4), y


def tiny_mlp(hidden: int = 6) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.Tanh(), nn.Linear(hidden, 3))


def job(**train) -> dict:
    return {
        "data": {"name": "blobs", "loader": "test_store:blobs"},
        "model": {"factory": "test_store:tiny_mlp"},
        "train": {"batch_size": 12, "steps": 12, "eval_every": 4, "checkpoint_every": 4, **train},
    }


@pytest.fixture
def finished(tmp_path) -> Path:
    """A job directory holding a finished result."""
    directory = tmp_path / "job"
    experiment.run_experiment(job(), directory, device="cpu")
    return directory


class Stop(Exception):
    pass


def _stop_at_the_first_checkpoint(directory: Path, monkeypatch) -> None:
    """Run ``job()`` into ``directory`` and stop it right after its first checkpoint (at step 4)."""
    save = store.save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        raise Stop

    monkeypatch.setattr(store, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        experiment.run_experiment(job(), directory, device="cpu")
    monkeypatch.setattr(store, "save_checkpoint", save)


def _rewrite(directory: Path, change) -> Path:
    path = directory / store.RESULT_NAME
    doc = json.loads(path.read_text())
    doc = change(doc)
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


# --- results: every damaged file is refused with its name and a remedy ---------------------------


def test_a_valid_result_loads(finished):
    doc = store.load_result(finished)
    assert doc["status"] == "finished" and doc["final"] == doc["history"][-1]
    assert store.load_result(finished / "nothing-here") is None


def _truncate(doc):
    return json.dumps(doc)[:200]


def _set_final_accuracy(value):
    def change(doc):
        doc["history"][-1]["test_accuracy"] = value
        doc["final"]["test_accuracy"] = value
        return doc

    return change


def _drop(*keys):
    def change(doc):
        for key in keys:
            del doc[key]
        return doc

    return change


def _set(key, value):
    def change(doc):
        doc[key] = value
        return doc

    return change


def _edit_config(doc):
    doc["config"]["train"]["lr"] = 0.5  # the numbers no longer belong to the stored hash
    return doc


def _nan_loss(doc):
    doc["history"][1]["train_loss"] = float("nan")
    return doc


def _final_not_last(doc):
    doc["final"] = doc["history"][0]
    return doc


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_truncate, "is not valid JSON"),
        (lambda doc: [doc], "holds a JSON list, not an object"),
        (_drop("final", "history"), r"lacks the key\(s\) \['history', 'final'\]"),
        (_set_final_accuracy(7.5), r"test_accuracy = 7.5, not an accuracy in \[0, 1\]"),
        (_set_final_accuracy(float("nan")), r"test_accuracy = nan, not an accuracy in \[0, 1\]"),
        (_nan_loss, "train_loss = nan, not a finite number"),
        (_final_not_last, "final record is not the last history record"),
        (_set("status", "running"), "its status is 'running'"),
        (_set("schema", "other/2"), "its schema is 'other/2'"),
        (_edit_config, "config_sha256 .* is not the hash of its config"),
        (_set("history", {"0": 1}), "history is not a list"),
    ],
)
def test_a_damaged_result_is_refused_naming_the_file_and_the_remedy(finished, change, match):
    path = _rewrite(finished, change)
    with pytest.raises(ValueError, match=match) as err:
        store.load_result(path)
    assert str(path) in str(err.value) and f"Delete {finished}" in str(err.value)
    # every reader goes through the store: the sweep's table and the experiment refuse it too
    with pytest.raises(ValueError, match=match):
        experiment.run_experiment(job(), finished, device="cpu")
    with pytest.raises(ValueError, match=match):
        store.job_state(finished)


def test_a_result_of_another_job_is_refused(finished):
    with pytest.raises(ValueError, match="different configuration"):
        experiment.run_experiment(job(lr=0.3), finished, device="cpu")


def test_json_writer_refuses_nan_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="not plain JSON"):
        store.write_json_atomic(tmp_path / "x.json", {"a": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_read_json_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match=f"{bad} is not valid JSON"):
        store.read_json(bad)


# --- one atomic writer, one permission for everything --------------------------------------------


def test_results_checkpoints_and_claims_get_the_same_permissions(tmp_path, monkeypatch):
    monkeypatch.setenv("TTL_WRITE_CLAIMS", "1")  # claims.record writes only when asked
    mask = os.umask(0o022)
    try:
        result = store.write_json_atomic(tmp_path / "r.json", {"a": 1})
        ckpt = store.save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(2)})
        values = {f.name: "x" for f in dataclasses.fields(claims.Claim)}
        values.update(id="x-claim", verdict=claims.VERDICTS[0])
        claim = claims.record(claims.Claim(**values), tmp_path / "claims")
    finally:
        os.umask(mask)
    for path in (result, ckpt, claim):
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert json.loads(result.read_text()) == {"a": 1}
    assert json.loads(claim.read_text())["id"] == "x-claim"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "claims", "r.json"]  # no temporary left


# --- checkpoints: a corrupt one is moved aside and the job starts again --------------------------


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"\x80\x04garbage, not a checkpoint" * 10,  # garbage
    ],
    ids=["truncated", "garbage"],
)
def test_a_corrupt_checkpoint_is_moved_aside_and_the_job_restarts(tmp_path, damage, monkeypatch):
    directory = tmp_path / "job"
    _stop_at_the_first_checkpoint(directory, monkeypatch)
    ckpt = directory / store.CHECKPOINT_NAME
    ckpt.write_bytes(damage(ckpt.read_bytes()))
    with pytest.warns(RuntimeWarning, match=rf"checkpoint {ckpt} could not be read .* starting this job again"):
        result = experiment.run_experiment(job(), directory, device="cpu")
    aside = list(directory.glob("checkpoint.pt.corrupt-*"))
    assert len(aside) == 1  # kept for inspection, never unpickled
    assert result["resumed_from_steps"] == [] and result["status"] == "finished"
    straight = experiment.run_experiment(job(), tmp_path / "straight", device="cpu")
    assert result["history"] == straight["history"]


def test_a_checkpoint_with_arbitrary_objects_is_not_unpickled(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"x": Path("/")}, path)  # a pickle of a non-tensor object: refused by weights_only loading
    with pytest.warns(RuntimeWarning, match="could not be read"):
        assert store.load_checkpoint(path) is None
    assert not path.exists()


# --- one writer per job --------------------------------------------------------------------------

_HOLDER = """
import sys, time
from pathlib import Path
import signalprop.experiment as E
import signalprop.store as S
release = Path(sys.argv[2])
_save = S.save_checkpoint
def save_then_wait(path, state):
    _save(path, state)
    print("CHECKPOINTED", flush=True)
    while not release.exists():
        time.sleep(0.05)
S.save_checkpoint = save_then_wait
import test_store
E.run_experiment(test_store.job(), sys.argv[1], device="cpu", progress=False)
"""

_SECOND = """
import json, sys
import signalprop.experiment as E
import test_store
print(json.dumps(E.run_experiment(test_store.job(), sys.argv[1], device="cpu", progress=False)["history"]))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    env["TTL_TEST_LOADER_LOG"] = str(tmp_path / "loads.txt")
    return env


def _start_holder(tmp_path: Path, directory: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(directory), str(tmp_path / "release")],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = holder.stdout.readline()
    if "CHECKPOINTED" not in line:
        holder.kill()
        pytest.fail(f"the first runner did not reach its checkpoint: {line}{holder.stdout.read()}")
    return holder


@pytest.mark.slow
def test_a_second_runner_of_a_job_waits_and_takes_the_result(tmp_path):
    directory = tmp_path / "job"
    holder = _start_holder(tmp_path, directory)
    try:
        live_tmp = directory / ".checkpoint.pt.live.tmp"  # as if the holder were writing a checkpoint now
        live_tmp.write_bytes(b"being written")
        second = subprocess.Popen(
            [sys.executable, "-c", _SECOND, str(directory)],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = second.stderr.readline()
        assert "is being run by another process" in waiting and f"pid {holder.pid}" in waiting
        assert store.job_state(directory) == "running"
        assert live_tmp.exists()  # the waiting runner removed nothing
        live_tmp.unlink()
        (tmp_path / "release").touch()
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert holder.wait(timeout=120) == 0
    finally:
        (tmp_path / "release").touch()
        holder.kill()
        holder.wait(timeout=60)
        holder.stdout.close()
    stored = store.load_result(directory)
    assert json.loads(out.strip().splitlines()[-1]) == stored["history"]
    loads = (tmp_path / "loads.txt").read_text().split("\n")
    assert sorted(line.split()[1] for line in loads if line) == ["test", "train"]  # trained once, by the holder
    assert store.job_state(directory) == "finished"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_killed_job_is_interrupted_and_only_its_dead_temporaries_are_removed(tmp_path):
    directory = tmp_path / "job"
    holder = _start_holder(tmp_path, directory)
    try:
        stale = directory / ".checkpoint.pt.abc.tmp"
        stale.write_bytes(b"half")
        with pytest.raises(store.JobBusy, match=f"pid {holder.pid}"):
            experiment.run_experiment(job(), directory, device="cpu", wait=False)
        assert stale.exists()  # the live writer's files are left alone
        assert store.job_state(directory) == "running"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    finally:
        holder.kill()
        holder.wait(timeout=60)
        holder.stdout.close()
    assert store.job_state(directory) == "interrupted"
    result = experiment.run_experiment(job(), directory, device="cpu")
    assert not stale.exists() and result["resumed_from_steps"] == [4]


def test_stale_temporaries_are_removed_only_under_the_lock(tmp_path):
    with pytest.raises(ValueError, match="take the job's lock"):
        store.remove_stale_temporaries(tmp_path)
    (tmp_path / ".result.json.x.tmp").write_text("half")
    with store.JobLock(tmp_path), store.JobLock(tmp_path):  # re-entrant within a process
        assert [p.name for p in store.remove_stale_temporaries(tmp_path)] == [".result.json.x.tmp"]
        assert store.job_state(tmp_path) == "running"
    assert store.job_state(tmp_path) == "interrupted"
    assert store.job_state(tmp_path / "absent") == "missing"


# --- job identity: operational settings are recorded, not hashed --------------------------------


def test_operational_settings_do_not_change_the_key():
    base = {
        "data": {"name": "d"},
        "model": {"depth": 4, "fast": True, "checkpoint_segments": None},
        "train": {"lr": 0.1, "checkpoint_every": 0, "eval_batch_size": 1000},
    }
    other = {
        "data": {"name": "d"},
        "model": {"depth": 4, "fast": False, "checkpoint_segments": "sqrt"},
        "train": {"lr": 0.1, "checkpoint_every": 10, "eval_batch_size": 50},
    }
    bare = {"data": {"name": "d"}, "model": {"depth": 4}, "train": {"lr": 0.1}}
    assert sweep.config_key(base) == sweep.config_key(other) == sweep.config_key(bare)
    for section, key, value in (("train", "lr", 0.2), ("model", "depth", 5), ("train", "seed", 1)):
        changed = json.loads(json.dumps(base))
        changed[section][key] = value
        assert sweep.config_key(changed) != sweep.config_key(base)


def test_a_new_checkpoint_cadence_keeps_the_stored_result(finished):
    stored = store.load_result(finished)
    again = experiment.run_experiment(job(checkpoint_every=0, eval_batch_size=7), finished, device="cpu")
    assert again == stored  # answered from the store: same job, recorded with the settings it ran with


def test_a_checkpoint_resumes_under_another_cadence(tmp_path, monkeypatch):
    directory = tmp_path / "job"
    _stop_at_the_first_checkpoint(directory, monkeypatch)
    resumed = experiment.run_experiment(job(checkpoint_every=6), directory, device="cpu")
    assert resumed["resumed_from_steps"] == [4]
    assert resumed["history"] == experiment.run_experiment(job(), tmp_path / "straight", device="cpu")["history"]


# --- every stored result of the book loads, under the key of its configuration -------------------

STORED = sorted(BOOK.glob("*/results/*/*/*/result.json"))


def test_there_are_stored_results():
    assert len(STORED) >= 4


@pytest.mark.parametrize("path", STORED, ids=[str(p.relative_to(BOOK).parent) for p in STORED])
def test_every_stored_result_loads_under_its_key(path):
    doc = store.load_result(path)
    assert path.parent.name == sweep.config_key(doc["config"])
    assert store.read_json(path.parent / store.CONFIG_NAME) == doc["config"]
