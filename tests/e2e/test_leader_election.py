"""Two operator processes, one Lease: one acts, the other stands by and takes over.

The operators run as they ship (`stemedb-operator run --leader-election`) under the
chart's ServiceAccount with the chart's Lease Role, against the real API server and
the simulator. "Acting" is read from each process's own metrics: its requests to StemeDB
(`stemedb_operator_stemedb_requests_total`: a poll's scrapes, admin calls) and
`stemedb_operator_leader`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml
from harness import OPERATOR_NS, RELEASE, REPO, Env, Operator, events, fast_spec, wait_for
from prometheus_client.parser import text_string_to_metric_families

from localkube import ControlPlane
from localkube.processes import free_port
from localkube.relay import Relay

pytestmark = pytest.mark.e2e

LEASE = f"{RELEASE}-stemedb-operator-leader"
ELECTION_ARGS = ("--leader-election", "--leader-election-namespace", OPERATOR_NS,
                 "--leader-election-id", LEASE)


@pytest.fixture(scope="session")
def lease_role(control_plane: ControlPlane, bin_dir: Path, operator_identity: str) -> None:
    """The chart's leader-election Role and RoleBinding, rendered and applied as shipped."""
    rendered = subprocess.run(
        [str(bin_dir / "helm"), "template", RELEASE, str(REPO / "charts" / "stemedb-operator"),
         "--namespace", OPERATOR_NS, "--show-only", "templates/rbac.yaml"],
        check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered)
            if d and d["metadata"]["name"].endswith("-leader-election")]
    assert {d["kind"] for d in docs} == {"Role", "RoleBinding"}
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": docs}))


@dataclass
class Replica:
    """One operator process with leader election, its identity and its metrics."""

    name: str
    proc: Operator
    metrics_port: int

    def metrics(self) -> dict[str, float]:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return {}
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in ("stemedb_operator_leader",
                                   "stemedb_operator_stemedb_requests_total"):
                    found[sample.name] = found.get(sample.name, 0.0) + sample.value
        return found

    def polls(self) -> float:
        """Requests to StemeDB so far (each poll makes some)."""
        return self.metrics().get("stemedb_operator_stemedb_requests_total", 0.0)

    def leading(self) -> bool:
        return self.metrics().get("stemedb_operator_leader") == 1.0


@dataclass
class Pair:
    env: Env
    replicas: dict[str, Replica] = field(default_factory=dict)

    def start(self, name: str, kubeconfig: Path | None = None, health_port: int = 0) -> Replica:
        port = free_port()
        proc = Operator.spawn(
            [str(Path(sys.executable).parent / "stemedb-operator"), "run",
             "--namespace", self.env.namespace, "--metrics-port", str(port),
             "--health-port", str(health_port), "--log-format", "json", *ELECTION_ARGS],
            self.env.workdir / f"operator-{name}.log",
            env={**os.environ, "KUBECONFIG": str(kubeconfig or self.env.kubeconfig),
                 "POD_NAME": name})
        self.env.operators.append(proc)
        replica = self.replicas[name] = Replica(name, proc, port)
        return replica

    def holder(self) -> str | None:
        out = self.env.cp.kubectl("-n", OPERATOR_NS, "get", "lease", LEASE, "-o",
                                  "jsonpath={.spec.holderIdentity}", check=False)
        return out.stdout.strip() or None if out.returncode == 0 else None

    def leader(self) -> Replica:
        name = wait_for("a leader", lambda: self.holder() in self.replicas and self.holder())
        replica = self.replicas[name]
        wait_for(f"{name} polling", lambda: replica.polls() >= 2, timeout=30)
        return replica

    def other(self, replica: Replica) -> Replica:
        return next(r for r in self.replicas.values() if r is not replica)

    def logs(self) -> str:
        return "\n".join(f"--- {r.name}\n{r.proc.logs()[-4000:]}" for r in self.replicas.values())


