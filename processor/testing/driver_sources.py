"""Sources outside Kafka in the `TopologyTestDriver`: `poll_source(name)` polls the source's
reader once (opened at the first poll, from the beginning) and pipes what it read into the
source's topic, as a worker's source task produces it; an item that cannot become a record goes
to the stage's error handler with its origin in the headers, as in a worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.dsl.topology import Topology
from processor.errors import TopologyError
from processor.sources.base import SourceReader
from processor.topology.async_ops import async_input_key
from processor.topology.external_source import ExternalSourceSpec, encode_item
from processor.topology.handling import Accounting, ErrorHandling, handle_failure
from processor.topology.record import Headers
from processor.topology.subtopology import SubTopology

if TYPE_CHECKING:
    from processor.testing.driver_output import _Collector

from processor.testing.driver_async import DriverAsyncCalls
from processor.testing.driver_sinks import DriverSinkInput

__all__ = ["DriverSources"]


class DriverSources:
    """The driver's part that polls sources (a base class of `TopologyTestDriver`)."""

    _topology: Topology
    _handling: ErrorHandling
    accounting: Accounting
    _source_readers: dict[str, SourceReader] | None = None
    _sinks: list[DriverSinkInput]
    _async_calls: DriverAsyncCalls | None = None

    def poll_source(self, name: str, max_records: int = 500) -> int:
        """Poll source `name` once for up to `max_records` items and process them; returns how
        many items it read (0: nothing new now)."""
        spec, task = self._source_spec(name)
        if self._source_readers is None:
            self._source_readers = {}
        reader = self._source_readers.get(name)
        if reader is None:
            reader = self._source_readers[name] = spec.source.reader()
            reader.open(None)
        items = reader.poll(max_records)
        for item in items:
            record, failure = encode_item(spec, item, self.now_ms, task)
            if failure is None:
                key, value, timestamp, headers = record
                self.pipe_bytes(spec.topic, key, value, timestamp=timestamp, headers=headers)
            else:
                handle_failure(self._handling, failure, record, self._collector, self.accounting)
                self.accounting.commit()
        return len(items)

    def _async_inputs(self, sub: SubTopology) -> dict[str, DriverAsyncCalls]:
        """What the processors of `sub` are built over for its async operators: the driver's
        event loop (made at the first one)."""
        operators = sub.async_operators
        if not operators:
            return {}
        if self._async_calls is None:
            self._async_calls = DriverAsyncCalls(self._topology)
        return {async_input_key(node.name): self._async_calls for node in operators}

    def close(self) -> None:
        """Close the sources' readers and the sinks' writers (their connections, open files)."""
        self.close_sources()
        for sink in self._sinks:
            sink.close()
        if self._async_calls is not None:
            self._async_calls.close()

    def close_sources(self) -> None:
        """Close the readers `poll_source` opened."""
        for reader in (self._source_readers or {}).values():
            reader.close()
        self._source_readers = None

    def _source_spec(self, name: str) -> tuple[ExternalSourceSpec, str]:
        """The source named `name` and its task's id."""
        subs = {s.source.name: s for s in self._topology.subtopologies() if s.source is not None}
        if name not in subs:
            raise TopologyError(
                f"topology {self._topology.name!r} has no source named {name!r}; its sources "
                f"are {sorted(subs)}"
            )
        spec = subs[name].source
        assert spec is not None
        return spec, f"{subs[name].id}_0"

    if TYPE_CHECKING:  # the driver's own, which this part uses
        _collector: _Collector

        @property
        def now_ms(self) -> int: ...

        def pipe_bytes(
            self,
            topic: str,
            key: bytes | None,
            value: bytes | None,
            *,
            timestamp: int | None = None,
            headers: Headers | None = None,
        ) -> None: ...
