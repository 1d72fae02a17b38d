"""Model properties, checked against the closed-form physics in docs/simulator.md."""

from __future__ import annotations

import itertools

import pytest

from stemedb_sim import ClusterConfig, ClusterModel
from stemedb_sim.merkle import SyncState


def model(**kw: float) -> ClusterModel:
    cfg = ClusterConfig(load_jitter=0.0, **kw)  # type: ignore[arg-type]
    m = ClusterModel("demo", cfg, seed=1)
    m.advance_to(30)  # steady state
    return m


def lag(m: ClusterModel, replica: str = "node2") -> float:
    return m.replicas[replica].lag


@pytest.mark.parametrize(
    ("load", "capacity"),
    [(2000, 3000), (1000, 3000), (2500, 3000), (500, 4000)],
    ids=[
        "default load drains at half a second per second",
        "light load drains fast",
        "heavy load drains slowly",
        "big headroom drains fastest",
    ],
)
def test_tripped_breaker_makes_lag_grow_and_reset_drains_it(load: float, capacity: float) -> None:
    m = model(load=load, apply_capacity=capacity)
    m.add_fault({"kind": "breaker_trip", "replica": "node2"})
    t0 = m.t
    m.advance_to(t0 + 60)
    assert lag(m) == pytest.approx(60, abs=0.5)  # grows one second per second
    assert lag(m, "node3") < 0.5  # the other replica is untouched
    m.reset_breaker("agent-node2")
    before = lag(m)
    drain_slope = (capacity - load) / load  # the front advances at C/I ingest-seconds per second
    span = min(20.0, int(3.2 * before / drain_slope) / 4)  # inside the drain, on the grid
    m.advance_to(m.t + span)
    assert before - lag(m) == pytest.approx(span * drain_slope, abs=0.3)
    m.advance_to(m.t + 600)
    assert lag(m) < 0.5


@pytest.mark.parametrize(
    ("throttle", "lag_slope", "backlog_slope"),
    [(None, 0.4, 800), (1500, 0.2, 300), (1300, 1 - 1200 / 1300, 100), (1200, 0.0, 0)],
    ids=[
        "unthrottled load 2000 over saturated capacity 1200 grows lag 0.4 s/s",
        "throttled to 1500 grows lag 0.2 s/s",
        "throttled to 1300 grows lag 1-1200/1300 s/s",
        "throttled to capacity stops the growth",
    ],
)
def test_throttling_slows_lag_growth_exactly_as_the_physics_say(
    throttle: float | None, lag_slope: float, backlog_slope: float
) -> None:
    m = model(load=2000, apply_capacity=3000)
    m.set_rate_limit(throttle)
    m.add_fault({"kind": "disk_saturation", "replica": "node2", "capacity_factor": 0.4})
    m.advance_to(m.t + 10)  # settle
    lag0, back0 = lag(m), m.replicas["node2"].backlog.total
    m.advance_to(m.t + 100)
    assert (lag(m) - lag0) / 100 == pytest.approx(lag_slope, abs=0.005)
    assert (m.replicas["node2"].backlog.total - back0) / 100 == pytest.approx(backlog_slope, abs=1)


def test_throttling_below_saturated_capacity_drains_the_backlog() -> None:
    m = model()
    m.add_fault({"kind": "disk_saturation", "replica": "node2"})
    m.advance_to(m.t + 100)
    backlog = m.replicas["node2"].backlog.total
    assert backlog == pytest.approx(800 * 100, rel=0.01)
    m.set_rate_limit(1000)  # 200/s below the saturated capacity of 1200/s
    m.advance_to(m.t + 100)
    assert m.replicas["node2"].backlog.total == pytest.approx(backlog - 200 * 100, rel=0.01)


def progress_trace(m: ClusterModel, replica: str, seconds: float) -> list[tuple[str, float]]:
    out = []
    for _ in range(int(seconds / m.config.dt)):
        m.advance_to(m.t + m.config.dt)
        job = m.replicas[replica].sync
        assert job is not None
        out.append((job.sync_id, job.progress))
    return out


