"""`Admin` waits a bounded time for every answer: librdkafka leaves a group request sent on a
connection that is down unanswered for ever (seen across a broker restart), and a worker waiting
for it would never take a new generation."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from processor.errors import BrokerError
from processor.kafka import admin as admin_module
from processor.kafka.admin import Admin


class UnansweredGroupRequests:
    """Stands in for the confluent_kafka admin client: metadata is answered, a group
    description never is."""

    def __init__(self) -> None:
        self.described = 0

    def list_topics(self, timeout: float) -> object:
        return object()

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> Any:
        self.described += 1
        return {group: Future() for group in groups}


def test_a_group_description_never_answered_is_given_up_and_the_next_try_uses_a_new_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin_module, "_ANSWER_GRACE_S", 0.05)
    # A real client that never connects (nothing listens on port 1); its requests are faked.
    admin = Admin({"bootstrap.servers": "127.0.0.1:1"}, timeout=0.05, isolate_groups=False)
    unanswered = UnansweredGroupRequests()
    admin._client = unanswered  # type: ignore[assignment]

    with pytest.raises(BrokerError) as raised:
        admin.describe_group("counts-app")

    assert unanswered.described == 1
    assert "describing group 'counts-app'" in str(raised.value)
    assert "no answer from the broker within" in str(raised.value)
    replaced: object = admin._client
    assert replaced is not unanswered, "a wedged client is not asked again"


def test_other_requests_never_answered_are_given_up_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_module, "_ANSWER_GRACE_S", 0.05)
    admin = Admin({"bootstrap.servers": "127.0.0.1:1"}, timeout=0.05, isolate_groups=False)

    class Unanswered:
        def list_consumer_group_offsets(self, request: Any, request_timeout: float) -> Any:
            return {r.group_id: Future() for r in request}

    admin._client = Unanswered()  # type: ignore[assignment]

    with pytest.raises(BrokerError, match="reading the offsets of group 'counts-app'"):
        admin.committed_offsets("counts-app")
