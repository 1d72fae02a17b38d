"""Smoke tests of the test rig itself: a real API server answers like one."""

from __future__ import annotations

import json
import subprocess

import pytest

from localkube import ControlPlane

pytestmark = pytest.mark.e2e


def test_kubectl_version_shows_the_server_we_built(control_plane: ControlPlane) -> None:
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.35.")
    assert out["clientVersion"]["gitVersion"].startswith("v1.35.")


def test_a_namespaced_object_round_trips_create_get_patch_delete(
    control_plane: ControlPlane, namespace: str
) -> None:
    kc = control_plane.kubectl
    kc("-n", namespace, "create", "configmap", "probe", "--from-literal=step=one")
    got = json.loads(kc("-n", namespace, "get", "configmap", "probe", "-o", "json").stdout)
    assert got["data"] == {"step": "one"}

    kc("-n", namespace, "patch", "configmap", "probe", "--type=merge", "-p",
       '{"data": {"step": "two"}}')
    got = json.loads(kc("-n", namespace, "get", "configmap", "probe", "-o", "json").stdout)
    assert got["data"] == {"step": "two"}

    kc("-n", namespace, "delete", "configmap", "probe")
    missing = kc("-n", namespace, "get", "configmap", "probe", check=False)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_a_service_account_token_is_refused_outside_its_role(
    control_plane: ControlPlane, namespace: str
) -> None:
    kc = control_plane.kubectl
    kc("-n", namespace, "create", "serviceaccount", "narrow")
    kc("-n", namespace, "create", "role", "read-configmaps", "--verb=get,list",
       "--resource=configmaps")
    kc("-n", namespace, "create", "rolebinding", "narrow", "--role=read-configmaps",
       f"--serviceaccount={namespace}:narrow")
    kc("-n", namespace, "create", "configmap", "visible")
    token = kc("-n", namespace, "create", "token", "narrow").stdout.strip()
    assert token.count(".") == 2, "TokenRequest should return a JWT"

    allowed = kc("-n", namespace, "get", "configmaps", token=token, check=False)
    assert allowed.returncode == 0, allowed.stderr
    assert "visible" in allowed.stdout

    cases = [
        ("-n", namespace, "get", "secrets"),
        ("-n", namespace, "delete", "configmap", "visible"),
        ("get", "configmaps", "--all-namespaces"),
    ]
    for args in cases:
        denied = kc(*args, token=token, check=False)
        assert denied.returncode != 0, args
        assert "Forbidden" in denied.stderr and f"system:serviceaccount:{namespace}:narrow" in (
            denied.stderr
        ), (args, denied.stderr)


def test_an_interrupted_run_leaves_no_process_and_no_files_behind(bin_dir) -> None:
    """SIGTERM to the owner (CI cancelling, Ctrl-C) must still stop etcd and kube-apiserver."""
    import os
    import signal
    import sys
    from pathlib import Path

    owner = subprocess.Popen(
        [sys.executable, "-m", "localkube"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "STEMEDB_BIN_DIR": str(bin_dir)},
        cwd=Path(__file__).resolve().parents[2],  # localkube is not installed: the checkout
    )
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line.startswith("export KUBECONFIG="), line
    workdir = Path(line.split("=", 1)[1].strip()).parent
    running = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert len(running.stdout.split()) == 2, "etcd and kube-apiserver should be running"

    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=30) == 0

    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert left.stdout.split() == []
    assert not workdir.exists()
