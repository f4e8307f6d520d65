"""Random upserts, cut into random batches, leave the table a dict model predicts: each key's
last record, with the default for a column the record left out."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.sinks.postgres import PostgresSink
from tests.unit.sinks.pg_sink_driver import batch, execute, sink_task

TABLE = (
    "CREATE TABLE IF NOT EXISTS kv (k integer, region text, v bigint, "
    "label text NOT NULL DEFAULT 'none', PRIMARY KEY (k, region))"
)

records = st.lists(
    st.fixed_dictionaries(
        {
            "k": st.integers(0, 4),
            "region": st.sampled_from(["eu", "us"]),
            "v": st.none() | st.integers(-(2**63), 2**63 - 1),
        },
        optional={"label": st.text(max_size=3).filter(lambda s: "\x00" not in s)},
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=records, cuts=st.lists(st.integers(0, 40), max_size=4))
def test_batches_of_upserts_leave_each_keys_last_record(
    pg_dsn: str, values: list[dict[str, Any]], cuts: list[int]
) -> None:
    execute(pg_dsn, TABLE, "TRUNCATE kv", "DROP TABLE IF EXISTS processor_sink_offsets")
    sink = PostgresSink(pg_dsn, "kv", key_columns=["k", "region"], mode="upsert")
    model: dict[tuple[int, str], tuple[Any, str]] = {}
    writer = sink.writer(sink_task())
    writer.open()
    bounds = sorted({0, len(values), *(min(cut, len(values)) for cut in cuts)})
    for start, end in pairwise(bounds):
        assert writer.write(batch(writer, values[start:end], start)) == end
    writer.close()
    for value in values:
        model[value["k"], value["region"]] = (value["v"], value.get("label", "none"))
    with psycopg.connect(pg_dsn) as conn:
        table = {(k, r): (v, label) for k, r, v, label in conn.execute("SELECT * FROM kv")}
    assert table == model
