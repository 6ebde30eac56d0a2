"""The shared record reader: both formats, BOM, blank lines, and errors that name file and line."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from textclf.core.records import (
    Position,
    Record,
    RecordFormatError,
    csv_columns,
    iter_csv,
    iter_jsonl,
    iter_records,
    iter_records_at,
    record_format,
)


def test_csv_records_start_lines_and_padding(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('text,label\nhello,a\n"two\nlines",b\n\nshort\n', encoding="utf-8")
    assert list(iter_records(path)) == [
        Record(2, {"text": "hello", "label": "a"}),
        Record(3, {"text": "two\nlines", "label": "b"}),  # the line it starts on
        Record(6, {"text": "short", "label": ""}),  # blank line 5 skipped, short row padded
    ]
    assert csv_columns(path) == ["text", "label"]


def test_csv_with_a_byte_order_mark_has_clean_column_names(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,label\r\nhello,a\r\n".encode())
    assert csv_columns(path) == ["text", "label"]
    assert list(iter_csv(path)) == [Record(2, {"text": "hello", "label": "a"})]


def test_jsonl_and_ndjson_skip_blank_lines(tmp_path: Path) -> None:
    lines = ["", json.dumps({"text": "hi", "n": 1}), "   ", json.dumps({"text": "yo", "tags": ["x"]}), ""]
    for name in ("in.jsonl", "in.NDJSON"):
        path = tmp_path / name
        path.write_text("\n".join(lines), encoding="utf-8")
        assert list(iter_records(path)) == [
            Record(2, {"text": "hi", "n": 1}),
            Record(4, {"text": "yo", "tags": ["x"]}),
        ]


def test_jsonl_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"text": "hi"}\n')
    assert list(iter_jsonl(path)) == [Record(1, {"text": "hi"})]


def test_records_stream_lazily(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    records = iter_records(path)
    assert next(records).values == {"text": "ok"}
    with pytest.raises(RecordFormatError, match=r"in.jsonl:2: invalid JSON"):
        next(records)


@pytest.mark.parametrize(
    ("name", "content", "line", "reason"),
    [
        ("bad.jsonl", b'{"text": "a"}\n{"text": oops}\n', 2, r"invalid JSON \(Expecting value\)"),
        ("list.jsonl", b'{"text": "a"}\n\n[1, 2]\n', 3, "expected a JSON object per line, got an array"),
        ("str.jsonl", b'"just text"\n', 1, "expected a JSON object per line, got a string"),
        ("null.jsonl", b"null\n", 1, "expected a JSON object per line, got null"),
        ("wide.csv", b"text,label\nx,a\n\nx,a,extra\n", 4, "3 fields but the header has 2"),
        ("dup.csv", b"text,text\nx,y\n", 1, r"duplicate column name\(s\) \['text'\]"),
        ("latin.csv", b"text\nok\ncaf\xe9\n", 3, r"not UTF-8 text \(invalid continuation byte\)"),
        ("latin.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', 2, "not UTF-8 text"),
        ("huge.csv", b"text\nok\n" + b"x" * 200_000 + b"\n", 3, r"invalid CSV \(field larger than"),
    ],
)
def test_format_errors_name_file_line_and_reason(
    tmp_path: Path, name: str, content: bytes, line: int, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordFormatError, match=reason) as caught:
        list(iter_records(path))
    assert caught.value.line == line and caught.value.path == path
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert isinstance(caught.value, ValueError)


def test_empty_csv_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(RecordFormatError, match="needs a header row") as caught:
        csv_columns(path)
    assert caught.value.line is None and str(caught.value).startswith(f"{path}: ")


def test_unknown_suffix(tmp_path: Path) -> None:
    for name, shown in (("in.txt", "'.txt'"), ("README", "'(no suffix)'")):
        message = f"unsupported format {shown}; use one of .csv, .jsonl, .ndjson"
        with pytest.raises(RecordFormatError, match=re.escape(message)):
            iter_records(tmp_path / name)
    assert record_format("a.CSV") == "csv" and record_format("a.ndjson") == "jsonl"


def test_error_survives_pickling(tmp_path: Path) -> None:
    error = RecordFormatError(tmp_path / "x.csv", "3 fields but the header has 2", 7)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.path, copy.line, copy.reason) == (str(error), error.path, 7, error.reason)


def test_training_and_the_batch_client_read_a_bom_csv_alike(tmp_path: Path) -> None:
    """`textclf validate` and `textclf predict-batch` share this reader, so they agree on BOM files."""
    from batch.client import scan_input
    from training.data import iter_examples

    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,category\r\nwhere is my card,card_arrival\r\n".encode())
    assert [(e.text, e.label) for e in iter_examples(path, "text", "category")] == [
        ("where is my card", "card_arrival")
    ]
    spec = scan_input(path, "text")
    assert (spec.columns, spec.rows) == (["text", "category"], 1)


# ------------------------------------------------------------------ resuming at a byte offset

OFFSET_FILES = {
    # quoted newlines (LF, CRLF and a bare CR inside quotes), a BOM, blank lines, CRLF and bare-CR endings
    "quoted.csv": b'\xef\xbb\xbftext,label\r\nhello,a\r\n"two\r\nlines",b\r\n\r\n"x\ny\nz",c\n'
    b'"q\rx",d\rshort\n"caf\xc3\xa9 \xe2\x98\x95, ""quoted""",e',
    # non-ASCII text (multi-byte UTF-8), a BOM, blank lines, CRLF and no final newline
    "unicode.jsonl": '\ufeff{"text": "héllo wörld"}\n\n{"text": "日本語のテキスト", "n": 1}\r\n'
    '   \n{"text": "emoji 🎉", "k": ["ü"]}\n{"text": "last"}'.encode(),
}


