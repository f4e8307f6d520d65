"""Where a file sink task's files live and what their names say.

A published file is named `<sink>-<topic>-<partition>-<first>-<next>.<ext>`: the offsets are
the range `[first, next)` of the task's partition the file holds, zero-padded to 20 digits so
that names sort by offset. A file being written is named `.<sink>-<topic>-<partition>-<first>
.<ext>.tmp-<random>` in the same directory (hidden, and renamed or linked within one directory,
which is atomic). With `path_by="date"` the files of a UTC day live in a subdirectory
`YYYY-MM-DD` of the sink's directory.

The names are parsed strictly (20 digits, the format's extension), so a task never takes
another partition's files for its own. Two sinks writing into one directory should not have
names such that `<sink>-<topic>` reads the same for both (sink `a` on topic `b-c` and sink `a-b`
on topic `c`): give each sink its own directory.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["PublishedFile", "SinkFiles", "TaskFiles", "fsync_directory"]

_OFFSET_DIGITS = 20
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, order=True)
class PublishedFile:
    """A published file and the offset range `[first, next)` it holds."""

    first: int
    next: int
    path: Path


def fsync_directory(directory: Path) -> None:
    """Make the entries of `directory` (a file published or deleted in it) survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class TaskFiles:
    """The names of one sink task's files in `directory` (`by_date`: in day subdirectories)."""

    directory: Path
    sink: str
    topic: str
    partition: int
    extension: str
    by_date: bool = False

    @property
    def _prefix(self) -> str:
        return f"{self.sink}-{self.topic}-{self.partition}-"

    def folder(self, day: str | None) -> Path:
        """The directory a file of `day` (`YYYY-MM-DD`, or None without `path_by`) goes to."""
        return self.directory / day if day is not None else self.directory

    def temporary_path(self, first: int, day: str | None) -> Path:
        """A fresh, unguessable temporary name for a file starting at offset `first`."""
        name = f".{self._prefix}{first:0{_OFFSET_DIGITS}d}.{self.extension}.tmp-"
        return self.folder(day) / f"{name}{secrets.token_hex(8)}"

    def final_path(self, first: int, next_offset: int, day: str | None) -> Path:
        """The published name of a file holding `[first, next_offset)`."""
        name = f"{self._prefix}{first:0{_OFFSET_DIGITS}d}-{next_offset:0{_OFFSET_DIGITS}d}"
        return self.folder(day) / f"{name}.{self.extension}"

    def published(self) -> list[PublishedFile]:
        """This task's published files, in offset order."""
        found = []
        pattern = re.compile(
            re.escape(self._prefix)
            + rf"(\d{{{_OFFSET_DIGITS}}})-(\d{{{_OFFSET_DIGITS}}})\.{re.escape(self.extension)}"
        )
        for folder in self._folders():
            for name in _names_in(folder):
                match = pattern.fullmatch(name)
                if match:
                    found.append(PublishedFile(int(match[1]), int(match[2]), folder / name))
        return sorted(found)

    def max_next_offset(self) -> int | None:
        """The largest next offset among this task's published files (None: none published)."""
        return max((f.next for f in self.published()), default=None)

    def temporary(self) -> list[Path]:
        """This task's temporary files (a crashed writer's leftovers, or a live writer's)."""
        pattern = re.compile(
            re.escape(f".{self._prefix}")
            + rf"\d{{{_OFFSET_DIGITS}}}\.{re.escape(self.extension)}\.tmp-[0-9a-f]+"
        )
        return sorted(
            folder / name
            for folder in self._folders()
            for name in _names_in(folder)
            if pattern.fullmatch(name)
        )

    def _folders(self) -> list[Path]:
        return _folders(self.directory, self.by_date)


@dataclass(frozen=True)
class SinkFiles:
    """Every file one sink wrote from `topic` (all partitions, published and temporary): both
    its output and its progress, since the names say up to which offset each task wrote. For
    `processor reset` (`processor.sinks.base.SinkProgress`), `clear()` moves them out of the
    sink's sight, into a new hidden directory `.reset-<UTC time>` of `directory`: the next
    run writes from offset 0 again, and the old files are kept for the user to delete."""

    directory: Path
    sink: str
    topic: str
    extension: str
    by_date: bool = False

    def describe(self) -> str:
        return (
            f"the files sink {self.sink!r} wrote from {self.topic} in {self.directory} (their "
            "names are its progress; moved into a new directory .reset-<UTC time> there)"
        )

    def files(self) -> list[Path]:
        prefix = re.escape(f"{self.sink}-{self.topic}-") + r"\d+-"
        extension = re.escape(self.extension)
        published = re.compile(
            prefix + rf"\d{{{_OFFSET_DIGITS}}}-\d{{{_OFFSET_DIGITS}}}\.{extension}"
        )
        temporary = re.compile(
            r"\." + prefix + rf"\d{{{_OFFSET_DIGITS}}}\.{extension}\.tmp-[0-9a-f]+"
        )
        return sorted(
            folder / name
            for folder in self._folders()
            for name in _names_in(folder)
            if published.fullmatch(name) or temporary.fullmatch(name)
        )

    def clear(self, now: datetime | None = None) -> str:
        files = self.files()
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.directory / f".reset-{stamp}"
        for path in files:
            moved = target / path.relative_to(self.directory)
            moved.parent.mkdir(parents=True, exist_ok=True)
            path.rename(moved)
        if files:
            fsync_directory(self.directory)
        return f"moved {len(files)} files sink {self.sink!r} wrote from {self.topic} into {target}"

    def _folders(self) -> list[Path]:
        return _folders(self.directory, self.by_date)


def _folders(directory: Path, by_date: bool) -> list[Path]:
    if not by_date:
        return [directory]
    return [directory / name for name in _names_in(directory) if _DAY.fullmatch(name)]


def _names_in(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
