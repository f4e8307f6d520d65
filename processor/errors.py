"""Every error `processor` raises, under one root.

```
ProcessorError
├── ConfigError                 a setting is missing, unknown or wrong (names the setting)
│   └── DuplicateInstanceError  two live workers share one instance id
├── TopologyError               the topology a user declared cannot run
│   ├── TopologyLoadError       `processor run MODULE:ATTR` cannot find the module or attribute
│   └── CoPartitioningError     sources of one sub-topology differ in partition count
├── TopicError                  a topic is missing or is not what we need (names the topic)
├── BrokerError                 the broker cannot be reached or refused a request
├── RecordError                 one record could not be processed (names topic, partition, offset)
│   ├── DeserializationError    its key or value cannot be read, or it lacks a key it needs
│   └── ProductionError         a record could not be produced (names the target topic)
├── RecordRejectedError         the producer refused an output at once (too large, no topic)
│   └── ChangelogRecordTooLargeError  a store update does not fit its changelog (names both)
├── TransientError              raised by user code: retry this call (see `processor.Retry`)
├── BackgroundStartError        what a worker starts on a thread of its own (its HTTP server)
│                               failed to start (defined in processor.runtime.background)
└── StateError                  a task's local state cannot be used (closed, unreadable, in use)
    ├── StoredValueError        a store holds a value its value serde cannot read (names both)
    ├── StoreCorruptedError     a task's state directory cannot be opened (names it and the cause)
    ├── StoreLockedError        another process or backend holds a task's state directory open
    └── RestoreError            restoring from a changelog failed (names the task; defined in
                                processor.state.restore, next to the restorer)
```

Each error's message is a complete sentence a person can act on: what is wrong, where, and
what to do. The context is also kept as attributes for code that handles the error.
"""

from __future__ import annotations

from pathlib import Path

# A key quoted in a message is cut after this many characters.
_MAX_KEY_CHARS = 100


class ProcessorError(Exception):
    """Root of every error raised by `processor`."""


class ConfigError(ProcessorError):
    """A configuration setting is missing, unknown or has a wrong value."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"config {setting!r}: {problem}")


class DuplicateInstanceError(ConfigError):
    """Two live workers of one application use the same instance id."""

    def __init__(self, instance_id: str, member_ids: list[str]) -> None:
        self.instance_id = instance_id
        self.member_ids = member_ids
        super().__init__(
            "instance_id",
            f"two live workers use instance id {instance_id!r} (group members "
            f"{', '.join(member_ids)}); give each worker its own --instance-id or --state-dir",
        )


class TopologyError(ProcessorError):
    """The declared topology is invalid or cannot run against the topics that exist."""


class TopologyLoadError(TopologyError):
    """The module or attribute naming a topology cannot be loaded."""


class CoPartitioningError(TopologyError):
    """Source topics of one sub-topology have different partition counts."""

    def __init__(self, subtopology: int, partitions_by_topic: dict[str, int]) -> None:
        self.subtopology = subtopology
        self.partitions_by_topic = dict(partitions_by_topic)
        counts = ", ".join(f"{t}={n}" for t, n in sorted(partitions_by_topic.items()))
        super().__init__(
            f"sub-topology {subtopology} reads topics with different partition counts "
            f"({counts}): a join or merge needs the records of a key in the same partition "
            "number of each; give these topics the same partition count (or, for a stream "
            "joining a table, re-key it, e.g. with map(), so it is repartitioned to the table's)"
        )


class TopicError(ProcessorError):
    """A topic is missing, or exists with a configuration we cannot use."""

    def __init__(self, topic: str, problem: str) -> None:
        self.topic = topic
        self.problem = problem
        super().__init__(f"topic {topic!r}: {problem}")


class BrokerError(ProcessorError):
    """The Kafka cluster cannot be reached or refused a request.

    `fatal` means the client that raised it cannot go on (a fenced producer, records the broker
    refused): the worker stops. Otherwise the worker retries or rewinds to its last commit."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        self.fatal = fatal
        super().__init__(message)


