"""The book's chapters: every jupytext-paired .md has an executed .ipynb twin with the same cells."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(
    md
    for md in BOOK.rglob("*.md")
    if "_build" not in md.parts and md.read_text(encoding="utf-8")[:400].startswith("---\njupytext:")
)


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in jupytext.read(path).cells]


def test_chapters_are_found():
    assert len(CHAPTERS) >= 10


@pytest.mark.parametrize("md", CHAPTERS, ids=[str(p.relative_to(BOOK)) for p in CHAPTERS])
def test_twin_has_the_cells_of_the_reviewed_source(md):
    nb = md.with_suffix(".ipynb")
    assert nb.is_file(), f"{nb.relative_to(BOOK)} is missing: run jupytext --to ipynb --execute"
    assert _cells(nb) == _cells(md), f"{nb.name} is out of sync with {md.name}: re-execute it from the .md"


@pytest.mark.parametrize("md", CHAPTERS, ids=[str(p.relative_to(BOOK)) for p in CHAPTERS])
def test_twin_is_executed(md):
    nb = jupytext.read(md.with_suffix(".ipynb"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "every code cell of the twin has been executed"


VERDICT_WORDS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive", "not yet tested")
DECIDED_CONSTANTS = ("REPRODUCED", "PARTLY", "NOT_REPRODUCED", "INCONCLUSIVE")


@pytest.mark.parametrize("md", CHAPTERS, ids=[str(p.relative_to(BOOK)) for p in CHAPTERS])
def test_no_chapter_types_a_verdict(md):
    """Verdicts come from signalprop.verdicts: no code cell of a chapter that records claims holds a verdict as a
    string literal or uses a decided verdict constant (pages that only display records, such as the status page,
    may filter by verdict)."""
    import ast

    cells = [c for c in jupytext.read(md).cells if c.cell_type == "code"]
    if not any("record(" in c.source for c in cells):
        return
    for cell in cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value.strip().lower() not in VERDICT_WORDS, (
                    f"{md.name} types the verdict {node.value!r}: decide it with signalprop.verdicts"
                )
            # the verdict constants would be a typed verdict by another name (NOT_TESTED is no decision)
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            assert name not in DECIDED_CONSTANTS, (
                f"{md.name} uses {name} directly: decide the verdict with within/at_least/at_most/combine"
            )
