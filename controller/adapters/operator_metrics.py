"""The operator's own Prometheus metrics.

One :class:`OperatorMetrics` per process, on its own ``CollectorRegistry`` (tests
make their own), served by the CLI at ``:{metrics-port}/metrics``.

Cardinality: only the lag and escalation gauges carry per-resource labels
(namespace, name[, replica]); :meth:`OperatorMetrics.forget_cluster` removes those
series when a resource is deleted. Histograms and counters have small, fixed
label sets.

The per-resource gauges are plain dicts exported at scrape time by a custom
collector (prometheus_client's pattern for state a program already holds), not
``Gauge`` children: a child is a full metric object with its own locks (~1 KiB),
and 1,000 clusters made 3,000 of them.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterable, Iterator
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "stemedb_operator"

# Poll durations: a healthy poll is a few ms, a slow one hits the client's
# deadline (seconds); the top buckets show polls that overrun the interval.
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Poll slip: how late a poll starts against its schedule (event-loop lag, GC
# pauses, a saturated core). Healthy is well under 10 ms.
SLIP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _version() -> str:
    try:
        return metadata.version("stemedb-operator")
    except metadata.PackageNotFoundError:  # a checkout without an install
        return "unknown"


class OperatorMetrics:
    """Counters, gauges and histograms the operator exports about itself."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        # The process itself (CPU, memory, open files, start time), as every
        # Prometheus client exports it; the default registry has it, ours needs it.
        ProcessCollector(registry=r)
        build = Gauge(f"{PREFIX}_build_info",
                      "Always 1; labels say which operator build and Python are running.",
                      ["version", "python"], registry=r)
        build.labels(_version(), platform.python_version()).set(1)
        self.poll_duration = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "Duration of one poll of one StemeDBCluster (observe, decide, act, report).",
            ["result"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.poll_slip = Histogram(
            f"{PREFIX}_poll_slip_seconds",
            "How late each poll started: actual start minus the time it was scheduled for.",
            buckets=SLIP_BUCKETS,
            registry=r,
        )
        self.actions = Counter(
            f"{PREFIX}_actions_total",
            "Remediation actions attempted, by action (ResetBreaker, SetRateLimit, ForceSync, "
            "MarkRebuild) and result (success, failed).",
            ["action", "result"],
            registry=r,
        )
        self.suppressed = Counter(
            f"{PREFIX}_actions_suppressed_total",
            "Actions the policy wanted but a gate held, by action kind (or 'any' when the "
            "ladder did not run) and the gate (DryRunMode, Paused, ObserveMode, "
            "ClusterBudgetExhausted, OperatorBudgetExhausted).",
            ["action", "reason"],
            registry=r,
        )
        self.admin_requests = Counter(
            f"{PREFIX}_stemedb_requests_total",
            "HTTP requests (each attempt) to StemeDB nodes, by endpoint (method and path "
            "template) and code (HTTP status, or an error kind such as timeout, unreachable, "
            "tls, parse).",
            ["endpoint", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_stemedb_request_duration_seconds",
            "Duration of each HTTP request attempt to a StemeDB node, by endpoint.",
            ["endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self._clusters = _ClusterGauges()
        r.register(self._clusters)

    # -- recording helpers -------------------------------------------------
    def observe_poll(self, seconds: float, result: str = "ok") -> None:
        self.poll_duration.labels(result).observe(seconds)

    def observe_slip(self, seconds: float) -> None:
        self.poll_slip.observe(max(0.0, seconds))

    def count_action(self, action: str, result: str) -> None:
        self.actions.labels(action, result).inc()

    def count_suppressed(self, action: str, reason: str) -> None:
        self.suppressed.labels(action, reason).inc()

    def count_request(self, endpoint: str, code: str | int, seconds: float | None = None) -> None:
        self.admin_requests.labels(endpoint, str(code)).inc()
        if seconds is not None:
            self.request_duration.labels(endpoint).observe(seconds)

    def set_lag(self, namespace: str, name: str, lags: dict[str, float | None]) -> None:
        """Set the lag of every replica of one cluster; replicas without a value
        (or no longer listed) lose their series rather than keep a stale number."""
        known = {replica: lag for replica, lag in lags.items() if lag is not None}
        with self._clusters.lock:
            self._clusters.lag[(namespace, name)] = known

    def set_escalation(self, namespace: str, name: str, level: int) -> None:
        with self._clusters.lock:
            self._clusters.level[(namespace, name)] = level

    def forget_cluster(self, namespace: str, name: str) -> None:
        """Remove every per-resource series of a deleted StemeDBCluster."""
        with self._clusters.lock:
            self._clusters.lag.pop((namespace, name), None)
            self._clusters.level.pop((namespace, name), None)

    def clusters(self) -> Iterable[tuple[str, str]]:
        with self._clusters.lock:
            return list(self._clusters.lag)


class _ClusterGauges(Collector):
    """`replica_lag_seconds` and `escalated`, read from two dicts at scrape time
    (the scrape runs on the metrics server's thread, hence the lock)."""

    LAG = (f"{PREFIX}_replica_lag_seconds",
           "Replication lag of each replica as last scraped from its primary.")
    LEVEL = (f"{PREFIX}_escalated",
             "Escalation level of each StemeDBCluster: 0 none, 1 cluster SRE, "
             "2 distributed-systems engineer, 3 principal engineer.")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lag: dict[tuple[str, str], dict[str, float]] = {}
        self.level: dict[tuple[str, str], int] = {}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(*self.LAG, labels=["namespace", "name", "replica"])
        yield GaugeMetricFamily(*self.LEVEL, labels=["namespace", "name"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(*self.LAG, labels=["namespace", "name", "replica"])
        level = GaugeMetricFamily(*self.LEVEL, labels=["namespace", "name"])
        with self.lock:  # the inner dicts are replaced whole, never changed in place
            lags = list(self.lag.items())
            levels = list(self.level.items())
        for (namespace, name), replicas in lags:
            for replica, value in replicas.items():
                lag.add_metric([namespace, name, replica], value)
        for (namespace, name), value in levels:
            level.add_metric([namespace, name], value)
        yield lag
        yield level


__all__ = ["OperatorMetrics"]