@pytest.fixture
def pair(env: Env, lease_role: None) -> Iterator[Pair]:
    env.cp.kubectl("-n", OPERATOR_NS, "delete", "lease", LEASE, "--ignore-not-found")
    env.apply(fast_spec(env.sim, env.cluster))
    p = Pair(env)
    yield p
    for r in p.replicas.values():
        r.proc.stop()
    env.cp.kubectl("-n", OPERATOR_NS, "delete", "lease", LEASE, "--ignore-not-found")


def test_a_replica_is_ready_and_competes_only_once_every_cluster_has_a_daemon(
    pair: Pair,
) -> None:
    """The chart's probes as the kubelet sends them: `/healthz` while the process
    runs, `/readyz` only once warm, and the Lease is competed for only after that
    (a cold leader would leave every cluster unpolled until its daemons exist)."""
    health = free_port()
    replica = pair.start("op-a", health_port=health)

    def answer(path: str) -> int | None:
        try:
            return httpx.get(f"http://127.0.0.1:{health}{path}", timeout=5).status_code
        except httpx.HTTPError:
            return None

    wait_for("/healthz answering", lambda: answer("/healthz") == 200)
    wait_for("/readyz ready", lambda: answer("/readyz") == 200)
    assert pair.leader() is replica
    lines = [json.loads(line).get("event", "") for line in replica.proc.logs().splitlines()
             if line.startswith("{")]
    warm = lines.index("every cluster's daemon started: competing for the leader Lease")
    assert warm < lines.index("leading: acting"), pair.logs()
    assert answer("/nothing") == 404


def test_one_replica_acts_and_the_other_stands_by(pair: Pair) -> None:
    pair.start("op-a")
    pair.start("op-b")
    leader = pair.leader()
    standby = pair.other(leader)
    wait_for("a status written by the leader",
             lambda: (pair.env.get().get("status") or {}).get("conditions"))
    # The standby has been up as long as the leader has polled a few more times.
    before = leader.polls()
    wait_for("more polls by the leader", lambda: leader.polls() >= before + 3, timeout=30)
    assert leader.leading()
    assert standby.metrics().get("stemedb_operator_leader") == 0.0, pair.logs()
    assert standby.polls() == 0, "the standby polled StemeDB"
    assert pair.holder() == leader.name


@pytest.mark.parametrize(
    ("how", "sig", "within"),
    [
        # Released on SIGTERM: the standby's next attempt (every 2 s) takes it.
        ("a planned stop", signal.SIGTERM, 5.0),
        # A crash leaves the Lease held: the standby waits out its 15 s.
        ("a crash", signal.SIGKILL, 22.0),
    ],
)
def test_the_standby_takes_over_when_the_leader_goes(
    pair: Pair, how: str, sig: signal.Signals, within: float
) -> None:
    pair.start("op-a")
    pair.start("op-b")
    leader = pair.leader()
    standby = pair.other(leader)
    wait_for("the standby serving metrics", lambda: standby.metrics(), timeout=30)

    started = time.monotonic()
    os.killpg(leader.proc.pid, sig)
    wait_for(f"the standby polling after {how}", lambda: standby.polls() > 0,
             timeout=within + 10, interval=0.1)
    took = time.monotonic() - started
    assert took <= within, f"took {took:.1f}s after {how}\n{pair.logs()}"
    assert pair.holder() == standby.name
    if sig is signal.SIGTERM:
        assert leader.proc.proc.wait(timeout=30) == 0
        # Released by our signal handler (before Kopf stops), not by the cleanup.
        assert "signal received: releasing the Lease" in leader.proc.logs()
        assert "released the Lease" in leader.proc.logs()


def test_a_leader_whose_lease_is_taken_stops_acting_at_once(pair: Pair) -> None:
    leader = pair.start("op-a")
    assert pair.leader() is leader
    # A merge patch carries no resourceVersion: it wins over the leader's renewals.
    pair.env.cp.kubectl("-n", OPERATOR_NS, "patch", "lease", LEASE, "--type=merge", "-p",
                        json.dumps({"spec": {"holderIdentity": "someone-else",
                                             "leaseDurationSeconds": 3600}}))

    # Its next attempt (within one retry period) sees another holder.
    wait_for("the leader standing down", lambda: not leader.leading(), timeout=6)
    stopped = leader.polls()
    wait_for("three more polls' time", _elapsed(3.0), timeout=10)
    assert leader.polls() == stopped, "it kept polling without the Lease"
    assert "stopped acting" in leader.proc.logs()


