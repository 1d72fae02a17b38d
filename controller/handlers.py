"""The Kopf wiring, and the only module that imports Kopf.

One daemon per StemeDBCluster polls at the interval the policy asks for (a Kopf
timer has one interval for all objects; a daemon can follow each spec), starting
after a random delay so a thousand clusters do not poll in lockstep. Each poll is
handed to `Reconciler.poll`; the daemon itself only sleeps and loops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
import logging
import os
import random
import re
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import kopf
import structlog
from prometheus_client import Gauge, start_http_server

from controller.adapters import kube, kubeconfig
from controller.adapters.alertmanager import Credentials
from controller.adapters.destinations import Destinations
from controller.adapters.health import HealthServer
from controller.adapters.kube import KubeClient, KubeEndpoint, KubeError
from controller.adapters.leadership import LeaderElector, LeaseName
from controller.adapters.notify import Notifier, Pager
from controller.adapters.operator_metrics import OperatorMetrics
from controller.adapters.sharding import ClusterGate, Shards, shard_of
from controller.adapters.stemedb import ClientConfig, StemeDBClient
from controller.adapters.stemedb_errors import StemeDBError
from controller.adapters.warmth import Presence, Warmth
from controller.domain import (
    EventReason,
    EventType,
    Memory,
    MemoryFormatError,
    SpecError,
    parse_spec,
)
from controller.domain.budget import ActionBudget
from controller.domain.destinations import DestinationPolicy
from controller.domain.leadership import LeaseTimings
from controller.domain.sharding import LEASE_GC_SECONDS, Standing
from controller.domain.spec import DetectionSpec
from controller.notifications import Timing
from controller.reconcile import ClusterKey, Reconciler

GROUP, VERSION, PLURAL = kube.GROUP, kube.VERSION, kube.PLURAL
FINALIZER = "stemedb.io/restore-rate"
DELETE_RETRY_SECONDS = 5.0
DELETE_GIVE_UP_SECONDS = 600.0
# Connections Kopf may open to the API server at once (plus one per watched
# namespace, which its watch holds). Kopf's own session has no limit, so at
# start-up it opened ~800 TLS connections for the finalizer and annotation
# PATCHes of 1,000 resources, each with a 256 KiB read buffer: peak RSS 440 MiB.
# 32 cost ~9 MiB more than 8 at 1,000 clusters and started no faster (13 s to
# the first status writes either way): a PATCH takes a few ms on one connection.
KUBE_API_CONNECTIONS = 8
# After taking over, the clusters whose poll fell due while this replica stood by
# poll within this many seconds (spread, not all in one burst).
TAKEOVER_SPREAD_SECONDS = 1.0
# A sharded replica's daemon that may not act on its cluster looks at it again at
# least this often. Only a change of the ring (its members, the shards it waits
# for, its own standing) can make it this replica's, and each wakes the daemon, so
# this is only a safety net: at 1,000 clusters over 2 shards each shard's ~500
# other clusters woke every 10 s, 50 wake-ups a second.
SHARD_IDLE_SECONDS = 120.0

log = structlog.get_logger("stemedb.handlers")


T = TypeVar("T")


class Gate(Protocol):
    """What acting under leader election or on a shard's cluster looks like."""

    @property
    def acting(self) -> bool: ...

    @property
    def timings(self) -> LeaseTimings: ...

    async def guarded(self, work: Coroutine[Any, Any, T]) -> T | None: ...


class _Config:
    """What the CLI asked for, read by the startup handler."""

    max_actions_per_hour = 100
    namespaces: tuple[str, ...] = ()
    destinations = Destinations()
    secret_label: tuple[str, str] | None = None
    kubeconfig_file: str | None = None  # --kubeconfig; None: $KUBECONFIG, ~/.kube/config
    context: str | None = None  # --context; None: the kubeconfig's current-context
    alertmanager_urls: tuple[str, ...] = ()
    alertmanager_credentials: str | None = None
    timing = Timing()
    leader_election: LeaderElection | None = None  # None: act alone (--no-leader-election)
    sharding: Sharding | None = None  # None: not sharded (--sharding is off)


@dataclasses.dataclass(frozen=True)
class LeaderElection:
    """Which Lease the replicas compete for, and who this one is."""

    namespace: str
    lease: str
    identity: str
    timings: LeaseTimings = dataclasses.field(default_factory=LeaseTimings)


