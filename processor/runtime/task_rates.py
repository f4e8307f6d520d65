"""How many records/s each active task of this worker receives, over a sliding window: the load
figures the leader weighs tasks by (`processor.runtime.load_balancer`), published in the status.

A task's rate is what it processed per second plus how fast its consumer lag grew: the records
arriving on its input partitions. Processed records alone under-report a task whose worker cannot
keep up (it processes only its share of the worker's time), which is exactly the task that should
weigh most; the lag's growth adds what it could not process. Where the lag is not known at both
ends of the window (no fetch answered yet), the processed rate alone is given.

The housekeeping samples the tasks' counters about once a second (`observe`). The window is
`WINDOW_S`: long enough that a commit, a batch or a GC pause does not show as a change of load,
short enough that a real shift shows within a minute. A rate is given only once a task has been
watched for `MIN_SPAN_S`, so a task that just started (whose catch-up is no steady load) has
none yet. A task whose counter went back (it was closed and created again) starts over.

Pure: no clock, no client; the caller passes the time and the counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from processor.ids import TaskId

__all__ = ["MIN_SPAN_S", "WINDOW_S", "TaskRates"]

WINDOW_S = 30.0
MIN_SPAN_S = 10.0


@dataclass(frozen=True)
class _Sample:
    at: float
    processed: int
    lag: int | None


class TaskRates:
    def __init__(self, window_s: float = WINDOW_S, min_span_s: float = MIN_SPAN_S) -> None:
        if not 0 < min_span_s <= window_s:
            raise ValueError(f"need 0 < min_span_s <= window_s, got {min_span_s}, {window_s}")
        self._window_s = window_s
        self._min_span_s = min_span_s
        self._samples: dict[TaskId, deque[_Sample]] = {}

    def observe(
        self, now: float, processed: Mapping[TaskId, int], lags: Mapping[TaskId, int]
    ) -> None:
        """The active tasks' processed counters and known consumer lags at `now` (monotonic
        seconds); tasks left out are no longer active here and are forgotten."""
        for gone in self._samples.keys() - processed.keys():
            del self._samples[gone]
        for task, count in processed.items():
            samples = self._samples.setdefault(task, deque())
            if samples and (count < samples[-1].processed or now <= samples[-1].at):
                if now <= samples[-1].at:
                    continue  # the same moment twice (or a clock that went back): skip it
                samples.clear()  # created anew: its counter started over
            samples.append(_Sample(now, count, lags.get(task)))
            # Keep one sample at or before the window's start, so the span covers the window.
            while len(samples) > 2 and samples[1].at <= now - self._window_s:
                samples.popleft()

    def rates(self) -> dict[TaskId, float]:
        """Records/s arriving for each task watched for at least `min_span_s`."""
        found: dict[TaskId, float] = {}
        for task, samples in sorted(self._samples.items()):
            first, last = samples[0], samples[-1]
            span = last.at - first.at
            if span < self._min_span_s:
                continue
            arrived = last.processed - first.processed
            if first.lag is not None and last.lag is not None:
                arrived += last.lag - first.lag
            found[task] = max(0.0, arrived / span)
        return found
