"""The chart's RBAC, applied to a real API server and exercised with the chart's own
ServiceAccount token: it can do every rule of files/rbac-rules.yaml and nothing else
that matters (no Secret listing, no deleting StemeDBClusters, no other kinds)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.chart.conftest import by_kind, one, rbac_rules

pytestmark = pytest.mark.e2e

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def _resource_arg(group: str, resource: str) -> list[str]:
    name, _, sub = resource.partition("/")
    qualified = f"{name}.{group}" if group else name
    return [qualified, f"--subresource={sub}"] if sub else [qualified]


def allowed_by_the_rules_file() -> list[tuple[str, list[str]]]:
    """(verb, resource args) for every verb x resource x group in rbac-rules.yaml."""
    checks = []
    for rule in rbac_rules():
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    checks.append((verb, _resource_arg(group, resource)))
    return checks


# (verb, resource args, scope) the operator must NOT be able to do.
DENIED = [
    ("list", ["secrets"], "all"),
    ("list", ["secrets"], "ns"),
    ("watch", ["secrets"], "ns"),
    ("create", ["secrets"], "ns"),
    ("update", ["secrets"], "ns"),
    ("delete", ["stemedbclusters.stemedb.io"], "ns"),
    ("deletecollection", ["stemedbclusters.stemedb.io"], "ns"),
    ("create", ["stemedbclusters.stemedb.io"], "ns"),
    ("update", ["stemedbclusters.stemedb.io"], "ns"),
    ("update", ["stemedbclusters.stemedb.io", "--subresource=status"], "ns"),
    ("get", ["deployments.apps"], "ns"),
    ("list", ["deployments.apps"], "all"),
    ("patch", ["deployments.apps"], "ns"),
    ("create", ["deployments.apps"], "ns"),
    ("get", ["statefulsets.apps"], "ns"),
    ("get", ["configmaps"], "ns"),
    ("list", ["pods"], "ns"),
    ("create", ["pods"], "ns"),
    ("delete", ["pods"], "ns"),
    ("create", ["pods", "--subresource=exec"], "ns"),
    ("update", ["pods"], "ns"),
    ("delete", ["events"], "ns"),
    ("list", ["namespaces"], "all"),
    ("create", ["customresourcedefinitions.apiextensions.k8s.io"], "all"),
    ("create", ["rolebindings.rbac.authorization.k8s.io"], "ns"),
    ("bind", ["clusterroles.rbac.authorization.k8s.io"], "all"),
    ("impersonate", ["serviceaccounts"], "ns"),
    ("create", ["serviceaccounts", "--subresource=token"], "ns"),
    ("delete", ["nodes"], "all"),
]


class Identity:
    def __init__(self, control_plane: Any, token: str, user: str) -> None:
        self.cp, self.token, self.user = control_plane, token, user

    def can(self, verb: str, resource: list[str], namespace: str | None) -> bool:
        scope = ["--all-namespaces"] if namespace is None else ["-n", namespace]
        r = self.cp.kubectl("auth", "can-i", verb, *resource, *scope, token=self.token,
                            check=False)
        answer = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr
        assert answer in ("yes", "no"), (verb, resource, r.stdout, r.stderr)
        return answer == "yes"

    def run(self, *args: str, input: str | None = None) -> Any:
        return self.cp.kubectl(*args, token=self.token, check=False, input=input)


def _install_rbac(control_plane: Any, render: Any, home: str, sets: list[str]) -> Identity:
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    docs = render(namespace=home, release=release, sets=sets)
    objs = [d for d in docs if d["kind"] in RBAC_KINDS]
    control_plane.kubectl("apply", "-f", "-", input="\n---\n".join(map(yaml.safe_dump, objs)))
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    token = control_plane.kubectl("-n", home, "create", "token", sa).stdout.strip()
    return Identity(control_plane, token, f"system:serviceaccount:{home}:{sa}")


@pytest.fixture
def workload_ns(control_plane: Any, namespace: str) -> Iterator[str]:
    """A second namespace holding the StemeDB workload (the operator lives in `namespace`)."""
    name = f"{namespace}-db"[:63]
    control_plane.kubectl("create", "namespace", name)
    yield name


def _seed(control_plane: Any, ns: str) -> None:
    kc = control_plane.kubectl
    kc("-n", ns, "create", "secret", "generic", "stemedb-token", "--from-literal=token=t")
    kc("-n", ns, "create", "secret", "generic", "unrelated", "--from-literal=password=p")
    cluster = {
        "apiVersion": "stemedb.io/v1alpha1", "kind": "StemeDBCluster",
        "metadata": {"name": "demo", "namespace": ns},
        "spec": {"primary": {"adminUrl": "http://stemedb-0.example:18180"},
                 "replicas": [{"id": "node2", "agentId": "agent-node2"}]},
    }
    kc("create", "-f", "-", input=json.dumps(cluster))
    kc("-n", ns, "run", "node2", "--image=stemedb:0", "--restart=Never")


def _report(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}")
    for verdict, what, detail in rows:
        print(f"  {verdict:<8} {what:<62} {detail}")


def test_all_namespaces_mode_can_do_each_rule_and_nothing_else(
    control_plane: Any, cluster_crds: str, render: Any, namespace: str, workload_ns: str
) -> None:
    who = _install_rbac(control_plane, render, namespace, sets=[])
    _seed(control_plane, workload_ns)
    rows = []

    for verb, resource in allowed_by_the_rules_file():
        assert who.can(verb, resource, workload_ns), f"cannot {verb} {resource}"
        rows.append(("CAN", f"{verb} {' '.join(resource)}", f"-n {workload_ns}"))
    for verb, resource, scope in DENIED:
        ns = None if scope == "all" else workload_ns
        assert not who.can(verb, resource, ns), f"CAN {verb} {resource} ({scope})"
        rows.append(("CANNOT", f"{verb} {' '.join(resource)}",
                     "cluster-wide" if ns is None else f"-n {ns}"))

    # Real requests, not just SubjectAccessReviews.
    ns = ["-n", workload_ns]
    real_ok = [
        ("get", "stemedbclusters.stemedb.io", "--all-namespaces"),
        ("get", "stemedbclusters.stemedb.io", "demo", *ns),
        ("annotate", "stemedbclusters.stemedb.io", "demo", "stemedb.io/probe=1", *ns),
        ("patch", "stemedbclusters.stemedb.io", "demo", "--subresource=status", "--type=merge",
         "-p", '{"status": {"observedGeneration": 1}}', *ns),
        ("get", "secret", "stemedb-token", *ns),
        ("annotate", "pod", "node2", "stemedb.io/rebuild-requested=true", *ns),
    ]
    for args in real_ok:
        r = who.run(*args)
        assert r.returncode == 0, (args, r.stderr)
        rows.append(("OK", "kubectl " + " ".join(args[:3]), ""))
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"generateName": "demo.", "namespace": workload_ns},
             "involvedObject": {"apiVersion": "stemedb.io/v1alpha1", "kind": "StemeDBCluster",
                                "name": "demo", "namespace": workload_ns},
             "reason": "ProbeEvent", "message": "rbac test", "type": "Normal"}
    r = who.run("create", "-f", "-", input=json.dumps(event))
    assert r.returncode == 0, r.stderr
    rows.append(("OK", "kubectl create event (core/v1)", ""))

    real_denied = [
        ("get", "secrets", "--all-namespaces"),
        ("get", "secrets", *ns),
        ("delete", "stemedbclusters.stemedb.io", "demo", *ns),
        ("get", "deployments", *ns),
        ("get", "configmaps", *ns),
        ("delete", "pod", "node2", *ns),
        ("get", "namespaces"),
    ]
    for args in real_denied:
        r = who.run(*args)
        assert r.returncode != 0, args
        assert "Forbidden" in r.stderr and who.user in r.stderr, (args, r.stderr)
        rows.append(("DENIED", "kubectl " + " ".join(args), "Forbidden"))
    _report(f"RBAC as {who.user} (ClusterRole mode, CRD: {cluster_crds})", rows)


def test_namespaced_mode_is_confined_to_the_watched_namespace(
    control_plane: Any, cluster_crds: str, render: Any, namespace: str, workload_ns: str
) -> None:
    who = _install_rbac(control_plane, render, namespace,
                        sets=["watch.allNamespaces=false", f"watch.namespaces={{{workload_ns}}}"])
    assert by_kind(render(namespace=namespace, sets=["watch.allNamespaces=false"]), "ClusterRole") \
        == []
    _seed(control_plane, workload_ns)
    rows = []
    for verb, resource in allowed_by_the_rules_file():
        assert who.can(verb, resource, workload_ns)
        assert not who.can(verb, resource, namespace), f"{verb} {resource} outside watch"
        assert not who.can(verb, resource, None), f"{verb} {resource} cluster-wide"
        rows.append(("CAN", f"{verb} {' '.join(resource)}",
                     f"only in -n {workload_ns}, not -n {namespace}, not cluster-wide"))
    r = who.run("get", "stemedbclusters.stemedb.io", "--all-namespaces")
    assert r.returncode != 0 and "Forbidden" in r.stderr
    rows.append(("DENIED", "kubectl get stemedbclusters --all-namespaces", "Forbidden"))
    r = who.run("get", "stemedbclusters.stemedb.io", "-n", workload_ns)
    assert r.returncode == 0, r.stderr
    rows.append(("OK", f"kubectl get stemedbclusters -n {workload_ns}", ""))
    _report(f"RBAC as {who.user} (Role mode)", rows)


def test_secret_names_let_the_operator_read_only_those_secrets(
    control_plane: Any, cluster_crds: str, render: Any, namespace: str, workload_ns: str
) -> None:
    """rbac.secretNames (docs/security.md): the API server itself refuses every other
    Secret, whatever a StemeDBCluster names."""
    who = _install_rbac(control_plane, render, namespace,
                        sets=["rbac.secretNames[0]=stemedb-token"])
    _seed(control_plane, workload_ns)

    named = who.run("-n", workload_ns, "get", "secret", "stemedb-token", "-o", "name")
    other = who.run("-n", workload_ns, "get", "secret", "unrelated", "-o", "name")

    assert named.returncode == 0, named.stderr
    assert other.returncode != 0 and "Forbidden" in other.stderr, other.stderr
    assert not who.can("list", ["secrets"], workload_ns)


def test_leader_election_may_use_only_its_own_lease_in_the_release_namespace(
    control_plane: Any, cluster_crds: str, render: Any, namespace: str, workload_ns: str
) -> None:
    who = _install_rbac(control_plane, render, namespace, sets=["fullnameOverride=le-op"])
    other = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "someone-elses", "namespace": namespace},
             "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15}}
    control_plane.kubectl("create", "-f", "-", input=json.dumps(other))
    own = {**other, "metadata": {"name": "le-op-leader", "namespace": namespace},
           "spec": {"holderIdentity": "le-op-0", "leaseDurationSeconds": 15}}
    ns = ["-n", namespace]
    allowed: list[tuple[tuple[str, ...], str | None]] = [
        (("create", "-f", "-"), json.dumps(own)),
        (("get", "lease", "le-op-leader", *ns), None),
    ]
    for args, body in allowed:
        r = who.run(*args, input=body)
        assert r.returncode == 0, (args, r.stderr)
    # A renewal is a PUT (update) of the version read, as the elector sends it.
    current = json.loads(who.run("get", "lease", "le-op-leader", "-o", "json", *ns).stdout)
    current["spec"]["holderIdentity"] = "le-op-1"
    r = who.run("replace", "-f", "-", input=json.dumps(current))
    assert r.returncode == 0, r.stderr
    theirs = json.loads(control_plane.kubectl("get", "lease", "someone-elses", "-o", "json",
                                              *ns).stdout)
    theirs["spec"]["holderIdentity"] = "le-op-1"
    elsewhere = {**own, "metadata": {"name": "le-op-leader", "namespace": workload_ns}}
    denied: list[tuple[tuple[str, ...], str | None]] = [
        (("get", "lease", "someone-elses", *ns), None),
        (("replace", "-f", "-"), json.dumps(theirs)),
        (("get", "leases", *ns), None),  # list
        (("delete", "lease", "le-op-leader", *ns), None),
        (("create", "-f", "-"), json.dumps(elsewhere)),
        (("get", "leases", "--all-namespaces"), None),
    ]
    for args, body in denied:
        r = who.run(*args, input=body)
        assert r.returncode != 0 and "Forbidden" in r.stderr, (args, r.stderr)


def test_sharding_may_use_leases_only_in_the_release_namespace(
    control_plane: Any, cluster_crds: str, render: Any, namespace: str, workload_ns: str
) -> None:
    """A shard's Lease name carries its Pod's name, unknown to the chart, so the Role
    cannot name it: it is confined to the namespace, its verbs, and no `watch`."""
    who = _install_rbac(control_plane, render, namespace,
                        sets=["fullnameOverride=sh-op", "sharding.enabled=true"])
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "sh-op-shard-sh-op-0", "namespace": namespace,
                          "labels": {"stemedb.io/shard-ring": "sh-op"}},
             "spec": {"holderIdentity": "sh-op-0", "leaseDurationSeconds": 15}}
    ns = ["-n", namespace]
    r = who.run("create", "-f", "-", input=json.dumps(lease))
    assert r.returncode == 0, r.stderr
    for args in (("get", "lease", "sh-op-shard-sh-op-0", *ns),
                 ("get", "leases", "-l", "stemedb.io/shard-ring=sh-op", *ns)):
        r = who.run(*args)
        assert r.returncode == 0, (args, r.stderr)
    current = json.loads(who.run("get", "lease", "sh-op-shard-sh-op-0", "-o", "json",
                                 *ns).stdout)
    current["spec"]["holderIdentity"] = ""
    r = who.run("replace", "-f", "-", input=json.dumps(current))
    assert r.returncode == 0, r.stderr
    for verb in ("create", "get", "list", "update", "delete"):
        assert who.can(verb, ["leases.coordination.k8s.io"], namespace), verb
    assert not who.can("watch", ["leases.coordination.k8s.io"], namespace)
    assert not who.can("patch", ["leases.coordination.k8s.io"], namespace)
    for verb in ("create", "get", "list", "update", "delete"):
        assert not who.can(verb, ["leases.coordination.k8s.io"], workload_ns), verb
    r = who.run("get", "leases", "--all-namespaces")
    assert r.returncode != 0 and "Forbidden" in r.stderr, r.stderr
    r = who.run("delete", "lease", "sh-op-shard-sh-op-0", *ns)
    assert r.returncode == 0, r.stderr
