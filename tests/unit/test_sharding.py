"""The sharding rules a user relies on: each cluster has one owner among the live
shards, a change of membership moves only the clusters it must, and a shard acts on
a cluster only while the rules of docs/sharding-next.md hold: the ring of its view
gives it the cluster, every other member of that view has acknowledged it in its
current life (its Lease's acquireTime, named in their `stemedb.io/ring-view`), no
shard that may still be finishing work (stopped but not expired, or its Lease
deleted just now) would own the cluster, its own Lease is within its renew
deadline, and its view was listed after it last began acting. The walks that check
these rules together, as the adapter composes them, are in
test_sharding_protocol.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.domain.leadership import LeaseRecord, renew_deadline_of
from controller.domain.sharding import (
    Member,
    RingView,
    Standing,
    acknowledgement,
    collectable,
    decode_view,
    encode_view,
    holding,
    identity_of,
    judge,
    lease_name,
    live,
    may_act,
    owner,
    standing,
    stopped,
    unacknowledged,
    update,
    weight,
)

UIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(3000)]
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


def _split(members: list[str]) -> dict[str, str | None]:
    return {uid: owner(uid, members) for uid in UIDS}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (["op-a", "op-b"], ["op-a", "op-b", "op-c"]),  # scale up
        (["op-a", "op-b", "op-c"], ["op-a", "op-b"]),  # one dies
        (["op-a"], ["op-a", "op-b"]),
        (["op-a", "op-b", "op-c", "op-d"], ["op-b", "op-c", "op-d", "op-e"]),  # one replaced
    ],
    ids=["2->3", "3->2", "1->2", "replace one of 4"],
)
def test_a_membership_change_moves_only_the_clusters_it_must(
    before: list[str], after: list[str]
) -> None:
    was, now = _split(before), _split(after)
    moved = [u for u in UIDS if was[u] != now[u]]
    left, joined = set(before) - set(after), set(after) - set(before)
    # Every move is away from a shard that left or to one that joined.
    assert all(was[u] in left or now[u] in joined for u in moved)
    # And only about the share those shards must take or give: the minimum is the
    # departed shards' clusters plus the newcomers' fair share of the rest.
    minimum = sum(1 for u in UIDS if was[u] in left) + \
        len(UIDS) * len(joined) / len(after) * (1 - len(left) / len(before))
    assert len(moved) <= minimum * 1.15 + 30


@pytest.mark.parametrize("n", [2, 3, 5])
def test_clusters_split_about_evenly(n: int) -> None:
    members = [f"stemedb-operator-7d9f-{i}" for i in range(n)]
    split = _split(members)
    counts = [sum(1 for o in split.values() if o == m) for m in members]
    even = len(UIDS) / n
    assert all(abs(c - even) <= 0.1 * even for c in counts), counts


@given(st.lists(names, min_size=1, max_size=6, unique=True), names, st.uuids())
def test_ownership_is_a_member_and_adding_one_moves_only_to_it(
    members: list[str], joining: str, uid: object
) -> None:
    key = str(uid)
    was = owner(key, members)
    assert was in members
    assert owner(key, list(reversed(members))) == was  # the order of listing is irrelevant
    if joining not in members:
        now = owner(key, [*members, joining])
        assert now in (was, joining)
    # Removing a shard that does not own it leaves it where it is.
    for leaving in members:
        if leaving != was:
            assert owner(key, [m for m in members if m != leaving]) == was


def test_no_members_no_owner() -> None:
    assert owner(UIDS[0], []) is None


def test_lease_names_round_trip_and_other_leases_are_not_shards() -> None:
    assert lease_name("ops", "op-a-5d8") == "ops-shard-op-a-5d8"
    assert identity_of("ops", "ops-shard-op-a-5d8") == "op-a-5d8"
    assert identity_of("ops", "ops-leader") is None
    assert identity_of("ops", "ops-shard-") is None
    assert identity_of("ops", "other-shard-x") is None


def _rec(holder: str | None, rv: str, duration: float = 15.0, deadline: float | None = None,
         acquired: str | None = None, acks: frozenset[Member] | None = None) -> LeaseRecord:
    return LeaseRecord(holder=holder, lease_duration_seconds=duration, transitions=0,
                       resource_version=rv, renew_deadline_seconds=deadline,
                       acquire_time=acquired, ring_view=acks)


def _listed(*steps: tuple[float, dict[str, LeaseRecord]]) -> RingView:
    view = RingView()
    for at, leases in steps:
        view = update(view, leases, at)
    return view


@pytest.mark.parametrize(
    ("steps", "members"),
    [
        # Renewed (a new version each read): live.
        ([(0, {"a": _rec("a", "1")}), (14, {"a": _rec("a", "7")}), (20, {"a": _rec("a", "9")})],
         {"a"}),
        # The same version for 15 s as seen here: expired.
        ([(0, {"a": _rec("a", "1")}), (10, {"a": _rec("a", "1")}), (15, {"a": _rec("a", "1")})],
         set()),
        # Not yet 15 s unchanged.
        ([(0, {"a": _rec("a", "1")}), (14.9, {"a": _rec("a", "1")})], {"a"}),
        # Released on shutdown (no holder): out at once.
        ([(0, {"a": _rec("a", "1")}), (1, {"a": _rec(None, "2", 1)})], set()),
        # Held under another name: not that shard's own.
        ([(0, {"a": _rec("b", "1")})], set()),
        # Its Lease deleted: out of the ring (its clusters wait: `holding`).
        ([(0, {"a": _rec("a", "1")}), (1, {})], set()),
        # Re-created by its holder: back at once.
        ([(0, {"a": _rec("a", "1")}), (1, {}), (2, {"a": _rec("a", "2")})], {"a"}),
        # Nothing listed yet: no members.
        ([], set()),
    ],
    ids=["renewed", "expired", "not yet", "released", "held by another", "deleted",
         "re-created", "never listed"],
)
def test_who_is_live(steps: list[tuple[float, dict[str, LeaseRecord]]],
                     members: set[str]) -> None:
    assert live(_listed(*steps)) == members


def test_a_replica_that_cannot_list_judges_as_of_its_last_listing() -> None:
    """Its own renewals may succeed while its LIST fails: the others' Leases must
    not look expired just because time passes without news of them."""
    view = _listed((0, {"a": _rec("a", "1")}), (5, {"a": _rec("a", "2")}))
    # No listing since t=5: whatever the time now, "a" is judged as of t=5.
    assert live(view) == {"a"} and not holding(view, 15.0)


@pytest.mark.parametrize(
    ("steps", "is_stopped", "member"),
    [
        # Declares 10 s: unchanged for 10 s as seen here, it has stopped acting if
        # alive, and leaves the ring (its clusters wait for its expiry: `holding`).
        ([(0, {"a": _rec("a", "1", deadline=10)}), (9.9, {"a": _rec("a", "1", deadline=10)})],
         False, True),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (10, {"a": _rec("a", "1", deadline=10)})],
         True, False),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (15, {"a": _rec("a", "1", deadline=10)})],
         True, False),
        # Counted from when this replica first saw the version, not from the start.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (4, {"a": _rec("a", "2", deadline=10)}),
          (13.9, {"a": _rec("a", "2", deadline=10)})], False, True),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (4, {"a": _rec("a", "2", deadline=10)}),
          (14, {"a": _rec("a", "2", deadline=10)})], True, False),
        # Renewed again: a member at once.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (12, {"a": _rec("a", "1", deadline=10)}),
          (13, {"a": _rec("a", "2", deadline=10)})], False, True),
        # No deadline declared (an older replica): only its expiry counts.
        ([(0, {"a": _rec("a", "1")}), (14.9, {"a": _rec("a", "1")})], False, True),
        # Released: out, and not stopped (its holder stopped before it released).
        ([(0, {"a": _rec("a", "1", deadline=10)}), (1, {"a": _rec(None, "2", 1, 10)})],
         False, False),
    ],
    ids=["deadline not yet", "deadline", "expired", "renewed, not yet", "renewed, deadline",
         "renewed again", "no deadline declared", "released"],
)
def test_a_shard_past_its_declared_renew_deadline_leaves_the_ring_before_it_expires(
    steps: list[tuple[float, dict[str, LeaseRecord]]], is_stopped: bool, member: bool,
) -> None:
    view = _listed(*steps)
    assert stopped(view, "a") is is_stopped
    assert ("a" in live(view)) is member


@pytest.mark.parametrize(
    ("steps", "held"),
    [
        # Stopped (unchanged for its declared 10 s), not expired: work it had in
        # flight may still be ending, until its expiry.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (10, {"a": _rec("a", "1", deadline=10)})],
         {"a"}),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (14.9, {"a": _rec("a", "1", deadline=10)})],
         {"a"}),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (15, {"a": _rec("a", "1", deadline=10)})],
         set()),
        # Live, or released (it stopped before it released): nothing waits.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (9.9, {"a": _rec("a", "1", deadline=10)})],
         set()),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (1, {"a": _rec(None, "2", 1, 10)})],
         set()),
        # Deleted under a live holder, which acts until its next renewal re-creates
        # it: a Lease duration from when this replica saw it go.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (1, {})], {"a"}),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (1, {}), (15.9, {})], {"a"}),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (1, {}), (16, {})], set()),
        # Re-created: a member again, not held.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (1, {}),
          (2, {"a": _rec("a", "2", deadline=10)})], set()),
        # Deleted once released or expired (the replicas' own clean-up): nobody was
        # acting, so nothing waits (or every clean-up would pause the ring).
        ([(0, {"a": _rec(None, "2", 1, 10)}), (1, {})], set()),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (15, {"a": _rec("a", "1", deadline=10)}),
          (16, {})], set()),
    ],
    ids=["stopped", "stopped, just before expiry", "expired", "live", "released",
         "deleted", "deleted 14.9 s ago", "deleted 15 s ago", "re-created",
         "released, then deleted", "expired, then deleted"],
)
def test_the_clusters_of_a_shard_that_may_still_be_working_wait(
    steps: list[tuple[float, dict[str, LeaseRecord]]], held: set[str]
) -> None:
    assert holding(_listed(*steps), 15.0) == held


@pytest.mark.parametrize(
    ("text", "deadline"),
    [("10", 10.0), ("2.5", 2.5), ("0", None), ("-1", None), ("15", None), ("16", None),
     ("nan", None), ("inf", None), ("ten", None), ("", None), (10, None), (None, None)],
)
def test_only_a_sane_declared_renew_deadline_is_relied_on(text: object,
                                                            deadline: float | None) -> None:
    """Below the Lease's duration (15 s) and above 0, else as if none were declared."""
    assert renew_deadline_of(text, 15.0) == deadline


