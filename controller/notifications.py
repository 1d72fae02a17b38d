"""Which clusters are paging, and what to send about them (pure: time is passed in).

Alertmanager's model, as Prometheus uses it: an alert is not sent once but re-sent
while it lasts, each time with `endsAt` a few re-send intervals ahead, so that
Alertmanager resolves it by itself if the sender goes away; when the condition
clears it is sent once more with `endsAt` = now. Here the condition is a
cluster's escalation level above 0. An alert's identity is its label set, and the
level and contact are labels (so Alertmanager can route on them): a change of
level is therefore the old alert resolved and a new one firing.

The tenant's webhook is told less: once per rise in level and once when the
level is back to 0, decided from the levels before and after a poll (both from
status, so a restarted operator neither repeats nor misses one).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

RESEND_SECONDS = 60.0  # Prometheus' default --rules.alert.resend-delay
ENDS_AFTER_RESENDS = 4.0  # endsAt = now + 4 re-send intervals, as Prometheus does


class Status(enum.Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class ClusterRef:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Page:
    """What a poll's escalation says: who should be paged, and why."""

    level: int
    contact: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Alert:
    cluster: ClusterRef
    level: int
    contact: str
    reason: str
    message: str
    starts_at: float

    @property
    def identity(self) -> tuple[str, str, int, str]:
        """What Alertmanager tells alerts apart by (the labels that vary)."""
        return (self.cluster.namespace, self.cluster.name, self.level, self.contact)


@dataclass(frozen=True, slots=True)
class Send:
    """One alert to post to every Alertmanager. `news` marks a first firing or a
    resolve (worth an Event), as opposed to a re-send."""

    alert: Alert
    status: Status
    ends_at: float
    news: bool


@dataclass(frozen=True, slots=True)
class Timing:
    resend_seconds: float = RESEND_SECONDS

    @property
    def ends_after(self) -> float:
        return ENDS_AFTER_RESENDS * self.resend_seconds


@dataclass(frozen=True, slots=True)
class Firing:
    alert: Alert
    last_sent: float


def step(
    firing: Firing | None, cluster: ClusterRef, page: Page | None, now: float, timing: Timing
) -> tuple[Firing | None, tuple[Send, ...]]:
    """The firing alert after this poll, and what to send for it now."""
    if page is None or page.level <= 0:
        if firing is None:
            return None, ()
        return None, (Send(firing.alert, Status.RESOLVED, now, news=True),)
    wanted = Alert(cluster, page.level, page.contact, page.reason, page.message, now)
    if firing is None:
        return Firing(wanted, now), (Send(wanted, Status.FIRING, now + timing.ends_after, True),)
    if firing.alert.identity != wanted.identity:
        return Firing(wanted, now), (
            Send(firing.alert, Status.RESOLVED, now, news=True),
            Send(wanted, Status.FIRING, now + timing.ends_after, news=True),
        )
    # The same alert: its reason and message (annotations) are kept current but
    # wait for the next re-send, since a message quoting the lag changes every poll.
    current = replace(wanted, starts_at=firing.alert.starts_at)
    if now - firing.last_sent < timing.resend_seconds:
        return Firing(current, firing.last_sent), ()
    return Firing(current, now), (Send(current, Status.FIRING, now + timing.ends_after, False),)


def restored(cluster: ClusterRef, level: int, contact: str, now: float) -> Firing | None:
    """What this process must assume is firing for a cluster it has not paged about
    yet, from the level in status: after a restart, so a level that cleared while
    the operator was down is still resolved, and one that lasts is re-sent at once."""
    if level <= 0:
        return None
    return Firing(Alert(cluster, level, contact, "", "", now), last_sent=float("-inf"))


class Paging:
    """The alerts this process has fired and not yet resolved, one per cluster."""

    def __init__(self, timing: Timing | None = None) -> None:
        self.timing = timing or Timing()
        self._firing: dict[ClusterRef, Firing] = {}

    def update(self, cluster: ClusterRef, page: Page, now: float, *, level_before: int = 0,
               contact_before: str = "") -> tuple[Send, ...]:
        """What to send after a poll whose escalation is `page`. `level_before` is
        the level in status before the poll: for a cluster this process has no
        alert for, it says what an earlier process left firing."""
        firing = self._firing.get(cluster)
        if firing is None:
            firing = restored(cluster, level_before, contact_before, now)
        firing, sends = step(firing, cluster, page, now, self.timing)
        if firing is None:
            self._firing.pop(cluster, None)
        else:
            self._firing[cluster] = firing
        return sends

    def gone(self, cluster: ClusterRef, now: float) -> tuple[Send, ...]:
        """The cluster was deleted: resolve its alert, forget it."""
        firing = self._firing.pop(cluster, None)
        _, sends = step(firing, cluster, None, now, self.timing)
        return sends

    def is_firing(self, cluster: ClusterRef) -> bool:
        return cluster in self._firing

    def firing(self) -> dict[ClusterRef, Alert]:
        return {c: f.alert for c, f in self._firing.items()}


def webhook_status(level_before: int, level_after: int) -> Status | None:
    """Tell the tenant's webhook on a rise in level, and when the level is back to 0."""
    if level_after > level_before:
        return Status.FIRING
    if level_before > 0 and level_after <= 0:
        return Status.RESOLVED
    return None
