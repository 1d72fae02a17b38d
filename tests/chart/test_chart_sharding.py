"""The chart's sharding mode: `--sharding` instead of `--leader-election`, every
replica acting on its part, and a Role for the shard Leases confined to the
release namespace."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import Render, by_kind, one


def _args(docs: list[dict[str, Any]]) -> list[str]:
    return list(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


def _roles(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}


@pytest.mark.parametrize(
    ("sets", "replicas", "mode"),
    [
        ([], 2, "--leader-election"),
        (["sharding.enabled=true"], 2, "--sharding"),
        (["sharding.enabled=true", "replicaCount=3"], 3, "--sharding"),
        # Sharding replaces the election whatever leaderElection says.
        (["sharding.enabled=true", "leaderElection.enabled=false", "replicaCount=3"], 3,
         "--sharding"),
    ],
    ids=["default: election", "sharded", "three shards", "sharded, election off"],
)
def test_sharding_replaces_leader_election(
    render: Render, sets: list[str], replicas: int, mode: str
) -> None:
    docs = render(sets=sets)
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == replicas
    assert spec["strategy"]["type"] == "RollingUpdate"
    args = _args(docs)
    assert [a for a in args if a in ("--sharding", "--leader-election")] == [mode]
    roles = _roles(docs)
    assert any(n.endswith("-sharding") for n in roles) is (mode == "--sharding")
    assert any(n.endswith("-leader-election") for n in roles) is (mode != "--sharding")


def test_the_shard_role_grants_only_leases_in_the_release_namespace(render: Render) -> None:
    docs = render(namespace="db-ops", release="ops", sets=["sharding.enabled=true"])
    role = _roles(docs)["ops-stemedb-operator-sharding"]
    assert role["metadata"]["namespace"] == "db-ops"
    # list: the ring; get/update: its own Lease (named after the Pod); delete: a gone
    # replica's; no watch.
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["create", "delete", "get", "list", "update"]}]
    binding = next(b for b in by_kind(docs, "RoleBinding")
                   if b["metadata"]["name"] == "ops-stemedb-operator-sharding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == "db-ops"
    args = _args(docs)
    assert args[args.index("--leader-election-namespace") + 1] == "db-ops"
    assert args[args.index("--shard-ring") + 1] == "ops-stemedb-operator"
    # status.shard is a status write, which the operator's ClusterRole already allows.
    rules = one(render(sets=["sharding.enabled=true", "watch.allNamespaces=true"]),
                "ClusterRole")["rules"]
    assert any("stemedbclusters/status" in r["resources"] and "patch" in r["verbs"]
               for r in rules)


@pytest.mark.parametrize(("ring", "ok"), [("shared", True), ("Bad_Ring", False),
                                           ("x" * 41, False)])
def test_a_ring_name_can_be_chosen(render: Render, ring: str, ok: bool) -> None:
    if not ok:
        with pytest.raises(AssertionError, match="ring"):
            render(sets=["sharding.enabled=true", f"sharding.ring={ring}"])
        return
    args = _args(render(sets=["sharding.enabled=true", f"sharding.ring={ring}"]))
    assert args[args.index("--shard-ring") + 1] == ring
