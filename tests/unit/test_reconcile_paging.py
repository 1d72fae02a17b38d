"""Paging wired into the poll (`Reconciler._notify`): an escalated cluster's alert
fires with the level and contact in status, is re-sent on the re-send interval (not
on every poll), is re-sent at once by a restarted operator, and resolves when the
cluster is deleted. Alertmanager is faked at the HTTP transport."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from controller.adapters.notify import Pager
from controller.notifications import Timing
from controller.reconcile import ClusterKey
from tests.unit.test_reconcile import NAME, NS, World, primary

AM = "http://alertmanager:9093"


class Alertmanager:
    def __init__(self) -> None:
        self.posts: list[tuple[float, list[dict[str, Any]]]] = []
        self.world: World | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert self.world is not None
        self.posts.append((self.world.now, json.loads(request.content)))
        return httpx.Response(200)

    def pager(self, world: World) -> Pager:
        self.world = world
        pager = Pager(world.post_event, alertmanager_urls=[AM], timing=Timing(60.0),
                      registry=CollectorRegistry(), transport=httpx.MockTransport(self.handler))
        world.reconciler.notifier = pager
        return pager


def at(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


async def polls(world: World, pager: Pager, n: int) -> None:
    for _ in range(n):
        await world.poll()
        await pager.drain()


async def test_an_escalation_pages_resends_survives_a_restart_and_resolves_on_deletion(
) -> None:
    world = World()
    am = Alertmanager()
    pager = am.pager(world)
    await polls(world, pager, 3)
    assert am.posts == [], "a healthy cluster pages no one"

    world.stemedb.scrape = primary({"node2": 90.0, "node3": 0.5})
    await polls(world, pager, 1)
    escalation = world.body["status"]["escalation"]
    assert escalation["level"] >= 1
    level, contact = str(escalation["level"]), escalation["contact"]
    assert [(a["labels"]["level"], a["labels"]["contact"]) for a in am.posts[0][1]] == [
        (level, contact)]

    # Polls every 10 s; the alert is re-sent every 60 s, not on every poll.
    await polls(world, pager, 12)
    times = [t for t, _ in am.posts]
    assert len(times) == 3 and times[1] - times[0] == 60.0 and times[2] - times[1] == 60.0
    assert all(a["labels"]["level"] == level for _, alerts in am.posts for a in alerts)
    starts = {a["startsAt"] for _, alerts in am.posts for a in alerts}
    assert len(starts) == 1, "one alert, re-sent"

    # A restarted operator re-sends at once (Alertmanager keeps the first startsAt).
    await pager.aclose()
    world.reconciler = world.new_reconciler()
    pager = am.pager(world)
    before = len(am.posts)
    await polls(world, pager, 1)
    assert len(am.posts) == before + 1
    assert am.posts[-1][1][0]["labels"]["level"] == level

    # Deleted: resolved at once, endsAt now.
    world.reconciler.forget(ClusterKey(NS, NAME))
    await pager.drain()
    [resolved] = am.posts[-1][1]
    assert resolved["labels"]["level"] == level
    assert at(resolved["endsAt"]) == world.now
    first = am.posts[0][1][0]
    assert at(first["endsAt"]) - at(first["startsAt"]) == 240.0  # 4 re-sends ahead
    await pager.aclose()
