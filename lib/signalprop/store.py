"""The result store: atomic files, validated results and checkpoints, and one writer per job.

Everything a training run leaves on disk goes through this module:

* :func:`write_atomic` is the only way files are written (results, checkpoints,
  job configurations, claim records): a temporary file in the same folder, flushed
  and synced, then renamed over the target, with the usual permissions
  ``0666 & ~umask``.  A process killed at any moment leaves the old file or the
  new one, never a partial one; what it may leave is a ``.<name>.*.tmp`` file,
  removed by the next holder of the job's lock (:func:`remove_stale_temporaries`).
* :func:`load_result` reads a ``result.json`` and checks it (:func:`check_result`):
  a mapping of the known schema and status, with the required keys, accuracies in
  ``[0, 1]``, finite losses, a ``final`` record equal to the last ``history``
  record and a ``config_sha256`` equal to the hash of its ``config``.  Anything
  else raises :class:`ValueError` naming the file, what is wrong and what to do.
* :func:`load_checkpoint` never unpickles arbitrary objects (``weights_only=True``);
  a checkpoint that cannot be read is moved aside (``checkpoint.pt.corrupt-<time>``)
  with a warning, and the job starts again from step 0.
* :class:`JobLock` is an exclusive :func:`fcntl.flock` on ``<job>/.lock``, held for
  the whole run of a job, so a job has one writer at a time, whether its runners
  are processes on one machine or Ray workers on a shared file system (Linux NFS
  clients implement ``flock`` with byte-range locks that the server arbitrates).
  :func:`job_state` tells a running job (lock held) from an interrupted one (lock
  free, no final result).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "SCHEMA",
    "RESULT_NAME",
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "LOCK_NAME",
    "FINAL_STATUSES",
    "canonical_json",
    "config_sha256",
    "write_atomic",
    "write_json_atomic",
    "read_json",
    "check_result",
    "load_result",
    "save_checkpoint",
    "load_checkpoint",
    "JobLock",
    "JobBusy",
    "remove_stale_temporaries",
    "job_state",
]

#: Value of the ``schema`` field of a result file.
SCHEMA = "signalprop.train/1"
#: File names inside a job's directory.
RESULT_NAME = "result.json"
CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"
#: Statuses of a result that ends a job.
FINAL_STATUSES = ("finished", "diverged")

_REQUIRED = (
    "schema",
    "config",
    "config_sha256",
    "status",
    "steps_completed",
    "diverged_at_step",
    "history",
    "trace",
    "final",
    "provenance",
)
_RECORD_KEYS = ("step", "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


# --- canonical text and hashes -------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: the canonical text of a configuration.

    Raises
    ------
    ValueError
        ``obj`` holds something JSON cannot hold exactly (NaN, infinities,
        non-string keys, objects).
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"configuration is not plain JSON: {err}") from None


def config_sha256(config: Any) -> str:
    """SHA-256 (hex) of the canonical JSON text of ``config``: the checksum stored beside a result's config."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()


# --- atomic writes -------------------------------------------------------------------------------


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


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, sync it, then rename it over ``path``.

    The file gets the permissions ``0666 & ~umask`` (those of :func:`open`; ``mkstemp``
    alone would make it ``0600``).  A process killed at any moment leaves either the
    old file or the new one, and possibly a ``.<name>.<random>.tmp`` beside it.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where directories can be synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, *, indent: int = 1, ensure_ascii: bool = True
) -> Path:
    """Write ``obj`` as indented JSON with sorted keys (and a final newline) to ``path`` atomically.

    Raises
    ------
    ValueError
        ``obj`` holds NaN, an infinity or something JSON cannot represent (nothing is written).
    """
    try:
        text = json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False, ensure_ascii=ensure_ascii) + "\n"
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot write {path}: not plain JSON ({err})") from None
    data = text.encode("utf-8")
    return write_atomic(path, lambda fh: fh.write(data))


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document in ``path``.

    Raises
    ------
    ValueError
        The file is not UTF-8 JSON (truncated, garbage); the message names the file.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it is damaged or truncated") from None


# --- results -------------------------------------------------------------------------------------


