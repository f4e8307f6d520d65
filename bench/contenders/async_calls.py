"""The topology of `bench/async_calls.py`, for `processor run bench.contenders.async_calls`:
each record of BENCH_INPUT becomes the answer of `GET BENCH_SERVICE_URL/echo?v=<value>`,
written to BENCH_OUTPUT. BENCH_MODE `async`: `map_values_async` with BENCH_CONCURRENCY calls at
once (an aiohttp session, opened in `on_start`), ordered unless BENCH_ORDERED=0; `sync`:
`map_values` with a blocking httpx.Client (what one writes without async operators)."""

import os
from typing import Any

import aiohttp
import httpx

from processor import Topology, serdes

URL = os.environ["BENCH_SERVICE_URL"]
MODE = os.environ.get("BENCH_MODE", "async")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))

topology = Topology("bench-async-calls")
stream = topology.stream(
    os.environ["BENCH_INPUT"], key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
)
clients: dict[str, Any] = {}


@topology.on_start
async def open_client() -> None:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 8)
    clients["async"] = aiohttp.ClientSession(base_url=URL, connector=connector)


@topology.on_stop
async def close_client() -> None:
    await clients["async"].close()


async def echo(value: str) -> str:
    async with clients["async"].get("/echo", params={"v": value}) as response:
        response.raise_for_status()
        return await response.text()


def echo_blocking(value: str) -> str:
    if "sync" not in clients:
        clients["sync"] = httpx.Client(base_url=URL, timeout=10.0)
    response = clients["sync"].get("/echo", params={"v": value})
    response.raise_for_status()
    return response.text


if MODE == "async":
    called = stream.map_values_async(
        echo,
        concurrency=CONCURRENCY,
        ordered=os.environ.get("BENCH_ORDERED", "1") != "0",
        name="echo",
    )
elif MODE == "none":  # no call at all: what the rest of the pipeline costs
    called = stream
else:
    called = stream.map_values(echo_blocking, name="echo")
called.to(os.environ["BENCH_OUTPUT"])
