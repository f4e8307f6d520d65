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


@dataclass
class _Tasks:
    tasks: dict[str, _Task] = field(default_factory=dict)

    def running(self) -> list[Any]:
        return []

    def held(self) -> set[str]:
        return set()


class _Consumer:
    def fetched_lags(self, partitions: list[Any]) -> dict[Any, int]:
        return {}


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
