"""The login: the kubeconfig read as kubectl reads it (exec plugins run, without the
`kubernetes` package), configuration errors refused at start-up with one line and
status 2, and the credentials shared with the reconciler's KubeClient."""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from controller import cli, handlers
from controller.adapters import kubeconfig
from localkube import ControlPlane

TOKEN_USER = {"name": "t", "user": {"token": "abc"}}
EXEC_USER = {"name": "x", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                            "command": "cloud-login-not-installed",
                                            "installHint": "Install cloud-login:\n  see docs",
                                            "interactiveMode": "Never"}}}
PROVIDER_USER = {"name": "p", "user": {"auth-provider": {"name": "oidc", "config": {}}}}
no_service_account = pytest.mark.skipif(
    kubeconfig.in_cluster(), reason="running in a Pod: the ServiceAccount login comes first")
without_kubernetes = pytest.mark.skipif(
    importlib.util.find_spec("kubernetes") is not None,
    reason="the kubernetes package is installed: it runs auth-provider plugins")


def write_kubeconfig(path: Path, current: str | None, *users: dict[str, Any],
                     cluster: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": u["name"], "context": {"cluster": "c", "user": u["name"]}}
                     for u in users],
        "users": list(users),
    }))
    return path


def plugin(path: Path, body: str) -> Path:
    """An executable Python script standing in for a cloud's credential plugin."""
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    path.chmod(0o755)
    return path


def exec_user(command: str, name: str = "x", **extra: Any) -> dict[str, Any]:
    return {"name": name, "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": command,
        "interactiveMode": "Never", **extra}}}


CREDENTIAL = ('print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", '
              '"kind": "ExecCredential", "status": {"token": os.environ["TOKEN"], '
              '"expirationTimestamp": "2030-01-02T03:04:05Z"}}))')


def test_a_token_user_of_the_current_context(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "k", "t", TOKEN_USER, EXEC_USER)
    login = kubeconfig.load(str(path))
    assert (login.server, login.token) == ("https://127.0.0.1:1", "abc")
    assert "abc" not in repr(login)


def test_the_first_file_in_kubeconfig_wins_and_missing_ones_are_skipped(
    tmp_path: Path,
) -> None:
    """As kubectl merges $KUBECONFIG: the first current-context and user win."""
    first = write_kubeconfig(tmp_path / "a", None, {"name": "t", "user": {"token": "first"}})
    second = write_kubeconfig(tmp_path / "b", "t", {"name": "t", "user": {"token": "second"}})
    environ = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "absent"), str(first),
                                              str(second)])}
    assert kubeconfig.load(environ=environ).token == "first"


def test_context_chooses_another_user(tmp_path: Path) -> None:
    other = {"name": "o", "user": {"token": "other"}}
    path = write_kubeconfig(tmp_path / "k", "x", EXEC_USER, other)
    assert kubeconfig.load(str(path), context="o").token == "other"


def test_paths_are_relative_to_the_kubeconfig_and_token_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "token").write_text("from-file\n")
    user = {"name": "t", "user": {"tokenFile": "token", "client-certificate": "c.crt",
                                  "client-key": "c.key"}}
    path = write_kubeconfig(tmp_path / "sub" / "k", "t", user,
                            cluster={"server": "https://k", "certificate-authority": "ca.crt"})
    login = kubeconfig.load(str(path))
    assert login.token == "from-file"
    assert login.ca_path == str(tmp_path / "sub" / "ca.crt")
    assert login.certificate_path == str(tmp_path / "sub" / "c.crt")