@pytest.mark.parametrize(
    "members",
    [frozenset(), frozenset({("op-a", "2026-11-30T10:00:00.000001Z")}),
     frozenset({("op-a", "t1"), ("op-b", "t2"), ("op-c-7d9f", "t3")})],
    ids=["none", "one", "three"],
)
def test_an_acknowledgement_reads_back_as_written(members: frozenset[Member]) -> None:
    assert decode_view(encode_view(members)) == members


def test_an_unchanged_view_writes_the_same_text() -> None:
    """Compact and sorted: a renewal that acknowledges the same view writes no change."""
    assert encode_view([("b", "t2"), ("a", "t1")]) == '{"a":"t1","b":"t2"}'
    assert encode_view({("a", "t1"), ("b", "t2")}) == encode_view([("b", "t2"), ("a", "t1")])


@pytest.mark.parametrize(
    ("text", "members"),
    [
        (None, None),
        (7, None),
        ("", None),
        ("ring", None),
        ("[]", None),
        ("null", None),
        ('"a"', None),
        ("{}", frozenset()),
        ('{"a":"t1","b":1,"c":null,"":"t3","d":""}', frozenset({("a", "t1")})),
        ('{"a":"t1","b":"t2"}', frozenset({("a", "t1"), ("b", "t2")})),
    ],
    ids=["no annotation", "not a string", "empty", "not JSON", "a list", "null",
         "a string", "acknowledges nothing", "bad entries dropped", "two"],
)
def test_only_a_readable_acknowledgement_counts(text: object,
                                                members: frozenset[Member] | None) -> None:
    """None (no acknowledgement at all) unless the annotation is a JSON object; in it,
    only identity -> acquireTime pairs of non-empty strings name anyone."""
    assert decode_view(text) == members


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        ([(0, {"a": _rec("a", "1", acquired="t1")})], {("a", "t1")}),
        # An older version writes no acquireTime: it cannot be named.
        ([(0, {"a": _rec("a", "1")})], set()),
        ([(0, {"a": _rec("a", "1", deadline=10, acquired="t1")}),
          (10, {"a": _rec("a", "1", deadline=10, acquired="t1")})], set()),
        ([(0, {"a": _rec("a", "1", acquired="t1")}),
          (1, {"a": _rec(None, "2", 1, acquired="t1")})], set()),
        ([(0, {"a": _rec("a", "1", acquired="t1")}), (15, {"a": _rec("a", "1", acquired="t1")})],
         set()),
        ([(0, {"a": _rec("a", "1", acquired="t1")}), (1, {})], set()),
        # Re-created (or restarted): its new life, not the old one.
        ([(0, {"a": _rec("a", "1", acquired="t1")}), (1, {}),
          (2, {"a": _rec("a", "2", acquired="t2")})], {("a", "t2")}),
    ],
    ids=["live", "no acquireTime", "stopped", "released", "expired", "deleted",
         "re-created"],
)
def test_a_shard_acknowledges_only_the_live_members_of_its_view_each_in_its_life(
    steps: list[tuple[float, dict[str, LeaseRecord]]], named: set[Member]
) -> None:
    assert acknowledgement(_listed(*steps)) == named


