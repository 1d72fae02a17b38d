"""`kubectl stemedb` end to end: the installed `kubectl-stemedb` executable, run by
itself and through the real kubectl's plugin lookup, against the real API server.

The on-call path runs the operator and the simulator until a rebuild waits for
approval, reads the screen a human would, and approves through the plugin: the
operator then marks the replica, so the annotation written is the one it expects.
The other tests write a status through the status subresource in the operator's
shape (docs/kubectl-plugin.md) and check what the plugin shows and writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Env, condition, fast_spec, get_cluster

from localkube import ControlPlane
from localkube.simulator import cluster_object, cluster_spec

pytestmark = [pytest.mark.e2e]

PLUGIN = Path(sys.executable).parent / "kubectl-stemedb"
ANNOTATION = "stemedb.io/approve-rebuild"


def plugin(cp: ControlPlane, *args: str, via_kubectl: bool = False,
           kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`kubectl-stemedb ARGS`, or `kubectl stemedb ARGS` with the plugin on PATH."""
    env = {**cp.env(), "KUBECONFIG": str(kubeconfig or cp.kubeconfig),
           "PATH": os.pathsep.join([str(PLUGIN.parent), str(cp.bin_dir),
                                    os.environ.get("PATH", "")])}
    cmd = [str(cp.bin_dir / "kubectl"), "stemedb"] if via_kubectl else [str(PLUGIN)]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def create(cp: ControlPlane, namespace: str, name: str, replicas: int = 3,
           annotations: dict[str, str] | None = None, **sections: Any) -> None:
    spec = cluster_spec("http://stemedb.example:18180", name, replicas, **sections)
    cp.kubectl("apply", "-f", "-",
               input=json.dumps(cluster_object(name, namespace, spec, annotations)))


def write_status(cp: ControlPlane, namespace: str, name: str, status: dict[str, Any]) -> None:
    cp.kubectl("-n", namespace, "patch", "stemedbcluster", name, "--subresource=status",
               "--type=merge", "-p", json.dumps({"status": status}))


def cond(ctype: str, status: bool, reason: str, message: str,
         since: str = "2026-11-29T21:00:00Z") -> dict[str, Any]:
    return {"type": ctype, "status": "True" if status else "False", "reason": reason,
            "message": message, "lastTransitionTime": since}


def replica(rid: str, lag: float | None, state: str = "InSync", step: str = "None",
            **more: Any) -> dict[str, Any]:
    return {"id": rid, "state": state, "lagSeconds": lag, "step": step, "attempts": 0,
            "syncAttempts": 0, "since": None, "lastAction": None, "rebuildMarked": False,
            **more}


def healthy_status(metrics: bool = True) -> dict[str, Any]:
    """What the operator writes for a healthy cluster, or one whose /metrics fails."""
    return {
        "observedGeneration": 1, "summary": "x", "maxLagSeconds": 0.4, "laggingReplicas": 0,
        "currentStep": "None", "escalated": False,
        "escalation": {"level": 0, "reason": "NotEscalated", "contact": None, "message": ""},
        "replicas": [replica("node2", 0.4), replica("node3", 0.2), replica("node4", 0.1)],
        "history": [],
        "conditions": [
            cond("Ready", metrics, "AllReplicasInSync" if metrics else "MetricsUnavailable",
                 "All 3 replicas in sync" if metrics else "Lag cannot be read"),
            cond("MetricsAvailable", metrics,
                 "MetricsScraped" if metrics else "PrimaryScrapeFailed",
                 "Lag read for 3 of 3 replicas" if metrics
                 else "Primary /metrics: connection refused", "2026-11-29T21:05:00Z"),
            cond("Degraded", False, "NoLag", "No replica past warning"),
            cond("Escalated", False, "NotEscalated", "Nothing needs a human"),
        ],
    }


