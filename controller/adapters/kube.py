"""Kubernetes writes and reads the operator needs beyond what Kopf does for it.

Three calls over aiohttp (already loaded for Kopf), not the `kubernetes` package:
Kopf imports `kubernetes.client` whenever that package is installed, ~32 MiB of
RSS for these three requests. At steady state nothing here is called: status is
written only when it changes, and Secrets are read through a short-lived cache.

Credentials come from Kopf's login (handlers.py hands them over with `use`), so
this adapter and Kopf always talk to the same server as the same user.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from controller.domain.sharding import SHARD_FIELD, SHARD_SINCE_FIELD
from controller.domain.validation import object_name_problem

GROUP, VERSION, PLURAL = "stemedb.io", "v1alpha1", "stemedbclusters"
REQUEST_TIMEOUT_SECONDS = 30.0
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubeError(Exception):
    """A Kubernetes call failed; the message is safe for conditions and Events."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotLoggedIn(KubeError):
    """No credentials yet: Kopf's login handler has not run (it runs after start-up)."""


class SecretNotFound(KubeError):
    """The Secret or the key named in spec.auth does not exist."""


class SecretNotPermitted(KubeError):
    """The Secret exists but is not labelled for the operator's use.

    Without the opt-in label, anyone who may create a StemeDBCluster could have
    the operator send any Secret of their namespace to a URL of their choosing,
    even one they may not read themselves (docs/security.md).
    """


class RefusedName(KubeError):
    """A namespace or object name that is not a Kubernetes name: never sent.

    Names reach this adapter from a tenant's spec. `../../other/secrets/x` in a
    request path would be resolved by the API server into another namespace
    (the confused deputy of docs/security.md), so a name must be a DNS-1123
    subdomain, and is escaped as one path segment even then.
    """


def _segment(kind: str, value: str) -> str:
    """One path segment for a namespace or an object name, or RefusedName."""
    if not isinstance(value, str) or object_name_problem(value) is not None:
        raise RefusedName(f"refusing {kind} name {ascii(str(value))[:80]}: "
                          "not a Kubernetes object name")
    return quote(value, safe="")


def _path(*parts: tuple[str, str] | str) -> str:
    """A request path from fixed words and (kind, name) pairs, each name checked."""
    return "/" + "/".join(p if isinstance(p, str) else _segment(*p) for p in parts)


def _check_identity(what: str, obj: Any, namespace: str, name: str) -> None:
    """The API server answered with the object asked for, or KubeError.

    A second line after `_segment`: whatever the path resolved to, an answer
    about another object is never used.
    """
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or (meta.get("namespace"), meta.get("name")) != (
            namespace, name):
        raise KubeError(f"{what}: the API server answered with a different object; not used")


@dataclass(frozen=True)
class KubeEndpoint:
    """Where the API server is and how to authenticate to it.

    `headers` carry the Authorization header (bearer token or basic auth), so they
    are left out of the repr; client certificates live in the `ssl` context.
    """

    server: str
    ssl: ssl.SSLContext | bool = True
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    proxy: str | None = None
    trust_env: bool = False


