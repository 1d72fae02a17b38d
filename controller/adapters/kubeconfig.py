"""The login from a kubeconfig, read as kubectl reads it, without the `kubernetes`
package (Kopf imports it whenever it is installed, ~32 MiB).

`load` merges the files (`--kubeconfig FILE`, else $KUBECONFIG's list, else
~/.kube/config; the first value of each name wins), takes the chosen context
(else `current-context`) and returns what Kopf's `ConnectionInfo` needs. A user
with an `exec` plugin (EKS, GKE, AKS kubeconfigs) has it run here, as kubectl
does (`client.authentication.k8s.io/v1` and `v1beta1`); an `auth-provider` user
(the legacy OIDC provider) needs the `kubernetes` package, the optional extra.

Anything a user must fix raises `KubeconfigError` with a one-line message. Paths
in a kubeconfig are relative to the file that names them, as in kubectl.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
PLUGINS_EXTRA = "stemedb-operator[kubeconfig-plugins]"
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_EXTENSION = "client.authentication.k8s.io/exec"  # a cluster's config for its plugin
# A plugin that has not answered by then is reported (kubectl waits for ever).
EXEC_TIMEOUT_SECONDS = 120.0


class KubeconfigError(Exception):
    """The kubeconfig cannot give a login; the message says what to fix."""


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class Login:
    """The fields of `kopf.ConnectionInfo` (this module does not import Kopf)."""

    server: str
    ca_path: str | None = None
    ca_data: str | None = None
    insecure: bool | None = None
    username: str | None = None
    password: str | None = None
    scheme: str | None = None
    token: str | None = None
    certificate_path: str | None = None
    certificate_data: str | None = None
    private_key_path: str | None = None
    private_key_data: str | None = None
    default_namespace: str | None = None
    proxy_url: str | None = None
    expiration: datetime.datetime | None = None

    def __repr__(self) -> str:
        return f"Login(server={self.server!r}, expiration={self.expiration!r})"


def in_cluster() -> bool:
    """A Pod's ServiceAccount token is mounted (the login used before any kubeconfig)."""
    return os.path.exists(SERVICE_ACCOUNT_TOKEN)