@dataclasses.dataclass(frozen=True)
class Sharding:
    """Which ring of shard Leases this replica joins, and who it is in it."""

    namespace: str
    ring: str
    identity: str
    timings: LeaseTimings = dataclasses.field(default_factory=LeaseTimings)
    lease_gc_seconds: float = LEASE_GC_SECONDS


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.AiohttpSession | None:
    """Log in without the `kubernetes` package; hand the credentials to our KubeClient
    too, and give Kopf a session with a bounded pool. Kopf calls this again after a
    401 or at expiry, and both follow."""
    info = await _credentials(**kwargs)
    if info is None:
        return None
    last = memo.get("login")
    if last is not None and last[0] == info:
        # The same credentials as last time: give Kopf the same session object, so
        # its vault recognises credentials it has already seen rejected and stops
        # (a fresh session each time compared unequal, and a 401 became a loop of
        # hundreds of logins a second).
        return last[1]
    endpoint = _endpoint(info)  # one SSL context for both clients
    _kube(memo).use(endpoint)
    _lease_kube(memo).use(endpoint)
    await _Config.destinations.deny_api_server(info.server)
    session = _bounded_session(info, KUBE_API_CONNECTIONS + len(_Config.namespaces))
    memo["login"] = (info, session)
    return session


async def _credentials(*, settings: kopf.OperatorSettings,
                       **kwargs: Any) -> kopf.ConnectionInfo | None:
    """The Pod's ServiceAccount (unless --kubeconfig or --context ask for a
    kubeconfig), else the kubeconfig read as kubectl reads it, `exec` plugins
    included (`adapters/kubeconfig.py`; the CLI has already tried it once, so a
    failure here is one that came later: Kopf logs it and tries again).
    """
    if _Config.kubeconfig_file is None and _Config.context is None:
        info = kopf.login_with_service_account(settings=settings, **kwargs)
        if info is not None:
            return _in_cluster_address(info)
    try:
        found = await asyncio.to_thread(kubeconfig.load, _Config.kubeconfig_file,
                                        _Config.context)
    except kubeconfig.KubeconfigError as err:
        raise kopf.LoginError(str(err)) from None
    return kopf.ConnectionInfo(**{f.name: getattr(found, f.name)
                                  for f in dataclasses.fields(found)},
                               trust_env=settings.networking.trust_env)


