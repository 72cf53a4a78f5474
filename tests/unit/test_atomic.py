"""Tests for simcore.atomic: all-or-nothing writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_bytes_creates_file_with_exact_content(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_bytes(target, b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    assert _names(tmp_path) == ["summary.json"]


def test_write_text_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.write_text("old")
    atomic_write_text(target, "new \u00e9")
    assert target.read_text(encoding="utf-8") == "new \u00e9"
    assert _names(tmp_path) == ["manifest.json"]


def test_temp_path_is_hidden_sibling_never_the_final_name(tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".report.pdf.tmp-")
        assert tmp != target
        tmp.write_bytes(b"%PDF")
        assert not target.exists()
    assert target.read_bytes() == b"%PDF"


def test_exception_leaves_no_final_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    with pytest.raises(RuntimeError, match="drawing failed"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"%PDF-half")
            raise RuntimeError("drawing failed")
    assert _names(tmp_path) == []


def test_keyboard_interrupt_cleans_up_and_propagates(tmp_path: Path) -> None:
    target = tmp_path / "events.parquet"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"PAR1")
            raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_existing_file_untouched_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    target.write_bytes(b"complete old report")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("boom")
    assert target.read_bytes() == b"complete old report"
    assert _names(tmp_path) == ["report.pdf"]


def test_block_that_writes_nothing_raises_and_leaves_target_alone(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("keep")
    with pytest.raises(FileNotFoundError):
        with atomic_path(target):
            pass
    assert target.read_text() == "keep"
    assert _names(tmp_path) == ["out.txt"]


def test_missing_directory_raises_without_creating_anything(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "no_such_dir" / "x.txt", "x")
    assert _names(tmp_path) == []
