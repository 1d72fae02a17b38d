"""A tiny harness: a fake StemeDB cluster driven through decide() poll by poll."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.domain import (
    UNKNOWN,
    Action,
    ActionKind,
    ActionOutcome,
    Memory,
    Observation,
    Plan,
    RateLimit,
    ReplicaObservation,
    SourceStatus,
    Spec,
    decide,
    parse_spec,
    record_outcome,
)

T0 = 1_700_000_000.0


def make_spec(n_replicas: int = 2, **overrides: Any) -> Spec:
    raw: dict[str, Any] = {
        "primary": {"adminUrl": "http://stemedb-0:18180"},
        "replicas": [
            {"id": f"node{k}", "agentId": f"agent-node{k}"} for k in range(2, n_replicas + 2)
        ],
    }
    for dotted, value in overrides.items():
        set_path(raw, dotted.split("__"), value)
    return parse_spec(raw)


def set_path(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set raw[parts[0]][parts[1]]... = value, making the missing objects on the way."""
    cur = raw
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


@dataclass
class FakeCluster:
    """What the harness's observations report; mutate between polls."""

    lags: dict[str, float | None]
    tripped: set[str] = field(default_factory=set)
    rate_limit: RateLimit = None
    sync_running: dict[str, bool] = field(default_factory=dict)
    sync_progress: dict[str, float] = field(default_factory=dict)
    sync_errors: dict[str, float] = field(default_factory=dict)
    corruption: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, float] = field(default_factory=dict)
    primary: SourceStatus = field(default_factory=SourceStatus.ok)
    breakers_readable: bool = True
    approved: frozenset[str] = frozenset()
    rate_readable: bool = True
    first_look: bool = False  # the next observation is a new process's first
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)  # series not scraped

    def observe(self, at: float) -> Observation:
        reps = tuple(
            ReplicaObservation(
                replica_id=rid,
                lag_seconds=lag,
                sync_running=self.sync_running.get(rid),
                sync_progress=self.sync_progress.get(rid),
                sync_errors_total=self.sync_errors.get(rid, 0.0),
                sync_corruption_total=self.corruption.get(rid, 0.0),
                restarts_total=self.restarts.get(rid, 0.0),
                missing_series=self.missing.get(rid, ()),
            )
            for rid, lag in self.lags.items()
        )
        return Observation(
            at=at,
            primary=self.primary,
            replicas=reps,
            tripped_agents=frozenset(self.tripped) if self.breakers_readable else None,
            rate_limit=self.rate_limit if self.rate_readable else UNKNOWN,
            approved_rebuilds=self.approved,
            first_look=self.first_look,
        )

    def apply(self, action: Action) -> None:
        if action.kind is ActionKind.RESET_BREAKER and action.agent_id:
            self.tripped.discard(action.agent_id)
        elif action.kind is ActionKind.SET_RATE_LIMIT:
            self.rate_limit = action.rate
        elif action.kind is ActionKind.FORCE_SYNC and action.replica_id:
            self.sync_running[action.replica_id] = True
            self.sync_progress[action.replica_id] = 0.0


@dataclass
class Harness:
    spec: Spec
    cluster: FakeCluster
    now: float = T0
    memory: Memory = field(default_factory=Memory.empty)
    budget: int = 1000
    fail_kinds: set[ActionKind] = field(default_factory=set)
    log: list[tuple[float, Action]] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)

    def poll(self, advance: float | None = None, *, act: bool = True) -> Plan:
        plan = decide(self.cluster.observe(self.now), self.spec, self.memory, self.now,
                      operator_budget_remaining=self.budget)
        self.plans.append(plan)
        self.memory = plan.memory
        for a in plan.actions:
            self.log.append((self.now - T0, a))
            if not act:
                continue
            ok = a.kind not in self.fail_kinds
            if ok:
                self.cluster.apply(a)
            self.memory = record_outcome(self.memory, a.idempotency_key,
                                         ActionOutcome(ok, "" if ok else "HTTP 503"), self.now)
        self.now += self.spec.detection.poll_interval_seconds if advance is None else advance
        return plan

    def run(self, seconds: float) -> list[Plan]:
        end = self.now + seconds
        out = []
        while self.now < end:
            out.append(self.poll())
        return out

    def kinds(self) -> list[str]:
        return [f"{a.kind.value}:{a.replica_id or a.rate}" for _, a in self.log]

    def cond(self, type_: str) -> tuple[bool, str]:
        for c in self.plans[-1].conditions:
            if c.type.value == type_:
                return c.status, c.reason.value
        raise KeyError(type_)

    def events(self) -> list[str]:
        return [e.reason.value for p in self.plans for e in p.events]