def _in_cluster_address(info: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    """The API server at the address the kubelet gives the Pod, as client-go and the
    kubernetes package use it: Kopf's `kubernetes.default.svc` needs cluster DNS,
    which the chart's NetworkPolicy may not allow (`networkPolicy.dns`)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return info
    host = f"[{host}]" if ":" in host else host
    return dataclasses.replace(info, server=f"https://{host}:{port}")


def _endpoint(info: kopf.ConnectionInfo) -> KubeEndpoint:
    """The same server, TLS and Authorization header Kopf's own session uses."""
    headers = dict(info.as_http_headers())
    if "Authorization" not in headers and info.username and info.password:
        # Kopf before 1.45 sent basic auth through aiohttp's `auth`, not a header.
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    return KubeEndpoint(server=info.server, ssl=info.as_ssl_context(), headers=headers,
                        proxy=info.proxy_url, trust_env=info.trust_env)


def _kube(memo: kopf.Memo) -> KubeClient:
    """The one KubeClient, made by whichever of startup and login runs first.

    Kopf 1.45 runs login after the startup handlers (its authenticator waits for
    `started_flag`), but does not document the order.
    """
    client: KubeClient | None = memo.get("kube")
    if client is None:
        client = memo["kube"] = KubeClient(secret_label=_Config.secret_label)
    return client


def _lease_kube(memo: kopf.Memo) -> KubeClient:
    """The leader election's own client: a renewal never waits behind status writes
    in the shared pool (at 1,000 clusters a start-up burst could outlast the renew
    deadline), and its timeout is the elector's, not 30 s."""
    client: KubeClient | None = memo.get("lease_kube")
    if client is None:
        client = memo["lease_kube"] = KubeClient(max_connections=2)
    return client


def _bounded_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """What Kopf builds from `info` (auth.py), but with at most `limit` connections."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        auth = info.as_aiohttp_basic_auth()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=auth,
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server, priority=info.priority,
        default_namespace=info.default_namespace, expiration=info.expiration,
        aiohttp_session=session,
    )


class _NoDiffBase(kopf.DiffBaseStorage):
    """Keep no "last handled" copy of the spec on the object.

    Kopf stores one (an annotation holding the whole spec, ~1.5 KB) to tell
    creations from updates for on.create/on.update/on.resume handlers. This
    operator has none of those (its daemon reads the current spec on every poll,
    its on.delete does not look at a diff), so the copy bought one PATCH per
    object at start-up and a larger body in etcd and in Kopf's memory. Without a
    stored essence every event looks like a creation with no handlers: a no-op.
    """

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class _ReplicaProgress(kopf.AnnotationsProgressStorage):
    """Kopf's retry state of a handler, kept per replica (`<handler>.<identity>`).

    With leader election or sharding every replica runs the on.delete handler of a
    deleting cluster, and the ones that must not act retry it later. Under one
    shared annotation their retries set the actor's schedule ("delayed until") and
    counters, and their patches raced its fenced claim write in lockstep: a
    deletion waited until one replica stopped. Each replica now reads and writes
    only its own record (and its own touch-dummy); the records of a deleting
    object go with it.
    """

    def __init__(self, identity: str) -> None:
        super().__init__(prefix=GROUP)
        self.replica = re.sub(r"[^A-Za-z0-9_.-]+", "-", identity).strip("-_.") or "replica"

    def make_keys(self, key: str, *, body: kopf.Body | None = None) -> Iterable[str]:
        return super().make_keys(f"{key}.{self.replica}", body=body)


def _progress_storage() -> kopf.ProgressStorage:
    """Per replica when several run (leader election or sharding), else shared."""
    config = _Config.sharding or _Config.leader_election
    if config is None:
        return kopf.AnnotationsProgressStorage(prefix=GROUP)
    return _ReplicaProgress(config.identity)


def _post_event(body: Mapping[str, Any], type: str, reason: EventReason, message: str) -> None:
    """Every Event the operator posts: its reason is an EventReason member, listed
    with its meaning in docs/remediation-policy.md."""
    kopf.event(body, type=type, reason=reason.value, message=message)  # type: ignore[arg-type]


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's own state goes under our prefix, and nothing of it in status.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = _progress_storage()
    settings.persistence.diffbase_storage = _NoDiffBase()
    # Only explicit Events (ours); Kopf's log lines stay logs.
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "stemedb-operator"
    settings.posting.reporting_instance = socket.gethostname()
    settings.posting.event_name_prefix = "stemedb-"
    # Serve only the namespaces we were given; no cluster-wide CRD/namespace scans.
    settings.scanning.disabled = True
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.background.cancellation_polling = 5
    memo.warmth = Warmth(lambda: _count_clusters(memo))
    memo.leader = _start_election(memo)
    memo.shards = _start_sharding(memo)
    if memo.leader is None and memo.shards is None:
        # Alone it acts at once; the wait only tells `/readyz`.
        memo.warm_task = asyncio.create_task(memo.warmth.wait("reporting ready"))
    if memo.health_port:
        memo.health = HealthServer(memo.health_port, memo.warmth.not_ready)
        await memo.health.start()
    memo.reconciler = Reconciler(
        stemedb=StemeDBClient(ClientConfig(), metrics=memo.metrics,
                              destinations=_Config.destinations),
        kube=_kube(memo),
        metrics=memo.metrics,
        budget=ActionBudget(_Config.max_actions_per_hour),
        post_event=_post_event,
        notifier=Pager(
            _post_event, webhook=Notifier(destinations=_Config.destinations),
            alertmanager_urls=_Config.alertmanager_urls,
            credentials=Credentials(Path(_Config.alertmanager_credentials)
                                    if _Config.alertmanager_credentials else None),
            timing=_Config.timing, registry=memo.metrics.registry),
        destinations=_Config.destinations,
    )


async def _count_clusters(memo: kopf.Memo) -> int:
    """The clusters this replica watches: in its namespaces, or in all."""
    kube_client = _kube(memo)
    if not _Config.namespaces:
        return await kube_client.count_clusters(None)
    return sum([await kube_client.count_clusters(ns) for ns in _Config.namespaces])


def _start_election(memo: kopf.Memo) -> LeaderElector | None:
    """Start competing for the Lease (None: leader election is off), and take over
    SIGTERM/SIGINT from Kopf (`_release_on_signal`)."""
    config = _Config.leader_election
    if config is None:
        return None
    gauge = Gauge("stemedb_operator_leader",
                  "1 while this replica holds the leader Lease and acts, else 0",
                  registry=memo.metrics.registry)

    def on_change(acting: bool) -> None:
        gauge.set(1 if acting else 0)
        reconciler: Reconciler | None = getattr(memo, "reconciler", None)
        if acting and reconciler is not None:
            # Called before any poll may start: the daemons wait on the election.
            reconciler.took_over()

    elector = LeaderElector(_lease_kube(memo), LeaseName(config.namespace, config.lease),
                            config.identity, config.timings, on_change=on_change)
    _release_on_signal(memo, elector, elector.run, "competing for the leader Lease")
    return elector


def _start_sharding(memo: kopf.Memo) -> Shards | None:
    """Join the shard ring (None: sharding is off); SIGTERM releases this shard's
    Lease first, so the others take its clusters within a second."""
    config = _Config.sharding
    if config is None:
        return None
    shards = Shards(_lease_kube(memo), config.namespace, config.ring, config.identity,
                    config.timings, registry=memo.metrics.registry, owners=_kube(memo),
                    lease_gc_seconds=config.lease_gc_seconds)
    _release_on_signal(memo, shards.elector, shards.run, "joining the shard ring")
    return shards


def _release_on_signal(memo: kopf.Memo, elector: LeaderElector,
                       run: Callable[[Callable[[], None]], Coroutine[Any, Any, None]],
                       what: str) -> None:
    """Run `run` (the election, or the shard ring; `what` it does, for the log) once
    this replica is warm, and take over SIGTERM/SIGINT
    from Kopf: stop acting and release the Lease first, then let Kopf stop. Kopf's
    own order (watchers, then daemons, then cleanup handlers) would hold the Lease
    for seconds after the last action, and the others wait for it."""

    async def shut_down(sig: signal.Signals) -> None:
        log.info("signal received: releasing the Lease, then stopping", signal=sig.name)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await elector.release()
        memo.stop_flag.set()

    def on_signal(sig: signal.Signals) -> None:
        if memo.get("shutting_down") is None:
            elector.stop_acting()  # at once, not when the task below gets its turn
            memo["shutting_down"] = asyncio.create_task(shut_down(sig))

    def take_over_signals() -> None:
        # Kopf installs its SIGINT/SIGTERM handlers one loop tick after its tasks
        # start, which may be after this startup handler; the elector's first
        # request is real I/O, so by then Kopf's are in place and these replace them.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)

    async def when_warm() -> None:
        # Only once a daemon runs for every cluster: a cold replica that took the
        # Lease, or joined the ring, would leave its clusters unpolled until then.
        await memo.warmth.wait(what)
        await run(take_over_signals)

    running = asyncio.create_task(when_warm(), name="lease")
    memo.election_task = running
    memo.elector = elector


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    warm_task: asyncio.Task[None] | None = memo.get("warm_task")
    if warm_task is not None:
        warm_task.cancel()
    health: HealthServer | None = memo.get("health")
    if health is not None:
        await health.stop()
    task: asyncio.Task[None] | None = memo.get("election_task")
    leader: LeaderElector | None = memo.get("elector")
    if task is not None and leader is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await leader.release()
        await _lease_kube(memo).aclose()
    reconciler: Reconciler | None = getattr(memo, "reconciler", None)
    if reconciler is not None:
        await reconciler.stemedb.aclose()
        await reconciler.kube.aclose()
        if reconciler.notifier is not None:
            await reconciler.notifier.aclose()


class _FirstPolls:
    """Freeze what start-up built once every cluster has polled once.

    The listing, the daemons and the first poll of every cluster create objects
    that live for the whole run (bodies, tasks, parsed specs, clients). Left in the
    collector's generations, each full collection walks all of them (a pause of
    ~100 ms at 1,000 clusters, seen as poll slip). When no daemon is waiting for
    its first poll, collect the start-up garbage and move the survivors to the
    permanent generation (`gc.freeze`); later clusters trigger it again, and then
    it only walks what was made since. Cyclic garbage that involves frozen objects
    is never reclaimed: a small cost per deleted cluster.
    """

    waiting: set[ClusterKey] = set()

    @classmethod
    def started(cls, key: ClusterKey) -> None:
        cls.waiting.add(key)

    @classmethod
    def done(cls, key: ClusterKey) -> None:
        if key not in cls.waiting:
            return
        cls.waiting.discard(key)
        if not cls.waiting:
            gc.collect()
            gc.freeze()


def _interval(spec: Mapping[str, Any]) -> float:
    try:
        return parse_spec(spec).detection.poll_interval_seconds
    except SpecError:
        return DetectionSpec().poll_interval_seconds


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def poll(
    body: kopf.Body, spec: kopf.Spec, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    """Poll this cluster until it is deleted or the operator stops.

    Sleeps with `asyncio.sleep`, not `stopped.wait()`: with no cancellation
    backoff Kopf cancels the daemon's task as soon as it sets `stopped`, so both
    end the sleep at once, and `stopped.wait()` made two tasks and two exceptions
    per poll (at 1,000 clusters ~1,600 of each waiting for the collector).
    """
    reconciler: Reconciler = memo.reconciler
    leader: LeaderElector | None = getattr(memo, "leader", None)
    shards: Shards | None = getattr(memo, "shards", None)
    with _present(memo, body):
        if shards is not None:
            await _poll_shard(body, spec, stopped, reconciler, shards)
        else:
            await _poll_alone(body, spec, stopped, reconciler, leader)


@contextlib.contextmanager
def _present(memo: kopf.Memo, body: Mapping[str, Any]) -> Iterator[None]:
    """The cluster counts towards this replica's warmth while its daemon runs
    (`adapters/warmth.py`: a replica takes work only once every cluster has one)."""
    warmth: Warmth | None = getattr(memo, "warmth", None)
    uid = str(body["metadata"]["uid"])
    if warmth is not None:
        warmth.seen(uid)
    try:
        yield
    finally:
        if warmth is not None:
            warmth.gone(uid)


async def _poll_alone(body: kopf.Body, spec: kopf.Spec, stopped: kopf.DaemonStopped,
                      reconciler: Reconciler, leader: LeaderElector | None) -> None:
    """The daemon of a replica that acts on every cluster: alone, or while it holds
    the leader Lease (a warm standby otherwise)."""
    key = ClusterKey.of(body)
    _FirstPolls.started(key)
    try:
        # A random first delay spreads the polls of many clusters over the interval.
        delay = random.uniform(0, _interval(spec))
        due = time.monotonic() + delay
        await asyncio.sleep(delay)
        while not stopped:
            if leader is not None and not leader.acting:
                # A warm standby: the watch and this daemon stay, nothing is polled.
                await leader.wait_acting()
                delay = random.uniform(0, min(TAKEOVER_SPREAD_SECONDS, _interval(spec)))
                due = time.monotonic() + delay
                await asyncio.sleep(delay)
                continue
            reconciler.metrics.observe_slip(time.monotonic() - due)
            if leader is None:
                delay = await reconciler.poll(body)
            else:
                acted = await leader.guarded(reconciler.poll(body))
                if acted is None:
                    continue  # leadership lost mid-poll: the poll was cancelled
                delay = acted
            _FirstPolls.done(key)
            due = time.monotonic() + delay
            await asyncio.sleep(delay)
    finally:
        _FirstPolls.done(key)


async def _poll_shard(body: kopf.Body, spec: kopf.Spec, stopped: kopf.DaemonStopped,
                      reconciler: Reconciler, shards: Shards) -> None:
    """The daemon of a sharded replica: poll while this replica may act on the
    cluster (`Shards.may_act`: the ring gives it, every member has acknowledged it,
    no stopped shard may still be finishing work on it). Woken by a change of the
    ring, else at the next poll or after `SHARD_IDLE_SECONDS`."""
    uid = str(body["metadata"]["uid"])
    key = ClusterKey.of(body)
    due = time.monotonic() + random.uniform(0, _interval(spec))
    acting = False
    theirs = False  # seen as another shard's while this replica acts: a move to it
    _FirstPolls.started(key)
    try:
        while not stopped:
            shards.settle(uid)
            mine = shards.may_act(body)
            if mine != acting:
                acting = mine
                shards.mark(uid, mine)
                if not mine:
                    reconciler.release(key)
                else:
                    reconciler.acquired(key)  # its first poll reads the status
                if mine and (theirs or shard_of(body) not in (None, shards.identity)):
                    # Moved to this replica (from a dead, departed or still running
                    # shard, as this replica saw it act or as status.shard says):
                    # poll soon, spread, not where a fresh start's spread puts it.
                    due = min(due, time.monotonic() + random.uniform(
                        0, min(TAKEOVER_SPREAD_SECONDS, _interval(spec))))
            if not mine:
                if shards.members:
                    _FirstPolls.done(key)  # another shard's, or waiting: settled
                theirs = theirs or shards.standing is Standing.ACTING
                await shards.wait(uid, SHARD_IDLE_SECONDS)
                continue
            if time.monotonic() < due:
                await shards.wait(uid, due - time.monotonic())
                continue
            reconciler.metrics.observe_slip(time.monotonic() - due)
            shards.count_poll()
            started = time.time()
            acted = await shards.guarded(body, reconciler.poll(body))
            if log.isEnabledFor(logging.DEBUG):
                # structlog runs its processors before the level drops the line: at
                # 1,000 clusters that was ~2 % of a shard's py-spy samples.
                log.debug("polled", namespace=key.namespace, name=key.name,
                          shard=shards.identity, started=started, ended=time.time(),
                          cancelled=acted is None)
            if acted is not None:
                _FirstPolls.done(key)
                due = time.monotonic() + acted
                shards.record(body)
    finally:
        _FirstPolls.done(key)
        shards.forget(uid)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def object_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The watch delivered a new version of a cluster. The reconciler keeps the
    watch's copy of a status it wrote instead of its own (`Reconciler.seen`).
    Async: Kopf runs a sync handler in a worker thread, one hop per event."""
    reconciler: Reconciler | None = getattr(memo, "reconciler", None)
    if reconciler is not None and body.get("metadata"):
        reconciler.seen(ClusterKey.of(body), body.get("status"))