def _elapsed(seconds: float) -> Any:
    """A probe that turns true once `seconds` have passed (for "nothing happens for
    a while" checks, polled like every other wait)."""
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end


def test_a_leader_cut_off_from_the_api_server_stops_before_the_standby_starts(
    pair: Pair, tmp_path: Path
) -> None:
    server = urlparse(pair.env.cp.server)
    relay = Relay((server.hostname or "127.0.0.1", server.port or 443))
    try:
        cut_kubeconfig = tmp_path / "via-relay.kubeconfig"
        cut_kubeconfig.write_text(pair.env.kubeconfig.read_text().replace(
            pair.env.cp.server, f"https://127.0.0.1:{relay.port}"))
        leader = pair.start("op-a", kubeconfig=cut_kubeconfig)
        assert pair.leader() is leader
        standby = pair.start("op-b")
        wait_for("the standby serving metrics", lambda: standby.metrics(), timeout=30)

        relay.cut()
        cut_at = time.monotonic()
        samples: list[tuple[float, float, float]] = []

        def sample() -> bool:
            samples.append((time.monotonic() - cut_at, leader.polls(), standby.polls()))
            return samples[-1][2] > 0

        wait_for("the standby taking over", sample, timeout=40, interval=0.2)
        first_standby = next(t for t, _, b in samples if b > 0)
        # The cut-off leader is fenced by its renew deadline (10 s after its last
        # renewal, itself at most 2 s before the cut), long before the standby
        # may take a Lease it sees unrenewed for 15 s.
        stopped = min(t for t, a, _ in samples if a == samples[-1][1])
        assert stopped <= 12.5, f"the cut-off leader polled until {stopped:.1f}s"
        assert first_standby > stopped, samples
        assert first_standby <= 22.0, f"the standby took {first_standby:.1f}s"
    finally:
        relay.close()


def test_a_leader_cut_off_and_reconnected_goes_on_from_what_its_successor_did(
    pair: Pair, tmp_path: Path
) -> None:
    """The partition ends and the old leader stands by; when it leads again, it goes on
    from the status its successor wrote meanwhile (read from the API server, not from
    its own last write or a watch still reconnecting): the successor's throttle is
    lifted back to unlimited in the end, and no reset or sync is sent twice."""
    env = pair.env
    server = urlparse(env.cp.server)
    relay = Relay((server.hostname or "127.0.0.1", server.port or 443))
    try:
        via_relay = tmp_path / "via-relay.kubeconfig"
        via_relay.write_text(env.kubeconfig.read_text().replace(
            env.cp.server, f"https://127.0.0.1:{relay.port}"))
        first = pair.start("op-a", kubeconfig=via_relay)
        assert pair.leader() is first
        env.wait_status("a healthy status written by op-a", lambda o: any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (o.get("status") or {}).get("conditions", [])))
        second = pair.start("op-b")
        wait_for("op-b serving metrics", lambda: second.metrics(), timeout=30)

        relay.cut()
        wait_for("op-b acting", lambda: second.polls() > 0, timeout=40)
        disk = env.fault("disk_saturation", replica="node2", capacity_factor=0.4)
        wait_for("op-b's throttle", lambda: env.sim.state(env.cluster)["rate_limit"]
                 is not None, timeout=90)
        relay.heal()
        os.killpg(second.proc.pid, signal.SIGTERM)  # released: op-a takes it over
        wait_for("op-a leading again", first.leading, timeout=30)
        env.clear_fault(disk)
        env.wait_status("recovered, the throttle lifted", lambda o: (
            (o["status"].get("throttle") or {}).get("phase") == "None"
            and env.sim.state(env.cluster)["rate_limit"] is None), timeout=150)
    finally:
        relay.close()
    rates = [c["body"]["max_assertions_per_sec"] for c in env.writes()
             if c["endpoint"].endswith("/rate-limit")]
    assert rates[-1] is None, rates
    repeated = [call for call, n in Counter(map(str, _non_idempotent(pair))).items() if n > 1]
    assert not repeated, pair.logs()


