"""The login handler: Kopf's minimal readers instead of the `kubernetes` package,
kubeconfig plugins detected and refused with the fix, and the credentials shared
with the reconciler's KubeClient."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from controller import handlers
from localkube import ControlPlane

TOKEN_USER = {"name": "t", "user": {"token": "abc"}}
EXEC_USER = {"name": "x", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                            "command": "cloud-login"}}}
PROVIDER_USER = {"name": "p", "user": {"auth-provider": {"name": "oidc", "config": {}}}}
no_service_account = pytest.mark.skipif(
    Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(),
    reason="running in a Pod: the ServiceAccount login comes first")


def kubeconfig(path: Path, current: str | None, *users: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": u["name"], "context": {"cluster": "c", "user": u["name"]}}
                     for u in users],
        "users": list(users),
    }))
    return path


@pytest.mark.parametrize(("files", "expected"), [
    pytest.param([("t", [TOKEN_USER, EXEC_USER])], None, id="token-user"),
    pytest.param([("x", [TOKEN_USER, EXEC_USER])], "exec", id="exec-user"),
    pytest.param([("p", [PROVIDER_USER])], "auth-provider", id="auth-provider-user"),
    # As kubectl and Kopf merge $KUBECONFIG: the first current-context and user win.
    pytest.param([("x", [EXEC_USER]), ("t", [TOKEN_USER])], "exec", id="first-file-wins"),
    pytest.param([(None, [TOKEN_USER]), ("x", [EXEC_USER])], "exec", id="context-from-second"),
])
def test_kubeconfig_plugin_is_found_for_the_current_user(
    tmp_path: Path, files: list[tuple[str | None, list[dict[str, Any]]]], expected: str | None,
) -> None:
    paths = [kubeconfig(tmp_path / f"k{i}", current, *users)
             for i, (current, users) in enumerate(files)]
    environ = {"KUBECONFIG": ":".join(str(p) for p in paths)}
    assert handlers.kubeconfig_plugin(environ) == expected


def test_no_kubeconfig_means_no_plugin(tmp_path: Path) -> None:
    assert handlers.kubeconfig_plugin({"KUBECONFIG": str(tmp_path / "absent")}) is None


@no_service_account
@pytest.mark.skipif(importlib.util.find_spec("kubernetes") is not None,
                    reason="the kubernetes package is installed: it runs the plugin")
def test_a_plugin_user_without_the_extra_is_a_login_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", "x", EXEC_USER)))
    with pytest.raises(kopf.LoginError, match=r"stemedb-operator\[kubeconfig-plugins\]"):
        handlers._credentials(logger=logging.getLogger("test"),
                              settings=kopf.OperatorSettings())


@pytest.mark.parametrize(("host", "port", "server"), [
    pytest.param("10.96.0.1", "443", "https://10.96.0.1:443", id="ipv4"),
    pytest.param("fd00::1", "443", "https://[fd00::1]:443", id="ipv6"),
    pytest.param(None, None, "https://kubernetes.default.svc", id="no-env-kopf-default"),
])
def test_in_cluster_the_service_address_from_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch, host: str | None, port: str | None, server: str,
) -> None:
    for name, value in (("KUBERNETES_SERVICE_HOST", host), ("KUBERNETES_SERVICE_PORT", port)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    info = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t")
    assert handlers._in_cluster_address(info).server == server


def test_basic_auth_reaches_the_kube_client_as_a_header() -> None:
    info = kopf.ConnectionInfo(server="https://k", username="u", password="p")
    endpoint = handlers._endpoint(info)
    assert endpoint.headers["Authorization"] == "Basic dTpw"
    assert "dTpw" not in repr(endpoint)


@pytest.mark.e2e
@no_service_account
async def test_login_shares_kopfs_credentials_with_the_kube_client(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token kubeconfig, as the e2e tests and most users run it: Kopf gets a bounded
    session and the reconciler's KubeClient reads a Secret with the same login."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    control_plane.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "admin", "namespace": namespace},
        "stringData": {"token": "from-the-api"}}))
    memo = kopf.Memo()
    session = await handlers.login(memo=memo, logger=logging.getLogger("test"),
                                   settings=kopf.OperatorSettings())
    try:
        assert isinstance(session, kopf.AiohttpSession)
        assert session.server == control_plane.server
        assert session.aiohttp_session.connector is not None
        assert session.aiohttp_session.connector.limit == handlers.KUBE_API_CONNECTIONS
        kube = handlers._kube(memo)  # the one the startup handler gives the Reconciler
        assert await kube.read_secret_key(namespace, "admin", "token") == b"from-the-api"
    finally:
        await session.aiohttp_session.close()
        await handlers._kube(memo).aclose()
