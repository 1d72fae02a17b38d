"""Kubernetes writes and reads the operator needs beyond what Kopf does for it.

The official client is synchronous, so every call runs in a worker thread. At
steady state nothing here is called: status is written only when it changes,
and Secrets are read through a short-lived cache.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "stemedb.io", "v1alpha1", "stemedbclusters"


class KubeError(Exception):
    """A Kubernetes call failed; the message is safe for conditions and Events."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SecretNotFound(KubeError):
    """The Secret or the key named in spec.auth does not exist."""


def load_config() -> k8s.ApiClient:
    """In-cluster credentials when running in a Pod, else the kubeconfig."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


def _describe(exc: ApiException, what: str) -> KubeError:
    reason = exc.reason or "error"
    return KubeError(f"{what}: HTTP {exc.status} {reason}", status=exc.status)


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

    def forget(self, namespace: str) -> None:
        for key in [k for k in self._entries if k[0] == namespace]:
            del self._entries[key]


class KubeClient:
    """Status patches, Secret reads and Pod annotations, each off the event loop."""

    def __init__(self, api: k8s.ApiClient, secrets: SecretCache | None = None) -> None:
        self._api = api
        self._custom = k8s.CustomObjectsApi(api)
        # Not k8s.CoreV1Api: importing it costs ~20 MiB of RSS (pydantic-validated
        # methods for every core resource) for the two calls below.
        self._secrets = secrets or SecretCache()

    def _core_call(self, method: str, path: str, body: Any = None,
                   content_type: str | None = None) -> Any:
        """One core-API call through the client's own serialisation, auth and TLS
        (what CoreV1Api does); raises ApiException on a non-2xx status."""
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = self._api.param_serialize(method=method, resource_path=path,
                                            header_params=headers, body=body,
                                            auth_settings=["BearerToken"])
        response = self._api.call_api(*request)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else None

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch `.status` through the status subresource."""
        try:
            await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
            )
        except ApiException as exc:
            raise _describe(exc, f"patching status of {namespace}/{name}") from None

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret, decoded. Never logs or echoes the value."""
        data = self._secrets.get(namespace, name)
        if data is None:
            try:
                secret = await asyncio.to_thread(
                    self._core_call, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
            except ApiException as exc:
                if exc.status == 404:
                    raise SecretNotFound(
                        f"Secret {namespace}/{name} not found", status=404
                    ) from None
                raise _describe(exc, f"reading Secret {namespace}/{name}") from None
            data = {str(k): str(v) for k, v in ((secret or {}).get("data") or {}).items()}
            self._secrets.put(namespace, name, data)
        if key not in data:
            raise SecretNotFound(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key])

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            # CoreV1Api sent a dict body as a strategic merge patch (rest.py).
            await asyncio.to_thread(
                self._core_call, "PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}",
                {"metadata": {"annotations": annotations}},
                "application/strategic-merge-patch+json",
            )
        except ApiException as exc:
            raise _describe(exc, f"annotating Pod {namespace}/{name}") from None