@pytest.mark.parametrize(
    ("acquired", "acks", "waiting_for"),
    [
        ("t2", frozenset({("me", "t2"), ("x", "tx")}), set()),
        # Written for an earlier life of "me" (a restart keeps the Pod's name).
        ("t2", frozenset({("me", "t1"), ("x", "tx")}), {"x"}),
        # A replica of a version before acknowledgements never acknowledges.
        ("t2", None, {"x"}),
        ("t2", frozenset({("x", "tx"), ("y", "t2")}), {"x"}),
        ("t2", frozenset(), {"x"}),
        # "me" has not written its Lease in this process: nothing can name it.
        (None, frozenset({("me", "t2")}), {"x"}),
    ],
    ids=["acknowledges me", "a previous life of me", "no annotation", "not me",
         "nobody", "no life of mine yet"],
)
def test_a_shard_waits_for_every_other_member_to_acknowledge_its_current_life(
    acquired: str | None, acks: frozenset[Member] | None, waiting_for: set[str]
) -> None:
    view = _listed((0, {"me": _rec("me", "1", acquired=acquired),
                        "x": _rec("x", "1", acquired="tx", acks=acks)}))
    assert unacknowledged(view, "me", acquired, {"me", "x"}) == waiting_for
    assert unacknowledged(view, "me", acquired, {"me"}) == set()  # alone: nobody to ask


