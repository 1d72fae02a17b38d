"""The operator's own metrics: per-resource lag series come and go with the resource."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from controller.adapters.operator_metrics import OperatorMetrics


def lag(m: OperatorMetrics, ns: str, name: str, replica: str) -> float | None:
    return m.registry.get_sample_value(
        "stemedb_operator_replica_lag_seconds",
        {"namespace": ns, "name": name, "replica": replica},
    )


def test_lag_is_set_per_replica_and_a_missing_value_drops_the_series() -> None:
    m = OperatorMetrics(CollectorRegistry())
    m.set_lag("ns", "a", {"node2": 12.5, "node3": 0.0})
    assert (lag(m, "ns", "a", "node2"), lag(m, "ns", "a", "node3")) == (12.5, 0.0)
    m.set_lag("ns", "a", {"node2": 1.0, "node3": None})
    assert (lag(m, "ns", "a", "node2"), lag(m, "ns", "a", "node3")) == (1.0, None)


def test_forgetting_a_deleted_cluster_removes_only_its_series() -> None:
    m = OperatorMetrics(CollectorRegistry())
    m.set_lag("ns", "a", {"node2": 3.0})
    m.set_lag("ns", "b", {"node2": 4.0})
    m.forget_cluster("ns", "a")
    m.forget_cluster("ns", "never-seen")
    assert lag(m, "ns", "a", "node2") is None
    assert lag(m, "ns", "b", "node2") == 4.0
    assert list(m.clusters()) == [("ns", "b")]


def test_counters_and_histograms_are_exported() -> None:
    m = OperatorMetrics(CollectorRegistry())
    m.observe_poll(0.02)
    m.count_action("force_sync", "success")
    m.count_suppressed("force_sync", "cooldown")
    m.count_request("GET /metrics", 200, 0.003)
    text = generate_latest(m.registry).decode()
    for name in (
        "stemedb_operator_poll_duration_seconds_bucket",
        'stemedb_operator_actions_total{action="force_sync",result="success"} 1.0',
        'stemedb_operator_actions_suppressed_total{action="force_sync",reason="cooldown"} 1.0',
        'stemedb_operator_stemedb_requests_total{code="200",endpoint="GET /metrics"} 1.0',
    ):
        assert name in text


def test_the_escalation_level_is_a_gauge_per_cluster_and_goes_with_the_cluster() -> None:
    m = OperatorMetrics(CollectorRegistry())
    m.set_escalation("ns", "a", 3)
    m.set_escalation("ns", "b", 0)
    level = m.registry.get_sample_value
    assert level("stemedb_operator_escalated", {"namespace": "ns", "name": "a"}) == 3
    m.forget_cluster("ns", "a")
    assert level("stemedb_operator_escalated", {"namespace": "ns", "name": "a"}) is None
    assert level("stemedb_operator_escalated", {"namespace": "ns", "name": "b"}) == 0


def test_build_info_and_process_metrics_are_exported() -> None:
    from importlib import metadata

    m = OperatorMetrics(CollectorRegistry())
    text = generate_latest(m.registry).decode()
    version = metadata.version("stemedb-operator")
    assert "stemedb_operator_build_info{" in text
    assert m.registry.get_sample_value(
        "stemedb_operator_build_info",
        {"version": version, "python": __import__("platform").python_version()}) == 1.0
    assert "process_resident_memory_bytes" in text
    assert "process_start_time_seconds" in text


def test_the_actions_help_names_the_label_and_values_it_has() -> None:
    from controller.domain import ActionKind

    m = OperatorMetrics(CollectorRegistry())
    text = generate_latest(m.registry).decode()
    [help_line] = [ln for ln in text.splitlines()
                   if ln.startswith("# HELP stemedb_operator_actions_total ")]
    assert "by action (" in help_line
    assert all(k.value in help_line for k in ActionKind)
