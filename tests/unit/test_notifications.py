"""What to send to Alertmanager and the tenant's webhook, poll by poll (pure)."""

from __future__ import annotations

import pytest

from controller.notifications import (
    Alert,
    ClusterRef,
    Firing,
    Page,
    Paging,
    Status,
    Timing,
    step,
    webhook_status,
)

C = ClusterRef("prod", "orders")
T = Timing(resend_seconds=60.0)  # endsAt 240 s ahead
SRE = Page(1, "Cluster SRE", "LagCritical", "node2 lag 12 s")
SRE_AGAIN = Page(1, "Cluster SRE", "LagCritical", "node2 lag 15 s")
DSE = Page(2, "Distributed systems engineer", "SyncAttemptsExhausted", "3 syncs failed")
NEW_CONTACT = Page(1, "On-call DBA", "LagCritical", "node2 lag 12 s")
CLEAR = Page(0, "", "Healthy", "")


def alert(page: Page, starts_at: float) -> Alert:
    return Alert(C, page.level, page.contact, page.reason, page.message, starts_at)


def firing(page: Page, starts_at: float = 100.0, last_sent: float = 100.0) -> Firing:
    return Firing(alert(page, starts_at), last_sent)


# (what was firing, this poll's escalation, now) -> (sends as (status, level, starts_at,
# ends_at, news), what fires after)
STEPS = [
    pytest.param(None, CLEAR, 100.0, [], None, id="healthy: nothing"),
    pytest.param(None, SRE, 100.0, [("firing", 1, 100.0, 340.0, True)], (1, 100.0, 100.0),
                 id="level 1: fires, endsAt 4 re-sends ahead"),
    pytest.param(firing(SRE), SRE, 159.0, [], (1, 100.0, 100.0),
                 id="unchanged, before the re-send interval: nothing"),
    pytest.param(firing(SRE), SRE, 160.0, [("firing", 1, 100.0, 400.0, False)],
                 (1, 100.0, 160.0), id="re-sent every interval, startsAt kept"),
    pytest.param(firing(SRE), SRE_AGAIN, 110.0, [], (1, 100.0, 100.0),
                 id="a new message waits for the re-send (it may change every poll)"),
    pytest.param(firing(SRE), SRE_AGAIN, 160.0, [("firing", 1, 100.0, 400.0, False)],
                 (1, 100.0, 160.0), id="the re-send carries the latest message"),
    pytest.param(firing(SRE), DSE, 200.0,
                 [("resolved", 1, 100.0, 200.0, True), ("firing", 2, 200.0, 440.0, True)],
                 (2, 200.0, 200.0), id="level 1 -> 2: level 1 resolved, level 2 fires"),
    pytest.param(firing(SRE), NEW_CONTACT, 200.0,
                 [("resolved", 1, 100.0, 200.0, True), ("firing", 1, 200.0, 440.0, True)],
                 (1, 200.0, 200.0), id="contact edited: another label set"),
    pytest.param(firing(DSE), CLEAR, 300.0, [("resolved", 2, 100.0, 300.0, True)], None,
                 id="cleared: resolved with endsAt now"),
]


@pytest.mark.parametrize("before, page, now, sends, after", STEPS)
def test_step(before: Firing | None, page: Page, now: float,
              sends: list[tuple[str, int, float, float, bool]],
              after: tuple[int, float, float] | None) -> None:
    got_firing, got = step(before, C, page, now, T)
    assert [(s.status.value, s.alert.level, s.alert.starts_at, s.ends_at, s.news)
            for s in got] == sends
    assert (None if got_firing is None else
            (got_firing.alert.level, got_firing.alert.starts_at, got_firing.last_sent)) == after
    if got_firing is not None:
        assert (got_firing.alert.contact, got_firing.alert.message) == (page.contact,
                                                                        page.message)


# A process that has no alert for a cluster, and the level its status had before the
# poll: what an earlier process (before a restart) left firing.
RESTARTS = [
    pytest.param(0, SRE, [("firing", 1)], id="fresh: the rise fires"),
    pytest.param(1, SRE, [("firing", 1)], id="still level 1: re-sent at once"),
    pytest.param(2, CLEAR, [("resolved", 2)],
                 id="cleared while the operator was down: still resolved"),
    pytest.param(1, DSE, [("resolved", 1), ("firing", 2)],
                 id="rose while the operator was down: old resolved, new fires"),
]


@pytest.mark.parametrize("level_before, page, sends", RESTARTS)
def test_a_restarted_operator_resolves_and_resends_from_the_level_in_status(
        level_before: int, page: Page, sends: list[tuple[str, int]]) -> None:
    paging = Paging(T)
    contact = {1: "Cluster SRE", 2: "Distributed systems engineer"}.get(level_before, "")
    got = paging.update(C, page, 500.0, level_before=level_before, contact_before=contact)
    assert [(s.status.value, s.alert.level) for s in got] == sends
    resolved = [s for s in got if s.status is Status.RESOLVED]
    assert all(s.alert.contact == contact for s in resolved)  # the same labels


def test_paging_over_an_incident_and_a_deletion() -> None:
    paging = Paging(T)
    other = ClusterRef("prod", "billing")
    polls = [(100.0, SRE), (130.0, SRE), (170.0, SRE), (200.0, DSE), (300.0, CLEAR),
             (310.0, CLEAR)]
    sent = [(now, s.status.value, s.alert.level)
            for now, page in polls for s in paging.update(C, page, now)]
    assert sent == [(100.0, "firing", 1), (170.0, "firing", 1), (200.0, "resolved", 1),
                    (200.0, "firing", 2), (300.0, "resolved", 2)]
    assert paging.firing() == {}

    paging.update(other, DSE, 400.0)
    assert paging.is_firing(other)
    gone = paging.gone(other, 450.0)
    assert [(s.status, s.ends_at) for s in gone] == [(Status.RESOLVED, 450.0)]
    assert paging.gone(other, 460.0) == ()
    assert paging.firing() == {}


@pytest.mark.parametrize("before, after, status", [
    (0, 0, None), (0, 1, Status.FIRING), (1, 1, None), (1, 2, Status.FIRING),
    (3, 2, None), (2, 0, Status.RESOLVED), (1, 0, Status.RESOLVED), (0, 3, Status.FIRING),
])
def test_the_webhook_is_told_on_each_rise_and_when_back_to_0(
        before: int, after: int, status: Status | None) -> None:
    assert webhook_status(before, after) is status


def test_ends_at_is_four_resend_intervals_ahead() -> None:
    assert Timing(15.0).ends_after == 60.0