class RecordError(ProcessorError):
    """A record could not be processed; names where it came from."""

    def __init__(self, topic: str, partition: int, offset: int, problem: str) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.problem = problem
        super().__init__(f"record {topic}[{partition}]@{offset}: {problem}")


class DeserializationError(RecordError):
    """A record's key or value cannot be deserialized, or a keyed operator got a null key."""


class RecordRejectedError(ProcessorError):
    """The producer refused one output record when it was handed over (larger than the
    producer's message.max.bytes, topic unknown to the cluster)."""

    def __init__(self, target_topic: str, problem: str) -> None:
        self.target_topic = target_topic
        self.problem = problem
        super().__init__(f"producing to {target_topic!r} failed: {problem}")


class ChangelogRecordTooLargeError(RecordRejectedError):
    """A store update whose changelog record (key and value) is larger than the changelog topic
    takes: the store refuses it when it is written, so it never reaches the commit."""

    def __init__(
        self, store: str, changelog: str, key_size: int, value_size: int, limit: int
    ) -> None:
        self.store = store
        self.key_size = key_size
        self.value_size = value_size
        self.limit = limit
        self.target_topic = changelog
        self.problem = (
            f"store {store!r}: an update with key {key_size} bytes, value {value_size} bytes "
            f"does not fit its changelog {changelog!r}, which takes at most {limit} bytes of key "
            "and value (the topic's max.message.bytes or the producer's message.max.bytes, "
            "whichever is smaller, less the record's overhead); the update is not applied. To "
            "keep such values, raise the topic's max.message.bytes and the producer's "
            "(--kafka producer.message.max.bytes=N)"
        )
        # Not RecordRejectedError's "producing to ... failed": nothing was produced.
        ProcessorError.__init__(self, self.problem)


class TransientError(ProcessorError):
    """Raise it (or a subclass) from a user function to have the call retried with backoff
    (`processing_retry_*` settings, or the operator's `retry=Retry(...)`) before the
    processing error handler sees the error. Chain the real cause: `raise TransientError(
    "lookup timed out") from e`."""


class ProductionError(RecordError):
    """A record could not be written to its target topic."""

    def __init__(
        self, target_topic: str, topic: str, partition: int, offset: int, problem: str
    ) -> None:
        self.target_topic = target_topic
        super().__init__(
            topic, partition, offset, f"producing to {target_topic!r} failed: {problem}"
        )


class StateError(ProcessorError):
    """A task's local state cannot be used."""


class StoredValueError(StateError):
    """A value a store holds cannot be read by the store's value serde: the serde changed since
    the value was written (a new deploy), or the value was written by something else."""

    def __init__(self, store: str, serde: str, key: object, cause: Exception) -> None:
        self.store = store
        self.serde = serde
        self.key = key
        self.cause = cause
        shown = repr(key)
        if len(shown) > _MAX_KEY_CHARS:
            shown = shown[:_MAX_KEY_CHARS] + "..."
        super().__init__(
            f"store {store!r} holds a value for key {shown} that its {serde} value serde cannot "
            f"read ({type(cause).__name__}: {cause}); was the store's serde changed since the "
            "value was written? Give the store a serde that still reads the old values"
        )


class StoreCorruptedError(StateError):
    """A task's state directory exists but cannot be opened: its files are damaged or are not a
    store. Nothing is lost for good: the stores can be rebuilt from their changelogs."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"state directory {path} cannot be opened ({reason}); delete it to restore the "
            "task's stores from their changelogs (workers do this by themselves)"
        )


class StoreLockedError(StateError):
    """A task's state directory is held open by another process, or by another backend in this
    one. It is not damaged and must not be wiped."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"state directory {path} is in use by another process or backend ({reason}); "
            "give each worker its own state directory"
        )