@dataclass
class SecretCache:
    """Secret values kept for `ttl` seconds, so a rotated token is picked up soon
    without a GET on every poll."""

    ttl: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, str], tuple[float, dict[str, str]]] = field(default_factory=dict)

    def get(self, namespace: str, name: str) -> dict[str, str] | None:
        entry = self._entries.get((namespace, name))
        if entry is None or self.clock() - entry[0] > self.ttl:
            return None
        return entry[1]

    def put(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self._entries[(namespace, name)] = (self.clock(), data)

    def drop(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)

    def forget(self, namespace: str) -> None:
        for key in [k for k in self._entries if k[0] == namespace]:
            del self._entries[key]


def _failure(exc: BaseException) -> str:
    """A short description of a transport failure: no URL parts, headers or bodies."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to the API server ({type(exc).__name__})"
    return f"connection error ({type(exc).__name__})"


class KubeClient:
    """Status patches, Secret reads and Pod annotations over one bounded aiohttp pool.

    The session is made inside the running loop on first use and remade when `use`
    installs new credentials (Kopf logs in again after a 401 or at expiry). The old
    session is closed once the requests still running on it have finished.
    """

    def __init__(
        self,
        secrets: SecretCache | None = None,
        max_connections: int = 4,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        secret_label: tuple[str, str] | None = None,
    ) -> None:
        self._secrets = secrets or SecretCache()
        # (key, value) a Secret must carry to be used; None: any Secret named.
        self._secret_label = secret_label
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._endpoint: KubeEndpoint | None = None
        self._session: aiohttp.ClientSession | None = None
        self._session_endpoint: KubeEndpoint | None = None
        # Requests running per session; a replaced session closes when it reaches 0.
        self._in_flight: dict[aiohttp.ClientSession, int] = {}

    def use(self, endpoint: KubeEndpoint) -> None:
        """Install (or replace) the credentials; the next call uses them."""
        self._endpoint = endpoint

    async def aclose(self) -> None:
        sessions = {s for s in (self._session, *self._in_flight) if s is not None}
        self._session, self._session_endpoint = None, None
        self._in_flight.clear()
        for session in sessions:
            await session.close()

    def _acquire(
        self,
    ) -> tuple[aiohttp.ClientSession, KubeEndpoint, aiohttp.ClientSession | None]:
        """The session for the current endpoint, counted as in use, and a replaced
        session that no request uses any more (for the caller to close)."""
        endpoint = self._endpoint
        if endpoint is None:
            raise NotLoggedIn("not logged in to the Kubernetes API yet")
        retired = None
        if self._session is None or self._session_endpoint != endpoint:
            retired = self._session
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=endpoint.ssl),
                headers=dict(endpoint.headers),
                timeout=self._timeout,
                trust_env=endpoint.trust_env,
            )
            self._session_endpoint = endpoint
        session = self._session
        self._in_flight[session] = self._in_flight.get(session, 0) + 1
        if retired is not None and self._in_flight.get(retired):
            retired = None  # closed by its last request (`_release`)
        return session, endpoint, retired

    async def _release(self, session: aiohttp.ClientSession) -> None:
        left = self._in_flight.get(session, 0) - 1
        if left > 0:
            self._in_flight[session] = left
            return
        self._in_flight.pop(session, None)
        if session is not self._session:
            await session.close()

    async def _call(
        self, what: str, method: str, path: str, body: Any = None,
        content_type: str | None = None, *, decode: bool = True,
    ) -> Any:
        """One API call; the decoded JSON body of a 2xx response, else KubeError.

        With ``decode=False`` the answer is read and dropped: a PATCH answers with
        the whole object, and decoding 1,000 of them at start-up only made garbage.

        Error messages hold the status line only: response bodies can echo what
        was sent, and nothing of the credentials belongs in a condition or Event.
        """
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            data = json.dumps(body).encode()
        session, endpoint, retired = self._acquire()
        try:
            if retired is not None:
                await retired.close()
            async with session.request(
                method, endpoint.server.rstrip("/") + path, data=data, headers=headers,
                proxy=endpoint.proxy,
            ) as resp:
                payload = await resp.read()
                if not 200 <= resp.status <= 299:
                    raise KubeError(f"{what}: HTTP {resp.status} {resp.reason or 'error'}",
                                    status=resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise KubeError(f"{what}: {_failure(exc)}") from None
        finally:
            await self._release(session)
        if not decode:
            return None
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise KubeError(f"{what}: the API server's answer is not JSON") from None

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch `.status` through the status subresource (null deletes a key)."""
        await self._call(
            f"patching status of {namespace}/{name}", "PATCH",
            _path("apis", GROUP, VERSION, "namespaces", ("namespace", namespace), PLURAL,
                  ("StemeDBCluster", name), "status"),
            {"status": status}, MERGE_PATCH, decode=False,
        )

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret, decoded. Never logs or echoes the value."""
        data = self._secrets.get(namespace, name)
        if data is None:
            what = f"reading Secret {namespace}/{name}"
            path = _path("api", "v1", "namespaces", ("namespace", namespace), "secrets",
                         ("Secret", name))
            try:
                secret = await self._call(what, "GET", path)
            except KubeError as exc:
                if exc.status == 404:
                    raise SecretNotFound(
                        f"Secret {namespace}/{name} not found", status=404
                    ) from None
                raise
            _check_identity(what, secret, namespace, name)
            self._check_label(secret, namespace, name)
            data = {str(k): str(v) for k, v in ((secret or {}).get("data") or {}).items()}
            self._secrets.put(namespace, name, data)
        if key not in data:
            raise SecretNotFound(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key])

    def _check_label(self, secret: Any, namespace: str, name: str) -> None:
        if self._secret_label is None:
            return
        key, value = self._secret_label
        labels = (secret.get("metadata") or {}).get("labels") or {}
        if labels.get(key) != value:
            raise SecretNotPermitted(
                f"Secret {namespace}/{name} is not labelled {key}={value}; the operator uses "
                f"only Secrets labelled for it (kubectl label secret {name} {key}={value})")

    def forget_secret(self, namespace: str, name: str) -> None:
        """Read this Secret afresh next time (after StemeDB refused its token)."""
        self._secrets.drop(namespace, name)

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Add or replace annotations, keeping the Pod's others (strategic merge)."""
        what = f"annotating Pod {namespace}/{name}"
        pod = await self._call(
            what, "PATCH",
            _path("api", "v1", "namespaces", ("namespace", namespace), "pods", ("Pod", name)),
            {"metadata": {"annotations": annotations}}, STRATEGIC_MERGE_PATCH,
        )
        _check_identity(what, pod, namespace, name)

    # For `kubectl stemedb` (controller/kubectl_plugin); the operator calls only
    # get_cluster, once per cluster when it takes over as the leader, and
    # count_clusters at start-up (`adapters/warmth.py`).

    async def get_cluster(self, namespace: str, name: str) -> dict[str, Any]:
        """One StemeDBCluster (KubeError with status 404 when there is none)."""
        what = f"reading StemeDBCluster {namespace}/{name}"
        obj = await self._call(what, "GET", _path(
            "apis", GROUP, VERSION, "namespaces", ("namespace", namespace), PLURAL,
            ("StemeDBCluster", name)))
        _check_identity(what, obj, namespace, name)
        return dict(obj)

    async def list_clusters(self, namespace: str | None) -> list[dict[str, Any]]:
        """The StemeDBClusters of a namespace, or of all of them (None)."""
        found = await self._call(f"listing StemeDBClusters in {namespace or 'all namespaces'}",
                                 "GET", _clusters_path(namespace))
        return [i for i in (found or {}).get("items") or [] if isinstance(i, dict)]

    async def count_clusters(self, namespace: str | None) -> int:
        """How many StemeDBClusters a namespace (or all, None) holds: one LIST of
        one item and the API server's `remainingItemCount`, not the 6.5 KiB of
        every object; the whole list only if the server leaves the count out."""
        found = await self._call(f"counting StemeDBClusters in {namespace or 'all namespaces'}",
                                 "GET", f"{_clusters_path(namespace)}?limit=1") or {}
        items = found.get("items") or []
        meta = found.get("metadata") or {}
        remaining = meta.get("remainingItemCount")
        if isinstance(remaining, int) and remaining >= 0:
            return len(items) + remaining
        if not meta.get("continue"):
            return len(items)
        return len(await self.list_clusters(namespace))

    async def patch_cluster(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the object (metadata or spec; a resourceVersion in the patch
        makes a concurrent change answer 409)."""
        what = f"patching StemeDBCluster {namespace}/{name}"
        obj = await self._call(what, "PATCH", _path(
            "apis", GROUP, VERSION, "namespaces", ("namespace", namespace), PLURAL,
            ("StemeDBCluster", name)), patch, MERGE_PATCH)
        _check_identity(what, obj, namespace, name)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A coordination.k8s.io/v1 Lease, or None if there is none (leader election)."""
        what = f"reading Lease {namespace}/{name}"
        try:
            lease = await self._call(what, "GET", _lease_path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        _check_identity(what, lease, namespace, name)
        return dict(lease)

    async def write_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease (no resourceVersion in `lease`) or replace it (with one):
        the API server refuses a replace of a version someone else has since
        written with HTTP 409, which is what fences two electors apart."""
        name = str(lease["metadata"]["name"])
        what = f"writing Lease {namespace}/{name}"
        if lease["metadata"].get("resourceVersion"):
            written = await self._call(what, "PUT", _lease_path(namespace, name), lease)
        else:
            written = await self._call(
                what, "POST", _path("apis", "coordination.k8s.io", "v1", "namespaces",
                                    ("namespace", namespace), "leases"), lease)
        _check_identity(what, written, namespace, name)
        return dict(written)


    async def list_leases(self, namespace: str, selector: tuple[str, str]) -> list[dict[str, Any]]:
        """The Leases of a namespace carrying the label `selector` (the shard ring)."""
        key, value = selector
        path = _path("apis", "coordination.k8s.io", "v1", "namespaces",
                     ("namespace", namespace), "leases")
        found = await self._call(f"listing Leases in {namespace}", "GET",
                                 f"{path}?labelSelector={quote(f'{key}={value}', safe='')}")
        return [i for i in (found or {}).get("items") or [] if isinstance(i, dict)]

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        """Delete a Lease, only if it is still at `resource_version` (else HTTP 409)."""
        await self._call(f"deleting Lease {namespace}/{name}", "DELETE",
                         _lease_path(namespace, name),
                         {"apiVersion": "v1", "kind": "DeleteOptions",
                          "preconditions": {"resourceVersion": resource_version}},
                         decode=False)

    async def record_shard(self, namespace: str, name: str, shard: str, since: str) -> None:
        """Write `status.shard` (and since when): which shard acts on the cluster, for
        `kubectl get sdb`. Information only: a merge patch of those two fields, with
        no resourceVersion, so it never conflicts with the reconciler's writes."""
        what = f"recording the shard of StemeDBCluster {namespace}/{name}"
        obj = await self._call(what, "PATCH", _path(
            "apis", GROUP, VERSION, "namespaces", ("namespace", namespace), PLURAL,
            ("StemeDBCluster", name), "status"),
            {"status": {SHARD_FIELD: shard, SHARD_SINCE_FIELD: since}}, MERGE_PATCH)
        _check_identity(what, obj, namespace, name)


def micro_time(wall: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return wall.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clusters_path(namespace: str | None) -> str:
    """The StemeDBClusters of a namespace, or of all of them (None)."""
    if namespace is None:
        return _path("apis", GROUP, VERSION, PLURAL)
    return _path("apis", GROUP, VERSION, "namespaces", ("namespace", namespace), PLURAL)


def _lease_path(namespace: str, name: str) -> str:
    return _path("apis", "coordination.k8s.io", "v1", "namespaces", ("namespace", namespace),
                 "leases", ("Lease", name))
