"""A failing admin API is retried less and less often, never in lockstep, never
more often than BASE_SECONDS / 2 and never less often than CAP_SECONDS."""

from __future__ import annotations

import pytest

from controller.domain.backoff import (
    BASE_SECONDS,
    CAP_SECONDS,
    Backoff,
    after_failure,
    after_success,
    delay_after,
    updated,
)


@pytest.mark.parametrize(("failures", "low", "high"), [
    (0, 0.0, 0.0),
    (1, BASE_SECONDS / 2, BASE_SECONDS),
    (2, BASE_SECONDS, 2 * BASE_SECONDS),
    (4, 4 * BASE_SECONDS, 8 * BASE_SECONDS),
    (7, CAP_SECONDS / 2, CAP_SECONDS),
    (10_000, CAP_SECONDS / 2, CAP_SECONDS),
], ids=["none", "first", "second", "fourth", "capped", "huge count"])
def test_delay_grows_exponentially_within_its_jitter_band(
    failures: int, low: float, high: float,
) -> None:
    for salt in ("ns/a:SetRateLimit", "ns/b:SetRateLimit", "ns/a:ResetBreaker"):
        assert low <= delay_after(failures, salt) <= high


def test_clusters_failing_together_do_not_retry_in_lockstep() -> None:
    delays = {delay_after(3, f"ns/db-{i}:SetRateLimit") for i in range(50)}
    assert len(delays) > 40


def test_the_same_incident_makes_the_same_choice() -> None:
    assert delay_after(3, "ns/a:ForceSync") == delay_after(3, "ns/a:ForceSync")


def test_failures_accumulate_and_a_success_clears_them() -> None:
    b = Backoff(kind="SetRateLimit")
    assert b.allows(0.0)
    b = after_failure(b, 100.0, "k")
    assert not b.allows(100.0) and b.allows(100.0 + BASE_SECONDS)
    b = after_failure(b, 110.0, "k")
    assert b.failures == 2 and b.since == 100.0 and b.failing_for(130.0) == 30.0
    assert after_success(b) == Backoff(kind="SetRateLimit")
    assert Backoff().failing_for(5.0) == 0.0


def test_each_kind_backs_off_on_its_own() -> None:
    backoffs = updated((), "SetRateLimit", False, 0.0, "ns/db")
    backoffs = updated(backoffs, "ResetBreaker", False, 1.0, "ns/db")
    backoffs = updated(backoffs, "SetRateLimit", False, 10.0, "ns/db")
    assert {b.kind: b.failures for b in backoffs} == {"SetRateLimit": 2, "ResetBreaker": 1}
    backoffs = updated(backoffs, "ResetBreaker", True, 20.0, "ns/db")
    assert [(b.kind, b.failures) for b in backoffs] == [("SetRateLimit", 2)]
