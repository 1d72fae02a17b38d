"""Escalation notifications: one JSON POST to `spec.escalation.webhookUrl` when a
cluster's escalation level rises, so the person on the runbook's path is told
without watching Events.

The payload carries what a pager needs (cluster, level, who to call, why) and
never a credential. Delivery is retried briefly on connection errors only: a
webhook that answered, even with an error, may have paged someone already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from controller.adapters.destinations import DestinationDenied, Destinations, check_url_host
from controller.domain.destinations import port_of

USER_AGENT = "stemedb-operator-notifier"


@dataclass(frozen=True)
class Escalated:
    namespace: str
    name: str
    level: int
    contact: str
    reason: str
    message: str

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "StemeDBClusterEscalated",
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

    async def escalated(self, url: str, event: Escalated) -> None:
        if self._destinations is not None:
            # Checked on the resolved addresses before each notification; the
            # webhook carries no credential, so a name re-resolving between this
            # check and the connection risks a page sent astray, not a secret.
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
                    resp = await self._client.post(url, json=event.payload())
        except httpx.HTTPError as err:
            raise NotificationError(
                f"escalation webhook unreachable ({type(err).__name__})") from None
        if resp.status_code >= 300:
            raise NotificationError(f"escalation webhook answered HTTP {resp.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