def files(kubeconfig: str | None, environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The kubeconfig files in merge order: `kubeconfig`, else $KUBECONFIG, else
    ~/.kube/config. Files in $KUBECONFIG that do not exist are skipped, as kubectl
    does; a named file or the default that does not exist is an error."""
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise KubeconfigError(f"--kubeconfig {kubeconfig}: no such file")
        return [path]
    listed = [Path(p).expanduser() for p in (environ.get("KUBECONFIG") or "").split(os.pathsep)
              if p.strip()]
    if listed:
        found = [p for p in listed if p.is_file()]
        if not found:
            raise KubeconfigError(f"no kubeconfig: none of the files in $KUBECONFIG exists "
                                  f"({environ['KUBECONFIG']})")
        return found
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    if not default.is_file():
        raise KubeconfigError(f"no kubeconfig: {DEFAULT_KUBECONFIG} does not exist; give "
                              f"--kubeconfig FILE or set KUBECONFIG (in a Pod the "
                              f"ServiceAccount is used)")
    return [default]


@dataclasses.dataclass
class _Merged:
    current: str | None = None
    contexts: dict[str, tuple[Path, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    clusters: dict[str, tuple[Path, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    users: dict[str, tuple[Path, dict[str, Any]]] = dataclasses.field(default_factory=dict)


def _merge(paths: list[Path]) -> _Merged:
    merged = _Merged()
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError) as err:
            raise KubeconfigError(f"kubeconfig {path}: cannot read it: {err}") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise KubeconfigError(f"kubeconfig {path}: not YAML{line}") from None
        if not isinstance(config, dict):
            raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (a YAML mapping)")
        merged.current = merged.current or config.get("current-context") or None
        for section, key, into in (("contexts", "context", merged.contexts),
                                   ("clusters", "cluster", merged.clusters),
                                   ("users", "user", merged.users)):
            for item in config.get(section) or []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    body = item.get(key) or {}
                    if not isinstance(body, dict):
                        raise KubeconfigError(
                            f"kubeconfig {path}: {section} entry {item['name']!r} is not a "
                            f"mapping")
                    into.setdefault(item["name"], (path.parent, body))
    return merged


def load(kubeconfig: str | None = None, context: str | None = None,
         environ: Mapping[str, str] = os.environ) -> Login:
    """The login the kubeconfig gives for `context` (else its current context);
    runs an `exec` plugin. KubeconfigError for anything the user must fix."""
    paths = files(kubeconfig, environ)
    merged = _merge(paths)
    shown = ", ".join(str(p) for p in paths)
    name = context or merged.current
    if not name:
        raise KubeconfigError(f"kubeconfig {shown}: no current-context; give --context NAME "
                              f"(one of: {', '.join(sorted(merged.contexts)) or 'none'})")
    if name not in merged.contexts:
        raise KubeconfigError(f"kubeconfig {shown}: no context named {name!r} (contexts: "
                              f"{', '.join(sorted(merged.contexts)) or 'none'})")
    _, ctx = merged.contexts[name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in merged.clusters:
        raise KubeconfigError(f"kubeconfig {shown}: context {name!r} names cluster "
                              f"{cluster_name!r}, which is not defined")
    cluster_dir, cluster = merged.clusters[cluster_name]
    if user_name and user_name not in merged.users:
        raise KubeconfigError(f"kubeconfig {shown}: context {name!r} names user "
                              f"{user_name!r}, which is not defined")
    user_dir, user = merged.users[user_name] if user_name else (cluster_dir, {})
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"kubeconfig {shown}: cluster {cluster_name!r} has no server")
    if user.get("auth-provider"):
        return _via_kubernetes_package(paths, name, user["auth-provider"])

    def rel(value: Any, base: Path) -> str | None:
        return str(base / os.path.expanduser(value)) if value else None

    found = Login(
        server=server,
        ca_path=rel(cluster.get("certificate-authority"), cluster_dir),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        proxy_url=cluster.get("proxy-url"),
        default_namespace=ctx.get("namespace"),
        username=user.get("username"),
        password=user.get("password"),
        token=user.get("token") or _token_file(rel(user.get("tokenFile"), user_dir)),
        certificate_path=rel(user.get("client-certificate"), user_dir),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=rel(user.get("client-key"), user_dir),
        private_key_data=user.get("client-key-data"),
    )
    if found.ca_path and found.ca_data:  # kubectl refuses both too
        raise KubeconfigError(f"kubeconfig {shown}: cluster {cluster_name!r} has both "
                              f"certificate-authority and certificate-authority-data")
    if user.get("exec"):
        return _exec(user["exec"], user_dir, found, server, cluster)
    return found


def _token_file(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as err:
        raise KubeconfigError(f"tokenFile {path}: {err.strerror}") from None


def _exec(spec: Any, base: Path, login: Login, server: str,
          cluster: Mapping[str, Any]) -> Login:
    """Run the credential plugin as kubectl does and take its token or certificate."""
    if not isinstance(spec, dict) or not spec.get("command"):
        raise KubeconfigError("exec plugin: the kubeconfig's user has no exec command")
    api = spec.get("apiVersion")
    if api not in EXEC_API_VERSIONS:
        raise KubeconfigError(f"exec plugin: apiVersion {api!r} is not supported (one of: "
                              f"{', '.join(EXEC_API_VERSIONS)})")
    command = str(spec["command"])
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)  # as kubectl: relative to the kubeconfig's directory
    found = shutil.which(command)
    if found is None:
        hint = " ".join(str(spec.get("installHint") or "").split())
        raise KubeconfigError(f"exec plugin {spec['command']!r} is not installed (not found on "
                              f"PATH)" + (f": {hint}" if hint else ""))
    mode = spec.get("interactiveMode") or "IfAvailable"
    interactive = mode != "Never" and sys.stdin is not None and sys.stdin.isatty()
    if mode == "Always" and not interactive:
        raise KubeconfigError(f"exec plugin {spec['command']!r} needs a terminal "
                              f"(interactiveMode: Always) and stdin is not one")
    info: dict[str, Any] = {"interactive": interactive}
    if spec.get("provideClusterInfo"):
        info["cluster"] = _cluster_info(server, cluster, login)
    env = dict(os.environ)
    for item in spec.get("env") or []:
        if isinstance(item, dict) and item.get("name"):
            env[str(item["name"])] = str(item.get("value", ""))
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api, "kind": "ExecCredential", "spec": info})
    try:
        done = subprocess.run(
            [found, *(str(a) for a in spec.get("args") or [])],
            env=env, stdout=subprocess.PIPE,
            stdin=None if interactive else subprocess.DEVNULL,
            stderr=None if interactive else subprocess.PIPE,  # its prompts, when a person waits
            timeout=EXEC_TIMEOUT_SECONDS, check=False,
        )
    except subprocess.TimeoutExpired:
        raise KubeconfigError(f"exec plugin {spec['command']!r} did not answer in "
                              f"{EXEC_TIMEOUT_SECONDS:.0f} s") from None
    except OSError as err:
        raise KubeconfigError(f"exec plugin {spec['command']!r}: {err.strerror}") from None
    if done.returncode != 0:
        said = [line.strip() for line in (done.stderr or b"").decode(errors="replace")
                .splitlines() if line.strip()]
        raise KubeconfigError(f"exec plugin {spec['command']!r} failed (exit status "
                              f"{done.returncode})" + (f": {said[-1]}" if said else ""))
    return _exec_credential(str(spec["command"]), api, done.stdout, login)


def _cluster_info(server: str, cluster: Mapping[str, Any], login: Login) -> dict[str, Any]:
    """`spec.cluster` of the ExecCredential, for a plugin that asks for it."""
    ca = login.ca_data
    if login.ca_path:
        try:
            ca = base64.b64encode(Path(login.ca_path).read_bytes()).decode()
        except OSError as err:
            raise KubeconfigError(
                f"certificate-authority {login.ca_path}: {err.strerror}") from None
    extension = next((e.get("extension") for e in cluster.get("extensions") or []
                      if isinstance(e, dict) and e.get("name") == EXEC_EXTENSION), None)
    found = {"server": server, "certificate-authority-data": ca,
             "insecure-skip-tls-verify": cluster.get("insecure-skip-tls-verify"),
             "proxy-url": cluster.get("proxy-url"),
             "tls-server-name": cluster.get("tls-server-name"), "config": extension}
    return {k: v for k, v in found.items() if v is not None}


def _exec_credential(command: str, api: str, out: bytes, login: Login) -> Login:
    try:
        cred = json.loads(out)
    except ValueError:
        cred = None
    if not isinstance(cred, dict) or cred.get("kind") != "ExecCredential":
        raise KubeconfigError(f"exec plugin {command!r} did not print an ExecCredential")
    if cred.get("apiVersion") != api:
        raise KubeconfigError(f"exec plugin {command!r} answered {cred.get('apiVersion')!r}, "
                              f"not {api!r} as the kubeconfig asks")
    status = cred.get("status") or {}
    token = status.get("token")
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if not token and not (cert and key):
        raise KubeconfigError(f"exec plugin {command!r} gave neither a token nor a client "
                              f"certificate and key")
    expiration = None
    if status.get("expirationTimestamp"):
        try:
            expiration = datetime.datetime.fromisoformat(
                str(status["expirationTimestamp"]).replace("Z", "+00:00"))
        except ValueError:
            raise KubeconfigError(f"exec plugin {command!r}: expirationTimestamp "
                                  f"{status['expirationTimestamp']!r} is not RFC 3339") from None
    if cert and key:
        login = dataclasses.replace(login, certificate_path=None, private_key_path=None,
                                    certificate_data=cert, private_key_data=key)
    return dataclasses.replace(login, token=token or login.token, expiration=expiration)


def _via_kubernetes_package(paths: list[Path], context: str, provider: Any) -> Login:
    """An `auth-provider` user: the `kubernetes` package runs the provider."""
    provider_name = provider.get("name") if isinstance(provider, dict) else None
    if importlib.util.find_spec("kubernetes") is None:
        raise KubeconfigError(
            f"the kubeconfig's user authenticates with auth-provider {provider_name!r}, which "
            f"this operator runs only through the kubernetes package: install "
            f"{PLUGINS_EXTRA!r}, or use a token, a client certificate or an exec plugin")
    import kubernetes  # the optional extra

    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(
            config_file=os.pathsep.join(str(p) for p in paths), context=context,
            client_configuration=config, persist_config=False)
    except kubernetes.config.ConfigException as err:
        raise KubeconfigError(f"auth-provider {provider_name!r}: {err}") from None
    # As `kopf.login_via_client` reads it (BearerToken since kubernetes 36).
    header = (config.get_api_key_with_prefix("BearerToken")
              or config.get_api_key_with_prefix("authorization"))
    scheme, _, token = (header or "").rpartition(" ")
    return Login(
        server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl,
        username=config.username or None, password=config.password or None,
        scheme=scheme or None, token=token or None,
        certificate_path=config.cert_file, private_key_path=config.key_file,
    )
