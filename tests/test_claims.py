"""Tests for signalprop.claims."""

import json

import pytest
from signalprop.claims import Claim, badge, load_all, markdown_legend, record, status_markdown


def _claim(**kw):
    base = dict(
        id="x-1",
        source="Xiao et al. (2018), §2",
        claim="a | b",
        paper_value="1",
        our_value="1.01",
        scale="c = 8",
        verdict="reproduced",
        chapter="xiao2018/fourier_modes",
    )
    base.update(kw)
    return Claim(**base)


def test_record_and_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("TTL_WRITE_CLAIMS", "1")
    record(_claim(), tmp_path)
    record(_claim(id="a-0", verdict="not yet tested", chapter=""), tmp_path)
    record(_claim(our_value="1.02"), tmp_path)  # replaces its own row
    claims = load_all(tmp_path)
    assert [c.id for c in claims] == ["a-0", "x-1"]
    assert claims[1].our_value == "1.02"
    assert not list(tmp_path.glob(".*.tmp"))


def test_record_writes_only_when_asked(tmp_path, monkeypatch):
    """Building the book or running nbval executes chapters: without TTL_WRITE_CLAIMS=1 nothing is written."""
    monkeypatch.delenv("TTL_WRITE_CLAIMS", raising=False)
    path = record(_claim(), tmp_path)
    assert path == tmp_path / "x-1.json" and not path.exists()
    monkeypatch.setenv("TTL_WRITE_CLAIMS", "0")
    record(_claim(), tmp_path)
    assert not path.exists()
    monkeypatch.setenv("TTL_WRITE_CLAIMS", "1")
    record(_claim(), tmp_path)
    assert load_all(tmp_path) == [_claim()]


def test_inconclusive_is_a_verdict_and_the_legend_lists_all_five():
    assert _claim(verdict="inconclusive").verdict == "inconclusive"
    legend = markdown_legend()
    for verdict in ("reproduced", "partly reproduced", "not reproduced", "inconclusive", "not yet tested"):
        assert f"`{verdict}` |" in legend


def test_badges_and_status_rows():
    assert badge("inconclusive") == "{bdg-warning}`inconclusive`"
    with pytest.raises(ValueError, match="verdict must be one of"):
        badge("sort of")
    text = status_markdown([_claim(claim="c* < 1 and $c^* < 1$", verdict="not reproduced")])
    assert "* - {bdg-danger}`not reproduced`" in text
    # emphasis characters are escaped outside math only; the row ends with the link and the id
    assert "  - c\\* \\< 1 and $c^* < 1$ ({doc}`xiao2018/fourier_modes`) `x-1`" in text
    assert text.startswith("::::{list-table}") and text.rstrip().endswith("::::")


def test_invalid_claims_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="verdict"):
        _claim(verdict="sort of")
    with pytest.raises(ValueError, match="id"):
        _claim(id="a/b")
    with pytest.raises(ValueError, match="record needs a Claim"):
        record({"id": "x"}, tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"id": "bad", "nonsense": 1}))
    with pytest.raises(ValueError, match="not a claim record"):
        load_all(tmp_path)


def test_recorded_keeps_this_process_claims_in_order_and_filters_by_chapter(tmp_path, monkeypatch):
    from signalprop import claims as cl

    monkeypatch.setattr(cl, "_RECORDED", {})
    a = _claim(id="a-1", chapter="part/one")
    b = _claim(id="b-2", chapter="part/two", verdict="inconclusive")
    record(a, tmp_path)
    record(b, tmp_path)
    record(a, tmp_path)  # recorded again (a re-run cell): moves to the end, not listed twice
    assert [c.id for c in cl.recorded()] == ["b-2", "a-1"]
    assert cl.recorded("part/two") == [b]
    assert cl.recorded("part/none") == []


def test_summary_markdown_has_badges_without_links_back_and_says_when_empty():
    from signalprop.claims import summary_markdown

    text = summary_markdown([_claim(id="x-1", chapter="part/one", verdict="not reproduced")])
    assert "{bdg-danger}`not reproduced`" in text and "{doc}" not in text and "`x-1`" in text
    assert "{doc}`part/one`" in status_markdown([_claim(id="x-1", chapter="part/one")])
    assert "decides no claim" in summary_markdown([])


def test_records_digest_changes_with_any_record_and_ignores_other_files(tmp_path):
    from signalprop.claims import records_digest

    record_dir = tmp_path / "status"
    record_dir.mkdir()
    empty = records_digest(record_dir)
    (record_dir / "a.json").write_text('{"x": 1}', encoding="utf-8")
    one = records_digest(record_dir)
    (record_dir / "notes.txt").write_text("not a record", encoding="utf-8")
    assert records_digest(record_dir) == one != empty
    (record_dir / "a.json").write_text('{"x": 2}', encoding="utf-8")
    assert records_digest(record_dir) != one
    (record_dir / "a.json").rename(record_dir / "b.json")
    assert len({empty, one, records_digest(record_dir)}) == 3
