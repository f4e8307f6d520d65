"""`--log-format json`: what a log shipper reads, one JSON object per line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from processor.cli import logs, main
from processor.ids import TaskId, tasks_field

pytestmark = pytest.mark.usefixtures("cli_environment")


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("processor.worker").makeRecord(
        "processor.worker", logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    return record


def test_a_line_has_time_level_logger_message_pid_and_the_task_ids() -> None:
    tasks = [TaskId(1, 0), TaskId(0, 2)]
    line = logs.JsonFormatter().format(
        _record("worker %s: active tasks [%s]", "w1", "0_2, 1_0", **tasks_field(tasks))
    )
    entry = json.loads(line)
    assert entry["message"] == "worker w1: active tasks [0_2, 1_0]"
    assert entry["tasks"] == ["0_2", "1_0"]
    assert entry["level"] == "INFO"
    assert entry["logger"] == "processor.worker"
    assert entry["pid"] == os.getpid()
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]


def test_newlines_and_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record("two\nlines")
        record.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines"
    assert "ValueError: bad" in entry["exception"] and "Traceback" in entry["exception"]


def test_fields_json_cannot_hold_are_written_as_text() -> None:
    line = logs.JsonFormatter().format(
        _record("x", path=Path("/var/lib/processor"), ids={TaskId(0, 1), TaskId(0, 0)})
    )
    entry = json.loads(line)
    assert entry["path"] == "/var/lib/processor"
    assert entry["ids"] == ["0_0", "0_1"]


def test_the_format_comes_from_the_variable_and_a_wrong_one_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCESSOR_LOG_FORMAT", "xml")
    assert main(["run", "topologies.words", "--bootstrap-servers", "x:1"]) == 2
    err = capsys.readouterr().err
    assert "log_format" in err and "'xml'" in err and "json" in err


def test_json_format_from_the_variable_logs_json_and_is_not_taken_for_a_typo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCESSOR_LOG_FORMAT", "json")
    # main() configures logging where nothing has (logging.basicConfig), as in a fresh process:
    # pytest's capturing handlers are set aside (the fixture puts the root logger back).
    logging.getLogger().handlers[:] = []
    # Stops at the missing bootstrap servers: PROCESSOR_LOG_FORMAT is not an unknown setting.
    assert main(["run", "topologies.words"]) == 2
    assert "bootstrap_servers" in capsys.readouterr().err
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, logs.JsonFormatter)
