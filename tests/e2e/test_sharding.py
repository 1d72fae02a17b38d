"""Several operator processes with `--sharding` split the clusters, never act on one
cluster at the same time, and take over a dead one's clusters.

The operators run as they ship (`stemedb-operator run --sharding`) under the
chart's ServiceAccount with the chart's sharding Role, against the real API server
and the simulator. Who polled what and when is read from each process's own log
(one `polled` line per poll, at debug level, with its wall-clock start and end);
who acts on what from `status.shard` and `kubectl get sdb`, and what each shard
has acknowledged from the `stemedb.io/ring-view` annotation on its Lease.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness import OPERATOR_NS, RELEASE, REPO, Env, Operator, fast_spec, wait_for
from prometheus_client.parser import text_string_to_metric_families

from controller.domain.sharding import RING_VIEW_ANNOTATION, owner
from localkube import ControlPlane
from localkube.processes import free_port

pytestmark = pytest.mark.e2e

CLUSTERS = 12


@pytest.fixture(scope="session")
def shard_role(control_plane: ControlPlane, bin_dir: Path, operator_identity: str) -> None:
    """The chart's sharding Role and RoleBinding, rendered and applied as shipped."""
    rendered = subprocess.run(
        [str(bin_dir / "helm"), "template", RELEASE, str(REPO / "charts" / "stemedb-operator"),
         "--namespace", OPERATOR_NS, "--set", "sharding.enabled=true",
         "--show-only", "templates/rbac.yaml"],
        check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered)
            if d and d["metadata"]["name"].endswith("-sharding")]
    assert {d["kind"] for d in docs} == {"Role", "RoleBinding"}
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": docs}))


@dataclass(frozen=True)
class Poll:
    cluster: str
    shard: str
    started: float
    ended: float


@dataclass
class Shard:
    name: str
    proc: Operator
    metrics_port: int

    def _logged(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of one event."""
        return [r for r in self.logged(f'"{event}"') if r.get("event") == event]

    def logged(self, containing: str = "") -> list[dict[str, Any]]:
        """Its JSON log lines (those containing `containing`), in order."""
        found = []
        for line in self.proc.logs().splitlines():
            if containing not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                found.append(rec)
        return found

    def polls(self) -> list[Poll]:
        return [Poll(r["name"], r["shard"], r["started"], r["ended"])
                for r in self._logged("polled")]

    def metric(self, name: str) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels.get("shard") == self.name:
                    return float(sample.value)
        return None


@dataclass
class Fleet:
    env: Env
    ring: str
    sim_clusters: list[str]
    shards: dict[str, Shard] = field(default_factory=dict)

    def start(self, name: str, *extra: str) -> Shard:
        port = free_port()
        proc = Operator.spawn(
            [str(Path(sys.executable).parent / "stemedb-operator"), "run",
             "--namespace", self.env.namespace, "--metrics-port", str(port),
             "--health-port", "0", "--log-format", "json", "--log-level", "debug",
             "--sharding", "--leader-election-namespace", OPERATOR_NS,
             "--shard-ring", self.ring, *extra],
            self.env.workdir / f"operator-{name}.log",
            env={**os.environ, "KUBECONFIG": str(self.env.kubeconfig), "POD_NAME": name})
        self.env.operators.append(proc)
        shard = self.shards[name] = Shard(name, proc, port)
        return shard

    def clusters(self) -> list[dict[str, Any]]:
        out = self.env.cp.kubectl("-n", self.env.namespace, "get", "stemedbclusters",
                                  "-o", "json").stdout
        return list(json.loads(out)["items"])

    def shown(self) -> dict[str, str | None]:
        """Each cluster's `status.shard`: the shard that acts on it, as it recorded."""
        return {c["metadata"]["name"]: (c.get("status") or {}).get("shard")
                for c in self.clusters()}

    def ring_says(self, members: list[str]) -> dict[str, str | None]:
        return {c["metadata"]["name"]: owner(c["metadata"]["uid"], members)
                for c in self.clusters()}

    def settled(self, members: list[str]) -> dict[str, str | None]:
        """Wait until every `status.shard` names the owner the ring gives `members`."""
        want = self.ring_says(members)
        wait_for(f"status.shard as the ring of {members} says", lambda: self.shown() == want,
                 timeout=60, interval=0.5)
        return want

    def polls(self) -> list[Poll]:
        return sorted((p for s in self.shards.values() for p in s.polls()),
                      key=lambda p: p.started)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.proc.logs()[-3000:]}" for s in self.shards.values())


