"""``python3 tasks.py run``: the chapter's committed twin is replaced only by a successful run at the
preset the book renders; other presets, failures and kills leave it untouched.

The notebook tools (jupytext, papermill) are replaced by stand-ins that write what they would
write, so these tests check the runner's own file handling in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tasks():
    spec = importlib.util.spec_from_file_location("ttl_tasks", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER = "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n---\n\n# A chapter\n"


def _notebook(text: str, papermill: bool = False) -> dict:
    meta = {"papermill": {"duration": 1.0}} if papermill else {}
    cell = {"cell_type": "code", "metadata": dict(meta), "source": text, "outputs": [], "execution_count": 1}
    return {"cells": [cell], "metadata": dict(meta), "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def fake_book(tmp_path, monkeypatch):
    """A book with one chapter ``x/ch`` and its committed twin; tasks' tools replaced by ``TOOLS``."""
    tasks = _tasks()
    book = tmp_path / "book" / "x"
    book.mkdir(parents=True)
    (book / "ch.md").write_text(HEADER)
    twin = book / "ch.ipynb"
    twin.write_text(json.dumps(_notebook("committed")))
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    monkeypatch.setattr(tasks, "RUNS", tmp_path / "book" / "_build" / "runs")
    monkeypatch.setattr(tasks, "setup", lambda: None)
    behaviour = {"papermill": "ok"}

    def fake_run(*cmd, extra_env=None):
        tool = Path(str(cmd[0])).name
        if tool == "jupytext":
            out = Path(str(cmd[cmd.index("--output") + 1]))
            out.write_text(json.dumps(_notebook("from the md")))
        elif tool == "papermill":
            assert extra_env["TTL_ALLOW_TRAINING"] == "1"
            out = Path(str(cmd[2]))
            if behaviour["papermill"] == "fail":
                out.write_text('{"cells": [')  # half an executed notebook, then the kernel dies
                raise subprocess.CalledProcessError(1, [str(c) for c in cmd])
            out.write_text(json.dumps(_notebook(f"executed at {extra_env['TTL_PRESET']}", papermill=True)))
        else:
            raise AssertionError(cmd)

    monkeypatch.setattr(tasks, "_run", fake_run)
    return tasks, twin, behaviour


def test_the_rendered_preset_replaces_the_twin(fake_book):
    tasks, twin, _ = fake_book
    assert tasks.run("x/ch", "cpu") == twin
    doc = json.loads(twin.read_text())
    assert doc["cells"][0]["source"] == "executed at cpu"
    assert "papermill" not in doc["metadata"] and "papermill" not in doc["cells"][0]["metadata"]


@pytest.mark.parametrize("preset", ["smoke", "paper"])
def test_other_presets_leave_the_twin_and_write_under_build_runs(fake_book, preset):
    tasks, twin, _ = fake_book
    before = twin.read_bytes()
    out = tasks.run("x/ch", preset)
    assert out == tasks.ROOT / "book" / "_build" / "runs" / "x" / f"ch-{preset}.ipynb"
    assert json.loads(out.read_text())["cells"][0]["source"] == f"executed at {preset}"
    assert twin.read_bytes() == before


def test_a_failed_run_leaves_the_twin(fake_book):
    tasks, twin, behaviour = fake_book
    before = twin.read_bytes()
    behaviour["papermill"] = "fail"
    with pytest.raises(subprocess.CalledProcessError):
        tasks.run("x/ch", "cpu")
    assert twin.read_bytes() == before
    assert not list((tasks.RUNS / ".tmp").iterdir())  # the half-written notebook went with its folder


def test_run_targets_of_the_real_chapters():
    tasks = _tasks()
    assert tasks.run_target("xiao2018/depth_ladder", "cpu") == ROOT / "book" / "xiao2018" / "depth_ladder.ipynb"
    assert tasks.run_target("xiao2018/depth_ladder", "smoke") == (
        ROOT / "book" / "_build" / "runs" / "xiao2018" / "depth_ladder-smoke.ipynb"
    )


# A real ``tasks.py run`` process on a real chapter at the rendered preset, killed with SIGKILL while
# papermill is writing its output: papermill is a stand-in that writes half a notebook and hangs.
_KILLABLE = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import tasks
tasks.setup = lambda: None
def fake_run(*cmd, extra_env=None):
    tool = Path(str(cmd[0])).name
    if tool == "jupytext":
        Path(str(cmd[cmd.index("--output") + 1])).write_text("{}")
    elif tool == "papermill":
        out = Path(str(cmd[2]))
        out.write_text('{"cells": [{"execution_count": 1}, {"execution_count": null')
        print("WRITING", out, flush=True)
        while True:
            time.sleep(0.5)
tasks._run = fake_run
tasks.run("xiao2018/depth_ladder", "cpu")
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_sigkilled_run_leaves_the_committed_twin_unchanged(tmp_path):
    twin = ROOT / "book" / "xiao2018" / "depth_ladder.ipynb"
    md = twin.with_suffix(".md")
    before, md_before = twin.read_bytes(), md.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(ROOT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        line = child.stdout.readline()
        while not line.startswith("WRITING"):
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run did not reach papermill: {line}{child.stdout.read()}")
            line = child.stdout.readline()
        partial = Path(line.split(maxsplit=1)[1].strip())
        assert partial.exists() and partial.parent != twin.parent
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert twin.read_bytes() == before and md.read_bytes() == md_before
    shutil.rmtree(partial.parent)  # what a killed run leaves is a scratch folder under book/_build (ignored by git)
