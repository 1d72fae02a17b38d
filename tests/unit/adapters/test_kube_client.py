"""KubeClient against a real kube-apiserver: the three calls, their errors, the
Secret cache, and credentials installed and replaced with `use`.

No fakes of aiohttp or of the API server: what is checked is what the server
stored and what it answered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.kube import (
    KubeClient,
    KubeEndpoint,
    KubeError,
    SecretCache,
    SecretNotFound,
)
from localkube import ControlPlane
from localkube.controlplane import free_port

CRD = Path(__file__).resolve().parents[3] / "crds" / "stemedbclusters.stemedb.io.yaml"
SPEC = {"primary": {"adminUrl": "http://p:18180"},
        "replicas": [{"id": "node2", "agentId": "agent-node2"}]}
SECRET_VALUE = "s3cr3t-value-never-shown"
needs_api = pytest.mark.e2e


def endpoint(cp: ControlPlane, token: str | None = None) -> KubeEndpoint:
    return KubeEndpoint(
        server=cp.server,
        ssl=ssl.create_default_context(cafile=str(cp.ca_file)),
        headers={"Authorization": f"Bearer {token or cp.admin_token}"},
    )


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                          "crd/stemedbclusters.stemedb.io")


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = KubeClient()
    client.use(endpoint(control_plane))
    yield client
    await client.aclose()


def apply(cp: ControlPlane, obj: dict[str, Any]) -> None:
    cp.kubectl("apply", "-f", "-", input=json.dumps(obj))


def get(cp: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(cp.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout))


def cluster(namespace: str, name: str = "db") -> dict[str, Any]:
    return {"apiVersion": "stemedb.io/v1alpha1", "kind": "StemeDBCluster",
            "metadata": {"name": name, "namespace": namespace}, "spec": SPEC}


# --- status -------------------------------------------------------------------------

@needs_api
@pytest.mark.parametrize(("patches", "expected"), [
    pytest.param([{"summary": "ok", "laggingReplicas": 0}],
                 {"summary": "ok", "laggingReplicas": 0}, id="first-patch"),
    pytest.param([{"summary": "ok", "laggingReplicas": 0}, {"laggingReplicas": 2}],
                 {"summary": "ok", "laggingReplicas": 2}, id="other-keys-kept"),
    pytest.param([{"summary": "ok", "currentStep": "throttle"}, {"currentStep": None}],
                 {"summary": "ok"}, id="null-deletes"),
    pytest.param([{"throttle": {"phase": "Throttling", "currentRate": 10}},
                  {"throttle": {"currentRate": 5}}],
                 {"throttle": {"phase": "Throttling", "currentRate": 5}}, id="nested-merge"),
])
async def test_status_merge_patch_lands_and_merges(
    control_plane: ControlPlane, crd: None, namespace: str, kube: KubeClient,
    patches: list[dict[str, Any]], expected: dict[str, Any],
) -> None:
    apply(control_plane, cluster(namespace))
    before = get(control_plane, namespace, "stemedbcluster", "db")
    for patch in patches:
        await kube.patch_status(namespace, "db", patch)
    stored = get(control_plane, namespace, "stemedbcluster", "db")
    assert stored["status"] == expected
    # Through the status subresource: the spec and its generation are untouched.
    assert (stored["spec"], stored["metadata"]["generation"]) == (
        before["spec"], before["metadata"]["generation"])


@needs_api
@pytest.mark.parametrize(("call", "message"), [
    pytest.param(lambda k, ns: k.patch_status(ns, "absent", {"summary": "x"}),
                 "patching status of {ns}/absent: HTTP 404 Not Found", id="status"),
    pytest.param(lambda k, ns: k.annotate_pod(ns, "absent", {"a": "b"}),
                 "annotating Pod {ns}/absent: HTTP 404 Not Found", id="pod"),
])
async def test_a_missing_object_is_a_404_with_a_safe_message(
    control_plane: ControlPlane, crd: None, namespace: str, kube: KubeClient,
    call: Any, message: str,
) -> None:
    with pytest.raises(KubeError) as err:
        await call(kube, namespace)
    assert err.value.status == 404
    assert str(err.value) == message.format(ns=namespace)


# --- counting (a replica's warmth) --------------------------------------------------

@needs_api
@pytest.mark.parametrize("clusters", [0, 1, 2, 5], ids=lambda n: f"{n}-clusters")
async def test_count_clusters_is_every_cluster_of_the_namespace(
    control_plane: ControlPlane, crd: None, namespace: str, kube: KubeClient, clusters: int,
) -> None:
    """One item is listed and the rest counted by the API server: 0, 1 (no next
    page) and several (remainingItemCount) all come out exact, and all namespaces
    hold at least these."""
    for i in range(clusters):
        apply(control_plane, cluster(namespace, f"db{i}"))
    assert await kube.count_clusters(namespace) == clusters
    assert await kube.count_clusters(None) >= clusters


async def test_count_clusters_lists_everything_when_the_server_does_not_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page with a next page but no remainingItemCount: the whole list is counted
    rather than the first page taken for all."""
    client = KubeClient()
    asked: list[str] = []

    async def call(what: str, method: str, path: str, *_: Any, **__: Any) -> Any:
        asked.append(path)
        if path.endswith("?limit=1"):
            return {"items": [{}], "metadata": {"continue": "token"}}
        return {"items": [{}, {}, {}]}

    monkeypatch.setattr(client, "_call", call)
    assert await client.count_clusters("ns") == 3
    assert asked == ["/apis/stemedb.io/v1alpha1/namespaces/ns/stemedbclusters?limit=1",
                     "/apis/stemedb.io/v1alpha1/namespaces/ns/stemedbclusters"]