@pytest.fixture
def fleet(env: Env, shard_role: None) -> Iterator[Fleet]:
    ring = f"e2e-{secrets.token_hex(3)}"
    sims = [f"{env.namespace}-c{i}" for i in range(CLUSTERS)]
    for i, sim in enumerate(sims):
        env.sim.sim("POST", "/clusters", {"name": sim, "replicas": 2, "load": 2000})
        env.apply(fast_spec(env.sim, sim), name=f"c{i}")
    f = Fleet(env, ring, sims)
    try:
        yield f
    finally:
        for s in f.shards.values():
            s.proc.stop()
        env.cp.kubectl("-n", OPERATOR_NS, "delete", "lease", "-l",
                       f"stemedb.io/shard-ring={ring}", "--ignore-not-found")
        for sim in sims:
            env.sim.sim("DELETE", f"/clusters/{sim}")


def _overlaps(polls: list[Poll]) -> list[tuple[Poll, Poll]]:
    """Pairs of polls of one cluster by two shards that ran at the same time."""
    found = []
    by_cluster: dict[str, list[Poll]] = {}
    for p in polls:
        by_cluster.setdefault(p.cluster, []).append(p)
    for mine in by_cluster.values():
        for i, a in enumerate(mine):
            for b in mine[i + 1:]:
                if a.shard != b.shard and a.started < b.ended and b.started < a.ended:
                    found.append((a, b))
    return found


def _pollers(polls: list[Poll], since: float, until: float = float("inf")) -> dict[str, set[str]]:
    """Which shards polled each cluster in a window of time."""
    found: dict[str, set[str]] = {}
    for p in polls:
        if since <= p.started < until:
            found.setdefault(p.cluster, set()).add(p.shard)
    return found


def _owner_switches(polls: list[Poll]) -> dict[str, int]:
    """How often each cluster's polls changed shard (A, A, B, B: once)."""
    last: dict[str, str] = {}
    switches: dict[str, int] = {}
    for p in polls:
        if p.cluster in last and last[p.cluster] != p.shard:
            switches[p.cluster] = switches.get(p.cluster, 0) + 1
        last[p.cluster] = p.shard
    return switches


def _joiner(fleet: Fleet, members: list[str]) -> str:
    """A name for the next shard with which the ring gives every member, itself
    included, at least one of the clusters."""
    for letter in "bcdefghijklmnopqrstuvwxyz":
        name = f"op-{letter}"
        if name in members:
            continue
        ring = list(fleet.ring_says([*members, name]).values())
        if all(ring.count(m) for m in (*members, name)):
            return name
    raise AssertionError(f"no shard name splits the clusters with {members}")


