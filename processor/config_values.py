"""How the text of a setting becomes its value: booleans, numbers, byte sizes, librdkafka
`KEY=VALUE` pairs, bootstrap addresses. Each parser raises `ConfigError` naming the setting."""

from __future__ import annotations

import re

from processor.errors import ConfigError

__all__ = ["parse_kafka_pairs", "parse_size"]


# The security protocols librdkafka accepts as a `PROTOCOL://` prefix of a bootstrap address.
_BOOTSTRAP_PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
_ADDRESS = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


def _bootstrap_problem(servers: str) -> str | None:
    """What makes `servers` no list of `HOST[:PORT]` librdkafka can use, or None."""
    example = "give HOST:PORT pairs separated by commas, e.g. broker1:9092,broker2:9092"
    for entry in filter(None, (e.strip() for e in servers.split(","))):
        scheme, sep, address = entry.rpartition("://")
        if sep and scheme.lower() not in _BOOTSTRAP_PROTOCOLS:
            return f"{entry!r} is not HOST:PORT; write it without {scheme}://, as {address!r}"
        if address.count(":") > 1 and not address.startswith("["):
            continue  # a bare IPv6 address: librdkafka's to judge
        match = _ADDRESS.fullmatch(address)
        if not match or not 0 < int(match["port"] or 9092) < 65536:
            return f"{entry!r} is not HOST:PORT; {example}"
    return None


def _parse_bool(setting: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(setting, f"{text!r} is not a boolean; use true or false")


def _parse_number(setting: str, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(
            setting, f"{text!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None


_SIZE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    **{p + "b": 1000**n for n, p in enumerate("kmgt", 1)},
    **{p + "ib": 1024**n for n, p in enumerate("kmgt", 1)},
}


def parse_size(setting: str, text: str) -> int:
    """`"64MiB"` -> 67108864: an integer number of bytes, optionally with a unit (`B`, `kB`,
    `MB`, `GB`, `TB` in powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024; any
    case)."""
    match = _SIZE.fullmatch(text)
    unit = match[2].lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ConfigError(
            setting,
            f"{text!r} is not a size in bytes; give an integer, optionally with a unit: "
            "67108864, 64MiB, 512KiB, 1GiB (powers of 1024) or 64MB (powers of 1000)",
        )
    return int(match[1]) * _SIZE_UNITS[unit]


def parse_kafka_pairs(pairs: list[str]) -> dict[str, str]:
    """`["session.timeout.ms=6000"]` -> `{"session.timeout.ms": "6000"}`."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                "kafka", f"{pair!r} is not KEY=VALUE (example: session.timeout.ms=6000)"
            )
        result[key.strip()] = value
    return result
