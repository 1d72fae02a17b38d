"""One incident run: the real `Reconciler` and `StemeDBClient` (with the real
metrics-text parsing) against the simulator's model, in one process on one fake clock.

Fakes only at our own seams: the HTTP transport under `StemeDBClient` answers from
`stemedb_sim.inprocess` (the simulator's own request handling, minus the socket), and
`SimKube` stands in for `KubeClient` (status as merge-patched by the API server,
Secrets with the real adapter's 30 s cache, Pod annotations recorded). What happened
is kept in a `Trace` for the invariants (invariants.py) and the outcomes (outcomes.py).

An incident with neighbours runs them as more clusters of the same operator: one
`Reconciler`, one client, one operator-wide budget, each cluster polled at its own
interval on the same clock; only the incident's own cluster is traced in full.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from controller.adapters.kube import SecretNotFound
from controller.adapters.operator_metrics import OperatorMetrics
from controller.adapters.stemedb import ClientConfig, StemeDBClient
from controller.domain import EventReason, parse_spec
from controller.domain.budget import ActionBudget
from controller.reconcile import Reconciler
from stemedb_sim import ManualClock, Simulation
from stemedb_sim.inprocess import Answer, InProcessNodes, Outcome
from stemedb_sim.model import ClusterConfig, ClusterModel
from tests.campaign.incidents import LOAD, Event, Incident, raw_spec
from tests.unit.test_reconcile import merge_patch  # the API server's merge patch, one copy

CLUSTER = "inc"
NS, NAME = "db", "inc"
EPOCH = 1_790_000_000.0  # wall time of sim t=0 (the operator's clock)
OPERATOR_UA = "operator"
HUMAN_UA = "human"
SECRET_TTL = 30.0  # KubeClient's Secret cache
SAMPLE_EVERY = 5.0  # truth samples for time-to-recover


@dataclass
class Request:
    """One request the operator's client sent, as the simulator answered it."""

    t: float
    poll: int
    method: str
    node: str
    path: str
    body: Any
    status: int | None  # None: reset; 504: hang
    bad_metrics: bool = False  # a /metrics answer the operator must not act on
    sync_running: dict[str, bool] | None = None  # truth shown by a good primary scrape
    tripped: frozenset[str] | None = None  # replicas whose breaker that scrape shows tripped
    running_sync: str | None = None  # the sync a 409 names


@dataclass
class Poll:
    index: int
    t: float
    requests: list[Request] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    suppressed: list[tuple[str, str]] = field(default_factory=list)  # action, gate
    status: dict[str, Any] = field(default_factory=dict)  # stored status after the poll
    annotations: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lags: dict[str, float] = field(default_factory=dict)  # truth after the poll
    sync: dict[str, tuple[bool, float]] = field(default_factory=dict)  # running, progress
    approvals: str | None = None  # the approve-rebuild annotation seen by this poll
    after_restart: bool = False
    paused: bool = False  # spec.remediation.paused as this poll read it


@dataclass
class Trace:
    incident: Incident
    polls: list[Poll] = field(default_factory=list)
    human_approvals: list[tuple[float, str]] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    rotations: list[tuple[float, bool]] = field(default_factory=list)  # t, Secret lags behind
    operator_syncs: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> replica, t
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    final_rate: float | None = None
    rate_limited_total: float = 0.0
    paused_until: float = 0.0
    neighbours: dict[str, list[Poll]] = field(default_factory=dict)  # name -> its polls
    spends: list[tuple[float, str]] = field(default_factory=list)  # operator-wide budget
    budget: tuple[int, int] = (100, 25)  # its limit and one cluster's fair share


class OperatorCrash(BaseException):
    """The operator process dies here (BaseException: no `except Exception` in the
    operator catches it, as none survives a SIGKILL)."""


class RecordingMetrics(OperatorMetrics):
    """The real metrics object; held actions are also kept for the invariants."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        self.held: list[tuple[str, str]] = []

    def count_suppressed(self, action: str, reason: str) -> None:
        super().count_suppressed(action, reason)
        self.held.append((action, reason))


@dataclass
class RecordingBudget(ActionBudget):
    """The real operator-wide budget; each spend is also kept (time, cluster)."""

    spends: list[tuple[float, str]] = field(default_factory=list)

    def spend(self, now: float, owner: str = "") -> None:
        super().spend(now, owner)
        self.spends.append((now - EPOCH, owner))


class SimTransport(httpx.AsyncBaseTransport):
    """httpx transport into `InProcessNodes`: a reset or a hang becomes the transport
    error a socket would give."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        w = self.world
        raw = request.content
        path = request.url.path
        answer = w.nodes.serve(request.method, path, request.headers.get("authorization"), raw,
                               OPERATOR_UA)
        w.note(request.method, path, raw, answer)
        if (w.crash_armed and w.active is None and request.method == "POST"
                and answer.outcome is Outcome.ANSWER and answer.status < 500):
            w.crash_armed = False
            raise OperatorCrash
        if answer.outcome is Outcome.RESET:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        if answer.outcome is Outcome.HANG:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body,
                              request=request)


