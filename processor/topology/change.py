"""A table update as it flows between table operators, and its form on a repartition topic.

A table node (a table's source, an aggregation, a table filter, map or join) tells the table
operators below it about an update as `Change(new, old)`: the key's value after and before
the update, None for "no row" (a delete has `new` None, a first insert `old` None). `old` is
only filled in where an operator below needs it (`processor.topology.tables`); elsewhere it is
None.

`Table.group_by` sends changes through a repartition topic, to the task of their new key.
There a record's value is one change of one group, in this layout (`ChangeSerde`):

    byte 0          flags: 0x01 the old value is there, 0x02 the new value is there
    (both there)    4 bytes, big-endian: the length of the old value's bytes
    then            the old value's bytes, then the new value's bytes (each with the
                    grouped value serde), whichever are there

A record whose old and new values go to the same group carries both (the aggregate changes
once); otherwise the old key's record carries only the old value and the new key's only the
new one. The value is never a null record value, so a compacted or filtered topic cannot lose
it as a tombstone.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from processor.serdes import Serde

OLD = 0x01
NEW = 0x02
_LENGTH = struct.Struct(">I")


class Change(NamedTuple):
    """A key's value after (`new`) and before (`old`) one update; None: no row."""

    new: Any
    old: Any


class ChangeFormatError(ValueError):
    """Bytes that are not a change in the layout above."""


def encode_change(new: bytes | None, old: bytes | None) -> bytes:
    """The record value carrying a change's serialized values (at least one of them)."""
    if old is None:
        if new is None:
            raise ValueError("a change on a repartition topic carries an old or a new value")
        return bytes((NEW,)) + new
    if new is None:
        return bytes((OLD,)) + old
    return bytes((OLD | NEW,)) + _LENGTH.pack(len(old)) + old + new


def decode_change(data: bytes) -> tuple[bytes | None, bytes | None]:
    """(new, old) serialized values from a record value `encode_change` made."""
    if not data:
        raise ChangeFormatError("an empty record value is not a change")
    flags = data[0]
    if flags == NEW:
        return data[1:], None
    if flags == OLD:
        return None, data[1:]
    if flags == OLD | NEW:
        if len(data) < 1 + _LENGTH.size:
            raise ChangeFormatError(f"a change of {len(data)} bytes is too short for its length")
        (old_length,) = _LENGTH.unpack_from(data, 1)
        start = 1 + _LENGTH.size
        if start + old_length > len(data):
            raise ChangeFormatError(
                f"the old value's length {old_length} is beyond the change's {len(data)} bytes"
            )
        return data[start + old_length :], data[start : start + old_length]
    raise ChangeFormatError(f"unknown change flags {flags:#04x}")


class ChangeSerde:
    """Changes of values in `values` (a serde), in the repartition layout above."""

    def __init__(self, values: Serde[Any]) -> None:
        self.values = values
        self.name = f"change<{values.name}>"

    def serialize(self, value: Change | None) -> bytes | None:
        if value is None:
            return None
        new = None if value.new is None else self.values.serialize(value.new)
        old = None if value.old is None else self.values.serialize(value.old)
        return encode_change(new, old)

    def deserialize(self, data: bytes | None) -> Change | None:
        if data is None:
            return None
        new, old = decode_change(data)
        return Change(
            None if new is None else self.values.deserialize(new),
            None if old is None else self.values.deserialize(old),
        )

    def __repr__(self) -> str:
        return f"ChangeSerde({self.values!r})"
