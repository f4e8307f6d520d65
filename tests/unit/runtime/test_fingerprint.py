"""The topology fingerprint names what every worker of an application must agree on."""

from __future__ import annotations

from unittest import mock

from processor import Topology, serdes
from processor.runtime import identity
from processor.runtime.identity import Fingerprint, _digest, fingerprint_of
from processor.status.plan import PLAN_FORMAT


def _fingerprint(ttl_ms: int = 0, ttl_clock: str = "stream") -> Fingerprint:
    t = Topology("app")
    t.add_store("last", key_serde=serdes.StringSerde(), ttl_ms=ttl_ms, ttl_clock=ttl_clock)
    t.stream("in").process(lambda ctx, k, v: None, stores=["last"])
    subs = t.subtopologies()
    return fingerprint_of(subs, {0: 4}, num_standby_replicas=0, balance_factor=1.0)


def test_a_ttl_changes_what_the_changelog_holds_so_workers_must_agree_on_it() -> None:
    plain = _fingerprint()
    assert _fingerprint(ttl_ms=1000) != plain
    assert _fingerprint(ttl_ms=1000) != _fingerprint(ttl_ms=2000)
    assert _fingerprint(ttl_ms=1000) != _fingerprint(ttl_ms=1000, ttl_clock="wall")
    assert _fingerprint(ttl_ms=1000) == _fingerprint(ttl_ms=1000)


def test_a_store_without_ttl_is_named_as_before_ttls_existed() -> None:
    """A rolling upgrade from workers that knew no TTL keeps agreeing."""
    shape = [{"id": 0, "sources": ["in"], "stores": ["last"], "repartition": []}]
    assert _fingerprint().topology == _digest(shape)


def test_load_aware_workers_never_take_part_with_count_based_ones() -> None:
    """They would compute different owners from the same members; off, the fingerprint is the
    one from before the setting existed (a rolling upgrade keeps agreeing)."""
    t = Topology("app")
    t.stream("in").to("out")
    subs = t.subtopologies()

    def fingerprint(**kwargs: bool) -> Fingerprint:
        return fingerprint_of(subs, {0: 4}, num_standby_replicas=0, balance_factor=1.0, **kwargs)

    assert fingerprint(load_aware=True).settings != fingerprint().settings
    assert fingerprint(load_aware=False) == fingerprint()
    assert fingerprint().settings == _digest({"num_standby_replicas": 0, "balance_factor": 1.0})
    differences = fingerprint(load_aware=True).differences(fingerprint())
    assert differences == [
        "assignment settings (num_standby_replicas, assignment_balance_factor, "
        "assignment_load_aware, or with it on the load plan format of another version)"
    ]


def test_load_aware_workers_of_another_plan_format_never_take_part_together() -> None:
    """A plan format names the weighted rule: workers that would place the same weights
    differently differ in fingerprint (so the majority works and the others wait), while
    count-based workers of both versions agree."""
    t = Topology("app")
    t.stream("in").to("out")
    subs = t.subtopologies()

    def settings(load_aware: bool, plan_format: int) -> str:
        with mock.patch.object(identity, "PLAN_FORMAT", plan_format):
            return fingerprint_of(
                subs, {0: 4}, num_standby_replicas=0, balance_factor=1.0, load_aware=load_aware
            ).settings

    assert settings(True, PLAN_FORMAT) != settings(True, PLAN_FORMAT - 1)
    assert settings(False, PLAN_FORMAT) == settings(False, PLAN_FORMAT - 1)
    assert settings(True, PLAN_FORMAT) == _digest(
        {"num_standby_replicas": 0, "balance_factor": 1.0, "load_plan_format": PLAN_FORMAT}
    )