def _rate_to_restore(body: Mapping[str, Any]) -> str:
    try:
        memory = Memory.from_text((body.get("status") or {}).get("memory"))
    except MemoryFormatError:
        return "the rate before the throttle (unknown: status.memory unreadable)"
    rate = memory.throttle.rate_to_restore
    return "unlimited (remove the limit)" if rate is None else f"{rate} assertions/s"


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def restore_rate(
    body: kopf.Body, memo: kopf.Memo, runtime: Any, retry: int, **_: Any
) -> None:
    """Deleting a resource while ingestion is throttled lifts the throttle first."""
    reconciler: Reconciler = memo.reconciler
    leader: LeaderElector | None = getattr(memo, "leader", None)
    key = ClusterKey.of(body)
    shards: Shards | None = getattr(memo, "shards", None)
    warmth: Warmth | None = getattr(memo, "warmth", None)
    if warmth is not None:
        # Deleting, it has no daemon: it counts as present until its handler is done.
        warmth.seen(str(body["metadata"]["uid"]), Presence.DELETION)
    gate: Gate | None = leader if shards is None else ClusterGate(shards, body)
    if gate is not None and not gate.acting:
        # The cluster's acting replica restores the rate and removes the finalizer;
        # another must not call StemeDB, and must not let Kopf drop the finalizer.
        raise kopf.TemporaryError(
            "not the leader: the leader restores the rate" if shards is None else
            "another shard acts on this cluster: it restores the rate",
            delay=_retry_delay(gate.timings))
    try:
        if gate is None:
            done = await reconciler.restore_before_delete(body)
        else:
            done = await gate.guarded(reconciler.restore_before_delete(body))
            if done is None and not gate.acting:
                raise kopf.TemporaryError("stopped acting while restoring the rate",
                                          delay=gate.timings.retry_period)
    except SpecError as err:
        # Where to send the restore is part of the spec: an invalid one is never used.
        _post_event(body, EventType.WARNING.value, EventReason.RESTORE_ABANDONED,
                    f"cannot restore the ingestion rate: the spec is invalid "
                    f"({'; '.join(str(p) for p in err.problems)[:600]}); set it by "
                    f"hand to {_rate_to_restore(body)}")
        done = None
    except (StemeDBError, KubeError) as err:
        if runtime.total_seconds() < DELETE_GIVE_UP_SECONDS:
            if retry == 0:
                # Tell the human who ran `kubectl delete` why the object stays.
                _post_event(body, EventType.WARNING.value, EventReason.DELETION_HELD,
                            f"deletion held: the ingestion limit this operator set must be "
                            f"restored to {_rate_to_restore(body)} first, and that failed "
                            f"({err}); retrying every {DELETE_RETRY_SECONDS:.0f}s, giving "
                            f"up after {DELETE_GIVE_UP_SECONDS:.0f}s")
            raise kopf.TemporaryError(
                f"cannot restore the ingestion rate yet: {err}", delay=DELETE_RETRY_SECONDS
            ) from None
        _post_event(body, EventType.WARNING.value, EventReason.RESTORE_ABANDONED,
                    f"gave up restoring the ingestion rate after "
                    f"{DELETE_GIVE_UP_SECONDS:.0f}s: {err}; set it by hand to "
                    f"{_rate_to_restore(body)}")
        done = None
    if done:
        _post_event(body, EventType.NORMAL.value, EventReason.RATE_RESTORED, done)
    reconciler.forget(key)
    if shards is not None:
        shards.forget(str(body["metadata"]["uid"]))
    if warmth is not None:
        warmth.gone(str(body["metadata"]["uid"]), Presence.DELETION)


