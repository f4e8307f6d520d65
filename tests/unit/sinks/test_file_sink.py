"""`FileSink` writers driven as the runtime drives them: files published exactly once, under
names that carry their offset range, resumed from those names."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processor.errors import ConfigError
from processor.sinks import FileSink
from processor.sinks import files as files_module
from processor.sinks.base import SinkBatch, SinkError, SinkFencedError, SinkRecordError
from tests.unit.sinks.file_sink_helpers import (
    DAY_MS,
    FakeClock,
    batch,
    make_sink,
    offsets_of,
    published,
    read_back,
    record,
    task,
    temporary,
    write_values,
)


def test_jsonl_files_hold_the_values_as_json_lines(tmp_path: Path) -> None:
    values: list[Any] = [{"id": 1, "name": "é"}, [1, 2.5], "text", 7, True, None, {"n": {"x": []}}]
    writer = make_sink(tmp_path).writer(task())
    assert writer.open() is None

    assert write_values(writer, 10, values) is None  # not published yet: nothing durable
    assert writer.roll(10**12) == 17

    [path] = published(tmp_path)
    assert path.name == "out-orders-0-00000000000000000010-00000000000000000017.jsonl"
    assert read_back(path) == values
    assert temporary(tmp_path) == []


def test_parquet_files_hold_dict_values_as_typed_rows(tmp_path: Path) -> None:
    values = [
        {"id": 1, "price": 2.5, "name": "a", "paid": True, "note": None},
        {"id": 2, "price": 3, "name": "b", "paid": False},  # int in a float column; no note
        {"price": None, "id": 3, "name": "c", "paid": None, "note": None},
    ]
    writer = make_sink(tmp_path, "parquet").writer(task())
    writer.open()
    write_values(writer, 0, values)
    assert writer.roll(10**12) == 3

    [path] = published(tmp_path)
    assert path.suffix == ".parquet"
    table = pq.read_table(path)
    assert table.schema.types[:4] == [pa.int64(), pa.float64(), pa.string(), pa.bool_()]
    assert table.to_pylist() == [
        {"id": 1, "price": 2.5, "name": "a", "paid": True, "note": None},
        {"id": 2, "price": 3.0, "name": "b", "paid": False, "note": None},
        {"id": 3, "price": None, "name": "c", "paid": None, "note": None},
    ]


def test_a_parquet_column_first_seen_null_takes_the_type_of_its_first_value(
    tmp_path: Path,
) -> None:
    writer = make_sink(tmp_path, "parquet").writer(task())
    writer.open()
    write_values(writer, 0, [{"a": 1, "b": None}, {"a": 2, "b": None}, {"a": 3, "b": "x"}])
    writer.roll(10**12)

    # A Parquet file has one schema: the column's type starts a new file.
    files = published(tmp_path)
    assert [offsets_of(p) for p in files] == [(0, 2), (2, 3)]
    assert pq.read_table(files[1]).schema.field("b").type == pa.string()
    assert [row for p in files for row in read_back(p)] == [
        {"a": 1, "b": None},
        {"a": 2, "b": None},
        {"a": 3, "b": "x"},
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_files_are_published_when_they_reach_roll_bytes(tmp_path: Path, fmt: str) -> None:
    writer = make_sink(tmp_path, fmt, roll_bytes=1_000).writer(task())
    writer.open()
    durable = []
    for first in range(0, 400, 20):
        values = [{"n": n, "text": "x" * 40} for n in range(first, first + 20)]
        durable.append(write_values(writer, first, values))

    files = published(tmp_path)
    assert len(files) >= 3
    ends = [offsets_of(p)[1] for p in files]
    assert [d for d in durable if d is not None] == ends  # write says when a file is published
    if fmt == "jsonl":  # Parquet's size is estimated until a row group is written
        assert all(1_000 <= p.stat().st_size < 2_000 for p in files)
    assert [row["n"] for p in files for row in read_back(p)] == list(range(ends[-1]))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_files_are_published_when_open_for_roll_ms(tmp_path: Path, fmt: str) -> None:
    clock = FakeClock()
    writer = make_sink(tmp_path, fmt, roll_ms=1_000, clock=clock).writer(task())
    writer.open()
    write_values(writer, 0, [{"n": 0}])

    assert writer.roll(clock.now_ms + 999) is None
    assert published(tmp_path) == []
    assert writer.roll(clock.now_ms + 1_000) == 1

    # A steady trickle of batches (no roll call) publishes by time too.
    write_values(writer, 1, [{"n": 1}])
    clock.now_ms += 600
    assert write_values(writer, 2, [{"n": 2}]) is None
    clock.now_ms += 600
    assert write_values(writer, 3, [{"n": 3}]) == 4
    assert [offsets_of(p) for p in published(tmp_path)] == [(0, 1), (1, 4)]


def test_empty_files_are_never_published_and_skipped_offsets_join_the_next_file(
    tmp_path: Path,
) -> None:
    writer = make_sink(tmp_path).writer(task())
    writer.open()
    assert writer.roll(10**12) is None
    # Records 0-4 were skipped by the error handler: a batch with no items.
    assert writer.write(SinkBatch([], 0, 5)) is None
    assert writer.roll(10**12) is None
    assert published(tmp_path) == []

    writer.write(batch(writer, [record(6, "six")], 5, 7))
    assert writer.roll(10**12) == 7
    [path] = published(tmp_path)
    assert offsets_of(path) == (0, 7)
    assert read_back(path) == ["six"]


def test_open_resumes_after_the_tasks_last_published_file(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    writer = sink.writer(task())
    writer.open()
    write_values(writer, 0, ["a", "b"])
    writer.roll(10**12)
    write_values(writer, 2, ["c"])
    writer.roll(10**12)
    writer.close()
    # Other partitions' and other sinks' files do not count.
    other = sink.writer(task(partition=1))
    other.open()
    write_values(other, 50, ["x"])
    other.roll(10**12)
    (tmp_path / "else-orders-0-00000000000000000090-00000000000000000099.jsonl").touch()

    assert sink.writer(task()).open() == 3
    assert sink.writer(task(partition=1)).open() == 51
    assert sink.writer(task(partition=2)).open() is None


def test_open_deletes_the_tasks_leftover_temporary_files_and_says_which(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(tmp_path)
    crashed = sink.writer(task())
    crashed.open()
    write_values(crashed, 0, ["lost"])
    other = sink.writer(task(partition=1))
    other.open()
    write_values(other, 0, ["kept"])
    [mine, theirs] = temporary(tmp_path)
    del crashed  # a crash: no close()

    with caplog.at_level(logging.WARNING):
        assert sink.writer(task()).open() is None

    assert temporary(tmp_path) == [theirs]
    assert str(mine) in caplog.text
    assert published(tmp_path) == []


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_crash_never_leaves_a_partial_file_under_a_final_name(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(Exception):
        pass

    def crash(*_: Any) -> None:
        raise Crash

    sink = make_sink(tmp_path, fmt)
    writer = sink.writer(task())
    writer.open()
    write_values(writer, 0, [{"n": n} for n in range(5)])
    monkeypatch.setattr(files_module.os, "link", crash)  # dies just before publishing
    with pytest.raises(Crash):
        writer.roll(10**12)
    monkeypatch.undo()
    assert published(tmp_path) == []

    # Dies after linking, before the directory is synced: the file is whole.
    successor = sink.writer(task())
    assert successor.open() is None
    write_values(successor, 0, [{"n": n} for n in range(5)])
    monkeypatch.setattr(files_module, "fsync_directory", crash)
    with pytest.raises(Crash):
        successor.roll(10**12)
    monkeypatch.undo()
    [path] = published(tmp_path)
    assert read_back(path) == [{"n": n} for n in range(5)]

    assert sink.writer(task()).open() == 5
    assert temporary(tmp_path) == []


def test_a_zombie_cannot_publish_over_its_successors_files(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    zombie = sink.writer(task())
    zombie.open()
    successor = sink.writer(task())
    assert successor.open() is None
    write_values(successor, 0, ["s0", "s1", "s2"])
    assert successor.roll(10**12) == 3

    write_values(zombie, 0, ["z0", "z1"])
    with pytest.raises(SinkFencedError, match=r"orders-0 was taken over.*up to offset 3"):
        zombie.roll(10**12)

    assert [offsets_of(p) for p in published(tmp_path)] == [(0, 3)]
    assert temporary(tmp_path) == []


def test_a_zombie_whose_file_the_successor_deleted_is_fenced(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    zombie = sink.writer(task())
    zombie.open()
    write_values(zombie, 0, ["z0"])
    assert sink.writer(task()).open() is None  # deletes the zombie's temporary file

    with pytest.raises(SinkFencedError, match="was deleted"):
        zombie.roll(10**12)
    assert published(tmp_path) == []


def test_a_successor_is_fenced_when_a_zombie_published_past_its_first_offset(
    tmp_path: Path,
) -> None:
    sink = make_sink(tmp_path)
    zombie = sink.writer(task())
    zombie.open()
    successor = sink.writer(task())
    successor.open()
    write_values(zombie, 0, ["z0", "z1", "z2"])  # after the successor opened
    assert zombie.roll(10**12) == 3

    write_values(successor, 0, ["s0"])
    with pytest.raises(SinkFencedError):
        successor.roll(10**12)
    assert sink.writer(task()).open() == 3
    assert [offsets_of(p) for p in published(tmp_path)] == [(0, 3)]


def test_a_retried_write_after_a_failed_publication_takes_each_offset_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link
    failures = iter([OSError(errno.EIO, "I/O error")])

    def flaky_link(source: Any, target: Any) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real_link(source, target)

    monkeypatch.setattr(files_module.os, "link", flaky_link)
    writer = make_sink(tmp_path, roll_bytes=1).writer(task())
    writer.open()
    failing = batch(writer, [record(0, "a"), record(1, "b")], 0, 2)
    with pytest.raises(OSError, match="I/O error"):
        writer.write(failing)
    assert writer.write(failing) == 2  # the runtime retries the same batch

    [path] = published(tmp_path)
    assert read_back(path) == ["a", "b"]


def test_with_path_by_date_a_file_never_spans_two_days(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, path_by="date")
    writer = sink.writer(task())
    writer.open()
    day = 19_700 * DAY_MS  # 2023-12-09
    records = [
        record(0, "a", day + 5),
        record(1, "b", day + DAY_MS - 1),
        record(2, "c", day + DAY_MS),
    ]
    writer.write(batch(writer, records, 0, 3))
    assert writer.roll(10**15) == 3

    files = published(tmp_path)
    assert [(p.parent.name, offsets_of(p)) for p in files] == [
        ("2023-12-09", (0, 2)),
        ("2023-12-10", (2, 3)),
    ]
    assert sink.writer(task()).open() == 3


def test_jsonl_refuses_values_json_cannot_hold(tmp_path: Path) -> None:
    writer = make_sink(tmp_path).writer(task())
    with pytest.raises(SinkRecordError, match=r"orders-0 offset 4 .*bytes"):
        writer.prepare(record(4, {"payload": b"\x00"}))
    with pytest.raises(SinkRecordError, match=r"offset 5.*JSON"):
        writer.prepare(record(5, float("nan")))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], r"offset 9: the value is a list, but Parquet rows are made from dict values"),
        ({"id": 1, "extra": 2}, r"offset 9: column 'extra' is not among .*'id', 'name'"),
        ({"id": "1"}, r"offset 9: column 'id' holds a str .* int64"),
        ({"id": 1.5}, r"offset 9: column 'id' holds a float .* int64"),
        ({"id": True}, r"offset 9: column 'id' holds a bool"),
        ({"name": ["a"]}, r"offset 9: column 'name' holds a list"),
        ({"id": 1 << 63}, r"offset 9: column 'id' holds \d+, beyond int64"),
    ],
)
def test_parquet_refuses_records_that_do_not_fit_the_columns(
    tmp_path: Path, value: Any, message: str
) -> None:
    writer = make_sink(tmp_path, "parquet").writer(task())
    writer.prepare(record(0, {"id": 1, "name": "first"}))
    with pytest.raises(SinkRecordError, match=message):
        writer.prepare(record(9, value))
    # The refused record changed nothing: the next one fits as before.
    writer.prepare(record(10, {"id": 2, "name": "second"}))


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"format": "csv"}, "format"),
        ({"roll_bytes": 0}, "roll_bytes"),
        ({"roll_ms": -1}, "roll_ms"),
        ({"path_by": "hour"}, "path_by"),
    ],
)
def test_settings_are_checked_when_the_sink_is_made(
    tmp_path: Path, settings: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError, match=f"config '{setting}'"):
        FileSink(tmp_path, **settings)


def test_a_sink_needs_a_name_that_can_start_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="name="):
        make_sink(tmp_path).writer(task(sink="a/b"))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_file_whose_publication_failed_goes_out_before_the_next_batch(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_sink(tmp_path, fmt).writer(task())
    writer.open()
    write_values(writer, 0, [{"n": 0}, {"n": 1}])

    def failing_link(*_: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patched:
        patched.setattr(files_module.os, "link", failing_link)
        with pytest.raises(OSError):
            writer.roll(10**12)

    assert write_values(writer, 2, [{"n": 2}]) == 2
    assert writer.roll(10**12) == 3
    assert [read_back(p) for p in published(tmp_path)] == [[{"n": 0}, {"n": 1}], [{"n": 2}]]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_writer_that_cannot_flush_its_file_stops_and_publishes_nothing(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(_: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    sink = make_sink(tmp_path, fmt)
    writer = sink.writer(task())
    writer.open()
    write_values(writer, 0, [{"n": 0}])
    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", failing_fsync)
        # A failed fsync may have dropped the pages: the records are read again instead.
        with pytest.raises(SinkFencedError, match=r"orders-0: writing .* failed .*I/O error"):
            writer.roll(10**12)

    assert published(tmp_path) == [] and temporary(tmp_path) == []
    assert sink.writer(task()).open() is None
