"""The Alertmanager target: what is posted, with which credentials, and how failures
are retried and reported (the transport is the seam; tests/e2e/test_alertmanager.py
runs a real Alertmanager)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from controller.adapters.alertmanager import AlertmanagerError, Credentials, check_url, postable
from controller.adapters.notify import Pager
from controller.domain import EventReason
from controller.notifications import Alert, ClusterRef, Page, Send, Status, Timing

C = ClusterRef("prod", "orders")
BODY = {"metadata": {"namespace": "prod", "name": "orders"}}
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def send(level: int, contact: str = "Cluster SRE", status: Status = Status.FIRING,
         message: str = "node2 lag 12 s") -> Send:
    return Send(Alert(C, level, contact, "LagCritical", message, T0), status,
                T0 + 240.0, news=True)


@pytest.mark.parametrize("s, labels, ends_at", [
    (send(1), {"level": "1", "contact": "Cluster SRE", "severity": "warning"},
     "2027-01-15T08:04:00.000Z"),
    (send(3, "Principal engineer"), {"level": "3", "contact": "Principal engineer",
                                     "severity": "critical"}, "2027-01-15T08:04:00.000Z"),
    (send(2, "x" * 1000), {"level": "2", "contact": "x" * 256, "severity": "critical"},
     "2027-01-15T08:04:00.000Z"),
], ids=["level 1 warns", "level 3 is critical", "a tenant's long contact is cut"])
def test_a_postable_alert_has_the_routing_labels(s: Send, labels: dict[str, str],
                                                 ends_at: str) -> None:
    alert = postable(s)
    assert alert["labels"] == {"alertname": "StemeDBClusterEscalated", "namespace": "prod",
                               "stemedbcluster": "orders", **labels}
    assert alert["startsAt"] == "2027-01-15T08:00:00.000Z"
    assert alert["endsAt"] == ends_at
    assert set(alert["annotations"]) == {"summary", "description", "runbook_url", "reason"}
    assert alert["annotations"]["runbook_url"].endswith(
        "/docs/runbooks/StemeDBRemediationEscalated.md")
    assert all(isinstance(v, str) for v in [*alert["labels"].values(),
                                             *alert["annotations"].values()])


@pytest.mark.parametrize("url, ok", [
    ("http://alertmanager:9093", True),
    ("https://am.example/prefix/", True),
    ("ftp://am:9093", False),
    ("http://user:pw@am:9093", False),
    ("http://am:9093/?x=1", False),
    ("am:9093", False),
])
def test_alertmanager_urls_from_the_command_line(url: str, ok: bool) -> None:
    if ok:
        assert not check_url(url).endswith("/")
    else:
        with pytest.raises(ValueError):
            check_url(url)


@pytest.mark.parametrize("files, header", [
    ({}, None),
    ({"token": "s3cret-token\n"}, "Bearer s3cret-token"),
    ({"username": "pager", "password": "pw\n"}, "Basic cGFnZXI6cHc="),
    ({"token": "two\nlines"}, "error"),
    ({"token": ""}, "error"),
    ({"username": "a:b", "password": "pw"}, "error"),
    ({"username": "pager"}, "error"),
], ids=["no files", "bearer", "basic", "header injection", "empty", "colon in user",
        "no password"])
def test_credentials_come_from_the_mounted_secret(tmp_path: Path, files: dict[str, str],
                                                   header: str | None) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    creds = Credentials(tmp_path)
    if header == "error":
        with pytest.raises(AlertmanagerError) as err:
            creds.header()
        assert "two" not in str(err.value) and "pw" not in str(err.value)
    elif header is None:
        with pytest.raises(AlertmanagerError):
            creds.header()
    else:
        assert creds.header() == {"Authorization": header}
    assert Credentials(None).header() == {}


class Recorder:
    """Alertmanager instances behind a mock transport, answering from a script."""

    def __init__(self, answers: dict[str, list[int | type[Exception]]]) -> None:
        self.answers = answers
        self.posts: list[tuple[str, list[dict[str, Any]], str | None]] = []
        self.events: list[tuple[str, str]] = []
        self.registry = CollectorRegistry()

    def handler(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.posts.append((host, json.loads(request.content),
                           request.headers.get("authorization")))
        script = self.answers.get(host, [200])
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, int):
            return httpx.Response(answer)
        raise answer("refused", request=request)

    def post_event(self, body: Mapping[str, Any], type: str, reason: EventReason,
                   message: str) -> None:
        assert isinstance(reason, EventReason)
        self.events.append((reason.value, message))

    def pager(self, *urls: str, credentials: Credentials | None = None) -> Pager:
        return Pager(self.post_event, alertmanager_urls=urls, credentials=credentials,
                     timing=Timing(60.0), registry=self.registry,
                     transport=httpx.MockTransport(self.handler), max_wait=0.01)

    def count(self, target: str, outcome: str) -> float:
        return self.registry.get_sample_value(
            "stemedb_operator_notifications_total",
            {"target": target, "outcome": outcome}) or 0.0


PAGE = Page(1, "Cluster SRE", "LagCritical", "node2 lag 12 s")
CLEAR = Page(0, "", "Healthy", "")


def update(pager: Pager, page: Page, now: float, before: int = 0) -> None:
    pager.update(C, BODY, page, now, level_before=before,
                 contact_before="Cluster SRE" if before else "", webhook_url=None)


async def test_every_alertmanager_gets_every_alert_with_the_credentials(
        tmp_path: Path) -> None:
    (tmp_path / "token").write_text("am-token")
    rec = Recorder({})
    pager = rec.pager("http://am-0:9093", "http://am-1:9093/", credentials=Credentials(tmp_path))
    update(pager, PAGE, T0)
    await pager.drain()
    assert sorted(host for host, _, _ in rec.posts) == ["am-0", "am-1"]
    assert all(auth == "Bearer am-token" for _, _, auth in rec.posts)
    assert all(alerts[0]["labels"]["level"] == "1" for _, alerts, _ in rec.posts)
    assert [r for r, _ in rec.events] == ["Notified", "Notified"]
    assert rec.count("http://am-0:9093", "delivered") == 1
    await pager.aclose()


@pytest.mark.parametrize("script, failed, delivered", [
    ([httpx.ConnectError, 200], 1, 1),
    ([httpx.ReadTimeout, 200], 1, 1),
    ([503, 503, 200], 2, 1),
    ([401, 429, 200], 2, 1),
    ([400, 200], 1, 0),
], ids=["connection refused", "timeout (posting again is harmless)", "unavailable twice",
        "unauthorized, then too many requests", "refused as malformed: not retried"])
async def test_failures_are_retried_until_delivered_and_reported_once(
        script: list[int | type[Exception]], failed: int, delivered: int) -> None:
    rec = Recorder({"am": list(script)})
    pager = rec.pager("http://am:9093")
    update(pager, PAGE, T0)
    await pager.drain()
    assert len(rec.posts) == failed + delivered
    reasons = [r for r, _ in rec.events]
    assert reasons == ["NotificationFailed", "Notified"][:1 + delivered]  # one per streak
    assert "http://am:9093" in rec.events[0][1]
    assert rec.count("http://am:9093", "failed") == failed
    assert rec.count("http://am:9093", "delivered") == delivered
    await pager.aclose()


async def test_a_resolve_queued_behind_a_failing_fire_is_sent_with_it() -> None:
    rec = Recorder({"am": [httpx.ConnectError, 200]})
    pager = rec.pager("http://am:9093")
    update(pager, PAGE, T0)
    update(pager, CLEAR, T0 + 10, before=1)  # while the first POST is failing
    await pager.drain()
    last = rec.posts[-1][1]
    statuses = {a["labels"]["level"]: a["endsAt"] for a in last}
    assert statuses == {"1": "2027-01-15T08:00:10.000Z"}  # the resolve replaced the fire
    await pager.aclose()


async def test_a_deleted_cluster_is_resolved_without_an_event() -> None:
    rec = Recorder({})
    pager = rec.pager("http://am:9093")
    update(pager, PAGE, T0)
    await pager.drain()
    pager.gone(C, {}, T0 + 5)
    await pager.drain()
    assert rec.posts[-1][1][0]["endsAt"] == "2027-01-15T08:00:05.000Z"
    assert [r for r, _ in rec.events] == ["Notified"]
    await pager.aclose()


async def test_healthy_clusters_cost_no_request() -> None:
    rec = Recorder({})
    pager = rec.pager("http://am:9093")
    for i in range(100):
        update(pager, CLEAR, T0 + i)
    await pager.drain()
    assert rec.posts == []
    await pager.aclose()
