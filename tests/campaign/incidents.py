"""Seeded incidents: a spec within the CRD's rules and a timeline of faults, operator
restarts and human actions. An `Incident` is plain data, so a failing one can be
printed, re-run and shrunk (shrink.py) without its seed."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from controller.domain import SpecError, parse_spec

# Fault kinds the generator draws from, with weights (replication faults more often
# than API ones: they are what the ladder is for).
FAULT_WEIGHTS: dict[str, int] = {
    "breaker_trip": 6, "breaker_retrip": 3, "disk_saturation": 5, "stuck_replica": 3,
    "sync_failure": 3, "sync_stall": 2, "corruption": 2, "crash_loop": 2, "flapping": 2,
    "transient_spike": 3, "primary_overload": 2, "http_error": 2, "admin_timeout": 1,
    "connection_reset": 1, "garbled_metrics": 1, "truncated_metrics": 1, "slow_sync": 2,
}
HUMAN = ("approve", "approve_bare", "pause", "human_sync", "rotate_token")
# The seed's last digit picks the incident's family; the rest are "single". Seeds of
# the known and fixed defects' regression cases (runner.py) keep their incidents.
FAMILIES: dict[int, str] = {3: "storm", 6: "fleet"}
LOAD = 2000.0
# After the last fault ends: time to recover, to ramp the rate back and to be seen quiet.
TAIL = 500.0


@dataclass(frozen=True)
class Event:
    """One thing that happens at `at` sim-seconds: `what` is a fault label (the
    simulator's fault body in `args`), "restart" or "crash", or a human action in HUMAN."""

    at: float
    what: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Neighbour:
    """Another cluster of the same operator: its own model and spec, sharing the
    reconciler and the operator-wide budget with the incident's cluster."""

    name: str
    replicas: int
    spec: dict[str, Any]
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Incident:
    seed: int
    replicas: int
    spec: dict[str, Any]  # dotted camelCase path -> value, over the CRD defaults
    events: tuple[Event, ...]
    horizon: float
    initial_rate: int | None = None
    token: bool = True
    neighbours: tuple[Neighbour, ...] = ()
    operator_budget: int = 100  # the operator-wide actions per hour (ActionBudget)

    @property
    def fault_kinds(self) -> list[str]:
        return sorted({e.what for e in self.events if e.what in FAULT_WEIGHTS})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Incident:
        d = json.loads(text)
        d["events"] = tuple(Event(**e) for e in d["events"])
        d["neighbours"] = tuple(
            Neighbour(**{**n, "events": tuple(Event(**e) for e in n["events"])})
            for n in d.get("neighbours", ()))
        return cls(**d)


def _spec(rng: random.Random, replicas: int) -> dict[str, Any]:
    poll = rng.choice([2.0, 5.0, 5.0, 10.0, 10.0, 10.0, 15.0, 15.0])
    warning = rng.choice([4.0, 5.0, 8.0])
    critical = warning + rng.choice([2.0, 5.0, 10.0])
    spec: dict[str, Any] = {
        "detection.pollIntervalSeconds": poll,
        "detection.warning.lagSeconds": warning,
        "detection.warning.forSeconds": rng.choice([0.0, 30.0, 60.0]),
        "detection.critical.lagSeconds": critical,
        "detection.critical.forSeconds": rng.choice([0.0, 20.0, 60.0]),
        "detection.escalation.lagSeconds": critical + rng.choice([20.0, 50.0, 100.0]),
        "detection.recovery.lagSeconds": rng.choice([1.0, 2.0, 3.0]),
        "detection.recovery.forSeconds": rng.choice([20.0, 60.0]),
        "detection.stormReplicas": rng.choice([2, 2, 3]),
        "remediation.cooldownSeconds": rng.choice([60.0, 300.0]),
        "remediation.maxActionsPerHour": rng.choice([6, 20, 20, 60]),
        "remediation.maxConcurrentRebuilds": rng.choice([1, 1, 2]),
        "remediation.minInSyncReplicas": rng.choice([1, 1, 2]),
        "remediation.breakerReset.timeoutSeconds": rng.choice([20.0, 60.0]),
        "remediation.breakerReset.maxAttempts": rng.choice([1, 2, 3]),
        "remediation.throttle.floorAssertionsPerSec": rng.choice([100, 500, 1000]),
        "remediation.throttle.stepIntervalSeconds": rng.choice([20.0, 60.0]),
        "remediation.throttle.restoreStepSeconds": rng.choice([20.0, 60.0]),
        "remediation.merkleSync.timeoutSeconds": rng.choice([120.0, 300.0]),
        "remediation.merkleSync.maxAttempts": rng.choice([1, 2, 3]),
        "remediation.merkleSync.stallTimeoutSeconds": rng.choice([30.0, 60.0]),
        "remediation.rebuild.policy": rng.choice(["Manual", "Manual", "Automatic"]),
        "escalation.promoteAfterSeconds": rng.choice([300.0, 1800.0]),
    }
    if rng.random() < 0.15:
        spec["remediation.mode"] = rng.choice(["DryRun", "Observe"])
    if rng.random() < 0.2:
        spec["remediation.backpressure.enabled"] = True
        spec["remediation.backpressure.lagSeconds"] = critical + rng.choice([5.0, 20.0])
    for step in ("breakerReset", "throttle", "merkleSync"):
        if rng.random() < 0.08:
            spec[f"remediation.{step}.enabled"] = False
    return spec


def _fault(rng: random.Random, label: str, replicas: list[str], at: float) -> Event:
    rep = rng.choice(replicas)
    dur = rng.choice([30.0, 90.0, 180.0, 400.0])
    body: dict[str, Any]
    if label == "breaker_trip":
        body = {"kind": "breaker_trip", "replica": rep}
    elif label == "breaker_retrip":
        body = {"kind": "breaker_trip", "replica": rep,
                "retrip_after_seconds": rng.choice([5.0, 30.0, 90.0]), "duration_seconds": dur}
    elif label == "disk_saturation":
        body = {"kind": "disk_saturation", "replica": rep,
                "capacity_factor": rng.choice([0.3, 0.4, 0.6]), "duration_seconds": dur}
    elif label == "stuck_replica":  # a stream that stops for good until a sync or reset
        body = {"kind": "network_latency", "replica": rep, "delay_seconds": 0.05,
                "max_stream_rate": rng.choice([0.0, 500.0]), "duration_seconds": dur}
    elif label == "slow_sync":  # a stream too slow to keep up; a sync catches it up
        body = {"kind": "network_latency", "replica": rep, "delay_seconds": 1.0,
                "max_stream_rate": 1500.0, "duration_seconds": dur}
    elif label == "sync_failure":
        body = {"kind": "sync_failure", "replica": rep, "times": rng.choice([1, 2, None]),
                "at_progress": rng.choice([0.2, 0.5, 0.9]), "duration_seconds": dur}
    elif label == "sync_stall":
        body = {"kind": "sync_stall", "replica": rep, "at_progress": rng.choice([0.1, 0.3, 0.7]),
                "duration_seconds": dur}
    elif label == "corruption":
        body = {"kind": "corruption", "replica": rep, "at_progress": rng.choice([0.3, 0.6]),
                "duration_seconds": dur}
    elif label == "crash_loop":
        body = {"kind": "crash_loop", "replica": rep, "during_sync": rng.random() < 0.7,
                "duration_seconds": dur}
    elif label == "flapping":
        body = {"kind": "flapping", "replica": rep, "threshold_seconds": rng.choice([5.0, 10.0]),
                "amplitude_seconds": rng.choice([2.0, 4.0]), "duration_seconds": dur}
    elif label == "transient_spike":
        body = {"kind": "transient_spike", "stall_seconds": rng.choice([8.0, 15.0, 25.0]),
                **({"replica": rep} if rng.random() < 0.7 else {})}
    elif label == "primary_overload":
        body = {"kind": "primary_overload", "send_capacity_factor": rng.choice([0.05, 0.1, 0.15]),
                "duration_seconds": dur}
    elif label == "http_error":
        body = {"kind": "http_error", "node": "node1",
                "endpoint": rng.choice(["admin", "admin", "all"]),
                "status": rng.choice([500, 502, 503]),
                "probability": rng.choice([1.0, 1.0, 0.5]), "duration_seconds": dur}
    elif label == "admin_timeout":
        body = {"kind": "timeout", "node": "node1", "endpoint": "admin", "duration_seconds": dur}
    elif label == "connection_reset":
        body = {"kind": "connection_refused", "node": "node1",
                "endpoint": rng.choice(["admin", "all"]), "duration_seconds": dur}
    elif label == "garbled_metrics":
        body = {"kind": "garbled_metrics", "node": "node1", "duration_seconds": dur}
    elif label == "truncated_metrics":
        body = {"kind": "truncated_metrics", "node": "node1",
                "fraction": rng.choice([0.3, 0.6, 0.9]), "duration_seconds": dur}
    else:  # pragma: no cover - a label without a body is a generator bug
        raise AssertionError(label)
    return Event(at, label, body)


def generate(seed: int) -> Incident:
    """The incident of `seed`: the same seed always gives the same incident. The seed's
    last digit picks its family (`FAMILIES`): most are `single`, the original mix."""
    family = FAMILIES.get(seed % 10, "single")
    if family == "storm":
        return _storm(seed)
    if family == "fleet":
        return _fleet(seed)
    return _single(seed)


def _cluster(rng: random.Random, sizes: list[int]) -> tuple[int, list[str], dict[str, Any]]:
    """Replica count, replica ids and a spec the CRD accepts."""
    replicas = rng.choice(sizes)
    ids = [f"node{k}" for k in range(2, replicas + 2)]
    while True:
        spec = _spec(rng, replicas)
        try:
            parse_spec(raw_spec(spec, replicas))
            return replicas, ids, spec
        except SpecError:
            continue


def _people(rng: random.Random, ids: list[str], last: float) -> list[Event]:
    """0-2 operator restarts and 0-3 human actions, up to a while after the last fault."""
    events = []
    for _ in range(rng.choice([0, 0, 1, 2])):
        # "crash": the process dies right after its next admin write was applied,
        # before the outcome is recorded (the intent is in status); "restart": between polls.
        events.append(Event(round(rng.uniform(30.0, last + 200.0), 1),
                            rng.choice(["restart", "crash"])))
    for _ in range(rng.choice([0, 1, 2, 3])):
        what = rng.choice(HUMAN)
        at = round(rng.uniform(30.0, last + 300.0), 1)
        args: dict[str, Any] = {}
        if what in ("approve_bare", "human_sync"):
            args["replica"] = rng.choice(ids)
        if what == "pause":
            args["seconds"] = rng.choice([30.0, 120.0])
        if what == "rotate_token":
            args["secret_delay"] = rng.choice([0.0, 0.0, 5.0])
        events.append(Event(at, what, args))
    return events


def _single(seed: int) -> Incident:
    """1-4 faults of any kind at random times, restarts and human actions."""
    rng = random.Random(f"campaign:{seed}")
    replicas, ids, spec = _cluster(rng, [2, 2, 3, 3, 4])
    labels, weights = zip(*FAULT_WEIGHTS.items(), strict=True)
    events: list[Event] = []
    t = rng.uniform(20.0, 120.0)
    last = t
    for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
        label = rng.choices(labels, weights)[0]
        fault = _fault(rng, label, ids, round(t, 1))
        events.append(fault)
        last = max(last, t + fault.args.get("duration_seconds", 30.0))
        t += rng.choice([0.0, 10.0, 60.0, 200.0])
    events += _people(rng, ids, last)
    events.sort(key=lambda e: e.at)
    return Incident(
        seed=seed, replicas=replicas, spec=spec, events=tuple(events),
        horizon=round(last + TAIL, 1),
        initial_rate=rng.choice([None, None, 5000]),
    )


def _storm(seed: int) -> Incident:
    """A breaker trip inside a storm (issue 14 item 3): one replica's breaker trips while
    enough others lag from another cause to be critical in the same polls."""
    rng = random.Random(f"campaign-storm:{seed}")
    replicas, ids, spec = _cluster(rng, [3, 3, 4])
    t0 = round(rng.uniform(20.0, 120.0), 1)
    tripped = rng.choice(ids)
    events = [_fault(rng, rng.choice(["breaker_trip", "breaker_trip", "breaker_retrip"]),
                     [tripped], t0)]
    others = [i for i in ids if i != tripped]
    last = t0 + events[0].args.get("duration_seconds", 30.0)
    if rng.random() < 0.25:  # the whole cluster lags: the primary cannot send
        partners = [_fault(rng, "primary_overload", ids, round(t0 + rng.choice([-20.0, 0.0]), 1))]
    else:  # other replicas lag on their own, starting a little before or with the trip
        least = max(1, min(len(others), spec["detection.stormReplicas"] - 1))
        lagging = rng.sample(others, rng.randint(least, len(others)))
        partners = [_fault(rng, rng.choice(["disk_saturation", "stuck_replica", "stuck_replica",
                                            "breaker_trip"]), [rep],
                           round(max(1.0, t0 + rng.choice([-40.0, -20.0, -10.0, 0.0, 10.0])), 1))
                    for rep in lagging]
    partners = [_lasting(f, 180.0) for f in partners]  # overlapping the trip's critical window
    for f in partners:
        last = max(last, f.at + f.args.get("duration_seconds", 30.0))
    events += partners + _people(rng, ids, last)
    events.sort(key=lambda e: e.at)
    return Incident(seed=seed, replicas=replicas, spec=spec, events=tuple(events),
                    horizon=round(last + TAIL, 1), initial_rate=rng.choice([None, None, 5000]))


def _lasting(fault: Event, seconds: float, *, exactly: bool = False) -> Event:
    """The fault lasting at least (or `exactly`) `seconds`; one without an end stays so."""
    if "duration_seconds" not in fault.args:
        return fault
    longer = seconds if exactly else max(fault.args["duration_seconds"], seconds)
    return Event(fault.at, fault.what, {**fault.args, "duration_seconds": longer})


def _fleet(seed: int) -> Incident:
    """Several clusters under one operator (issue 14 item 4, second half): this
    incident's cluster has a healthy admin API and a tripped breaker; 1-3 neighbours
    whose admin API fails (500s, timeouts, resets) lag too and keep trying, all on one
    operator-wide budget."""
    rng = random.Random(f"campaign-fleet:{seed}")
    replicas, ids, spec = _cluster(rng, [2, 3, 4])
    t0 = round(rng.uniform(60.0, 150.0), 1)
    events = [_fault(rng, rng.choice(["breaker_trip", "breaker_trip", "breaker_retrip"]), ids, t0)]
    last = t0 + events[0].args.get("duration_seconds", 30.0)
    # Shorter than TAIL after the trip: three more clusters cost as much as three incidents.
    horizon = round(last + 300.0, 1)
    neighbours = []
    for k in range(rng.choice([1, 2, 3])):
        n_replicas = rng.choice([2, 3])
        n_ids = [f"node{j}" for j in range(2, n_replicas + 2)]
        failure = rng.choice(["http_error", "admin_timeout", "connection_reset"])
        broken = _fault(rng, failure, n_ids, 0.0)
        # the admin API fails for the whole incident, every answer (no 50 % of 500s)
        args = {**broken.args, "duration_seconds": horizon, "node": "node1"}
        if failure == "http_error":
            args.update(probability=1.0, status=500)
        if "endpoint" in args:
            args["endpoint"] = "admin"
        lag = _fault(rng, rng.choice(["breaker_trip", "disk_saturation", "stuck_replica"]), n_ids,
                     round(rng.uniform(10.0, t0), 1))
        neighbours.append(Neighbour(
            name=f"nb{k + 1}", replicas=n_replicas,
            spec={"detection.pollIntervalSeconds": rng.choice([5.0, 10.0, 15.0]),
                  "detection.critical.forSeconds": 0.0,
                  "remediation.maxActionsPerHour": 60},
            events=(Event(0.0, failure, args), _lasting(lag, horizon, exactly=True))))
    events += _people(rng, ids, last)
    events.sort(key=lambda e: e.at)
    return Incident(seed=seed, replicas=replicas, spec=spec, events=tuple(events),
                    horizon=horizon, initial_rate=rng.choice([None, None, 5000]),
                    neighbours=tuple(neighbours), operator_budget=rng.choice([12, 20, 100]))


def raw_spec(overrides: dict[str, Any], replicas: int, admin_url: str = "http://sim/c/inc/node1",
             ) -> dict[str, Any]:
    """The `.spec` the API server would store (CRD defaults filled in) with `overrides`."""
    from controller.domain.spec import spec_to_raw
    raw = spec_to_raw(parse_spec({
        "primary": {"adminUrl": admin_url},
        "auth": {"tokenSecretRef": {"name": "stemedb-admin", "key": "token"}},
        "replicas": [
            {"id": f"node{k}", "agentId": f"agent-node{k}",
             "metricsUrl": f"{admin_url.rsplit('/', 1)[0]}/node{k}",
             "podRef": {"name": f"stemedb-{k - 1}"}}
            for k in range(2, replicas + 2)
        ],
    }))
    for dotted, value in overrides.items():
        node = raw
        *path, last = dotted.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return raw
