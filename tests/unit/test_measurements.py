"""`processor.runtime.measurements`: what /metrics measures beyond the tasks' own counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from processor.runtime.measurements import Measurements, directory_bytes


@dataclass
class _Stores:
    reads: dict[str, tuple[int, int]]

    def cache_reads(self) -> dict[str, tuple[int, int]]:
        return self.reads


@dataclass
class _Task:
    stores: _Stores | None
    id: str = ""
    partitions: tuple[tuple[str, int], ...] = ()


@dataclass
class _Tasks:
    tasks: dict[str, _Task] = field(default_factory=dict)

    def running(self) -> list[_Task]:
        return list(self.tasks.values())

    def held(self) -> set[str]:
        return set()


@dataclass
class _Consumer:
    lags: dict[tuple[str, int], int] = field(default_factory=dict)

    def fetched_lags(
        self, partitions: list[tuple[str, int]], *, ends: object = None
    ) -> dict[tuple[str, int], int]:
        return {p: self.lags[p] for p in partitions if p in self.lags}


def test_a_tasks_lag_is_the_sum_over_its_partitions_when_each_is_known() -> None:
    tasks = _Tasks(
        {
            "0_1": _Task(None, "0_1", (("a", 1), ("b", 1))),
            "0_2": _Task(None, "0_2", (("a", 2), ("b", 2))),
        }
    )
    consumer = _Consumer({("a", 1): 5, ("b", 1): 7, ("a", 2): 3})  # b[2]: no fetch answered yet
    figures = Measurements(cast(Any, tasks), cast(Any, consumer)).figures()
    assert figures["consumer_lag"] == {"0_1": 12}
    assert figures["partition_lags"] == {("0_1", "a", 1): 5, ("0_1", "b", 1): 7, ("0_2", "a", 2): 3}


def test_cache_reads_keep_counting_when_tasks_go_and_come_back() -> None:
    tasks = _Tasks({"1_0": _Task(_Stores({"counts": (10, 2)})), "0_0": _Task(None)})
    measurements = Measurements(cast(Any, tasks), cast(Any, _Consumer()))
    assert measurements.figures()["cache_hits"] == {"counts": 10}

    tasks.tasks["1_1"] = _Task(_Stores({"counts": (5, 5)}))
    figures = measurements.figures()
    assert (figures["cache_hits"], figures["cache_misses"]) == ({"counts": 15}, {"counts": 7})

    del tasks.tasks["1_0"]  # given away: its reads stay counted
    tasks.tasks["1_1"] = _Task(_Stores({"counts": (1, 0)}))  # opened anew: counts from 0
    figures = measurements.figures()
    assert (figures["cache_hits"], figures["cache_misses"]) == ({"counts": 16}, {"counts": 7})


def test_directory_bytes_adds_up_the_files_below(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"x" * 23)
    assert directory_bytes(tmp_path) == 123
    assert directory_bytes(tmp_path / "missing") == 0
