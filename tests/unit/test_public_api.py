"""The names users import from `processor` and its public subpackages."""

from __future__ import annotations

import importlib

import pytest

import processor


def test_top_level_all_is_exactly_the_documented_surface() -> None:
    assert sorted(processor.__all__) == [
        "ErrorHandler",
        "GlobalTable",
        "GroupedStream",
        "GroupedTable",
        "ProcessorContext",
        "ProcessorError",
        "RestoreListener",
        "Retry",
        "SchemaRegistry",
        "Stream",
        "Table",
        "Topology",
        "TransientError",
        "serdes",
    ]


def test_top_level_names_resolve_to_the_real_objects() -> None:
    from processor.dsl.stream import Stream
    from processor.dsl.topology import Topology
    from processor.errors import ProcessorError

    assert processor.Topology is Topology
    assert processor.Stream is Stream
    assert processor.ProcessorError is ProcessorError
    assert processor.serdes is importlib.import_module("processor.serdes")
    from processor.kafka.schema_registry import SchemaRegistry

    assert processor.SchemaRegistry is SchemaRegistry


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from processor import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(processor.__all__)


@pytest.mark.parametrize(
    ("module_name", "expected"),
    [
        (
            "processor.serdes",
            {
                "AvroDecodeError",
                "AvroEncodeError",
                "AvroError",
                "AvroSchemaError",
                "AvroSerde",
                "BytesSerde",
                "ConfluentAvroSerde",
                "IntSerde",
                "JsonSerde",
                "Serde",
                "StringSerde",
                "topic_subject",
            },
        ),
        ("processor.testing", {"OutputRecord", "TopologyTestDriver"}),
    ],
)
def test_subpackage_all_names_resolve(module_name: str, expected: set[str]) -> None:
    module = importlib.import_module(module_name)
    assert set(module.__all__) == expected
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_every_error_derives_from_processor_error() -> None:
    from processor import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) > 5
    for cls in classes:
        assert issubclass(cls, processor.ProcessorError), cls.__name__


def test_serdes_are_usable_from_the_top_level_import() -> None:
    from processor import serdes

    assert serdes.StringSerde().serialize("x") == b"x"
    assert serdes.IntSerde().deserialize(b"\x00" * 7 + b"\x02") == 2
