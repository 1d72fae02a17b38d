"""The runbook's situations, end to end: real kube-apiserver, real simulator over
HTTP, the operator as it ships (its console command) under the chart's RBAC rules.

Each test asserts what `kubectl` shows and what the simulator's admin log recorded.
"""

from __future__ import annotations

import pytest
from harness import Env, condition, events, fast_spec, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def cond_status(obj: dict, ctype: str) -> str | None:
    c = condition(obj, ctype)
    return None if c is None else c["status"]


def reasons(env: Env) -> list[str]:
    return [e["reason"] for e in events(env.cp, env.namespace, "db")]


def test_a_tripped_breaker_is_reset_and_the_replica_recovers(env: Env) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("breaker_trip", replica="node2")
    env.wait_status("the breaker reset", lambda o: any(
        c["endpoint"].endswith("/circuit-breaker/reset") for c in env.writes()))
    env.wait_status("recovery", lambda o: cond_status(o, "Ready") == "True"
                    and o["status"]["laggingReplicas"] == 0, timeout=90)

    resets = [c for c in env.writes() if c["endpoint"].endswith("/circuit-breaker/reset")]
    assert [c["body"] for c in resets] == [{"agent_id": "agent-node2"}]
    assert not [c for c in env.writes() if c["endpoint"].endswith("/cluster/sync")]
    assert "BreakerReset" in reasons(env)
    state = env.sim.state(env.cluster)
    assert state["replicas"]["node2"]["breaker"]["tripped"] is False


def rate_limit_posts(env: Env) -> list[object]:
    return [c["body"]["max_assertions_per_sec"] for c in env.writes()
            if c["endpoint"].endswith("/rate-limit")]


def sync_posts(env: Env) -> list[dict]:
    return [c for c in env.writes() if c["endpoint"].endswith("/cluster/sync")]


def scrapes(env: Env) -> int:
    return int(env.sim.state(env.cluster)["metrics_requests"].get("node1", 0))


def wait_scrapes(env: Env, more: int) -> None:
    """Wait until the operator has looked `more` more times: proof that it had the
    chance to act, without sleeping for a guessed time."""
    target = scrapes(env) + more
    wait_for(f"{more} more scrapes", lambda: scrapes(env) >= target, timeout=60)


def test_disk_saturation_is_throttled_and_the_rate_is_restored_in_a_ramp(env: Env) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    disk = env.fault("disk_saturation", replica="node2", capacity_factor=0.4)
    # 2000/s offered, 1200/s capacity: only a limit under 1200/s drains the lag.
    env.wait_status("a throttle below capacity",
                    lambda o: any(isinstance(r, int) and r < 1200 for r in rate_limit_posts(env)),
                    timeout=90)
    env.clear_fault(disk)
    final = env.wait_status(
        "the limit lifted again",
        lambda o: rate_limit_posts(env)[-1:] == [None]
        and o["status"]["throttle"]["phase"] == "None", timeout=120)

    posts = rate_limit_posts(env)
    lowest = posts.index(min(p for p in posts if p is not None))
    down, up = posts[: lowest + 1], posts[lowest + 1:]
    assert down == sorted(down, reverse=True), posts
    assert len(up) >= 2, f"restored in one jump, not a ramp: {posts}"
    assert up[-1] is None and up[:-1] == sorted(up[:-1]), posts
    assert all(p is None or p >= 100 for p in posts), "never below the floor"
    assert not sync_posts(env)
    assert env.sim.state(env.cluster)["rate_limit"] is None
    assert {"ThrottleStep"} <= set(reasons(env))
    assert cond_status(final, "Ready") == "True"


def test_a_stuck_replica_gets_one_forced_sync(env: Env) -> None:
    spec = fast_spec(env.sim, env.cluster,
                     remediation={"throttle": {"enabled": False}})
    env.apply(spec)
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    disk = env.fault("disk_saturation", replica="node2", capacity_factor=0.3)
    env.wait_status("a forced sync", lambda o: sync_posts(env), timeout=90)
    env.wait_status("the sync seen running",
                    lambda o: o["status"]["currentStep"] == "ForceSync(node2)")
    env.clear_fault(disk)
    env.wait_status("recovery", lambda o: cond_status(o, "Ready") == "True", timeout=120)

    syncs = sync_posts(env)
    assert [s["body"] for s in syncs] == [{"replica_id": "node2", "force": True}]
    tripped_checks = [c for c in env.admin_calls("GET")
                      if c["endpoint"].endswith("/circuit-breakers/tripped")]
    assert tripped_checks and tripped_checks[0]["seq"] < syncs[0]["seq"], (
        "the breaker is checked before a sync is forced")
    assert not [c for c in env.writes() if c["endpoint"].endswith("/circuit-breaker/reset")]
    assert "ForceSync" in reasons(env)


