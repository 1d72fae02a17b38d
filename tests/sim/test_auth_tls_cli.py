"""Bearer-token auth (with rotation), TLS with the generated CA, and the CLI process."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stemedb_sim.auth import TokenSource
from stemedb_sim.tls import ensure_certs, server_context
from tests.sim.conftest import start_sim

ENDPOINTS = [
    ("GET", "node1", "/metrics"),
    ("GET", "node2", "/metrics"),
    ("GET", "node1", "/v1/admin/rate-limit"),
    ("GET", "node1", "/v1/admin/circuit-breakers/tripped"),
    ("POST", "node1", "/v1/admin/circuit-breaker/reset"),
]
ENDPOINT_IDS = [f"{m} {n}{p}" for m, n, p in ENDPOINTS]


@pytest.mark.parametrize(("method", "node", "path"), ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer wrong", 401), ("Basic s3cret", 401), ("Bearer s3cret", None)],
    ids=["no token is 401", "a wrong token is 401", "another scheme is 401",
         "the right token passes"],
)
async def test_every_node_endpoint_requires_the_token(
    method: str, node: str, path: str, header: str | None, status: int | None
) -> None:
    runner, base, _sim = await start_sim(token=TokenSource("s3cret"))
    try:
        headers = {"Authorization": header} if header else {}
        async with httpx.AsyncClient(headers=headers) as c:
            r = await c.request(method, f"{base}/c/demo/{node}{path}",
                                json={"agent_id": "agent-node2"} if method == "POST" else None)
        if status == 401:
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        else:
            assert r.status_code == 200
    finally:
        await runner.cleanup()


async def test_token_file_rotation_takes_effect_on_the_next_request(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    runner, base, _sim = await start_sim(token=TokenSource(token_file=token_file))
    url = f"{base}/c/demo/node1/metrics"
    try:
        async with httpx.AsyncClient() as c:
            old = {"Authorization": "Bearer old-token"}
            new = {"Authorization": "Bearer the-new-token"}
            assert (await c.get(url, headers=old)).status_code == 200
            token_file.write_text("the-new-token\n")
            st = token_file.stat()
            os.utime(token_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
            assert (await c.get(url, headers=old)).status_code == 401
            assert (await c.get(url, headers=new)).status_code == 200
            log_url = f"{base}/sim/v1/clusters/demo/admin-log"
            assert (await c.get(log_url)).status_code == 200  # the sim API needs no token
    finally:
        await runner.cleanup()


async def test_tls_with_the_generated_ca_verifies_and_without_it_fails(tmp_path: Path) -> None:
    files = ensure_certs(tmp_path / "pki")
    runner, base, _sim = await start_sim(ssl_ctx=server_context(files))
    try:
        assert base.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(files.ca_cert))
        async with httpx.AsyncClient(verify=ctx) as c:
            assert (await c.get(f"{base}/c/demo/node1/metrics")).status_code == 200
        localhost = base.replace("127.0.0.1", "localhost")
        async with httpx.AsyncClient(verify=ctx) as c:
            assert (await c.get(f"{localhost}/c/demo/node1/metrics")).status_code == 200
        async with httpx.AsyncClient() as c:  # system CAs only
            with pytest.raises(httpx.ConnectError):
                await c.get(f"{base}/c/demo/node1/metrics")
    finally:
        await runner.cleanup()
    assert ensure_certs(tmp_path / "pki") == files  # reused, not regenerated


def test_cli_prints_ready_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stemedb_sim.cli", "serve", "--port", "0", "--speed", "100",
         "--clusters", "demo,other", "--cluster-count", "3", "--seed", "3", "--tls",
         str(tmp_path / "pki")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[0] == "READY" and first[1].startswith("https://127.0.0.1:")
        ca = proc.stdout.readline().split()
        assert ca[0] == "CA" and Path(ca[1]).exists()
        base = first[1]
        with httpx.Client(verify=ssl.create_default_context(cafile=ca[1])) as c:
            names = c.get(f"{base}/sim/v1/clusters").json()["clusters"]
            assert names == ["c0001", "c0002", "c0003", "demo", "other"]
            assert c.get(f"{base}/c/c0002/node3/metrics").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
