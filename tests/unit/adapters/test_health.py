"""The probes' endpoints over real HTTP: `/healthz` always, `/readyz` only once
ready, with the reason in the 503 a human reads with `curl` or `kubectl describe`."""

from __future__ import annotations

import httpx
import pytest

from controller.adapters.health import HealthServer
from localkube.processes import free_port


@pytest.mark.parametrize(("why_not", "healthz", "readyz", "body"), [
    pytest.param(None, 200, 200, "ready\n", id="warm"),
    pytest.param("12 of 3000 clusters have a daemon", 200, 503,
                 "not ready: 12 of 3000 clusters have a daemon\n", id="cold"),
    pytest.param("counting the clusters", 200, 503, "not ready: counting the clusters\n",
                 id="before-the-count"),
])
async def test_healthz_answers_and_readyz_says_why_not(
    why_not: str | None, healthz: int, readyz: int, body: str,
) -> None:
    server = HealthServer(free_port(), lambda: why_not, host="127.0.0.1")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            alive = await http.get("/healthz")
            ready = await http.get("/readyz")
        assert (alive.status_code, alive.json()) == (healthz, {})
        assert (ready.status_code, ready.text) == (readyz, body)
    finally:
        await server.stop()


async def test_readiness_follows_the_replica_and_the_port_is_freed_on_stop() -> None:
    state: list[str | None] = ["0 of 1 clusters have a daemon"]
    port = free_port()
    server = HealthServer(port, lambda: state[0], host="127.0.0.1")
    await server.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/readyz")).status_code == 503
        state[0] = None
        assert (await http.get("/readyz")).status_code == 200
    await server.stop()
    again = HealthServer(port, lambda: None, host="127.0.0.1")
    await again.start()  # the port is free again: a restarted operator binds it
    await again.stop()
