"""Operators that transform, drop or route each record on its own, keeping no state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from processor.topology.operator import Operator, Processor
from processor.topology.record import OperatorError, RecordContext
from processor.topology.retry import Retry


class FunctionOperator(Operator):
    """An operator of one user function, retried per `retry` when it raises a transient error."""

    __slots__ = ("function",)

    def __init__(
        self,
        name: str,
        function: Callable[..., Any],
        context: RecordContext,
        retry: Retry | None,
    ) -> None:
        super().__init__(name, context, retry)
        self.function = function


class FilterProcessor(FunctionOperator):
    __slots__ = ("keep_when",)

    def __init__(
        self,
        name: str,
        function: Callable[..., Any],
        context: RecordContext,
        retry: Retry | None,
        *,
        keep_when: bool,
    ) -> None:
        super().__init__(name, function, context, retry)
        self.keep_when = keep_when

    def process(self, key: Any, value: Any) -> bool:
        try:
            verdict = self.function(key, value)
        except Exception as e:
            verdict = self.recover(e, self.function, key, value)
        try:
            keep = bool(verdict)
        except Exception as e:
            self.failed(e)
        if keep is self.keep_when:
            return self.forward(key, value)
        return False


class MapProcessor(FunctionOperator):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        try:
            pair = self.function(key, value)
        except Exception as e:
            pair = self.recover(e, self.function, key, value)
        try:
            new_key, new_value = pair
        except Exception as e:
            self.failed(e)
        return self.forward(new_key, new_value)


class MapValuesProcessor(FunctionOperator):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        try:
            new_value = self.function(value)
        except Exception as e:
            new_value = self.recover(e, self.function, value)
        return self.forward(key, new_value)


class FlatMapProcessor(FunctionOperator):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        try:
            produced = self.function(key, value)
        except Exception as e:
            produced = self.recover(e, self.function, key, value)
        try:
            pairs = list(produced)
        except Exception as e:
            self.failed(e)
        reached = False
        for pair in pairs:
            try:
                new_key, new_value = pair
            except (TypeError, ValueError) as e:
                raise OperatorError(
                    self.name, TypeError(f"yielded {pair!r}, not a (key, value) pair")
                ) from e
            if self.forward(new_key, new_value):
                reached = True
        return reached


class FlatMapValuesProcessor(FunctionOperator):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        try:
            produced = self.function(value)
        except Exception as e:
            produced = self.recover(e, self.function, value)
        try:
            values = list(produced)
        except Exception as e:
            self.failed(e)
        reached = False
        for new_value in values:
            if self.forward(key, new_value):
                reached = True
        return reached


class PeekProcessor(FunctionOperator):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        try:
            self.function(key, value)
        except Exception as e:
            self.recover(e, self.function, key, value)
        return self.forward(key, value)


class PassThroughProcessor(Processor):
    """Merge and branch outputs: the record goes on as it is."""

    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        return self.forward(key, value)


class SplitProcessor(Operator):
    """Sends each record to the branch of the first predicate that accepts it. Predicates are
    not retried."""

    __slots__ = ("branches", "predicates")

    def __init__(
        self,
        name: str,
        predicates: Sequence[Callable[[Any, Any], bool] | None],
        context: RecordContext,
    ) -> None:
        super().__init__(name, context, retry=None)
        self.predicates = list(predicates)
        self.branches: list[Processor | None] = [None] * len(predicates)

    def process(self, key: Any, value: Any) -> bool:
        for index, predicate in enumerate(self.predicates):
            try:
                matched = predicate is None or bool(predicate(key, value))
            except Exception as e:
                self.failed(e)
            if matched:
                branch = self.branches[index]
                return branch is not None and branch.process(key, value)
        return False
