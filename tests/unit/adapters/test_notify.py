"""The escalation webhook: what is sent, and when a failure is retried."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import httpx
import pytest

from controller.adapters.notify import Escalated, NotificationError, Notifier, Pager
from controller.notifications import ClusterRef, Page, Status

EVENT = Escalated("prod", "orders", 3, "Principal engineer", "MerkleCorruption",
                  "node2: Merkle sync reported corruption")


def recording(answers: list[int | type[Exception]]) -> tuple[list[httpx.Request], Notifier]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, int):
            return httpx.Response(answer)
        raise answer("refused", request=request)

    return seen, Notifier(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("status", [Status.FIRING, Status.RESOLVED])
async def test_the_payload_says_which_cluster_who_to_call_why_and_if_it_is_over(
        status: Status) -> None:
    seen, notifier = recording([204])
    await notifier.escalated("https://hooks.example/stemedb", replace(EVENT, status=status))
    assert len(seen) == 1
    body = json.loads(seen[0].content)
    assert body == {
        "kind": "StemeDBClusterEscalated", "status": status.value,
        "cluster": {"namespace": "prod", "name": "orders"},
        "level": 3, "contact": "Principal engineer", "reason": "MerkleCorruption",
        "message": "node2: Merkle sync reported corruption",
    }
    assert "authorization" not in seen[0].headers


async def test_an_authorization_from_a_secret_is_sent_as_the_header() -> None:
    seen, notifier = recording([204])
    await notifier.escalated("https://hooks.example/stemedb", EVENT, "Bearer abc")
    assert seen[0].headers["authorization"] == "Bearer abc"


@pytest.mark.parametrize("answers, requests, fails", [
    ([httpx.ConnectError, 200], 2, False),
    ([httpx.ConnectError] * 5, 3, True),
    ([500], 1, True),
    ([httpx.ReadTimeout], 1, True),
], ids=[
    "a refused connection is retried",
    "retries are bounded",
    "an answer, even an error, is not repeated (someone may have been paged)",
    "a timeout after sending is not repeated",
])
async def test_only_failures_that_reached_nobody_are_retried(
    answers: list[int | type[Exception]], requests: int, fails: bool
) -> None:
    seen, notifier = recording(answers)
    if fails:
        with pytest.raises(NotificationError):
            await notifier.escalated("https://hooks.example/x", EVENT)
    else:
        await notifier.escalated("https://hooks.example/x", EVENT)
    assert len(seen) == requests


# --------------------------------------------------------------------------- Pager


CLUSTER = ClusterRef("prod", "orders")
BODY = {"metadata": {"namespace": "prod", "name": "orders"}}
CONTACTS = {0: "", 1: "Cluster SRE", 2: "Distributed systems engineer", 3: "Principal engineer"}


@pytest.mark.parametrize("levels, deleted, told", [
    ([0, 0, 0], False, []),
    ([0, 1, 1, 2, 2], False, [("firing", 1), ("firing", 2)]),
    ([0, 2, 1, 0], False, [("firing", 2), ("resolved", 1)]),
    ([0, 1, 0, 0], False, [("firing", 1), ("resolved", 1)]),
    ([0, 3], True, [("firing", 3), ("resolved", 3)]),
    ([0, 1, 0], True, [("firing", 1), ("resolved", 1)]),
], ids=["healthy", "each rise", "a fall is not news, the end is", "resolved once",
        "deleted while escalated: resolved", "deleted after it cleared: nothing more"])
async def test_the_webhook_hears_each_rise_and_the_end_in_order(
        levels: list[int], deleted: bool, told: list[tuple[str, int]]) -> None:
    seen, webhook = recording([204])
    events: list[str] = []
    pager = Pager(lambda body, type, reason, message: events.append(reason.value),
                  webhook=webhook)
    for before, after in itertools.pairwise(levels):
        pager.update(CLUSTER, BODY, Page(after, CONTACTS[after], "Reason", "message"), 0.0,
                     level_before=before, contact_before=CONTACTS[before],
                     webhook_url="https://hooks.example/stemedb")
    if deleted:
        pager.gone(CLUSTER, {}, 0.0)
    await pager.drain()
    sent = [json.loads(r.content) for r in seen]
    assert [(p["status"], p["level"]) for p in sent] == told
    assert all(p["contact"] == CONTACTS[p["level"]] for p in sent)
    # An Event for each, but none about a deleted object.
    assert events == ["Notified"] * (len(told) - (1 if deleted and levels[-1] else 0))
    await pager.aclose()
