"""The operator's own metrics: per-resource lag series come and go with the resource."""

from __future__ import annotations

import asyncio
import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controller.adapters.operator_metrics import (
    CODE_CLASSES,
    ClusterReading,
    OperatorMetrics,
    code_class,
)
from controller.domain.memory import Memory
from controller.domain.observation import Observation, ReplicaObservation, SourceStatus
from controller.domain.spec import DetectionSpec


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


def sample(m: OperatorMetrics, metric: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(metric, labels)


@pytest.mark.parametrize(("reading", "readable", "ready", "rate"), [
    pytest.param(ClusterReading(0, True, True), 1.0, 1.0, None, id="healthy: no rate series"),
    pytest.param(ClusterReading(1, False, False), 0.0, 0.0, None, id="blind"),
    pytest.param(ClusterReading(0, True, False, -1.0), 1.0, 0.0, -1.0,
                 id="throttling, not lowered yet: unlimited"),
    pytest.param(ClusterReading(2, True, False, 1500.0), 1.0, 0.0, 1500.0, id="throttled"),
])
def test_a_poll_sets_the_cluster_gauges(
    reading: ClusterReading, readable: float, ready: float, rate: float | None,
) -> None:
    m = OperatorMetrics(CollectorRegistry())
    m.set_cluster("ns", "a", reading)
    key = {"namespace": "ns", "name": "a"}
    assert sample(m, "stemedb_operator_escalated", **key) == reading.level
    assert sample(m, "stemedb_operator_metrics_readable", **key) == readable
    assert sample(m, "stemedb_operator_ready", **key) == ready
    assert sample(m, "stemedb_operator_rate_limit_assertions_per_sec", **key) == rate


def test_the_thresholds_of_the_clusters_spec_are_gauges() -> None:
    from controller.domain.policy import decide
    from controller.domain.spec import parse_spec

    m = OperatorMetrics(CollectorRegistry())
    spec = parse_spec({"primary": {"adminUrl": "http://p:18180"}, "replicas": [{"id": "node2"}],
                       "detection": {"warning": {"lagSeconds": 4, "forSeconds": 60},
                                     "critical": {"lagSeconds": 8, "forSeconds": 60},
                                     "escalation": {"lagSeconds": 45}}})
    plan = decide(Observation(at=0.0, primary=SourceStatus.ok(),
                              replicas=(ReplicaObservation("node2", 0.5),), rate_limit=None),
                  spec, Memory(), 0.0, operator_budget_remaining=10)
    m.set_cluster("ns", "a", ClusterReading.of(plan, spec))
    got = {t: sample(m, "stemedb_operator_lag_threshold_seconds", namespace="ns", name="a",
                     threshold=t) for t in ("warning", "critical", "escalation")}
    assert got == {"warning": 4.0, "critical": 8.0, "escalation": 45.0}
    assert sample(m, "stemedb_operator_metrics_readable", namespace="ns", name="a") == 1.0
    assert sample(m, "stemedb_operator_rate_limit_assertions_per_sec",
                  namespace="ns", name="a") is None


def test_a_lifted_throttle_drops_the_rate_series() -> None:
    m = OperatorMetrics(CollectorRegistry())
    m.set_cluster("ns", "a", ClusterReading(0, True, False, 1000.0))
    m.set_cluster("ns", "a", ClusterReading(0, True, True))
    assert sample(m, "stemedb_operator_rate_limit_assertions_per_sec",
                  namespace="ns", name="a") is None


@pytest.mark.parametrize(("code", "cls"), [
    (200, "2xx"), ("202", "2xx"), (401, "4xx"), ("409", "4xx"), (500, "5xx"), (503, "5xx"),
    ("timeout", "error"), ("unreachable", "error"), ("tls", "error"), ("parse", "error"),
    (301, "error"), ("", "error"), ("2000", "error"),
])
def test_request_codes_fall_into_four_classes(code: str | int, cls: str) -> None:
    assert code_class(code) == cls


def test_requests_are_counted_for_the_cluster_being_polled_and_only_it() -> None:
    m = OperatorMetrics(CollectorRegistry())

    def requests(name: str, cls: str) -> float | None:
        return sample(m, "stemedb_operator_cluster_requests_total",
                      namespace="ns", name=name, code_class=cls)

    async def request(code: str | int) -> None:
        await asyncio.sleep(0)  # let the other poll run in between
        m.count_request("GET /metrics", code, 0.01)

    async def poll(name: str, codes: list[str | int]) -> None:
        with m.attribute_to("ns", name):
            # gather runs each request as a task: it inherits the cluster.
            await asyncio.gather(*(request(c) for c in codes))

    async def main() -> None:
        await asyncio.gather(poll("a", [200, 200, "timeout"]), poll("b", [503]))
        m.count_request("GET /metrics", 500, 0.01)  # outside any poll: no cluster

    asyncio.run(main())
    assert [requests("a", c) for c in CODE_CLASSES] == [2.0, 0.0, 0.0, 1.0]
    assert [requests("b", c) for c in CODE_CLASSES] == [0.0, 0.0, 1.0, 0.0]
    # The process-wide counter has every attempt, the unattributed one too.
    assert sample(m, "stemedb_operator_stemedb_requests_total",
                  endpoint="GET /metrics", code="500") == 1.0


def test_forgetting_a_cluster_removes_every_per_cluster_series() -> None:
    m = OperatorMetrics(CollectorRegistry())
    for name in ("a", "b"):
        m.set_lag("ns", name, {"node2": 3.0})
        m.set_cluster("ns", name, ClusterReading(2, True, False, 500.0, DetectionSpec()))
        with m.attribute_to("ns", name):
            m.count_request("GET /metrics", 200)
    m.forget_cluster("ns", "a")
    text = generate_latest(m.registry).decode()
    assert 'name="a"' not in text
    per_cluster = [ln.split("{")[0] for ln in text.splitlines()
                   if 'name="b"' in ln and not ln.startswith("#")]
    assert sorted(set(per_cluster)) == [
        "stemedb_operator_cluster_requests_total", "stemedb_operator_escalated",
        "stemedb_operator_lag_threshold_seconds", "stemedb_operator_metrics_readable",
        "stemedb_operator_rate_limit_assertions_per_sec", "stemedb_operator_ready",
        "stemedb_operator_replica_lag_seconds",
    ]


def test_every_exported_family_is_documented_and_every_documented_one_exported() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(stemedb_operator_\w+)` \|", doc, re.MULTILINE))
    m = OperatorMetrics(CollectorRegistry())
    # With --sharding each replica also exports its shard's (adapters/sharding.py).
    from controller.adapters.sharding import Shards

    Shards(None, "ops", "ring", "me", registry=m.registry)  # type: ignore[arg-type]
    exported = set()
    for family in m.registry.collect():
        if family.name.startswith("stemedb_operator_"):
            exported.add(family.name + ("_total" if family.type == "counter" else ""))
    assert exported == documented