def test_repeated_sync_failures_end_in_a_rebuild_mark_and_escalation(env: Env) -> None:
    env.cp.kubectl("-n", env.namespace, "run", "db-node2", "--image=stemedb:placeholder",
                   "--restart=Never")
    spec = fast_spec(env.sim, env.cluster, remediation={
        "throttle": {"enabled": False},
        "merkleSync": {"timeoutSeconds": 30, "stallTimeoutSeconds": 8, "maxAttempts": 2},
        "rebuild": {"policy": "Automatic"},
    })
    spec["replicas"][0]["podRef"] = {"name": "db-node2"}
    env.apply(spec)
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("sync_failure", replica="node2", times=10, at_progress=0.2)
    env.fault("disk_saturation", replica="node2", capacity_factor=0.3)
    final = env.wait_status(
        "a rebuild mark and escalation",
        lambda o: any(r["rebuildMarked"] for r in o["status"]["replicas"])
        and cond_status(o, "Escalated") == "True", timeout=150)

    assert len(sync_posts(env)) == 2, "maxAttempts syncs, no more"
    assert final["status"]["escalation"]["level"] >= 1
    assert final["status"]["escalation"]["contact"]
    pod = env.cp.kubectl("-n", env.namespace, "get", "pod", "db-node2", "-o",
                         "jsonpath={.metadata.annotations}").stdout
    assert "stemedb.io/rebuild-requested" in pod
    assert "MarkRebuild" in reasons(env)


def test_corruption_escalates_at_once_to_the_top_level(env: Env) -> None:
    spec = fast_spec(env.sim, env.cluster, remediation={"throttle": {"enabled": False}})
    env.apply(spec)
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("corruption", replica="node2", at_progress=0.2)
    env.fault("disk_saturation", replica="node2", capacity_factor=0.3)
    final = env.wait_status(
        "escalation to the principal engineer",
        lambda o: o["status"]["escalation"]["level"] == 3, timeout=120)
    wait_scrapes(env, 5)

    assert final["status"]["escalation"]["reason"] == "MerkleCorruption"
    assert final["status"]["escalation"]["contact"] == "Principal engineer"
    assert cond_status(final, "Escalated") == "True"
    assert len(sync_posts(env)) == 1, "no further sync once corruption is known"


def test_several_replicas_lagging_together_throttle_and_escalate_without_syncs(
    env: Env,
) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("primary_overload", send_capacity_factor=0.05)
    final = env.wait_status(
        "a storm escalation", lambda o: (condition(o, "Escalated") or {}).get("reason")
        == "ReplicaStorm", timeout=90)
    env.wait_status("a throttle", lambda o: rate_limit_posts(env), timeout=60)
    wait_scrapes(env, 5)

    assert not sync_posts(env), "no per-replica sync storm"
    assert not [c for c in env.writes() if c["endpoint"].endswith("/circuit-breaker/reset")]
    assert final["status"]["laggingReplicas"] == 2


def test_flapping_lag_causes_no_action(env: Env) -> None:
    spec = fast_spec(env.sim, env.cluster,
                     detection={"critical": {"lagSeconds": 4, "forSeconds": 8}})
    env.apply(spec)
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("flapping", replica="node2", threshold_seconds=4, amplitude_seconds=2,
              period_seconds=6)
    wait_scrapes(env, 20)

    assert env.writes() == []
    assert cond_status(env.get(), "Remediating") != "True"


