"""FileSource: which files, in which order, what each line becomes, and resuming at a position."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.sources import BadLine, FileSource, SourceError, SourceItem, SourceReader
from processor.sources.base import Position

SECOND = 1_000_000_000


def write(path: Path, text: str | bytes, mtime_s: int | None = None) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if mtime_s is not None:
        os.utime(path, ns=(mtime_s * SECOND, mtime_s * SECOND))
    return path


def opened(source: FileSource, position: Position | None = None) -> SourceReader:
    reader = source.reader()
    # Through JSON, as the positions topic keeps it.
    reader.open(json.loads(json.dumps(position)) if position else None)
    return reader


def drain(reader: SourceReader, max_records: int = 1000) -> list[SourceItem]:
    """Everything readable now (two empty polls in a row: every file was looked at twice, so a
    last line without a line ending counts as finished)."""
    items: list[SourceItem] = []
    empty = 0
    while empty < 2:
        batch = reader.poll(max_records)
        assert len(batch) <= max_records
        items.extend(batch)
        empty = 0 if batch else empty + 1
    return items


def origin(item: SourceItem) -> tuple[str, int]:
    headers = dict(item.headers)
    return headers["processor.source.file"].decode(), int(headers["processor.source.line"])


def test_csv_rows_are_dicts_of_the_header_columns_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'id,name\n1,ann\n\n2,"bob, jr"\n')
    items = drain(opened(FileSource(str(tmp_path / "*.csv"))))
    assert [i.value for i in items] == [{"id": "1", "name": "ann"}, {"id": "2", "name": "bob, jr"}]
    assert [origin(i) for i in items] == [(str(path), 2), (str(path), 4)]


def test_jsonl_lines_are_parsed_values(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", '{"a": 1}\n[1, 2]\n\n"x"\n')
    items = drain(opened(FileSource(str(tmp_path / "*.jsonl"), format="jsonl")))
    assert [i.value for i in items] == [{"a": 1}, [1, 2], "x"]
    assert [origin(i)[1] for i in items] == [1, 2, 4]


def test_files_are_read_oldest_first_then_by_path_and_new_files_are_picked_up(
    tmp_path: Path,
) -> None:
    write(tmp_path / "b.jsonl", "1\n", mtime_s=100)
    write(tmp_path / "c.jsonl", "2\n", mtime_s=100)
    write(tmp_path / "a.jsonl", "3\n", mtime_s=200)
    reader = opened(FileSource(str(tmp_path / "*.jsonl"), format="jsonl"))
    assert [i.value for i in drain(reader)] == [1, 2, 3]
    assert reader.poll(10) == []
    write(tmp_path / "d.jsonl", "4\n5\n", mtime_s=50)  # older, but new to the source
    assert [i.value for i in drain(reader)] == [4, 5]


def test_a_quoted_csv_field_may_span_lines_and_the_record_has_its_first_line_number(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a.csv", 'id,note\r\n1,"two\r\nlines"\r\n2,x\r\n')
    items = drain(opened(FileSource(str(tmp_path / "*.csv"))))
    assert [i.value for i in items] == [
        {"id": "1", "note": "two\r\nlines"},
        {"id": "2", "note": "x"},
    ]
    assert [origin(i)[1] for i in items] == [2, 4]


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", b"\xef\xbb\xbfid,name\n1,\xc3\xa9\n")
    assert [i.value for i in drain(opened(FileSource(str(tmp_path / "*.csv"))))] == [
        {"id": "1", "name": "é"}
    ]


def test_lines_that_do_not_parse_become_bad_lines_and_reading_goes_on(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "a.csv", b"id,name\n1\n2,ann\n3,\xff\n4,bob\n", mtime_s=1)
    json_path = write(tmp_path / "b.jsonl", b'{"a": \n{"a": 2}\n', mtime_s=2)
    source = FileSource(str(tmp_path / "*.csv"))
    values = [i.value for i in drain(opened(source))]
    assert values[1::2] == [{"id": "2", "name": "ann"}, {"id": "4", "name": "bob"}]
    bad = values[0::2]
    assert all(isinstance(b, BadLine) for b in bad)
    assert [(b.path, b.line, b.raw) for b in bad] == [
        (str(csv_path), 2, b"1"),
        (str(csv_path), 4, b"3,\xff"),
    ]
    assert "1 fields where the header has 2 (id, name)" in bad[0].problem
    assert "not valid utf-8" in bad[1].problem
    assert str(bad[0]).startswith(f"{csv_path}:2: ")
    jsonl = [i.value for i in drain(opened(FileSource(str(json_path), format="jsonl")))]
    assert (
        isinstance(jsonl[0], BadLine)
        and jsonl[0].line == 1
        and "not valid JSON" in jsonl[0].problem
    )
    assert jsonl[1] == {"a": 2}


def test_a_csv_header_with_a_repeated_column_makes_every_row_a_bad_line_naming_it(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a.csv", "id,id\n1,2\n")
    [item] = drain(opened(FileSource(str(tmp_path / "*.csv"))))
    assert isinstance(item.value, BadLine)
    assert "the header (line 1) repeats 'id'" in item.value.problem


def test_a_line_without_a_line_ending_waits_until_the_file_stops_changing(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"a": 1}\n{"a": ')
    reader = opened(FileSource(str(path), format="jsonl"))
    assert [i.value for i in reader.poll(10)] == [{"a": 1}]
    with path.open("ab") as f:
        f.write(b"2}")
    assert reader.poll(10) == []  # changed since the last look: maybe still being written
    assert [i.value for i in reader.poll(10)] == [{"a": 2}]  # unchanged: complete


def test_a_grown_file_is_read_on_from_where_reading_stopped(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id\n1\n2\n")
    reader = opened(FileSource(str(path)))
    first = drain(reader)
    with path.open("a") as f:
        f.write("3\n")
    assert [(i.value, origin(i)[1]) for i in drain(reader)] == [({"id": "3"}, 4)]
    # The same after a restart at the last position.
    with path.open("a") as f:
        f.write("4\n")
    resumed = opened(FileSource(str(path)), first[-1].position)
    assert [i.value["id"] for i in drain(resumed)] == ["3", "4"]


def test_a_file_replaced_by_a_shorter_one_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", "1\n2\n3\n")
    reader = opened(FileSource(str(path), format="jsonl"))
    position = drain(reader)[-1].position
    write(tmp_path / "a.jsonl", "9\n")
    assert [(i.value, origin(i)[1]) for i in drain(reader)] == [(9, 1)]
    assert [i.value for i in drain(opened(FileSource(str(path), format="jsonl"), position))] == [9]


def test_an_unchanged_file_is_not_read_again_after_a_restart(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", "1\n", mtime_s=1)
    write(tmp_path / "b.jsonl", "2\n", mtime_s=2)
    source = FileSource(str(tmp_path / "*.jsonl"), format="jsonl")
    position = drain(opened(source))[-1].position
    assert drain(opened(source, position)) == []


def test_files_that_are_gone_leave_the_position_and_are_new_if_they_come_back(
    tmp_path: Path,
) -> None:
    source = FileSource(str(tmp_path / "*.jsonl"), format="jsonl")
    reader = opened(source)
    for n in range(300):
        write(tmp_path / f"{n:03}.jsonl", f"{n}\n", mtime_s=n + 1)
    assert len(drain(reader)) == 300
    (tmp_path / "299.jsonl").unlink()
    write(tmp_path / "299.jsonl", "299\n", mtime_s=300)  # back before the source noticed
    assert drain(reader) == []  # the same identity: already read
    for n in range(300):
        (tmp_path / f"{n:03}.jsonl").unlink()
    assert drain(reader) == []
    write(tmp_path / "000.jsonl", "0\n", mtime_s=1)  # an old file reappears
    [again] = drain(reader)
    assert again.value == 0
    assert len(json.dumps(again.position)) < 200


def test_a_wrong_format_or_an_encoding_that_changes_ascii_is_refused() -> None:
    with pytest.raises(SourceError, match="format='xml' is not known"):
        FileSource("/x/*.xml", format="xml")  # type: ignore[arg-type]
    with pytest.raises(SourceError, match=r"utf-16.*convert the files to utf-8"):
        FileSource("/x/*.csv", encoding="utf-16")


def test_a_position_of_another_kind_of_source_is_refused_naming_the_source(tmp_path: Path) -> None:
    reader = FileSource(str(tmp_path / "*.csv"), name="orders").reader()
    with pytest.raises(SourceError, match=r"'orders'.*not a file source's position"):
        reader.open({"files": {"a.csv": 3}})


# --- resuming: any prefix, any batch size


def _line(kind: int, n: int) -> str:
    return [f"{n},v{n}", "", f'{n},"multi\nline {n}"', f"{n},bad,row", '{"not csv'][kind % 5]


files_strategy = st.lists(
    st.lists(st.integers(min_value=0, max_value=9), min_size=0, max_size=8), min_size=1, max_size=4
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=files_strategy,
    batch=st.integers(min_value=1, max_value=5),
    last_newline=st.booleans(),
    data=st.data(),
)
def test_resuming_at_any_items_position_reads_exactly_the_items_after_it(
    files: list[list[int]], batch: int, last_newline: bool, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for f, kinds in enumerate(files):
            lines = ["id,value", *(_line(kind, n) for n, kind in enumerate(kinds))]
            text = "\n".join(lines) + ("\n" if last_newline else "")
            write(Path(directory) / f"{f}.csv", text, mtime_s=f + 1)
        source = FileSource(os.path.join(directory, "*.csv"))
        items = drain(opened(source), max_records=batch)
        assert len(items) == sum(1 for kinds in files for kind in kinds if kind % 5 != 1)
        if not items:
            return
        k = data.draw(st.integers(min_value=0, max_value=len(items) - 1))
        rest = drain(opened(source, items[k].position), max_records=batch)
        assert [_comparable(i) for i in rest] == [_comparable(i) for i in items[k + 1 :]]


def _comparable(item: SourceItem) -> tuple[Any, ...]:
    return (item.value, tuple(item.headers))


def test_nothing_is_forgotten_while_the_patterns_directory_is_missing(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write(incoming / "a.jsonl", "1\n")
    reader = opened(FileSource(str(incoming / "*.jsonl"), format="jsonl"))
    assert [i.value for i in drain(reader)] == [1]
    incoming.rename(tmp_path / "elsewhere")  # as an unmounted volume
    assert drain(reader) == []
    (tmp_path / "elsewhere").rename(incoming)
    assert drain(reader) == []
