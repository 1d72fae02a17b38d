"""The probes' endpoints: `/healthz` (alive) and `/readyz` (warm).

Kopf's liveness endpoint answers as soon as its tasks run, before its watch has
listed the clusters and started their daemons, so a readiness probe on it called
a cold replica ready: a rolling update then stopped an old replica (the leader,
or a shard) while the new one could poll nothing yet. `/readyz` answers 200 only
once a daemon runs for every cluster (`adapters/warmth.py`), the moment from
which this replica competes for the leader Lease or joins the shard ring.
`/healthz` answers as Kopf's did: 200 while the event loop runs.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aiohttp import web

log = structlog.get_logger("stemedb.health")


class HealthServer:
    """`/healthz` and `/readyz` on one port, served by the operator's event loop."""

    def __init__(self, port: int, ready: Callable[[], str | None],
                 host: str = "0.0.0.0") -> None:  # the kubelet probes the Pod IP
        """`ready` answers None when ready, else why not (the 503's body)."""
        self.port, self.host, self._ready = port, host, ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.debug("serving the probes", port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({})

    async def _readyz(self, _: web.Request) -> web.Response:
        why = self._ready()
        if why is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {why}\n")
