"""What `helm template` renders, checked without a cluster."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from controller.domain.destinations import DEFAULT_DENY, LOOPBACK
from tests.chart.conftest import CHART, Render, by_kind, one, rbac_rules

RULES_FILE = CHART / "files" / "prometheus-rules.yaml"


def watch_rbac(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The RBAC objects for the watched resources (not the leader election's Lease)."""
    return [d for d in by_kind(docs, kind)
            if not d["metadata"]["name"].endswith("-leader-election")]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def test_defaults_watch_all_namespaces_with_a_cluster_role_holding_exactly_the_rules_file(
    render: Render,
) -> None:
    docs = render()
    assert watch_rbac(docs, "Role") == [] and watch_rbac(docs, "RoleBinding") == []
    role = one(docs, "ClusterRole")
    assert role["rules"] == rbac_rules()
    binding = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{
        "kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "stemedb-system",
    }]
    args = container(docs)["args"]
    assert args[0] == "run" and "--all-namespaces" in args and "--namespace" not in args


def test_namespaced_mode_renders_one_role_and_binding_per_watched_namespace(
    render: Render,
) -> None:
    docs = render(sets=["watch.allNamespaces=false", "watch.namespaces={team-a,team-b}"])
    assert by_kind(docs, "ClusterRole") == [] and by_kind(docs, "ClusterRoleBinding") == []
    roles = {r["metadata"]["namespace"]: r for r in watch_rbac(docs, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in watch_rbac(docs, "RoleBinding")}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for ns in roles:
        assert roles[ns]["rules"] == rbac_rules()
        assert bindings[ns]["roleRef"]["kind"] == "Role"
        assert bindings[ns]["subjects"][0]["namespace"] == "stemedb-system"
    args = container(docs)["args"]
    assert "--all-namespaces" not in args
    assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == ["team-a", "team-b"]


def test_namespaced_mode_without_a_list_watches_the_release_namespace(render: Render) -> None:
    docs = render(sets=["watch.allNamespaces=false"], namespace="db-ops")
    assert [r["metadata"]["namespace"] for r in watch_rbac(docs, "Role")] == ["db-ops"]
    args = container(docs)["args"]
    assert args[args.index("--namespace") + 1] == "db-ops"


def test_the_deployment_runs_the_operator_with_its_flags_and_probes(render: Render) -> None:
    docs = render(sets=["operator.healthPort=8181", "operator.metricsPort=9191"])
    c = container(docs)
    args = c["args"]
    for flag, value in [("--metrics-port", "9191"), ("--health-port", "8181"),
                        ("--log-format", "json"), ("--log-level", "info")]:
        assert args[args.index(flag) + 1] == value
    assert "--max-actions-per-hour" not in args
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9191, "health": 8181}
    for probe, path in [("startupProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("livenessProbe", "/healthz")]:
        assert c[probe]["httpGet"] == {"path": path, "port": "health"}, probe
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["image"] == "ghcr.io/stemedb/stemedb-operator:0.1.0"


def test_the_pod_meets_pod_security_restricted(render: Render) -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and isinstance(sc["runAsUser"], int)
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_image_digest_wins_over_the_tag(render: Render) -> None:
    digest = "sha256:" + "a" * 64
    docs = render(sets=[f"image.digest={digest}", "image.tag=ignored"])
    assert container(docs)["image"] == f"ghcr.io/stemedb/stemedb-operator@{digest}"


def test_optional_objects_are_off_by_default(render: Render) -> None:
    kinds = {d["kind"] for d in render()}
    assert kinds == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service",
                     "Deployment", "Role", "RoleBinding", "PodDisruptionBudget"}


def test_all_flags_on_renders_service_monitor_rule_and_network_policy(render: Render) -> None:
    docs = render(values=CHART / "ci" / "all-flags-on-values.yaml")
    svc = one(docs, "Service")
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert all(svc["metadata"]["labels"][k] == v
               for k, v in sm["spec"]["selector"]["matchLabels"].items())
    # The scrape job is named by a Service label, so the rules can select up{job=...}.
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "stemedb-operator"
    np = one(docs, "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = [{p["port"] for p in rule["ports"]} for rule in np["spec"]["egress"]]
    assert egress_ports == [{443, 6443}, {18180}, {443}, {53}]
    assert np["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    args = container(docs)["args"]
    assert args[args.index("--max-actions-per-hour") + 1] == "120"


def test_the_prometheus_rule_carries_the_one_rules_file(render: Render) -> None:
    docs = render(sets=["prometheusRule.enabled=true"])
    rule = one(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts == [
        "ReplicationLagWarning", "ReplicationLagCritical", "MerkleSyncFailures",
        "StemeDBRemediationEscalated", "StemeDBRemediationBudgetExhausted",
        "StemeDBOperatorDown", "StemeDBOperatorNotPolling", "StemeDBOperatorBlind",
    ]
    # Prometheus templates pass through Helm untouched.
    assert "{{ $labels.replica }}" in str(rule["spec"]["groups"][0])


@pytest.mark.parametrize(("alert", "expr", "for_"), [
    ("ReplicationLagWarning", "stemedb_replication_lag_seconds > 5", "5m"),
    ("ReplicationLagCritical", "stemedb_replication_lag_seconds > 10", "3m"),
    ("MerkleSyncFailures", "rate(stemedb_merkle_sync_errors_total[5m]) > 0.1", None),
])
def test_the_runbook_alerts_match_the_runbook(alert: str, expr: str, for_: str | None) -> None:
    rules = {r["alert"]: r for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
             for r in g["rules"]}
    assert rules[alert]["expr"] == expr
    assert rules[alert].get("for") == for_


def test_a_custom_operator_job_is_used_by_the_rules_and_the_service(render: Render) -> None:
    docs = render(sets=["prometheusRule.enabled=true", "prometheusRule.operatorJob=ops-op"])
    text = str(one(docs, "PrometheusRule")["spec"])
    assert 'job="ops-op"' in text and 'job="stemedb-operator"' not in text
    assert one(docs, "Service")["metadata"]["labels"]["stemedb.io/metrics-job"] == "ops-op"


def _excepted(np: dict[str, Any]) -> set[str]:
    """The CIDRs excluded from the NetworkPolicy's StemeDB egress."""
    [stemedb] = [r for r in np["spec"]["egress"] if {p["port"] for p in r["ports"]} == {18180}]
    return {c for peer in stemedb["to"] for c in peer["ipBlock"].get("except", [])}


@pytest.mark.parametrize(("sets", "flags", "extra"), [
    pytest.param([], ["--deny-loopback"], LOOPBACK, id="defaults"),
    pytest.param(["destinations.denyLoopback=false"], [], (), id="loopback allowed"),
    pytest.param(["destinations.deny[0]=10.96.0.0/12"],
                 ["--deny-loopback", "--deny-destination", "10.96.0.0/12"],
                 (*LOOPBACK, "10.96.0.0/12"), id="an extra deny"),
])
def test_the_network_policy_denies_what_the_operator_denies(
    render: Render, sets: list[str], flags: list[str], extra: tuple[str, ...],
) -> None:
    """Two layers, one list: the operator's flags and the NetworkPolicy's egress
    exceptions both come from DEFAULT_DENY plus destinations.* (issue 11)."""
    docs = render(sets=["networkPolicy.enabled=true", *sets])
    args = container(docs)["args"]
    picked = [a for i, a in enumerate(args)
              if a.startswith("--deny") or args[i - 1] == "--deny-destination"]
    assert picked == flags
    assert _excepted(one(docs, "NetworkPolicy")) == {*DEFAULT_DENY, *extra}


def test_an_allow_list_narrows_the_network_policy_to_it(render: Render) -> None:
    docs = render(sets=["networkPolicy.enabled=true", "destinations.allow[0]=10.20.0.0/16"])
    args = container(docs)["args"]
    assert args[args.index("--allow-destination") + 1] == "10.20.0.0/16"
    np = one(docs, "NetworkPolicy")
    [stemedb] = [r for r in np["spec"]["egress"] if {p["port"] for p in r["ports"]} == {18180}]
    assert stemedb["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


@pytest.mark.parametrize("all_namespaces", [True, False])
def test_secret_names_narrow_the_secret_rule_and_nothing_else(
    render: Render, all_namespaces: bool,
) -> None:
    docs = render(sets=[f"watch.allNamespaces={str(all_namespaces).lower()}",
                        "rbac.secretNames[0]=stemedb-token", "rbac.secretNames[1]=stemedb-ca"])
    [role] = watch_rbac(docs, "ClusterRole" if all_namespaces else "Role")
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                             "resourceNames": ["stemedb-token", "stemedb-ca"]}]
    others = [r for r in role["rules"] if "secrets" not in r["resources"]]
    assert others == [r for r in rbac_rules() if "secrets" not in r["resources"]]


RUNBOOK_SECTIONS = ["What it means", "Impact", "What the operator already did", "Diagnosis",
                    "What to do by hand"]
RUNBOOK_URL = "https://github.com/stemedb/stemedb-operator/blob/main/docs/runbooks/"


def _alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_every_alert_links_its_own_runbook_page_with_every_section(alert: dict[str, Any]) -> None:
    """On-call gets from a page to what to do: each alert's runbook_url names its own
    page under docs/runbooks/, which has each section in order, and the index lists
    it (issue 15)."""
    url = alert["annotations"]["runbook_url"]
    assert url == f"{RUNBOOK_URL}{alert['alert']}.md"
    docs = CHART.parents[1] / "docs"
    page = (docs / "runbooks" / f"{alert['alert']}.md").read_text()
    headings = [line[3:].strip() for line in page.splitlines() if line.startswith("## ")]
    assert headings == RUNBOOK_SECTIONS
    assert page.startswith(f"# {alert['alert']}\n")
    assert f"(runbooks/{alert['alert']}.md)" in (docs / "runbooks.md").read_text()


def test_no_runbook_page_is_left_without_its_alert() -> None:
    pages = {p.stem for p in (CHART.parents[1] / "docs" / "runbooks").glob("*.md")}
    assert pages == {a["alert"] for a in _alerts()}


@pytest.mark.parametrize(("alert", "level", "contact"), [
    ("StemeDBRemediationEscalated", "{{ $value }}", "{{ if eq $value 1.0 }}cluster-sre"),
    ("StemeDBOperatorBlind", "1", "cluster-sre"),
])
def test_escalation_alerts_carry_a_level_and_a_contact(alert: str, level: str,
                                                       contact: str) -> None:
    """Alertmanager routes on them (the values per level: tests/promtool)."""
    [rule] = [a for a in _alerts() if a["alert"] == alert]
    assert rule["labels"]["level"] == level
    assert rule["labels"]["contact"].startswith(contact)


def test_the_operators_own_page_links_the_rules_runbook() -> None:
    """The Alertmanager alert the operator sends and the rule on the same condition
    lead on-call to the same page."""
    from controller.adapters.alertmanager import RUNBOOK_URL

    [rule] = [a for a in _alerts() if a["alert"] == "StemeDBRemediationEscalated"]
    assert rule["annotations"]["runbook_url"] == RUNBOOK_URL
