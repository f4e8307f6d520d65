"""What every processor of a task's copy of a sub-topology is, and how one that calls user code
deals with that code failing.

`process(key, value)` returns the record's outcome so far: True when the record, or something
made of it, reached a sink or was written to a store; False when the topology dropped it on the
way. The task counts an input record as output or filtered from what its source returns.

An `Operator` calls user functions inline in `process` (a Python call per record is a good part
of what a record costs) and hands a call that raised to `recover`, the one place that retries a
transient error and otherwise raises the error as this operator's `OperatorError`: nothing but
the call itself runs on the way of a record that does not fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from processor.topology.record import OperatorError, RecordContext
from processor.topology.retry import Retry, call_again


class Processor:
    __slots__ = ("children", "forward", "name")

    # Sends (key, value) on to the children and returns whether it reached a sink or a store.
    # Once a task's processors are wired, a processor with one child calls that child directly,
    # past any pass-through nodes (`processors._shortcut`).
    forward: Callable[[Any, Any], bool]

    def __init__(self, name: str) -> None:
        self.name = name
        self.children: list[Processor] = []
        self.forward = self._forward_to_children

    def process(self, key: Any, value: Any) -> bool:
        """Handle one record; True when it (or what it became) reached a sink or a store."""
        raise NotImplementedError

    def _forward_to_children(self, key: Any, value: Any) -> bool:
        reached = False
        for child in self.children:
            if child.process(key, value):
                reached = True
        return reached


class Operator(Processor):
    """A processor that calls user functions. Each call stays inline in `process`, alone in its
    `try`; a call that raises goes to `recover`, and what is not retried (an initializer, a
    split's predicate, a map's result that is not a pair) to `failed`:

        try:
            pair = self.function(key, value)
        except Exception as e:
            pair = self.recover(e, self.function, key, value)
        try:
            new_key, new_value = pair
        except Exception as e:
            self.failed(e)
    """

    __slots__ = ("context", "retry")

    # Errors that are not this operator's and pass through unwrapped: raised by operators
    # downstream through `context.forward()` (a `process` function), or a store update too
    # large for its changelog (the production error handler's).
    not_mine: tuple[type[Exception], ...] = ()

    def __init__(self, name: str, context: RecordContext, retry: Retry | None) -> None:
        super().__init__(name)
        self.context = context
        self.retry = retry if retry is not None and retry.attempts > 0 else None

    def recover(self, error: Exception, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` raised `error`: when the retry policy marks `error` transient, the
        result of calling it again with backoff; otherwise, or when the retries are used up,
        the (last) error is raised as this operator's (`failed`)."""
        retry = self.retry
        if retry is not None and isinstance(error, retry.on):
            try:
                return call_again(function, args, error, retry, self.name, self.context)
            except Exception as e:
                error = e
        self.failed(error)

    def failed(self, error: Exception) -> NoReturn:
        """Raise `error`, which user code of this operator raised, as an `OperatorError` naming
        the operator (unless it is `not_mine`)."""
        if isinstance(error, self.not_mine):
            raise error
        raise OperatorError(self.name, error) from error