# --- Secrets ------------------------------------------------------------------------

def make_secret(cp: ControlPlane, namespace: str, name: str = "admin") -> None:
    apply(cp, {"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": namespace},
               "data": {"token": base64.b64encode(SECRET_VALUE.encode()).decode()}})


@needs_api
async def test_a_secret_key_is_read_then_served_from_the_cache_until_the_ttl(
    control_plane: ControlPlane, namespace: str,
) -> None:
    now = [0.0]
    client = KubeClient(secrets=SecretCache(ttl=30.0, clock=lambda: now[0]))
    client.use(endpoint(control_plane))
    try:
        make_secret(control_plane, namespace)
        assert await client.read_secret_key(namespace, "admin", "token") == SECRET_VALUE.encode()

        control_plane.kubectl("-n", namespace, "delete", "secret", "admin")
        now[0] = 30.0  # still within the TTL: no GET, so the deleted Secret is still read
        assert await client.read_secret_key(namespace, "admin", "token") == SECRET_VALUE.encode()

        now[0] = 30.1  # expired: read again, and now it is gone
        with pytest.raises(SecretNotFound) as err:
            await client.read_secret_key(namespace, "admin", "token")
        assert err.value.status == 404
    finally:
        await client.aclose()


@needs_api
@pytest.mark.parametrize(("secret", "key", "message"), [
    pytest.param("absent", "token", "Secret {ns}/absent not found", id="no-secret"),
    pytest.param("admin", "password", "Secret {ns}/admin has no key 'password'", id="no-key"),
])
async def test_a_missing_secret_or_key_is_secret_not_found_without_the_value(
    control_plane: ControlPlane, namespace: str, kube: KubeClient,
    secret: str, key: str, message: str,
) -> None:
    make_secret(control_plane, namespace)
    with pytest.raises(SecretNotFound) as err:
        await kube.read_secret_key(namespace, secret, key)
    assert str(err.value) == message.format(ns=namespace)
    assert SECRET_VALUE not in repr(err.value)
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in repr(err.value)


# --- Pods ---------------------------------------------------------------------------

