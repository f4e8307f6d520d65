"""Standby replicas on a real broker: a killed worker's tasks are promoted where their standbys
are warm and read only the changelog tail; a 4th worker warms up before it takes tasks."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.failover import (
    KeyedLoad,
    kill_and_watch,
    last_assignment,
    metrics,
    produce_keys,
    standby_lags,
)
from tests.integration.test_state_faults import Latest, count_of
from tests.integration.workers import SESSION_TIMEOUT_S, WorkerProcess, start_worker

TOPOLOGY = "tests.worker_topologies:keyed_counting"


@pytest.fixture
def started(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> Iterator[dict[str, WorkerProcess]]:
    workers: dict[str, WorkerProcess] = {}
    yield workers
    for worker in workers.values():
        worker.stop_quietly()


def start(
    workers: dict[str, WorkerProcess],
    bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    instance: str,
    *extra: str,
) -> WorkerProcess:
    worker = start_worker(
        TOPOLOGY, bootstrap=bootstrap, env=topics, workdir=tmp_path, instance=instance, extra=extra
    )
    workers[instance] = worker
    return worker


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def read_all(output: Latest, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while output.total < expected:
        assert time.monotonic() < deadline, f"{output.total} of {expected} outputs"
        output.poll(0.5)


def all_members(workers: dict[str, WorkerProcess], members: set[str]) -> bool:
    """Whether every worker's last assignment is for exactly `members`."""
    held = [last_assignment(worker) for worker in workers.values()]
    return all(h is not None and h.members == members for h in held)


def standbys_caught_up(workers: dict[str, WorkerProcess], expected: int) -> bool:
    lags: dict[str, float] = {}
    for worker in workers.values():
        lags.update({f"{worker.instance_id}/{t}": v for t, v in standby_lags(worker).items()})
    return len(lags) >= expected and all(v == 0 for v in lags.values())


def test_a_killed_workers_tasks_are_promoted_where_their_standbys_are_warm(
    kafka_bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    started: dict[str, WorkerProcess],
) -> None:
    # Enough keys that a cold start of a task would read tens of thousands of changelog
    # records, against the few hundred a warm standby reads.
    keys = 250_000
    eos = ["--processing-guarantee", "exactly_once", "--num-standby-replicas", "1"]
    for instance in ("w0", "w1", "w2"):
        start(started, kafka_bootstrap, topics, tmp_path, instance, *eos)
    truth = produce_keys(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], keys)
    output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    t0 = time.monotonic()
    read_all(output, keys, timeout=300)
    print(f"{keys} keys counted by 3 workers in {time.monotonic() - t0:.1f}s")
    # Every worker holds standbys for the tasks that land on it after any one failure.
    wait_until(lambda: standbys_caught_up(started, 6), 60, "standbys to catch up")

    rng = random.Random(3)
    more = [f"k{rng.randrange(keys)}" for _ in range(60_000)]
    load = KeyedLoad(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], more, rate=10_000)
    load.start()
    time.sleep(2.0)
    result = kill_and_watch(started, "w1", timeout=60)
    load.join(60)
    truth.update(load.produced)

    print(
        f"failover: tasks resumed after {sorted(result.resumed_after_s.items())}; "
        f"moved {result.moved}; records read {result.read_on_start}"
    )
    for task in result.victim_tasks:
        owner = result.moved[task]
        assert task in result.before[owner].standby, f"{task} was not a standby on {owner}"
    for task, owner in result.moved.items():
        assert task in result.before[owner].standby, f"moved task {task} was cold on {owner}"
    assert result.replayed <= keys // 100, f"promotion read {result.replayed} changelog records"
    for task, owner in result.moved.items():
        log = started[owner].log()[result.log_offsets[owner] :]
        assert re.search(rf"restore end {task} \S+ {result.read_on_start[task]}\b", log), (
            f"the topology's restore listener did not hear of {task}'s promotion on {owner}"
        )
    slowest = max(result.resumed_after_s.values())
    assert slowest <= SESSION_TIMEOUT_S + 5, f"a task processed again only after {slowest:.1f}s"

    read_all(output, sum(truth.values()), timeout=120)
    output.poll(1.0)
    output.close()
    duplicated = [pair for pair, n in output.pairs.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} duplicated outputs, e.g. {duplicated[:3]}"
    assert output.total == sum(truth.values())
    assert {k: count_of(v) for k, v in output.latest.items()} == truth


