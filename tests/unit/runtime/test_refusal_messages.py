"""The message a worker stops with when the broker refuses its outputs names the topic and says
what to do, for the refusal it is: a topic deleted under it, a changelog deleted under it, a
limit lowered under it, or a record the sink's topic will not take."""

from __future__ import annotations

import pytest

from processor.errors import BrokerError
from processor.kafka.producer import DeliveryFailure
from processor.runtime.refusals import raise_refused

UNKNOWN = 'KafkaError{code=UNKNOWN_TOPIC_OR_PART,val=3,str="Broker: Unknown topic or partition"}'


def stop_message(failure: DeliveryFailure) -> str:
    with pytest.raises(BrokerError) as raised:
        raise_refused([failure])
    assert raised.value.fatal
    return str(raised.value)


def test_a_deleted_changelog_says_the_state_is_no_longer_backed_up_and_what_a_restart_does() -> (
    None
):
    message = stop_message(
        DeliveryFailure("app-counts-changelog", 3, UNKNOWN, refused=True, no_such_partition=True)
    )
    assert "first to topic 'app-counts-changelog' partition 3" in message
    assert "changelog 'app-counts-changelog'[3] does not exist any more" in message
    assert "its store is no longer backed up" in message
    assert "start over from empty state" in message
    assert "production_error_handler" not in message


def test_a_deleted_output_topic_never_given_a_partition_is_named_without_one() -> None:
    message = stop_message(
        DeliveryFailure(
            "word-counts", None, UNKNOWN, origin=("in", 1, 7), refused=True, no_such_partition=True
        )
    )
    assert "first to topic 'word-counts' (from input record in[1]@7)" in message
    assert "topic 'word-counts' does not exist (any more): create it again" in message
    assert "partition None" not in message


def test_a_record_too_large_for_a_sink_points_at_the_production_error_handler() -> None:
    message = stop_message(
        DeliveryFailure(
            "out", 0, "MSG_SIZE_TOO_LARGE", origin=("in", 0, 1), refused=True, too_large=True
        )
    )
    assert "production_error_handler=skip or dead_letter" in message


def test_records_not_delivered_in_time_say_so_rather_than_refused() -> None:
    message = stop_message(DeliveryFailure("out", 0, "Local: Message timed out"))
    assert "were not delivered" in message
    assert "message.timeout.ms" in message
