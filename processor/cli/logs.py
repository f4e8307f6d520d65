"""How the `processor` command logs: `--log-level`, and `--log-format text|json`.

`text` is for people: one line per record, its fields in the message. `json` is for log
shippers: one JSON object per line with `time` (ISO 8601, UTC), `level`, `logger`, `message`,
`pid`, `thread`, the record's structured fields (`extra=`; lifecycle lines carry `tasks`, the
task ids they are about) and `exception` when there is one.

Child workers of `processor run --workers N` get the parent's arguments and environment, so they
log in the same format.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from processor.errors import ConfigError

__all__ = ["FORMATS", "JsonFormatter", "add_options", "configure"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"
LEVEL_VARIABLE = "PROCESSOR_LOG_LEVEL"
FORMAT_VARIABLE = "PROCESSOR_LOG_FORMAT"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            "thread": record.threadName,
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: task ids, paths and enums as their text; nothing makes a line unloggable.
        return json.dumps(entry, default=_as_text, ensure_ascii=False)


def _as_text(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(str(item) for item in value)
    return str(value)


def add_options(parser: argparse._ActionsContainer, *, default_level: str) -> None:
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=os.environ.get(LEVEL_VARIABLE, default_level),
        help=f"DEBUG, INFO, WARNING or ERROR (default: {default_level}; {LEVEL_VARIABLE})",
    )
    parser.add_argument(
        "--log-format",
        metavar="FORMAT",
        default=os.environ.get(FORMAT_VARIABLE, "text"),
        help="text, or json for log shippers: one JSON object per line "
        f"(default: text; {FORMAT_VARIABLE})",
    )


def configure(args: argparse.Namespace) -> None:
    """Log to stderr at the level and in the format `args` (or their defaults) give."""
    level = getattr(args, "log_level", "INFO").upper()
    log_format = getattr(args, "log_format", "text").strip().lower()
    if log_format not in FORMATS:
        raise ConfigError("log_format", f"{log_format!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError("log_level", f"{level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
