"""Consumed records to their tasks: the worker's loop hands each batch from `consume()` here.

A task with one input partition takes each run of consecutive records of its partition in one
call (`StreamTask.process_run`), which keeps its per-record bookkeeping out of the loop over
records; any other route (a task with several inputs buffers its records) gets them one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from processor.errors import BrokerError
from processor.ids import Partition
from processor.kafka.consumer import Message
from processor.runtime.task import StreamTask

__all__ = ["dispatch"]


def dispatch(
    messages: Sequence[Message],
    routes: Mapping[Partition, Callable[[Message], None]],
    consume_error: Callable[[Any], None],
    failed: Callable[[BrokerError], None],
) -> bool:
    """Route each of `messages` by its partition (`routes`; a partition with no route was
    fetched before a rebalance took it away, and its new owner reads it from the committed
    offset). A consume error goes to `consume_error`, which may raise. A `BrokerError` while
    processing goes to `failed`, and the rest of the batch is dropped: False then."""
    index, count = 0, len(messages)
    while index < count:
        message = messages[index]
        error = message.error()
        if error is not None:
            consume_error(error)
            index += 1
            continue
        route = routes.get((message.topic(), message.partition()))
        if route is None:
            index += 1
            continue
        try:
            if getattr(route, "__func__", None) is StreamTask.process:
                task: StreamTask = route.__self__  # type: ignore[attr-defined]
                index = task.process_run(messages, index)
            else:
                route(message)  # buffered by a task with several inputs
                index += 1
        except BrokerError as e:
            failed(e)
            return False
    return True
