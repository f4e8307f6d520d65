"""What a foreign-key join sends between its two sides, as bytes (`processor.topology.foreign_join`
has the processors, `processor.dsl.join_foreign` the topology).

**Subscription** (left side to right side), on `<app>-<name>-subscription-registration-topic`,
keyed by the foreign key (serialized with the right table's key serde, so it lands in the
partition of the right row it names):

    byte 0          version, 1
    byte 1          instruction (`Instruction`)
    byte 2          flags: 0x01 the hash is there
    (hash there)    16 bytes: the hash of the left row's value the subscription was made for
    then            the left key, serialized with the left table's key serde

**Response** (right side to left side), on `<app>-<name>-subscription-response-topic`, keyed by
the left key (the left table's key serde: the partition of the left row):

    byte 0          version, 1
    byte 1          flags: 0x01 the hash is there, 0x02 the right value is there
    (hash there)    16 bytes: the hash the subscription carried
    (value there)   the right row's value, serialized with the right table's value serde

Neither is ever a null record value, so no topic policy can take one for a tombstone.

**Subscription store** (right side): one entry per (foreign key, left key) subscribed, so that
the subscribers of one foreign key are one prefix range:

    key             4 bytes, big-endian: the foreign key's length; the foreign key's bytes;
                    the left key's bytes
    value           the 16-byte hash of the subscription

The hash is BLAKE2b (16 bytes) of the left value's serialized bytes: the left side keeps only
the response whose hash is that of the left row's current value, so an answer computed for a
value the row no longer has (a foreign key since changed) is discarded.
"""

from __future__ import annotations

import hashlib
import struct
from enum import IntEnum
from typing import Any, NamedTuple

from processor.serdes import Serde

VERSION = 1
HASH_BYTES = 16
_HAS_HASH = 0x01
_HAS_VALUE = 0x02
_LENGTH = struct.Struct(">I")


class Instruction(IntEnum):
    """What the right side does with a subscription (Kafka Streams' KIP-213 instructions)."""

    # Remove the subscription; answer nothing (the foreign key changed: the new one answers).
    DELETE_KEY_NO_PROPAGATE = 0
    # Remove the subscription; answer "no right row" (the left row went, or has no foreign key).
    DELETE_KEY_AND_PROPAGATE = 1
    # Subscribe; answer with the right row, or "no right row" when there is none.
    PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE = 2
    # Subscribe; answer only when there is a right row.
    PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE = 3

    @property
    def deletes(self) -> bool:
        return self <= Instruction.DELETE_KEY_AND_PROPAGATE


class WireFormatError(ValueError):
    """Bytes that are not a subscription or response in the layouts above."""


def value_hash(data: bytes | None) -> bytes | None:
    """The hash of a left value's serialized bytes; None for no value."""
    return None if data is None else hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


class Subscription(NamedTuple):
    """A left row's subscription to a foreign key: its key, its value's hash, what to do."""

    left_key: Any
    hash: bytes | None
    instruction: Instruction


class Response(NamedTuple):
    """The right side's answer to a subscriber: the hash it subscribed with, the right row's
    value (None: no right row)."""

    hash: bytes | None
    right_value: Any


def _check_hash(hash_: bytes | None) -> None:
    if hash_ is not None and len(hash_) != HASH_BYTES:
        raise ValueError(f"a value hash has {HASH_BYTES} bytes, not {len(hash_)}")


def encode_subscription(left_key: bytes, hash_: bytes | None, instruction: Instruction) -> bytes:
    _check_hash(hash_)
    flags = _HAS_HASH if hash_ is not None else 0
    return bytes((VERSION, int(instruction), flags)) + (hash_ or b"") + left_key


