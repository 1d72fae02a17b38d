"""Alertmanager's v2 API (`POST /api/v2/alerts`): the operator's own pager target.

Configured by the platform (`--alertmanager-url`, repeatable; every instance gets
every alert, as Prometheus sends to each member of an Alertmanager cluster), so
the tenant destination policy does not apply. Credentials come from a mounted
Secret (`--alertmanager-credentials DIR`: a `token` file for a bearer token, or
`username` and `password` files for basic auth), read again before each POST so
a rotated Secret is picked up; never logged, never in an Event.

One `AlertQueue` per instance holds the latest version of each alert not yet
delivered (a newer version of the same alert replaces the older one) and posts
them all at once from a background task, retrying with backoff until delivered:
a slow or down Alertmanager never holds up a poll. Posting is idempotent
(Alertmanager merges alerts by their labels), so any failure may be retried.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_random_exponential

from controller.notifications import Send

log = structlog.get_logger("stemedb.alertmanager")

ALERTNAME = "StemeDBClusterEscalated"
# The runbook of the PrometheusRule's StemeDBRemediationEscalated: the same
# condition (an escalation level above 0), seen from the operator's metric.
RUNBOOK_URL = ("https://github.com/stemedb/stemedb-operator/blob/main/docs/runbooks/"
               "StemeDBRemediationEscalated.md")
MAX_PENDING = 10_000  # alerts per instance; beyond it the oldest are dropped
_LABEL_MAX = 256
_TEXT_MAX = 1024
_SECRET = re.compile(r"[\x21-\x7e]{1,8192}")  # printable ASCII, no spaces: a header value


class AlertmanagerError(Exception):
    """The POST failed; the message is safe for an Event and a log line."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


# Answers that a retry cannot change: the alerts are refused as they are (a 401 or
# 403 may change with a rotated Secret, a 408 or 429 with time: those are retried).
_FINAL = frozenset({400, 404, 405, 413, 415, 422})


def check_url(url: str) -> str:
    """An Alertmanager base URL as given on the command line; ValueError says why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        # Not echoed: the error would print the password.
        raise ValueError("a URL with user:password@ is refused (use "
                         "--alertmanager-credentials)")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} has a query or fragment")
    return url.rstrip("/")


def severity(level: int) -> str:
    return "warning" if level <= 1 else "critical"


def _rfc3339(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def postable(send: Send) -> dict[str, Any]:
    """One postableAlert of Alertmanager's v2 API. Values from the tenant's spec
    (name, contact, message) are cut to a bounded length; labels are strings."""
    a = send.alert
    labels = {
        "alertname": ALERTNAME,
        "namespace": a.cluster.namespace,
        "stemedbcluster": a.cluster.name,
        "level": str(a.level),
        "contact": a.contact[:_LABEL_MAX],
        "severity": severity(a.level),
    }
    summary = (f"StemeDB cluster {a.cluster.namespace}/{a.cluster.name} escalated to level "
               f"{a.level}: call {a.contact}")
    annotations = {
        "summary": summary[:_TEXT_MAX],
        "description": (a.message or summary)[:_TEXT_MAX],
        "runbook_url": RUNBOOK_URL,
    }
    if a.reason:
        annotations["reason"] = a.reason[:_LABEL_MAX]
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _rfc3339(a.starts_at),
        "endsAt": _rfc3339(send.ends_at),
    }


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the Secret is mounted; None: no authentication."""

    directory: Path | None = None

    def header(self) -> dict[str, str]:
        """The Authorization header, read from the files now (AlertmanagerError if
        they are unreadable or malformed; the message never holds their content)."""
        if self.directory is None:
            return {}
        d = self.directory
        try:
            if (d / "token").exists():
                token = (d / "token").read_text("utf-8").strip()
                if not _SECRET.fullmatch(token):
                    raise AlertmanagerError(
                        f"{d}/token is empty or has spaces or control characters; not sent")
                return {"Authorization": f"Bearer {token}"}
            if (d / "username").exists():
                user = (d / "username").read_text("utf-8").strip()
                password = (d / "password").read_text("utf-8").strip()
                if ":" in user or not _SECRET.fullmatch(user) or not _SECRET.fullmatch(password):
                    raise AlertmanagerError(
                        f"{d}/username or password is empty or has spaces, ':' or control "
                        "characters; not sent")
                pair = base64.b64encode(f"{user}:{password}".encode()).decode()
                return {"Authorization": f"Basic {pair}"}
        except (OSError, UnicodeDecodeError) as err:
            raise AlertmanagerError(
                f"credentials in {d} unreadable ({type(err).__name__})") from None
        raise AlertmanagerError(f"{d} has neither a token file nor username and password files")


