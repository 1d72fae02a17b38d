"""One simulated cluster: offered load, rate limit, per-replica streams, breakers, syncs.

The model is stepped on a fixed grid of `dt` sim-seconds (lazily, to "now", when
touched). Rates are constant within a step, so the FIFO backlog (backlog.py)
integrates it exactly; long idle gaps use coarser grid-aligned steps.
See docs/simulator.md for the equations.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from stemedb_sim.backlog import EPS, Backlog
from stemedb_sim.faults import API_KINDS, Fault, FaultError, FaultKind, parse_fault
from stemedb_sim.merkle import Histogram, SyncJob, SyncState

MAX_STEPS_PER_ADVANCE = 4000
KEEP_SYNCS = 100


@dataclass
class ClusterConfig:
    replicas: int = 2
    load: float = 2000.0  # offered assertions/s
    load_jitter: float = 0.0  # relative, uniform +-jitter per step
    apply_capacity: float = 3000.0  # per replica, assertions/s
    network_delay: float = 0.05  # seconds, primary -> replica
    primary_send_capacity: float = 20000.0  # assertions/s, shared by all streams
    bytes_per_assertion: float = 512.0
    sync_bandwidth: float = 2_000_000.0  # bytes/s for a Merkle sync
    tree_overhead_bytes: float = 4_000_000.0  # tree-compare phase of every sync
    dt: float = 0.25

    def validate(self) -> None:
        if not 1 <= self.replicas <= 64:
            raise ValueError("replicas must be 1..64")
        for name in ("load", "load_jitter", "network_delay", "tree_overhead_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("apply_capacity", "primary_send_capacity", "bytes_per_assertion",
                     "sync_bandwidth", "dt"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")


@dataclass
class Breaker:
    tripped: bool = False
    tripped_at: float | None = None
    reason: str = ""
    reset_at: float | None = None


@dataclass
class ReplicaState:
    node_id: str
    agent_id: str
    backlog: Backlog = field(default_factory=Backlog)
    applied_total: float = 0.0
    bytes_sent_total: float = 0.0
    breaker: Breaker = field(default_factory=Breaker)
    up: bool = True
    down_until: float | None = None
    restarts_total: int = 0
    sync: SyncJob | None = None  # current or most recent
    sync_errors_total: int = 0
    corruption_detected_total: int = 0
    sync_durations: Histogram = field(default_factory=Histogram)
    lag: float = 0.0
    disk_utilization: float = 0.0
    effective_capacity: float = 0.0
    delay: float = 0.0

    @property
    def sync_running(self) -> bool:
        return self.sync is not None and self.sync.running

    @property
    def sync_progress(self) -> float:
        return 0.0 if self.sync is None else self.sync.progress


class AdminError(Exception):
    """A rejected admin request: maps to a JSON error; nothing was changed."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


@dataclass
class _Effects:
    capacity_factor: float = 1.0
    extra_delay: float = 0.0
    max_stream_rate: float = math.inf
    blocked: bool = False