def _retry_delay(timings: LeaseTimings) -> float:
    """When a replica that may not act on a deletion looks again: about one retry
    period, jittered, so the replicas' retries (each a patch of the object) do not
    fall in step."""
    return timings.retry_period * random.uniform(0.5, 1.5)


def run(
    *,
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    metrics_port: int,
    health_port: int,
    max_actions_per_hour: int,
    destinations: DestinationPolicy | None = None,
    secret_label: tuple[str, str] | None = None,
    kubeconfig_file: str | None = None,
    context: str | None = None,
    alertmanager_urls: tuple[str, ...] = (),
    alertmanager_credentials: str | None = None,
    resend_seconds: float | None = None,
    leader_election: LeaderElection | None = None,
    sharding: Sharding | None = None,
) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    _Config.alertmanager_urls = alertmanager_urls
    _Config.alertmanager_credentials = alertmanager_credentials
    if resend_seconds is not None:
        _Config.timing = Timing(resend_seconds)
    _Config.kubeconfig_file = kubeconfig_file
    _Config.context = context
    _Config.leader_election = leader_election
    _Config.sharding = sharding
    _Config.destinations = Destinations(destinations)
    _Config.secret_label = secret_label
    metrics = OperatorMetrics()
    if metrics_port:
        start_http_server(metrics_port, registry=metrics.registry)
    _Config.max_actions_per_hour = max_actions_per_hour
    _Config.namespaces = namespaces
    # /healthz and /readyz: our own server (adapters/health.py), started by `configure`.
    memo = kopf.Memo(metrics=metrics, stop_flag=None, health_port=health_port)
    log.info("starting", namespaces=list(namespaces) or None, all_namespaces=all_namespaces,
             metrics_port=metrics_port, health_port=health_port,
             deny_destinations=[str(n) for n in _Config.destinations.policy.deny],
             allow_destinations=[str(n) for n in _Config.destinations.policy.allow] or None,
             secret_label="=".join(secret_label) if secret_label else None,
             alertmanagers=list(alertmanager_urls) or None)

    async def main() -> None:
        # Objects created at start-up live for the whole run; keep them out of
        # the cyclic GC's generations so its pauses stay short.
        gc.collect()
        gc.freeze()
        # Set by the leader election's signal handler once the Lease is released.
        memo.stop_flag = asyncio.Event()
        await kopf.operator(
            clusterwide=all_namespaces,
            namespaces=namespaces,
            standalone=True,  # Kopf's peering stays off: the Lease elects (design-decisions.md)
            memo=memo,
            stop_flag=memo.stop_flag,
        )

    try:
        asyncio.run(main())
    except kopf.LoginError as err:
        # Every credential the login produced was refused (a 401 for the same
        # token twice): retrying cannot help, and the traceback says nothing more.
        log.error("login refused", error=str(err))
        print("stemedb-operator run: login: the API server refused the credentials "
              "(HTTP 401 for the same login twice); check the token, the kubeconfig user "
              "or the ServiceAccount", file=sys.stderr)
        return 1
    return 0
