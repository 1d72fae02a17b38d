"""Which replica acts on which StemeDBCluster when the operator is sharded: pure rules.

Every replica (a shard) holds its own Lease, renewed and self-fenced like the
leader Lease (`controller.domain.leadership`). The live Leases are the ring's
members; a cluster belongs to the member with the highest rendezvous weight for
its UID, so a member joining takes about 1/N of the clusters from the others and
a member leaving gives only its own away.

No write per cluster decides who acts. Each shard acknowledges, on the renewals
of its own Lease, the members of the view it has adopted (annotation
`stemedb.io/ring-view`, each member named with its Lease's `acquireTime`: one life
of it), and only after it has stopped polling what that view takes from it. A
shard `me` polls a cluster only while (docs/sharding-next.md has the argument;
tests/unit/test_sharding_protocol.py walks these very functions over a simulated
ring):

1. the ring of its view gives the cluster to it (`owner`);
2. every other member of its view, and every held shard (3), has acknowledged
   `me` in its current life (`unacknowledged` is empty);
3. no held shard, one that has stopped but may still be finishing work (its
   Lease neither expired nor vanished for a Lease duration), would own it
   (`holding`; `may_act` checks 1 and 3 in one rendezvous);
4. its own Lease is within its renew deadline (the elector's self-fencing);
5. its view comes from a listing sent after it last began acting, which shows its
   own Lease in its current life (`standing`).

`judge` puts rules 2-5 together as the adapter uses them; `unseen` holds back, in
a replica's first Lease duration, a cluster whose `status.shard` names a shard it
never saw (its Lease may have been deleted under it).

Two shards acting on one cluster would each have to be in the other's view
(rule 2, and a member leaves a view only once it has fenced itself), and then the
rendezvous weights cannot favour both.

Times are seconds on the replica's own monotonic clock, passed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from controller.domain.leadership import LeaseRecord, Observation, expired, observe

RING_LABEL = "stemedb.io/shard-ring"  # on every shard Lease: which ring it belongs to
# On every shard Lease: the view its holder has adopted, {identity: acquireTime}.
RING_VIEW_ANNOTATION = "stemedb.io/ring-view"
# The status fields that show which shard acts on a cluster (`kubectl get sdb`):
# written by that shard, information only. The reconciler's status writes never
# carry them, so a stale copy of the status cannot name a shard that has moved on.
SHARD_FIELD, SHARD_SINCE_FIELD = "shard", "shardClaimedAt"
SHARD_FIELDS = frozenset({SHARD_FIELD, SHARD_SINCE_FIELD})
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
    gone_since: Mapping[str, float] = field(default_factory=dict)  # vanished while live


def update(view: RingView, leases: Mapping[str, LeaseRecord], now: float,
           sent: float | None = None) -> RingView:
    """The view after a listing of the ring's Leases (by identity) sent at `sent`
    (default `now`) that arrived at `now`. A Lease that vanished while it was live
    (deleted by hand: its holder may still be acting) is kept in `gone_since`."""
    seen = {who: observe(view.seen.get(who), record, now) for who, record in leases.items()}
    was_live = live(view)
    gone = {who: view.gone_since.get(who, now)
            for who in (*view.seen, *view.gone_since)
            if who not in leases and (who in view.gone_since or who in was_live)}
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
    sent). It leaves the ring then; its clusters wait for its expiry (`holding`)."""
    at, obs = view.listed_at, view.seen.get(shard)
    if at is None or obs is None or obs.record.holder != shard:
        return False
    deadline = obs.record.renew_deadline_seconds
    return deadline is not None and at >= obs.since + deadline


Member = tuple[str, str]  # a shard's identity and its Lease's acquireTime: one life


def encode_view(members: Iterable[Member]) -> str:
    """The acknowledgement annotation's value: compact JSON, sorted, so an
    unchanged view writes the same text."""
    return json.dumps(dict(sorted(members)), separators=(",", ":"))


