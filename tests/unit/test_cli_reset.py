"""`processor reset` as a user meets it, without a broker: its flags, its time argument, and
the question it asks before clearing what sinks keep outside Kafka."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from processor.cli import _parser, main
from processor.cli import reset as reset_command
from processor.runtime import reset as reset_runtime
from processor.runtime.reset_plan import ResetPlan

pytestmark = pytest.mark.usefixtures("cli_environment")


class _Progress:
    def __init__(self) -> None:
        self.cleared = False

    def describe(self) -> str:
        return "the rows of application 'words' in table processor_sink_offsets"

    def clear(self) -> str:
        self.cleared = True
        return "cleared them"


@pytest.fixture
def progress(monkeypatch: pytest.MonkeyPatch) -> _Progress:
    """A reset whose broker side is replaced: no worker running, a plan clearing one sink's
    progress; `execute` clears it."""
    sink = _Progress()
    plan = ResetPlan("words", None, (), (), False, (), (), (sink,))
    monkeypatch.setattr(reset_runtime, "make_admin", lambda request: object())
    monkeypatch.setattr(reset_runtime, "refuse_if_running", lambda admin, request: None)
    monkeypatch.setattr(reset_runtime, "read_plan", lambda admin, request: plan)
    monkeypatch.setattr(
        reset_runtime, "execute", lambda admin, plan, report: [s.clear() for s in plan.sinks]
    )
    return sink


def _run(*flags: str, ask: Callable[[str], str], interactive: bool) -> int:
    args = _parser().parse_args(["reset", "topologies.words", "--bootstrap-servers", "x:1", *flags])
    return reset_command.execute(args, ask=ask, interactive=lambda: interactive)


def _never(question: str) -> str:
    raise AssertionError(f"asked {question!r}")


def test_without_a_terminal_or_yes_it_refuses_saying_why(
    progress: _Progress, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(ask=_never, interactive=False) == 2
    err = capsys.readouterr().err
    assert "processor_sink_offsets" in err and "--yes" in err and "nothing was changed" in err
    assert not progress.cleared


def test_on_a_terminal_it_asks_naming_what_is_cleared_and_a_no_changes_nothing(
    progress: _Progress,
) -> None:
    questions: list[str] = []
    assert _run(ask=lambda q: questions.append(q) or "n", interactive=True) == 2
    assert "processor_sink_offsets" in questions[0]
    assert not progress.cleared
    assert _run(ask=lambda q: "y", interactive=True) == 0
    assert progress.cleared


def test_yes_clears_without_asking(progress: _Progress) -> None:
    assert _run("--yes", ask=_never, interactive=False) == 0
    assert progress.cleared


def test_a_dry_run_asks_nothing_and_clears_nothing(
    progress: _Progress, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("--dry-run", ask=_never, interactive=False) == 0
    out = capsys.readouterr().out
    assert "would clear the rows of application 'words'" in out
    assert not progress.cleared


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2026-12-01T10:00:00", "has no time zone"), ("yesterday", "is not an ISO 8601 time")],
)
def test_a_time_without_zone_or_unreadable_is_refused_with_exit_code_2(
    text: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reset", "topologies.words", "--bootstrap-servers", "x:1", "--to-datetime", text]
    assert main(argv) == 2
    assert problem in capsys.readouterr().err


def test_a_time_with_a_zone_is_read_as_that_instant() -> None:
    assert reset_command._time_ms("2026-12-01T10:00:00Z") == 1_796_119_200_000
    assert reset_command._time_ms("2026-12-01T11:00:00+01:00") == 1_796_119_200_000


def test_every_flag_says_its_default() -> None:
    commands = next(a for a in _parser()._actions if a.dest == "command")
    reset = commands.choices["reset"]  # type: ignore[index]
    for action in reset._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or ""), action.option_strings


def test_state_dirs_are_repeatable() -> None:
    args = _parser().parse_args(
        ["reset", "t", "--state-dir", "/a", "--state-dir", "/b", "--bootstrap-servers", "x:1"]
    )
    assert args.state_dirs == [Path("/a"), Path("/b")]
