#!/usr/bin/env python3
"""Set-up and everyday commands for Ten Thousand Layers, with nothing but Python 3.11.

    python3 tasks.py book    # create .venv with the pinned stack, build the HTML book
    python3 tasks.py test    # create .venv with the pinned stack, run every test (pytest --nbval)

Other commands: ``setup`` (only the environment), ``sync`` (jupytext --sync every
chapter), ``execute [chapter ...]`` (re-execute every chapter's .ipynb, or the named
ones, in place from its .md, and write their claim records under book/status/),
``lint`` (ruff), and for the training chapters of Part III

    python3 tasks.py run <chapter> <preset>   # e.g. run xiao2018/trainability cpu

which executes the chapter through papermill at the named preset (smoke, cpu, paper) with
training allowed: missing results are trained (resuming interrupted runs) and stored under
book/<part>/results/<chapter>/<preset>/.  The notebook executes into a temporary file; only
a run that succeeded at the preset the book renders (cpu) then replaces the chapter's .ipynb
twin (an atomic rename), other presets go to book/_build/runs/<chapter>-<preset>.ipynb, and
a failed or killed run leaves both untouched.  The environment is made once and reused while
requirements.txt and pyproject.toml are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TTL_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".ttl-installed"
#: The preset whose executed notebooks are the chapters' committed twins (the one the book renders).
RENDERED_PRESET = "cpu"
#: Where ``run`` writes the executed notebooks of the other presets.
RUNS = ROOT / "book" / "_build" / "runs"


def _fingerprint() -> str:
    h = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _run(*cmd: str | Path, extra_env: dict[str, str] | None = None) -> None:
    env = dict(os.environ)
    env.update(extra_env or {})
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=True)


def setup() -> None:
    """Create .venv and install the pinned stack and the library (editable)."""
    if sys.version_info[:2] != (3, 11):
        print(f"warning: the pins are tested on Python 3.11, this is {sys.version.split()[0]}", file=sys.stderr)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "-r", "requirements.txt", "-e", ".")
    STAMP.write_text(_fingerprint())


def chapters() -> list[Path]:
    """Every jupytext-paired chapter source (.md with a jupytext header) under book/."""
    out = []
    for md in sorted((ROOT / "book").rglob("*.md")):
        if "_build" in md.parts:
            continue
        head = md.read_text(encoding="utf-8")[:400]
        if head.startswith("---") and "jupytext:" in head:
            out.append(md)
    return out


def book() -> None:
    setup()
    # --all: every page is read again (chapters come from the execution cache when their code is unchanged), so
    # the pages that render book/status/*.json, executed on every build (mystnb execution_mode: force), never show
    # records older than those on disk
    _run(BIN / "jupyter-book", "build", "book", "--all", "-W", "-n", "--keep-going")
    # The status page must show the verdicts the chapters computed in this same build.
    _run(BIN / "pytest", "-q", "tests/test_built_book.py", extra_env={"TTL_REQUIRE_BUILD": "1"})
    print(f"\nThe book is at {ROOT / 'book' / '_build' / 'html' / 'index.html'}")


def test() -> None:
    setup()
    _run(BIN / "pytest", "--nbval")


def sync() -> None:
    setup()
    _run(BIN / "jupytext", "--sync", *chapters())


def execute(*names: str) -> None:
    """Regenerate each chapter's .ipynb from its .md and execute it (no stale outputs kept).

    With names (``xiao2018/backpropagation``), only those chapters.  This is where claim
    records under book/status/ are written (``TTL_WRITE_CLAIMS=1``); building the book and
    running the tests execute chapters without writing them.
    """
    setup()
    mds = chapters()
    if names:
        wanted = [ROOT / "book" / f"{n.removesuffix('.md').removesuffix('.ipynb')}.md" for n in names]
        unknown = [str(w.relative_to(ROOT)) for w in wanted if w not in mds]
        if unknown:
            raise SystemExit(f"no chapter {', '.join(unknown)}")
        mds = wanted
    for md in mds:
        _run(BIN / "jupytext", "--to", "ipynb", "--execute", md, extra_env={"TTL_WRITE_CLAIMS": "1"})


def _strip_papermill_metadata(nb: Path) -> None:
    """Drop papermill's timing metadata, so the twin stays identical in content to the .md's cells."""
    doc = json.loads(nb.read_text(encoding="utf-8"))
    doc.get("metadata", {}).pop("papermill", None)
    for cell in doc.get("cells", []):
        cell.get("metadata", {}).pop("papermill", None)
    nb.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def run_target(chapter: str, preset: str) -> Path:
    """Where ``run`` puts the executed notebook: the twin for the rendered preset, else under ``RUNS``."""
    if preset == RENDERED_PRESET:
        return ROOT / "book" / f"{chapter}.ipynb"
    return RUNS / f"{chapter}-{preset}.ipynb"


def run(chapter: str, preset: str) -> Path:
    """Execute a training chapter through papermill at ``preset``, training what is missing.

    The notebook executes into a temporary folder under ``RUNS``; only when papermill
    succeeded is it renamed onto :func:`run_target` (the chapter's twin for the ``cpu``
    preset), so a failed or killed run leaves every committed file as it was.
    """
    if preset not in ("smoke", "cpu", "paper"):
        raise SystemExit(f"preset must be smoke, cpu or paper, got {preset!r}")
    chapter = chapter.removesuffix(".md").removesuffix(".ipynb")
    md = ROOT / "book" / f"{chapter}.md"
    if md not in chapters():
        raise SystemExit(f"no chapter {md.relative_to(ROOT)}")
    setup()
    target = run_target(chapter, preset)
    scratch = RUNS / ".tmp"  # inside the repository: on the twin's file system, so the final rename is atomic
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{md.stem}-{preset}-", dir=scratch) as tmp:
        source, executed = Path(tmp) / "source.ipynb", Path(tmp) / "executed.ipynb"
        _run(BIN / "jupytext", "--to", "ipynb", "--output", source, md)  # inputs from the reviewed .md
        # claim records are written only by the run whose twin the book renders
        env = {"TTL_PRESET": preset, "TTL_ALLOW_TRAINING": "1",
               "TTL_WRITE_CLAIMS": "1" if preset == RENDERED_PRESET else "0"}
        _run(BIN / "papermill", source, executed, "--cwd", md.parent, "--kernel", "python3", extra_env=env)
        _strip_papermill_metadata(executed)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(executed, target)
    print(f"\n{chapter} executed at preset {preset!r}: {target.relative_to(ROOT)}")
    return target


def lint() -> None:
    setup()
    _run(BIN / "ruff", "check", "lib", "tests", "tasks.py")


COMMANDS = {"setup": setup, "book": book, "test": test, "sync": sync, "execute": execute, "lint": lint}

if __name__ == "__main__":
    args = sys.argv[1:]
    ok = (len(args) == 1 and args[0] in COMMANDS) or (len(args) == 3 and args[0] == "run") or (
        len(args) > 1 and args[0] == "execute")
    if not ok:
        print(__doc__)
        sys.exit(2)
    try:
        if args[0] == "run":
            run(args[1], args[2])
        elif args[0] == "execute":
            execute(*args[1:])
        else:
            COMMANDS[args[0]]()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