def restored_before_start(worker: WorkerProcess) -> dict[tuple[tuple[str, str], ...], float]:
    return metrics(worker).get("processor_task_restored_before_start_records", {})


def test_a_fourth_worker_warms_up_before_it_takes_tasks(
    kafka_bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    started: dict[str, WorkerProcess],
) -> None:
    keys, recovery_lag = 200_000, 2_000
    settings = ["--num-standby-replicas", "1", "--acceptable-recovery-lag", str(recovery_lag)]
    for instance in ("w0", "w1", "w2"):
        start(started, kafka_bootstrap, topics, tmp_path, instance, *settings)
    truth = produce_keys(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], keys)
    output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    read_all(output, keys, timeout=120)
    # The three workers' own assignment, not one from before the last of them joined.
    wait_until(lambda: all_members(started, {"w0", "w1", "w2"}), 90, "all three to be members")
    before = {i: last_assignment(w) for i, w in started.items()}

    rng = random.Random(4)
    more = [f"k{rng.randrange(keys)}" for _ in range(40_000)]
    load = KeyedLoad(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], more, rate=8_000)
    load.start()
    time.sleep(1.0)
    offsets = {i: len(w.log()) for i, w in started.items()}
    joiner = start(started, kafka_bootstrap, topics, tmp_path, "w3", *settings)
    joiner.wait_for_log(r"warmed up in [\d.]+s", 60)
    for instance, worker in started.items():
        worker.wait_for_log(
            r"members \[w0, w1, w2, w3\]; active tasks", 30, after=offsets.get(instance, 0)
        )
    load.join(60)
    truth.update(load.produced)

    moved: dict[str, str] = {}
    for instance, worker in started.items():
        held = last_assignment(worker, offsets.get(instance, 0))
        assert held is not None
        previous = before.get(instance)
        moved.update({t: instance for t in held.active - (previous.active if previous else set())})
    assert moved, "a 4th worker takes some tasks"
    for task, owner in moved.items():
        worker = started[owner]
        # The figure exists once the task's restore has ended and the worker's metrics (refreshed
        # once a second) show it; a busy machine can take longer than the load did.
        wait_until(
            lambda task=task, worker=worker: (("task", task),) in restored_before_start(worker),
            30,
            f"{task}'s restore on {owner} to end",
        )
        records = restored_before_start(worker)[(("task", task),)]
        assert records <= recovery_lag, f"{task} read {records} records on {owner} before it ran"
    # A task that moved away from a worker that keeps it as a standby stays warm there: the
    # standby starts from the state the active task left.
    demoted = {
        (instance, task)
        for instance, held in before.items()
        if held is not None
        for task in held.active
        if task in (last_assignment(started[instance], offsets[instance]) or held).standby
    }
    assert demoted, "with these instance ids the join demotes a task to a standby"
    for instance, task in demoted:
        behind = started[instance].wait_for_log(
            rf"task {task}: standby following .* about (\d+) records behind",
            30,
            after=offsets[instance],
        )
        assert int(behind.group(1)) <= recovery_lag, f"demoted {task} went cold on {instance}"

    read_all(output, sum(truth.values()), timeout=120)
    output.close()
    counts = {k: count_of(v) for k, v in output.latest.items()}
    missing = {k: n for k, n in truth.items() if counts.get(k, 0) < n}
    assert not missing, f"{len(missing)} keys short, e.g. {list(missing.items())[:3]}"


