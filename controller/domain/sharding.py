"""Which replica acts on which StemeDBCluster when the operator is sharded: pure rules.

Every replica (a shard) holds its own Lease, renewed and self-fenced like the
leader Lease (`controller.domain.leadership`). The live Leases are the ring's
members; a cluster belongs to the member with the highest rendezvous weight for
its UID, so a member joining takes about 1/N of the clusters from the others and
a member leaving gives only its own away.

The ring only says who *should* act. Who *may* act is the claim written on the
object (`status.shard`) with the API server's optimistic concurrency: a replica
acts on a cluster only while the ring names it, the claim names it and it has
itself confirmed that claim with a fenced write since it last started acting. A
claim changes hands only by its holder (after it stopped polling: the drain
acknowledgement) or by the ring's owner when the holder's Lease is released or
expired, which its holder's self-fencing has already made safe.

A takeover's claim writes (one per cluster, ~10 ms of the API server's CPU each)
need not wait for the expiry, only the acting does: once a holder's Lease has stayed
unchanged for the renew deadline it declares on it, the holder has stopped acting if
it is alive at all (`stopped`), so the ring leaves it out and its clusters' new
owners write their claims then; each acts on such a claim only once the old Lease
has expired as well (`held_until`), the same margin for work in flight as before.

Times are seconds on the replica's own monotonic clock, passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from controller.domain.leadership import LeaseRecord, Observation, expired, observe

RING_LABEL = "stemedb.io/shard-ring"  # on every shard Lease: which ring it belongs to
# The status fields only a claim write sets: the reconciler's status writes never
# carry them, or a stale copy of the status could move a claim back.
CLAIM_FIELD, CLAIMED_AT_FIELD = "shard", "shardClaimedAt"
CLAIM_FIELDS = frozenset({CLAIM_FIELD, CLAIMED_AT_FIELD})
LEASE_INFIX = "-shard-"
# A shard Lease released or expired, unchanged this long, belongs to a replica gone
# for good (a rollout's old Pods): deleted, so Leases do not pile up.
LEASE_GC_SECONDS = 600.0


def lease_name(prefix: str, identity: str) -> str:
    """The shard Lease of replica `identity` in ring `prefix`."""
    return f"{prefix}{LEASE_INFIX}{identity}"


def identity_of(prefix: str, name: str) -> str | None:
    """Whose shard Lease `name` is (None: not one of this ring's)."""
    head = f"{prefix}{LEASE_INFIX}"
    if not name.startswith(head) or len(name) == len(head):
        return None
    return name[len(head):]


def weight(member: str, uid: str) -> int:
    """Rendezvous weight of `member` for the object `uid` (stable across processes
    and Python versions: not `hash()`, which is salted per process)."""
    digest = hashlib.blake2b(f"{member}\0{uid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(uid: str, members: Iterable[str]) -> str | None:
    """The member that owns `uid`: the highest weight (ties broken by name). Removing
    a member moves only its own objects; adding one moves only objects to it."""
    return max(members, key=lambda m: (weight(m, uid), m), default=None)


@dataclass(frozen=True)
class RingView:
    """The shard Leases one replica has listed: each with when it first saw that
    version (its own clock), since when it has listed at all, and when it last did.

    Everything is judged as of the last listing that succeeded, never as of "now":
    a replica that cannot list keeps its last judgement instead of seeing every
    other Lease expire while its own renewals still succeed. A version counts as
    seen when the listing that showed it arrived, and a listing as of when it was
    sent: both err late, so a slow LIST never makes a Lease look older than it is
    (a renewal written while the LIST was in flight may be missing from it).
    """

    listing_since: float | None = None
    listed_at: float | None = None
    seen: Mapping[str, Observation] = field(default_factory=dict)
    gone_since: Mapping[str, float] = field(default_factory=dict)


def update(view: RingView, leases: Mapping[str, LeaseRecord], now: float,
           sent: float | None = None) -> RingView:
    """The view after a listing of the ring's Leases (by identity) sent at `sent`
    (default `now`) that arrived at `now`."""
    seen = {who: observe(view.seen.get(who), record, now) for who, record in leases.items()}
    gone = {who: view.gone_since.get(who, now)
            for who in (*view.seen, *view.gone_since) if who not in leases}
    since = view.listing_since if view.listing_since is not None else now
    return RingView(since, now if sent is None else min(sent, now), seen, gone)


def live(view: RingView) -> frozenset[str]:
    """The members: Leases held by their own replica, neither expired nor past the
    renew deadline their holder declares, as last listed."""
    at = view.listed_at
    return frozenset(who for who, obs in view.seen.items()
                     if at is not None and obs.record.holder == who and not expired(obs, at)
                     and not stopped(view, who))


def stopped(view: RingView, shard: str) -> bool:
    """Whether `shard` has stopped acting, if it is alive, while its Lease has not
    expired yet: held by itself and unchanged for the renew deadline it declares
    (it self-fences by then; this replica saw the renewal no earlier than it was
    sent). Its claims may be written over then, not acted on (`held_until`)."""
    at, obs = view.listed_at, view.seen.get(shard)
    if at is None or obs is None or obs.record.holder != shard:
        return False
    deadline = obs.record.renew_deadline_seconds
    return deadline is not None and at >= obs.since + deadline


def held_until(view: RingView, shard: str) -> float | None:
    """Until when a claim taken over from `shard` may not be acted on: while it is
    `stopped` but not gone, the expiry of its Lease as seen here (the margin its renew
    deadline leaves for work it had in flight); None when nothing holds it back."""
    obs = view.seen.get(shard)
    if obs is None or not stopped(view, shard) or expired(obs, view.listed_at or 0.0):
        return None
    return obs.since + obs.record.lease_duration_seconds


def gone(view: RingView, shard: str, lease_duration: float) -> bool:
    """Whether `shard` can no longer be acting, so its claims may be taken.

    Its Lease released (no holder) or held by another name: it stopped before
    that write. Expired: unchanged for its whole duration, longer than its renew
    deadline. No Lease at all: absent for a whole Lease duration (a live shard
    re-creates a deleted Lease on its next renewal), counted from when it
    disappeared or, never seen, from this replica's first listing.
    """
    at = view.listed_at
    if at is None or view.listing_since is None:
        return False
    obs = view.seen.get(shard)
    if obs is not None:
        return obs.record.holder != shard or expired(obs, at)
    return at >= view.gone_since.get(shard, view.listing_since) + lease_duration


def gone_shards(view: RingView, lease_duration: float) -> tuple[frozenset[str], bool]:
    """Which shards the view judges gone, and whether a shard it has never listed
    would be: the claims `gone` lets a replica take change only when this does."""
    known = frozenset(who for who in (*view.seen, *view.gone_since)
                      if gone(view, who, lease_duration))
    at = view.listed_at
    unseen = at is not None and view.listing_since is not None and \
        at >= view.listing_since + lease_duration
    return known, unseen


def collectable(view: RingView, after: float) -> list[str]:
    """Shards whose Lease has stayed released or expired, unchanged, for `after`
    seconds: left by replicas gone for good (every rollout names new Pods), so
    their Leases can be deleted (at that resourceVersion only)."""
    at = view.listed_at
    if at is None:
        return []
    return sorted(who for who, obs in view.seen.items()
                  if (obs.record.holder != who or expired(obs, at)) and at - obs.since >= after)


class ClaimMove(Enum):
    """What a replica does about one cluster now."""

    ACT = "act"  # the ring and a claim it confirmed name it: poll
    CLAIM = "claim"  # the ring names it and the claim is free, a gone or stopped
    #                  shard's, or its own but not yet confirmed since it started acting
    HAND_OVER = "hand over"  # its claim, another's per the ring: stop, then name it
    WAIT = "wait"  # another shard's business, for now


def next_claim_move(me: str, ring_owner: str | None, claim: str | None,
                    confirmed: bool, claim_gone: bool, held_back: bool = False) -> ClaimMove:
    """The move for replica `me` (acting: within its renew deadline) on a cluster
    the ring gives to `ring_owner`, claimed by `claim` (None: nobody). `claim_gone`:
    its holder is gone or stopped. `held_back`: `me` took this claim over from a
    stopped shard whose Lease has not expired yet, so neither acts on it nor hands it
    on (whoever got it would not know to wait) until then."""
    if ring_owner is None:
        return ClaimMove.WAIT
    if claim == me:
        if held_back:
            return ClaimMove.CLAIM if ring_owner == me and not confirmed else ClaimMove.WAIT
        if ring_owner != me:
            return ClaimMove.HAND_OVER
        return ClaimMove.ACT if confirmed else ClaimMove.CLAIM
    if ring_owner == me and (not claim or claim_gone):
        return ClaimMove.CLAIM
    return ClaimMove.WAIT
