"""What only the RocksDB backend does: files, reopening, corruption, locking, wiping."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from processor.errors import StateError, StoreCorruptedError, StoreLockedError
from processor.state.rocksdb import META_FAMILY, open_or_wipe, open_rocksdb, wipe

log = logging.getLogger("test.state")


def test_open_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "app" / "0_1"
    backend = open_rocksdb(path, ["s"])
    backend.close()
    assert (path / "CURRENT").is_file()
    assert set(Rdict.list_cf(str(path))) == {"default", "s", META_FAMILY}


def test_reopen_keeps_data_and_offsets(tmp_path: Path) -> None:
    backend = open_rocksdb(tmp_path, ["s", "t"])
    backend.write({"s": [(b"k", b"v")], "t": [(b"x", b"y")]}, {"app-s-changelog": 7})
    backend.close()

    backend = open_rocksdb(tmp_path, ["s", "t"])
    assert backend.get("s", b"k") == b"v"
    assert backend.get("t", b"x") == b"y"
    assert backend.offsets() == {"app-s-changelog": 7}
    backend.close()


def test_reopen_with_a_new_store_adds_it_and_keeps_the_old_ones(tmp_path: Path) -> None:
    backend = open_rocksdb(tmp_path, ["old", "kept"])
    backend.write({"old": [(b"k", b"1")], "kept": [(b"k", b"2")]}, {})
    backend.close()

    backend = open_rocksdb(tmp_path, ["kept", "new"])
    assert backend.stores == ("kept", "new")
    assert backend.get("kept", b"k") == b"2"
    assert backend.get("new", b"k") is None
    backend.close()

    backend = open_rocksdb(tmp_path, ["old"])
    assert backend.get("old", b"k") == b"1"  # a store left out is not deleted
    backend.close()


def test_garbage_in_the_directory_is_store_corrupted(tmp_path: Path) -> None:
    path = tmp_path / "0_3"
    path.mkdir()
    (path / "CURRENT").write_text("not a manifest name\n")
    with pytest.raises(StoreCorruptedError) as raised:
        open_rocksdb(path, ["s"])
    assert raised.value.path == path
    assert "CURRENT" in raised.value.reason
    assert str(path) in str(raised.value)


def test_a_damaged_manifest_is_store_corrupted(tmp_path: Path) -> None:
    open_rocksdb(tmp_path, ["s"]).close()
    for manifest in tmp_path.glob("MANIFEST-*"):
        manifest.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(StoreCorruptedError, match=str(tmp_path)):
        open_rocksdb(tmp_path, ["s"])


def test_a_file_where_the_directory_should_be_is_store_corrupted(tmp_path: Path) -> None:
    path = tmp_path / "0_0"
    path.write_text("oops")
    with pytest.raises(StoreCorruptedError, match="not a directory"):
        open_rocksdb(path, ["s"])


def test_a_malformed_offset_is_store_corrupted(tmp_path: Path) -> None:
    open_rocksdb(tmp_path, ["s"]).close()
    raw = Options(raw_mode=True)
    db = Rdict(str(tmp_path), raw, column_families={"s": raw, META_FAMILY: raw})
    meta = db.get_column_family(META_FAMILY)
    meta[b"app-s-changelog"] = b"\x01\x02\x03"
    meta.close()
    db.close()
    with pytest.raises(StoreCorruptedError, match="app-s-changelog"):
        open_rocksdb(tmp_path, ["s"])
    # The failed open let go of the database: trying again finds the same damage, not a lock.
    with pytest.raises(StoreCorruptedError, match="3 bytes"):
        open_rocksdb(tmp_path, ["s"])


def test_open_or_wipe_wipes_a_corrupted_directory_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "1_2"
    path.mkdir()
    (path / "CURRENT").write_text("garbage")
    (path / "leftover.sst").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger=log.name):
        backend, wiped = open_or_wipe(path, ["s"], "1_2", log)
    assert wiped
    assert not (path / "leftover.sst").exists()
    assert backend.offsets() == {}
    assert list(backend.range("s")) == []
    backend.close()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "task 1_2" in record.getMessage()
    assert "CURRENT" in record.getMessage()


def test_open_or_wipe_keeps_a_healthy_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = open_rocksdb(tmp_path, ["s"])
    backend.write({"s": [(b"k", b"v")]}, {"c": 1})
    backend.close()
    with caplog.at_level(logging.WARNING, logger=log.name):
        backend, wiped = open_or_wipe(tmp_path, ["s"], "0_0", log)
    assert not wiped
    assert backend.get("s", b"k") == b"v"
    assert backend.offsets() == {"c": 1}
    backend.close()
    assert caplog.records == []


def test_an_open_directory_is_locked_and_never_wiped(tmp_path: Path) -> None:
    backend = open_rocksdb(tmp_path, ["s"])
    backend.write({"s": [(b"k", b"v")]}, {})
    with pytest.raises(StoreLockedError) as raised:
        open_rocksdb(tmp_path, ["s"])
    assert raised.value.path == tmp_path
    with pytest.raises(StoreLockedError):
        open_or_wipe(tmp_path, ["s"], "0_0", log)
    assert backend.get("s", b"k") == b"v"
    backend.close()


def test_close_ends_open_scans_and_releases_the_lock(tmp_path: Path) -> None:
    backend = open_rocksdb(tmp_path, ["s"])
    backend.write({"s": [(b"a", b"1"), (b"b", b"2")]}, {})
    scan = backend.range("s")
    assert next(scan) == (b"a", b"1")
    unstarted = backend.range("s")
    backend.close()
    assert list(scan) == []
    assert list(unstarted) == []
    reopened = open_rocksdb(tmp_path, ["s"])
    assert reopened.get("s", b"b") == b"2"
    reopened.close()


def test_many_short_scans_stop_exactly_at_their_end(tmp_path: Path) -> None:
    """rocksdict frees a scan's upper bound with its ReadOptions; the scan must keep them."""
    backend = open_rocksdb(tmp_path, ["s"])
    backend.write({"s": [(b"%06d" % i, b"v" * 50) for i in range(5000)]}, {})
    rng = random.Random(0)
    for _ in range(500):
        first = rng.randrange(4900)
        scan = backend.range("s", b"%06d" % first, b"%06d" % (first + 100))
        churn = [bytes(40) + b"%d" % i for i in range(50)]  # reuse the freed memory, if any
        assert sum(1 for _ in scan) == 100, churn[0]
    backend.close()


def test_store_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        open_rocksdb(tmp_path, [META_FAMILY])


def test_a_store_may_be_called_default(tmp_path: Path) -> None:
    backend = open_rocksdb(tmp_path, ["default", "other"])
    backend.write({"default": [(b"k", b"v")]}, {})
    assert backend.get("default", b"k") == b"v"
    assert backend.get("other", b"k") is None
    backend.close()


def test_wipe(tmp_path: Path) -> None:
    path = tmp_path / "0_0"
    backend = open_rocksdb(path, ["s"])
    backend.write({"s": [(b"k", b"v")]}, {"c": 3})
    backend.close()
    wipe(path)
    assert not path.exists()
    wipe(path)  # nothing there: nothing to do
    backend = open_rocksdb(path, ["s"])
    assert backend.get("s", b"k") is None
    assert backend.offsets() == {}
    backend.close()


def test_errors_are_state_errors(tmp_path: Path) -> None:
    assert issubclass(StoreCorruptedError, StateError)
    assert issubclass(StoreLockedError, StateError)