def test_a_worker_stopped_with_sigterm_hands_its_tasks_to_their_standbys(
    kafka_bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    started: dict[str, WorkerProcess],
) -> None:
    keys = 50_000
    for instance in ("w0", "w1", "w2"):
        start(started, kafka_bootstrap, topics, tmp_path, instance, "--num-standby-replicas", "1")
    truth = produce_keys(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], keys)
    output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    read_all(output, keys, timeout=120)
    # Two workers hold the six standbys too: wait until the third has joined (a late one warms
    # up first) and every standby is warm.
    wait_until(lambda: all_members(started, {"w0", "w1", "w2"}), 90, "all three to be members")
    wait_until(lambda: standbys_caught_up(started, 6), 60, "standbys to catch up")
    leaving = last_assignment(started["w2"])
    assert leaving is not None and leaving.active
    offsets = {i: len(w.log()) for i, w in started.items()}

    assert started["w2"].terminate() == 0
    new_owners: dict[str, str] = {}
    for instance in ("w0", "w1"):
        worker = started[instance]
        worker.wait_for_log(r"members \[w0, w1\]; active tasks", 30, after=offsets[instance])
        held = last_assignment(worker, offsets[instance])
        assert held is not None
        new_owners.update(dict.fromkeys(held.active, instance))
    for task in leaving.active:
        owner = new_owners[task]
        match = started[owner].wait_for_log(
            rf"task {task}: state restored in [\d.]+s \((\d+) changelog records read\)",
            30,
            after=offsets[owner],
        )
        assert int(match.group(1)) == 0, f"{task} was not up to date on {owner}"
        assert f"task {task}: promoted from standby" in started[owner].log()[offsets[owner] :]

    more = [f"k{i}" for i in range(0, keys, 7)]
    load = KeyedLoad(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], more, rate=float("inf"))
    load.start()
    load.join(60)
    truth.update(load.produced)
    read_all(output, sum(truth.values()), timeout=120)
    output.close()
    counts = {k: count_of(v) for k, v in output.latest.items()}
    assert {k: counts.get(k, 0) for k in truth} == dict(truth), "a clean handover counts exactly"


def test_directories_of_tasks_no_longer_held_are_deleted_after_the_cleanup_delay(
    kafka_bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    started: dict[str, WorkerProcess],
) -> None:
    delay_s = 3.0
    cleanup = ["--state-cleanup-delay-ms", str(int(delay_s * 1000))]
    first = start(started, kafka_bootstrap, topics, tmp_path, "w0", *cleanup)
    first.wait_for_log(r"members \[w0\]; active tasks \[0_0, 0_1, 0_2, 0_3, 0_4, 0_5\]", 60)
    produce_keys(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], 5_000)
    app_dir = tmp_path / "state" / "w0" / topics["PROCESSOR_APPLICATION_ID"]
    wait_until(lambda: len(list(app_dir.glob("0_*"))) == 6, 30, "six task directories")

    offset = len(first.log())
    start(started, kafka_bootstrap, topics, tmp_path, "w1", *cleanup)
    first.wait_for_log(r"members \[w0, w1\]; active tasks", 60, after=offset)
    rebalanced = time.monotonic()
    held = last_assignment(first, offset)
    assert held is not None and len(held.active) == 3 and not held.standby
    gone = {f"0_{p}" for p in range(6)} - held.active

    present = {d.name for d in app_dir.glob("0_*")}
    assert time.monotonic() - rebalanced < delay_s
    assert present == held.active | gone, "nothing is deleted before the delay"
    wait_until(
        lambda: {d.name for d in app_dir.glob("0_*")} == held.active,
        delay_s + 10,
        f"directories of {sorted(gone)} to be deleted",
    )
    assert time.monotonic() - rebalanced >= delay_s
    assert metrics(first)["processor_state_dirs_deleted_total"][()] == len(gone)
