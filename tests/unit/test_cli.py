"""The `processor` command's user-facing behaviour that needs no broker."""

from __future__ import annotations

import argparse
from enum import Enum
from importlib import metadata
from pathlib import Path

import pytest

from processor import config
from processor.cli import _parser, main
from processor.cli.run import _without_options

pytestmark = pytest.mark.usefixtures("cli_environment")


def test_describe_prints_the_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "topologies.words"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Topology: words\n")
    assert "Sub-topology 0" in out
    assert "Source: " in out and "(topic: sentences, key: string, value: string)" in out
    assert "Processor: " in out and "(filter)" in out and "(flat_map)" in out
    assert "Sink: " in out and "(topic: words," in out


def test_describe_of_a_missing_module_is_one_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["describe", "topologies.nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "'topologies.nope'" in captured.err


def test_run_of_a_missing_module_is_one_line_naming_it_and_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "topologies.nope", "--bootstrap-servers", "x:1"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("processor: ")
    assert "'topologies.nope'" in lines[0]
    assert "Traceback" not in captured.err


def test_run_of_a_topology_that_reads_nothing_says_so_in_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty_pipeline.py").write_text(
        "from processor import Topology\n\npipeline = Topology('empty')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "empty_pipeline", "--bootstrap-servers", "x:1"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "processor: topology error: topology 'empty' reads nothing: add a stream(), table(), "
        "global_table() or a source to it (was it built in a function that was not called?)"
    ]


def test_run_without_bootstrap_servers_names_the_setting_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROCESSOR_BOOTSTRAP_SERVERS", raising=False)
    assert main(["run", "topologies.words"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "configuration error" in lines[0]
    assert "bootstrap_servers" in lines[0]
    assert "--bootstrap-servers" in lines[0]


def test_run_with_a_misspelled_environment_variable_names_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCESSOR_BOOTSTRAP_SERVER", "x:1")
    assert main(["run", "topologies.words"]) == 2
    err = capsys.readouterr().err
    assert "PROCESSOR_BOOTSTRAP_SERVER" in err
    assert "not a setting" in err


def test_run_accepts_the_log_level_variable_it_documents(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # PROCESSOR_LOG_LEVEL is read by the CLI itself, so it must not count as a typo; the run
    # then stops at the next problem, the missing bootstrap servers.
    monkeypatch.setenv("PROCESSOR_LOG_LEVEL", "WARNING")
    assert main(["run", "topologies.words"]) == 2
    err = capsys.readouterr().err
    assert "PROCESSOR_LOG_LEVEL" not in err
    assert "bootstrap_servers" in err


def test_run_with_a_bad_setting_value_names_the_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["run", "topologies.words", "--bootstrap-servers", "x:1", "--commit-interval-ms", "abc"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "commit_interval_ms" in err and "'abc'" in err


def test_run_refuses_zero_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "topologies.words", "--bootstrap-servers", "x:1", "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


def test_a_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main([])
    assert excinfo.value.code == 2
    assert "usage:" in capsys.readouterr().err


# --- _without_options: the argv a supervisor hands its child workers ------------------------


def test_without_options_drops_separate_and_joined_values() -> None:
    argv = [
        "run",
        "topologies.words",
        "--workers",
        "3",
        "--state-dir=/var/state",
        "--instance-id",
        "box-1",
        "--bootstrap-servers",
        "h:1",
        "--kafka",
        "session.timeout.ms=6000",
    ]
    assert _without_options(argv, {"--workers", "--state-dir", "--instance-id"}) == [
        "run",
        "topologies.words",
        "--bootstrap-servers",
        "h:1",
        "--kafka",
        "session.timeout.ms=6000",
    ]


def test_without_options_keeps_other_options_with_similar_names() -> None:
    argv = ["run", "m", "--workers-extra", "x", "--kafka=workers=2"]
    assert _without_options(argv, {"--workers"}) == argv


def test_without_options_drops_every_occurrence() -> None:
    argv = ["run", "m", "--workers", "2", "--workers=4", "--log-level", "DEBUG"]
    assert _without_options(argv, {"--workers"}) == ["run", "m", "--log-level", "DEBUG"]


def test_without_options_leaves_the_input_alone_and_handles_a_trailing_option() -> None:
    argv = ["run", "m", "--workers"]
    assert _without_options(argv, {"--workers"}) == ["run", "m"]
    assert argv == ["run", "m", "--workers"]


def test_without_options_with_nothing_to_drop_is_the_identity() -> None:
    argv = ["run", "m", "--bootstrap-servers", "h:1"]
    assert _without_options(argv, set()) == argv


def test_abbreviated_options_are_refused_so_workers_cannot_multiply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "topologies.words", "--worker", "3"])
    assert exit_info.value.code == 2
    assert "--worker" in capsys.readouterr().err


def test_run_refuses_the_replaced_store_cache_size_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["run", "topologies.words", "--bootstrap-servers", "x:1", "--store-cache-size", "10"]
    assert main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "store_cache_size" in lines[0]
    assert "replaced by store_cache_bytes" in lines[0]
    assert "--store-cache-bytes" in lines[0]


def test_run_help_documents_the_store_cache_budget_and_hides_the_old_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--store-cache-bytes" in out and "64MiB" in out
    assert "--store-cache-size" not in out


# --- help and version -------------------------------------------------------------------------


def _command_parser(name: str) -> argparse.ArgumentParser:
    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


@pytest.mark.parametrize("command", ["run", "query", "describe"])
def test_every_option_says_what_it_does_and_its_default(command: str) -> None:
    options = [
        action
        for action in _command_parser(command)._actions
        if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help"
    ]
    undocumented = [a.option_strings[0] for a in options if "default: " not in (a.help or "")]
    assert not undocumented, f"processor {command}: options that name no default: {undocumented}"
    if command == "run":
        assert len(options) > len(config.SETTINGS), "every setting is an option of run"


def test_run_help_names_the_defaults_the_worker_uses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    defaults = config.WorkerConfig(bootstrap_servers="x:1", application_id="a")
    for setting in config.SETTINGS:
        value = getattr(defaults, setting)
        if isinstance(value, bool | int | float | Enum) and setting != "store_cache_bytes":
            shown = ("on" if value else "off") if isinstance(value, bool) else value
            shown = shown.value if isinstance(shown, Enum) else shown
            flag = "--" + setting.replace("_", "-")
            documented = out.split(flag, 2)[2].split(" --")[0]  # its help, after the usage
            assert f"(default: {shown}; PROCESSOR_{setting.upper()})" in documented, flag


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"processor {metadata.version('processor')}\n"
