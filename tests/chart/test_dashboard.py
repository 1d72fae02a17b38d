"""The chart's Grafana dashboard: a sidecar ConfigMap, off by default, whose every
panel query parses with Prometheus' own PromQL parser and names only metrics the
operator or StemeDB exports."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.operator_metrics import ClusterReading, OperatorMetrics
from controller.domain.spec import DetectionSpec
from stemedb_sim.exposition import render_primary, render_replica
from stemedb_sim.model import ClusterModel
from tests.chart.conftest import CHART, ROOT, Render, by_kind, helm_cmd, one

DASHBOARD = CHART / "dashboards" / "stemedb-operator.json"
BUILD_PARSER = ROOT / "hack" / "install-promql-names.sh"
# Grafana's variables, replaced as Grafana would before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h",
                     "$namespace": "db|team-a", "$cluster": ".*", "$job": "stemedb-operator"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target and every query variable."""
    found = [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            # label_values(SELECTOR, label) is Grafana's, not PromQL: its selector is.
            m = re.fullmatch(r"label_values\((.*), *\w+\)", var["query"]["query"])
            assert m, var["query"]
            found.append((f"variable {var['name']}", m.group(1)))
    return found


def substituted(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr}"
    return expr


@pytest.fixture(scope="module")
def promql_names() -> Path:
    """hack/promql-names, built from Prometheus' promql/parser (the module promtool
    is built from; seconds when promtool's modules are cached)."""
    result = subprocess.run(["bash", str(BUILD_PARSER)], stdout=subprocess.PIPE, text=True,
                            check=True, timeout=1800)
    return Path(result.stdout.strip().splitlines()[-1])


def parse(parser: Path, exprs: list[str]) -> list[dict[str, Any]]:
    result = subprocess.run([str(parser)], input=json.dumps(exprs), capture_output=True,
                            text=True, check=True, timeout=60)
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


@cache
def operator_metric_names() -> frozenset[str]:
    """Every sample name the operator's /metrics has once each family has a sample."""
    m = OperatorMetrics(CollectorRegistry())
    m.observe_poll(0.01)
    m.observe_slip(0.001)
    m.count_action("SetRateLimit", "success")
    m.count_suppressed("ForceSync", "Paused")
    m.set_lag("db", "alpha", {"node2": 1.0})
    m.set_cluster("db", "alpha", ClusterReading(1, True, False, 500.0, DetectionSpec()))
    with m.attribute_to("db", "alpha"):
        m.count_request("GET /metrics", 200, 0.01)
    names = {s.name for family in m.registry.collect() for s in family.samples}
    return frozenset(names | {"up"})  # `up` is Prometheus' own, per scrape target


@cache
def stemedb_metric_names() -> frozenset[str]:
    """Every sample name a StemeDB primary and replica export (the simulator's
    exposition, which implements docs/stemedb-api.md)."""
    model = ClusterModel("alpha")
    text = render_primary(model) + render_replica(model, "node2")
    return frozenset(s.name for f in text_string_to_metric_families(text) for s in f.samples)


def test_every_query_parses_and_names_only_exported_metrics(promql_names: Path) -> None:
    found = queries()
    results = parse(promql_names, [substituted(expr) for _, expr in found])
    known = operator_metric_names() | stemedb_metric_names()
    problems = [f"{title}: {r['error']}" for (title, _), r in zip(found, results, strict=True)
                if r.get("error")]
    problems += [f"{title}: {name} is exported by neither the operator nor StemeDB"
                 for (title, _), r in zip(found, results, strict=True)
                 for name in r["names"] if name not in known]
    assert problems == []
    used = {name for r in results for name in r["names"]}
    # What the dashboard is for (issue 15): lag against thresholds, actions and held
    # actions, escalation, admin API errors and latency, poll slip and duration, memory.
    assert {
        "stemedb_operator_replica_lag_seconds", "stemedb_operator_actions_total",
        "stemedb_operator_actions_suppressed_total", "stemedb_operator_escalated",
        "stemedb_operator_metrics_readable", "stemedb_operator_ready",
        "stemedb_operator_rate_limit_assertions_per_sec",
        "stemedb_operator_lag_threshold_seconds", "stemedb_operator_cluster_requests_total",
        "stemedb_operator_stemedb_requests_total",
        "stemedb_operator_stemedb_request_duration_seconds_bucket",
        "stemedb_operator_poll_slip_seconds_bucket",
        "stemedb_operator_poll_duration_seconds_bucket", "process_resident_memory_bytes",
    } <= used


@pytest.mark.parametrize(("expr", "error"), [
    ("rate(stemedb_operator_actions_total[5m]", "unclosed left parenthesis"),
    ("stemedb_operator_escalated{namespace=~\"$namespace\"", "unexpected end of input"),
    ("sum by (le) stemedb_operator_poll_slip_seconds_bucket", "unexpected identifier"),
])
def test_the_parser_refuses_a_broken_query(promql_names: Path, expr: str, error: str) -> None:
    """The parse check can fail: a typo in a panel is reported, with the reason."""
    [result] = parse(promql_names, [substituted(expr)])
    assert error in result["error"]


def test_a_metric_nobody_exports_is_not_in_the_known_names() -> None:
    known = operator_metric_names() | stemedb_metric_names()
    for name in ("stemedb_operator_replica_lag", "stemedb_replication_lag",
                 "stemedb_operator_actions", "process_memory_bytes"):
        assert name not in known
    assert {"stemedb_replication_lag_seconds", "stemedb_merkle_sync_errors_total",
            "stemedb_operator_escalated", "process_resident_memory_bytes"} <= known


def test_per_cluster_panels_follow_the_namespace_and_cluster_variables() -> None:
    variables = [v["name"] for v in dashboard()["templating"]["list"]]
    assert variables == ["datasource", "job", "namespace", "cluster"]
    per_cluster = re.compile(r"stemedb_operator_(replica_lag_seconds|escalated|metrics_readable"
                             r"|ready|rate_limit_assertions_per_sec|cluster_requests_total"
                             r"|lag_threshold_seconds)\{")
    panel_queries = [(t, e) for t, e in queries() if not t.startswith("variable ")]
    for title, expr in panel_queries:
        for m in per_cluster.finditer(expr):
            selector = expr[m.end():expr.index("}", m.end())]
            assert 'namespace=~"$namespace"' in selector, (title, expr)
            assert 'name=~"$cluster"' in selector, (title, expr)


def test_panels_use_the_datasource_variable_and_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for p in dashboard()["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not (cells & mine), f"{p['title']} overlaps another panel"
        cells |= mine
    assert len({p["id"] for p in dashboard()["panels"]}) == len(dashboard()["panels"])


# ---------------------------------------------------------------- the ConfigMap

def configmaps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(docs, "ConfigMap")


def test_the_dashboard_is_off_by_default(render: Render) -> None:
    assert configmaps(render()) == []


@pytest.mark.parametrize(("sets", "namespace", "label", "folder"), [
    pytest.param([], "stemedb-system", ("grafana_dashboard", "1"),
                 ("grafana_folder", "StemeDB"), id="defaults"),
    pytest.param(["dashboard.namespace=monitoring"], "monitoring",
                 ("grafana_dashboard", "1"), ("grafana_folder", "StemeDB"),
                 id="namespace override"),
    pytest.param(["dashboard.label=example.com/dashboard", "dashboard.labelValue=stemedb"],
                 "stemedb-system", ("example.com/dashboard", "stemedb"),
                 ("grafana_folder", "StemeDB"), id="sidecar label"),
    pytest.param(["dashboard.folder=Databases/StemeDB",
                  "dashboard.folderAnnotation=k8s-sidecar-target-directory"],
                 "stemedb-system", ("grafana_dashboard", "1"),
                 ("k8s-sidecar-target-directory", "Databases/StemeDB"), id="folder"),
    pytest.param(["dashboard.folder="], "stemedb-system", ("grafana_dashboard", "1"), None,
                 id="no folder"),
])
def test_enabled_renders_one_sidecar_configmap_with_the_dashboard(
    render: Render, sets: list[str], namespace: str, label: tuple[str, str],
    folder: tuple[str, str] | None,
) -> None:
    cm = one(render(sets=["dashboard.enabled=true", *sets]), "ConfigMap")
    meta = cm["metadata"]
    assert meta["namespace"] == namespace
    assert meta["labels"][label[0]] == label[1]
    assert meta["labels"]["app.kubernetes.io/name"] == "stemedb-operator"
    assert meta.get("annotations") == (dict([folder]) if folder else None)
    assert list(cm["data"]) == ["stemedb-operator.json"]
    # The JSON arrives as is: Grafana's {{ }} legends are not Helm templates.
    assert json.loads(cm["data"]["stemedb-operator.json"]) == dashboard()
    assert "{{namespace}}/{{name}} {{replica}}" in cm["data"]["stemedb-operator.json"]


def test_extra_labels_and_annotations_are_added(render: Render) -> None:
    cm = one(render(sets=["dashboard.enabled=true", "dashboard.labels.release=prometheus",
                          "dashboard.annotations.team=data"]), "ConfigMap")
    assert cm["metadata"]["labels"]["release"] == "prometheus"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "StemeDB", "team": "data"}


@pytest.mark.parametrize(("set_arg", "where"), [
    ("dashboard.namespace=Bad_NS", "/dashboard/namespace"),
    ("dashboard.label=bad key", "/dashboard/label"),
    ("dashboard.labelValue=-x-", "/dashboard/labelValue"),
    ("dashboard.enabled=yes", "/dashboard/enabled"),
])
def test_the_schema_refuses_bad_dashboard_values(helm: Path, set_arg: str, where: str) -> None:
    result = helm_cmd(helm, "template", "stemedb", str(CHART), "--set", set_arg)
    assert result.returncode != 0 and where in result.stderr, result.stderr
