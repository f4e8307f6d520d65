"""The global thread over a scripted reader and a real RocksDB: restore from empty, from a
checkpoint, following updates, checkpoints outside the topic, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from processor import Topology, serdes
from processor.errors import StateError, TopicError
from processor.ids import Partition
from processor.runtime.global_tables import GlobalTables, GlobalTablesState
from processor.state.global_store import GlobalRecords
from processor.state.restore_protocols import PartitionEnd
from processor.topology.handling import ErrorHandler

Record = tuple[bytes | None, bytes | None]


class FakeTopic:
    """A topic's partitions as lists of records (offset = index from `low`)."""

    def __init__(self, partitions: int, low: int = 0) -> None:
        self.records: list[list[Record]] = [[] for _ in range(partitions)]
        self.low = low


class FakeReader:
    """What the global consumer does, over `FakeTopic`s: records from the assigned offsets on,
    an end event whenever a partition is caught up."""

    def __init__(self, topics: Mapping[str, FakeTopic]) -> None:
        self.topics = topics
        self.positions: dict[Partition, int] = {}
        self.assigned: dict[Partition, int] = {}
        self.lock = threading.Lock()
        self.closed = False

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        t = self.topics[topic]
        return t.low, t.low + len(t.records[partition])

    def assign(self, start_offsets: Mapping[Partition, int]) -> None:
        self.assigned.update(start_offsets)
        self.positions.update(start_offsets)

    def consume_records(
        self, max_records: int, timeout: float
    ) -> list[GlobalRecords | PartitionEnd]:
        out: list[GlobalRecords | PartitionEnd] = []
        with self.lock:
            for (topic, p), position in sorted(self.positions.items()):
                t = self.topics[topic]
                end = t.low + len(t.records[p])
                if position < end:
                    run = t.records[p][position - t.low : end - t.low]
                    offsets = list(range(position, end))
                    keys = [k for k, _ in run]
                    values = [v for _, v in run]
                    out.append(GlobalRecords(topic, p, end - 1, keys, values, offsets))
                    self.positions[(topic, p)] = end
                out.append(PartitionEnd(topic, p, end))
        if not out:
            time.sleep(min(timeout, 0.01))
        return out

    def close(self) -> None:
        self.closed = True


def _topology(handler: str | None = None) -> Topology:
    t = Topology("app")
    t.global_table(
        "countries",
        key_serde=serdes.StringSerde(),
        value_serde=serdes.StringSerde(),
        on_deserialization_error=handler,
    )
    return t


def _tables(state: Path, reader: FakeReader, topology: Topology | None = None) -> GlobalTables:
    def counts(topics: Sequence[str]) -> dict[str, int | None]:
        return {t: len(reader.topics[t].records) if t in reader.topics else None for t in topics}

    return GlobalTables(
        (topology or _topology()).global_tables(),
        state,
        lambda: reader,
        counts,
        deserialization=ErrorHandler.FAIL,
    )


def _wait(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _restored(tables: GlobalTables) -> GlobalTables:
    tables.start()
    _wait(tables.restored)
    return tables


def _topic() -> FakeTopic:
    topic = FakeTopic(2)
    topic.records[0] = [(b"fr", b"France"), (b"de", b"Germany"), (b"fr", b"France!")]
    topic.records[1] = [(b"it", b"Italy"), (None, b"no key"), (b"es", b"Spain"), (b"es", None)]
    return topic


def test_restores_every_partition_from_empty_then_runs(tmp_path: Path) -> None:
    reader = FakeReader({"countries": _topic()})
    tables = _restored(_tables(tmp_path, reader))
    assert reader.assigned == {("countries", 0): 0, ("countries", 1): 0}
    store = tables.stores["countries"]
    assert list(store.all()) == [("de", "Germany"), ("fr", "France!"), ("it", "Italy")]
    assert (tables.state, tables.restore_records) == (GlobalTablesState.RUNNING, 7)
    tables.close()
    assert reader.closed and tables.state is GlobalTablesState.CLOSED


def test_a_restart_reads_only_what_is_new_since_its_checkpoint(tmp_path: Path) -> None:
    topic = _topic()
    _restored(_tables(tmp_path, FakeReader({"countries": topic}))).close()
    topic.records[1].append((b"pt", b"Portugal"))
    reader = FakeReader({"countries": topic})
    tables = _restored(_tables(tmp_path, reader))
    assert reader.assigned == {("countries", 0): 3, ("countries", 1): 4}
    assert tables.restore_records == 1
    assert tables.stores["countries"].get("pt") == "Portugal"
    tables.close()


def test_updates_while_running_are_applied(tmp_path: Path) -> None:
    reader = FakeReader({"countries": _topic()})
    tables = _restored(_tables(tmp_path, reader))
    store = tables.stores["countries"]
    with reader.lock:
        reader.topics["countries"].records[0] += [(b"de", None), (b"nl", b"Netherlands")]
    _wait(lambda: store.get("nl") == "Netherlands")
    assert store.get("de") is None
    tables.close()


def test_a_checkpoint_outside_the_topic_wipes_and_reads_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _restored(_tables(tmp_path, FakeReader({"countries": _topic()}))).close()
    recreated = FakeTopic(2)  # the topic was deleted and created again: fewer records
    recreated.records[0] = [(b"se", b"Sweden")]
    reader = FakeReader({"countries": recreated})
    tables = _restored(_tables(tmp_path, reader))
    assert reader.assigned == {("countries", 0): 0, ("countries", 1): 0}
    assert list(tables.stores["countries"].all()) == [("se", "Sweden")]
    assert "outside the topic's offsets" in caplog.text
    tables.close()


def test_an_undecodable_record_stops_the_worker_when_the_handler_is_fail(tmp_path: Path) -> None:
    topic = FakeTopic(1)
    topic.records[0] = [(b"fr", b"\xff\xfe")]  # not UTF-8
    tables = _tables(tmp_path, FakeReader({"countries": topic}))
    tables.start()
    with pytest.raises(StateError, match=r"countries\[0\]@0: global table 'countries' cannot"):
        _wait(tables.restored)
    assert tables.state is GlobalTablesState.FAILED
    tables.close()


def test_skip_leaves_an_undecodable_record_out(tmp_path: Path) -> None:
    topic = FakeTopic(1)
    topic.records[0] = [(b"fr", b"\xff\xfe"), (b"de", b"Germany")]
    tables = _restored(_tables(tmp_path, FakeReader({"countries": topic}), _topology("skip")))
    assert list(tables.stores["countries"].all()) == [("de", "Germany")]
    tables.close()


def test_a_missing_topic_is_a_startup_error_naming_it(tmp_path: Path) -> None:
    tables = _tables(tmp_path, FakeReader({}))
    with pytest.raises(TopicError, match=r"countries.*the topic of a global table does not exist"):
        tables.start()
    tables.close()


def test_without_global_tables_there_is_nothing_to_wait_for(tmp_path: Path) -> None:
    tables = GlobalTables([], tmp_path, FakeReader, dict, deserialization=ErrorHandler.FAIL)  # type: ignore[arg-type]
    tables.start()
    assert tables.restored() and tables.stores == {}
    assert not (tmp_path / "global").exists()
    tables.close()
