"""The operator's own Prometheus metrics.

One :class:`OperatorMetrics` per process, on its own ``CollectorRegistry`` (tests
make their own), served by the CLI at ``:{metrics-port}/metrics``.

Cardinality: the per-cluster families (lag per replica, escalation level,
metrics readable, ready, the operator's rate limit, the lag thresholds, request
attempts by code class) carry ``namespace`` and ``name`` (and ``replica`` for lag,
``threshold`` with three values, ``code_class`` with four), so their series are
bounded by clusters x replicas and clusters x 4;
:meth:`OperatorMetrics.forget_cluster` removes them all when a resource is
deleted. The process-wide histograms and counters have small, fixed label sets
(endpoint, code, action, gate), never a cluster. docs/metrics.md lists them all.

The per-resource series are plain dicts exported at scrape time by a custom
collector (prometheus_client's pattern for state a program already holds), not
``Gauge`` children: a child is a full metric object with its own locks (~1 KiB),
and 1,000 clusters made 3,000 of them.

Which cluster a StemeDB request is for: the StemeDB client is shared by every
cluster and knows only URLs, so the reconciler marks each poll with
:meth:`OperatorMetrics.attribute_to` (a context variable, inherited by the
poll's tasks) and :meth:`OperatorMetrics.count_request` reads it.
"""

from __future__ import annotations

import contextlib
import contextvars
import platform
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.domain.conditions import ConditionType

if TYPE_CHECKING:
    from controller.domain.policy import Plan
    from controller.domain.spec import DetectionSpec, Spec

PREFIX = "stemedb_operator"

# Poll durations: a healthy poll is a few ms, a slow one hits the client's
# deadline (seconds); the top buckets show polls that overrun the interval.
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Poll slip: how late a poll starts against its schedule (event-loop lag, GC
# pauses, a saturated core). Healthy is well under 10 ms.
SLIP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# The cluster the current task's StemeDB requests are for (set per poll).
_CLUSTER: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "stemedb_operator_cluster", default=None)

CODE_CLASSES = ("2xx", "4xx", "5xx", "error")


def code_class(code: str | int) -> str:
    """The class of a request attempt's code: 2xx, 4xx, 5xx or error (no HTTP
    answer: timeout, unreachable, tls, parse, ...). Four values, so the
    per-cluster request counter stays at four series per cluster."""
    text = str(code)
    if len(text) == 3 and text.isdigit() and text[0] in "245":
        return f"{text[0]}xx"
    return "error"


@dataclass(frozen=True, slots=True)
class ClusterReading:
    """What one poll concluded about a cluster, for its per-cluster gauges."""

    level: int
    metrics_readable: bool
    ready: bool
    # The ingestion limit the operator holds while it throttles (-1: unlimited,
    # not lowered yet); None when the operator holds no limit (series absent).
    rate_limit: float | None = None
    # The cluster's spec.detection (the parsed spec's own object, not a copy), so
    # a dashboard draws each cluster's lag against its own thresholds.
    detection: DetectionSpec | None = None

    @classmethod
    def of(cls, plan: Plan, spec: Spec) -> ClusterReading:
        throttle = plan.memory.throttle
        rate: float | None = None
        if throttle.active:
            rate = -1.0 if throttle.current_rate is None else float(throttle.current_rate)
        ready = any(c.type is ConditionType.READY and c.status for c in plan.conditions)
        return cls(plan.escalation.level, plan.metrics_available, ready, rate, spec.detection)

    @property
    def thresholds(self) -> tuple[tuple[str, float], ...]:
        d = self.detection
        if d is None:
            return ()
        return (("warning", d.warning.lag_seconds), ("critical", d.critical.lag_seconds),
                ("escalation", d.escalation_lag_seconds))


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
        cluster = _CLUSTER.get()
        if cluster is not None:
            cls = code_class(code)
            with self._clusters.lock:
                counts = self._clusters.requests.setdefault(cluster, dict.fromkeys(CODE_CLASSES, 0))
                counts[cls] += 1

    @contextlib.contextmanager
    def attribute_to(self, namespace: str, name: str) -> Iterator[None]:
        """Count the StemeDB requests made inside this block (and the tasks it
        starts) for cluster namespace/name too."""
        token = _CLUSTER.set((namespace, name))
        try:
            yield
        finally:
            _CLUSTER.reset(token)

    def set_lag(self, namespace: str, name: str, lags: dict[str, float | None]) -> None:
        """Set the lag of every replica of one cluster; replicas without a value
        (or no longer listed) lose their series rather than keep a stale number."""
        known = {replica: lag for replica, lag in lags.items() if lag is not None}
        with self._clusters.lock:
            self._clusters.lag[(namespace, name)] = known

    def set_escalation(self, namespace: str, name: str, level: int) -> None:
        with self._clusters.lock:
            self._clusters.level[(namespace, name)] = level

    def set_cluster(self, namespace: str, name: str, reading: ClusterReading) -> None:
        """Set a cluster's escalation level, metrics-readable, ready and rate-limit
        gauges from one poll's conclusion."""
        with self._clusters.lock:
            self._clusters.level[(namespace, name)] = reading.level
            self._clusters.reading[(namespace, name)] = reading

    def forget_cluster(self, namespace: str, name: str) -> None:
        """Remove every per-resource series of a deleted StemeDBCluster."""
        key = (namespace, name)
        with self._clusters.lock:
            self._clusters.lag.pop(key, None)
            self._clusters.level.pop(key, None)
            self._clusters.reading.pop(key, None)
            self._clusters.requests.pop(key, None)

    def clusters(self) -> Iterable[tuple[str, str]]:
        with self._clusters.lock:
            return list(self._clusters.lag)


