"""Contract tests via a real HTTP client against a real in-process server (stemedb-api.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.sim.conftest import RunningSim

PRIMARY_FAMILIES = {
    "stemedb_replication_lag_seconds": "gauge",
    "stemedb_assertions_indexed": "counter",
    "stemedb_merkle_sync_progress": "gauge",
    "stemedb_merkle_sync_errors": "counter",
    "stemedb_merkle_sync_duration_seconds": "histogram",
    "stemedb_network_bytes_sent": "counter",
    "stemedb_rate_limit_assertions_per_sec": "gauge",
    "stemedb_merkle_sync_running": "gauge",
    "stemedb_merkle_sync_corruption_detected": "counter",
    "stemedb_replica_up": "gauge",
    "stemedb_replica_restarts": "counter",
    "stemedb_circuit_breaker_tripped": "gauge",
    "stemedb_replication_backlog_assertions": "gauge",
}


async def scrape(rs: RunningSim, node: str = "node1") -> dict[tuple[str, tuple], float]:
    r = await rs.client.get(f"{rs.node(node)}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def lag(samples: dict, replica: str) -> float:
    return samples[("stemedb_replication_lag_seconds", (("replica", replica),))]


async def test_primary_metrics_have_every_documented_family_with_a_series_per_replica(
    running: RunningSim,
) -> None:
    await running.advance(30)
    r = await running.client.get(f"{running.node('node1')}/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name, typ in PRIMARY_FAMILIES.items():
        assert fams[name].type == typ, name
    assert "# HELP stemedb_replication_lag_seconds" in r.text
    for name in ("stemedb_replication_lag_seconds", "stemedb_merkle_sync_progress"):
        assert {s.labels["replica"] for s in fams[name].samples} == {"node2", "node3"}
    samples = await scrape(running)
    assert samples[("stemedb_rate_limit_assertions_per_sec", ())] == -1  # unlimited
    assert samples[("stemedb_assertions_indexed_total", ())] == 60_000


async def test_replica_metrics_count_applied_assertions(running: RunningSim) -> None:
    await running.advance(30)
    primary = await scrape(running)
    replica = await scrape(running, "node2")
    applied = replica[("stemedb_assertions_indexed_total", ())]
    assert 0 < primary[("stemedb_assertions_indexed_total", ())] - applied <= 200  # 0.05 s delay


async def test_a_breaker_trip_shows_in_metrics_and_the_tripped_list_and_reset_drains_it(
    running: RunningSim,
) -> None:
    c, base = running.client, running.node("node1")
    r = await c.post(f"{running.base}/sim/v1/clusters/demo/faults",
                     json={"kind": "breaker_trip", "replica": "node2", "reason": "too many errors"})
    assert r.status_code == 201
    await running.advance(30)
    assert lag(await scrape(running), "node2") == pytest.approx(30, abs=0.5)
    tripped = (await c.get(f"{base}/v1/admin/circuit-breakers/tripped")).json()
    assert [(t["agent_id"], t["replica_id"], t["reason"]) for t in tripped] == [
        ("agent-node2", "node2", "too many errors")]
    assert tripped[0]["tripped_at"].endswith("Z")
    r = await c.post(f"{base}/v1/admin/circuit-breaker/reset", json={"agent_id": "agent-node2"})
    assert r.status_code == 200
    assert r.json() == {"agent_id": "agent-node2", "replica_id": "node2", "was_tripped": True}
    r = await c.post(f"{base}/v1/admin/circuit-breaker/reset", json={"agent_id": "agent-node2"})
    assert r.json()["was_tripped"] is False
    assert (await c.get(f"{base}/v1/admin/circuit-breakers/tripped")).json() == []
    await running.advance(20)
    assert lag(await scrape(running), "node2") == pytest.approx(20, abs=0.5)  # 30 - 20 * 0.5


async def test_rate_limit_is_set_read_back_and_removed(running: RunningSim) -> None:
    c, url = running.client, f"{running.node('node1')}/v1/admin/rate-limit"
    assert (await c.get(url)).json() == {"max_assertions_per_sec": None}
    r = await c.post(url, json={"max_assertions_per_sec": 1000})
    assert r.status_code == 200
    assert r.json() == {"max_assertions_per_sec": 1000, "previous_max_assertions_per_sec": None}
    assert (await c.get(url)).json() == {"max_assertions_per_sec": 1000}
    await running.advance(10)
    samples = await scrape(running)
    assert samples[("stemedb_rate_limit_assertions_per_sec", ())] == 1000
    assert samples[("stemedb_assertions_indexed_total", ())] == 10_000
    r = await c.post(url, json={"max_assertions_per_sec": None})
    assert r.json()["previous_max_assertions_per_sec"] == 1000
    assert (await scrape(running))[("stemedb_rate_limit_assertions_per_sec", ())] == -1


async def test_forced_sync_is_accepted_conflicts_while_running_and_reports_progress(
    running: RunningSim,
) -> None:
    c, base = running.client, running.node("node1")
    await c.post(f"{running.base}/sim/v1/clusters/demo/faults",
                 json={"kind": "breaker_trip", "replica": "node2"})
    await running.advance(60)
    body = {"replica_id": "node2", "force": True}
    r = await c.post(f"{base}/v1/admin/cluster/sync", json=body)
    assert r.status_code == 202
    sync_id = r.json()["sync_id"]
    assert r.json()["state"] == "running"
    r = await c.post(f"{base}/v1/admin/cluster/sync", json=body)
    assert r.status_code == 409
    assert r.json()["error"] == {"code": "sync_already_running", "sync_id": sync_id,
                                 "message": "a sync of node2 is already running"}
    seen = []
    for _ in range(8):
        await running.advance(5)
        s = await scrape(running)
        seen.append(s[("stemedb_merkle_sync_progress", (("replica", "node2"),))])
    assert seen == sorted(seen) and seen[0] > 0 and seen[-1] == 1.0
    status = (await c.get(f"{base}/v1/admin/cluster/sync/{sync_id}")).json()
    assert status["state"] == "succeeded" and status["progress"] == 1.0
    assert s[("stemedb_merkle_sync_duration_seconds_count", (("replica", "node2"),))] == 1


BAD_REQUESTS: list[tuple[str, str, str, Any, int, str]] = [
    # (id, method, node-relative path, body (bytes = raw), status, error code)
    ("rate limit with malformed JSON is 400", "POST", "/v1/admin/rate-limit", b"{nope", 400,
     "invalid_json"),
    ("rate limit with a JSON array is 400", "POST", "/v1/admin/rate-limit", [1000], 400,
     "invalid_json"),
    ("rate limit with an empty body is 400", "POST", "/v1/admin/rate-limit", b"", 400,
     "invalid_json"),
    ("rate limit without the field is 400", "POST", "/v1/admin/rate-limit", {"rate": 5}, 400,
     "invalid_body"),
    ("rate limit as a string is 400", "POST", "/v1/admin/rate-limit",
     {"max_assertions_per_sec": "1000"}, 400, "invalid_body"),
    ("rate limit as a boolean is 400", "POST", "/v1/admin/rate-limit",
     {"max_assertions_per_sec": True}, 400, "invalid_body"),
    ("negative rate limit is 400", "POST", "/v1/admin/rate-limit",
     {"max_assertions_per_sec": -5}, 400, "invalid_body"),
    ("sync without replica_id is 400", "POST", "/v1/admin/cluster/sync", {"force": True}, 400,
     "invalid_body"),
    ("sync with a numeric replica_id is 400", "POST", "/v1/admin/cluster/sync",
     {"replica_id": 2, "force": True}, 400, "invalid_body"),
    ("sync with a non-boolean force is 400", "POST", "/v1/admin/cluster/sync",
     {"replica_id": "node2", "force": "yes"}, 400, "invalid_body"),
    ("sync of the primary is 400", "POST", "/v1/admin/cluster/sync",
     {"replica_id": "node1", "force": True}, 400, "not_a_replica"),
    ("sync of an unknown replica is 404", "POST", "/v1/admin/cluster/sync",
     {"replica_id": "node9", "force": True}, 404, "unknown_replica"),
    ("reset of an unknown agent is 404", "POST", "/v1/admin/circuit-breaker/reset",
     {"agent_id": "agent-node9"}, 404, "unknown_agent"),
    ("reset without agent_id is 400", "POST", "/v1/admin/circuit-breaker/reset", {}, 400,
     "invalid_body"),
    ("status of an unknown sync is 404", "GET", "/v1/admin/cluster/sync/sync-99", None, 404,
     "unknown_sync"),
    ("DELETE on the rate limit is 405", "DELETE", "/v1/admin/rate-limit", None, 405,
     "method_not_allowed"),
    ("GET on the reset endpoint is 405", "GET", "/v1/admin/circuit-breaker/reset", None, 405,
     "method_not_allowed"),
    ("an unknown admin path is 404", "GET", "/v1/admin/nope", None, 404, "not_found"),
    ("an unknown node path is 404", "GET", "/v2/whatever", None, 404, "not_found"),
    ("POST on /metrics is 405", "POST", "/metrics", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"),
                         [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
async def test_bad_requests_get_a_json_error_and_change_nothing(
    running: RunningSim, method: str, path: str, body: Any, status: int, code: str
) -> None:
    before = running.sim.clusters["demo"].state_json()
    kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else (
        {"json": body} if body is not None else {})
    r = await running.client.request(method, f"{running.node('node1')}{path}", **kw)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    if status == 405:
        assert r.headers["allow"]
    after = running.sim.clusters["demo"].state_json()
    assert after == before


@pytest.mark.parametrize(
    ("url_tail", "status", "code"),
    [("/c/nope/node1/metrics", 404, "unknown_cluster"),
     ("/c/demo/node7/metrics", 404, "unknown_node"),
     ("/c/demo/node2/v1/admin/rate-limit", 404, "not_primary"),
     ("/c/demo/node3/v1/admin/circuit-breakers/tripped", 404, "not_primary")],
    ids=["unknown cluster is 404", "unknown node is 404",
         "admin on a replica is 404 not_primary", "tripped list on a replica is 404 not_primary"],
)
async def test_addressing_errors(running: RunningSim, url_tail: str, status: int,
                                 code: str) -> None:
    r = await running.client.get(running.base + url_tail)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


async def test_admin_log_records_every_call_with_caller_status_and_sim_time(
    running: RunningSim,
) -> None:
    c, base = running.client, running.node("node1")
    await running.advance(12)
    await c.post(f"{base}/v1/admin/rate-limit", json={"max_assertions_per_sec": 500})
    await c.post(f"{base}/v1/admin/rate-limit", content=b"{bad")
    await c.get(f"{base}/v1/admin/circuit-breakers/tripped")
    await c.get(f"{base}/metrics")  # not an admin call
    log = (await c.get(f"{running.base}/sim/v1/clusters/demo/admin-log")).json()["entries"]
    assert [(e["method"], e["endpoint"], e["status"]) for e in log] == [
        ("POST", "/v1/admin/rate-limit", 200),
        ("POST", "/v1/admin/rate-limit", 400),
        ("GET", "/v1/admin/circuit-breakers/tripped", 200),
    ]
    assert log[0]["body"] == {"max_assertions_per_sec": 500}
    assert log[1]["body"] == "{bad"
    assert log[0]["caller"] == {"remote": "127.0.0.1", "user_agent": "sim-tests/1"}
    assert log[0]["sim_time"] == 12.0 and log[0]["wall_time"].endswith("Z")
    since = (await c.get(f"{running.base}/sim/v1/clusters/demo/admin-log",
                         params={"since": 2})).json()["entries"]
    assert [e["seq"] for e in since] == [3]


async def test_sim_api_manages_clusters_faults_load_clock_and_reset(running: RunningSim) -> None:
    c, sim = running.client, f"{running.base}/sim/v1"
    r = await c.post(f"{sim}/clusters", json={"name": "big", "replicas": 4, "load": 100})
    assert r.status_code == 201 and sorted(r.json()["replicas"]) == ["node2", "node3", "node4",
                                                                     "node5"]
    assert (await c.post(f"{sim}/clusters", json={"name": "big"})).status_code == 409
    assert (await c.post(f"{sim}/clusters", json={"name": "x", "bogus": 1})).status_code == 400
    assert (await c.get(f"{sim}/clusters")).json() == {"clusters": ["big", "demo"]}
    r = await c.post(f"{sim}/clusters/big/load", json={"assertions_per_sec": 50})
    assert r.json()["offered_load"] == 50
    f = (await c.post(f"{sim}/clusters/big/faults",
                      json={"kind": "disk_saturation", "replica": "node5"})).json()
    assert f["id"] == "f-1" and f["params"] == {"capacity_factor": 0.4}
    assert len((await c.get(f"{sim}/clusters/big/faults")).json()["faults"]) == 1
    r = await c.delete(f"{sim}/clusters/big/faults/f-1")
    assert r.json()["state"] == "stopped"
    assert (await c.delete(f"{sim}/clusters/big/faults/f-9")).status_code == 404
    assert (await c.post(f"{sim}/advance", json={"seconds": 42})).json()["sim_time"] == 42
    state = (await c.get(f"{sim}/clusters/big/state")).json()
    assert state["sim_time"] == 42 and state["offered_load"] == 50
    assert set(state["replicas"]["node2"]) >= {"backlog", "lag_seconds", "apply_capacity",
                                               "breaker", "sync", "up"}
    assert (await c.get(f"{sim}/clusters/nope/state")).status_code == 404
    r = await c.post(f"{sim}/reset")
    assert r.json() == {"sim_time": 0.0, "clusters": ["demo"]}
    assert (await c.delete(f"{sim}/clusters/demo")).status_code == 200


BAD_FAULTS = [
    ("an unknown kind is 400", {"kind": "meteor"}, 400, "invalid_body"),
    ("a replica fault without replica is 400", {"kind": "breaker_trip"}, 400, "invalid_body"),
    ("an unknown replica is 404", {"kind": "breaker_trip", "replica": "node9"}, 404,
     "unknown_replica"),
    ("an unknown parameter is 400", {"kind": "disk_saturation", "replica": "node2", "x": 1},
     400, "invalid_body"),
    ("an out-of-range factor is 400",
     {"kind": "disk_saturation", "replica": "node2", "capacity_factor": 2}, 400, "invalid_body"),
    ("a sync failure at progress 1 is 400",
     {"kind": "sync_failure", "replica": "node2", "at_progress": 1}, 400, "invalid_body"),
    ("an unknown API endpoint selector is 400", {"kind": "http_error", "endpoint": "x"}, 400,
     "invalid_body"),
]


@pytest.mark.parametrize(("body", "status", "code"), [b[1:] for b in BAD_FAULTS],
                         ids=[b[0] for b in BAD_FAULTS])
async def test_bad_fault_requests_are_rejected(running: RunningSim, body: dict, status: int,
                                               code: str) -> None:
    r = await running.client.post(f"{running.base}/sim/v1/clusters/demo/faults", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    assert running.sim.clusters["demo"].faults == []


async def inject(rs: RunningSim, **body: Any) -> str:
    r = await rs.client.post(f"{rs.base}/sim/v1/clusters/demo/faults", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_http_error_fault_returns_500_on_the_chosen_node_only(running: RunningSim) -> None:
    await inject(running, kind="http_error", node="node1", endpoint="metrics")
    r = await running.client.get(f"{running.node('node1')}/metrics")
    assert (r.status_code, r.json()["error"]["code"]) == (500, "internal")
    assert (await running.client.get(f"{running.node('node2')}/metrics")).status_code == 200
    url = f"{running.node('node1')}/v1/admin/rate-limit"
    assert (await running.client.get(url)).status_code == 200


async def test_http_error_on_admin_changes_nothing_and_is_logged(running: RunningSim) -> None:
    fid = await inject(running, kind="http_error", endpoint="admin", status=503)
    r = await running.client.post(f"{running.node('node1')}/v1/admin/rate-limit",
                                  json={"max_assertions_per_sec": 10})
    assert r.status_code == 503
    assert running.sim.clusters["demo"].rate_limit is None
    log = running.sim.clusters["demo"].admin_log
    assert (log[-1]["status"], log[-1]["fault"]) == (503, fid)


async def test_timeout_fault_hangs_longer_than_the_client_timeout(running: RunningSim) -> None:
    await inject(running, kind="timeout", hang_seconds=2)
    with pytest.raises(httpx.ReadTimeout):
        await running.client.get(f"{running.node('node1')}/metrics", timeout=0.2)


async def test_slow_response_fault_delays_but_answers(running: RunningSim) -> None:
    await inject(running, kind="slow_response", delay_seconds=0.3)
    r = await running.client.get(f"{running.node('node1')}/metrics")
    assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.3


async def test_garbled_metrics_do_not_parse(running: RunningSim) -> None:
    await inject(running, kind="garbled_metrics", node="node1")
    r = await running.client.get(f"{running.node('node1')}/metrics")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        list(text_string_to_metric_families(r.text))


async def test_truncated_metrics_end_mid_line(running: RunningSim) -> None:
    full = (await running.client.get(f"{running.node('node1')}/metrics")).text
    await inject(running, kind="truncated_metrics", fraction=0.5)
    r = await running.client.get(f"{running.node('node1')}/metrics")
    assert r.status_code == 200 and len(r.text) == len(full.encode()) // 2
    assert full.startswith(r.text) and not r.text.endswith("\n")


async def test_connection_refused_fault_resets_the_connection_and_stops_when_deleted(
    running: RunningSim,
) -> None:
    fid = await inject(running, kind="connection_refused", node="node1")
    with pytest.raises(httpx.TransportError):
        await running.client.get(f"{running.node('node1')}/metrics")
    await running.client.delete(f"{running.base}/sim/v1/clusters/demo/faults/{fid}")
    assert (await running.client.get(f"{running.node('node1')}/metrics")).status_code == 200


async def test_a_crash_looping_replica_answers_503_and_the_primary_reports_it_down(
    running: RunningSim,
) -> None:
    await inject(running, kind="crash_loop", replica="node2", during_sync=False, up_seconds=1)
    await running.advance(2)
    r = await running.client.get(f"{running.node('node2')}/metrics")
    assert (r.status_code, r.json()["error"]["code"]) == (503, "node_unavailable")
    s = await scrape(running)
    assert s[("stemedb_replica_up", (("replica", "node2"),))] == 0
    r = await running.client.post(f"{running.node('node1')}/v1/admin/cluster/sync",
                                  json={"replica_id": "node2", "force": True})
    assert (r.status_code, r.json()["error"]["code"]) == (503, "replica_unavailable")
    await running.advance(10)
    s = await scrape(running)
    assert s[("stemedb_replica_restarts_total", (("replica", "node2"),))] == 1


async def test_state_counts_metrics_requests_per_node_even_when_a_fault_answers(
    running: RunningSim,
) -> None:
    await running.client.get(f"{running.node('node1')}/metrics")
    await inject(running, kind="http_error", node="node1", endpoint="metrics", status=500)
    assert (await running.client.get(f"{running.node('node1')}/metrics")).status_code == 500
    await running.client.get(f"{running.node('node2')}/metrics")
    state = (await running.client.get(f"{running.base}/sim/v1/clusters/demo/state")).json()
    assert state["metrics_requests"] == {"node1": 2, "node2": 1}
