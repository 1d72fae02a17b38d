"""The escalation webhook: what is sent, and when a failure is retried."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest

from controller.adapters.notify import Escalated, NotificationError, Notifier
from controller.notifications import Status

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