def decode_view(text: object) -> frozenset[Member] | None:
    """The members an acknowledgement names; None when there is none or it cannot
    be read (a replica of a version before acknowledgements: never counted as one)."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return frozenset((k, v) for k, v in value.items()
                     if isinstance(k, str) and isinstance(v, str) and k and v)


def acknowledgement(view: RingView) -> frozenset[Member]:
    """What a shard acknowledges for `view`: its live members, each in the life its
    Lease shows (a member without an acquireTime cannot be named, so is not)."""
    members = live(view)
    return frozenset((who, acquired) for who, obs in view.seen.items()
                     if who in members and (acquired := obs.record.acquire_time))


def unacknowledged(view: RingView, me: str, acquired: str | None,
                   members: Iterable[str]) -> frozenset[str]:
    """The other members whose Lease, as listed, does not acknowledge `me` in its
    current life (`acquired`, its own Lease's acquireTime): rule 2 holds when empty."""
    def acks(who: str) -> bool:
        obs = view.seen.get(who)
        named = obs.record.ring_view if obs is not None else None
        return acquired is not None and named is not None and (me, acquired) in named
    return frozenset(who for who in members if who != me and not acks(who))


def holding(view: RingView, lease_duration: float) -> frozenset[str]:
    """Shards not in the ring that may still be finishing work: stopped but not
    expired (they fenced themselves; their work in flight gets the margin up to
    the expiry), or whose Lease vanished while live less than a Lease duration ago
    (a live holder re-creates it on its next renewal). A replica acts only while
    each has acknowledged it too, and their clusters wait (`may_act`)."""
    at = view.listed_at
    if at is None:
        return frozenset()
    still = {who for who, obs in view.seen.items()
             if stopped(view, who) and not expired(obs, at)}
    still |= {who for who, since in view.gone_since.items() if at < since + lease_duration}
    return frozenset(still)


def unseen(view: RingView, named: str | None, lease_duration: float) -> bool:
    """Whether `named`, the shard a cluster's `status.shard` names, may be a live
    shard this replica cannot see: never listed here (nor seen vanish) while this
    replica has been listing for less than a Lease duration. Its Lease may have been
    deleted just before this replica first listed; its holder stops acting within
    its renew deadline of that, at its next renewal. `status.shard` is only a hint
    (written after a shard's first poll of a cluster), so this only ever holds a
    cluster back, never lets one go."""
    at, since = view.listed_at, view.listing_since
    if named is None or at is None or since is None or at >= since + lease_duration:
        return False
    return named not in view.seen and named not in view.gone_since


def may_act(uid: str, me: str, members: frozenset[str], held: frozenset[str]) -> bool:
    """Rules 1 and 3 for one cluster: the ring of `members` gives it to `me`, and no
    `held` shard (`holding`, never a member) would own it were it still in the ring.
    One rendezvous over both: the highest weight among members and held."""
    return me in members and owner(uid, members | held) == me


def taken_away(uids: Iterable[str], me: str, members: Iterable[str]) -> set[str]:
    """Of the clusters `me` is working on, those the ring of `members` (with `me`)
    gives to another: the drain cancels them, and `me` acknowledges that ring only
    once none is left."""
    ring = {*members, me}
    return {uid for uid in uids if owner(uid, ring) != me}


class Standing(Enum):
    """Whether a shard may act on the clusters its ring gives it (rules 2, 4, 5)."""

    ACTING = "acting"
    FENCED = "fenced"  # not within its renew deadline (or not holding its Lease)
    NOT_LISTED = "not listed"  # no listing since it began acting shows it as it is
    UNACKNOWLEDGED = "unacknowledged"  # some shard has not acknowledged it yet


def standing(acting: bool, listed_at: float | None, began: float | None,
             unacked: frozenset[str], listed_self: bool = True) -> Standing:
    """`began`: when it last began acting; `listed_at`: when its view's listing was
    sent (strictly after: a view from before a fence may miss a shard that joined
    meanwhile); `listed_self`: that listing shows its own Lease live, in its current
    life (one deleted under it is not, and a shard that never lists it never
    learns that the others cannot see it)."""
    if not acting or began is None:
        return Standing.FENCED
    if listed_at is None or listed_at <= began or not listed_self:
        return Standing.NOT_LISTED
    if unacked:
        return Standing.UNACKNOWLEDGED
    return Standing.ACTING


@dataclass(frozen=True)
class Judgement:
    """What one replica makes of its view: the whole of rules 2-5, and the inputs of
    rules 1 and 3 (`may_act`) and of its next acknowledgement."""

    members: frozenset[str]  # itself included while acting
    held: frozenset[str]  # `holding`, never members
    unacked: frozenset[str]  # members and held shards that have not acknowledged it
    standing: Standing
    adopted: frozenset[Member]  # what it acknowledges once drained
    new: bool = False  # listing for less than a Lease duration (`unseen` can hold)


def judge(view: RingView, me: str, acting: bool, acquired: str | None,
          began: float | None, lease_duration: float) -> Judgement:
    """Replica `me` (`acting`: within its renew deadline; `acquired`: its Lease's
    acquireTime; `began`: when it last began acting) on its `view`. Not a member
    before its first listing: alone in a ring it has not read, it would act on
    every cluster only to drop most of them a second later. A held shard must have
    acknowledged it as well: its view, which may lack `me`, may have given it
    clusters outside its share of `me`'s ring, and its work there may still be
    running in the margin."""
    ring = live(view)
    members = set(ring) - {me}
    if acting and view.listed_at is not None:
        members.add(me)
    held = holding(view, lease_duration) - members
    unacked = unacknowledged(view, me, acquired, members | held)
    own = view.seen.get(me)
    listed_self = me in ring and own is not None and acquired is not None and \
        own.record.acquire_time == acquired
    new = view.listed_at is not None and view.listing_since is not None and \
        view.listed_at < view.listing_since + lease_duration
    return Judgement(frozenset(members), held, unacked,
                     standing(acting, view.listed_at, began, unacked, listed_self),
                     acknowledgement(view), new)


def collectable(view: RingView, after: float) -> list[str]:
    """Shards whose Lease has stayed released or expired, unchanged, for `after`
    seconds: left by replicas gone for good (every rollout names new Pods), so
    their Leases can be deleted (at that resourceVersion only)."""
    at = view.listed_at
    if at is None:
        return []
    return sorted(who for who, obs in view.seen.items()
                  if (obs.record.holder != who or expired(obs, at)) and at - obs.since >= after)