class SimKube:
    """KubeClient's surface used by the Reconciler."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.stored: dict[str, Any] = {}  # the incident's cluster
        self.others: dict[str, dict[str, Any]] = {}  # neighbours, by name
        self.secret: dict[str, bytes] = {}
        self.cached: tuple[float, dict[str, bytes]] | None = None
        self.patches = 0

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        # The Reconciler builds a new status dict per patch and never changes it after.
        if name != NAME:
            self.others[name] = merge_patch(self.others.get(name, {}), status)
            return
        self.stored = merge_patch(self.stored, status)
        self.patches += 1

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        now = self.world.now
        if self.cached is None or now - self.cached[0] >= SECRET_TTL:
            self.cached = (now, dict(self.secret))
        data = self.cached[1]
        if key not in data:
            raise SecretNotFound(f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    def forget_secret(self, namespace: str, name: str) -> None:
        self.cached = None

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        w = self.world
        (w.current if w.active is None else w.active.current).annotations.append(
            (name, dict(annotations)))
        if w.crash_armed and w.active is None:
            self.world.crash_armed = False
            raise OperatorCrash


@dataclass
class Other:
    """A neighbour cluster while it runs: its model, its object, its polls."""

    name: str
    model: ClusterModel
    body: dict[str, Any]
    events: list[Event]
    polls: list[Poll] = field(default_factory=list)
    current: Poll = field(default_factory=lambda: Poll(-1, 0.0))
    next_t: float = 0.0


class World:
    def __init__(self, incident: Incident, *, operator: bool = True,
                 budget_share: float | None = None) -> None:
        """`budget_share`: the operator-wide budget's fair share (its default unless
        given; a test turns fairness off to see the fleet invariant catch it)."""
        self.incident = incident
        self.operator = operator
        self.sim = Simulation(ManualClock(), seed=incident.seed, epoch=EPOCH,
                              default_config=ClusterConfig(replicas=incident.replicas, load=LOAD,
                                                           dt=1.0))
        self.model = self.sim.create_cluster(CLUSTER)
        self.model.rate_limit = incident.initial_rate
        self.others = [
            Other(n.name, self.sim.create_cluster(
                n.name, ClusterConfig(replicas=n.replicas, load=LOAD, dt=1.0)),
                {"metadata": {"namespace": NS, "name": n.name, "generation": 1,
                              "annotations": {}},
                 "spec": raw_spec(n.spec, n.replicas, admin_url=f"http://sim/c/{n.name}/node1")},
                sorted(n.events, key=lambda e: e.at))
            for n in incident.neighbours]
        self.active: Other | None = None  # the neighbour being polled; None: the incident's
        self.budget_share = budget_share
        self.token_n = 1
        self.nodes = InProcessNodes(self.sim, token=self.token() if incident.token else None,
                                    seed=incident.seed)
        self.trace = Trace(incident)
        self.current = Poll(-1, 0.0)
        self.kube = SimKube(self)
        self.kube.secret = {"token": self.token().encode()}
        self.body: dict[str, Any] = {
            "metadata": {"namespace": NS, "name": NAME, "generation": 1, "annotations": {}},
            "spec": raw_spec(incident.spec, incident.replicas),
        }
        self.spec = parse_spec(self.body["spec"])
        transport = SimTransport(self)
        self.stemedb = StemeDBClient(ClientConfig(), transport=transport,
                                     sleep=_no_sleep, clock=lambda: self.now,
                                     rng=random.Random(incident.seed))
        # The client builds a TLS context (the system CAs, ~30 ms) before it looks at
        # the injected transport; there is no TLS in process, so skip it.
        self.stemedb._default = transport
        self.metrics = RecordingMetrics()
        self.budget = self._budget()
        self.trace.budget = (self.budget.limit, self.budget.per_owner)
        self.reconciler = self._reconciler()
        self.after_restart = False
        self.human_watching = False
        self.crash_armed = False

    def _budget(self) -> RecordingBudget:
        """A fresh operator-wide budget (a new process), recording into the trace."""
        if self.budget_share is None:
            return RecordingBudget(self.incident.operator_budget, spends=self.trace.spends)
        return RecordingBudget(self.incident.operator_budget, share=self.budget_share,
                               spends=self.trace.spends)

    def token(self) -> str:
        return f"token-{self.incident.seed}-{self.token_n}"

    @property
    def now(self) -> float:
        return EPOCH + self.sim.now()

    def _reconciler(self) -> Reconciler:
        return Reconciler(self.stemedb, self.kube, self.metrics, self.budget,  # type: ignore[arg-type]
                          self._post_event, clock=lambda: self.now)

    def _post_event(self, body: Mapping[str, Any], type: str, reason: EventReason,
                    message: str) -> None:
        name = body.get("metadata", {}).get("name")
        other = next((o for o in self.others if o.name == name), None)
        (self.current if other is None else other.current).events.append(
            (type, reason.value, message))

    # -- what the transport saw -------------------------------------------------------
    def note(self, method: str, path: str, raw: bytes, answer: Answer) -> None:
        cluster, node = path.split("/")[2:4]
        tail = "/" + path.split("/", 4)[4]
        status = answer.status if answer.outcome is Outcome.ANSWER else (
            504 if answer.outcome is Outcome.HANG else None)
        other = next((o for o in self.others if o.name == cluster), None)
        if other is not None:
            other.current.requests.append(Request(self.sim.now(), other.current.index, method,
                                                  node, tail, None, status))
            return
        req = Request(self.sim.now(), self.current.index, method, node, tail,
                      json.loads(raw) if raw else None, status)
        if tail == "/metrics" and node == "node1":
            faulted = any(f.kind.value in ("garbled_metrics", "truncated_metrics")
                          for f in self.model.api_faults("node1", "metrics"))
            req.bad_metrics = status != 200 or faulted
            if not req.bad_metrics:
                req.sync_running = {r: s.sync_running for r, s in self.model.replicas.items()}
                req.tripped = frozenset(r for r, s in self.model.replicas.items()
                                        if s.breaker.tripped)
        if tail == "/v1/admin/cluster/sync" and status in (202, 409) and answer.body:
            answered = json.loads(answer.body)
            if status == 202:
                self.trace.operator_syncs[answered["sync_id"]] = (req.body["replica_id"], req.t)
            else:
                req.running_sync = answered.get("error", {}).get("sync_id")
        self.current.requests.append(req)

    # -- the timeline -----------------------------------------------------------------
    def _apply(self, event: Any) -> None:
        m = self.model
        what, args = event.what, event.args
        if what == "restart":
            self._restart()
        elif what == "crash":
            self.crash_armed = True
        elif what == "approve":
            self.human_watching = True  # approves each request the operator shows from now
        elif what == "approve_bare":
            self._annotate(args["replica"])
        elif what == "pause":
            self._set_paused(True)
            self.pending.append((self.sim.now() + args["seconds"], "unpause"))
        elif what == "unpause":
            self._set_paused(False)
        elif what == "human_sync":
            self.nodes.serve("POST", f"/c/{CLUSTER}/node1/v1/admin/cluster/sync",
                             f"Bearer {self.token()}",
                             json.dumps({"replica_id": args["replica"], "force": True}).encode(),
                             HUMAN_UA)
        elif what == "rotate_token":
            self.trace.rotations.append((self.sim.now(), bool(args.get("secret_delay"))))
            self.token_n += 1
            self.nodes.token = self.token()
            if args.get("secret_delay"):
                self.pending.append((self.sim.now() + args["secret_delay"], "secret"))
            else:
                self.kube.secret = {"token": self.token().encode()}
        elif what == "secret":
            self.kube.secret = {"token": self.token().encode()}
        else:
            m.add_fault(dict(args))

    def _restart(self) -> None:
        """A new operator process: memory comes back from the stored status only."""
        self.trace.restarts.append(self.sim.now())
        if self.operator:
            self.budget = self._budget()
            self.reconciler = self._reconciler()
            if self.kube.stored:
                self.body["status"] = self.kube.stored
            for other in self.others:
                if other.name in self.kube.others:
                    other.body["status"] = self.kube.others[other.name]
            self.after_restart = True

    def _annotate(self, value: str) -> None:
        self.body["metadata"]["annotations"]["stemedb.io/approve-rebuild"] = value
        self.trace.human_approvals.append((self.sim.now(), value))

    def _set_paused(self, paused: bool) -> None:
        self.body["spec"] = copy.deepcopy(self.body["spec"])
        self.body["spec"]["remediation"]["paused"] = paused
        self.body["metadata"]["generation"] += 1
        if paused:
            self.trace.paused_until = float("inf")
        else:
            self.trace.paused_until = self.sim.now()

    async def run(self) -> Trace:
        inc = self.incident
        self.pending: list[tuple[float, str]] = []
        events = list(inc.events)
        t = 0.0
        next_sample = 0.0
        index = 0
        poll_interval = self.spec.detection.poll_interval_seconds
        while t <= inc.horizon:
            if self.operator:
                await self._poll_others(t)
            self.sim.advance_to(t)
            while next_sample <= t:
                self.trace.samples.append(
                    (next_sample, {r: s.lag for r, s in self.model.replicas.items()}))
                next_sample += SAMPLE_EVERY
            due = [e for e in events if e.at <= t]
            events = [e for e in events if e.at > t]
            for e in due:
                self._apply(e)
            for at, what in [p for p in self.pending if p[0] <= t]:
                self.pending.remove((at, what))
                self._apply(_Named(what))
            if not self.operator:
                t += SAMPLE_EVERY
                continue
            self.current = Poll(index, t, after_restart=self.after_restart,
                                paused=bool(self.body["spec"]["remediation"].get("paused")))
            self.current.approvals = self.body["metadata"]["annotations"].get(
                "stemedb.io/approve-rebuild")
            self.after_restart = False
            self.metrics.held = []
            try:
                delay = await self.reconciler.poll(self.body)
            except OperatorCrash:
                self._restart()  # the new process polls after at most an interval
                delay = poll_interval
            self.current.suppressed = self.metrics.held
            self.current.status = self.kube.stored  # replaced (not mutated) by each patch
            self.current.lags = {r: s.lag for r, s in self.model.replicas.items()}
            self.current.sync = {r: (s.sync_running, s.sync_progress)
                                 for r, s in self.model.replicas.items()}
            self.trace.polls.append(self.current)
            if self.kube.stored:
                self.body["status"] = self.kube.stored  # what the watch delivers
            if self.human_watching:
                shown = _shown_request(self.kube.stored)
                if shown is not None and shown != self.body["metadata"]["annotations"].get(
                        "stemedb.io/approve-rebuild"):
                    self._annotate(shown)
            index += 1
            t += max(delay, 0.5)
        self.trace.neighbours = {o.name: o.polls for o in self.others}
        self.trace.final_rate = self.model.rate_limit
        self.trace.rate_limited_total = self.model.rate_limited_total
        await self.stemedb.aclose()
        return self.trace


    async def _poll_others(self, until: float) -> None:
        """Poll each neighbour due by `until`, in time order, at its own time."""
        while self.others:
            other = min(self.others, key=lambda o: o.next_t)
            if other.next_t > until:
                return
            self.sim.advance_to(max(other.next_t, self.sim.now()))
            while other.events and other.events[0].at <= self.sim.now():
                other.model.add_fault(dict(other.events.pop(0).args))
            other.current = Poll(len(other.polls), self.sim.now())
            self.active = other
            self.metrics.held = []
            try:
                delay = await self.reconciler.poll(other.body)
            finally:
                self.active = None
            other.current.suppressed = self.metrics.held
            other.current.status = self.kube.others.get(other.name, {})
            other.polls.append(other.current)
            if other.current.status:
                other.body["status"] = other.current.status
            other.next_t += max(delay, 0.5)


@dataclass(frozen=True)
class _Named:
    what: str
    args: dict[str, Any] = field(default_factory=dict)


def _shown_request(status: Mapping[str, Any]) -> str | None:
    """The approval value the operator shows a human (condition message), if any."""
    for c in status.get("conditions") or []:
        msg = str(c.get("message", ""))
        marker = "stemedb.io/approve-rebuild="
        if marker in msg:
            return msg.split(marker, 1)[1].split()[0].rstrip(".;,)")
    return None


async def _no_sleep(seconds: float) -> None:
    return None


def run(incident: Incident, *, operator: bool = True,
        budget_share: float | None = None) -> Trace:
    return asyncio.run(World(incident, operator=operator, budget_share=budget_share).run())