def test_a_member_not_listed_has_not_acknowledged() -> None:
    view = _listed((0, {"me": _rec("me", "1", acquired="t2")}))
    assert unacknowledged(view, "me", "t2", {"me", "x"}) == {"x"}


def _uid_ranked(*order: str) -> str:
    """A cluster whose rendezvous weights rank these shards in this order."""
    return next(u for u in UIDS
                if sorted(order, key=lambda m: weight(m, u), reverse=True) == list(order))


@pytest.mark.parametrize(
    ("ranked", "members", "held", "acts"),
    [
        (("me", "x", "d"), {"me", "x"}, set(), True),
        (("x", "me", "d"), {"me", "x"}, set(), False),
        (("d", "me", "x"), {"me", "x"}, {"d"}, False),
        (("me", "d", "x"), {"me", "x"}, {"d"}, True),
        (("d", "me", "x"), {"me", "x"}, set(), True),
        (("me", "x", "d"), {"x"}, set(), False),
        (("me", "x", "d"), {"x"}, {"me"}, False),
    ],
    ids=["the ring gives it to me", "the ring gives it to another",
         "a held shard would own it", "a held shard would not",
         "no longer held", "not a member", "not a member, its own Lease held"],
)
def test_a_shard_acts_on_a_cluster_its_ring_gives_it_unless_a_held_shard_would_own_it(
    ranked: tuple[str, ...], members: set[str], held: set[str], acts: bool
) -> None:
    assert may_act(_uid_ranked(*ranked), "me", frozenset(members), frozenset(held)) is acts