def test_an_exec_plugin_gives_the_token_and_its_expiry(tmp_path: Path) -> None:
    plugin(tmp_path / "get-token", CREDENTIAL.replace(
        '"kind"', '"echo": os.environ["KUBERNETES_EXEC_INFO"], "kind"'))
    user = exec_user("./get-token", env=[{"name": "TOKEN", "value": "from-plugin"}],
                     provideClusterInfo=True)
    path = write_kubeconfig(tmp_path / "k", "x", user)
    login = kubeconfig.load(str(path))
    assert login.token == "from-plugin"
    assert login.expiration == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_an_exec_plugin_sees_its_exec_info(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    plugin(tmp_path / "get-token", f"open({str(seen)!r}, 'w').write("
                                   f"os.environ['KUBERNETES_EXEC_INFO'])\n{CREDENTIAL}")
    user = exec_user(str(tmp_path / "get-token"), env=[{"name": "TOKEN", "value": "t"}],
                     provideClusterInfo=True)
    kubeconfig.load(str(write_kubeconfig(tmp_path / "k", "x", user)))
    info = json.loads(seen.read_text())
    assert info["kind"] == "ExecCredential"
    assert info["spec"] == {"interactive": False,
                            "cluster": {"server": "https://127.0.0.1:1"}}


def test_an_exec_plugin_may_give_a_client_certificate(tmp_path: Path) -> None:
    plugin(tmp_path / "p", 'print(json.dumps({"apiVersion": '
                           '"client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", '
                           '"status": {"clientCertificateData": "-----BEGIN CERTIFICATE-----", '
                           '"clientKeyData": "-----BEGIN PRIVATE KEY-----"}}))')
    user = exec_user(str(tmp_path / "p"), apiVersion="client.authentication.k8s.io/v1beta1")
    login = kubeconfig.load(str(write_kubeconfig(tmp_path / "k", "x", user)))
    assert login.certificate_data == "-----BEGIN CERTIFICATE-----"
    assert login.private_key_data == "-----BEGIN PRIVATE KEY-----"
    assert login.token is None


def config_errors(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """Each configuration error: (flags, environment, what the one line says)."""
    good = write_kubeconfig(tmp_path / "good", "t", TOKEN_USER)
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    failing = plugin(tmp_path / "failing", 'print("token expired: run cloud login", '
                                           'file=sys.stderr); sys.exit(3)')
    silent = plugin(tmp_path / "silent", 'print("hello")')
    (tmp_path / "bad.yaml").write_text("a: [b\n")
    nocluster = tmp_path / "nocluster"
    nocluster.write_text(yaml.safe_dump({
        "current-context": "t", "contexts": [{"name": "t", "context": {"cluster": "gone",
                                                                         "user": "t"}}],
        "users": [TOKEN_USER]}))
    return {
        "missing --kubeconfig file": (
            ["--kubeconfig", str(tmp_path / "absent")], {},
            f"--kubeconfig {tmp_path / 'absent'}: no such file"),
        "no kubeconfig at all": (
            [], {"HOME": str(empty_home)},
            "no kubeconfig: ~/.kube/config does not exist; give --kubeconfig FILE"),
        "no file in $KUBECONFIG exists": (
            [], {"KUBECONFIG": str(tmp_path / "absent")},
            "no kubeconfig: none of the files in $KUBECONFIG exists"),
        "not YAML": (
            ["--kubeconfig", str(tmp_path / "bad.yaml")], {}, "bad.yaml: not YAML (line 2)"),
        "no current context": (
            ["--kubeconfig", str(write_kubeconfig(tmp_path / "nocur", None, TOKEN_USER))], {},
            "no current-context; give --context NAME (one of: t)"),
        "an unknown --context": (
            ["--kubeconfig", str(good), "--context", "prod"], {},
            "no context named 'prod' (contexts: t)"),
        "a context naming no cluster": (
            ["--kubeconfig", str(nocluster)], {},
            "context 't' names cluster 'gone', which is not defined"),
        "an exec plugin that is not installed": (
            ["--kubeconfig", str(write_kubeconfig(tmp_path / "x", "x", EXEC_USER))], {},
            "exec plugin 'cloud-login-not-installed' is not installed (not found on PATH): "
            "Install cloud-login: see docs"),
        "an exec plugin that fails": (
            ["--kubeconfig", str(write_kubeconfig(tmp_path / "f", "x",
                                                  exec_user(str(failing))))], {},
            f"exec plugin '{failing}' failed (exit status 3): token expired: run cloud login"),
        "an exec plugin that prints no credential": (
            ["--kubeconfig", str(write_kubeconfig(tmp_path / "s", "x",
                                                  exec_user(str(silent))))], {},
            f"exec plugin '{silent}' did not print an ExecCredential"),
    }


CONFIG_ERRORS = [
    "missing --kubeconfig file", "no kubeconfig at all", "no file in $KUBECONFIG exists",
    "not YAML", "no current context", "an unknown --context", "a context naming no cluster",
    "an exec plugin that is not installed", "an exec plugin that fails",
    "an exec plugin that prints no credential",
]


def test_every_configuration_error_is_tested(tmp_path: Path) -> None:
    assert list(config_errors(tmp_path)) == CONFIG_ERRORS


@no_service_account
@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_a_configuration_error_exits_2_with_one_line_before_kopf_starts(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags, environ, message = config_errors(tmp_path)[case]
    monkeypatch.delenv("KUBECONFIG", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run", "-n", "a", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stemedb-operator run: login: ") and err.count("\n") == 1, err
    assert message in err


@no_service_account
@without_kubernetes
def test_an_auth_provider_user_without_the_extra_is_a_configuration_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "k", "p", PROVIDER_USER)))
    assert cli.main(["run", "-n", "a"]) == 2
    err = capsys.readouterr().err
    assert "auth-provider 'oidc'" in err and "'stemedb-operator[kubeconfig-plugins]'" in err


@no_service_account
@pytest.mark.parametrize("case", ["an unknown --context", "an exec plugin that is not installed"])
def test_the_console_command_exits_2_without_a_traceback(case: str, tmp_path: Path) -> None:
    """The command as a user runs it: status 2, one line, within seconds."""
    flags, environ, message = config_errors(tmp_path)[case]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | environ
    done = subprocess.run(
        [str(Path(sys.executable).parent / "stemedb-operator"), "run", "-n", "a", *flags],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stdout == ""


@no_service_account
async def test_a_login_failing_after_start_up_is_kopfs_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI checked the login; if it fails later (the plugin's refresh), the
    handler raises LoginError, which Kopf logs and retries."""
    monkeypatch.setattr(handlers._Config, "kubeconfig_file", str(tmp_path / "gone"))
    with pytest.raises(kopf.LoginError, match="no such file"):
        await handlers._credentials(logger=logging.getLogger("test"),
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
