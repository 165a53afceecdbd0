"""Where a result came from: versions, code revision and machine.

Every training result written by :mod:`signalprop.experiment` carries a provenance
record so that a number in the book can be traced back to the code and the
software stack that produced it.  Nothing here influences a computation; the
record only describes it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["git_revision", "device_description", "collect"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def git_revision(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The git commit checked out at ``path`` and whether the work tree has changes.

    Parameters
    ----------
    path : path-like, optional
        A directory inside the repository; defaults to the directory of this
        package, whose ``__init__.py`` must then be tracked by the repository
        (true of an editable install, not of a copy installed into a virtual
        environment that happens to live inside some repository).

    Returns
    -------
    dict or None
        ``{"commit": <40 hex digits>, "dirty": bool}``, or ``None`` when git is
        not installed, ``path`` is not in a repository, or git fails.
    """
    cwd = Path(path) if path is not None else _PACKAGE_DIR
    try:
        if path is None:  # the package must be tracked by that repository (not a copy installed inside it)
            subprocess.run(
                ["git", "ls-files", "--error-unmatch", "__init__.py"],
                cwd=cwd,
                capture_output=True,
                timeout=10,
                check=True,
            )
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if len(commit) != 40:
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def device_description(device: torch.device | str) -> str:
    """A readable name of ``device``: ``"cpu"`` or ``"cuda:0 (<GPU name>)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def collect(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The provenance record of a computation on ``device``.

    Returns
    -------
    dict
        JSON-ready: ``signalprop`` (package version), ``git`` (see
        :func:`git_revision`, may be ``None``), ``python``, ``torch``, ``numpy``,
        ``platform``, ``device``, ``torch_threads`` (intra-op threads, which can
        change the last bits of CPU reductions) and ``cuda`` (the CUDA version
        torch was built with, or ``None``).
    """
    import signalprop

    return {
        "signalprop": signalprop.__version__,
        "git": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": f"{platform.system()}-{platform.machine()}",
        "implementation": sys.implementation.name,
        "device": device_description(device),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
    }
