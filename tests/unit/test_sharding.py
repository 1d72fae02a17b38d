"""The sharding rules a user relies on: each cluster has one owner among the live
shards, a change of membership moves only the clusters it must, and a claim
changes hands only by its holder or after its holder is gone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.domain.leadership import LeaseRecord, renew_deadline_of
from controller.domain.sharding import (
    ClaimMove,
    RingView,
    collectable,
    gone,
    gone_shards,
    held_until,
    identity_of,
    lease_name,
    live,
    next_claim_move,
    owner,
    stopped,
    update,
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


def _rec(holder: str | None, rv: str, duration: float = 15.0,
         deadline: float | None = None) -> LeaseRecord:
    return LeaseRecord(holder=holder, lease_duration_seconds=duration, transitions=0,
                       resource_version=rv, renew_deadline_seconds=deadline)


def _listed(*steps: tuple[float, dict[str, LeaseRecord]]) -> RingView:
    view = RingView()
    for at, leases in steps:
        view = update(view, leases, at)
    return view


@pytest.mark.parametrize(
    ("steps", "members", "gone_ones"),
    [
        # Renewed (a new version each read): live.
        ([(0, {"a": _rec("a", "1")}), (14, {"a": _rec("a", "7")}), (20, {"a": _rec("a", "9")})],
         {"a"}, set()),
        # The same version for 15 s as seen here: expired, gone.
        ([(0, {"a": _rec("a", "1")}), (10, {"a": _rec("a", "1")}), (15, {"a": _rec("a", "1")})],
         set(), {"a"}),
        # Not yet 15 s unchanged.
        ([(0, {"a": _rec("a", "1")}), (14.9, {"a": _rec("a", "1")})], {"a"}, set()),
        # Released on shutdown (no holder): gone at once.
        ([(0, {"a": _rec("a", "1")}), (1, {"a": _rec(None, "2", 1)})], set(), {"a"}),
        # Its Lease deleted: gone only after a whole Lease duration without it.
        ([(0, {"a": _rec("a", "1")}), (1, {}), (15.9, {})], set(), set()),
        ([(0, {"a": _rec("a", "1")}), (1, {}), (16, {})], set(), {"a"}),
        # A shard this replica never saw (a claim from before it started): gone once
        # it has listed for a whole Lease duration.
        ([(0, {}), (14, {})], set(), set()),
        ([(0, {}), (15, {})], set(), {"a"}),
    ],
    ids=["renewed", "expired", "not yet", "released", "deleted, not yet", "deleted",
         "never seen, not yet", "never seen"],
)
def test_who_is_live_and_whose_claims_may_be_taken(
    steps: list[tuple[float, dict[str, LeaseRecord]]], members: set[str], gone_ones: set[str]
) -> None:
    view = _listed(*steps)
    assert live(view) == members
    assert {s for s in ("a",) if gone(view, s, 15.0)} == gone_ones
    # The summary a replica wakes its daemons on says the same of every shard.
    known, unseen = gone_shards(view, 15.0)
    listed = "a" in view.seen or "a" in view.gone_since
    assert ("a" in known if listed else unseen) == ("a" in gone_ones)


def test_a_replica_that_cannot_list_judges_as_of_its_last_listing() -> None:
    """Its own renewals may succeed while its LIST fails: the others' Leases must
    not look expired just because time passes without news of them."""
    view = _listed((0, {"a": _rec("a", "1")}), (5, {"a": _rec("a", "2")}))
    # No listing since t=5: whatever the time now, "a" is judged as of t=5.
    assert live(view) == {"a"} and not gone(view, "a", 15.0)


@pytest.mark.parametrize(
    ("steps", "is_stopped", "member", "held", "is_gone"),
    [
        # Declares 10 s: unchanged for 10 s as seen here, it has stopped acting if
        # alive; its claims may be written over, acted on only from its expiry (t=15).
        ([(0, {"a": _rec("a", "1", deadline=10)}), (9.9, {"a": _rec("a", "1", deadline=10)})],
         False, True, None, False),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (10, {"a": _rec("a", "1", deadline=10)})],
         True, False, 15.0, False),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (15, {"a": _rec("a", "1", deadline=10)})],
         True, False, None, True),
        # Counted from when this replica first saw the version, not from the start.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (4, {"a": _rec("a", "2", deadline=10)}),
          (13.9, {"a": _rec("a", "2", deadline=10)})], False, True, None, False),
        ([(0, {"a": _rec("a", "1", deadline=10)}), (4, {"a": _rec("a", "2", deadline=10)}),
          (14, {"a": _rec("a", "2", deadline=10)})], True, False, 19.0, False),
        # Renewed again: a member at once, nothing held.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (12, {"a": _rec("a", "1", deadline=10)}),
          (13, {"a": _rec("a", "2", deadline=10)})], False, True, None, False),
        # No deadline declared (an older replica): only its expiry counts.
        ([(0, {"a": _rec("a", "1")}), (14.9, {"a": _rec("a", "1")})], False, True, None, False),
        # Released: gone, nothing to hold back.
        ([(0, {"a": _rec("a", "1", deadline=10)}), (1, {"a": _rec(None, "2", 1, 10)})],
         False, False, None, True),
    ],
    ids=["deadline not yet", "deadline", "expired", "renewed, not yet", "renewed, deadline",
         "renewed again", "no deadline declared", "released"],
)
def test_a_shard_past_its_declared_renew_deadline_leaves_the_ring_before_it_expires(
    steps: list[tuple[float, dict[str, LeaseRecord]]], is_stopped: bool, member: bool,
    held: float | None, is_gone: bool,
) -> None:
    view = _listed(*steps)
    assert stopped(view, "a") is is_stopped
    assert ("a" in live(view)) is member
    assert held_until(view, "a") == held
    assert gone(view, "a", 15.0) is is_gone


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
    ("ring_owner", "claim", "confirmed", "claim_gone", "move"),
    [
        ("me", "me", True, False, ClaimMove.ACT),
        # Its own claim, but not confirmed since it last started acting (a stale copy
        # of the object could name it after another took it): confirm by a write.
        ("me", "me", False, False, ClaimMove.CLAIM),
        ("me", None, False, False, ClaimMove.CLAIM),
        ("me", "other", False, True, ClaimMove.CLAIM),  # its holder is gone
        ("me", "other", False, False, ClaimMove.WAIT),  # the holder must hand it over
        ("other", "me", True, False, ClaimMove.HAND_OVER),  # the ring moved it away
        ("other", "me", False, False, ClaimMove.HAND_OVER),
        ("other", None, False, False, ClaimMove.WAIT),
        ("other", "third", False, True, ClaimMove.WAIT),  # the new owner takes it
        (None, "me", True, False, ClaimMove.WAIT),  # no ring yet
    ],
)
def test_a_claim_changes_hands_only_by_its_holder_or_after_it_is_gone(
    ring_owner: str | None, claim: str | None, confirmed: bool, claim_gone: bool,
    move: ClaimMove,
) -> None:
    assert next_claim_move("me", ring_owner, claim, confirmed, claim_gone) is move


@pytest.mark.parametrize(
    ("ring_owner", "confirmed", "move"),
    [
        ("me", True, ClaimMove.WAIT),  # taken from a stopped shard: not until it expires
        ("me", False, ClaimMove.CLAIM),  # confirming again acts on nothing
        ("other", True, ClaimMove.WAIT),  # nor handed on: the next would not wait
        ("other", False, ClaimMove.WAIT),
        (None, True, ClaimMove.WAIT),
    ],
)
def test_a_claim_held_back_is_neither_acted_on_nor_handed_on(
    ring_owner: str | None, confirmed: bool, move: ClaimMove
) -> None:
    assert next_claim_move("me", ring_owner, "me", confirmed, False, held_back=True) is move


@given(st.sampled_from(["me", "other", None]), st.sampled_from(["me", "other", "third", None]),
       st.booleans(), st.booleans(), st.booleans())
def test_only_a_confirmed_claim_the_ring_agrees_with_is_acted_on(
    ring_owner: str | None, claim: str | None, confirmed: bool, claim_gone: bool,
    held_back: bool,
) -> None:
    move = next_claim_move("me", ring_owner, claim, confirmed, claim_gone, held_back)
    assert (move is ClaimMove.ACT) == (
        ring_owner == "me" and claim == "me" and confirmed and not held_back)
    if move is ClaimMove.CLAIM:
        # Never over a live shard's claim.
        assert claim in (None, "me") or claim_gone
    if move is ClaimMove.HAND_OVER:
        assert not held_back


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
