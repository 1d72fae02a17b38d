"""When a replica may take, keep or must give up the leader Lease: pure rules.

Times are seconds on the replica's own monotonic clock, passed in. Nothing here
compares clocks across machines: like client-go, a replica judges another's Lease
expired only once it has itself watched the record stay unchanged (the same
resourceVersion) for the holder's `leaseDurationSeconds`.

Self-fencing: a leader acts only until `renew_deadline` after it *sent* its last
successful renewal. Any other replica saw that renewal no earlier than the API
server wrote it, so the earliest it may take over is `lease_duration` after that:
the gap `lease_duration - renew_deadline` (5 s with the defaults) separates the
old leader's last action from the new leader's first, whatever the network does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# controller-runtime's defaults (pkg/leaderelection; client-go's JitterFactor 1.2).
LEASE_DURATION_SECONDS = 15.0
RENEW_DEADLINE_SECONDS = 10.0
RETRY_PERIOD_SECONDS = 2.0
# A standby reads the Lease twice as often as the leader renews it: it learns of a
# released Lease (a rolling update) within 1 s, and the leader's renewal gets no
# more frequent. One GET a second per standby; safety does not depend on it.
STANDBY_RETRY_PERIOD_SECONDS = 1.0
JITTER_FACTOR = 1.2

# On a shard Lease: the renew deadline its holder self-fences at (`renew_deadline_of`).
RENEW_DEADLINE_ANNOTATION = "stemedb.io/renew-deadline-seconds"


@dataclass(frozen=True)
class LeaseTimings:
    """How long a Lease lasts, how long its leader keeps trying, how often all try."""

    lease_duration: float = LEASE_DURATION_SECONDS
    renew_deadline: float = RENEW_DEADLINE_SECONDS
    retry_period: float = RETRY_PERIOD_SECONDS
    standby_retry_period: float = STANDBY_RETRY_PERIOD_SECONDS

    def __post_init__(self) -> None:
        problem = timings_problem(self)
        if problem is not None:
            raise ValueError(problem)


def timings_problem(t: LeaseTimings) -> str | None:
    """Why these timings could let two leaders overlap (client-go's checks), or None."""
    if t.retry_period <= 0:
        return "the retry period must be > 0"
    if not 0 < t.standby_retry_period <= t.retry_period:
        return "the standby retry period must be > 0 and at most the retry period"
    if t.lease_duration <= t.renew_deadline:
        return "the lease duration must be greater than the renew deadline"
    if t.renew_deadline <= JITTER_FACTOR * t.retry_period:
        return (f"the renew deadline must be greater than {JITTER_FACTOR} x the retry "
                "period")
    return None


@dataclass(frozen=True)
class LeaseRecord:
    """What the Lease says: who holds it, for how long, and its version."""

    holder: str | None
    lease_duration_seconds: float
    transitions: int
    resource_version: str
    # The holder's own renew deadline, where it declares one (shard Leases do): it
    # has stopped acting once its Lease is unchanged this long.
    renew_deadline_seconds: float | None = None
    # When its holder took it (spec.acquireTime, as written): names one life of a
    # shard, since a restarted process keeps its Pod's name.
    acquire_time: str | None = None
    # A shard Lease's acknowledgement of the view its holder adopted (identity,
    # acquireTime); None when it carries none (`controller.domain.sharding`).
    ring_view: frozenset[tuple[str, str]] | None = None


def renew_deadline_of(text: object, lease_duration: float) -> float | None:
    """The renew deadline a holder declares on its Lease; None unless it is a number
    above 0 and below the Lease's duration (anything else is not relied on)."""
    if not isinstance(text, str):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < lease_duration else None


@dataclass(frozen=True)
class Observation:
    """A record and when this replica first saw it unchanged (its own clock)."""

    record: LeaseRecord
    since: float


class Move(Enum):
    """What to do with the Lease on this attempt."""

    CREATE = "create"  # there is no Lease yet
    TAKE = "take"  # free, released or expired: write ourselves as holder
    RENEW = "renew"  # ours: write a new renewTime
    WAIT = "wait"  # another replica holds it and it has not expired


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """The observation after reading `record` at `now`: its clock restarts when the
    record changed (another write), and runs on while it stays the same."""
    if previous is not None and previous.record.resource_version == record.resource_version:
        return previous
    return Observation(record, now)


def expired(seen: Observation, now: float) -> bool:
    """The holder has not renewed for its whole declared duration, as seen here."""
    return now >= seen.since + seen.record.lease_duration_seconds


def next_move(seen: Observation | None, identity: str, now: float) -> Move:
    """The move for a replica called `identity` that has just read the Lease
    (`seen` None: there is none)."""
    if seen is None:
        return Move.CREATE
    holder = seen.record.holder
    if holder == identity:
        return Move.RENEW
    if not holder or expired(seen, now):
        return Move.TAKE
    return Move.WAIT


def absent_move(last_seen: Observation | None, identity: str, now: float) -> Move:
    """The move for `identity` when the Lease is not found (deleted by someone, or
    never created); `last_seen` is the last record it read.

    A Lease deleted under a live holder is re-created by that holder on its next
    renewal; created at once by another replica, it would make two leaders until
    then. So, as for a Lease that is there, another holder's last record counts
    until it would have expired."""
    if last_seen is not None and last_seen.record.holder not in (None, "", identity) \
            and not expired(last_seen, now):
        return Move.WAIT
    return Move.CREATE


def next_attempt_in(seen: Observation | None, identity: str, now: float,
                    timings: LeaseTimings) -> float:
    """Seconds until the next attempt: the leader's retry period for the holder, the
    standby's otherwise, or less when another replica's Lease expires sooner (a
    crashed leader's successor then tries the moment it may)."""
    if seen is not None and seen.record.holder == identity:
        return timings.retry_period
    if seen is None or not seen.record.holder:
        return timings.standby_retry_period
    left = seen.since + seen.record.lease_duration_seconds - now
    if left <= 0:
        # Expired already: the attempt just made should have taken it, and failed
        # (an error, or another replica was faster); no tight loop.
        return timings.standby_retry_period
    return min(timings.standby_retry_period, left)


def acting_until(renewal_sent: float, timings: LeaseTimings) -> float:
    """The moment a leader must have stopped acting unless it renews again: its
    renew deadline, counted from when it sent the renewal that succeeded."""
    return renewal_sent + timings.renew_deadline


def transitions_after(move: Move, record: LeaseRecord | None) -> int:
    """`leaseTransitions` after this move: counted up each time the holder changes."""
    if record is None:
        return 0
    if move is Move.TAKE:
        return record.transitions + 1
    return record.transitions
