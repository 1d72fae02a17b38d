"""The plugin's Kubernetes I/O: the kubeconfig's login (adapters/kubeconfig.py, as
kubectl reads it, exec plugins included) turned into an endpoint for the operator's
lean client (adapters/kube.py). No Kopf: importing it would double the start-up.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
import tempfile
from collections.abc import Iterator

from controller.adapters.kube import KubeEndpoint
from controller.adapters.kubeconfig import KubeconfigError, Login


def _pem(data: str) -> bytes:
    """Kubeconfig `*-data` fields are base64 of PEM; some tools put the PEM itself."""
    if data.lstrip().startswith("-----BEGIN"):
        return data.encode()
    try:
        return base64.b64decode(data, validate=False)
    except ValueError:
        raise KubeconfigError("certificate data in the kubeconfig is not base64") from None


@contextlib.contextmanager
def _file(path: str | None, data: str | None) -> Iterator[str | None]:
    """A path for a certificate or key given as a path or as data (Python's ssl loads
    client certificates only from files; the temporary file lives only while loaded)."""
    if path or not data:
        yield path
        return
    with tempfile.NamedTemporaryFile(suffix=".pem") as f:
        f.write(_pem(data))
        f.flush()
        yield f.name


def ssl_context(login: Login) -> ssl.SSLContext:
    """TLS as kubectl sets it up from the kubeconfig: its CA, its client certificate,
    and `insecure-skip-tls-verify`."""
    cadata = _pem(login.ca_data).decode() if login.ca_data else None
    try:
        context = ssl.create_default_context(cafile=login.ca_path, cadata=cadata)
        if login.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        with _file(login.certificate_path, login.certificate_data) as cert, \
                _file(login.private_key_path, login.private_key_data) as key:
            if cert and key:
                context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as err:
        raise KubeconfigError(f"kubeconfig TLS settings: {err}") from None
    return context


def endpoint(login: Login) -> KubeEndpoint:
    """The server, TLS and Authorization header for the lean client."""
    headers = {}
    if login.token:
        headers["Authorization"] = f"{login.scheme or 'Bearer'} {login.token}"
    elif login.username and login.password:
        pair = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    tls: ssl.SSLContext | bool = (ssl_context(login) if login.server.startswith("https:")
                                  else False)
    return KubeEndpoint(server=login.server, ssl=tls, headers=headers, proxy=login.proxy_url)