@given(st.sets(names, min_size=1, max_size=5), st.sets(names, max_size=3), st.uuids())
def test_shards_that_agree_on_the_ring_never_both_act_on_a_cluster(
    members: set[str], held: set[str], uid: object
) -> None:
    """And one of them does, unless a held shard would own it."""
    held -= members
    key = str(uid)
    acting = [m for m in members if may_act(key, m, frozenset(members), frozenset(held))]
    assert len(acting) == (0 if owner(key, members | held) in held else 1)


@pytest.mark.parametrize(
    ("acting", "listed_at", "began", "unacked", "expected"),
    [
        (False, 5.0, 1.0, set(), Standing.FENCED),
        (False, 5.0, 1.0, {"x"}, Standing.FENCED),
        (True, 5.0, None, set(), Standing.FENCED),
        (True, None, 1.0, set(), Standing.NOT_LISTED),
        # A view listed before it began acting may miss a shard that joined while it
        # was fenced.
        (True, 0.5, 1.0, set(), Standing.NOT_LISTED),
        (True, 0.5, 1.0, {"x"}, Standing.NOT_LISTED),
        (True, 1.0, 1.0, set(), Standing.NOT_LISTED),  # sent as it began: not after
        (True, 1.5, 1.0, {"x"}, Standing.UNACKNOWLEDGED),
        (True, 1.5, 1.0, set(), Standing.ACTING),
    ],
    ids=["fenced", "fenced, unacknowledged", "never began", "never listed",
         "listed before it began", "listed before it began, unacknowledged",
         "listed as it began", "unacknowledged", "acting"],
)
def test_a_shard_acts_only_within_its_deadline_on_a_fresh_acknowledged_view(
    acting: bool, listed_at: float | None, began: float | None, unacked: set[str],
    expected: Standing,
) -> None:
    assert standing(acting, listed_at, began, frozenset(unacked)) is expected