def decode_subscription(data: bytes) -> tuple[bytes, bytes | None, Instruction]:
    """(left key bytes, hash, instruction) of a subscription `encode_subscription` made."""
    if len(data) < 3 or data[0] != VERSION:
        raise WireFormatError(f"not a version-{VERSION} subscription: {data[:3]!r}")
    try:
        instruction = Instruction(data[1])
    except ValueError:
        raise WireFormatError(f"unknown subscription instruction {data[1]}") from None
    if data[2] & ~_HAS_HASH:
        raise WireFormatError(f"unknown subscription flags {data[2]:#04x}")
    start = 3 + (HASH_BYTES if data[2] & _HAS_HASH else 0)
    if len(data) < start:
        raise WireFormatError(f"a subscription of {len(data)} bytes is too short for its hash")
    hash_ = data[3:start] if data[2] & _HAS_HASH else None
    return data[start:], hash_, instruction


def encode_response(hash_: bytes | None, right_value: bytes | None) -> bytes:
    _check_hash(hash_)
    flags = (_HAS_HASH if hash_ is not None else 0) | (_HAS_VALUE if right_value is not None else 0)
    return bytes((VERSION, flags)) + (hash_ or b"") + (right_value or b"")


def decode_response(data: bytes) -> tuple[bytes | None, bytes | None]:
    """(hash, right value bytes or None) of a response `encode_response` made."""
    if len(data) < 2 or data[0] != VERSION:
        raise WireFormatError(f"not a version-{VERSION} response: {data[:2]!r}")
    flags = data[1]
    if flags & ~(_HAS_HASH | _HAS_VALUE):
        raise WireFormatError(f"unknown response flags {flags:#04x}")
    start = 2 + (HASH_BYTES if flags & _HAS_HASH else 0)
    if len(data) < start:
        raise WireFormatError(f"a response of {len(data)} bytes is too short for its hash")
    hash_ = data[2:start] if flags & _HAS_HASH else None
    return hash_, data[start:] if flags & _HAS_VALUE else None


def subscription_key(foreign_key: bytes, left_key: bytes) -> bytes:
    """The subscription store's key of (foreign key, left key)."""
    return _LENGTH.pack(len(foreign_key)) + foreign_key + left_key


def subscribers_prefix(foreign_key: bytes) -> bytes:
    """The prefix every subscription store key of `foreign_key` starts with."""
    return _LENGTH.pack(len(foreign_key)) + foreign_key


def left_key_of(key: bytes) -> bytes:
    """The left key's bytes in a subscription store key."""
    (length,) = _LENGTH.unpack_from(key)
    return key[_LENGTH.size + length :]


class SubscriptionSerde:
    """`Subscription`s, their left keys serialized with `left_keys`."""

    def __init__(self, left_keys: Serde[Any]) -> None:
        self.left_keys = left_keys
        self.name = f"subscription<{left_keys.name}>"

    def serialize(self, value: Subscription | None) -> bytes | None:
        if value is None:
            return None
        key = self.left_keys.serialize(value.left_key)
        if key is None:
            raise ValueError("a subscription's left key cannot be None")
        return encode_subscription(key, value.hash, value.instruction)

    def deserialize(self, data: bytes | None) -> Subscription | None:
        if data is None:
            return None
        key, hash_, instruction = decode_subscription(data)
        return Subscription(self.left_keys.deserialize(key), hash_, instruction)

    def __repr__(self) -> str:
        return f"SubscriptionSerde({self.left_keys!r})"


class ResponseSerde:
    """`Response`s, their right values serialized with `right_values`."""

    def __init__(self, right_values: Serde[Any]) -> None:
        self.right_values = right_values
        self.name = f"response<{right_values.name}>"

    def serialize(self, value: Response | None) -> bytes | None:
        if value is None:
            return None
        right = (
            None if value.right_value is None else self.right_values.serialize(value.right_value)
        )
        return encode_response(value.hash, right)

    def deserialize(self, data: bytes | None) -> Response | None:
        if data is None:
            return None
        hash_, right = decode_response(data)
        return Response(hash_, None if right is None else self.right_values.deserialize(right))

    def __repr__(self) -> str:
        return f"ResponseSerde({self.right_values!r})"