def test_shards_split_the_clusters_rebalance_and_take_over_without_overlap(
    fleet: Fleet,
) -> None:
    names = [f"c{i}" for i in range(CLUSTERS)]
    # The UIDs are random: name each joining shard so that the ring gives every
    # shard some of the 12 clusters (by chance one got none in about 1 run in 60).
    second = _joiner(fleet, ["op-a"])
    fleet.start("op-a")
    fleet.start(second)
    two = fleet.settled(["op-a", second])
    assert set(two.values()) == {"op-a", second}, two
    wait_for("every cluster polled", lambda: set(_pollers(fleet.polls(), 0)) == set(names),
             timeout=30)
    # `kubectl get sdb` shows the owner.
    table = fleet.env.cp.kubectl("-n", fleet.env.namespace, "get", "sdb").stdout.splitlines()
    at = table[0].index("SHARD")  # columns are aligned; empty cells are blank
    shown = {row.split()[0]: row[at:].split()[0] for row in table[1:]}
    assert shown == two
    # A metric per shard: how many clusters each acts on.
    wait_for("the shards' cluster gauges", lambda: {
        s: fleet.shards[s].metric("stemedb_operator_shard_clusters") for s in ("op-a", second)
    } == {s: float(list(two.values()).count(s)) for s in ("op-a", second)}, timeout=10)
    steady = time.time()
    wait_for("a few polls of each cluster", lambda: all(
        len([p for p in fleet.polls() if p.cluster == n and p.started > steady]) >= 3
        for n in names), timeout=30)
    # Each cluster is polled by its owner only.
    assert {c: {two[c]} for c in names} == _pollers(fleet.polls(), steady)

    # A third shard joins: only the clusters the ring gives it move, each once.
    third = _joiner(fleet, ["op-a", second])
    joined = time.time()
    fleet.start(third)
    three = fleet.settled(["op-a", second, third])
    moved = {c for c in names if three[c] != two[c]}
    assert moved and all(three[c] == third for c in moved), three
    # It joined (its Lease made it a member) only once a daemon ran for every
    # cluster: the others drop the moved clusters as soon as they see it.
    events = [r.get("event") for r in fleet.shards[third].logged()]
    warm = "every cluster's daemon started: joining the shard ring"
    assert warm in events and events.index(warm) < events.index("leading: acting"), events
    counted = fleet.shards[third]._logged(warm)[0]
    assert counted["present"] >= counted["clusters"] >= CLUSTERS, counted
    after_join = time.time()
    wait_for("the moved clusters polled by the new shard", lambda: all(
        third in _pollers(fleet.polls(), after_join).get(c, set()) for c in moved), timeout=30)
    polls = fleet.polls()
    rebalance = _pollers(polls, joined)
    assert all(rebalance[c] == {two[c]} for c in names if c not in moved), rebalance
    assert all(rebalance[c] <= {two[c], third} for c in moved), rebalance
    assert all(n == 1 for n in _owner_switches(
        [p for p in polls if p.started >= joined]).values())

    # A shard is killed: its clusters go to the others once its Lease expires.
    victim = max(("op-a", second), key=list(three.values()).count)
    lost = {c for c in names if three[c] == victim}
    assert lost, three
    killed = time.time()
    os.killpg(fleet.shards[victim].proc.pid, signal.SIGKILL)
    wait_for("the killed shard's clusters polled by the others", lambda: all(
        _pollers(fleet.polls(), killed).get(c, set()) - {victim} for c in lost),
        timeout=40, interval=0.5)
    taken = max(min(p.started for p in fleet.polls()
                    if p.cluster == c and p.started >= killed and p.shard != victim)
                for c in lost)
    # No write per cluster stands between the Lease's expiry and the survivors' polls.
    assert taken - killed <= 20.0, f"took {taken - killed:.1f}s\n{fleet.logs()}"
    # No survivor acted before the Lease expired (its last renewal was sent at most a
    # retry period and a slow write before the kill): from its renew deadline to its
    # expiry the killed shard's clusters wait, the margin for its work in flight.
    for c in lost:
        first = min(p.started for p in fleet.polls()
                    if p.cluster == c and p.started >= killed and p.shard != victim)
        assert first >= killed - 3.0 + 15.0, f"{c} polled {first - killed:.1f}s after the kill"
    after = fleet.settled([m for m in ("op-a", second, third) if m != victim])
    assert all(after[c] == three[c] for c in names if c not in lost)

    everything = fleet.polls()
    assert _overlaps(everything) == [], fleet.logs()


