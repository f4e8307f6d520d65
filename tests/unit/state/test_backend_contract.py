"""The contract every `TaskStateBackend` keeps, run over each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from processor.errors import StateError
from processor.state.backend import TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.state.rocksdb import open_rocksdb


@dataclass
class BackendFactory:
    """Opens backends of one kind; `persistent` ones keep their data across close and reopen."""

    open: Callable[[Sequence[str]], TaskStateBackend]
    persistent: bool


@pytest.fixture(params=["rocksdb", "memory"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    opened: list[TaskStateBackend] = []

    def open_backend(stores: Sequence[str]) -> TaskStateBackend:
        backend: TaskStateBackend = (
            open_rocksdb(tmp_path / "task", stores)
            if request.param == "rocksdb"
            else InMemoryBackend(stores)
        )
        opened.append(backend)
        return backend

    yield BackendFactory(open_backend, persistent=request.param == "rocksdb")
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(backend_factory: BackendFactory) -> TaskStateBackend:
    return backend_factory.open(["s"])


def fill(backend: TaskStateBackend, keys: Sequence[bytes], store: str = "s") -> None:
    backend.write({store: [(k, b"v" + k) for k in keys]}, {})


def test_stores_are_the_ones_asked_for(backend_factory: BackendFactory) -> None:
    assert backend_factory.open(["b", "a"]).stores == ("b", "a")


def test_put_get_delete(backend: TaskStateBackend) -> None:
    assert backend.get("s", b"k") is None
    backend.write({"s": [(b"k", b"1")]}, {})
    assert backend.get("s", b"k") == b"1"
    backend.write({"s": [(b"k", b"2")]}, {})
    assert backend.get("s", b"k") == b"2"
    backend.write({"s": [(b"k", None)]}, {})
    assert backend.get("s", b"k") is None
    backend.write({"s": [(b"k", None)]}, {})  # deleting an absent key is fine
    assert backend.get("s", b"k") is None


def test_changes_apply_in_order(backend: TaskStateBackend) -> None:
    backend.write({"s": [(b"a", b"1"), (b"a", b"2"), (b"b", b"1"), (b"b", None)]}, {})
    assert backend.get("s", b"a") == b"2"
    assert backend.get("s", b"b") is None


def test_empty_key_and_value_are_values(backend: TaskStateBackend) -> None:
    backend.write({"s": [(b"", b""), (b"k", b"")]}, {})
    assert backend.get("s", b"") == b""
    assert backend.get("s", b"k") == b""
    assert list(backend.range("s")) == [(b"", b""), (b"k", b"")]


def test_range_is_in_ascending_byte_order(backend: TaskStateBackend) -> None:
    keys = [b"b", b"\xff", b"a", b"", b"\x00", b"ab", b"a\x00", b"\x7f\xff", b"\x80"]
    fill(backend, keys)
    assert [k for k, _ in backend.range("s")] == sorted(keys)
    assert dict(backend.range("s")) == {k: b"v" + k for k in keys}


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, [b"a", b"ab", b"b", b"ba", b"c"]),
        (b"ab", None, [b"ab", b"b", b"ba", b"c"]),
        (None, b"b", [b"a", b"ab"]),  # end is exclusive
        (b"ab", b"ba", [b"ab", b"b"]),
        (b"aa", b"bb", [b"ab", b"b", b"ba"]),  # bounds need not be keys
        (b"b", b"b", []),
        (b"c", b"a", []),  # start after end
        (b"d", None, []),
        (None, b"a", []),
    ],
)
def test_range_bounds(
    backend: TaskStateBackend, start: bytes | None, end: bytes | None, expected: list[bytes]
) -> None:
    fill(backend, [b"c", b"a", b"ba", b"b", b"ab"])
    assert [k for k, _ in backend.range("s", start, end)] == expected


def test_range_skips_deleted_keys(backend: TaskStateBackend) -> None:
    fill(backend, [b"a", b"b", b"c"])
    backend.write({"s": [(b"b", None)]}, {})
    assert [k for k, _ in backend.range("s")] == [b"a", b"c"]
    fill(backend, [b"b", b"d"])  # back again, and a new one
    assert [k for k, _ in backend.range("s")] == [b"a", b"b", b"c", b"d"]


def test_range_of_an_empty_store(backend: TaskStateBackend) -> None:
    assert list(backend.range("s")) == []


def test_writing_during_a_range_scan_does_not_break_it(backend: TaskStateBackend) -> None:
    fill(backend, [b"%03d" % i for i in range(100)])
    seen = []
    for key, _ in backend.range("s"):
        seen.append(key)
        backend.write({"s": [(key + b"x", b"new")]}, {})
    # Backends may or may not show the keys written during the scan; the old keys are all there,
    # in order.
    old = [k for k in seen if not k.endswith(b"x")]
    assert old == [b"%03d" % i for i in range(100)]
    assert seen == sorted(seen)


def test_stores_are_isolated(backend_factory: BackendFactory) -> None:
    stores = [f"store-{i}" for i in range(8)]
    backend = backend_factory.open(stores)
    backend.write({name: [(b"k", name.encode()), (name.encode(), b"own")] for name in stores}, {})
    for name in stores:
        assert backend.get(name, b"k") == name.encode()
        assert list(backend.range(name)) == sorted([(b"k", name.encode()), (name.encode(), b"own")])
        assert backend.approximate_count(name) == 2
    backend.write({"store-3": [(b"k", None)]}, {})
    assert backend.get("store-3", b"k") is None
    assert backend.get("store-4", b"k") == b"store-4"


def test_unknown_store_is_a_key_error(backend: TaskStateBackend) -> None:
    with pytest.raises(KeyError, match="nope"):
        backend.get("nope", b"k")
    with pytest.raises(KeyError, match="nope"):
        backend.range("nope")
    with pytest.raises(KeyError, match="nope"):
        backend.write({"nope": [(b"k", b"v")]}, {})


def test_a_write_naming_an_unknown_store_writes_nothing(backend_factory: BackendFactory) -> None:
    backend = backend_factory.open(["a", "b"])
    with pytest.raises(KeyError):
        backend.write({"a": [(b"k", b"v")], "zzz": [(b"k", b"v")]}, {"topic": 5})
    assert backend.get("a", b"k") is None
    assert backend.offsets() == {}


def test_duplicate_store_names_are_refused(backend_factory: BackendFactory) -> None:
    with pytest.raises(ValueError, match="unique"):
        backend_factory.open(["a", "a"])


def test_offsets_round_trip(backend: TaskStateBackend) -> None:
    assert backend.offsets() == {}
    backend.write({}, {"app-s-changelog": 0, "app-t-changelog": 41})
    assert backend.offsets() == {"app-s-changelog": 0, "app-t-changelog": 41}
    backend.write({"s": [(b"k", b"v")]}, {"app-s-changelog": 2**62})
    assert backend.offsets() == {"app-s-changelog": 2**62, "app-t-changelog": 41}
    backend.write({"s": [(b"k", b"w")]}, {})  # no offsets: the old ones stay
    assert backend.offsets() == {"app-s-changelog": 2**62, "app-t-changelog": 41}


def test_offsets_returns_a_copy(backend: TaskStateBackend) -> None:
    backend.write({}, {"t": 1})
    backend.offsets()["t"] = 99
    assert backend.offsets() == {"t": 1}


def test_rocksdb_data_and_offsets_survive_close_and_reopen_together(tmp_path: Path) -> None:
    # Persistence is RocksDB's alone: in-memory state does not outlive its backend.
    stores = ["a", "b"]
    backend = open_rocksdb(tmp_path / "task", stores)
    for i in range(50):
        backend.write(
            {"a": [(b"%02d" % i, b"a%d" % i)], "b": [(b"%02d" % i, b"b%d" % i)]},
            {"app-a-changelog": i, "app-b-changelog": 1000 + i},
        )
    backend.write({"a": [(b"00", None)]}, {"app-a-changelog": 50})
    backend.close()

    reopened = open_rocksdb(tmp_path / "task", stores)
    assert reopened.offsets() == {"app-a-changelog": 50, "app-b-changelog": 1049}
    assert reopened.get("a", b"00") is None
    assert reopened.get("a", b"49") == b"a49"
    assert len(list(reopened.range("a"))) == 49
    assert len(list(reopened.range("b"))) == 50
    reopened.close()


def test_approximate_count_is_in_the_ballpark(backend: TaskStateBackend) -> None:
    assert backend.approximate_count("s") == 0
    for first in range(0, 2000, 500):
        fill(backend, [b"%06d" % i for i in range(first, first + 500)])
    assert 1000 <= backend.approximate_count("s") <= 4000


def test_closed_backend_refuses_use(backend: TaskStateBackend) -> None:
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(StateError, match="closed"):
        backend.get("s", b"k")
    with pytest.raises(StateError, match="closed"):
        backend.write({"s": [(b"k", b"v")]}, {})
    with pytest.raises(StateError, match="closed"):
        backend.offsets()
