"""The README's examples are true: its topology is the example module, its test snippet runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)


def test_the_readme_topology_is_the_example_module() -> None:
    block = next(b for b in python_blocks() if b.startswith("# topologies/words.py"))
    shown = block.split("\n", 1)[1]
    module = (ROOT / "topologies" / "words.py").read_text()
    assert shown.strip() in module, "README's topology differs from topologies/words.py"


def test_the_readme_driver_example_runs() -> None:
    block = next(b for b in python_blocks() if "TopologyTestDriver" in b)
    exec(compile(block, "README.md", "exec"), {})


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test  #" in readme
    assert "exec ./scripts/test" in ci


def _code_lines(block: str) -> list[str]:
    lines = []
    for line in block.splitlines():
        code = line.split("  #")[0].rstrip()
        if code.strip() and not code.lstrip().startswith("#") and "..." not in code:
            lines.append(code.strip())
    return lines


@pytest.mark.parametrize(
    ("marker", "module"),
    [("topologies/wordcount.py", "wordcount.py"), ("topologies/running_sum.py", "running_sum.py")],
)
def test_abridged_readme_examples_are_lines_of_the_examples(marker: str, module: str) -> None:
    block = next(b for b in python_blocks() if marker in b)
    source = {line.strip() for line in (ROOT / "topologies" / module).read_text().splitlines()}
    missing = [line for line in _code_lines(block) if line not in source]
    assert not missing, f"README lines not in topologies/{module}: {missing}"


def test_the_readme_avro_example_runs_against_a_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Avro example, with an in-memory registry in place of the one at its URL: orders of
    100 or more come out, written with the same schema."""
    import processor
    from processor import serdes
    from processor.testing import TopologyTestDriver
    from processor.testing.schema_registry import MemorySchemaRegistry

    registry = MemorySchemaRegistry()
    urls: list[str] = []

    def at(url: str) -> MemorySchemaRegistry:
        urls.append(url)
        return registry

    monkeypatch.setattr(processor, "SchemaRegistry", at, raising=False)
    block = next(b for b in python_blocks() if "ConfluentAvroSerde" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert urls == ["http://127.0.0.1:8081"]

    order_schema = namespace["ORDER"]
    writer = serdes.ConfluentAvroSerde(registry, "orders-value", schema=order_schema)
    driver = TopologyTestDriver(namespace["orders"])  # type: ignore[arg-type]
    for order in ({"id": 1, "amount": 250.0, "currency": "USD"}, {"id": 2, "amount": 9.5}):
        driver.pipe_bytes("orders", None, writer.serialize({"currency": "EUR", **order}))
    assert driver.read("big-orders") == [(None, {"id": 1, "amount": 250.0, "currency": "USD"})]


def _windowing_blocks() -> list[str]:
    return [b for b in python_blocks() if b.startswith("# windowing:")]


def test_the_readme_has_an_example_per_window_kind() -> None:
    kinds = " ".join(block.splitlines()[0] for block in _windowing_blocks())
    for kind in ("tumbling", "hopping", "sliding", "session"):
        assert kind in kinds, f"README has no windowing example for {kind} windows"


@pytest.mark.parametrize("block", _windowing_blocks(), ids=lambda b: b.splitlines()[0][13:40])
def test_the_readme_windowing_examples_run(block: str) -> None:
    exec(compile(block, "README.md", "exec"), {})


def _timer_blocks() -> list[str]:
    return [b for b in python_blocks() if b.startswith("# timers:")]


def test_the_readme_shows_timers_ticks_expiry_and_failing_firings() -> None:
    shown = "\n".join(_timer_blocks())
    for what in (
        "set_timer(",
        "on_timer=",
        "on_tick=",
        "every_ms=",
        "ttl_ms=",
        "on_expire=",
        ".count(",
        "advance_stream_time(",
        "advance_wall_clock(",
        "driver.timers(",
        "processor.error.timer",
    ):
        assert what in shown, f"README has no timer example using {what}"


@pytest.mark.parametrize("block", _timer_blocks(), ids=lambda b: b.splitlines()[0][10:40])
def test_the_readme_timer_examples_run(block: str) -> None:
    exec(compile(block, "README.md", "exec"), {})


def _table_blocks() -> list[str]:
    return [b for b in python_blocks() if b.startswith("# tables:")]


def test_the_readme_shows_table_operations_regrouping_and_a_table_table_join() -> None:
    shown = "\n".join(_table_blocks())
    for what in (".filter(", ".group_by(", ".count(", ".join(", 'how="outer"', "driver.store("):
        assert what in shown, f"README has no table example using {what}"


@pytest.mark.parametrize("block", _table_blocks(), ids=lambda b: b.splitlines()[0][9:40])
def test_the_readme_table_examples_run(block: str) -> None:
    exec(compile(block, "README.md", "exec"), {})


def _join_blocks() -> list[str]:
    return [b for b in python_blocks() if b.startswith("# joins:")]


def test_the_readme_has_stream_table_join_examples() -> None:
    shown = "\n".join(_join_blocks())
    for what in ('how="left"', "driver.backlog()"):
        assert what in shown, f"README has no join example using {what}"


@pytest.mark.parametrize("block", _join_blocks(), ids=lambda b: b.splitlines()[0][9:40])
def test_the_readme_join_examples_run(block: str) -> None:
    exec(compile(block, "README.md", "exec"), {})


def test_the_readme_global_table_example_runs() -> None:
    [block] = [b for b in python_blocks() if b.startswith("# joins: stream-global table")]
    exec(compile(block, "README.md", "exec"), {})


def test_the_readme_sink_example_runs() -> None:
    block = next(b for b in python_blocks() if "class ListSink" in b)
    exec(compile(block, "README.md", "exec"), {})


def test_the_readme_async_example_runs() -> None:
    [block] = [b for b in python_blocks() if b.startswith("# async:")]
    exec(compile(block, "README.md", "exec"), {})
