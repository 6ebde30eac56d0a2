"""Dataset readers: streaming, both formats, configurable columns, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data import DatasetFormatError, batched, files_sha256, iter_examples, load_texts_labels


def test_csv_rows_stream_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,category\nhello,a\n"multi\nline",b\n', encoding="utf-8")
    rows = list(iter_examples(path, "text", "category"))
    assert [(r.text, r.label) for r in rows] == [("hello", "a"), ("multi\nline", "b")]
    assert rows[0].line == 2


def test_csv_with_a_byte_order_mark_keeps_its_first_column(tmp_path: Path) -> None:
    """Spreadsheet exports start with a BOM; it must not become part of the `text` column's name."""
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext,category\nhello,a\n\nbye,b\n".encode())
    rows = list(iter_examples(path, "text", "category"))
    assert [(r.text, r.label, r.line) for r in rows] == [("hello", "a", 2), ("bye", "b", 4)]


def test_ragged_and_undecodable_rows_are_format_errors(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,category\nhello,a\nbye,b,extra\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"ragged.csv:3: 3 fields but the header has 2"):
        list(iter_examples(ragged, "text", "category"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,category\nhello,a\ncaf\u00e9,b\n".encode("latin-1"))
    with pytest.raises(DatasetFormatError, match=r"latin.csv:3: not UTF-8 text"):
        list(iter_examples(latin, "text", "category"))


def test_jsonl_with_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [{"utterance": "hi there", "intent": "greet"}, {"utterance": "bye", "intent": "leave"}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    assert load_texts_labels(path, "utterance", "intent") == (["hi there", "bye"], ["greet", "leave"])


def test_reader_is_lazy(tmp_path: Path) -> None:
    """The first row comes out before a broken last row is read: nothing is loaded up front."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{not json\n', encoding="utf-8")
    rows = iter_examples(path, "text", "label")
    assert next(rows).text == "ok"
    with pytest.raises(DatasetFormatError, match=r"d.jsonl:2: invalid JSON"):
        next(rows)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.csv", "sentence,category\nx,a\n", r"missing column\(s\) \['text'\]"),
        ("d.jsonl", '{"text": "x"}\n', r"missing column\(s\) \['category'\]"),
        ("d.jsonl", "[1, 2]\n", "expected a JSON object"),
        ("d.parquet", "x", "unsupported format"),
    ],
)
def test_format_errors_name_the_problem(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=message):
        list(iter_examples(path, "text", "category"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="file not found"):
        list(iter_examples(tmp_path / "nope.csv", "text", "category"))


def test_batched_groups_without_losing_items() -> None:
    assert list(batched(iter(["a", "b", "c", "d", "e"]), 2)) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError):
        list(batched([], 0))


def test_hash_changes_with_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("x")
    b.write_text("y")
    assert files_sha256([a]) != files_sha256([b])
    assert files_sha256([a]) == files_sha256([a])
