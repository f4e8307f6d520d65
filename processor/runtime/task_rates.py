"""How many records/s arrive for each active task of this worker, over a sliding window: the load
figures the leader weighs tasks by (`processor.runtime.load_balancer`), published in the status.

**Arrivals, not what was processed.** A task's rate is how fast the end offsets of its input
partitions grow (`ends`: their sum, as the broker answered when asked, see
`processor.runtime.measurements`): what producers write, whatever the owner gets through. It
depends neither on the owner's speed nor on how its fetcher shares out a backlog, so two equally
hot partitions on a saturated worker weigh the same, and a task keeps its rate when it moves.
Where end offsets were not asked of the broker (load-aware balancing off: the status page still
shows rates), the rate is what the task processed per second plus how fast its consumer lag grew,
over the part of the window where the lag is known at both ends, else what it processed alone.
Nothing is mixed: a rate comes from ends at both ends of a span, or lags, or counters alone.

The housekeeping samples about once a second (`observe`). The window is `WINDOW_S`: long enough
that a commit, a batch or a GC pause does not show as a change of load, short enough that a real
shift shows within a minute. A rate is given only once a task has been watched for `min_span_s`
(by default a whole window: the leader plans on nothing less, and a task that just started or
moved has none until then). A task whose counter went back (it was closed and created again)
starts over.

Pure: no clock, no client; the caller passes the time and the counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from processor.ids import TaskId

__all__ = ["WINDOW_S", "TaskRates"]

WINDOW_S = 30.0


@dataclass(frozen=True)
class _Sample:
    at: float
    processed: int
    lag: int | None
    end: int | None


class TaskRates:
    def __init__(self, window_s: float = WINDOW_S, min_span_s: float | None = None) -> None:
        min_span = window_s if min_span_s is None else min_span_s
        if not 0 < min_span <= window_s:
            raise ValueError(f"need 0 < min_span_s <= window_s, got {min_span_s}, {window_s}")
        self._window_s = window_s
        self._min_span_s = min_span
        self._samples: dict[TaskId, deque[_Sample]] = {}

    def observe(
        self,
        now: float,
        processed: Mapping[TaskId, int],
        lags: Mapping[TaskId, int],
        ends: Mapping[TaskId, int] | None = None,
    ) -> None:
        """The active tasks' processed counters, known consumer lags and (when the broker was
        asked) the summed end offsets of their input partitions at `now` (monotonic seconds);
        tasks left out are no longer active here and are forgotten."""
        for gone in self._samples.keys() - processed.keys():
            del self._samples[gone]
        for task, count in processed.items():
            samples = self._samples.setdefault(task, deque())
            if samples and (count < samples[-1].processed or now <= samples[-1].at):
                if now <= samples[-1].at:
                    continue  # the same moment twice (or a clock that went back): skip it
                samples.clear()  # created anew: its counter started over
            samples.append(_Sample(now, count, lags.get(task), (ends or {}).get(task)))
            # Keep one sample at or before the window's start, so the span covers the window.
            while len(samples) > 2 and samples[1].at <= now - self._window_s:
                samples.popleft()

    def rates(self) -> dict[TaskId, float]:
        """Records/s arriving for each task watched for at least `min_span_s`."""
        found: dict[TaskId, float] = {}
        for task, samples in sorted(self._samples.items()):
            if samples[-1].at - samples[0].at < self._min_span_s:
                continue
            # Each a count that grows by one per record arriving: the ends' sum, or what was
            # processed plus what waits; the last resort under-counts a task left behind.
            rate = self._rate([(s.at, s.end) for s in samples if s.end is not None])
            if rate is None:
                rate = self._rate(
                    [(s.at, s.processed + s.lag) for s in samples if s.lag is not None]
                )
            if rate is None:
                rate = self._rate([(s.at, s.processed) for s in samples])
            if rate is not None:
                found[task] = rate
        return found

    def _rate(self, points: list[tuple[float, int]]) -> float | None:
        """How fast the count grew from the first point to the last, when they span at least
        `min_span_s` (never below 0: a partition's end offset does not go back)."""
        if len(points) < 2 or points[-1][0] - points[0][0] < self._min_span_s:
            return None
        (began, first), (ended, last) = points[0], points[-1]
        return max(0.0, (last - first) / (ended - began))
