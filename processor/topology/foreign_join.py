"""The processors of a table-table join by foreign key: Kafka Streams' KIP-213 design.

The left table's rows name a right row by a foreign key (`foreign_key(key, value)`); the right
table is partitioned by its own key, so the two meet through two internal topics
(`processor.topology.foreign_wire` has their formats):

    left table ──Change──> SubscriptionSend ──(fk, subscription)──> registration topic
                                                                          │
    right table ──Change──> ForeignTableJoin ──┐                          v
                      (every subscriber of fk) │      SubscriptionJoin (subscription store)
                                               v                          │
                         response topic <──(left key, response)───────────┘
                               │
                               v
                         ResponseJoin (left table's current row; result store) ──Change──> ...

- `SubscriptionSend` (left side) turns each update of a left row into subscriptions, by Kafka
  Streams' rules (`SubscriptionSend.process`): a row whose foreign key changed unsubscribes from
  the old one; each carries the hash of the row's new value.
- `SubscriptionJoin` (right side) keeps each subscription in the subscription store, keyed
  (foreign key, left key), and answers it with the right row it has, as its instruction says.
- `ForeignTableJoin` (right side) answers every subscriber of a right row that changed: one
  prefix range of the subscription store.
- `ResponseJoin` (left side) keeps an answer only when its hash is that of the left row's value
  now (a late answer for a value the row no longer has is dropped) and makes the result row:
  `joiner(left, right)`, or a tombstone when the inner join has no right row or the left row is
  gone; "left" joins a row without a right row with None. The result table is kept in its store
  and forwards `Change(new, old)` like any table node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from processor.errors import ChangelogRecordTooLargeError
from processor.serdes import Serde
from processor.topology.change import Change
from processor.topology.foreign_wire import (
    Instruction,
    Response,
    Subscription,
    left_key_of,
    subscribers_prefix,
    subscription_key,
    value_hash,
)
from processor.topology.graph import OperatorKind, OperatorNode
from processor.topology.operator import Operator, Processor
from processor.topology.record import RecordContext
from processor.topology.retry import Retry
from processor.topology.tables import Lookup, TablePlan

K = OperatorKind
FOREIGN_JOIN_KINDS = frozenset(
    {K.FK_SUBSCRIPTION_SEND, K.FK_SUBSCRIPTION_JOIN, K.FK_FOREIGN_JOIN, K.FK_RESPONSE_JOIN}
)

Ins = Instruction


@dataclass(frozen=True)
class ForeignJoinSpec:
    """What every node of one foreign-key join knows (`OperatorNode.table`): how it joins, its
    left and right table nodes, its subscription store, and the serdes whose bytes it compares,
    hashes and keys the subscription store with; `result` is its result store."""

    how: Literal["inner", "left"]
    left: str
    right: str
    subscriptions: str
    left_key_serde: Serde[Any]
    left_value_serde: Serde[Any]
    right_key_serde: Serde[Any]
    result: str

    def describe(self) -> str:
        return f"foreign-key join, how: {self.how}, left: {self.left}, right: {self.right}"


class _ForeignJoinOperator(Operator):
    __slots__ = ("spec",)

    # A store update too large for its changelog: the production error handler's.
    not_mine = (ChangelogRecordTooLargeError,)

    def __init__(
        self, node: OperatorNode, context: RecordContext, retry: Retry | None, spec: Any
    ) -> None:
        super().__init__(node.name, context, retry)
        self.spec: ForeignJoinSpec = spec

    def _bytes(self, serde: Serde[Any], value: Any) -> bytes | None:
        try:
            return serde.serialize(value)
        except Exception as e:
            self.failed(e)


class SubscriptionSend(_ForeignJoinOperator):
    """Kafka Streams' SubscriptionSendProcessorSupplier: the subscriptions one update of a left
    row sends (foreign keys compared as serialized bytes).

    | join  | update                              | sends                                  |
    | ----- | ----------------------------------- | -------------------------------------- |
    | inner | new row, no old fk                  | fk: PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE |
    | inner | fk unchanged                        | fk: PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE |
    | inner | fk changed                          | old: DELETE_KEY_NO_PROPAGATE, new:     |
    |       |                                     | PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE  |
    | inner | new fk None, or row deleted         | old (if any): DELETE_KEY_AND_PROPAGATE |
    | left  | any but a delete of no row          | old fk if it changed:                  |
    |       |                                     | DELETE_KEY_NO_PROPAGATE; new fk (None  |
    |       |                                     | too): PROPAGATE_NULL_IF_NO_FK_VAL_...  |

    Except, beyond Kafka Streams: when the inner join's result store has a row for the key, an
    update that would send no subscription answered with "no right row" (the first and fourth
    lines) sends one that is (PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE, to the new foreign key or
    None). The row is there although the new value would not join when the answer that was to
    remove it was made for a value the row had in between: the hash check drops that answer
    (e.g. a row's foreign key goes to None, then the row changes again, foreign key still None,
    before the tombstone answer comes back; or the right row is deleted while the left row
    changes, same foreign key). Without a new answer the row would stay forever. When the left
    and right sides keep pace (the test driver), such a row is never there, and the output is
    Kafka Streams'.
    """

    __slots__ = ("extract", "results")

    def __init__(self, *args: Any, extract: Callable[[Any, Any], Any], results: Any = None) -> None:
        super().__init__(*args)
        self.extract = extract
        self.results = results  # the inner join's result store

    def _has_result(self, key: Any) -> bool:
        try:
            return self.results is not None and self.results.get(key) is not None
        except Exception as e:
            self.failed(e)

    def _fk(self, key: Any, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.extract(key, value)
        except Exception as e:
            return self.recover(e, self.extract, key, value)

    def process(self, key: Any, value: Any) -> bool:
        new, old = value.new, value.old
        if key is None or (new is None and old is None):
            return False
        old_fk, new_fk = self._fk(key, old), self._fk(key, new)
        fk_serde = self.spec.right_key_serde
        changed = old_fk is not None and self._bytes(fk_serde, new_fk) != self._bytes(
            fk_serde, old_fk
        )
        hash_ = None if new is None else value_hash(self._bytes(self.spec.left_value_serde, new))
        sends: list[tuple[Any, Instruction]] = []
        if self.spec.how == "left":
            if changed:
                sends.append((old_fk, Ins.DELETE_KEY_NO_PROPAGATE))
            sends.append((new_fk, Ins.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        elif new_fk is None:  # deleted, or no foreign key: the old subscription's result goes
            if old_fk is not None:
                sends.append((old_fk, Ins.DELETE_KEY_AND_PROPAGATE))
            elif self._has_result(key):  # a result an answer dropped as stale was to remove
                sends.append((None, Ins.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        elif changed:
            sends.append((old_fk, Ins.DELETE_KEY_NO_PROPAGATE))
            sends.append((new_fk, Ins.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        elif self._has_result(key):  # replaced, or removed if the right row is gone
            sends.append((new_fk, Ins.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        else:
            sends.append((new_fk, Ins.PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE))
        reached = False
        for fk, instruction in sends:
            reached = self.forward(fk, Subscription(key, hash_, instruction)) or reached
        return reached


class SubscriptionJoin(_ForeignJoinOperator):
    """Kafka Streams' SubscriptionReceiveProcessorSupplier and SubscriptionJoinProcessorSupplier:
    keeps (or removes) the subscription, then answers it with the right row as its instruction
    says. A subscription without a foreign key is only answered (with no right row), and only
    when it asks for that answer (a left join's row without a foreign key)."""

    __slots__ = ("right", "store")

    def __init__(self, *args: Any, store: Any, right: Lookup) -> None:
        super().__init__(*args)
        self.store = store
        self.right = right

    def process(self, key: Any, value: Any) -> bool:
        if value is None:
            return False
        subscription: Subscription = value
        instruction = subscription.instruction
        right = None
        if key is None:
            if instruction is not Ins.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE:
                return False
        else:
            fk = self._bytes(self.spec.right_key_serde, key)
            pk = self._bytes(self.spec.left_key_serde, subscription.left_key)
            assert fk is not None and pk is not None, "serdes map only None to None"
            stored = subscription_key(fk, pk)
            try:
                if instruction.deletes:  # answered, if at all, with "no right row"
                    self.store.delete(stored)
                else:
                    self.store.put(stored, subscription.hash or b"")
                    right = self.right(key)
            except Exception as e:
                self.failed(e)
        if instruction is Ins.DELETE_KEY_NO_PROPAGATE or (
            instruction is Ins.PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE and right is None
        ):
            return key is not None  # the store was written
        self.forward(subscription.left_key, Response(subscription.hash, right))
        return True


class ForeignTableJoin(_ForeignJoinOperator):
    """Kafka Streams' ForeignTableJoinProcessorSupplier: an update of a right row answers
    every subscriber of its key with its new value (None: deleted), in the order of their
    serialized left keys."""

    __slots__ = ("store",)

    def __init__(self, *args: Any, store: Any) -> None:
        super().__init__(*args)
        self.store = store

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            return False
        fk = self._bytes(self.spec.right_key_serde, key)
        assert fk is not None, "serdes map only None to None"
        try:
            subscribers = list(self.store.prefix(subscribers_prefix(fk)))
        except Exception as e:
            self.failed(e)
        left_keys = self.spec.left_key_serde
        reached = False
        for stored, hash_ in subscribers:
            try:
                left_key = left_keys.deserialize(left_key_of(stored))
            except Exception as e:
                self.failed(e)
            response = Response(hash_ or None, value.new)
            reached = self.forward(left_key, response) or reached
        return reached


class ResponseJoin(_ForeignJoinOperator):
    """Kafka Streams' ResponseJoinProcessorSupplier and the result table's source: keeps a
    response only when its hash is the hash of the left row's current value, and makes the
    result row from that value and the response's right value."""

    __slots__ = ("joiner", "left", "store")

    def __init__(
        self, *args: Any, joiner: Callable[[Any, Any], Any], store: Any, left: Lookup
    ) -> None:
        super().__init__(*args)
        self.joiner = joiner
        self.store = store
        self.left = left

    def process(self, key: Any, value: Any) -> bool:
        if key is None or value is None:
            return False
        response: Response = value
        try:
            current = self.left(key)
        except Exception as e:
            self.failed(e)
        serialized = None if current is None else self._bytes(self.spec.left_value_serde, current)
        if value_hash(serialized) != response.hash:
            return False  # computed for a value the left row no longer has
        right = response.right_value
        if right is None and (self.spec.how == "inner" or current is None):
            result = None
        else:
            try:
                result = self.joiner(current, right)
            except Exception as e:
                result = self.recover(e, self.joiner, current, right)
        try:
            old = self.store.get(key)
            self.store.put(key, result)
        except Exception as e:
            self.failed(e)
        self.forward(key, Change(result, old))
        return True


def make_foreign_join(
    node: OperatorNode,
    context: RecordContext,
    stores: Mapping[str, Any],
    retry: Retry | None,
    tables: TablePlan,
) -> Processor:
    """The processor of foreign-key join node `node` (a kind in `FOREIGN_JOIN_KINDS`)."""
    spec: ForeignJoinSpec = node.table
    args = (node, context, retry, spec)
    assert node.function is not None, f"foreign-key join node {node.name} has no function"
    if node.kind is K.FK_SUBSCRIPTION_SEND:
        results = stores[spec.result] if spec.how == "inner" else None
        return SubscriptionSend(*args, extract=node.function, results=results)
    subscriptions = stores.get(spec.subscriptions)
    if node.kind is K.FK_SUBSCRIPTION_JOIN:
        return SubscriptionJoin(*args, store=subscriptions, right=tables.lookup(spec.right))
    if node.kind is K.FK_FOREIGN_JOIN:
        return ForeignTableJoin(*args, store=subscriptions)
    if node.kind is K.FK_RESPONSE_JOIN:
        result = stores[node.stores[0]]
        return ResponseJoin(
            *args, joiner=node.function, store=result, left=tables.lookup(spec.left)
        )
    raise AssertionError(f"{node.name}: {node.kind} is not a foreign-key join node")
