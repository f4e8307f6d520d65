"""`load_topology("MODULE[:ATTR]")`: finding the user's topology, and saying clearly why not."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from processor import Topology
from processor.errors import TopologyError, TopologyLoadError
from processor.runtime.loader import load_topology


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _module(directory: Path, source: str, stem: str = "usermod") -> str:
    """Write a throwaway module with a name no other test uses; returns the name."""
    name = f"{stem}_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


ONE_TOPOLOGY = """
    from processor import Topology
    pipeline = Topology("pipeline")
    pipeline.stream("in").to("out")
    not_a_topology = 42
"""

TWO_TOPOLOGIES = """
    from processor import Topology
    first = Topology("first")
    second = Topology("second")
"""


def test_the_only_topology_of_a_module_is_found_without_attr(module_dir: Path) -> None:
    name = _module(module_dir, ONE_TOPOLOGY)
    topology = load_topology(name)
    assert isinstance(topology, Topology)
    assert topology.name == "pipeline"


def test_a_named_attribute_is_loaded(module_dir: Path) -> None:
    name = _module(module_dir, TWO_TOPOLOGIES)
    assert load_topology(f"{name}:second").name == "second"
    assert load_topology(f"{name}:first").name == "first"


def test_a_module_inside_a_package_loads(module_dir: Path) -> None:
    package = f"pkg_{uuid.uuid4().hex[:10]}"
    (module_dir / package).mkdir()
    (module_dir / package / "__init__.py").write_text("")
    (module_dir / package / "flows.py").write_text(textwrap.dedent(ONE_TOPOLOGY))
    assert load_topology(f"{package}.flows").name == "pipeline"


def test_a_misspelled_module_is_named(module_dir: Path) -> None:
    missing = f"no_such_module_{uuid.uuid4().hex[:10]}"
    with pytest.raises(TopologyLoadError) as excinfo:
        load_topology(missing)
    message = str(excinfo.value)
    assert f"cannot find module {missing!r}" in message
    assert "spelling" in message


def test_a_misspelled_submodule_of_an_existing_package_is_named() -> None:
    with pytest.raises(TopologyLoadError, match=r"cannot find module 'topologies\.wrods'"):
        load_topology("topologies.wrods")


def test_a_misspelled_package_is_named() -> None:
    with pytest.raises(TopologyLoadError, match=r"cannot find module 'topologie'"):
        load_topology("topologie.words")


def test_a_missing_attribute_is_named_and_the_topologies_listed(module_dir: Path) -> None:
    name = _module(module_dir, TWO_TOPOLOGIES)
    with pytest.raises(TopologyLoadError) as excinfo:
        load_topology(f"{name}:thrid")
    message = str(excinfo.value)
    assert "'thrid'" in message
    assert repr(name) in message
    assert "first, second" in message


def test_a_missing_attribute_in_a_module_without_topologies_says_none(module_dir: Path) -> None:
    name = _module(module_dir, "x = 1\n")
    with pytest.raises(TopologyLoadError, match=r"'topology'.*none"):
        load_topology(f"{name}:topology")


def test_an_attribute_that_is_not_a_topology_is_rejected(module_dir: Path) -> None:
    name = _module(module_dir, ONE_TOPOLOGY)
    with pytest.raises(TopologyLoadError) as excinfo:
        load_topology(f"{name}:not_a_topology")
    assert "int" in str(excinfo.value)
    assert "not a processor.Topology" in str(excinfo.value)


def test_a_module_without_topologies_and_no_attr_is_a_clear_error(module_dir: Path) -> None:
    name = _module(module_dir, "VALUE = 1\n")
    with pytest.raises(TopologyLoadError) as excinfo:
        load_topology(name)
    message = str(excinfo.value)
    assert f"module {name!r} defines 0 topologies" in message
    assert f"{name}:ATTR" in message


def test_a_module_with_two_topologies_and_no_attr_lists_them(module_dir: Path) -> None:
    name = _module(module_dir, TWO_TOPOLOGIES)
    with pytest.raises(TopologyLoadError) as excinfo:
        load_topology(name)
    message = str(excinfo.value)
    assert "defines 2 topologies (first, second)" in message
    assert f"{name}:ATTR" in message


def test_a_missing_inner_import_names_the_missing_dependency(module_dir: Path) -> None:
    dependency = f"absent_dependency_{uuid.uuid4().hex[:10]}"
    name = _module(module_dir, f"import {dependency}\n")
    with pytest.raises(TopologyLoadError) as excinfo:
        load_topology(name)
    message = str(excinfo.value)
    assert f"module {name!r} failed to import" in message
    assert dependency in message
    # not mistaken for the user's module being absent
    assert "cannot find module" not in message


def test_a_missing_inner_import_that_shares_the_module_prefix_is_not_misreported(
    module_dir: Path,
) -> None:
    stem = f"app_{uuid.uuid4().hex[:10]}"
    (module_dir / f"{stem}.py").write_text(f"import {stem}_helpers\n")
    with pytest.raises(TopologyLoadError) as excinfo:
        load_topology(stem)
    assert "failed to import" in str(excinfo.value)
    assert f"{stem}_helpers" in str(excinfo.value)


def test_an_empty_spec_is_rejected_with_an_example() -> None:
    with pytest.raises(TopologyLoadError, match=r"names no module.*MODULE"):
        load_topology(":topology")


def test_topology_load_error_is_a_topology_error() -> None:
    # the CLI reports every TopologyError as one line with exit code 2
    assert issubclass(TopologyLoadError, TopologyError)


def test_the_words_example_loads() -> None:
    topology = load_topology("topologies.words")
    assert isinstance(topology, Topology)
    assert topology.subtopologies()
    assert load_topology(f"topologies.words:{_attr_of_words()}") is topology


def _attr_of_words() -> str:
    import topologies.words as words

    [attr] = [n for n, v in vars(words).items() if isinstance(v, Topology)]
    return attr


def test_a_module_that_raises_while_importing_is_one_clear_error(module_dir: Path) -> None:
    name = _module(module_dir, "from processor import Topology\nraise RuntimeError('bad config')\n")
    with pytest.raises(
        TopologyLoadError,
        match=rf"module '{name}' failed to import: "
        r"RuntimeError: bad config",
    ):
        load_topology(name)