# The runbook's non-idempotent admin calls: sent twice, a reset or a sync acts twice.
NON_IDEMPOTENT = ("/v1/admin/circuit-breaker/reset", "/v1/admin/cluster/sync")


def _non_idempotent(pair: Pair) -> list[tuple[str, Any]]:
    """(endpoint, body) of every reset and sync request the simulator received."""
    return [(c["endpoint"].rsplit("/v1/admin/", 1)[-1], c["body"]) for c in pair.env.writes()
            if c["endpoint"].endswith(NON_IDEMPOTENT)]


@pytest.mark.parametrize("kill_after", [
    pytest.param("circuit-breaker/reset", id="killed right after the breaker reset"),
    pytest.param("cluster/sync", id="killed while the forced sync runs"),
])
def test_a_leader_killed_mid_remediation_is_succeeded_without_a_repeated_action(
    pair: Pair, kill_after: str,
) -> None:
    """Two non-idempotent steps, a breaker reset and then a forced sync; the leader is
    killed right after one of them. The new leader reads the step in progress from
    status and goes on from there: the simulator's admin log shows each request once."""
    env = pair.env
    # A slow Merkle sync (4 MB of tree at 100 kB/s: 40 s) runs across the takeover.
    env.sim.sim("DELETE", f"/clusters/{env.cluster}")
    env.sim.sim("POST", "/clusters", {"name": env.cluster, "replicas": 2,
                                      "sync_bandwidth": 100_000})
    env.apply(fast_spec(env.sim, env.cluster, remediation={
        "throttle": {"enabled": False},
        "merkleSync": {"timeoutSeconds": 90, "stallTimeoutSeconds": 30, "maxAttempts": 2}}))
    pair.start("op-a")
    pair.start("op-b")
    leader = pair.leader()
    standby = pair.other(leader)
    env.fault("breaker_trip", replica="node2")
    disk = env.fault("disk_saturation", replica="node2", capacity_factor=0.3)
    wait_for(f"a {kill_after} request", lambda: any(
        endpoint == kill_after for endpoint, _ in _non_idempotent(pair)), timeout=90)
    os.killpg(leader.proc.pid, signal.SIGKILL)
    wait_for("the standby acting", lambda: standby.polls() > 0, timeout=30)
    if kill_after == "cluster/sync":
        sync = env.sim.state(env.cluster)["replicas"]["node2"]["sync"]
        assert sync["state"] == "running", f"the sync ended before the takeover: {sync}"
    wait_for("the forced sync", lambda: any(
        endpoint == "cluster/sync" for endpoint, _ in _non_idempotent(pair)), timeout=90)
    env.clear_fault(disk)
    env.wait_status("recovery under the new leader", lambda o: any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in o["status"].get("conditions", [])), timeout=150)
    notes = [(e["reason"], e["message"]) for e in events(env.cp, env.namespace, "db")]
    assert _non_idempotent(pair) == [
        ("circuit-breaker/reset", {"agent_id": "agent-node2"}),
        ("cluster/sync", {"replica_id": "node2", "force": True}),
    ], notes


def test_a_deletion_with_two_replicas_is_finished_by_the_leader(pair: Pair) -> None:
    pair.start("op-a")
    pair.start("op-b")
    pair.leader()
    deleted = pair.env.cp.kubectl("-n", pair.env.namespace, "delete", "stemedbcluster", "db",
                                  "--timeout=30s", check=False)
    assert deleted.returncode == 0, deleted.stderr + pair.logs()
    gone = pair.env.cp.kubectl("-n", pair.env.namespace, "get", "stemedbcluster", "db",
                               check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
