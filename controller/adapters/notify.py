"""Escalation notifications: the tenant's webhook and the platform's Alertmanagers.

`Notifier` is the tenant's webhook (`spec.escalation.webhookUrl`): one JSON POST
when a cluster's escalation level rises ("status": "firing") and one when it is
back to 0 ("status": "resolved"), so the person on the runbook's path is told
without watching Events. The payload carries what a pager needs (cluster, level,
who to call, why) and never a credential. Delivery is retried briefly on
connection errors only: a webhook that answered, even with an error, may have
paged someone already.

`Pager` starts every notification from a poll and delivers it in the background
(a slow pager never holds up a poll): the webhook in order per cluster, and the
alerts `controller.notifications` decides on to every Alertmanager
(`adapters/alertmanager.py`). Outcomes are Events (`Notified` on news, one
`NotificationFailed` per failing streak) and the counter
`stemedb_operator_notifications_total{target, outcome}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from controller.adapters.alertmanager import AlertQueue, Credentials, Queued
from controller.adapters.destinations import DestinationDenied, Destinations, check_url_host
from controller.domain import EventReason, EventType
from controller.domain.destinations import port_of
from controller.notifications import ClusterRef, Page, Paging, Status, Timing, webhook_status

USER_AGENT = "stemedb-operator-notifier"


@dataclass(frozen=True)
class Escalated:
    namespace: str
    name: str
    level: int
    contact: str
    reason: str
    message: str
    status: Status = Status.FIRING

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "StemeDBClusterEscalated",
            "status": self.status.value,
            "cluster": {"namespace": self.namespace, "name": self.name},
            "level": self.level,
            "contact": self.contact,
            "reason": self.reason,
            "message": self.message,
        }


class NotificationError(Exception):
    """The webhook could not be told; the message is safe for an Event."""


class Notifier:
    def __init__(self, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 5.0, attempts: int = 3,
                 destinations: Destinations | None = None) -> None:
        self._destinations = destinations
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout, headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )
        self._attempts = attempts

    async def escalated(self, url: str, event: Escalated,
                        authorization: str | None = None) -> None:
        if self._destinations is not None:
            # Checked on the resolved addresses before each notification. A name
            # re-resolving between this check and the connection risks a page sent
            # astray; the only credential it can carry is the tenant's own (a Secret
            # in its namespace that it labelled for the operator), for its own URL.
            target = httpx.URL(url)
            try:
                await check_url_host(self._destinations, target.host,
                                     port_of(target.scheme, target.port))
            except DestinationDenied as err:
                raise NotificationError(
                    f"spec.escalation.webhookUrl: destination denied ({err})") from None
            except OSError:
                raise NotificationError(
                    "spec.escalation.webhookUrl: host name does not resolve") from None
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(httpx.ConnectError),
                stop=stop_after_attempt(self._attempts),
                wait=wait_random_exponential(multiplier=0.2, max=2),
                reraise=True,
            ):
                with attempt:
                    resp = await self._client.post(
                        url, json=event.payload(),
                        headers={"Authorization": authorization} if authorization else None)
        except httpx.HTTPError as err:
            raise NotificationError(
                f"escalation webhook unreachable ({type(err).__name__})") from None
        if resp.status_code >= 300:
            raise NotificationError(f"escalation webhook answered HTTP {resp.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


EventPoster = Callable[[Mapping[str, Any], str, EventReason, str], None]
WEBHOOK = "webhook"


class Pager:
    """Every notification the operator sends, started from each poll (never awaited
    by it) and delivered in the background."""

    def __init__(
        self,
        post_event: EventPoster,
        *,
        webhook: Notifier | None = None,
        alertmanager_urls: Sequence[str] = (),
        credentials: Credentials | None = None,
        timing: Timing | None = None,
        registry: CollectorRegistry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        max_wait: float = 30.0,
    ) -> None:
        self.post_event = post_event
        self.webhook = webhook
        self.paging = Paging(timing)
        self._outcomes = Counter(
            "stemedb_operator_notifications_total",
            "Notification requests by target (an Alertmanager URL as configured, or "
            "'webhook' for the tenants' webhooks) and outcome (delivered, failed, "
            "dropped: an Alertmanager queue over its bound).",
            ["target", "outcome"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout, headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )
        self.queues = [
            AlertQueue(url, self._client, credentials or Credentials(), self._reported,
                       self._count, max_wait=max_wait)
            for url in alertmanager_urls
        ]
        self._failing: set[tuple[ClusterRef, str]] = set()
        self._webhooks: dict[ClusterRef, asyncio.Task[None]] = {}
        # Clusters escalated with a webhook: what to resolve if they are deleted.
        self._escalated: dict[ClusterRef, tuple[str, Escalated, str | None]] = {}

    def _count(self, target: str, outcome: str) -> None:
        self._outcomes.labels(target, outcome).inc()

    def update(
        self,
        cluster: ClusterRef,
        body: Mapping[str, Any],
        page: Page,
        now: float,
        *,
        level_before: int,
        contact_before: str,
        webhook_url: str | None,
        webhook_authorization: str | None = None,
    ) -> None:
        """After a poll: start what its escalation calls for (nothing to await)."""
        if page.level <= 0 and level_before <= 0 and not self.paging.is_firing(cluster):
            return  # the healthy steady state
        if self.queues:
            sends = self.paging.update(cluster, page, now, level_before=level_before,
                                       contact_before=contact_before)
            if sends:
                items = [Queued(s, body) for s in sends]
                for queue in self.queues:
                    queue.put(items)
        if not webhook_url or self.webhook is None:
            self._escalated.pop(cluster, None)
            return
        status = webhook_status(level_before, page.level)
        if page.level > 0:
            self._escalated[cluster] = (webhook_url, Escalated(
                cluster.namespace, cluster.name, page.level, page.contact, page.reason,
                page.message), webhook_authorization)
        else:
            self._escalated.pop(cluster, None)
        if status is not None:
            level, contact = ((page.level, page.contact) if status is Status.FIRING
                              else (level_before, contact_before))
            event = Escalated(cluster.namespace, cluster.name, level, contact, page.reason,
                              page.message, status)
            self._tell_webhook(cluster, body, webhook_url, event, webhook_authorization)

    def gone(self, cluster: ClusterRef, body: Mapping[str, Any], now: float) -> None:
        """The cluster was deleted: resolve its alert, and tell its webhook the
        escalation is over."""
        sends = self.paging.gone(cluster, now)
        if sends:
            for queue in self.queues:
                queue.put([Queued(s, body) for s in sends])
        escalated = self._escalated.pop(cluster, None)
        if escalated is not None:
            url, event, authorization = escalated
            self._tell_webhook(cluster, body, url, replace(
                event, status=Status.RESOLVED, reason="Deleted",
                message="the StemeDBCluster was deleted"), authorization)

    def _tell_webhook(self, cluster: ClusterRef, body: Mapping[str, Any], url: str,
                      event: Escalated, authorization: str | None = None) -> None:
        previous = self._webhooks.get(cluster)
        task = asyncio.create_task(
            self._webhook_after(previous, body, url, event, authorization))
        self._webhooks[cluster] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._webhooks.get(cluster) is t:
                del self._webhooks[cluster]

        task.add_done_callback(done)

    async def _webhook_after(self, previous: asyncio.Task[None] | None,
                             body: Mapping[str, Any], url: str, event: Escalated,
                             authorization: str | None = None) -> None:
        """Tell the webhook after the cluster's previous message (in order)."""
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        assert self.webhook is not None
        try:
            await self.webhook.escalated(url, event, authorization)
        except NotificationError as err:
            self._count(WEBHOOK, "failed")
            if body:  # none for a deleted cluster
                self.post_event(body, EventType.WARNING.value,
                                EventReason.NOTIFICATION_FAILED, str(err))
            return
        self._count(WEBHOOK, "delivered")
        told = (f"level {event.level}, call {event.contact}" if event.status is Status.FIRING
                else f"resolved (level {event.level}, {event.contact}, no longer needed)")
        if body:
            self.post_event(body, EventType.NORMAL.value, EventReason.NOTIFIED,
                            f"escalation webhook told: {told}")

    def _reported(self, url: str, items: Sequence[Queued], error: str | None) -> None:
        """An Alertmanager's answer: an Event per first firing or resolve delivered,
        one per cluster when a failing streak starts (none for a deleted cluster)."""
        for item in items:
            alert = item.send.alert
            streak = (alert.cluster, url)
            if error is not None:
                if streak in self._failing:
                    continue
                self._failing.add(streak)
                kind, reason = EventType.WARNING, EventReason.NOTIFICATION_FAILED
                message = f"Alertmanager {url} not told ({error}); retrying"
            else:
                self._failing.discard(streak)
                if not item.send.news:
                    continue
                told = (f"level {alert.level}, call {alert.contact}"
                        if item.send.status is Status.FIRING
                        else f"resolved (level {alert.level}, {alert.contact})")
                kind, reason = EventType.NORMAL, EventReason.NOTIFIED
                message = f"Alertmanager {url} told: {told}"
            if item.context:
                self.post_event(item.context, kind.value, reason, message)

    async def drain(self) -> None:
        """Wait until everything started so far is delivered (or, for the webhook,
        given up): for tests, which must not sleep to see it."""
        while True:
            tasks = [*self._webhooks.values(), *(t for q in self.queues if (t := q.task()))]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Give what is queued a moment to go out, then stop."""
        await asyncio.gather(*(q.aclose() for q in self.queues))
        pending = list(self._webhooks.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=2.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._client.aclose()
        if self.webhook is not None:
            await self.webhook.aclose()
