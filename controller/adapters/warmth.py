"""Warm before taking work: a replica joins its shard ring, or competes for the
leader Lease, only once a daemon runs for every cluster it watches.

Kopf lists the clusters and starts one daemon per cluster in the seconds after
start-up: about 9 s at 3,000 clusters and up to a minute at 6,000 on 2 cores. A
shard that created its Lease before then took clusters from the running shards,
which stopped polling them at once, and left them unpolled until its own daemons
came (up to 17.9 s at 3,000 clusters and 67 s at 6,000, docs/performance.md); a
cold replica that won the leader Lease in a rolling update did the same to every
cluster. Joining once warm, the running shards poll the moved clusters until the
newcomer can.

The number of clusters comes from a LIST of one item (`KubeClient.count_clusters`,
the API server's `remainingItemCount`), read again every few seconds, so a cluster
deleted meanwhile does not hold the replica back. A replica never waits longer
than `WARM_MAX_SECONDS`: past it, it joins as it did before, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable

import structlog

from controller.adapters.kube import KubeError, NotLoggedIn

log = structlog.get_logger("stemedb.warmth")

# Past this, join anyway: a replica that never joins remediates nothing. 6,000
# clusters took 58-67 s to get their daemons on the bench's 2 cores.
WARM_MAX_SECONDS = 180.0
# How often the number of clusters is read again while waiting.
RECOUNT_SECONDS = 5.0


class Presence(enum.IntFlag):
    """What makes a cluster present in this process."""

    DAEMON = 1  # its daemon runs
    DELETION = 2  # it is being deleted: Kopf stops its daemon, its handler runs


class Warmth:
    """Which clusters are present in this process, against how many exist.

    A cluster being deleted has no daemon (Kopf stops it), only the deletion
    handler: that counts too, else one stuck deletion would hold the replica back
    for `max_seconds`. Each cluster is counted once, whatever makes it present:
    the daemon of a cluster whose deletion has just begun may end after its
    handler has begun."""

    def __init__(self, count: Callable[[], Awaitable[int]],
                 max_seconds: float = WARM_MAX_SECONDS,
                 recount_seconds: float = RECOUNT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._count, self._clock = count, clock
        self.max_seconds, self.recount_seconds = max_seconds, recount_seconds
        self._present: dict[str, Presence] = {}
        self._listed: int | None = None
        self._reached = asyncio.Event()
        self.warm = False

    @property
    def present(self) -> int:
        return len(self._present)

    def not_ready(self) -> str | None:
        """None once warm, else why not (for `/readyz`)."""
        if self.warm:
            return None
        if self._listed is None:
            return "counting the clusters"
        return f"{self.present} of {self._listed} clusters have a daemon"

    def seen(self, uid: str, by: Presence = Presence.DAEMON) -> None:
        """A cluster's daemon began (or its deletion handler did)."""
        self._present[uid] = self._present.get(uid, Presence(0)) | by
        if self._listed is not None and len(self._present) >= self._listed:
            self._reached.set()

    def gone(self, uid: str, by: Presence = Presence.DAEMON) -> None:
        """A cluster's daemon ended (or its deletion handler finished)."""
        left = self._present.get(uid, Presence(0)) & ~by
        if left:
            self._present[uid] = left
        else:
            self._present.pop(uid, None)

    async def wait(self, what: str) -> None:
        """Return once a daemon runs for every cluster that exists, or after
        `max_seconds`. `what` names what waits, for the log."""
        began = self._clock()
        log.info(f"waiting for every cluster's daemon before {what}")
        try:
            async with asyncio.timeout(self.max_seconds):
                while not await self._reached_count():
                    self._reached.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.recount_seconds):
                            await self._reached.wait()
        except TimeoutError:
            log.warning(f"{what} before every cluster's daemon started",
                        present=self.present, clusters=self._listed,
                        waited_seconds=round(self._clock() - began, 1),
                        hint="Kopf is slow to start the daemons (CPU limit too low, or "
                             "many clusters); their clusters are polled once they start")
        else:
            log.info(f"every cluster's daemon started: {what}", present=self.present,
                     clusters=self._listed, waited_seconds=round(self._clock() - began, 1))
        finally:
            self.warm = True

    async def _reached_count(self) -> bool:
        while True:
            try:
                self._listed = await self._count()
            except NotLoggedIn:
                # Kopf logs in after the startup handlers; the first count may come first.
                await asyncio.sleep(0.1)
                continue
            except KubeError as err:
                log.warning("counting the clusters failed; trying again", error=str(err))
                return False
            return len(self._present) >= self._listed
