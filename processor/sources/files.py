"""`FileSource`: records from the lines of files matching a glob pattern (CSV or JSON lines).

Which files, in which order: every regular file matching the pattern (`**` matches
directories recursively), oldest modification time first, then by path. The pattern is looked
up again whenever everything found so far has been read, so new files are picked up on later
polls. The source runs on one worker at a time, and moves between workers on failover: the
files must be on a volume every worker sees at the same path.

A file is identified by its path, size and modification time (`mtime_ns`). Files are meant to
be complete when they appear (write them elsewhere and rename them in: a rename is atomic). The
rule for a file whose identity changed after it was (partly) read:

- it is now shorter than where reading stopped: it was replaced or truncated, and is read
  again from its start;
- otherwise it grew (or was only touched), and reading goes on from where it stopped, so
  appending whole lines to a file is safe. A different file renamed over an old one with the
  same name and at least its length is taken as growth: give new files new names.

A last line without a line ending is read only once the file has not changed between two
looks at the directory (one poll interval apart), as the writer may not have finished it; a
CSV record whose quoted field is still open at the end of the file waits the same way.

Records: JSON lines give the parsed value; CSV gives a dict of the header's columns to strings
(the header is the first non-blank line). Blank lines are skipped. A line that cannot be parsed
(bad JSON, a CSV row with the wrong number of fields, bytes that are not valid in `encoding`)
becomes an item whose value is a `BadLine(path, line, raw, problem)` for the runtime's
dead-letter handling; reading goes on. Every item has the headers `processor.source.file` (the
path) and `processor.source.line` (1-based line number; a CSV header is line 1, a record whose
quoted field spans lines has the number of its first line).

Position: `{"files": {path: [size, mtime_ns, offset, line]}, "reading": [path, size, mtime_ns,
offset, line]}`: for every file seen, the identity it had when last read, the byte offset
reading stopped at and the number of the last line read, so resuming seeks straight there.
"reading" is the file being read (it wins over its entry in "files"). An entry is forgotten
once its file no longer matches the pattern while the pattern's root directory (its leading
part without wildcards) exists, so an unmounted volume forgets nothing: move or delete
finished files to keep the position small; each file left in place
costs one entry (its path and four numbers). A file that reappears after its entry was
forgotten is read as a new file, from its start; one that reappears while its entry is still
kept follows the rule above (the same identity: nothing more to read).
"""

from __future__ import annotations

import codecs
import glob
import itertools
import os
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from processor.sources.base import BadLine, Position, Source, SourceError, SourceItem, SourceReader
from processor.sources.file_formats import FileFormat, LineProblem, format_named

__all__ = ["FILE_HEADER", "LINE_HEADER", "FileSource"]

FILE_HEADER = "processor.source.file"
LINE_HEADER = "processor.source.line"
_UTF8_BOM = codecs.BOM_UTF8

Identity = tuple[int, int]
"""(size, mtime_ns)"""


class FileSource(Source):
    """Records from files matching `pattern` (e.g. "/data/incoming/*.csv").

    `format`: "csv" (a dict per row, keyed by the header's columns) or "jsonl" (the parsed
    value of each line). `encoding`: of the files' text; it must keep ASCII bytes as they are
    (utf-8, latin-1, cp1252, ...). `key`: the record key from the value (default: none).
    `poll_interval_ms`: how long to wait before looking for new files when all are read.
    """

    def __init__(
        self,
        pattern: str,
        *,
        format: Literal["csv", "jsonl"] = "csv",
        key: Callable[[Any], Any] | None = None,
        name: str = "",
        poll_interval_ms: int = 1_000,
        encoding: str = "utf-8",
    ) -> None:
        self.pattern = pattern
        self.format = format
        self.key = key
        self.name = name
        self.poll_interval_ms = poll_interval_ms
        self.encoding = encoding
        label = name or pattern
        if format not in ("csv", "jsonl"):
            raise SourceError(label, f"format={format!r} is not known: use 'csv' or 'jsonl'")
        try:
            ascii_kept = '\n\r",'.encode(encoding) == b'\n\r",'
        except LookupError:
            raise SourceError(label, f"encoding={encoding!r} is not a known codec") from None
        if not ascii_kept:
            raise SourceError(
                label,
                f"encoding={encoding!r} does not keep ASCII bytes as they are (lines are split "
                "at b'\\n'): convert the files to utf-8",
            )

    def reader(self) -> SourceReader:
        return FileReader(self)

    def describe(self) -> str:
        return f"FileSource({self.pattern!r}, format={self.format})"