@pytest.mark.slow
def test_on_call_sees_the_rebuild_waiting_and_approves_it_with_the_plugin(env: Env) -> None:
    """The operator and the simulator, a rebuild waiting for approval: the plugin's
    screen says who to call and the exact command, and that command's approval is
    the one the operator takes."""
    env.cp.kubectl("-n", env.namespace, "run", "db-node2", "--image=stemedb:placeholder",
                   "--restart=Never")
    spec = fast_spec(env.sim, env.cluster, remediation={
        "throttle": {"enabled": False},
        "merkleSync": {"timeoutSeconds": 30, "stallTimeoutSeconds": 8, "maxAttempts": 2},
    })
    spec["replicas"][0]["podRef"] = {"name": "db-node2"}
    env.apply(spec)
    env.start_operator()
    env.wait_status("a healthy first look",
                    lambda o: (condition(o, "Ready") or {}).get("status") == "True")
    env.fault("sync_failure", replica="node2", times=10, at_progress=0.2)
    env.fault("disk_saturation", replica="node2", capacity_factor=0.3)
    waiting = env.wait_status(
        "a rebuild waiting for approval",
        lambda o: (condition(o, "Remediating") or {}).get("reason") == "AwaitingRebuildApproval",
        timeout=150)
    request = condition(waiting, "Remediating")["message"].rsplit(f"{ANNOTATION}=", 1)[1]
    command = f"kubectl stemedb approve-rebuild db node2 -n {env.namespace}"

    screen = plugin(env.cp, "status", "db", "-n", env.namespace, via_kubectl=True)
    assert screen.returncode == 0, screen.stderr
    lines = screen.stdout.splitlines()
    assert len(lines) <= 40, screen.stdout
    assert max(len(line) for line in lines if command not in line) <= 80, screen.stdout
    assert f"StemeDBCluster {env.namespace}/db" in lines[0]
    assert any(line.startswith("Phase        Escalated, level ") for line in lines)
    assert any(line.startswith("  Call now   ") for line in lines), screen.stdout
    assert f"    {command}" in lines
    [row] = [line.split() for line in lines if line.startswith("  node2 ")]
    assert row[3] == "Critical" and row[4] == "Rebuild", screen.stdout

    doc = json.loads(plugin(env.cp, "status", "db", "-n", env.namespace, "-o", "json").stdout)
    assert doc["escalation"]["level"] >= 1 and doc["escalation"]["contact"]
    assert [a["command"] for a in doc["manualActions"]] == [command]
    assert {r["id"]: r["rebuildRequest"] for r in doc["replicas"]} == {
        "node2": request, "node3": None}

    refused = plugin(env.cp, "approve-rebuild", "db", "node3", "-n", env.namespace)
    assert refused.returncode == 1
    assert "no rebuild of node3 waits for approval" in refused.stderr
    assert ANNOTATION not in (env.get()["metadata"].get("annotations") or {})

    approved = plugin(env.cp, *command.split()[2:], via_kubectl=True)
    assert approved.returncode == 0, approved.stderr
    assert env.get()["metadata"]["annotations"][ANNOTATION] == request
    marked = env.wait_status("node2 marked for rebuild", lambda o: o["status"]["replicas"][0][
        "rebuildMarked"], timeout=60)
    assert (condition(marked, "Remediating") or {}).get("reason") == "RebuildMarked"


@pytest.mark.parametrize(("status", "shows", "json_lag"), [
    (healthy_status(), ["Phase        Healthy: All 3 replicas in sync",
                        "Max lag      0.4 s, 0 of 3 replicas lagging"], 0.4),
    (healthy_status(metrics=False), ["Phase        Blind", "Max lag      Unknown since ",
                                     "             Primary /metrics: connection refused"], None),
    (None, ["Phase        Pending: the operator has not written a status yet"], None),
], ids=["healthy", "metrics unavailable", "no status yet"])
def test_status_shows_what_the_operator_wrote_and_unknown_for_what_it_cannot_know(
    control_plane: ControlPlane, crd: None, namespace: str, status: dict[str, Any] | None,
    shows: list[str], json_lag: float | None,
) -> None:
    create(control_plane, namespace, "db")
    if status is not None:
        write_status(control_plane, namespace, "db", status)
    out = plugin(control_plane, "status", "db", "-n", namespace)
    assert out.returncode == 0, out.stderr
    for line in shows:
        assert any(got.startswith(line) for got in out.stdout.splitlines()), out.stdout
    doc = json.loads(plugin(control_plane, "status", "db", "-n", namespace, "-o", "json").stdout)
    assert doc["maxLagSeconds"] == json_lag
    if status is not None and json_lag is None:
        assert [r["lagSeconds"] for r in doc["replicas"]] == [None, None, None], \
            "no stale lag is shown while the metrics are unavailable"