@pytest.mark.parametrize("fault", [
    {"kind": "garbled_metrics", "node": "node1"},
    {"kind": "truncated_metrics", "fraction": 0.5},
    {"kind": "connection_refused", "node": "node1"},
    {"kind": "http_error", "node": "node1", "endpoint": "metrics", "status": 500},
], ids=["garbled", "truncated", "connection reset", "HTTP 500"])
def test_unreadable_metrics_cause_no_action_and_metrics_unavailable(
    env: Env, fault: dict
) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault(**fault)
    env.fault("breaker_trip", replica="node2")
    obj = env.wait_status("MetricsAvailable=False",
                          lambda o: cond_status(o, "MetricsAvailable") == "False")
    wait_scrapes(env, 8)

    assert env.writes() == []
    assert cond_status(obj, "RemediationAllowed") == "False"


def test_dry_run_makes_no_admin_call(env: Env) -> None:
    env.apply(fast_spec(env.sim, env.cluster, remediation={"mode": "DryRun"}))
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("breaker_trip", replica="node2")
    env.wait_status("a would-do event", lambda o: "WouldAct" in reasons(env), timeout=60)

    assert env.writes() == []
    assert (condition(env.get(), "RemediationAllowed") or {}).get("reason") == "DryRunMode"


def test_paused_does_nothing(env: Env) -> None:
    env.apply(fast_spec(env.sim, env.cluster, remediation={"paused": True}))
    env.start_operator()
    env.wait_status("a first look", lambda o: condition(o, "Ready") is not None)

    env.fault("breaker_trip", replica="node2")
    obj = env.wait_status("the lag seen", lambda o: o["status"].get("laggingReplicas") == 1,
                          timeout=60)
    wait_scrapes(env, 8)

    assert env.writes() == []
    assert (condition(obj, "RemediationAllowed") or {}).get("reason") == "Paused"


def test_an_invalid_resource_is_refused_by_kubectl_apply(env: Env) -> None:
    spec = fast_spec(env.sim, env.cluster,
                     detection={"warning": {"lagSeconds": 10, "forSeconds": 1}})
    with pytest.raises(Exception) as refused:
        env.apply(spec)
    stderr = getattr(refused.value, "stderr", "")
    assert "spec.detection.critical.lagSeconds must be greater than" in stderr, stderr

    spec = fast_spec(env.sim, env.cluster)
    spec["replicas"].append(dict(spec["replicas"][0]))
    with pytest.raises(Exception) as refused:
        env.apply(spec)
    assert 'spec.replicas[2]: Duplicate value: {"id":"node2"}' in getattr(
        refused.value, "stderr", ""), refused.value
    assert env.cp.kubectl("-n", env.namespace, "get", "stemedbclusters", "-o", "name").stdout == ""


def test_an_operator_killed_mid_remediation_repeats_nothing_after_restart(env: Env) -> None:
    spec = fast_spec(env.sim, env.cluster, remediation={
        "throttle": {"enabled": False},
        "merkleSync": {"timeoutSeconds": 60, "stallTimeoutSeconds": 30, "maxAttempts": 3},
    })
    # A slow Merkle sync (4 MB of tree at 200 kB/s), so it runs across the restart.
    env.sim.sim("DELETE", f"/clusters/{env.cluster}")
    env.sim.sim("POST", "/clusters", {"name": env.cluster, "replicas": 2,
                                      "sync_bandwidth": 200_000})
    env.apply(spec)
    first = env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")
    disk = env.fault("disk_saturation", replica="node2", capacity_factor=0.3)
    env.wait_status("a forced sync", lambda o: sync_posts(env), timeout=90)
    first.kill()

    env.start_operator()
    wait_scrapes(env, 10)
    assert env.sim.state(env.cluster)["replicas"]["node2"]["sync"]["state"] == "running"
    env.clear_fault(disk)
    env.wait_status("recovery", lambda o: cond_status(o, "Ready") == "True", timeout=150)

    assert len(sync_posts(env)) == 1, [s["body"] for s in sync_posts(env)]
    keys = [c["body"] for c in env.writes()]
    assert len(keys) == len({str(k) for k in keys}) or keys == [], keys


def test_a_resource_deleted_while_throttled_leaves_the_database_unthrottled(env: Env) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("disk_saturation", replica="node2", capacity_factor=0.4)
    env.wait_status("a throttle", lambda o: env.sim.state(env.cluster)["rate_limit"]
                    is not None, timeout=90)

    env.cp.kubectl("-n", env.namespace, "delete", "stemedbcluster", "db", "--timeout=60s")

    assert env.sim.state(env.cluster)["rate_limit"] is None
    assert rate_limit_posts(env)[-1] is None
