"""`processor run` in a terminal: restoring tasks as progress lines below the log
(`processor.cli.restore_progress`)."""

from __future__ import annotations

import io
import logging

from processor.cli.restore_progress import ProgressConsole, progress_lines
from processor.metrics import RestoreSample, WorkerSnapshot


def test_one_line_per_restoring_task() -> None:
    snapshot = WorkerSnapshot(
        processed={"0_0": 1, "0_1": 0},
        restores=(
            RestoreSample("0_1", standby=False, records=2_500, remaining=7_500, rate=1_250.0),
            RestoreSample("0_2", standby=True, records=10, remaining=0, rate=1.0),
        ),
    )
    assert progress_lines(snapshot) == [
        "restoring 0_1  [#####               ] 2,500/10,000 1,250/s 6s left"
    ]


def test_log_lines_go_above_the_progress_lines_which_are_redrawn_in_place() -> None:
    stream = io.StringIO()
    console = ProgressConsole(stream)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.restore_progress")
    logger.addHandler(console)
    logger.propagate = False
    try:
        console.show(["restoring 0_1 10%", "restoring 0_2 20%"])
        logger.warning("a log line")
        console.show(["restoring 0_1 50%"])
        console.show([])
    finally:
        logger.removeHandler(console)
    up_two, up_one = "\x1b[2F\x1b[J", "\x1b[1F\x1b[J"
    assert stream.getvalue() == (
        "restoring 0_1 10%\nrestoring 0_2 20%\n"
        + up_two
        + "a log line\nrestoring 0_1 10%\nrestoring 0_2 20%\n"
        + up_two
        + "restoring 0_1 50%\n"
        + up_one
    )
