"""The built book's status page shows exactly the verdicts its chapters computed in the same build.

``jupyter-book build`` executes every chapter (``book/_build/jupyter_execute/``); each claim a
chapter records is glued there as ``verdict-<id>``.  The status page renders the stored claim
records.  If a chapter computed another verdict than its stored record (another CPU, a stale
record), the page and the chapter would disagree: this test fails instead.

The test needs a fresh build, so it runs only under ``TTL_REQUIRE_BUILD=1``: ``python3 tasks.py book``
runs it right after building; a plain ``pytest`` skips it (a build left from an earlier checkout
would be stale).
"""

from __future__ import annotations

import ast
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from signalprop import claims

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "book" / "_build"
STATUS_HTML = BUILD / "html" / "reproduction_status.html"
EXECUTED = BUILD / "jupyter_execute"

if os.environ.get("TTL_REQUIRE_BUILD") != "1":
    pytest.skip("checks a fresh build: python3 tasks.py book runs it right after building (TTL_REQUIRE_BUILD=1)",
                allow_module_level=True)
if not STATUS_HTML.exists():
    raise RuntimeError(f"{STATUS_HTML} is missing: build the book first (python3 tasks.py book)")


ROW = re.compile(r"<tr\b.*?</tr>", re.S)
BADGE = re.compile(r'class="[^"]*sd-badge[^"]*">([^<]+)</span>')
CLAIM_ID = re.compile(r'<code class="docutils literal notranslate"><span class="pre">([^<]+)</span></code></p>')


def status_page_verdicts() -> dict[str, str]:
    """Claim id -> verdict, from the rendered rows (the verdict badge, then the claim line ending with its id)."""
    out = {}
    for row in ROW.findall(STATUS_HTML.read_text(encoding="utf-8")):
        badge, claim_id = BADGE.search(row), CLAIM_ID.search(row)
        if badge and claim_id and badge.group(1) in claims.VERDICTS:
            assert claim_id.group(1) not in out, f"claim {claim_id.group(1)} shown twice"
            out[claim_id.group(1)] = badge.group(1)
    return out


def glued_verdicts() -> dict[str, str]:
    """Claim id -> verdict glued by the chapters executed in the build (myst-nb keeps glue in ``*.glue.json``)."""
    out = {}
    for path in sorted(EXECUTED.rglob("*.glue.json")):
        for name, output in json.loads(path.read_text(encoding="utf-8")).items():
            if name.startswith("verdict-"):
                data = output["data"]
                text = data.get("text/plain", data.get("application/papermill.record/text/plain"))
                out[name.removeprefix("verdict-")] = ast.literal_eval(text)
    return out


def glued_text(page: str, name: str) -> str:
    """The string a page executed in the build glued under ``name``."""
    glue_file = EXECUTED / f"{page}.glue.json"
    assert glue_file.is_file(), f"{glue_file} is missing: the page was not executed in this build"
    data = json.loads(glue_file.read_text(encoding="utf-8"))[name]["data"]
    return ast.literal_eval(data.get("text/plain", data.get("application/papermill.record/text/plain")))


@pytest.mark.parametrize(("page", "name"), [("reproduction_status", "status-records-digest"),
                                            ("intro", "intro-records-digest")])
def test_pages_that_render_records_read_the_records_on_disk(page, name):
    """Not records served stale from an execution cache: the digest the page glued is that of book/status now."""
    assert glued_text(page, name) == claims.records_digest(ROOT / "book" / "status")


def test_status_page_shows_every_record():
    shown = status_page_verdicts()
    stored = {c.id: c.verdict for c in claims.load_all(ROOT / "book" / "status")}
    assert shown == stored


def test_status_page_shows_the_verdicts_the_chapters_computed_in_this_build():
    shown, glued = status_page_verdicts(), glued_verdicts()
    assert glued, f"no chapter in {EXECUTED} glued a verdict"
    tested = {k for k, v in shown.items() if v != claims.VERDICTS[-1]}
    assert tested <= set(glued), f"tested claims no chapter glued: {sorted(tested - set(glued))}"
    differ = {k: (shown.get(k), v) for k, v in glued.items() if shown.get(k) != v}
    assert not differ, f"status page vs chapter (claim: (page, chapter)): {differ}"


REMOTE_ASSET = re.compile(
    r"""<script[^>]*\bsrc=["'](?:https?:)?//|<link[^>]*\bhref=["'](?:https?:)?//[^"']*\.(?:css|woff2?|ttf)|"""
    r"""url\(["']?(?:https?:)?//""",
    re.I,
)


def test_built_pages_load_nothing_from_the_network():
    """Every script, style sheet and font of the built book is served by the book itself (MathJax included)."""
    pages = sorted((BUILD / "html").rglob("*.html"))
    assert pages
    remote = {str(p.relative_to(BUILD / "html")): REMOTE_ASSET.findall(p.read_text(encoding="utf-8")) for p in pages}
    remote = {k: v for k, v in remote.items() if v}
    assert not remote, f"pages that load remote assets: {remote}"
    assert (BUILD / "html" / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_built_pages_show_no_python_reprs():
    """Glued numbers appear as numbers, not as numpy reprs."""
    found = {}
    for p in sorted((BUILD / "html").rglob("*.html")):
        text = p.read_text(encoding="utf-8")
        hits = [m for m in ("np.int64(", "np.float64(", "np.str_(") if m in text]
        if hits:
            found[str(p.relative_to(BUILD / "html"))] = hits
    assert not found, f"numpy reprs in the built pages: {found}"


class _ProseText(HTMLParser):
    """The text a reader sees as prose: everything outside code, scripts, styles and rendered math."""

    VERBATIM = {"pre", "code", "script", "style", "textarea"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []  # per open element: does it (or an ancestor) hide its text?
        self.chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        hidden = tag in self.VERBATIM or "math" in classes
        self.stack.append(hidden or (bool(self.stack) and self.stack[-1]))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.chunks.append(data)


def prose(html: str) -> str:
    parser = _ProseText()
    parser.feed(html)
    return " ".join(parser.chunks)


RAW_TEX = re.compile(r"\$[^$\s][^$]*?[\\^_{}][^$]*?\$")  # $...$ holding TeX markup, left unrendered


def test_built_pages_leak_no_internal_notes_raw_tex_or_unresolved_references():
    """No raw ``$...$`` TeX in prose, no pointer to internal notes, no ``??`` of an unresolved reference."""
    found = {}
    for p in sorted((BUILD / "html").rglob("*.html")):
        if {"_static", "_sources", "_images"} & set(p.relative_to(BUILD / "html").parts):
            continue
        text = prose(p.read_text(encoding="utf-8"))
        hits = [m for m in ("science.md", "UNCONFIRMED", "??") if m in text] + RAW_TEX.findall(text)
        if hits:
            found[str(p.relative_to(BUILD / "html"))] = hits
    assert not found, f"pages with raw TeX, internal notes or unresolved references: {found}"


def test_prose_parser_sees_raw_tex_and_skips_math_and_code():
    """The scanner above can fail: raw TeX in a paragraph is found, rendered math and code are skipped."""
    text = prose('<p>a $\\sigma_w^2$ b</p><span class="math">\\(x^2\\)</span><pre>$a_b$</pre><br><p>??</p>')
    assert RAW_TEX.findall(text) == ["$\\sigma_w^2$"] and "??" in text and "x^2" not in text