def test_a_stopped_shard_hands_its_clusters_over_at_once(fleet: Fleet) -> None:
    """SIGTERM releases the shard's Lease: the others see it released on their
    next read of the ring (every second), not after 15 s."""
    second = _joiner(fleet, ["op-a"])
    fleet.start("op-a")
    fleet.start(second)
    two = fleet.settled(["op-a", second])
    lost = {c for c, s in two.items() if s == "op-a"}
    wait_for("the second shard polling", lambda: fleet.shards[second].polls(), timeout=30)
    stopped = time.time()
    os.killpg(fleet.shards["op-a"].proc.pid, signal.SIGTERM)
    wait_for("the second shard polling op-a's clusters", lambda: all(
        second in _pollers(fleet.polls(), stopped).get(c, set()) for c in lost),
        timeout=20, interval=0.2)
    first = max(min(p.started for p in fleet.polls()
                    if p.cluster == c and p.shard == second and p.started >= stopped)
                for c in lost)
    assert first - stopped <= 5.0, f"took {first - stopped:.1f}s\n{fleet.logs()}"
    assert fleet.shards["op-a"].proc.proc.wait(timeout=30) == 0
    assert _overlaps(fleet.polls()) == [], fleet.logs()
    fleet.settled([second])


def test_only_the_owner_finishes_a_deletion(fleet: Fleet) -> None:
    fleet.start("op-a")
    fleet.start("op-b")
    fleet.settled(["op-a", "op-b"])
    # The owner finishes each at once: the other shard's retries of on.delete keep
    # their own Kopf state and never delay it (when they shared one annotation, the
    # two retried in lockstep and a deletion could wait until a shard stopped).
    for name in ("c0", "c1", "c2"):
        deleted = fleet.env.cp.kubectl("-n", fleet.env.namespace, "delete", "stemedbcluster",
                                       name, "--timeout=15s", check=False)
        assert deleted.returncode == 0, deleted.stderr + fleet.logs()
    left = {c["metadata"]["name"] for c in fleet.clusters()}
    assert not left & {"c0", "c1", "c2"}


def test_clusters_deleted_as_their_shard_stops_are_finished_by_the_survivors(
        fleet: Fleet) -> None:
    """The survivors finish each deleting cluster in on.delete as soon as the ring
    gives it to them, while every replica's retries patch it (with a fixed retry
    delay those retries once fell in step: 2.7-8.5 s per deletion with three shards;
    with two, a deletion waited until a shard stopped)."""
    second = _joiner(fleet, ["op-a"])
    members = ["op-a", second, _joiner(fleet, ["op-a", second])]
    for name in members:
        fleet.start(name)
    three = fleet.settled(members)
    lost = sorted(c for c, s in three.items() if s == "op-a")
    assert lost, three
    os.killpg(fleet.shards["op-a"].proc.pid, signal.SIGTERM)
    for name in lost:
        fleet.env.cp.kubectl("-n", fleet.env.namespace, "delete", "stemedbcluster", name,
                             "--wait=false")
    wait_for("the survivors finishing op-a's deletions", lambda: not (
        {c["metadata"]["name"] for c in fleet.clusters()} & set(lost)),
        timeout=15, interval=0.2)
    assert fleet.shards["op-a"].proc.proc.wait(timeout=30) == 0


