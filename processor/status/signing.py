"""Authenticated statuses: with an HTTP token, every status a worker publishes on
`<application_id>-metadata` carries an HMAC-SHA256 in the record header `SIGNATURE_HEADER`, and
workers (and `QueryClient.for_application` given the token) accept only statuses whose signature
verifies. Whoever can write the topic but does not know the token cannot publish an endpoint
that forwarded queries, and with them the bearer token, would go to.

The signing key is derived from the token and the application id, so the bearer token itself is
never the MAC key and a status signed for one application is not valid for another. The MAC
covers the record key (the instance id) and the value (or the fact that it is a tombstone), so a
signed status cannot be replayed under another instance id. It can be replayed as it is: it then
names an endpoint its instance really had.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from processor.status.fields import IgnoredReason, InvalidStatusError

__all__ = ["SIGNATURE_HEADER", "StatusSigner", "verify"]

SIGNATURE_HEADER = "processor-signature"
_KEY_CONTEXT = b"processor metadata status signing key\x00"


class StatusSigner:
    def __init__(self, token: str, application_id: str) -> None:
        self._key = hmac.digest(
            token.encode(), _KEY_CONTEXT + application_id.encode(), hashlib.sha256
        )

    def sign(self, key: bytes, value: bytes | None) -> bytes:
        """The signature of a record: 64 hex digits."""
        return hmac.new(self._key, _signed_bytes(key, value), hashlib.sha256).hexdigest().encode()

    def verifies(self, key: bytes, value: bytes | None, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(key, value), signature)


def verify(
    key: bytes,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    signer: StatusSigner | None,
) -> None:
    """Raises `InvalidStatusError` unless the record is signed by `signer` (when there is one)."""
    if signer is None:
        return
    signature = next((v for k, v in headers if k == SIGNATURE_HEADER), None)
    if signature is None:
        raise InvalidStatusError(
            IgnoredReason.UNSIGNED, f"no {SIGNATURE_HEADER} header, and an HTTP token is set"
        )
    if not signer.verifies(key, value, signature):
        raise InvalidStatusError(
            IgnoredReason.BAD_SIGNATURE,
            f"its {SIGNATURE_HEADER} header does not verify with the HTTP token",
        )


def _signed_bytes(key: bytes, value: bytes | None) -> bytes:
    # Length-prefixed key and a tombstone marker: no two records sign the same bytes.
    tail = b"\x00" if value is None else b"\x01" + value
    return len(key).to_bytes(4, "big") + key + tail
