"""Rows of the book's Reproduction status page.

A chapter that tests a quantitative claim of one of the papers records one
:class:`Claim` with the value it measured; the status page reads every record
and renders the table.  Records are small JSON files, written atomically, one
per claim, so a chapter re-run replaces exactly its own rows.  Values are
formatted to a few significant digits by the chapter, so records are stable
across re-executions.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from signalprop.store import write_json_atomic

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not yet tested")


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


def record(claim: Claim, directory: str | os.PathLike[str]) -> Path:
    """Write ``claim`` to ``directory/<id>.json`` atomically (:func:`signalprop.store.write_json_atomic`)."""
    path = Path(directory) / f"{claim.id}.json"
    return write_json_atomic(path, asdict(claim), indent=2, ensure_ascii=False)


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


def markdown_table(claims: list[Claim]) -> str:
    """A Markdown table with one row per claim (pipes in cells are escaped)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    head = "| Claim | Source | Paper | Ours | Scale and data | Verdict |\n|---|---|---|---|---|---|\n"
    rows = []
    for c in claims:
        where = f"{c.source} ({{doc}}`{c.chapter}`)" if c.chapter else c.source
        rows.append(
            f"| {cell(c.claim)} | {cell(where)} | {cell(c.paper_value)} | {cell(c.our_value)} | "
            f"{cell(c.scale)} | {cell(c.verdict)} |"
        )
    return head + "\n".join(rows) + "\n"