def _finite_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def _record_problem(rec: Any, where: str) -> str | None:
    if not isinstance(rec, Mapping):
        return f"{where} is not an object"
    missing = [k for k in _RECORD_KEYS if k not in rec]
    if missing:
        return f"{where} lacks {missing}"
    step = rec["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"{where} has step {step!r}, not a non-negative integer"
    for key in ("epoch", "train_loss", "test_loss"):
        if not _finite_or_none(rec[key]):
            return f"{where} has {key} = {rec[key]!r}, not a finite number"
    for key in ("train_accuracy", "test_accuracy"):
        value = rec[key]
        if not _finite_or_none(value) or (value is not None and not 0 <= value <= 1):
            return f"{where} has {key} = {value!r}, not an accuracy in [0, 1]"
    return None


def _result_problem(doc: Any) -> str | None:
    """What is wrong with a result document, or ``None``."""
    if not isinstance(doc, Mapping):
        return f"it holds a JSON {type(doc).__name__}, not an object"
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        return f"it lacks the key(s) {missing}"
    if doc["schema"] != SCHEMA:
        return f"its schema is {doc['schema']!r}, not {SCHEMA!r}"
    if doc["status"] not in FINAL_STATUSES:
        return f"its status is {doc['status']!r}, not one of {FINAL_STATUSES}"
    if not isinstance(doc["config"], Mapping):
        return "its config is not an object"
    try:
        digest = config_sha256(doc["config"])
    except ValueError as err:
        return str(err)
    if doc["config_sha256"] != digest:
        return f"its config_sha256 {doc['config_sha256']!r} is not the hash of its config ({digest})"
    steps = doc["steps_completed"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        return f"steps_completed is {steps!r}, not a non-negative integer"
    history, trace = doc["history"], doc["trace"]
    if not isinstance(history, list):
        return "its history is not a list"
    for i, rec in enumerate(history):
        problem = _record_problem(rec, f"history[{i}]")
        if problem:
            return problem
    if not isinstance(trace, list) or not all(_finite_or_none(v) and v is not None for v in trace):
        return "its trace is not a list of finite losses"
    expected_final = history[-1] if history else None
    if doc["final"] != expected_final:
        return "its final record is not the last history record"
    if history and history[-1]["step"] > steps:
        return f"its last history record is at step {history[-1]['step']}, after steps_completed = {steps}"
    if not isinstance(doc["provenance"], Mapping):
        return "its provenance is not an object"
    return None


def check_result(doc: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return ``doc`` (read from ``path``) if it is a valid final result, else raise.

    Raises
    ------
    ValueError
        Naming ``path``, what is wrong, and that deleting the job's directory retrains the job.
    """
    problem = _result_problem(doc)
    if problem:
        path = Path(path)
        raise ValueError(
            f"{path} is not a valid result: {problem}. Delete {path.parent} to retrain this job "
            "(or restore the file, e.g. with git checkout)."
        )
    return dict(doc)


def load_result(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The validated result stored at ``path`` (a ``result.json`` or the job's directory), or ``None`` if absent.

    Raises
    ------
    ValueError
        The file exists but is not a valid result (see :func:`check_result`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_NAME
    if not path.exists():
        return None
    try:
        doc = read_json(path)
    except ValueError as err:
        raise ValueError(f"{err}. Delete {path.parent} to retrain this job (or restore the file).") from None
    return check_result(doc, path)


# --- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` with :func:`torch.save` atomically (see :func:`write_atomic`)."""
    import torch

    return write_atomic(path, lambda fh: torch.save(dict(state), fh))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state saved at ``path`` (tensors on the CPU), or ``None`` if absent or unreadable.

    Only tensors and plain containers are loaded (``weights_only=True``).  A file that
    cannot be loaded that way (truncated, garbage, foreign objects) is renamed to
    ``<path>.corrupt-<unix time>`` with a :class:`RuntimeWarning` naming both files,
    and ``None`` is returned, so the caller starts again from the beginning.
    """
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:  # torch's remarks about a file it then rejects
            warnings.simplefilter("always")
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a dict")
        for remark in caught:  # a readable checkpoint: pass torch's remarks on
            warnings.warn_explicit(remark.message, remark.category, remark.filename, remark.lineno)
        return state
    except Exception as err:  # noqa: BLE001 - any failure to read means: do not trust this file
        aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
        os.replace(path, aside)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(
            f"checkpoint {path} could not be read ({type(err).__name__}: {first_line[:200]}); "
            f"moved it to {aside.name} and starting this job again from step 0",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


# --- one writer per job --------------------------------------------------------------------------


class JobBusy(RuntimeError):
    """Raised by :class:`JobLock` with ``wait=False`` when another process holds the job's lock."""


_HELD: dict[str, list[Any]] = {}  # lock path -> [open file, depth]: re-entry within one process
_HELD_GUARD = threading.Lock()


class JobLock:
    """An exclusive lock on one job directory, held by one process at a time.

    ``with JobLock(directory):`` takes :func:`fcntl.flock` on ``directory/.lock``
    (created) for the duration of the block and writes the holder's host and pid
    into it.  The lock is re-entrant within a process (a sweep that locks a job and
    then calls :func:`signalprop.experiment.run_experiment` on it).  The operating
    system releases it when the process dies, however it dies.

    Parameters
    ----------
    directory : path-like
        The job's directory (created).
    wait : bool
        If another process holds the lock: wait for it (default), or raise :class:`JobBusy`.
    say : callable, optional
        Called with one line of text when the lock is busy (default: print to standard error).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, wait: bool = True, say: Callable[[str], Any] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.wait = bool(wait)
        self.say = say if say is not None else (lambda text: print(text, file=sys.stderr, flush=True))
        self._key = os.path.abspath(self.path)

    def __enter__(self) -> JobLock:
        with _HELD_GUARD:
            held = _HELD.get(self._key)
            if held is not None:
                held[1] += 1
                return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = _holder(self.path)
                if not self.wait:
                    raise JobBusy(f"job {self.directory} is being run by another process ({holder})") from None
                self.say(f"job {self.directory} is being run by another process ({holder}); waiting for it")
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                self.say(f"job {self.directory}: the other process is done; continuing")
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.uname().nodename} pid {os.getpid()}\n")
            fh.flush()
        except BaseException:
            fh.close()
            raise
        with _HELD_GUARD:
            _HELD[self._key] = [fh, 1]
        return self

    def __exit__(self, *exc: object) -> None:
        with _HELD_GUARD:
            held = _HELD[self._key]
            held[1] -= 1
            if held[1]:
                return
            del _HELD[self._key]
        held[0].close()  # closing the descriptor releases the lock


def _holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


def holds_lock(directory: str | os.PathLike[str]) -> bool:
    """Whether this process holds the lock of the job in ``directory``."""
    return os.path.abspath(Path(directory) / LOCK_NAME) in _HELD


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the ``.*.tmp`` files left in a job directory by writers killed mid-write.

    Only the holder of the job's lock may call this: every writer of a job holds the
    lock, so while this process holds it no other writer can own a temporary file there.

    Raises
    ------
    ValueError
        This process does not hold the job's lock.
    """
    directory = Path(directory)
    if not holds_lock(directory):
        raise ValueError(f"remove_stale_temporaries({directory}): take the job's lock (JobLock) first")
    removed = []
    for stale in directory.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


@contextlib.contextmanager
def _probe(directory: Path) -> Iterator[bool]:
    """Yield whether another process holds the job's lock (without waiting, and without creating files)."""
    lock = directory / LOCK_NAME
    if holds_lock(directory):
        yield True
        return
    try:
        fh = open(lock, encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            yield True
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        yield False
    finally:
        fh.close()


def job_state(directory: str | os.PathLike[str]) -> str:
    """``"finished"`` or ``"diverged"`` (a valid result), ``"running"`` (a process holds the job's
    lock), ``"interrupted"`` (the directory exists, no result, nobody running it) or ``"missing"``.

    Raises
    ------
    ValueError
        The directory holds an invalid result (see :func:`load_result`).
    """
    directory = Path(directory)
    result = load_result(directory / RESULT_NAME)
    if result is not None:
        return str(result["status"])
    if not directory.exists():
        return "missing"
    with _probe(directory) as busy:
        return "running" if busy else "interrupted"
