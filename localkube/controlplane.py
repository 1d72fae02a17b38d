"""Start etcd and kube-apiserver on free loopback ports, and always stop them.

Modelled on controller-runtime's envtest: no kubelet, no controller-manager, so
no Pods run and deleted namespaces stay Terminating. What an operator needs from
Kubernetes lives in the API server: schema validation, CEL, the status
subresource, RBAC, watches and TokenRequest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localkube.processes import Process, free_port, log_tail, stop_all

ADMIN_USER = "stemedb-admin"


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message carries the log tail."""


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver pair; use `ControlPlane.running(bin_dir)`."""

    bin_dir: Path
    workdir: Path
    port: int = 0
    admin_token: str = ""
    # An audit policy (YAML text) turns on kube-apiserver's audit log at `audit_log`.
    audit_policy: str | None = None
    _procs: list[Process] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "certs" / "apiserver.crt"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's events so far (empty without an audit policy); a last line
        still being written is left for the next read."""
        try:
            text = self.audit_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, bin_dir: Path, workdir: Path | None = None, ready_timeout: float = 90.0,
        *, audit_policy: str | None = None,
    ) -> Iterator[ControlPlane]:
        """Start both processes, yield when /readyz is ok, stop them on exit.

        With `audit_policy` (an audit.k8s.io/v1 Policy as YAML) the API server writes
        every request the policy selects to `audit_log`, one JSON event a line,
        before it answers (blocking mode).
        """
        own_dir = workdir is None
        wd = Path(tempfile.mkdtemp(prefix="localkube-")) if workdir is None else workdir
        cp = cls(bin_dir=bin_dir, workdir=wd, audit_policy=audit_policy)
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            # Turn SIGTERM into an exception so the finally below runs.
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            cp._start(ready_timeout)
            yield cp
        finally:
            cp.stop()
            if previous in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if own_dir:
                shutil.rmtree(wd, ignore_errors=True)

    def _start(self, ready_timeout: float) -> None:
        certs = self.workdir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        sa_key = self.workdir / "sa.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(sa_key), "2048"],
            check=True,
            capture_output=True,
        )
        self.admin_token = uuid.uuid4().hex
        (self.workdir / "tokens.csv").write_text(
            f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        )
        audit: list[str] = []
        if self.audit_policy is not None:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(self.audit_policy)
            audit = [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                     "--audit-log-format=json", "--audit-log-mode=blocking"]
        etcd_port, peer_port = free_port(), free_port()
        self.port = free_port()
        self._spawn(
            "etcd",
            [
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--cert-dir={certs}",
                f"--secure-port={self.port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--v=0",
                *audit,
            ],
        )
        self._wait_ready(ready_timeout)
        self._write_kubeconfig()

    def _spawn(self, name: str, args: list[str]) -> None:
        self._procs.append(
            Process.spawn([str(self.bin_dir / name), *args], self.workdir / f"{name}.log")
        )

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{proc.program} exited with {proc.returncode}:\n{log_tail(proc.log)}"
                    )
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError, ssl.SSLError):
                pass
            time.sleep(0.2)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {timeout:.0f}s:\n"
            f"{log_tail(self.workdir / 'kube-apiserver.log')}"
        )

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            self.kubeconfig_text(user=ADMIN_USER, token=self.admin_token)
        )

    def kubeconfig_text(self, *, user: str, token: str) -> str:
        """A kubeconfig for this server with a bearer token (admin or a ServiceAccount's)."""
        return f"""apiVersion: v1
kind: Config
clusters:
- name: localkube
  cluster:
    server: {self.server}
    certificate-authority: {self.ca_file}
contexts:
- name: {user}
  context: {{cluster: localkube, user: {user}}}
current-context: {user}
users:
- name: {user}
  user:
    token: {token}
"""

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server (as admin unless a token is given)."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}"]
        if token is not None:
            cmd.append(f"--token={token}")
        result = subprocess.run(
            [*cmd, *args], input=input, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def env(self) -> dict[str, str]:
        """Environment for child processes (kubectl, helm, the operator) to use this server."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def stop(self) -> None:
        """Stop kube-apiserver before etcd; escalate to SIGKILL after a grace period."""
        stop_all(reversed(self._procs), timeout=5)
        self._procs.clear()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