@pytest.mark.parametrize(
    ("steps", "collect"),
    [
        # Released 600 s ago and unchanged since: a replica gone for good.
        ([(0, {"a": _rec(None, "2", 1)}), (600, {"a": _rec(None, "2", 1)})], ["a"]),
        ([(0, {"a": _rec(None, "2", 1)}), (599, {"a": _rec(None, "2", 1)})], []),
        # Expired (a crash) and unchanged as long.
        ([(0, {"a": _rec("a", "1")}), (600, {"a": _rec("a", "1")})], ["a"]),
        # Renewed: never collected, however old.
        ([(0, {"a": _rec("a", "1")}), (600, {"a": _rec("a", "9")})], []),
        # Taken again by its replica (a StatefulSet Pod back) just now.
        ([(0, {"a": _rec(None, "2", 1)}), (600, {"a": _rec("a", "3")})], []),
    ],
    ids=["released long ago", "released not long enough", "expired long ago", "renewed",
         "back"],
)
def test_only_leases_of_shards_gone_for_good_are_collected(
    steps: list[tuple[float, dict[str, LeaseRecord]]], collect: list[str]
) -> None:
    assert collectable(_listed(*steps), 600.0) == collect


def test_a_slow_listing_is_judged_as_of_when_it_was_sent() -> None:
    """A renewal written while the LIST was in flight may be missing from it: the
    listing that arrives at t=10.6 but was sent at t=9.8 says nothing of t=10."""
    first = update(RingView(), {"a": _rec("a", "1", deadline=10)}, 0.0)
    slow = update(first, {"a": _rec("a", "1", deadline=10)}, 10.6, sent=9.8)
    assert not stopped(slow, "a") and "a" in live(slow)
    assert stopped(update(slow, {"a": _rec("a", "1", deadline=10)}, 11.0, sent=10.1), "a")
    # A version counts as seen when the listing that showed it arrived.
    renewed = update(first, {"a": _rec("a", "2", deadline=10)}, 3.0, sent=1.0)
    assert not stopped(update(renewed, {"a": _rec("a", "2", deadline=10)}, 12.5, sent=12.5),
                       "a")
    assert stopped(update(renewed, {"a": _rec("a", "2", deadline=10)}, 13.5, sent=13.0), "a")


def test_a_listing_without_its_own_lease_in_its_life_is_not_acted_on() -> None:
    """Deleted under it, or a listing that still shows its last life: the others do
    not see it as it is, so what it would act on is not safe from them."""
    assert standing(True, 1.5, 1.0, frozenset(), listed_self=False) is Standing.NOT_LISTED


ME, OTHER = "t1", "t2"


@pytest.mark.parametrize(
    ("other", "expected", "unacked"),
    [
        # A member that acknowledges this life: acting.
        (_rec(OTHER, "5", deadline=10, acquired="o", acks=frozenset({(ME, "me1")})),
         Standing.ACTING, set()),
        (_rec(OTHER, "5", deadline=10, acquired="o", acks=frozenset({(ME, "old")})),
         Standing.UNACKNOWLEDGED, {OTHER}),
        # Stopped, never having acknowledged it: its own view may give it clusters
        # outside its share of this replica's ring, and its work there may still be
        # running in the margin. Nothing is acted on until it expires.
        (_rec(OTHER, "1", deadline=10, acquired="o", acks=frozenset()),
         Standing.UNACKNOWLEDGED, {OTHER}),
        # Stopped, having acknowledged it: only its own share waits (`may_act`).
        (_rec(OTHER, "1", deadline=10, acquired="o", acks=frozenset({(ME, "me1")})),
         Standing.ACTING, set()),
    ],
    ids=["member, acknowledges", "member, an earlier life", "stopped, never acknowledged",
         "stopped, acknowledged"],
)
def test_judge_wants_every_shard_that_may_be_acting_to_acknowledge(
    other: LeaseRecord, expected: Standing, unacked: set[str]
) -> None:
    # A stopped one is the same version at both listings, 11 s apart.
    first = {ME: _rec(ME, "1", deadline=10, acquired="me1"),
             OTHER: other if other.resource_version == "1" else _rec(OTHER, "1", deadline=10)}
    later = {ME: _rec(ME, "9", deadline=10, acquired="me1"), OTHER: other}
    view = _listed((0, first), (11, later))
    judged = judge(view, ME, acting=True, acquired="me1", began=5.0, lease_duration=15.0)
    assert judged.standing is expected and judged.unacked == unacked