SYNC_SCENARIOS = [
    ("a clean sync of a big backlog", []),
    ("a stalled sync", [{"kind": "sync_stall", "at_progress": 0.3}]),
    ("a sync failing twice", [{"kind": "sync_failure", "times": 2, "at_progress": 0.5}]),
    ("a sync on a corrupted replica", [{"kind": "corruption"}]),
    ("a sync on a crash-looping replica", [{"kind": "crash_loop", "up_seconds": 3}]),
]


@pytest.mark.parametrize(("name", "faults"), SYNC_SCENARIOS, ids=[s[0] for s in SYNC_SCENARIOS])
def test_sync_progress_only_rises_within_a_sync(name: str, faults: list[dict]) -> None:
    m = model()
    m.add_fault({"kind": "breaker_trip", "replica": "node2"})
    m.advance_to(m.t + 60)  # ~120k missing assertions: a ~35 s sync at 2 MB/s
    for f in faults:
        m.add_fault({**f, "replica": "node2"})
    trace: list[tuple[str, float]] = []
    for _ in range(3):
        if m.replicas["node2"].up and not m.replicas["node2"].sync_running:
            m.start_sync("node2", True)
        trace += progress_trace(m, "node2", 60)
    for (id_a, p_a), (id_b, p_b) in itertools.pairwise(trace):
        if id_a == id_b:
            assert p_b >= p_a, f"progress fell within {id_a}: {p_a} -> {p_b}"
        assert 0.0 <= p_b <= 1.0


def test_clean_sync_reaches_one_and_repairs_the_backlog() -> None:
    m = model()
    m.add_fault({"kind": "breaker_trip", "replica": "node2"})
    m.advance_to(m.t + 60)
    job = m.start_sync("node2", True)
    expected = (4e6 + 120_000 * 512) / 2e6  # (tree overhead + data) / bandwidth, ~32.7 s
    m.advance_to(m.t + expected - 2)
    assert job.running and 0.8 < job.progress < 1.0
    m.advance_to(m.t + 4)
    assert job.state is SyncState.SUCCEEDED and job.progress == 1.0
    assert m.replicas["node2"].sync_durations.count == 1


def test_a_stalled_sync_freezes_progress_and_resumes_when_the_fault_stops() -> None:
    m = model()
    m.add_fault({"kind": "breaker_trip", "replica": "node2"})
    m.advance_to(m.t + 60)
    stall = m.add_fault({"kind": "sync_stall", "replica": "node2", "at_progress": 0.3})
    job = m.start_sync("node2", True)
    m.advance_to(m.t + 300)
    assert job.running and job.progress == pytest.approx(0.3)
    m.stop_fault(stall.id)
    m.advance_to(m.t + 60)
    assert job.state is SyncState.SUCCEEDED


def test_a_corrupted_replica_never_reports_a_clean_sync() -> None:
    m = model()
    m.add_fault({"kind": "corruption", "replica": "node2"})
    r = m.replicas["node2"]
    for i in range(5):
        job = m.start_sync("node2", True)
        for _ in range(400):
            m.advance_to(m.t + 0.25)
            assert r.sync_progress < 1.0
        assert job.state is SyncState.CORRUPTION, i
    assert r.corruption_detected_total == 5 and r.sync_errors_total == 5


def test_corruption_injected_mid_sync_still_ends_in_corruption() -> None:
    m = model()
    m.add_fault({"kind": "breaker_trip", "replica": "node2"})
    m.advance_to(m.t + 60)
    job = m.start_sync("node2", True)
    m.advance_to(m.t + 25)
    assert job.progress > 0.6
    m.add_fault({"kind": "corruption", "replica": "node2"})
    m.advance_to(m.t + 60)
    assert job.state is SyncState.CORRUPTION and job.progress < 1.0


def test_sync_failing_n_times_then_succeeds() -> None:
    m = model()
    m.add_fault({"kind": "sync_failure", "replica": "node2", "times": 2})
    states = []
    for _ in range(3):
        job = m.start_sync("node2", True)
        m.advance_to(m.t + 30)
        states.append(job.state)
    assert states == [SyncState.FAILED, SyncState.FAILED, SyncState.SUCCEEDED]
    assert m.replicas["node2"].sync_errors_total == 2