@pytest.mark.parametrize("name", sorted(OFFSET_FILES))
def test_offset_reader_matches_the_reader_and_resumes_after_every_record(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(OFFSET_FILES[name])
    expected = list(iter_records(path))
    read = list(iter_records_at(path))
    assert [record for record, _ in read] == expected and len(expected) >= 4
    offsets = [position.offset for _, position in read]
    assert offsets == sorted(offsets) and offsets[-1] == path.stat().st_size
    for i, (_, position) in enumerate(read):  # a seek to any record boundary reads exactly the rest
        assert [record for record, _ in iter_records_at(path, position)] == expected[i + 1 :]


def test_offsets_are_byte_offsets_at_record_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    content = 'text\n"a\nb"\né\n'.encode()
    path.write_bytes(content)
    positions = [position for _, position in iter_records_at(path)]
    assert positions == [Position(content.index(b"\xc3"), 3), Position(len(content), 4)]
    assert content[: positions[0].offset].endswith(b'b"\n')  # after the whole quoted two-line field


def test_errors_after_a_resume_name_the_absolute_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "a"}\n{"text": "b"}\n\n{oops\n', encoding="utf-8")
    _, after_first = next(iter_records_at(jsonl))
    with pytest.raises(RecordFormatError, match=r"in.jsonl:4: invalid JSON") as caught:
        list(iter_records_at(jsonl, after_first))
    assert caught.value.line == 4
    wide = tmp_path / "wide.csv"
    wide.write_bytes(b"text,label\nx,a\n\nx,a,extra\n")
    _, after_first = next(iter_records_at(wide))
    with pytest.raises(RecordFormatError, match="3 fields but the header has 2") as caught:
        list(iter_records_at(wide, after_first))
    assert caught.value.line == 4
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text\nok\nfine\ncaf\xe9\n")
    _, after_first = next(iter_records_at(latin))
    with pytest.raises(RecordFormatError, match=r"latin.csv:4: not UTF-8 text"):
        list(iter_records_at(latin, after_first))