def test_the_lease_of_a_shard_gone_for_good_is_deleted(fleet: Fleet) -> None:
    """Every rollout names new Pods, so a stopped replica's Lease would stay for
    ever: a live shard deletes it once it has stayed released (or expired),
    unchanged, for --shard-lease-gc-seconds, under the chart's Role."""
    fleet.start("op-a", "--shard-lease-gc-seconds", "3")
    fleet.start("op-b")
    fleet.settled(["op-a", "op-b"])

    def leases() -> set[str]:
        out = fleet.env.cp.kubectl("-n", OPERATOR_NS, "get", "leases", "-l",
                                   f"stemedb.io/shard-ring={fleet.ring}", "-o", "json")
        return {item["metadata"]["name"] for item in json.loads(out.stdout)["items"]}

    assert leases() == {f"{fleet.ring}-shard-op-a", f"{fleet.ring}-shard-op-b"}
    os.killpg(fleet.shards["op-b"].proc.pid, signal.SIGTERM)
    assert fleet.shards["op-b"].proc.proc.wait(timeout=30) == 0
    wait_for("op-b's released Lease deleted", lambda: leases() == {
        f"{fleet.ring}-shard-op-a"}, timeout=20, interval=0.5)
    assert "deleted a gone shard's Lease" in fleet.shards["op-a"].proc.logs()
    fleet.settled(["op-a"])


def _acknowledged(fleet: Fleet) -> dict[str, dict[str, str]]:
    """Each shard Lease's acknowledgement, and each shard's acquireTime under "@"."""
    out = fleet.env.cp.kubectl("-n", OPERATOR_NS, "get", "leases", "-l",
                               f"stemedb.io/shard-ring={fleet.ring}", "-o", "json")
    found = {}
    for item in json.loads(out.stdout)["items"]:
        who = item["spec"].get("holderIdentity") or ""
        view = (item["metadata"].get("annotations") or {}).get(RING_VIEW_ANNOTATION)
        found[who] = {**json.loads(view or "{}"), "@": item["spec"].get("acquireTime", "")}
    return found


def test_each_shard_acknowledges_the_others_current_life_on_its_lease(fleet: Fleet) -> None:
    """What lets a shard act is visible with kubectl: every other member's Lease
    names it with its own Lease's acquireTime."""
    fleet.start("op-a")
    fleet.start("op-b")
    fleet.settled(["op-a", "op-b"])

    def mutual() -> bool:
        acks = _acknowledged(fleet)
        return set(acks) == {"op-a", "op-b"} and all(
            acks[x].get(y) == acks[y]["@"] for x in acks for y in acks)

    wait_for("each Lease acknowledging both shards' lives", mutual, timeout=10)


def test_a_replica_that_does_not_acknowledge_holds_the_others_back(fleet: Fleet) -> None:
    """A member whose Lease carries no acknowledgement (a replica of the version
    before them, during a rolling update) is never acted around: the others stop
    acting and say why, and go on once it has stopped."""
    fleet.start("op-a")
    fleet.settled(["op-a"])
    lease = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": f"{fleet.ring}-shard-op-old", "namespace": OPERATOR_NS,
                     "labels": {"stemedb.io/shard-ring": fleet.ring},
                     "annotations": {"stemedb.io/renew-deadline-seconds": "10"}},
        "spec": {"holderIdentity": "op-old", "leaseDurationSeconds": 15,
                 "acquireTime": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}",
                 "renewTime": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"}}
    joined = time.time()
    fleet.env.cp.kubectl("apply", "-f", "-", input=json.dumps(lease))
    wait_for("op-a waiting for op-old", lambda: fleet.shards["op-a"].metric(
        "stemedb_operator_shard_clusters") == 0, timeout=10, interval=0.2)
    held = time.time()
    assert "a replica of a version without stemedb.io/ring-view" in \
        fleet.shards["op-a"].proc.logs()
    # op-old never renews: out of the ring 10 s after it joined, its clusters held
    # until 15 s; then op-a polls every cluster again.
    wait_for("op-a acting on every cluster again", lambda: fleet.shards["op-a"].metric(
        "stemedb_operator_shard_clusters") == CLUSTERS, timeout=30, interval=0.5)
    assert time.time() - joined >= 15.0 - 1.0
    # Nothing polled while op-old was a member with no acknowledgement.
    blocked = [p for p in fleet.polls() if held < p.started < joined + 10.0]
    assert blocked == [], blocked