def test_crash_loop_during_sync_restarts_the_replica_and_fails_the_sync() -> None:
    m = model()
    m.add_fault({"kind": "crash_loop", "replica": "node2", "up_seconds": 5, "down_seconds": 10})
    m.add_fault({"kind": "breaker_trip", "replica": "node2"})
    m.advance_to(m.t + 30)  # 60k missing: the sync would take ~17 s
    assert m.replicas["node2"].restarts_total == 0  # only engages during a sync
    job = m.start_sync("node2", True)
    m.advance_to(m.t + 5.5)
    r = m.replicas["node2"]
    assert not r.up and job.state is SyncState.FAILED
    m.advance_to(m.t + 60)  # 15 s cycles: keeps crashing without another sync
    assert r.restarts_total == 4
    assert r.lag > 10


def test_primary_overload_makes_every_replica_lag() -> None:
    m = model()
    m.add_fault({"kind": "primary_overload", "send_capacity_factor": 0.1})
    m.advance_to(m.t + 60)
    # share = 20000 * 0.1 / 2 = 1000/s per stream < 2000/s load: slope 1 - 1000/2000
    assert lag(m, "node2") == pytest.approx(30, abs=0.5)
    assert lag(m, "node3") == pytest.approx(30, abs=0.5)


def test_flapping_lag_crosses_the_threshold_both_ways_repeatedly() -> None:
    m = model()
    m.add_fault({"kind": "flapping", "replica": "node2", "threshold_seconds": 10,
                 "amplitude_seconds": 3, "period_seconds": 60})
    m.advance_to(m.t + 30)
    above = []
    for _ in range(240):
        m.advance_to(m.t + 1)
        above.append(lag(m) > 10)
    crossings = sum(a != b for a, b in itertools.pairwise(above))
    assert crossings >= 7  # ~2 per 60 s period over 240 s
    assert 6 < lag(m) < 14


def test_a_transient_spike_recovers_by_itself() -> None:
    m = model()
    fault = m.add_fault({"kind": "transient_spike", "replica": "node2", "stall_seconds": 15})
    m.advance_to(m.t + 15)
    assert lag(m) == pytest.approx(15, abs=0.5)
    m.advance_to(m.t + 60)  # drains at 0.5 s/s: 30 s
    assert lag(m) < 0.5 and fault.state == "expired"


def test_network_latency_adds_its_delay_to_the_lag() -> None:
    m = model()
    m.add_fault({"kind": "network_latency", "replica": "node3", "delay_seconds": 4})
    m.advance_to(m.t + 30)
    assert lag(m, "node3") == pytest.approx(4.05, abs=0.3)


@pytest.mark.parametrize("seed", [1, 2], ids=["seed one", "seed two"])
def test_same_seed_and_schedule_give_identical_state(seed: int) -> None:
    def run(s: int) -> dict:
        m = ClusterModel("demo", ClusterConfig(load_jitter=0.1), seed=s)
        m.add_fault({"kind": "breaker_trip", "replica": "node2"})
        m.advance_to(50)
        m.reset_breaker("agent-node2")
        m.start_sync("node3", True)
        m.advance_to(130)
        return m.state_json()

    assert run(seed) == run(seed)
    assert run(seed)["ingested_total"] != run(seed + 10)["ingested_total"]


def test_lazy_stepping_in_one_jump_equals_many_small_steps() -> None:
    a, b = model(), model()
    for m in (a, b):
        m.add_fault({"kind": "disk_saturation", "replica": "node2"})
    a.advance_to(500)
    for t in range(31, 501):
        b.advance_to(t)
    assert a.state_json()["replicas"] == b.state_json()["replicas"]


def test_a_long_idle_gap_is_integrated_cheaply_and_sanely() -> None:
    m = model()
    m.add_fault({"kind": "disk_saturation", "replica": "node2"})
    m.advance_to(m.t + 86_400)  # a day, coarse grid-aligned steps
    assert lag(m) == pytest.approx(0.4 * 86_400, rel=0.01)
    assert lag(m, "node3") < 1