class ClusterModel:
    def __init__(
        self,
        name: str,
        config: ClusterConfig | None = None,
        *,
        seed: int = 1,
        start: float = 0.0,
        epoch: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z, wall time of sim t=0
    ) -> None:
        self.name = name
        self.config = config or ClusterConfig()
        self.config.validate()
        self.rng = random.Random(f"{seed}:{name}")
        self.epoch = epoch
        self.t = start
        self.load = self.config.load
        self.rate_limit: float | None = None
        self.ingested_total = 0.0
        self.rate_limited_total = 0.0
        self.ingest_rate = 0.0
        self.replicas: dict[str, ReplicaState] = {}
        for k in range(2, self.config.replicas + 2):
            self.replicas[f"node{k}"] = ReplicaState(f"node{k}", f"agent-node{k}")
        self.faults: list[Fault] = []
        self.syncs: OrderedDict[str, SyncJob] = OrderedDict()
        self._next_sync = 1
        self._next_fault = 1
        self.version = 0  # bumped on every change not caused by stepping
        #: every admin call received (appended by the server), for the truth API
        self.admin_log: list[dict[str, Any]] = []
        self.admin_log_dropped = 0
        #: GET /metrics requests per node, served or not: lets tests wait for "the
        #: operator looked N more times" instead of sleeping
        self.metrics_requests: dict[str, int] = {}
        # Requests refused for a missing or wrong token, per node (scrapes included),
        # so a test can count what a token rotation cost.
        self.unauthorized_requests: dict[str, int] = {}

    # -- identity ---------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        return ["node1", *self.replicas]

    def iso(self, t: float) -> str:
        return datetime.fromtimestamp(self.epoch + t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    # -- time -------------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        """Step the model on its dt grid up to the last grid point <= t."""
        dt = self.config.dt
        n = math.floor((t - self.t) / dt + 1e-9)
        if n <= 0:
            return
        k = max(1, math.ceil(n / MAX_STEPS_PER_ADVANCE))
        coarse, fine = divmod(n, k)
        for _ in range(coarse):
            self._step(k * dt)
        for _ in range(fine):
            self._step(dt)

    def _step(self, h: float) -> None:
        t0 = self.t
        t1 = t0 + h
        cfg = self.config
        self._update_faults(t0)
        load = self.load
        if cfg.load_jitter:
            load *= 1.0 + cfg.load_jitter * self.rng.uniform(-1.0, 1.0)
        send_factor = 1.0
        for f in self.faults:
            if f.active and f.kind is FaultKind.PRIMARY_OVERLOAD:
                load += f.params["extra_load"]
                send_factor *= f.params["send_capacity_factor"]
        ingest = load if self.rate_limit is None else min(load, self.rate_limit)
        self.ingest_rate = ingest
        n = ingest * h
        self.ingested_total += n
        self.rate_limited_total += (load - ingest) * h
        share = cfg.primary_send_capacity * send_factor / len(self.replicas)
        for r in self.replicas.values():
            r.backlog.push(t0, t1, n)
            eff = self._effects(r, t0)
            disk_cap = cfg.apply_capacity * eff.capacity_factor
            cap = 0.0 if (eff.blocked or r.breaker.tripped or not r.up) else min(
                disk_cap, share, eff.max_stream_rate
            )
            r.effective_capacity = cap
            r.delay = cfg.network_delay + eff.extra_delay
            got = r.backlog.consume(cap * h, t1 - r.delay)
            r.applied_total += got
            r.bytes_sent_total += got * cfg.bytes_per_assertion
            if r.sync_running:
                assert r.sync is not None
                r.sync.remaining = max(0.0, r.sync.remaining - got)
                got += self._step_sync(r, r.sync, t1, h)
            r.disk_utilization = 0.0 if disk_cap <= 0 or not r.up else min(1.0, got / h / disk_cap)
        self.t = t1
        for r in self.replicas.values():
            oldest = r.backlog.oldest()
            r.lag = 0.0 if oldest is None else max(0.0, t1 - oldest)

    def _effects(self, r: ReplicaState, t: float) -> _Effects:
        e = _Effects()
        for f in self.faults:
            if not f.active or (f.replica is not None and f.replica != r.node_id):
                continue
            p = f.params
            if f.kind is FaultKind.DISK_SATURATION:
                e.capacity_factor *= p["capacity_factor"]
            elif f.kind is FaultKind.NETWORK_LATENCY:
                e.extra_delay += p["delay_seconds"]
                if p["max_stream_rate"] is not None:
                    e.max_stream_rate = min(e.max_stream_rate, p["max_stream_rate"])
            elif f.kind is FaultKind.FLAPPING:
                phase = 2 * math.pi * (t - f.started_at) / max(p["period_seconds"], 1e-9)
                e.extra_delay += max(
                    0.0, p["threshold_seconds"] + p["amplitude_seconds"] * math.sin(phase)
                )
            elif f.kind is FaultKind.TRANSIENT_SPIKE:
                e.blocked = True
        return e

    def _step_sync(self, r: ReplicaState, job: SyncJob, t1: float, h: float) -> float:
        """Move sync data for one step; returns assertions applied by the sync."""
        cfg = self.config
        self._arm_corruption(r, job)
        stall = self._active(FaultKind.SYNC_STALL, r.node_id)
        stall_at = stall.params["at_progress"] if stall else None
        moved = 0.0
        if not r.up:
            return 0.0
        if stall_at is None or job.progress < stall_at:
            budget = cfg.sync_bandwidth * h
            o = min(budget, job.overhead_total - job.overhead_moved)
            job.overhead_moved += o
            budget -= o
            r.bytes_sent_total += o
            if budget > 0 and job.remaining > EPS:
                want = min(budget / cfg.bytes_per_assertion, job.remaining)
                moved = r.backlog.consume(want, t1)
                job.remaining = max(0.0, job.remaining - moved)
                r.applied_total += moved
                r.bytes_sent_total += moved * cfg.bytes_per_assertion
        raw = job.raw_progress(cfg.bytes_per_assertion)
        cap = 1.0
        if job.fail_at is not None:
            cap = job.fail_at
        if stall_at is not None:
            cap = min(cap, stall_at)
        job.progress = max(job.progress, min(raw, cap))
        if job.fail_at is not None and job.progress >= job.fail_at - 1e-12:
            assert job.fail_state is not None
            msg = ("merkle root mismatch after repair: corruption detected"
                   if job.fail_state is SyncState.CORRUPTION else "sync stream aborted by peer")
            self._finish_sync(r, job, t1, job.fail_state, msg)
        elif stall_at is None and raw >= 1.0 - 1e-12 and job.remaining <= EPS:
            job.progress = 1.0
            self._finish_sync(r, job, t1, SyncState.SUCCEEDED, None)
        return moved

    def _arm_corruption(self, r: ReplicaState, job: SyncJob) -> None:
        """A corrupted replica's sync always ends in corruption_detected, never clean."""
        corr = self._active(FaultKind.CORRUPTION, r.node_id)
        if corr and job.fail_state is not SyncState.CORRUPTION:
            job.fail_at = max(corr.params["at_progress"], job.progress)
            job.fail_state = SyncState.CORRUPTION

    def _finish_sync(
        self, r: ReplicaState, job: SyncJob, t: float, state: SyncState, error: str | None
    ) -> None:
        job.state = state
        job.finished_at = t
        job.error = error
        r.sync_durations.observe(t - job.started_at)
        if state is not SyncState.SUCCEEDED:
            r.sync_errors_total += 1
        if state is SyncState.CORRUPTION:
            r.corruption_detected_total += 1

    def _active(self, kind: FaultKind, replica: str) -> Fault | None:
        for f in self.faults:
            if f.active and f.kind is kind and f.replica == replica:
                return f
        return None

    def _update_faults(self, t: float) -> None:
        for f in self.faults:
            if f.active and f.ends_at is not None and t >= f.ends_at:
                f.state = "expired"
                f.stopped_at = f.ends_at
        for r in self.replicas.values():
            if not r.up and r.down_until is not None and t >= r.down_until:
                r.up = True
                r.down_until = None
                r.restarts_total += 1
                loop = self._active(FaultKind.CRASH_LOOP, r.node_id)
                if loop and loop.memo.get("engaged"):
                    loop.memo["next_crash_at"] = t + loop.params["up_seconds"]
        for f in self.faults:
            if not f.active or f.replica is None:
                continue
            r = self.replicas[f.replica]
            if f.kind is FaultKind.BREAKER_TRIP:
                again = f.params["retrip_after_seconds"]
                if (not r.breaker.tripped and again is not None and r.breaker.reset_at is not None
                        and t >= r.breaker.reset_at + again):
                    self._trip(r, t, f.params["reason"])
            elif f.kind is FaultKind.CRASH_LOOP:
                self._crash_loop(f, r, t)

    def _crash_loop(self, f: Fault, r: ReplicaState, t: float) -> None:
        p = f.params
        if not f.memo.get("engaged"):
            if p["during_sync"] and not r.sync_running:
                return
            f.memo["engaged"] = True
            start = r.sync.started_at if (p["during_sync"] and r.sync) else t
            f.memo["next_crash_at"] = start + p["up_seconds"]
        if r.up and t >= f.memo["next_crash_at"]:
            r.up = False
            r.down_until = t + p["down_seconds"]
            if r.sync is not None and r.sync.running:
                self._finish_sync(r, r.sync, t, SyncState.FAILED, "replica crashed during sync")

    def _trip(self, r: ReplicaState, t: float, reason: str) -> None:
        r.breaker = Breaker(True, t, reason, None)

    # -- admin operations (called with the model advanced to "now") --------------------

    def set_rate_limit(self, value: float | None) -> float | None:
        previous = self.rate_limit
        self.rate_limit = value
        self.version += 1
        return previous

    def start_sync(self, replica_id: str, force: bool) -> SyncJob:
        if replica_id == "node1":
            raise AdminError(400, "not_a_replica", "node1 is the primary; sync a replica")
        r = self.replicas.get(replica_id)
        if r is None:
            raise AdminError(404, "unknown_replica", f"no replica {replica_id!r} in this cluster")
        if r.sync is not None and r.sync.running:
            raise AdminError(
                409, "sync_already_running",
                f"a sync of {replica_id} is already running", sync_id=r.sync.sync_id,
            )
        if not r.up:
            raise AdminError(503, "replica_unavailable", f"replica {replica_id} is down")
        cfg = self.config
        job = SyncJob(
            sync_id=f"sync-{self._next_sync}",
            replica_id=replica_id,
            force=force,
            started_at=self.t,
            target=r.backlog.total,
            remaining=r.backlog.total,
            overhead_total=cfg.tree_overhead_bytes,
        )
        self._next_sync += 1
        corr = self._active(FaultKind.CORRUPTION, replica_id)
        fail = self._active(FaultKind.SYNC_FAILURE, replica_id)
        if corr:
            job.fail_at, job.fail_state = corr.params["at_progress"], SyncState.CORRUPTION
        elif fail:
            job.fail_at, job.fail_state = fail.params["at_progress"], SyncState.FAILED
            if fail.params["times"] is not None:
                used = fail.memo.get("used", 0) + 1
                fail.memo["used"] = used
                if used >= fail.params["times"]:
                    fail.state = "exhausted"
                    fail.stopped_at = self.t
        r.sync = job
        self.syncs[job.sync_id] = job
        while len(self.syncs) > KEEP_SYNCS:
            self.syncs.popitem(last=False)
        self.version += 1
        return job

    def tripped_breakers(self) -> list[dict[str, Any]]:
        return [
            {
                "agent_id": r.agent_id,
                "replica_id": r.node_id,
                "tripped_at": self.iso(r.breaker.tripped_at or 0.0),
                "reason": r.breaker.reason,
            }
            for r in self.replicas.values()
            if r.breaker.tripped
        ]

    def reset_breaker(self, agent_id: str) -> tuple[ReplicaState, bool]:
        """Reset `agent_id`'s breaker; returns its replica and whether it was tripped."""
        for r in self.replicas.values():
            if r.agent_id == agent_id:
                was = r.breaker.tripped
                if was:
                    r.breaker = Breaker(False, None, "", self.t)
                    self.version += 1
                return r, was
        raise AdminError(404, "unknown_agent", f"no circuit breaker for agent {agent_id!r}")

    # -- fault injection and truth ----------------------------------------------------

    def add_fault(self, body: Any) -> Fault:
        fault = parse_fault(
            body, fault_id=f"f-{self._next_fault}", now=self.t,
            replicas=list(self.replicas), nodes=self.nodes,
        )
        self._next_fault += 1
        self.faults.append(fault)
        if fault.kind is FaultKind.BREAKER_TRIP and fault.replica is not None:
            r = self.replicas[fault.replica]
            if not r.breaker.tripped:
                self._trip(r, self.t, fault.params["reason"])
        if fault.kind is FaultKind.CORRUPTION and fault.replica is not None:
            r = self.replicas[fault.replica]
            if r.sync is not None and r.sync.running:
                self._arm_corruption(r, r.sync)
        self.version += 1
        return fault

    def stop_fault(self, fault_id: str) -> Fault:
        for f in self.faults:
            if f.id == fault_id:
                if f.active:
                    f.state = "stopped"
                    f.stopped_at = self.t
                    self.version += 1
                return f
        raise FaultError(f"no fault {fault_id!r}", code="unknown_fault", status=404)

    def api_faults(self, node: str, endpoint: str) -> list[Fault]:
        """Active API faults that apply to a request on `node` for `endpoint` (metrics|admin)."""
        return [
            f for f in self.faults
            if f.active and f.kind in API_KINDS and f.node in (None, node)
            and f.endpoint in ("all", endpoint)
        ]

    def set_load(self, load: float, jitter: float | None = None) -> None:
        self.load = load
        if jitter is not None:
            self.config.load_jitter = jitter
        self.version += 1

    def state_json(self) -> dict[str, Any]:
        return {
            "cluster": self.name,
            "sim_time": self.t,
            "wall_time": self.iso(self.t),
            "offered_load": self.load,
            "ingest_rate": self.ingest_rate,
            "rate_limit": self.rate_limit,
            "ingested_total": self.ingested_total,
            "rate_limited_total": self.rate_limited_total,
            "config": asdict(self.config),
            "replicas": {
                r.node_id: {
                    "agent_id": r.agent_id,
                    "up": r.up,
                    "down_until": r.down_until,
                    "restarts_total": r.restarts_total,
                    "backlog": r.backlog.total,
                    "lag_seconds": r.lag,
                    "apply_capacity": self.config.apply_capacity,
                    "effective_capacity": r.effective_capacity,
                    "network_delay_seconds": r.delay,
                    "applied_total": r.applied_total,
                    "bytes_sent_total": r.bytes_sent_total,
                    "disk_utilization": r.disk_utilization,
                    "breaker": asdict(r.breaker),
                    "sync": None if r.sync is None else r.sync.to_json(self.iso),
                    "sync_errors_total": r.sync_errors_total,
                    "corruption_detected_total": r.corruption_detected_total,
                }
                for r in self.replicas.values()
            },
            "faults": [f.to_json() for f in self.faults],
            "metrics_requests": dict(self.metrics_requests),
            "unauthorized_requests": dict(self.unauthorized_requests),
        }