@dataclass
class _OpenFile:
    """A file being read: where reading stopped (`offset`, and `line`, the last line read)."""

    path: str
    handle: BinaryIO
    size: int
    mtime_ns: int
    offset: int
    line: int
    settled: bool
    """The file did not change between the last two scans: a last line without a line ending
    is complete."""
    parser: FileFormat
    path_header: bytes
    exhausted: bool = False


class FileReader(SourceReader):
    """Reads a `FileSource` (see the module docstring for the rules)."""

    def __init__(self, source: FileSource) -> None:
        self._source = source
        self._label = source.name or source.pattern
        self._strip_bom = codecs.lookup(source.encoding).name == "utf-8"
        self._root = _pattern_root(source.pattern)
        # Never changed in place once an item's position refers to it: replaced instead.
        self._files: dict[str, list[int]] = {}
        self._queue: deque[str] = deque()
        self._previous_scan: dict[str, Identity] = {}
        self._scan: dict[str, Identity] = {}
        self._current: _OpenFile | None = None

    def open(self, position: Position | None) -> None:
        self.close()
        self._files = _files_from(position, self._label) if position else {}
        self._queue.clear()

    def poll(self, max_records: int) -> list[SourceItem]:
        items: list[SourceItem] = []
        scanned = False
        while len(items) < max_records:
            if self._current is not None:
                items.extend(self._read(self._current, max_records - len(items)))
                if self._current.exhausted:
                    self._finish(self._current)
            elif self._queue:
                self._current = self._open_file(self._queue.popleft())
            elif not scanned:
                self._look_for_files()
                scanned = True
            else:
                break
        return items

    def close(self) -> None:
        if self._current is not None:
            self._current.handle.close()
            self._current = None

    # --- which files

    def _look_for_files(self) -> None:
        found: dict[str, Identity] = {}
        for path in glob.glob(self._source.pattern, recursive=True):
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone since the directory was listed
            if stat.S_ISREG(st.st_mode):
                found[path] = (st.st_size, st.st_mtime_ns)
        self._previous_scan, self._scan = self._scan, found
        # An unmounted volume lists as empty: forget nothing unless the pattern's root is there.
        gone = [p for p in self._files if p not in found] if os.path.isdir(self._root) else []
        if gone:
            self._files = {p: e for p, e in self._files.items() if p not in gone}
        pending = [(mtime, path) for path, (size, mtime) in found.items() if self._unread(path)]
        self._queue.extend(path for _, path in sorted(pending))

    def _unread(self, path: str) -> bool:
        entry = self._files.get(path)
        if entry is None:
            return True
        size, mtime_ns, offset, _ = entry
        return (size, mtime_ns) != self._scan[path] or offset < size

    def _open_file(self, path: str) -> _OpenFile | None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open across polls, closed in _finish
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SourceError(
                self._label,
                f"cannot read {path}: {e.strerror}; make it readable by the worker's user or "
                f"move it out of {self._source.pattern!r}",
            ) from e
        st = os.fstat(handle.fileno())
        identity = (st.st_size, st.st_mtime_ns)
        entry = self._files.get(path)
        offset, line = (entry[2], entry[3]) if entry and st.st_size >= entry[2] else (0, 0)
        f = _OpenFile(
            path=path,
            handle=handle,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            offset=offset,
            line=line,
            settled=self._previous_scan.get(path) == identity == self._scan.get(path),
            parser=format_named(self._source.format),
            path_header=path.encode("utf-8", "surrogateescape"),
        )
        if f.parser.has_header:
            self._read_header(f)
        f.handle.seek(f.offset)
        return f

    def _finish(self, f: _OpenFile) -> None:
        f.handle.close()
        self._current = None
        self._files = {**self._files, f.path: [f.size, f.mtime_ns, f.offset, f.line]}

    # --- lines

    def _read_header(self, f: _OpenFile) -> None:
        """Give the parser the file's header: read it (reading starts after it) or, when
        resuming further on, read it again and go back to where reading stopped."""
        resume = (f.offset, f.line, f.settled)
        if f.offset > 0:
            f.offset, f.line, f.settled = 0, 0, True
            f.handle.seek(0)
        record = self._next_record(f)
        if record is None:
            f.exhausted = True
        else:
            body, line = record
            f.parser.set_header(self._decode(body), line)
        if resume[0] > 0:
            f.offset, f.line, f.settled = resume

    def _read(self, f: _OpenFile, limit: int) -> list[SourceItem]:
        items: list[SourceItem] = []
        while not f.exhausted and len(items) < limit:
            record = self._next_record(f)
            if record is None:
                f.exhausted = True
                break
            body, line = record
            text = self._decode(body)
            value = f.parser.parse(text) if isinstance(text, str) else text
            if isinstance(value, LineProblem):
                value = BadLine(f.path, line, body, value.problem)
            items.append(
                SourceItem(
                    value=value,
                    headers=((FILE_HEADER, f.path_header), (LINE_HEADER, b"%d" % line)),
                    position={
                        "files": self._files,
                        "reading": [f.path, f.size, f.mtime_ns, f.offset, f.line],
                    },
                )
            )
        return items

    def _next_record(self, f: _OpenFile) -> tuple[bytes, int] | None:
        """The next non-blank record (its bytes without the line ending, its first line's
        number), reading on from `f.offset`; None when nothing complete is left now."""
        while True:
            raw = f.handle.readline()
            if not raw:
                return None
            lines = 1
            while f.parser.continues(raw) and (more := f.handle.readline()):
                raw += more
                lines += 1
            unfinished = not raw.endswith(b"\n") or f.parser.continues(raw)
            if unfinished and not f.settled:
                f.handle.seek(f.offset)  # the writer may still be writing it
                return None
            first_line = f.line + 1
            at_start = f.offset == 0
            f.offset += len(raw)
            f.line += lines
            body = raw.rstrip(b"\r\n")
            if at_start and self._strip_bom and body.startswith(_UTF8_BOM):
                body = body[len(_UTF8_BOM) :]
            if body.strip():
                return body, first_line

    def _decode(self, body: bytes) -> str | LineProblem:
        try:
            return body.decode(self._source.encoding)
        except UnicodeDecodeError as e:
            return LineProblem(f"not valid {self._source.encoding}: {e.reason} at byte {e.start}")


def _pattern_root(pattern: str) -> str:
    """The directory a glob pattern starts from: its leading path without wildcards."""
    parts = pattern.split(os.sep)
    fixed = list(itertools.takewhile(lambda p: not glob.has_magic(p), parts[:-1]))
    return os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else ".")


def _files_from(position: Position, label: str) -> dict[str, list[int]]:
    """The per-file entries of a recorded position ("reading" folded in)."""
    try:
        files = {str(p): [int(n) for n in e] for p, e in position.get("files", {}).items()}
        reading = position.get("reading")
        if reading:
            files[str(reading[0])] = [int(n) for n in reading[1:]]
        if any(len(e) != 4 for e in files.values()):
            raise ValueError("an entry is not [size, mtime_ns, offset, line]")
    except (AttributeError, TypeError, ValueError, IndexError) as e:
        raise SourceError(
            label,
            f"the recorded position is not a file source's position ({e}): was the source's "
            "name reused for another kind of source? Give this source a new name to start over",
        ) from e
    return files
