"""`Reconciler` (one poll: observe, decide, write intent, act, record, report) against
fakes at our own adapter seams only: a fake StemeDBClient and a fake KubeClient with the
same async methods, recording every call in one shared log (so call order across the two
is visible), a real OperatorMetrics on its own registry, a list-recording event poster and
an injected clock.

The fake KubeClient applies each status patch as the API server does (a JSON merge patch,
where null deletes a key), and by default the next poll sees that stored status, as the
watch would deliver it. Specs are raw `.spec` dicts in the CRD-defaulted form.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.adapters.destinations import Destinations
from controller.adapters.kube import KubeError, SecretNotFound
from controller.adapters.notify import Pager
from controller.adapters.operator_metrics import OperatorMetrics
from controller.adapters.stemedb import (
    NO_CREDENTIALS,
    BreakerReset,
    Credentials,
    NodeScrape,
    PrimaryScrape,
    RateLimitReading,
    ReplicaScrape,
    SyncAlreadyRunning,
    SyncStarted,
    TrippedBreaker,
)
from controller.adapters.stemedb_errors import (
    MetricsParseError,
    StemeDBBadResponse,
    StemeDBDestinationDenied,
    StemeDBError,
    StemeDBHTTPError,
    StemeDBTimeout,
    StemeDBTLSError,
    StemeDBUnauthorized,
    StemeDBUnreachable,
)
from controller.domain import ActionKind, EventReason, Memory, parse_spec
from controller.domain.budget import ActionBudget
from controller.domain.destinations import DestinationPolicy, parse_networks
from controller.domain.memory import ThrottleMemory, history_from_json
from controller.domain.sharding import SHARD_FIELDS
from controller.domain.spec import spec_to_raw
from controller.reconcile import (
    INVALID_SPEC_RETRY_SECONDS,
    REBUILD_ANNOTATION,
    REBUILD_REASON_ANNOTATION,
    STATUS_READS_IN_FLIGHT,
    ClusterKey,
    Reconciler,
    _pruned,
)
from tests.unit.domain._domain_fixtures import set_path

T0 = 1_700_000_000.0
NS, NAME = "db", "demo"
KEY = ClusterKey(NS, NAME)
ADMIN = "http://stemedb-0:18180"
TOKEN = "s3cr3t-admin-token-0123456789"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
ADMIN_METHODS = {"reset_breaker", "set_rate_limit", "force_sync", "annotate_pod"}
LAG = "stemedb_operator_replica_lag_seconds"


# --------------------------------------------------------------------------- specs and scrapes


def raw_spec(n_replicas: int = 2, **overrides: Any) -> dict[str, Any]:
    """A `.spec` as the API server delivers it (every CRD default filled in), with short
    detection windows so one poll above a threshold starts an episode. Overrides use
    `__` for nesting: `remediation__mode="DryRun"`."""
    raw = spec_to_raw(parse_spec({
        "primary": {"adminUrl": ADMIN},
        "replicas": [
            {"id": f"node{k}", "agentId": f"agent-node{k}",
             "metricsUrl": f"http://stemedb-{k - 1}:18180"}
            for k in range(2, n_replicas + 2)
        ],
    }))
    raw["detection"]["warning"] = {"lagSeconds": 5.0, "forSeconds": 0.0}
    raw["detection"]["critical"] = {"lagSeconds": 10.0, "forSeconds": 0.0}
    for dotted, value in overrides.items():
        set_path(raw, dotted.split("__"), value)
    return raw


def with_token(raw: dict[str, Any], ca: bool = False) -> dict[str, Any]:
    raw["auth"] = {"tokenSecretRef": {"name": "stemedb-admin", "key": "token"}}
    if ca:
        raw["auth"]["caSecretRef"] = {"name": "stemedb-ca", "key": "ca.crt"}
    return raw


def only_rebuild_left(raw: dict[str, Any], pod: bool = True) -> dict[str, Any]:
    """Breaker, throttle and sync disabled; automatic rebuild is the first step."""
    rem = raw["remediation"]
    rem["breakerReset"]["enabled"] = False
    rem["throttle"]["enabled"] = False
    rem["merkleSync"]["enabled"] = False
    rem["rebuild"]["policy"] = "Automatic"
    if pod:
        raw["replicas"][0]["podRef"] = {"name": "stemedb-1"}
    return raw


def sync_first(raw: dict[str, Any]) -> dict[str, Any]:
    raw["remediation"]["breakerReset"]["enabled"] = False
    raw["remediation"]["throttle"]["enabled"] = False
    return raw


def primary(
    lags: Mapping[str, float | None], *, rate: float | None = None, reported: bool = True
) -> PrimaryScrape:
    return PrimaryScrape(
        replicas={
            rid: ReplicaScrape(rid, lag_seconds=lag, up=True, sync_running=False,
                               sync_errors_total=0.0, sync_corruption_total=0.0,
                               restarts_total=0.0)
            for rid, lag in lags.items()
        },
        assertions_indexed_total=10_000.0,
        rate_limit=rate,
        rate_limit_reported=reported,
    )


HEALTHY = {"node2": 0.4, "node3": 0.6}
NODE2_CRITICAL = {"node2": 20.0, "node3": 0.5}


# --------------------------------------------------------------------------- fakes


@dataclass(frozen=True)
class Call:
    who: str  # "stemedb" | "kube"
    method: str
    args: tuple[Any, ...]
    creds: Credentials | None = None


@dataclass(frozen=True)
class Event:
    name: str
    type: str
    reason: str
    message: str


class FakeStemeDB:
    """StemeDBClient's async surface. Answers come from attributes; `errors[method]`
    makes that method raise."""

    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls
        self.scrape: PrimaryScrape = primary(HEALTHY)
        self.tripped: list[str] = []
        self.rate = RateLimitReading(None)
        self.node = NodeScrape(assertions_indexed_total=9_000.0, disk_io_utilization=0.9)
        self.was_tripped: bool | None = True
        self.sync: SyncStarted | SyncAlreadyRunning = SyncStarted("node2", "sync-42")
        self.errors: dict[str, Exception] = {}

    def _call(self, method: str, *args: Any, creds: Credentials) -> None:
        self.calls.append(Call("stemedb", method, args, creds))
        if method in self.errors:
            raise self.errors[method]

    async def scrape_primary(self, base: str, creds: Credentials = NO_CREDENTIALS
                             ) -> PrimaryScrape:
        self._call("scrape_primary", base, creds=creds)
        return self.scrape

    async def scrape_node(self, base: str, creds: Credentials = NO_CREDENTIALS) -> NodeScrape:
        self._call("scrape_node", base, creds=creds)
        return self.node

    async def get_rate_limit(
        self, base: str, creds: Credentials = NO_CREDENTIALS
    ) -> RateLimitReading:
        self._call("get_rate_limit", base, creds=creds)
        return self.rate

    async def set_rate_limit(self, base: str, rate: float | None,
                             creds: Credentials = NO_CREDENTIALS) -> RateLimitReading:
        self._call("set_rate_limit", base, rate, creds=creds)
        self.rate = RateLimitReading(rate)
        if self.scrape.rate_limit_reported:  # the next scrape shows the new limit
            self.scrape = dataclasses.replace(self.scrape, rate_limit=rate)
        return self.rate

    async def tripped_breakers(self, base: str, creds: Credentials = NO_CREDENTIALS
                               ) -> list[TrippedBreaker]:
        self._call("tripped_breakers", base, creds=creds)
        return [TrippedBreaker(a, a.removeprefix("agent-")) for a in self.tripped]

    async def reset_breaker(self, base: str, agent_id: str,
                            creds: Credentials = NO_CREDENTIALS) -> BreakerReset:
        self._call("reset_breaker", base, agent_id, creds=creds)
        return BreakerReset(agent_id, None, self.was_tripped)

    async def force_sync(self, base: str, replica_id: str, creds: Credentials = NO_CREDENTIALS
                         ) -> SyncStarted | SyncAlreadyRunning:
        self._call("force_sync", base, replica_id, creds=creds)
        return self.sync


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a status merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeKube:
    """KubeClient's async surface: status stored as merge-patched, Secrets from a dict."""

    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        # Raised by the next patches, in order (None: that patch succeeds).
        self.patch_errors: list[KubeError | None] = []
        self.get_errors: list[KubeError | None] = []  # the same, for get_cluster
        self.annotate_error: KubeError | None = None
        # With `caching`, a Secret read once is served from here until forgotten,
        # as KubeClient's SecretCache does within its TTL.
        self.caching = False
        self.cache: dict[tuple[str, str], dict[str, bytes]] = {}

    def forget_secret(self, namespace: str, name: str) -> None:
        self.calls.append(Call("kube", "forget_secret", (namespace, name)))
        self.cache.pop((namespace, name), None)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls.append(Call("kube", "patch_status", (namespace, name, copy.deepcopy(status))))
        error = self.patch_errors.pop(0) if self.patch_errors else None
        if error is not None:
            raise error
        key = (namespace, name)
        self.stored[key] = merge_patch(self.stored.get(key, {}), copy.deepcopy(status))

    async def get_cluster(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(Call("kube", "get_cluster", (namespace, name)))
        error = self.get_errors.pop(0) if self.get_errors else None
        if error is not None:
            raise error
        return {"metadata": {"namespace": namespace, "name": name},
                "status": copy.deepcopy(self.stored.get((namespace, name), {}))}

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        self.calls.append(Call("kube", "read_secret_key", (namespace, name, key)))
        data = self.cache.get((namespace, name)) or self.secrets.get((namespace, name))
        if self.caching and data is not None:
            self.cache[(namespace, name)] = data
        if data is None:
            raise SecretNotFound(f"Secret {namespace}/{name} not found", status=404)
        if key not in data:
            raise SecretNotFound(f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.calls.append(Call("kube", "annotate_pod", (namespace, name, dict(annotations))))
        if self.annotate_error is not None:
            raise self.annotate_error


class World:
    """One Reconciler with its fakes, and the StemeDBCluster objects it polls."""

    def __init__(self, spec: dict[str, Any] | None = None, *, budget: int = 1000) -> None:
        self.calls: list[Call] = []
        self.stemedb = FakeStemeDB(self.calls)
        self.kube = FakeKube(self.calls)
        self.kube.secrets[(NS, "stemedb-admin")] = {"token": f"{TOKEN}\n".encode()}
        self.kube.secrets[(NS, "stemedb-ca")] = {"ca.crt": CA_PEM}
        self.metrics = OperatorMetrics(CollectorRegistry())
        self.budget = ActionBudget(budget)
        self.events: list[Event] = []
        self.now = T0
        self.reconciler = self.new_reconciler()
        self.body = self.new_body(NAME, spec if spec is not None else raw_spec())

    def new_reconciler(self) -> Reconciler:
        return Reconciler(self.stemedb, self.kube, self.metrics, self.budget,  # type: ignore[arg-type]
                          self.post_event, clock=lambda: self.now)

    @staticmethod
    def new_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"namespace": NS, "name": name, "generation": 3}, "spec": spec}

    def post_event(
        self, body: Mapping[str, Any], type: str, reason: EventReason, message: str
    ) -> None:
        # Every Event reason is an EventReason member (documented with its meaning),
        # never a string made up at the call site.
        assert isinstance(reason, EventReason), f"raw Event reason {reason!r}"
        self.events.append(Event(body["metadata"]["name"], type, reason.value, message))

    async def poll(self, *, advance: float = 10.0, deliver: bool = True,
                   body: dict[str, Any] | None = None) -> float:
        body = self.body if body is None else body
        delay = await self.reconciler.poll(body)
        self.now += advance
        if deliver:
            self.deliver(body)
        return delay

    def deliver(self, body: dict[str, Any]) -> None:
        """What the watch hands the next poll: the stored (merge-patched) status, a
        new copy as Kopf parses each event, shown to the reconciler as the operator's
        event handler does."""
        stored = self.kube.stored.get((NS, body["metadata"]["name"]))
        if stored is not None:
            body["status"] = copy.deepcopy(stored)
            self.reconciler.seen(ClusterKey.of(body), body["status"])

    # -- reading what happened -------------------------------------------------
    def patches(self) -> list[dict[str, Any]]:
        return [c.args[2] for c in self.calls if c.method == "patch_status"]

    def admin_calls(self) -> list[Call]:
        return [c for c in self.calls if c.method in ADMIN_METHODS]

    def methods(self, who: str | None = None) -> list[str]:
        return [c.method for c in self.calls if who is None or c.who == who]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def sample(self, metric: str, /, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(metric, labels)


def conditions(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def memory_of(status: Mapping[str, Any]) -> Memory:
    """The memory as the operator reads it back: status.memory plus status.history."""
    return dataclasses.replace(Memory.from_text(status["memory"]),
                               history=history_from_json(status.get("history")))


# --------------------------------------------------------------------------- (1) healthy


@pytest.mark.parametrize("deliver", [
    pytest.param(True, id="the watch has delivered the first write"),
    pytest.param(False, id="the watch still shows the status from before the write"),
])
async def test_a_healthy_cluster_is_written_once_and_then_left_alone(deliver: bool) -> None:
    world = World()

    first_delay = await world.poll(deliver=deliver)
    second_delay = await world.poll(deliver=deliver)

    assert len(world.patches()) == 1
    cond = conditions(world.patches()[0])
    assert cond["Ready"]["status"] == "True"
    assert cond["MetricsAvailable"]["status"] == "True"
    assert cond["RemediationAllowed"]["reason"] == "Allowed"
    assert world.patches()[0]["observedGeneration"] == 3
    assert world.events == []
    assert world.admin_calls() == []
    assert world.methods("stemedb") == ["scrape_primary", "scrape_primary"]
    assert first_delay == second_delay == 10.0


async def test_a_restarted_operator_writes_nothing_for_an_unchanged_healthy_cluster() -> None:
    world = World()
    await world.poll()
    assert len(world.patches()) == 1

    world.reconciler = world.new_reconciler()  # a new process: nothing remembered
    await world.poll()

    assert len(world.patches()) == 1
    assert world.events == []


# --------------------------------------------------------------------------- (2) failed scrape

SCRAPE_ERRORS = [
    pytest.param(StemeDBUnreachable("GET /metrics: connection refused"),
                 id="the primary refuses the connection"),
    pytest.param(StemeDBTimeout("GET /metrics: read timeout after 2.5 s", phase="read",
                                may_have_applied=True),
                 id="the scrape times out"),
    pytest.param(StemeDBTLSError("GET /metrics: certificate verify failed"),
                 id="the TLS handshake fails"),
    pytest.param(StemeDBHTTPError(503, "unavailable", "warming up"),
                 id="the primary answers 503"),
    pytest.param(StemeDBUnauthorized(401, "unauthorized", "bad token"),
                 id="the token is rejected"),
    pytest.param(StemeDBBadResponse("GET /metrics: body is not UTF-8"),
                 id="the body is not what the contract says"),
    pytest.param(MetricsParseError("GET /metrics: line 3: bad sample", line=3),
                 id="the metrics text is garbled"),
    pytest.param(StemeDBDestinationDenied("GET /metrics: destination denied (169.254.169.254 "
                                          "is in 169.254.0.0/16)"),
                 id="the operator's destination policy denies the address"),
]


def _subclasses(cls: type) -> set[type]:
    out = set(cls.__subclasses__())
    for sub in list(out):
        out |= _subclasses(sub)
    return out


def test_every_stemedb_error_has_a_failed_scrape_case() -> None:
    covered = {type(p.values[0]) for p in SCRAPE_ERRORS}
    assert covered == _subclasses(StemeDBError)


@pytest.mark.parametrize("error", SCRAPE_ERRORS)
async def test_a_failed_scrape_reports_metrics_unavailable_and_acts_on_nothing(
    error: StemeDBError,
) -> None:
    world = World()
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]  # would be reset, had the scrape worked
    world.stemedb.errors["scrape_primary"] = error

    await world.poll()

    assert world.admin_calls() == []
    assert world.methods("stemedb") == ["scrape_primary"]
    [status] = world.patches()
    cond = conditions(status)
    assert cond["MetricsAvailable"]["status"] == "False"
    denied = isinstance(error, StemeDBDestinationDenied)
    assert cond["MetricsAvailable"]["reason"] == (
        "DestinationDenied" if denied else "PrimaryScrapeFailed")
    # The message names the field whose value was used, then the problem.
    assert f"spec.primary.adminUrl: {error}" in cond["MetricsAvailable"]["message"]
    assert cond["RemediationAllowed"]["status"] == "False"
    assert cond["Ready"]["status"] == "False"
    assert [(e.type, e.reason) for e in world.events] == [("Warning", "MetricsUnavailable")]
    assert world.sample(LAG, namespace=NS, name=NAME, replica="node2") is None

    # Control: the same cluster with a readable primary does get its breaker reset.
    del world.stemedb.errors["scrape_primary"]
    await world.poll()
    assert [c.method for c in world.admin_calls()] == ["reset_breaker"]


async def test_a_replica_missing_from_the_primary_metrics_holds_every_action() -> None:
    world = World()
    world.stemedb.scrape = primary({"node2": 20.0})  # node3 has no lag series
    world.stemedb.tripped = ["agent-node2"]

    await world.poll()

    assert world.admin_calls() == []
    available = conditions(world.patches()[0])["MetricsAvailable"]
    assert (available["status"], available["reason"]) == ("False", "ReplicaLagMissing")
    assert "node3" in available["message"]
    assert world.sample(LAG, namespace=NS, name=NAME, replica="node2") == 20.0


# --------------------------------------------------------------------------- (3) intent first

ACTIONS = [
    pytest.param(raw_spec, ["agent-node2"], ActionKind.RESET_BREAKER, "reset_breaker",
                 id="a tripped breaker is reset"),
    pytest.param(raw_spec, [], ActionKind.SET_RATE_LIMIT, "set_rate_limit",
                 id="an untripped breaker hands over to a throttle"),
    pytest.param(lambda: sync_first(raw_spec()), [], ActionKind.FORCE_SYNC, "force_sync",
                 id="with breaker and throttle disabled a Merkle sync is forced"),
    pytest.param(lambda: only_rebuild_left(raw_spec()), [], ActionKind.MARK_REBUILD,
                 "annotate_pod", id="with only rebuild left the replica's Pod is annotated"),
]


@pytest.mark.parametrize(("make_spec", "tripped", "kind", "method"), ACTIONS)
async def test_the_intent_is_written_before_the_admin_call(
    make_spec: Callable[[], dict[str, Any]], tripped: list[str], kind: ActionKind, method: str,
) -> None:
    world = World(make_spec())
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = tripped

    await world.poll()

    order = [c.method for c in world.calls if c.method in {"patch_status", method}]
    assert order == ["patch_status", method, "patch_status"]
    intent_status, final_status = world.patches()
    [intent] = memory_of(intent_status).pending
    assert intent.kind is kind
    assert memory_of(final_status).pending == ()
    [outcome] = [h for h in memory_of(final_status).history if h.key == intent.key]
    assert outcome.outcome == "Ok", "one history entry per action, with its outcome"
    assert world.sample("stemedb_operator_actions_total", action=kind.value,
                        result="success") == 1.0


@pytest.mark.parametrize(("make_spec", "tripped", "kind", "method"), ACTIONS)
async def test_no_admin_call_is_made_when_the_intent_cannot_be_written(
    make_spec: Callable[[], dict[str, Any]], tripped: list[str], kind: ActionKind, method: str,
) -> None:
    world = World(make_spec())
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = tripped
    world.kube.patch_errors.append(KubeError("patching status of db/demo: HTTP 409 Conflict",
                                             status=409))

    delay = await world.poll()

    assert world.admin_calls() == []
    assert world.methods("kube") == ["patch_status"]
    assert world.budget.remaining(world.now) == 1000
    assert delay == 10.0
    # The next poll, with the API server back, decides afresh and acts.
    await world.poll()
    assert [c.method for c in world.admin_calls()] == [method]


@pytest.mark.parametrize(("make_spec", "tripped", "kind", "method"), ACTIONS)
async def test_a_poll_whose_body_lags_the_last_write_does_not_repeat_the_action(
    make_spec: Callable[[], dict[str, Any]], tripped: list[str], kind: ActionKind, method: str,
) -> None:
    world = World(make_spec())
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = tripped
    await world.poll(deliver=False, advance=2.0)

    await world.poll(deliver=False)  # the watch has not delivered the write yet

    assert [c.method for c in world.admin_calls()] == [method]
    assert [p.kind for p in memory_of(world.patches()[0]).pending] == [kind]


# Another leader acted while this replica was cut off; then this one leads again.
TAKEOVERS = [
    pytest.param(raw_spec, ["agent-node2"], "reset_breaker", True,
                 id="the other leader reset the breaker"),
    pytest.param(lambda: raw_spec(remediation__breakerReset__enabled=False), [],
                 "set_rate_limit", True, id="the other leader throttled ingestion"),
    pytest.param(raw_spec, ["agent-node2"], "reset_breaker", False,
                 id="a breaker reset the watch has not delivered yet"),
    pytest.param(lambda: raw_spec(remediation__breakerReset__enabled=False), [],
                 "set_rate_limit", False, id="a throttle the watch has not delivered yet"),
]


@pytest.mark.parametrize(("make_spec", "tripped", "method", "delivered"), TAKEOVERS)
async def test_a_replica_leading_again_goes_on_from_what_the_leader_in_between_wrote(
    make_spec: Callable[[], dict[str, Any]], tripped: list[str], method: str,
    delivered: bool,
) -> None:
    world = World(make_spec())
    await world.poll()  # replica A leads: a healthy status, written by A
    replica_a = world.reconciler
    replica_a.took_over()
    world.reconciler = world.new_reconciler()  # A cut off; replica B leads
    world.reconciler.took_over()
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = tripped
    await world.poll(advance=1.0, deliver=delivered)  # B acts
    assert world.methods("stemedb").count(method) == 1

    world.reconciler = replica_a  # B gone, A leads again
    replica_a.took_over()
    await world.poll(advance=1.0)

    assert world.methods("stemedb").count(method) == 1, world.methods("stemedb")
    assert memory_of(world.kube.stored[(NS, NAME)]).replica("node2").step.value != "None"


@pytest.mark.parametrize(("make_spec", "tripped", "method", "delivered"), TAKEOVERS)
async def test_a_shard_taking_a_cluster_back_goes_on_from_what_the_other_shard_wrote(
    make_spec: Callable[[], dict[str, Any]], tripped: list[str], method: str,
    delivered: bool,
) -> None:
    """No write proves a shard's copy of a cluster current when the ring gives the
    cluster to it (no claim with a resourceVersion): its first poll reads the status,
    as a new leader's does."""
    world = World(make_spec())
    replica_a = world.reconciler
    replica_a.acquired(KEY)
    await world.poll()  # shard A acts: a healthy status, written by A
    replica_a.release(KEY)  # the ring moves the cluster to shard B
    world.reconciler = world.new_reconciler()
    world.reconciler.acquired(KEY)
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = tripped
    await world.poll(advance=1.0, deliver=delivered)  # B acts
    assert world.methods("stemedb").count(method) == 1

    world.reconciler = replica_a  # and back to A
    replica_a.acquired(KEY)
    await world.poll(advance=1.0)

    assert world.methods("stemedb").count(method) == 1, world.methods("stemedb")
    assert memory_of(world.kube.stored[(NS, NAME)]).replica("node2").step.value != "None"


async def test_status_reads_after_a_takeover_queue_in_the_reconciler_not_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A takeover's first polls each read a status; more at once than the client has
    connections would wait in its pool, where their timeout runs (at 6,000 clusters
    hundreds timed out, each costing its cluster a poll)."""
    world = World()
    world.reconciler.took_over()
    running, most = 0, 0
    gate = asyncio.Event()

    async def get_cluster(namespace: str, name: str) -> dict[str, Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1
        return {"status": {}}

    monkeypatch.setattr(world.kube, "get_cluster", get_cluster)
    reads = [asyncio.create_task(world.reconciler._read_status_once_per_term(
        ClusterKey(NS, f"c{i}"), {"status": {}})) for i in range(3 * STATUS_READS_IN_FLIGHT)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert running == STATUS_READS_IN_FLIGHT
    gate.set()
    assert all(await asyncio.gather(*reads))
    assert most == STATUS_READS_IN_FLIGHT


async def test_a_status_unreadable_after_taking_over_holds_every_action() -> None:
    world = World()
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]
    world.reconciler.took_over()
    world.kube.get_errors = [KubeError("reading StemeDBCluster db/demo: HTTP 503", status=503)]

    await world.poll()
    assert world.methods() == ["get_cluster"]

    await world.poll()  # read on the next poll, then acted on
    assert world.methods("kube")[1] == "get_cluster"
    assert [c.method for c in world.admin_calls()] == ["reset_breaker"]
    await world.poll()
    assert world.methods("kube").count("get_cluster") == 2, "once per term"


# --------------------------------------------------------------------------- (4) failed action

FAILURES = [
    pytest.param(raw_spec, ["agent-node2"], "reset_breaker",
                 StemeDBUnauthorized(403, "forbidden", "missing permission admin:breakers"),
                 "ResetBreaker on node2 failed: spec.primary.adminUrl: HTTP 403 forbidden",
                 id="a breaker reset is refused"),
    pytest.param(raw_spec, [], "set_rate_limit",
                 StemeDBHTTPError(503, "unavailable", "rate limiter busy"),
                 "SetRateLimit failed: spec.primary.adminUrl: HTTP 503 unavailable",
                 id="a throttle call answers 503"),
    pytest.param(lambda: sync_first(raw_spec()), [], "force_sync",
                 StemeDBTimeout("POST /v1/admin/cluster/sync: read timeout", phase="read",
                                may_have_applied=True),
                 "ForceSync on node2 failed: spec.primary.adminUrl: POST /v1/admin/cluster/sync: "
                 "read timeout",
                 id="a forced sync times out"),
    pytest.param(lambda: only_rebuild_left(raw_spec()), [], "annotate_pod",
                 KubeError("annotating Pod db/stemedb-1: HTTP 403 Forbidden", status=403),
                 "MarkRebuild on node2 failed: spec.replicas[0].podRef.name: annotating Pod "
                 "db/stemedb-1: HTTP 403",
                 id="the Pod cannot be annotated"),
]


@pytest.mark.parametrize(("make_spec", "tripped", "method", "error", "expected"), FAILURES)
async def test_a_failed_admin_call_posts_action_failed_and_is_remembered(
    make_spec: Callable[[], dict[str, Any]], tripped: list[str], method: str,
    error: Exception, expected: str,
) -> None:
    world = World(with_token(make_spec()))
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = tripped
    if method == "annotate_pod":
        assert isinstance(error, KubeError)
        world.kube.annotate_error = error
    else:
        world.stemedb.errors[method] = error

    await world.poll()

    [failed] = [e for e in world.events if e.reason == "ActionFailed"]
    assert failed.type == "Warning"
    assert failed.message.startswith(expected)
    everything_written = json.dumps([world.patches(), [e.message for e in world.events]])
    assert TOKEN not in everything_written
    memory = memory_of(world.patches()[-1])
    assert memory.pending == ()
    [last] = [h for h in memory.history if h.key is not None]  # the action, once
    assert (last.reason, last.outcome) == ("ActionFailed", "Failed")
    kind = last.kind
    assert world.sample("stemedb_operator_actions_total", action=kind, result="failed") == 1.0
    if kind == ActionKind.SET_RATE_LIMIT.value:
        assert memory.throttle.reissue is True  # the limit is set again next poll
    elif kind == ActionKind.MARK_REBUILD.value:
        assert memory.replica("node2").rebuild_marked is False  # type: ignore[union-attr]
    else:
        assert memory.replica("node2").last_failed_kind == kind  # type: ignore[union-attr]


@pytest.mark.parametrize(("make_spec", "setup", "detail", "annotated"), [
    pytest.param(raw_spec, lambda w: setattr(w.stemedb, "was_tripped", False),
                 "ResetBreaker on node2 succeeded: breaker was no longer tripped", False,
                 id="a breaker that was no longer tripped says so"),
    pytest.param(lambda: sync_first(raw_spec()), lambda w: None,
                 "ForceSync on node2 succeeded: sync sync-42", False,
                 id="a started sync names its sync id"),
    pytest.param(lambda: sync_first(raw_spec()),
                 lambda w: setattr(w.stemedb, "sync", SyncAlreadyRunning("node2", None)),
                 "ForceSync on node2 succeeded", False,
                 id="a sync already running counts as started"),
    pytest.param(lambda: only_rebuild_left(raw_spec()), lambda w: None,
                 "MarkRebuild on node2 succeeded: Pod stemedb-1 annotated", True,
                 id="a rebuild mark annotates the Pod"),
    pytest.param(lambda: only_rebuild_left(raw_spec(), pod=False), lambda w: None,
                 "MarkRebuild on node2 succeeded: no podRef; marked in status only", False,
                 id="a rebuild mark without podRef lives in status only"),
])
async def test_the_outcome_of_each_admin_call_is_in_the_history(
    make_spec: Callable[[], dict[str, Any]], setup: Callable[[World], None], detail: str,
    annotated: bool,
) -> None:
    world = World(make_spec())
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]
    setup(world)

    await world.poll()

    [action] = [h for h in memory_of(world.patches()[-1]).history if h.key is not None]
    assert action.message.endswith(f": {detail}"), "the action, then how it ended"
    annotations = [c.args for c in world.calls if c.method == "annotate_pod"]
    if annotated:
        [(ns, pod, values)] = annotations
        assert (ns, pod, values[REBUILD_ANNOTATION]) == (NS, "stemedb-1", "true")
        assert values[REBUILD_REASON_ANNOTATION].startswith("Mark node2 for rebuild")
    else:
        assert annotations == []


# --------------------------------------------------------------------------- (5) credentials


async def test_the_token_and_ca_from_secrets_go_with_every_stemedb_call() -> None:
    world = World(with_token(raw_spec(), ca=True))
    world.stemedb.scrape = primary(NODE2_CRITICAL, reported=False)

    await world.poll()

    reads = [c.args for c in world.calls if c.method == "read_secret_key"]
    assert reads == [(NS, "stemedb-admin", "token"), (NS, "stemedb-ca", "ca.crt")]
    stemedb_calls = [c for c in world.calls if c.who == "stemedb"]
    assert {c.method for c in stemedb_calls} == {
        "scrape_primary", "get_rate_limit", "tripped_breakers", "scrape_node", "set_rate_limit"}
    expected = Credentials(token=TOKEN, ca_pem=CA_PEM)  # the trailing newline stripped
    assert all(c.creds == expected for c in stemedb_calls)


@pytest.mark.parametrize(("prepare", "missing"), [
    pytest.param(lambda w: w.kube.secrets.pop((NS, "stemedb-admin")),
                 "Secret db/stemedb-admin not found", id="the token Secret does not exist"),
    pytest.param(lambda w: w.kube.secrets.__setitem__((NS, "stemedb-admin"), {"tkn": b"x"}),
                 "Secret db/stemedb-admin has no key 'token'",
                 id="the token Secret lacks the key"),
    pytest.param(lambda w: w.kube.secrets.pop((NS, "stemedb-ca")),
                 "Secret db/stemedb-ca not found", id="the CA Secret does not exist"),
])
async def test_a_missing_secret_is_a_failed_observation_and_no_action(
    prepare: Callable[[World], None], missing: str,
) -> None:
    world = World(with_token(raw_spec(), ca=True))
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]
    prepare(world)

    await world.poll()

    assert [c for c in world.calls if c.who == "stemedb"] == []
    [status] = world.patches()
    cond = conditions(status)
    assert cond["MetricsAvailable"]["status"] == "False"
    assert missing in cond["MetricsAvailable"]["message"]
    assert cond["RemediationAllowed"]["status"] == "False"


# --------------------------------------------------------------------------- (6) invalid spec

CRITICAL_BELOW_WARNING = (
    "spec.detection.critical.lagSeconds: spec.detection.critical.lagSeconds (4) must be "
    "greater than spec.detection.warning.lagSeconds (5)"
)


@pytest.mark.parametrize("deliver", [
    pytest.param(True, id="the watch has delivered the write"),
    pytest.param(False, id="the watch lags the write"),
])
async def test_an_invalid_spec_is_reported_once_and_nothing_is_called(deliver: bool) -> None:
    raw = raw_spec(detection__critical={"lagSeconds": 4.0, "forSeconds": 0.0})
    world = World(raw)
    world.body["status"] = {"summary": "from before", "maxLagSeconds": 0.5}

    delay = await world.poll(deliver=deliver)

    assert delay == INVALID_SPEC_RETRY_SECONDS
    [status] = world.patches()
    cond = conditions(status)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("False", "InvalidSpec")
    assert cond["Ready"]["message"] == CRITICAL_BELOW_WARNING
    assert (cond["RemediationAllowed"]["status"],
            cond["RemediationAllowed"]["reason"]) == ("False", "InvalidSpec")
    assert status["summary"] == f"Invalid spec: {CRITICAL_BELOW_WARNING}"
    assert status["maxLagSeconds"] == 0.5  # the rest of status is left as it was
    assert world.events == [Event(NAME, "Warning", "InvalidSpec", CRITICAL_BELOW_WARNING)]
    assert [c for c in world.calls if c.who == "stemedb"] == []

    await world.poll(deliver=deliver)

    assert len(world.patches()) == 1
    assert len(world.events) == 1

    # Fixed by the user: polling resumes and Ready is re-evaluated.
    world.body["spec"] = raw_spec()
    world.body["metadata"]["generation"] = 4
    await world.poll()
    fixed = world.patches()[-1]
    assert conditions(fixed)["Ready"]["status"] == "True"
    assert fixed["observedGeneration"] == 4


@pytest.mark.parametrize("spec", [
    pytest.param(raw_spec(), id="a healthy cluster's status"),
    pytest.param(raw_spec(detection__critical={"lagSeconds": 4.0, "forSeconds": 0.0}),
                 id="an invalid spec's report, which keeps the rest of status"),
])
async def test_no_status_write_carries_the_shards_name(spec: dict[str, Any]) -> None:
    """`status.shard` is written only by the shard that acts; a status write copied
    from a stale status would name a shard that has moved on, and nothing would
    write it again while the new one sees its own name there."""
    world = World(spec)
    world.body["status"] = {"summary": "from before", "shard": "op-a",
                            "shardClaimedAt": "2026-11-30T10:00:00.000000Z"}

    await world.poll()

    assert world.patches()
    for patch in world.patches():
        assert not SHARD_FIELDS & set(patch), patch


async def test_an_invalid_spec_whose_write_failed_is_written_on_the_next_poll() -> None:
    world = World(raw_spec(detection__critical={"lagSeconds": 4.0, "forSeconds": 0.0}))
    world.kube.patch_errors.append(KubeError("patching status of db/demo: HTTP 500", status=500))

    assert await world.poll() == INVALID_SPEC_RETRY_SECONDS
    assert await world.poll() == INVALID_SPEC_RETRY_SECONDS

    assert len(world.patches()) == 2
    stored = conditions(world.kube.stored[(NS, NAME)])
    assert stored["Ready"]["reason"] == "InvalidSpec"
    assert world.reasons() == ["InvalidSpec", "InvalidSpec"]  # the Event goes with each try


# --------------------------------------------------------------------------- (7) deletion


async def _throttled_world(rate_before: float | None) -> World:
    world = World(with_token(raw_spec()))
    world.stemedb.scrape = primary(NODE2_CRITICAL, rate=rate_before)
    await world.poll()
    assert memory_of(world.body["status"]).throttle.active
    world.calls.clear()
    return world


@pytest.mark.parametrize(("rate_before", "throttled_to", "restored", "text"), [
    pytest.param(None, 1500, None, "unlimited", id="no limit was set before the episode"),
    pytest.param(1000.0, 750, 1000, "1000/s", id="a limit of 1000/s was set before"),
])
async def test_deletion_restores_the_rate_a_throttle_replaced(
    rate_before: float | None, throttled_to: int, restored: int | None, text: str,
) -> None:
    world = await _throttled_world(rate_before)
    assert memory_of(world.body["status"]).throttle.current_rate == throttled_to

    done = await world.reconciler.restore_before_delete(world.body)

    [call] = [c for c in world.calls if c.who == "stemedb"]
    assert (call.method, call.args) == ("set_rate_limit", (ADMIN, restored))
    assert call.creds == Credentials(token=TOKEN)
    assert done == f"restored the ingestion rate limit to {text} before deletion"
    assert world.sample("stemedb_operator_actions_total", action="SetRateLimit",
                        result="success") == 2.0


async def test_deletion_restores_a_throttle_recorded_in_memory() -> None:
    world = World()
    memory = Memory(throttle=ThrottleMemory(active=True, rate_to_restore=800, base_rate=800,
                                            current_rate=400))
    world.body["status"] = {"memory": memory.to_text()}

    done = await world.reconciler.restore_before_delete(world.body)

    assert [(c.method, c.args) for c in world.admin_calls()] == [
        ("set_rate_limit", (ADMIN, 800))]
    assert done == "restored the ingestion rate limit to 800/s before deletion"


@pytest.mark.parametrize("status", [
    pytest.param(None, id="the cluster was never polled"),
    pytest.param({"memory": Memory().to_text()}, id="no throttle is active"),
])
async def test_deletion_without_an_active_throttle_calls_nothing(
    status: dict[str, Any] | None,
) -> None:
    world = World()
    if status is not None:
        world.body["status"] = status

    assert await world.reconciler.restore_before_delete(world.body) is None
    assert world.calls == []


@pytest.mark.parametrize(("break_it", "error"), [
    pytest.param(lambda w: w.stemedb.errors.__setitem__(
        "set_rate_limit", StemeDBUnreachable("POST /v1/admin/rate-limit: connection refused")),
        StemeDBUnreachable, id="StemeDB is unreachable"),
    pytest.param(lambda w: w.kube.secrets.pop((NS, "stemedb-admin")), KubeError,
                 id="the token Secret is gone"),
])
async def test_deletion_raises_when_the_restore_cannot_be_done_yet(
    break_it: Callable[[World], None], error: type[Exception],
) -> None:
    world = await _throttled_world(None)
    break_it(world)

    with pytest.raises(error):
        await world.reconciler.restore_before_delete(world.body)


@pytest.mark.parametrize(("break_it", "reason"), [
    pytest.param(lambda w: None, "RateRestored", id="restored"),
    pytest.param(lambda w: w.stemedb.errors.__setitem__(
        "set_rate_limit", StemeDBUnreachable("POST /v1/admin/rate-limit: connection refused")),
        "RestoreAbandoned", id="StemeDB unreachable past the give-up time"),
    pytest.param(lambda w: w.body["spec"]["primary"].__setitem__("adminUrl", "not a url"),
                 "RestoreAbandoned", id="the spec became invalid"),
])
async def test_deletion_events_carry_event_reasons(
    monkeypatch: pytest.MonkeyPatch, break_it: Callable[[World], None], reason: str,
) -> None:
    import datetime
    import types

    from controller import handlers

    world = await _throttled_world(None)
    break_it(world)
    world.reconciler._specs.clear()
    posted: list[tuple[str, str]] = []

    def event(body: Any, *, type: str, reason: str, message: str) -> None:
        posted.append((type, reason))

    monkeypatch.setattr(handlers.kopf, "event", event)
    await handlers.restore_rate(
        body=world.body, memo=types.SimpleNamespace(reconciler=world.reconciler),
        runtime=datetime.timedelta(seconds=handlers.DELETE_GIVE_UP_SECONDS + 1), retry=120)

    assert [r for _, r in posted] == [reason]
    assert all(r in {m.value for m in EventReason} for _, r in posted)


@pytest.mark.parametrize(("retry", "posted_reasons"), [
    (0, ["DeletionHeld"]), (1, []), (7, []),
], ids=["the first failed attempt tells the human", "a retry says nothing more",
        "nor does a later one"])
async def test_a_held_deletion_says_why_at_once(
    monkeypatch: pytest.MonkeyPatch, retry: int, posted_reasons: list[str],
) -> None:
    """Issue 15: a deletion held by the finalizer said nothing until the 10-minute
    give-up Event; the human who ran `kubectl delete` is now told at once."""
    import datetime
    import types

    from controller import handlers

    world = await _throttled_world(None)
    world.stemedb.errors["set_rate_limit"] = StemeDBUnreachable(
        "POST /v1/admin/rate-limit: connection refused")
    posted: list[tuple[str, str, str]] = []

    def event(body: Any, *, type: str, reason: str, message: str) -> None:
        posted.append((type, reason, message))

    monkeypatch.setattr(handlers.kopf, "event", event)
    with pytest.raises(handlers.kopf.TemporaryError):
        await handlers.restore_rate(
            body=world.body, memo=types.SimpleNamespace(reconciler=world.reconciler),
            runtime=datetime.timedelta(seconds=retry * handlers.DELETE_RETRY_SECONDS),
            retry=retry)
    assert [r for _, r, _ in posted] == posted_reasons
    for _, _, message in posted:
        assert "connection refused" in message and "giving up after 600s" in message
        assert TOKEN not in message


# --------------------------------------------------------------------------- (8) memory reset


@pytest.mark.parametrize("text", [
    pytest.param("{not json", id="memory is not JSON"),
    pytest.param('{"version": 99}', id="memory has an unknown version"),
    pytest.param("[1, 2]", id="memory is not an object"),
    pytest.param('{"version": 1, "replicas": [5]}', id="a replica entry has the wrong shape"),
])
async def test_corrupt_memory_is_reported_and_polling_goes_on_from_empty(text: str) -> None:
    world = World()
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.body["status"] = {"memory": text}

    await world.poll()

    [reset] = [e for e in world.events if e.reason == "MemoryReset"]
    assert reset.type == "Warning"
    assert reset.message.startswith("status.memory could not be read (")
    assert [c.method for c in world.admin_calls()] == ["set_rate_limit"]  # acted as if new
    memory = memory_of(world.patches()[-1])
    assert memory.throttle.active

    await world.poll()
    assert world.reasons().count("MemoryReset") == 1


# --------------------------------------------------------------------------- (9) no action


@pytest.mark.parametrize(("spec", "budget", "skipped", "allowed_reason", "held"), [
    pytest.param(raw_spec(), 0, "ActionSkipped", "OperatorBudgetExhausted", "ResetBreaker",
                 id="the operator-wide budget is used up"),
    pytest.param(raw_spec(remediation__maxActionsPerHour=0), 1000, "ActionSkipped",
                 "ClusterBudgetExhausted", "ResetBreaker",
                 id="the cluster's own budget is used up"),
    pytest.param(raw_spec(remediation__mode="DryRun"), 1000, "WouldAct", "DryRunMode",
                 "ResetBreaker", id="the mode is DryRun"),
    pytest.param(raw_spec(remediation__mode="Observe"), 1000, "ActionSkipped", "ObserveMode",
                 "any", id="the mode is Observe"),
    pytest.param(raw_spec(remediation__paused=True), 1000, "ActionSkipped", "Paused", "any",
                 id="remediation is paused"),
])
async def test_no_admin_call_is_made_when_remediation_is_not_allowed(
    spec: dict[str, Any], budget: int, skipped: str, allowed_reason: str, held: str,
) -> None:
    world = World(copy.deepcopy(spec), budget=budget)
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]

    await world.poll()

    assert world.admin_calls() == []
    assert skipped in world.reasons()
    [status] = world.patches()
    allowed = conditions(status)["RemediationAllowed"]
    assert (allowed["status"], allowed["reason"]) == ("False", allowed_reason)
    assert memory_of(status).pending == ()
    assert world.sample("stemedb_operator_actions_suppressed_total", action=held,
                        reason=allowed_reason) == 1.0


async def test_the_operator_budget_is_shared_by_every_cluster() -> None:
    world = World(budget=1)
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    other = world.new_body("other", raw_spec())

    await world.poll(advance=0.0)
    await world.poll(body=other)

    assert [c.method for c in world.admin_calls()] == ["set_rate_limit"]
    assert [e.name for e in world.events if e.reason == "ThrottleStep"] == [NAME]
    assert [e.name for e in world.events if e.reason == "ActionSkipped"] == ["other"]
    assert world.budget.remaining(world.now) == 0


# --------------------------------------------------------------------------- evidence


async def test_steady_state_reads_only_the_primary_and_an_episode_reads_its_evidence() -> None:
    world = World()
    await world.poll()
    assert world.methods("stemedb") == ["scrape_primary"]

    world.calls.clear()
    world.stemedb.scrape = primary({"node2": 20.0, "node3": 0.5}, reported=False)
    world.stemedb.rate = RateLimitReading(1200.0)
    await world.poll()

    assert world.methods("stemedb") == [
        "scrape_primary", "get_rate_limit", "scrape_node", "tripped_breakers", "set_rate_limit"]
    [node] = [c for c in world.calls if c.method == "scrape_node"]
    assert node.args == ("http://stemedb-1:18180",)  # node2's own /metrics, not node3's
    assert [c.args[1] for c in world.admin_calls()] == [900]  # 75 % of the read-back 1200/s


@pytest.mark.parametrize(("failing", "rate", "event"), [
    pytest.param("get_rate_limit", 1500, "ThrottleStep",
                 id="an unreadable rate limit throttles from the unlimited baseline"),
    pytest.param("tripped_breakers", 900, "BreakerStateUnknown",
                 id="an unreadable breaker list skips the breaker step"),
    pytest.param("scrape_node", 900, "ThrottleStep",
                 id="an unreadable replica /metrics does not hold the ladder"),
])
async def test_missing_evidence_beyond_the_primary_scrape_does_not_stop_the_poll(
    failing: str, rate: int, event: str,
) -> None:
    world = World()
    world.stemedb.scrape = primary(NODE2_CRITICAL, reported=False)
    world.stemedb.rate = RateLimitReading(1200.0)
    world.stemedb.tripped = ["agent-node2"] if failing == "tripped_breakers" else []
    world.stemedb.errors[failing] = StemeDBUnreachable(f"{failing}: connection refused")

    await world.poll()

    assert [(c.method, c.args[1]) for c in world.admin_calls()] == [("set_rate_limit", rate)]
    assert event in world.reasons()
    assert conditions(world.patches()[-1])["MetricsAvailable"]["status"] == "True"


# --------------------------------------------------------------------------- (10) metrics


async def test_the_lag_gauge_follows_each_poll_and_forget_removes_it() -> None:
    world = World()
    world.stemedb.scrape = primary({"node2": 1.5, "node3": 0.25})
    await world.poll()

    assert world.sample(LAG, namespace=NS, name=NAME, replica="node2") == 1.5
    assert world.sample(LAG, namespace=NS, name=NAME, replica="node3") == 0.25
    assert world.sample("stemedb_operator_poll_duration_seconds_count", result="ok") == 1.0

    world.stemedb.scrape = primary({"node2": 2.0, "node3": None})
    await world.poll()
    assert world.sample(LAG, namespace=NS, name=NAME, replica="node2") == 2.0
    assert world.sample(LAG, namespace=NS, name=NAME, replica="node3") is None  # not stale

    assert world.sample("stemedb_operator_escalated", namespace=NS, name=NAME) == 0.0

    world.reconciler.forget(KEY)
    assert world.sample(LAG, namespace=NS, name=NAME, replica="node2") is None
    assert world.sample("stemedb_operator_escalated", namespace=NS, name=NAME) is None


async def test_an_unexpected_error_in_a_poll_is_counted_and_retried_soon() -> None:
    world = World()
    world.stemedb.errors["scrape_primary"] = RuntimeError("bug")

    delay = await world.poll()

    assert delay == 10.0
    assert world.patches() == []
    assert world.sample("stemedb_operator_poll_duration_seconds_count", result="error") == 1.0


@pytest.mark.parametrize(("lags", "errors", "expected_writes"), [
    pytest.param(HEALTHY, [KubeError("patching status of db/demo: HTTP 500", status=500)], 2,
                 id="a healthy cluster whose write failed is written on the next poll"),
    pytest.param(NODE2_CRITICAL, [None, KubeError("patching status of db/demo: HTTP 500",
                                                  status=500)], 3,
                 id="an outcome that could not be written is written on the next poll"),
])
async def test_a_failed_status_write_is_not_an_error_and_is_retried(
    lags: dict[str, float], errors: list[KubeError | None], expected_writes: int,
) -> None:
    world = World()
    world.stemedb.scrape = primary(lags)
    world.kube.patch_errors = list(errors)

    delay = await world.poll()
    await world.poll()

    assert delay == 10.0
    assert len(world.admin_calls()) == len(errors) - 1  # the lost outcome is not re-acted
    assert world.sample("stemedb_operator_poll_duration_seconds_count", result="ok") == 2.0
    assert len(world.patches()) == expected_writes
    assert memory_of(world.kube.stored[(NS, NAME)]).pending == ()


# --------------------------------------------------------------------------- per-poll caches


@pytest.mark.parametrize("new_generation", [
    pytest.param(3, id="same generation (edited in place)"),
    pytest.param(4, id="next generation"),
])
async def test_a_changed_spec_is_read_again_by_the_next_poll(new_generation: int) -> None:
    world = World()
    assert await world.poll() == 10.0
    assert await world.poll() == 10.0
    spec = copy.deepcopy(world.body["spec"])
    spec["detection"]["pollIntervalSeconds"] = 20.0
    world.body["spec"] = spec
    world.body["metadata"]["generation"] = new_generation
    assert await world.poll() == 20.0
    assert world.patches()[-1]["observedGeneration"] == new_generation


async def test_a_status_changed_by_someone_else_is_compared_again() -> None:
    world = World()
    await world.poll()
    await world.poll()
    assert len(world.patches()) == 1
    world.reconciler._written.clear()  # as after a restart: read the body's status
    world.body["status"] = {**world.body["status"], "summary": "edited by hand"}
    await world.poll()
    assert len(world.patches()) == 2
    assert world.patches()[-1]["summary"] != "edited by hand"


# The watch's copy of a written status is kept instead of the reconciler's own (one
# copy of every healthy cluster's status less), and only when it is the same status.

def _as_stored(status: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(merge_patch({}, dict(status)))


@pytest.mark.parametrize("delivered, adopted", [
    pytest.param(lambda written: _as_stored(written), True,
                 id="the status as stored"),
    pytest.param(lambda written: {}, False,
                 id="the status from before the write (the watch lags)"),
    pytest.param(lambda written: {**_as_stored(written), "shard": "op-b"}, False,
                 id="the status as written plus a field another writer added"),
    pytest.param(lambda written: {**_as_stored(written), "summary": "edited"}, False,
                 id="the status changed by another writer since"),
])
async def test_the_watchs_copy_of_a_written_status_is_kept_only_when_it_is_the_same(
    delivered: Callable[[Mapping[str, Any]], dict[str, Any]], adopted: bool,
) -> None:
    world = World()
    key = ClusterKey.of(world.body)
    await world.poll(deliver=False)
    written = world.patches()[-1]

    world.body["status"] = delivered(written)
    world.reconciler.seen(key, world.body["status"])

    decided_on = world.reconciler._status(key, world.body)
    assert (decided_on is world.body["status"]) is adopted
    assert _pruned(decided_on) == _pruned(written)  # the same status either way
    await world.poll(deliver=False)
    assert len(world.patches()) == 1  # nothing written again


async def test_a_copy_the_watch_delivers_late_never_replaces_a_newer_write() -> None:
    """Written A, then B; the watch shows A only after B was written (a body that
    lags). The poll decides on B, and does not repeat what B recorded."""
    world = World()
    key = ClusterKey.of(world.body)
    await world.poll()  # healthy: A written and delivered
    status_a = copy.deepcopy(world.body["status"])
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    await world.poll(deliver=False)  # the lag: B written, not delivered
    written_b = world.patches()[-1]
    assert written_b != world.patches()[0]

    world.body["status"] = status_a  # the late copy
    world.reconciler.seen(key, world.body["status"])

    assert _pruned(world.reconciler._status(key, world.body)) == _pruned(written_b)
    actions = world.admin_calls()
    await world.poll(deliver=False)
    assert world.admin_calls()[len(actions):] == []  # nothing B recorded is repeated


class FakeNotifier:
    """The tenant webhook's client (the adapter seam under `Pager`)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.fail = fail

    async def escalated(self, url: str, event: Any, authorization: str | None = None) -> None:
        from controller.adapters.notify import NotificationError

        self.sent.append((url, event))
        self.authorizations.append(authorization)
        if self.fail:
            raise NotificationError("escalation webhook answered HTTP 500")


def with_webhook(w: World, notifier: FakeNotifier) -> Pager:
    pager = Pager(w.post_event, webhook=notifier)  # type: ignore[arg-type]
    w.reconciler.notifier = pager
    return pager


@pytest.mark.parametrize("fail", [False, True], ids=["delivered", "webhook down"])
async def test_the_escalation_webhook_is_told_once_per_rise_in_level(fail: bool) -> None:
    spec = raw_spec()
    spec["escalation"]["webhookUrl"] = "https://hooks.example/stemedb"
    w = World(spec)
    notifier = FakeNotifier(fail)
    pager = with_webhook(w, notifier)
    await w.poll()
    w.stemedb.scrape = primary({"node2": 90.0, "node3": 0.5})
    for _ in range(5):
        await w.poll()
    await pager.drain()

    levels = [e.level for _, e in notifier.sent]
    assert levels and levels == sorted(set(levels)), levels
    assert all(url == "https://hooks.example/stemedb" for url, _ in notifier.sent)
    assert notifier.sent[0][1].contact
    expected = "NotificationFailed" if fail else "Notified"
    assert w.reasons().count(expected) == len(levels)


@pytest.mark.parametrize(("secret", "sent", "problem"), [
    (b"Bearer hook-s3cret\n", True, None),
    (b"Bearer two  spaces", False, "has control or non-ASCII characters"),
    (b"Bearer evil\r\nX-Injected: 1", False, "has control or non-ASCII characters"),
    (None, False, "not found"),
], ids=["sent as the Authorization header", "a malformed value is not sent",
        "a header injection is not sent", "a missing Secret is reported"])
async def test_the_webhook_carries_its_authorization_from_a_secret(
    secret: bytes | None, sent: bool, problem: str | None,
) -> None:
    spec = raw_spec()
    spec["escalation"]["webhookUrl"] = "https://hooks.example/stemedb"
    spec["escalation"]["webhookAuthSecretRef"] = {"name": "hook", "key": "authorization"}
    w = World(spec)
    if secret is not None:
        w.kube.secrets[(NS, "hook")] = {"authorization": secret}
    notifier = FakeNotifier()
    pager = with_webhook(w, notifier)
    w.stemedb.scrape = primary({"node2": 90.0, "node3": 0.5})
    for _ in range(3):
        await w.poll()
    await pager.drain()

    if sent:
        assert notifier.authorizations and set(notifier.authorizations) == {
            "Bearer hook-s3cret"}
    else:
        assert notifier.sent == []
        [failed] = [e for e in w.events if e.reason == "NotificationFailed"]
        assert failed.message.startswith("spec.escalation.webhookAuthSecretRef: ")
        assert problem is not None and problem in failed.message
    written = json.dumps([w.patches(), [e.message for e in w.events]])
    assert "hook-s3cret" not in written and "evil" not in written


async def test_no_webhook_no_notification() -> None:
    w = World()
    notifier = FakeNotifier()
    pager = with_webhook(w, notifier)
    w.stemedb.scrape = primary({"node2": 90.0, "node3": 0.5})
    for _ in range(4):
        await w.poll()
    await pager.drain()
    assert notifier.sent == []


# --------------------------------------------------------------------------- (9) spec vs StemeDB


async def test_agent_ids_swapped_in_the_spec_are_reported_and_nothing_is_acted_on() -> None:
    """The primary labels each breaker with its replica and agent: a spec that
    names the other replica's agent would reset the wrong breaker (issue 11)."""
    world = World()
    scrape = primary(NODE2_CRITICAL)
    world.stemedb.scrape = dataclasses.replace(scrape, replicas={
        "node2": dataclasses.replace(scrape.replicas["node2"], agent_id="agent-node3",
                                     breaker_tripped=True),
        "node3": dataclasses.replace(scrape.replicas["node3"], agent_id="agent-node2"),
    })
    world.stemedb.tripped = ["agent-node3"]  # node2's breaker, by the primary's account

    await world.poll()

    assert world.admin_calls() == []
    [status] = world.patches()
    cond = conditions(status)
    for ctype in ("Ready", "RemediationAllowed"):
        assert cond[ctype]["status"] == "False"
        assert cond[ctype]["reason"] == "SpecContradictsCluster"
    assert "spec.replicas[0].agentId" in cond["Ready"]["message"]
    assert "spec.replicas[1].agentId" in cond["Ready"]["message"]
    assert [(e.type, e.reason) for e in world.events] == [("Warning", "SpecContradictsCluster")]

    # Control: once the spec names the agents the primary reports, the breaker is reset.
    world.body["spec"]["replicas"][0]["agentId"] = "agent-node3"
    world.body["spec"]["replicas"][1]["agentId"] = "agent-node2"
    world.body["metadata"]["generation"] = 2
    await world.poll()
    assert [c.method for c in world.admin_calls()] == ["reset_breaker"]


@pytest.mark.parametrize("token", [
    pytest.param(b"abc\r\nX-Evil: 1", id="CRLF: a header of its own"),
    pytest.param(b"abc def", id="a space"),
    pytest.param("t\u00f6ken".encode(), id="non-ASCII"),
    pytest.param(b"   \n", id="empty after trimming"),
])
async def test_a_token_that_would_break_its_header_line_is_never_sent(token: bytes) -> None:
    world = World(with_token(raw_spec()))
    world.kube.secrets[(NS, "stemedb-admin")] = {"token": token}
    world.stemedb.scrape = primary(NODE2_CRITICAL)

    await world.poll()

    assert world.methods("stemedb") == []
    cond = conditions(world.patches()[-1])
    assert cond["MetricsAvailable"]["status"] == "False"
    assert "spec.auth.tokenSecretRef" in cond["MetricsAvailable"]["message"]
    assert token.decode("utf-8", "replace") not in json.dumps(world.patches())


@pytest.mark.parametrize(("field", "set_url"), [
    ("spec.primary.adminUrl", lambda raw: raw["primary"].update(adminUrl="http://10.1.2.3:18180")),
    ("spec.replicas[1].metricsUrl",
     lambda raw: raw["replicas"][1].update(metricsUrl="http://10.1.2.3:18180")),
    ("spec.escalation.webhookUrl",
     lambda raw: raw["escalation"].update(webhookUrl="https://10.1.2.3/hook")),
])
async def test_a_url_written_as_a_denied_address_is_reported_before_anything_is_sent(
    field: str, set_url: Callable[[dict[str, Any]], None],
) -> None:
    raw = raw_spec()
    set_url(raw)
    world = World(raw)
    world.reconciler.destinations = Destinations(
        DestinationPolicy(deny=parse_networks(["10.0.0.0/8"])))
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]

    await world.poll()

    assert world.methods("stemedb") == []
    cond = conditions(world.patches()[-1])
    assert cond["Ready"]["reason"] == "DestinationDenied"
    assert cond["Ready"]["message"].startswith(f"{field}: 10.1.2.3 is in 10.0.0.0/8")
    assert cond["RemediationAllowed"]["status"] == "False"


