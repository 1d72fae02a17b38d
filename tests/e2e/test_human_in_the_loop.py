"""Where a human and the operator meet, end to end (issue 14): a rebuild approval is
used up with the incident it approved, and a token rotated in StemeDB and in its
Secret costs at most one rejected request per node.

Real kube-apiserver, the simulator over HTTP, the operator as it ships under the
chart's RBAC; the assertions read what kubectl shows and the simulator's log.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from harness import Env, Operator, Simulator, condition, events, fast_spec, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APPROVE = "stemedb.io/approve-rebuild"
REBUILD_MARK = "stemedb.io/rebuild-requested"
REQUEST = re.compile(rf"{re.escape(APPROVE)}=(\S+?)(?:;|$|\s)")


def ready(obj: dict[str, Any]) -> bool:
    c = condition(obj, "Ready")
    return c is not None and c["status"] == "True"


def approval_requests(env: Env) -> list[str]:
    """The rebuild requests the operator asked a human to approve, oldest first."""
    evs = sorted(events(env.cp, env.namespace, "db"),
                 key=lambda e: (e.get("lastTimestamp") or e.get("eventTime") or ""))
    found: list[str] = []
    for e in evs:
        if e["reason"] == "RebuildNeedsApproval":
            m = REQUEST.search(e["message"])
            if m and m.group(1) not in found:
                found.append(m.group(1))
    return found


def pod_annotations(env: Env, pod: str) -> dict[str, str]:
    out = env.cp.kubectl("-n", env.namespace, "get", "pod", pod, "-o",
                         "jsonpath={.metadata.annotations}").stdout
    return dict(json.loads(out)) if out.strip() else {}


def incident(env: Env) -> list[str]:
    """A replica whose syncs fail while its disk is saturated: the ladder reaches the
    rebuild step. Returns the fault ids to clear."""
    return [env.fault("sync_failure", replica="node2", times=50, at_progress=0.2),
            env.fault("disk_saturation", replica="node2", capacity_factor=0.3)]


def test_a_rebuild_approval_is_used_up_with_its_incident(env: Env) -> None:
    env.cp.kubectl("-n", env.namespace, "run", "db-node2", "--image=stemedb:placeholder",
                   "--restart=Never")
    spec = fast_spec(env.sim, env.cluster, remediation={
        "throttle": {"enabled": False},
        "merkleSync": {"timeoutSeconds": 30, "stallTimeoutSeconds": 8, "maxAttempts": 1},
        "rebuild": {"policy": "Manual"},
    })
    spec["replicas"][0]["podRef"] = {"name": "db-node2"}
    env.apply(spec)
    env.start_operator()
    env.wait_status("a healthy first look", ready)

    # First incident: the operator asks, a human approves exactly that request.
    faults = incident(env)
    first = wait_for("a rebuild request", lambda: approval_requests(env), timeout=150)[0]
    assert first.startswith("node2@")
    assert REBUILD_MARK not in pod_annotations(env, "db-node2"), "nothing marked unapproved"
    env.cp.kubectl("-n", env.namespace, "annotate", "stemedbcluster", "db",
                   f"{APPROVE}={first}")
    wait_for("the approved rebuild mark",
             lambda: REBUILD_MARK in pod_annotations(env, "db-node2"), timeout=60)

    # The replica is rebuilt by hand (its mark removed) and the cluster recovers; the
    # approval annotation is left in place, as people forget to remove it.
    for f in faults:
        env.clear_fault(f)
    env.cp.kubectl("-n", env.namespace, "annotate", "pod", "db-node2", f"{REBUILD_MARK}-")
    env.wait_status("recovery", lambda o: ready(o) and o["status"]["laggingReplicas"] == 0,
                    timeout=150)

    # Second incident: the old approval approves nothing.
    incident(env)
    second = wait_for("a new rebuild request",
                      lambda: [r for r in approval_requests(env) if r != first], timeout=150)[0]
    assert second.startswith("node2@") and second != first
    ignored = [e["message"] for e in events(env.cp, env.namespace, "db")
               if e["reason"] == "RebuildNeedsApproval" and f"ignored {first}" in e["message"]]
    assert ignored, "the stale approval is reported as ignored"
    scrapes = env.sim.state(env.cluster)["metrics_requests"].get("node1", 0)
    wait_for("five more looks", lambda: env.sim.state(env.cluster)["metrics_requests"]
             .get("node1", 0) >= scrapes + 5, timeout=60)
    assert REBUILD_MARK not in pod_annotations(env, "db-node2"), (
        "a stale approval must not mark the replica in a later incident")


def secret(namespace: str, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "stemedb-token", "namespace": namespace,
                         "labels": {"stemedb.io/credentials": "true"}},
            "data": {"token": base64.b64encode(token.encode()).decode()}}


def test_a_rotated_token_costs_at_most_one_rejected_request_per_node(
    env: Env, tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token-0123456789")
    (tmp_path / "tokensim").mkdir()
    with Simulator.running(tmp_path / "tokensim", "--clusters", "unused", "--seed", "3",
                           "--token-file", str(token_file)) as sim:
        sim.sim("POST", "/clusters", {"name": env.cluster, "replicas": 2, "load": 2000})
        env.cp.kubectl("apply", "-f", "-",
                       input=json.dumps(secret(env.namespace, "first-token-0123456789")))
        spec = fast_spec(sim, env.cluster)
        spec["auth"] = {"tokenSecretRef": {"name": "stemedb-token", "key": "token"}}
        env.apply(spec)
        env.operators.append(Operator.start(env.kubeconfig, env.namespace,
                                            env.workdir / "operator.log"))
        env.wait_status("a healthy first look", ready)

        def looks() -> int:
            return int(sim.state(env.cluster)["metrics_requests"].get("node1", 0))

        # Rotation as an admin does it: the Secret first, then StemeDB.
        env.cp.kubectl("apply", "-f", "-",
                       input=json.dumps(secret(env.namespace, "second-token-9876543210")))
        token_file.write_text("second-token-9876543210")
        target = looks() + 10
        wait_for("ten looks after the rotation", lambda: looks() >= target, timeout=60)

        state = sim.state(env.cluster)
        rejected = state["unauthorized_requests"]
        assert set(rejected) <= {"node1"} and rejected.get("node1", 0) <= 1, (
            f"at most one rejected scrape, then the Secret is read again: {rejected}")
        obj = env.get()
        metrics = condition(obj, "MetricsAvailable")
        assert metrics is not None and metrics["status"] == "True", metrics
        assert "second-token" not in json.dumps(obj) and "first-token" not in json.dumps(obj)
        assert "second-token" not in env.operator_logs()


def test_while_blind_kubectl_shows_unknown_and_since_when_not_the_last_lag(env: Env) -> None:
    """Issue 14, #8: with the primary's metrics unreadable, `kubectl get` showed the last
    known MAX LAG and LAGGING 0 with Degraded=False NoLag, as if current."""
    env.apply(fast_spec(env.sim, env.cluster))
    env.start_operator()
    env.wait_status("a healthy first look", ready)

    outage = env.fault("http_error", node="node1", endpoint="metrics", status=500)
    blind = env.wait_status("the lag reported unknown",
                            lambda o: o["status"].get("maxLag") == "Unknown")
    degraded = condition(blind, "Degraded")
    assert degraded is not None and degraded["status"] == "Unknown", degraded
    assert degraded["message"].startswith("Lag unknown since ")
    assert blind["status"]["lagUnknownSince"]
    assert blind["status"].get("maxLagSeconds") is None
    assert blind["status"].get("laggingReplicas") is None
    row = env.cp.kubectl("-n", env.namespace, "get", "stemedbcluster", "db",
                         "--no-headers").stdout.split()
    assert "Unknown" in row, row  # the Max Lag column

    env.clear_fault(outage)
    seen = env.wait_status("numbers again", lambda o: o["status"].get("maxLag") not in (
        None, "Unknown"))
    assert seen["status"].get("lagUnknownSince") is None
    assert (condition(seen, "Degraded") or {}).get("status") in ("True", "False")
