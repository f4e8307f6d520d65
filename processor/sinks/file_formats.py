"""What a file sink writes: JSON lines or Parquet.

Each format has two halves used on two threads. The *encoder* (`encode`, on the worker's main
thread, from `SinkWriter.prepare`) turns a record's value into a payload, checking it. The
*open file* (`append`, `finish`, `discard`, on the writer's thread) writes payloads to a
temporary file. They share nothing mutable: what the writer needs from the encoder travels
inside the payloads.

The Parquet half lives in `processor.sinks.file_parquet` (imported when a Parquet sink is
made, so that JSON lines need no pyarrow).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from processor.sinks.base import SinkRecord, SinkRecordError

__all__ = [
    "Encoder",
    "FileFormat",
    "FileLostError",
    "JsonLinesEncoder",
    "OpenFile",
    "create_exclusively",
    "file_format",
    "format_names",
    "fsync_and_close",
    "where",
]


class FileLostError(Exception):
    """The temporary file cannot be restored to a known state after a failed write: the
    records it held are lost to this writer (the file is discarded)."""


class OpenFile(Protocol):
    """A temporary file being written (writer thread only)."""

    def append(self, payloads: Sequence[Any]) -> None:
        """Write `payloads`; on an exception the file is as before, or `FileLostError`."""

    def size(self) -> int:
        """About how many bytes the finished file will have."""

    def finish(self) -> None:
        """Write what is buffered, fsync and close; `FileLostError` when that fails."""

    def discard(self) -> None:
        """Close and delete the file (missing is fine)."""


def where(record: SinkRecord) -> str:
    return f"{record.topic}-{record.partition} offset {record.offset}"


# --- JSON lines


class JsonLinesEncoder:
    """A record's value as one JSON line (UTF-8, ending in a newline)."""

    def __init__(self, sink: str) -> None:
        self._sink = sink
        self._json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    def encode(self, record: SinkRecord) -> bytes:
        try:
            return (self._json.encode(record.value) + "\n").encode()
        except (TypeError, ValueError) as error:
            raise SinkRecordError(
                self._sink,
                f"the value at {where(record)} cannot be written as JSON ({error}): JSON lines "
                "hold dicts, lists, str, int, float (not NaN or infinity), bool and None; "
                "convert the value (bytes, for example, to str) before the sink",
            ) from error


class _JsonLinesFile:
    """Lines appended with one `os.write` per batch to a file descriptor of our own (no Python
    file object: nothing buffered twice, nothing for the garbage collector to flush)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = create_exclusively(path)
        self._size = 0

    def append(self, payloads: Sequence[Any]) -> None:
        data = memoryview(b"".join(payloads))
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except BaseException as error:
            try:
                os.ftruncate(self._fd, self._size)
                os.lseek(self._fd, self._size, os.SEEK_SET)
            except OSError as undo_error:
                raise FileLostError(f"{error}; truncating back failed: {undo_error}") from error
            raise
        self._size += len(data)

    def size(self) -> int:
        return self._size

    def finish(self) -> None:
        try:
            fsync_and_close(self._fd)
        except OSError as error:
            raise FileLostError(f"flushing to disk failed: {error}") from error

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._path.unlink(missing_ok=True)


# --- shared


def create_exclusively(path: Path) -> int:
    """A new empty file at `path` (never one that exists), open for writing."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def fsync_and_close(fd: int) -> None:
    """Flush `fd`'s file to disk and close it. A failed fsync may have dropped the written
    pages (the kernel marks them clean), so it is not retried: the caller gives up the file."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Encoder(Protocol):
    """Turns a record into a format's payload (main thread only)."""

    def encode(self, record: SinkRecord) -> Any:
        """The payload for `record`; `SinkRecordError` when it cannot be written."""


@dataclass(frozen=True)
class FileFormat:
    """A format's name, its files' extension, how to make its encoder and open a file."""

    name: str
    extension: str
    encoder: Callable[[str], Encoder]
    """Makes a writer's encoder, given the sink's name (for errors)."""
    open_file: Callable[[Path, Any], OpenFile]
    """Opens a temporary file for payloads like the given one (its columns, for Parquet)."""
    file_key: Callable[[Any], object] | None
    """What must be the same object for all payloads of one file (None: nothing)."""


def _jsonl() -> FileFormat:
    return FileFormat(
        "jsonl", "jsonl", JsonLinesEncoder, lambda path, _payload: _JsonLinesFile(path), None
    )


def _parquet() -> FileFormat:
    from processor.sinks import file_parquet  # pyarrow is loaded only for Parquet sinks

    return FileFormat(
        "parquet",
        "parquet",
        file_parquet.ParquetEncoder,
        file_parquet.open_parquet_file,
        file_parquet.columns_of,
    )


_FORMATS: dict[str, Callable[[], FileFormat]] = {"jsonl": _jsonl, "parquet": _parquet}


def file_format(name: str) -> FileFormat | None:
    """The format called `name` ("jsonl", "parquet"), or None."""
    make = _FORMATS.get(name)
    return make() if make is not None else None


def format_names() -> list[str]:
    return sorted(_FORMATS)
