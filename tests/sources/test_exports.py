"""The names users import from `processor.sources`."""

from __future__ import annotations

import processor.sources


def test_sources_all_is_the_documented_surface_and_resolves() -> None:
    assert sorted(processor.sources.__all__) == [
        "BadLine",
        "FileSource",
        "Position",
        "PostgresSource",
        "Source",
        "SourceError",
        "SourceItem",
        "SourceReader",
        "SourceUnavailableError",
    ]
    for name in processor.sources.__all__:
        assert getattr(processor.sources, name) is not None, name


def test_a_lost_source_is_both_a_source_error_and_a_transient_one() -> None:
    from processor.errors import TransientError

    error = processor.sources.SourceUnavailableError("db-orders", "cannot reach PostgreSQL")
    assert isinstance(error, processor.sources.SourceError)
    assert isinstance(error, TransientError)
    assert str(error) == "source 'db-orders': cannot reach PostgreSQL"
