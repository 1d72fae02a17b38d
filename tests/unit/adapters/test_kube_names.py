"""The Kubernetes adapter never lets a name from a tenant's spec choose another
namespace or object (issue 11): names are checked and escaped as one path
segment before any request, and an answer about another object is refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from controller.adapters.kube import (
    KubeClient,
    KubeEndpoint,
    KubeError,
    RefusedName,
    SecretNotPermitted,
)
from tests.unit.adapters._http_server import serving

HOSTILE_NAMES = [
    "../../other/secrets/token",
    "..",
    ".",
    "",
    "a/b",
    "a%2Fb",
    "%2e%2e",
    "name?watch=true",
    "name#frag",
    "Admin",
    "under_score",
    "with space",
    "x" * 254,
    "a\r\nX-Evil: 1",
    "\u0430dmin",  # Cyrillic a
    "name\x00",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_a_hostile_name_is_refused_before_any_request(name: str) -> None:
    # No credentials installed: any attempt to send would fail differently
    # ("not logged in"), so RefusedName proves nothing was about to be sent.
    client = KubeClient()
    with pytest.raises(RefusedName):
        await client.read_secret_key("tenant", name, "token")
    with pytest.raises(RefusedName):
        await client.annotate_pod("tenant", name, {"a": "b"})
    with pytest.raises(RefusedName):
        await client.patch_status("tenant", name, {"summary": "x"})
    with pytest.raises(RefusedName):
        await client.read_secret_key(name, "token", "token")


_ENDPOINT: list[KubeEndpoint] = []


class _FakeApi:
    """An API server that answers every request with `answer` and records paths."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.raw_path)
        return web.Response(text=json.dumps(self.answer), content_type="application/json")


@pytest.fixture
async def fake_api() -> AsyncIterator[tuple[_FakeApi, KubeClient]]:
    api = _FakeApi({})
    async with serving(api.handle) as port:
        client = KubeClient()
        _ENDPOINT[:] = [KubeEndpoint(server=f"http://127.0.0.1:{port}", ssl=False)]
        client.use(_ENDPOINT[0])
        try:
            yield api, client
        finally:
            await client.aclose()


def _obj(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name},
            "data": {"token": "c2VjcmV0"}}


@pytest.mark.parametrize(("answer", "ok"), [
    pytest.param(_obj("tenant", "admin"), True, id="the object asked for"),
    pytest.param(_obj("other", "admin"), False, id="same name, another namespace"),
    pytest.param(_obj("tenant", "other"), False, id="another name"),
    pytest.param({"data": {"token": "c2VjcmV0"}}, False, id="no metadata"),
])
async def test_only_the_object_asked_for_is_used(
    fake_api: tuple[_FakeApi, KubeClient], answer: dict[str, Any], ok: bool,
) -> None:
    api, client = fake_api
    api.answer = answer
    if ok:
        assert await client.read_secret_key("tenant", "admin", "token") == b"secret"
        await client.annotate_pod("tenant", "admin", {"a": "b"})
    else:
        with pytest.raises(KubeError, match="different object"):
            await client.read_secret_key("tenant", "admin", "token")
        with pytest.raises(KubeError, match="different object"):
            await client.annotate_pod("tenant", "admin", {"a": "b"})
    assert api.paths[0] == "/api/v1/namespaces/tenant/secrets/admin"


@pytest.mark.parametrize(("labels", "ok"), [
    pytest.param({"stemedb.io/credentials": "true"}, True, id="labelled for the operator"),
    pytest.param({}, False, id="no label"),
    pytest.param({"stemedb.io/credentials": "false"}, False, id="another value"),
])
async def test_a_secret_is_used_only_with_the_opt_in_label(
    fake_api: tuple[_FakeApi, KubeClient], labels: dict[str, str], ok: bool,
) -> None:
    api, _ = fake_api
    client = KubeClient(secret_label=("stemedb.io/credentials", "true"))
    client.use(_ENDPOINT[0])
    api.answer = {**_obj("tenant", "admin"),
                  "metadata": {"namespace": "tenant", "name": "admin", "labels": labels}}
    try:
        if ok:
            assert await client.read_secret_key("tenant", "admin", "token") == b"secret"
        else:
            with pytest.raises(SecretNotPermitted, match="kubectl label secret admin"):
                await client.read_secret_key("tenant", "admin", "token")
    finally:
        await client.aclose()
