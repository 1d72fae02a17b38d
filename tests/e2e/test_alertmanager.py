"""Paging through a real Alertmanager (built from the Go module proxy by
hack/install-alertmanager.sh): the operator's alert fires with its level and contact
labels, is re-sent while the escalation lasts, routes by level to the receiver the
routing example in docs/notifications.md names, and resolves.

What Alertmanager holds is read from its own `GET /api/v2/alerts`; what it sent on,
from a webhook receiver it notifies (`send_resolved: true`).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness import Env, Operator, fast_spec, wait_for

from controller.adapters.notify import Pager
from controller.domain import EventReason
from controller.notifications import ClusterRef, Page, Timing
from localkube.processes import Process, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "notifications.md"


def routing_example() -> dict[str, Any]:
    """The Alertmanager configuration shown in docs/notifications.md (the first yaml
    block), so the example the docs give is the one tested."""
    block = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/notifications.md has a yaml example"
    return dict(yaml.safe_load(block.group(1)))


@dataclass
class Receiver:
    """Where Alertmanager delivers: every webhook notification, by path."""

    port: int = 0
    got: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def notifications(self, path: str, status: str, level: str) -> list[dict[str, Any]]:
        return [n for p, n in self.got if p == path and n["status"] == status
                and n["commonLabels"].get("level") == level]


@pytest.fixture(scope="module")
def alertmanager_bin() -> str:
    out = subprocess.run(["bash", str(ROOT / "hack" / "install-alertmanager.sh")],
                         check=True, capture_output=True, text=True, timeout=1200)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver in a thread (it must answer while a test blocks)."""
    rec = Receiver()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            rec.got.append((self.path, json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def start_alertmanager(binary: str, workdir: Path, receiver_port: int) -> tuple[Process, str]:
    config = routing_example()
    # The example's receivers, pointed at the test's receiver (one path per receiver),
    # with intervals short enough for a test.
    for r in config["receivers"]:
        for hook in r.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{receiver_port}/{r['name']}"
    config["route"].update(group_wait="1s", group_interval="1s")
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = Process.spawn(
        [binary, f"--config.file={workdir / 'alertmanager.yml'}",
         f"--storage.path={workdir / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="], workdir / "alertmanager.log")
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("alertmanager ready", ready, timeout=60)
    except AssertionError:
        print(proc.logs()[-3000:])
        proc.stop()
        raise
    return proc, url


@pytest.fixture
def alertmanager(alertmanager_bin: str, tmp_path: Path,
                 receiver: Receiver) -> Iterator[str]:
    proc, url = start_alertmanager(alertmanager_bin, tmp_path, receiver.port)
    try:
        yield url
    finally:
        proc.stop(timeout=10)


async def active(am: str, namespace: str, name: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{am}/api/v2/alerts", params={
            "filter": [f'namespace="{namespace}"', f'stemedbcluster="{name}"']})
    resp.raise_for_status()
    return list(resp.json())


async def until(what: str, probe: Any, timeout: float = 30.0) -> Any:
    """Await `probe` until truthy (an observable outcome, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


SRE = Page(1, "Cluster SRE", "LagCritical", "node2 lag 12.0 s above critical 10 s")
DSE = Page(2, "Distributed systems engineer", "SyncAttemptsExhausted", "3 syncs failed")
CLEAR = Page(0, "", "Healthy", "")


async def test_an_alert_fires_is_resent_routes_by_level_and_resolves(
        alertmanager: str, receiver: Receiver) -> None:
    events: list[tuple[str, str]] = []
    pager = Pager(lambda body, type, reason, message: events.append((reason.value, message)),
                  alertmanager_urls=[alertmanager], timing=Timing(resend_seconds=1.0))
    cluster = ClusterRef("prod", "orders")
    body = {"metadata": {"namespace": "prod", "name": "orders"}}

    def poll(page: Page, before: int) -> None:
        contact = {1: SRE.contact, 2: DSE.contact}.get(before, "")
        pager.update(cluster, body, page, time.time(), level_before=before,
                     contact_before=contact, webhook_url=None)

    # Fired: the labels Alertmanager routes on, the runbook, endsAt 4 re-sends ahead.
    poll(SRE, 0)
    [fired] = await until("the level 1 alert", lambda: active(alertmanager, "prod", "orders"))
    assert fired["labels"] == {"alertname": "StemeDBClusterEscalated", "namespace": "prod",
                               "stemedbcluster": "orders", "level": "1",
                               "contact": "Cluster SRE", "severity": "warning"}
    assert fired["status"]["state"] == "active"
    assert fired["annotations"]["runbook_url"].endswith("/StemeDBRemediationEscalated.md")
    await until("level 1 routed to the cluster SRE",
                lambda: _async(receiver.notifications("/cluster-sre", "firing", "1")))

    # Re-sent while it lasts: polls over 6 s (endsAt is only 4 s ahead at each send)
    # keep it active, and Alertmanager's endsAt moves on.
    first_end = fired["endsAt"]
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        poll(SRE, 1)
        await asyncio.sleep(0.5)  # the poll interval of this stand-in loop
    [still] = await active(alertmanager, "prod", "orders")
    assert still["labels"]["level"] == "1" and still["endsAt"] > first_end
    assert still["startsAt"] == fired["startsAt"]

    # Level 2: another label set; level 1 resolves, level 2 routes to the engineers.
    poll(DSE, 1)
    await until("only the level 2 alert", lambda: _levels(alertmanager, ["2"]))
    await until("level 1 resolved at the SRE's receiver",
                lambda: _async(receiver.notifications("/cluster-sre", "resolved", "1")))
    await until("level 2 routed to the engineers",
                lambda: _async(receiver.notifications("/engineers", "firing", "2")))

    # Cleared: resolved at once (endsAt = now), not left to expire.
    poll(CLEAR, 2)
    await until("no alert left", lambda: _levels(alertmanager, []), timeout=5)
    await until("level 2 resolved at the engineers' receiver",
                lambda: _async(receiver.notifications("/engineers", "resolved", "2")))
    await pager.drain()
    assert [r for r, _ in events].count(EventReason.NOTIFIED.value) == 4  # 2 fired, 2 resolved
    assert EventReason.NOTIFICATION_FAILED.value not in [r for r, _ in events]
    await pager.aclose()


async def _async(value: Any) -> Any:
    return value


async def _levels(am: str, want: list[str]) -> bool:
    return sorted(a["labels"]["level"] for a in await active(am, "prod", "orders")) == want


def test_the_operator_pages_through_alertmanager_and_resolves_on_deletion(
        env: Env, alertmanager: str) -> None:
    """The operator as it ships, with --alertmanager-url: corruption escalates the
    cluster to level 3 and it pages; deleting the cluster resolves the page."""
    spec = fast_spec(env.sim, env.cluster, remediation={"throttle": {"enabled": False}})
    env.apply(spec)
    env.operators.append(Operator.start(
        env.kubeconfig, env.namespace, env.workdir / "operator.log",
        "--alertmanager-url", alertmanager, "--notification-resend-seconds", "30"))
    env.wait_status("a healthy first look",
                    lambda o: any(c["type"] == "Ready" and c["status"] == "True"
                                  for c in o.get("status", {}).get("conditions", [])))

    env.fault("corruption", replica="node2", at_progress=0.2)
    env.fault("disk_saturation", replica="node2", capacity_factor=0.3)

    def paged() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", params={
            "filter": [f'namespace="{env.namespace}"', 'stemedbcluster="db"']}).json()
        return [a for a in alerts if a["labels"]["level"] == "3"]

    [alert] = wait_for("a level 3 page in Alertmanager", paged, timeout=150)
    assert alert["labels"]["contact"] == "Principal engineer"
    assert alert["labels"]["severity"] == "critical"
    assert "node2" in alert["annotations"]["description"]
    notified = json.dumps(env.cp.kubectl("-n", env.namespace, "get", "events", "-o", "json",
                                         "--field-selector=reason=Notified").stdout)
    assert "Alertmanager" in notified

    # Resolved by the deletion, long before its endsAt (4 x 30 s after the last send)
    # would have let it expire.
    [alert] = paged()
    expires = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()
    env.cp.kubectl("-n", env.namespace, "delete", "stemedbcluster", "db", "--wait=false")
    wait_for("the page resolved", lambda: not paged(), timeout=60)
    assert time.time() < expires - 30