@needs_api
async def test_pod_annotations_merge_with_the_existing_ones(
    control_plane: ControlPlane, namespace: str, kube: KubeClient,
) -> None:
    # No kubelet: the Pod is only an object in the API server, which is all we patch.
    apply(control_plane, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "node2", "namespace": namespace,
                     "annotations": {"keep": "yes", "replace": "old"}},
        "spec": {"containers": [{"name": "db", "image": "stemedb:test"}]},
    })
    await kube.annotate_pod(namespace, "node2", {"replace": "new", "add": "1"})
    annotations = get(control_plane, namespace, "pod", "node2")["metadata"]["annotations"]
    assert {k: annotations.get(k) for k in ("keep", "replace", "add")} == {
        "keep": "yes", "replace": "new", "add": "1"}


# --- credentials and transport ------------------------------------------------------

async def test_calls_before_login_raise_a_clear_error() -> None:
    client = KubeClient()
    with pytest.raises(KubeError, match=r"^not logged in to the Kubernetes API yet$") as err:
        await client.patch_status("ns", "db", {})
    assert err.value.status is None
    await client.aclose()


def test_the_endpoint_repr_hides_the_token() -> None:
    ep = KubeEndpoint(server="https://k", headers={"Authorization": "Bearer tok-123"})
    assert "tok-123" not in repr(ep)
    assert "https://k" in repr(ep)


@needs_api
async def test_a_wrong_token_is_a_401_without_the_token(
    control_plane: ControlPlane, crd: None, namespace: str,
) -> None:
    client = KubeClient()
    client.use(endpoint(control_plane, token="wrong-token-xyz"))
    try:
        with pytest.raises(KubeError) as err:
            await client.patch_status(namespace, "db", {"summary": "x"})
        assert err.value.status == 401
        assert str(err.value) == f"patching status of {namespace}/db: HTTP 401 Unauthorized"
        assert "wrong-token-xyz" not in repr(err.value)
    finally:
        await client.aclose()


@needs_api
async def test_use_switches_credentials_and_calls_in_flight_finish_on_the_old_ones(
    control_plane: ControlPlane, crd: None, namespace: str,
) -> None:
    apply(control_plane, cluster(namespace))
    client = KubeClient()
    client.use(endpoint(control_plane, token="wrong-token-xyz"))
    try:
        with pytest.raises(KubeError) as err:
            await client.patch_status(namespace, "db", {"summary": "before"})
        assert err.value.status == 401

        client.use(endpoint(control_plane))  # as Kopf's next login does
        in_flight = [asyncio.create_task(client.patch_status(namespace, "db", {"summary": "a"}))
                     for _ in range(3)]
        await asyncio.sleep(0)  # each has taken its session; none has an answer yet
        client.use(endpoint(control_plane, token="revoked-token"))
        with pytest.raises(KubeError) as err:
            await client.patch_status(namespace, "db", {"summary": "b"})
        assert err.value.status == 401
        await asyncio.gather(*in_flight)  # the replaced session was not closed under them
    finally:
        await client.aclose()
    assert get(control_plane, namespace, "stemedbcluster", "db")["status"] == {"summary": "a"}


async def test_an_unreachable_server_is_a_kube_error_without_status() -> None:
    client = KubeClient()
    client.use(KubeEndpoint(server=f"https://127.0.0.1:{free_port()}",
                            headers={"Authorization": "Bearer tok-123"}))
    try:
        with pytest.raises(KubeError) as err:
            await client.read_secret_key("ns", "admin", "token")
        assert err.value.status is None
        assert str(err.value).startswith(
            "reading Secret ns/admin: cannot connect to the API server")
        assert "tok-123" not in repr(err.value)
    finally:
        await client.aclose()


async def test_a_server_that_never_answers_times_out() -> None:
    accepted, finished = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the client gives up and closes
        writer.close()
        await writer.wait_closed()
        finished.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = KubeClient(timeout=0.5)
    client.use(KubeEndpoint(server=f"http://127.0.0.1:{port}", ssl=False))
    try:
        with pytest.raises(KubeError) as err:
            await client.annotate_pod("ns", "node2", {"a": "b"})
        assert accepted.is_set()
        assert (str(err.value), err.value.status) == ("annotating Pod ns/node2: timed out", None)
    finally:
        await client.aclose()  # closes the connection, so the handler ends
        if accepted.is_set():
            await finished.wait()
        server.close()
        await server.wait_closed()