class _ClusterGauges(Collector):
    """The per-cluster families, read from dicts at scrape time (the scrape runs
    on the metrics server's thread, hence the lock)."""

    LAG = (f"{PREFIX}_replica_lag_seconds",
           "Replication lag of each replica as last scraped from its primary; absent "
           "while unknown.")
    LEVEL = (f"{PREFIX}_escalated",
             "Escalation level of each StemeDBCluster (a level, not a flag): 0 none, "
             "1 cluster SRE, 2 distributed-systems engineer, 3 principal engineer.")
    READABLE = (f"{PREFIX}_metrics_readable",
                "1 if the last poll of the StemeDBCluster read complete lag data from its "
                "primary's /metrics, 0 if the operator is blind to its lag.")
    READY = (f"{PREFIX}_ready",
             "1 if the StemeDBCluster's Ready condition is True (metrics read, no replica "
             "lagging, nothing escalated), else 0.")
    RATE = (f"{PREFIX}_rate_limit_assertions_per_sec",
            "Ingestion rate limit the operator holds on the StemeDBCluster while it "
            "throttles (-1: unlimited, not lowered yet); absent when it holds none.")
    THRESHOLD = (f"{PREFIX}_lag_threshold_seconds",
                 "The StemeDBCluster's lag thresholds from its spec.detection: warning, "
                 "critical, escalation.")
    REQUESTS = (f"{PREFIX}_cluster_requests",
                "HTTP request attempts to the StemeDBCluster's nodes, by code class (2xx, "
                "4xx, 5xx, error: no HTTP answer).")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lag: dict[tuple[str, str], dict[str, float]] = {}
        self.level: dict[tuple[str, str], int] = {}
        self.reading: dict[tuple[str, str], ClusterReading] = {}
        self.requests: dict[tuple[str, str], dict[str, int]] = {}

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                                 GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                                 CounterMetricFamily]:
        cluster = ["namespace", "name"]
        return (GaugeMetricFamily(*self.LAG, labels=[*cluster, "replica"]),
                GaugeMetricFamily(*self.LEVEL, labels=cluster),
                GaugeMetricFamily(*self.READABLE, labels=cluster),
                GaugeMetricFamily(*self.READY, labels=cluster),
                GaugeMetricFamily(*self.RATE, labels=cluster),
                GaugeMetricFamily(*self.THRESHOLD, labels=[*cluster, "threshold"]),
                CounterMetricFamily(*self.REQUESTS, labels=[*cluster, "code_class"]))

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        lag, level, readable, ready, rate, threshold, requests = self._families()
        with self.lock:  # the inner values are replaced whole, or copied here
            lags = list(self.lag.items())
            levels = list(self.level.items())
            readings = list(self.reading.items())
            counts = [(key, dict(c)) for key, c in self.requests.items()]
        for (namespace, name), replicas in lags:
            for replica, value in replicas.items():
                lag.add_metric([namespace, name, replica], value)
        for (namespace, name), value in levels:
            level.add_metric([namespace, name], value)
        for (namespace, name), r in readings:
            readable.add_metric([namespace, name], 1.0 if r.metrics_readable else 0.0)
            ready.add_metric([namespace, name], 1.0 if r.ready else 0.0)
            if r.rate_limit is not None:
                rate.add_metric([namespace, name], r.rate_limit)
            for which, seconds in r.thresholds:
                threshold.add_metric([namespace, name, which], seconds)
        for (namespace, name), by_class in counts:
            for cls, n in by_class.items():
                requests.add_metric([namespace, name, cls], n)
        yield from (lag, level, readable, ready, rate, threshold, requests)


__all__ = ["CODE_CLASSES", "ClusterReading", "OperatorMetrics", "code_class"]
