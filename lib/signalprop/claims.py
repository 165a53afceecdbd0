"""Rows of the book's Reproduction status page.

A chapter that tests a quantitative claim of one of the papers records one
:class:`Claim` with the value it measured; the status page reads every record
and renders the table.  Records are small JSON files, written atomically, one
per claim, so a chapter re-run replaces exactly its own rows.  Values are
printed at the precision of their error by the chapter, so records are stable
across re-executions and CPUs.

Records are written only where the executed twins are regenerated
(``tasks.py execute`` and ``tasks.py run`` set ``TTL_WRITE_CLAIMS=1``).  Building
the HTML book or running the tests executes the chapters too, but then
:func:`record` leaves the stored records alone, so a build never modifies a
tracked file and the status page renders the records of the committed twins.
Verdicts come from :mod:`signalprop.verdicts`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from signalprop.store import write_json_atomic
from signalprop.verdicts import LEGEND, VERDICTS

__all__ = [
    "VERDICTS", "LEGEND", "WRITE_ENV", "Claim", "record", "writing_enabled", "load_all", "markdown_legend",
    "BADGES", "badge", "escape_myst", "status_markdown", "recorded", "summary_markdown", "records_digest",
]

WRITE_ENV = "TTL_WRITE_CLAIMS"

#: The claims :func:`record` was given in this process (a chapter's kernel), by id, in the order recorded.
_RECORDED: dict[str, Claim] = {}


@dataclass(frozen=True)
class Claim:
    """One quantitative claim of a paper, with the book's measurement of it.

    Attributes
    ----------
    id : str
        Stable key, e.g. ``"xiao2018-appF-depth-scales"``; also the file name.
    source : str
        Where the claim is made, e.g. ``"Xiao et al. (2018), App. F"``.
    claim : str
        The claim in a short sentence.
    paper_value : str
        What the paper reports (or predicts).
    our_value : str
        What the book measured, formatted by the chapter's code.
    scale : str
        Scale and data of our measurement (widths, ensemble sizes, data set).
    verdict : str
        One of :data:`VERDICTS`.
    chapter : str
        Book document that measured it (``"xiao2018/fourier_modes"``), or ``""``.
    """

    id: str
    source: str
    claim: str
    paper_value: str
    our_value: str
    scale: str
    verdict: str
    chapter: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.id or any(c in self.id for c in "/\\ "):
            raise ValueError(f"id must be a non-empty name without slashes or spaces, got {self.id!r}")


def writing_enabled() -> bool:
    """Whether :func:`record` writes: ``TTL_WRITE_CLAIMS=1`` in the environment."""
    return os.environ.get(WRITE_ENV, "") == "1"


def record(claim: Claim, directory: str | os.PathLike[str]) -> Path:
    """Record ``claim`` in ``directory/<id>.json`` and glue its verdict; return the path.

    The file is written (atomically) only when :func:`writing_enabled`; otherwise the
    stored record is left as it is.  Inside a notebook the verdict is also glued
    (not displayed) under ``verdict-<id>``, so that a built book can be checked
    against its status page.
    """
    if not isinstance(claim, Claim):
        raise ValueError(f"record needs a Claim, got {type(claim).__name__}")
    _RECORDED.pop(claim.id, None)  # a re-run cell moves its claim to the end
    _RECORDED[claim.id] = claim
    _glue_verdict(claim)
    directory = Path(directory)
    if not writing_enabled():
        return directory / f"{claim.id}.json"
    return write_json_atomic(directory / f"{claim.id}.json", asdict(claim), indent=2, ensure_ascii=False)


def _glue_verdict(claim: Claim) -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is part of the pinned stack
        return
    if get_ipython() is None:
        return
    from myst_nb import glue

    glue(f"verdict-{claim.id}", claim.verdict, display=False)


def load_all(directory: str | os.PathLike[str]) -> list[Claim]:
    """Every claim recorded in ``directory``, sorted by id.

    Raises
    ------
    ValueError
        If a file is not a valid claim record.
    """
    names = {f.name for f in fields(Claim)}
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or set(data) - names:
            raise ValueError(f"{path} is not a claim record")
        claim = Claim(**data)
        if claim.id != path.stem:
            raise ValueError(f"{path}: id {claim.id!r} does not match the file name")
        out.append(claim)
    return sorted(out, key=lambda c: c.id)


def markdown_legend() -> str:
    """A Markdown table defining every verdict of :data:`VERDICTS`."""
    rows = "\n".join(f"| {badge(v)} | {LEGEND[v]} |" for v in VERDICTS)
    return "| Verdict | Meaning |\n|---|---|\n" + rows + "\n"


BADGES = {
    "reproduced": "success",
    "partly reproduced": "info",
    "not reproduced": "danger",
    "inconclusive": "warning",
    "not yet tested": "secondary",
}


def badge(verdict: str) -> str:
    """The verdict as a coloured MyST badge (sphinx-design), e.g. ``{bdg-success}`reproduced```.

    Raises
    ------
    ValueError
        ``verdict`` is not one of :data:`VERDICTS`.
    """
    if verdict not in BADGES:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return f"{{bdg-{BADGES[verdict]}}}`{verdict}`"


def escape_myst(text: str) -> str:
    """Escape MyST emphasis and role characters outside ``$...$`` (``c*`` would open an emphasis)."""
    parts = text.replace("\n", " ").split("$")
    for i in range(0, len(parts), 2):  # even parts are outside math
        for ch in ("\\", "*", "`", "[", "]", "<"):
            parts[i] = parts[i].replace(ch, "\\" + ch)
    return "$".join(parts)


def status_markdown(claims: list[Claim], *, link: bool = True) -> str:
    """A MyST list table: the verdict badge, one line per claim with its chapter link and id, details in a dropdown.

    The claim's id is the code literal that ends its line, so that a row of the rendered
    page can be matched with its record.  ``link=False`` leaves out the link to the chapter
    (for the chapter's own summary).
    """
    lines = ["::::{list-table}", ":header-rows: 1", ":widths: 18 82", "", "* - Verdict", "  - Claim"]
    for c in claims:
        to_chapter = f" ({{doc}}`{c.chapter}`)" if c.chapter and link else ""
        lines += [
            f"* - {badge(c.verdict)}",
            f"  - {escape_myst(c.claim)}{to_chapter} `{c.id}`",
            "",
            "    :::{dropdown} Values, scale and source",
            f"    **Paper:** {escape_myst(c.paper_value)}",
            "",
            f"    **Ours:** {escape_myst(c.our_value)}",
            "",
            f"    **Scale and data:** {escape_myst(c.scale)}",
            "",
            f"    **Source:** {escape_myst(c.source)}",
            "    :::",
        ]
    lines.append("::::")
    return "\n".join(lines) + "\n"


def recorded(chapter: str | None = None) -> list[Claim]:
    """The claims :func:`record` was given in this process, in the order recorded; only ``chapter``'s if given.

    A chapter's closing *Summary and verdicts* section renders them with :func:`summary_markdown`,
    so that it shows the verdicts computed in the same execution.
    """
    return [c for c in _RECORDED.values() if chapter is None or c.chapter == chapter]


def summary_markdown(claims: list[Claim]) -> str:
    """The verdict table that ends a chapter: :func:`status_markdown` without links back to the chapter.

    With no claims, a sentence saying that the chapter decides none (its checks are the chapter's own).
    """
    if not claims:
        return "This chapter decides no claim of the papers; its results are the checks above.\n"
    return status_markdown(claims, link=False)


def records_digest(directory: str | os.PathLike[str]) -> str:
    """A SHA-256 digest (16 hex digits) of every record file in ``directory``, names and contents.

    The pages that render the records glue it, so a test can tell a page built from stale
    records (an execution cache, say) from one built from the records on disk.
    """
    h = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.json")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