@dataclass(frozen=True, slots=True)
class Queued:
    """A send waiting for delivery, with what the caller needs to report on it."""

    send: Send
    context: Any = None


Reporter = Callable[[str, Sequence[Queued], str | None], None]


class AlertQueue:
    """The alerts not yet delivered to one Alertmanager, and the task delivering them."""

    def __init__(self, url: str, client: httpx.AsyncClient, credentials: Credentials,
                 report: Reporter, count: Callable[[str, str], None],
                 max_wait: float = 30.0) -> None:
        self.url = url
        self._client = client
        self._credentials = credentials
        self._report = report
        self._count = count
        self._max_wait = max_wait
        self._pending: dict[tuple[Any, ...], Queued] = {}
        self._task: asyncio.Task[None] | None = None

    def put(self, items: Sequence[Queued]) -> None:
        for item in items:
            key = (*item.send.alert.identity, item.send.alert.starts_at)
            self._pending.pop(key, None)  # re-inserted last: the newest at the end
            self._pending[key] = item
        while len(self._pending) > MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
            self._count(self.url, "dropped")
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._deliver(), name=f"alertmanager {self.url}")

    def pending(self) -> int:
        return len(self._pending)

    def task(self) -> asyncio.Task[None] | None:
        """The delivering task, while there is one."""
        return self._task if self._task is not None and not self._task.done() else None

    async def _deliver(self) -> None:
        while self._pending:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(AlertmanagerError),
                wait=wait_random_exponential(multiplier=0.5, max=self._max_wait),
                stop=stop_never,
            ):
                with attempt:
                    await self._deliver_pending(attempt.retry_state.attempt_number)

    async def _deliver_pending(self, attempt: int) -> None:
        """Post every pending alert once; those not replaced meanwhile are done."""
        batch = dict(self._pending)
        if not batch:
            return
        try:
            await self._post([postable(q.send) for q in batch.values()])
        except AlertmanagerError as err:
            self._count(self.url, "failed")
            log.warning("alertmanager not told", alertmanager=self.url, alerts=len(batch),
                        error=str(err), attempt=attempt, retrying=err.retry)
            if not err.retry:
                self._done(batch)
                self._report(self.url, list(batch.values()), f"{err}; not retried")
                return
            self._report(self.url, list(batch.values()), str(err))
            raise
        self._count(self.url, "delivered")
        self._done(batch)
        self._report(self.url, list(batch.values()), None)

    def _done(self, batch: dict[tuple[Any, ...], Queued]) -> None:
        """Forget what was sent, unless a newer version was queued meanwhile."""
        for key, item in batch.items():
            if self._pending.get(key) is item:
                del self._pending[key]

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        headers = self._credentials.header()
        try:
            resp = await self._client.post(f"{self.url}/api/v2/alerts", json=alerts,
                                           headers=headers)
        except httpx.HTTPError as err:
            raise AlertmanagerError(f"unreachable ({type(err).__name__})") from None
        if resp.status_code >= 300:
            raise AlertmanagerError(f"answered HTTP {resp.status_code}",
                                    retry=resp.status_code not in _FINAL)

    async def aclose(self, flush_seconds: float = 2.0) -> None:
        """Give pending alerts a moment to go out, then stop."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), flush_seconds)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