def test_all_namespaces_gives_one_line_per_cluster(
    control_plane: ControlPlane, crd: None, namespace: str,
) -> None:
    create(control_plane, namespace, "alpha")
    create(control_plane, namespace, "beta")
    write_status(control_plane, namespace, "alpha", healthy_status(metrics=False))
    out = plugin(control_plane, "status", "-A")
    assert out.returncode == 0, out.stderr
    mine = [line.split()[:4] for line in out.stdout.splitlines() if line.startswith(namespace)]
    assert mine == [[namespace, "alpha", "Blind", "Unknown"],
                    [namespace, "beta", "Pending", "Unknown"]]
    listed = json.loads(plugin(control_plane, "status", "-n", namespace, "-o", "json").stdout)
    assert [(i["name"], i["phase"]) for i in listed["items"]] == [("alpha", "Blind"),
                                                                  ("beta", "Pending")]


def test_the_context_namespace_and_kubeconfig_flags_choose_where_to_look(
    control_plane: ControlPlane, crd: None, namespace: str, tmp_path: Path,
) -> None:
    create(control_plane, namespace, "db")
    kubeconfig = yaml.safe_load(control_plane.kubeconfig.read_text())
    # A second context onto the same cluster and user, whose namespace is the test's.
    current = kubeconfig["contexts"][0]["context"]
    kubeconfig["contexts"].append({"name": "oncall",
                                   "context": {**current, "namespace": namespace}})
    config = tmp_path / "two-contexts.kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig))
    found = plugin(control_plane, "status", "db", "--kubeconfig", str(config), "--context",
                   "oncall", kubeconfig=tmp_path / "absent")
    assert found.returncode == 0, found.stderr
    assert f"StemeDBCluster {namespace}/db" in found.stdout
    missing = plugin(control_plane, "status", "db", "--kubeconfig", str(config))
    assert missing.returncode == 1
    assert "not found in namespace 'default'" in missing.stderr
    bad = plugin(control_plane, "status", "db", "--context", "nope")
    assert bad.returncode == 2 and "no context named 'nope'" in bad.stderr
    # A name is one path segment of a Kubernetes name, never a path to another object.
    escape = plugin(control_plane, "status", "../../../api/v1/namespaces/kube-system/secrets",
                    "-n", namespace)
    assert escape.returncode == 1 and "refusing StemeDBCluster name" in escape.stderr


@pytest.mark.parametrize(("verb", "before", "after"), [
    ("pause", False, True), ("resume", True, False), ("pause", True, True),
])
def test_pause_and_resume_set_the_field_the_operator_honours(
    control_plane: ControlPlane, crd: None, namespace: str, verb: str, before: bool,
    after: bool,
) -> None:
    create(control_plane, namespace, "db", remediation={"paused": before})
    out = plugin(control_plane, verb, "db", "-n", namespace, via_kubectl=True)
    assert out.returncode == 0, out.stderr
    obj = get_cluster(control_plane, namespace, "db")
    assert obj["spec"]["remediation"]["paused"] is after
    assert obj["metadata"]["generation"] == (1 if before == after else 2)


def test_approve_rebuild_refuses_when_no_rebuild_waits(
    control_plane: ControlPlane, crd: None, namespace: str,
) -> None:
    create(control_plane, namespace, "db")
    write_status(control_plane, namespace, "db", healthy_status())
    out = plugin(control_plane, "approve-rebuild", "db", "node2", "-n", namespace)
    assert out.returncode == 1
    assert "no rebuild of node2 waits for approval (its step is None)" in out.stderr
    unknown = plugin(control_plane, "approve-rebuild", "db", "node9", "-n", namespace)
    assert unknown.returncode == 1 and "has no replica 'node9'" in unknown.stderr
    obj = get_cluster(control_plane, namespace, "db")
    assert ANNOTATION not in (obj["metadata"].get("annotations") or {})
