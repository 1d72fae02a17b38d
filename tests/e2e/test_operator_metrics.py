"""The operator's per-cluster metrics as Prometheus would scrape them: the operator
as it ships, a real API server, the simulator over HTTP (issue 15, item 6)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from harness import Env, Operator, fast_spec, wait_for
from prometheus_client.parser import text_string_to_metric_families

from localkube.processes import free_port

pytestmark = pytest.mark.e2e
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

PER_CLUSTER = ("stemedb_operator_replica_lag_seconds", "stemedb_operator_escalated",
               "stemedb_operator_metrics_readable", "stemedb_operator_ready",
               "stemedb_operator_rate_limit_assertions_per_sec",
               "stemedb_operator_lag_threshold_seconds",
               "stemedb_operator_cluster_requests_total")


def scrape(port: int, namespace: str) -> Samples:
    """The operator's samples of cluster `db` in `namespace`, by name and other labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("namespace") == namespace and s.labels.get("name") == "db":
                rest = frozenset((k, v) for k, v in s.labels.items()
                                 if k not in ("namespace", "name"))
                out[(s.name, rest)] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@dataclass
class Scraper:
    """The operator under test, started with a metrics port."""

    env: Env
    port: int

    @classmethod
    def start(cls, env: Env) -> Scraper:
        port = free_port()
        env.operators.append(Operator.start(env.kubeconfig, env.namespace,
                                            env.workdir / "operator.log", "--metrics-port",
                                            str(port)))
        return cls(env, port)

    def seen(self, what: str, check: Callable[[Samples], bool], timeout: float = 60) -> Samples:
        """Wait until a scrape of cluster db passes `check`; return that scrape."""
        def probe() -> Samples | None:
            try:
                samples = scrape(self.port, self.env.namespace)
            except httpx.HTTPError:  # not listening yet
                return None
            return samples if check(samples) else None

        return dict(wait_for(what, probe, timeout=timeout))


def test_readable_ready_and_requests_per_cluster_follow_the_primary_and_go_with_it(
    env: Env,
) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    op = Scraper.start(env)
    seen, port = op.seen, op.port

    healthy = seen("a readable, ready cluster", lambda s: value(
        s, "stemedb_operator_ready") == 1.0)
    assert value(healthy, "stemedb_operator_metrics_readable") == 1.0
    assert value(healthy, "stemedb_operator_escalated") == 0.0
    assert (value(healthy, "stemedb_operator_cluster_requests_total", code_class="2xx")
            or 0) > 0
    # The thresholds of this cluster's spec (fast_spec: warning 2 s, critical 4 s).
    assert [value(healthy, "stemedb_operator_lag_threshold_seconds", threshold=t)
            for t in ("warning", "critical", "escalation")] == [2.0, 4.0, 60.0]
    # Nothing throttled: the operator holds no limit, so no series.
    assert value(healthy, "stemedb_operator_rate_limit_assertions_per_sec") is None

    # The primary's /metrics answers 500: the operator is blind on this cluster,
    # and the request counter says which cluster and what kind of failure.
    fault = env.fault("http_error", node="node1", endpoint="metrics", status=500)
    blind = seen("a blind cluster", lambda s: value(
        s, "stemedb_operator_metrics_readable") == 0.0)
    assert value(blind, "stemedb_operator_ready") == 0.0
    assert (value(blind, "stemedb_operator_cluster_requests_total", code_class="5xx")
            or 0) > 0
    env.clear_fault(fault)
    seen("readable again", lambda s: value(s, "stemedb_operator_metrics_readable") == 1.0)

    env.cp.kubectl("-n", env.namespace, "delete", "stemedbcluster", "db", "--wait=true",
                   "--timeout=60s")
    gone = wait_for("every series of the deleted cluster gone", lambda: not scrape(
        port, env.namespace) and "gone", timeout=30)
    assert gone
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    # The families stay (with HELP), empty: other clusters would fill them.
    assert all(f"# HELP {name} " in text for name in PER_CLUSTER)


def test_the_rate_limit_series_shows_the_operators_throttle_while_it_lasts(env: Env) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    seen = Scraper.start(env).seen
    seen("a ready cluster", lambda s: value(s, "stemedb_operator_ready") == 1.0)

    disk = env.fault("disk_saturation", replica="node2", capacity_factor=0.4)
    rate = "stemedb_operator_rate_limit_assertions_per_sec"
    throttled = seen("a throttle step in the metrics",
                     lambda s: 0 < (value(s, rate) or 0) < 2000, timeout=90)
    posts = [c["body"]["max_assertions_per_sec"] for c in env.writes()
             if c["endpoint"].endswith("/rate-limit")]
    assert value(throttled, rate) in posts, (value(throttled, rate), posts)
    env.clear_fault(disk)
    seen("the series gone once the limit is lifted", lambda s: value(s, rate) is None
         and value(s, "stemedb_operator_ready") == 1.0, timeout=120)
    assert env.sim.state(env.cluster)["rate_limit"] is None
