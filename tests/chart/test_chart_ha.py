"""The chart as a platform team runs it: several replicas with leader election, a
PodDisruptionBudget, spread across nodes, the Lease's RBAC confined to one
namespace, security contexts that can be overridden, common metadata, and values
an umbrella chart passes (`global`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import CHART, Render, by_kind, one


def _args(docs: list[dict[str, Any]]) -> list[str]:
    return list(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize(
    ("sets", "replicas", "strategy", "elects", "pdb"),
    [
        ([], 2, "RollingUpdate", True, True),
        (["replicaCount=3"], 3, "RollingUpdate", True, True),
        (["replicaCount=1"], 1, "RollingUpdate", True, False),
        # Without an election two replicas would both act: one, recreated.
        (["leaderElection.enabled=false"], 1, "Recreate", False, False),
        (["leaderElection.enabled=false", "replicaCount=0"], 0, "Recreate", False, False),
        (["podDisruptionBudget.enabled=false"], 2, "RollingUpdate", True, False),
    ],
    ids=["defaults", "three", "one", "no election", "scaled to zero", "no pdb"],
)
def test_replicas_strategy_election_and_pdb(
    render: Render, sets: list[str], replicas: int, strategy: str, elects: bool, pdb: bool
) -> None:
    docs = render(sets=sets)
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == replicas
    assert spec["strategy"]["type"] == strategy
    if strategy == "RollingUpdate":
        # A new replica is ready (warm) before the old leader is stopped.
        assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    args = _args(docs)
    assert ("--leader-election" in args) is elects
    assert bool(by_kind(docs, "PodDisruptionBudget")) is pdb
    assert bool([r for r in by_kind(docs, "Role")
                 if r["metadata"]["name"].endswith("-leader-election")]) is elects


def test_the_pdb_selects_the_operator_pods(render: Render) -> None:
    docs = render()
    pdb = one(docs, "PodDisruptionBudget")
    deploy = one(docs, "Deployment")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deploy["spec"]["selector"]


def test_the_lease_role_grants_only_leases_in_the_release_namespace(render: Render) -> None:
    docs = render(namespace="db-ops", release="ops")
    role = next(r for r in by_kind(docs, "Role")
                if r["metadata"]["name"] == "ops-stemedb-operator-leader-election")
    assert role["metadata"]["namespace"] == "db-ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["ops-stemedb-operator-leader"], "verbs": ["get", "update"]},
    ]
    for cluster_role in by_kind(docs, "ClusterRole"):
        assert all("leases" not in r.get("resources", []) for r in cluster_role["rules"])
    args = _args(docs)
    assert args[args.index("--leader-election-namespace") + 1] == "db-ops"
    assert args[args.index("--leader-election-id") + 1] == "ops-stemedb-operator-leader"
    binding = next(b for b in by_kind(docs, "RoleBinding")
                   if b["metadata"]["name"] == "ops-stemedb-operator-leader-election")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_a_lease_name_can_be_chosen(render: Render) -> None:
    docs = render(sets=["leaderElection.leaseName=shared-lease"])
    args = _args(docs)
    assert args[args.index("--leader-election-id") + 1] == "shared-lease"


@pytest.mark.parametrize(
    ("sets", "keys"),
    [
        ([], ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]),
        (["topologySpreadConstraints[0].maxSkew=2",
          "topologySpreadConstraints[0].topologyKey=example.com/rack",
          "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule"],
         ["example.com/rack"]),
        (["replicaCount=1"], []),
    ],
    ids=["default: nodes and zones", "overridden", "one replica: none"],
)
def test_replicas_spread_across_nodes(render: Render, sets: list[str], keys: list[str]) -> None:
    pod = one(render(sets=sets), "Deployment")["spec"]["template"]["spec"]
    found = pod.get("topologySpreadConstraints", [])
    assert [c["topologyKey"] for c in found] == keys


# Every optional object on (ci/all-flags-on-values.yaml, the templated CRD), so a
# template that forgets the common metadata is among those checked.
_EVERY_OBJECT = ["crds.install=true", "podDisruptionBudget.enabled=true",
                 "notifications.alertmanager.urls={http://am:9093}"]
_CLUSTER_WIDE = {"ClusterRole", "ClusterRoleBinding"}
_NAMESPACED = {"Role", "RoleBinding"}
_ALWAYS = {"CustomResourceDefinition", "ServiceAccount", "Deployment", "Service",
           "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "NetworkPolicy",
           "ConfigMap", "Role", "RoleBinding"}


@pytest.mark.parametrize(
    ("extra_sets", "kinds"),
    [
        ([], _ALWAYS | _CLUSTER_WIDE),
        (["watch.allNamespaces=false"], _ALWAYS | _NAMESPACED),
    ],
    ids=["all namespaces", "namespaced"],
)
def test_common_labels_and_annotations_reach_every_object(
    render: Render, extra_sets: list[str], kinds: set[str]
) -> None:
    docs = render(values=CHART / "ci" / "all-flags-on-values.yaml",
                  sets=[*_EVERY_OBJECT, *extra_sets, "commonLabels.team=data",
                        "commonAnnotations.owner=db", "serviceAccount.annotations.iam=role"])
    assert {d["kind"] for d in docs} == kinds, "an optional object was not rendered"
    missing = [(d["kind"], d["metadata"]["name"]) for d in docs
               if d["metadata"].get("labels", {}).get("team") != "data"
               or d["metadata"].get("annotations", {}).get("owner") != "db"]
    assert missing == []
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"owner": "db", "iam": "role",
                                             "example.com/owner": "platform"}
    # The object's own annotations stay beside the common ones.
    assert one(docs, "ConfigMap")["metadata"]["annotations"] == {"owner": "db",
                                                                "grafana_folder": "StemeDB"}
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["selector"]["matchLabels"].get("team") is None, \
        "selectors are immutable: common labels stay out of them"
    assert deploy["spec"]["template"]["metadata"]["labels"]["team"] == "data"
    assert deploy["spec"]["template"]["metadata"]["annotations"]["owner"] == "db"


def test_openshift_can_drop_the_fixed_uids(render: Render) -> None:
    docs = render(sets=["podSecurityContext.runAsUser=null", "podSecurityContext.runAsGroup=null",
                        "podSecurityContext.fsGroup=null",
                        "containerSecurityContext.runAsUser=null",
                        "containerSecurityContext.runAsGroup=null"])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    c = pod["containers"][0]["securityContext"]
    assert "runAsUser" not in c and c["readOnlyRootFilesystem"] is True
    assert c["capabilities"] == {"drop": ["ALL"]}


def test_revision_history_limit(render: Render) -> None:
    assert one(render(), "Deployment")["spec"]["revisionHistoryLimit"] == 5
    assert one(render(sets=["revisionHistoryLimit=2"]),
               "Deployment")["spec"]["revisionHistoryLimit"] == 2


def test_global_values_from_an_umbrella_chart_are_accepted(render: Render) -> None:
    docs = render(sets=["global.imageRegistry=registry.example.com", "global.anything=1"])
    assert one(docs, "Deployment")