async def test_a_replica_url_that_resolves_to_a_denied_address_stops_remediation() -> None:
    world = World()
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]
    world.stemedb.errors["scrape_node"] = StemeDBDestinationDenied(
        "GET /metrics: destination denied (stemedb-1 resolves to a denied address)")

    await world.poll()

    assert world.admin_calls() == []
    cond = conditions(world.patches()[-1])
    assert cond["Ready"]["reason"] == "DestinationDenied"
    assert "spec.replicas[0].metricsUrl" in cond["Ready"]["message"]


class RotatingStemeDB(FakeStemeDB):
    """Accepts only `valid` as the bearer token, as StemeDB does after a rotation."""

    valid = TOKEN

    def _call(self, method: str, *args: Any, creds: Credentials) -> None:
        super()._call(method, *args, creds=creds)
        if creds.token != self.valid:
            raise StemeDBUnauthorized(401, "unauthorized", "token rejected")


@pytest.mark.parametrize("rotated_secret", [True, False],
                         ids=["the Secret holds the new token", "the Secret is not updated yet"])
async def test_a_rotated_token_costs_at_most_one_rejected_request(rotated_secret: bool) -> None:
    world = World(with_token(raw_spec()))
    world.stemedb = RotatingStemeDB(world.calls)
    world.reconciler = world.new_reconciler()
    world.kube.caching = True
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]
    await world.poll()  # the old token works, and is now cached
    assert world.stemedb.scrape is not None

    world.stemedb.valid = "new-token-after-rotation"
    if rotated_secret:
        world.kube.secrets[(NS, "stemedb-admin")] = {"token": b"new-token-after-rotation"}
    before = len(world.calls)
    await world.poll()

    tokens = [c.creds.token for c in world.calls[before:] if c.who == "stemedb" and c.creds]
    rejected = [t for t in tokens if t != world.stemedb.valid]
    assert len(rejected) == 1  # the cached token, once
    if rotated_secret:
        assert tokens[1:] and all(t == "new-token-after-rotation" for t in tokens[1:])
    else:
        assert tokens == [TOKEN]  # the same token is not sent again this poll


@pytest.mark.parametrize(("read", "kept"), [(0.5, 1), (1500.0, 1500), (1500.2, 1501), (0.0, 0)])
async def test_a_fractional_limit_is_never_restored_as_zero(read: float, kept: int) -> None:
    """The rate in force when the episode began is what is restored: 0.5/s read
    as 0 would pause ingestion at the end of the incident."""
    world = World()
    world.stemedb.scrape = primary(NODE2_CRITICAL, rate=read)

    await world.poll()

    memory = memory_of(world.patches()[-1])
    assert memory.throttle.rate_to_restore == kept
