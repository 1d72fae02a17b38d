"""Hostile StemeDBCluster specs against a real API server and the operator as it ships
(issue 11: a tenant's spec must not make the operator read another namespace's
Secret and send it out, nor touch another namespace's Pod).

The world: a tenant that may only create StemeDBClusters in its namespace, a victim
namespace with a Secret (a recognisable token) and a Pod, the operator under the
chart's ServiceAccount in ClusterRole mode watching the tenant's namespace, and a
capture server standing in for every URL the tenant controls. The control plane
is this module's own, with an audit log, so every request the operator's user made
can be checked afterwards.

Every case of tests/hostile_corpus.py is applied as the tenant and ends as one of
- refused at admission, kubectl's stderr naming the field;
- accepted and reported: a condition with status False names the field;
- accepted with an undeclared field pruned (a lax client; nothing to follow);
- accepted and silent: must be none.
Run with -s to see the figures.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import CRD, Operator, chart_rbac, wait_for

from controller.adapters.kube import KubeClient, KubeEndpoint, KubeError
from localkube import ControlPlane

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile_corpus import (
    CASES,
    TENANT_POD,
    TENANT_SECRET,
    TENANT_SECRET_KEY,
    VALID,
    VICTIM_NS,
    VICTIM_POD,
    VICTIM_SECRET,
    VICTIM_SECRET_KEY,
    Case,
    Set,
    Valid,
    case_spec,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TENANT_NS = "hostile-tenant"
OPERATOR_NS = "stemedb-e2e-system"
RELEASE = "e2e"
DENIED_CIDR = "127.0.0.2/32"
ADMIN_USER = "stemedb-admin"
TENANT_USER = f"system:serviceaccount:{TENANT_NS}:tenant"
REBUILD_ANNOTATION = "stemedb.io/rebuild-requested"
CREDENTIALS_LABEL = "stemedb.io/credentials"
APPLY_WORKERS = 12
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""
PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4\n"
       "-----END CERTIFICATE-----\n")


# ----------------------------------------------------------------------------- capture

@dataclass(frozen=True)
class Seen:
    """One request a capture server received."""

    server: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def raw(self) -> str:
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.method} {self.path}\n{head}\n\n{self.body.decode('latin-1')}"

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def _metrics(primary: bool, lagging: bool) -> bytes:
    if not primary:
        return (b'stemedb_node_info{node="node2",role="replica"} 1\n'
                b"stemedb_assertions_indexed_total 1000\nstemedb_disk_io_utilization 0.2\n")
    lag = 20 if lagging else 0
    lines = [
        "# TYPE stemedb_node_info gauge", 'stemedb_node_info{node="node1",role="primary"} 1',
        "# TYPE stemedb_assertions_indexed_total counter", "stemedb_assertions_indexed_total 1000",
        "# TYPE stemedb_rate_limit_assertions_per_sec gauge",
        "stemedb_rate_limit_assertions_per_sec -1",
    ]
    for node, value in (("node2", lag), ("node3", 0)):
        lines += [
            f'stemedb_replication_lag_seconds{{replica="{node}"}} {value}',
            f'stemedb_replica_up{{replica="{node}"}} 1',
            f'stemedb_merkle_sync_running{{replica="{node}"}} 0',
            f'stemedb_merkle_sync_progress{{replica="{node}"}} 0',
            f'stemedb_merkle_sync_errors_total{{replica="{node}"}} 0',
            f'stemedb_merkle_sync_corruption_detected_total{{replica="{node}"}} 0',
            f'stemedb_replica_restarts_total{{replica="{node}"}} 0',
            f'stemedb_circuit_breaker_tripped{{replica="{node}",agent_id="agent-{node}"}} 0',
        ]
    return ("\n".join(lines) + "\n").encode()


class Capture:
    """A tiny threaded HTTP server that records every request (method, path, headers,
    body) and answers like a healthy StemeDB node; under a path with `/lagging/`
    the primary's node2 lags 20 s."""

    def __init__(self, host: str) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20)) if length > 0 else b""
                capture._record(Seen(capture.hostport, self.command, self.path,
                                     tuple(self.headers.items()), body))
                if self.path.endswith("/metrics"):
                    payload = _metrics("/primary/" in self.path, "/lagging/" in self.path)
                    ctype = "text/plain; version=0.0.4"
                else:
                    payload, ctype = b'{"max_assertions_per_sec": null}', "application/json"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.hostport}"

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests(self, prefix: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ----------------------------------------------------------------------------- the world

@dataclass
class World:
    cp: ControlPlane
    workdir: Path
    tenant_token: str
    operator_user: str
    operator_token: str
    operator_kubeconfig: Path
    tenant_secret_value: str
    victim_secret_value: str
    victim_pod_annotations: dict[str, str]
    capture: Capture
    denied: Capture
    operator: Operator | None = None
    applied: dict[str, Any] = field(default_factory=dict)

    def values(self, case_name: str) -> dict[str, str]:
        return {
            "$CAPTURE": self.capture.url,
            "$HOSTPORT": self.capture.hostport,
            "$CAPPORT": str(self.capture.port),
            "$APISERVER": f"127.0.0.1:{self.cp.port}",
            "$APIPORT": str(self.cp.port),
            "$DENIED": self.denied.hostport,
            "$CASE": case_name,
        }

    def apply_as_tenant(self, name: str, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        body = {"apiVersion": "stemedb.io/v1alpha1", "kind": "StemeDBCluster",
                "metadata": {"name": name, "namespace": TENANT_NS}, "spec": spec}
        return self.cp.kubectl("apply", "-f", "-", input=json.dumps(body),
                               token=self.tenant_token, check=False)

    def clusters(self) -> dict[str, dict[str, Any]]:
        out = self.cp.kubectl("-n", TENANT_NS, "get", "stemedbclusters", "-o", "json").stdout
        return {o["metadata"]["name"]: o for o in json.loads(out)["items"]}

    def cluster(self, name: str) -> dict[str, Any] | None:
        r = self.cp.kubectl("-n", TENANT_NS, "get", "stemedbcluster", name, "-o", "json",
                            check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def pod_annotations(self, namespace: str, name: str) -> dict[str, str]:
        out = self.cp.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout
        return dict(json.loads(out)["metadata"].get("annotations") or {})

    def endpoint(self) -> KubeEndpoint:
        return KubeEndpoint(server=self.cp.server,
                            ssl=ssl.create_default_context(cafile=str(self.cp.ca_file)),
                            headers={"Authorization": f"Bearer {self.operator_token}"})

    def operator_logs(self) -> str:
        return self.operator.logs() if self.operator is not None else ""


def _pod(namespace: str, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": annotations or {}},
            "spec": {"containers": [{"name": "db", "image": "stemedb:placeholder"}]}}


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret labelled for the operator (it reads no other), the victim's too: the
    label must not be what keeps the victim's token in its namespace."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {CREDENTIALS_LABEL: "true"}},
            "stringData": data}


@pytest.fixture(scope="module")
def world(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("hostile")
    capture, denied = Capture("127.0.0.1"), Capture("127.0.0.2")
    with ControlPlane.running(bin_dir, audit_policy=AUDIT_POLICY) as cp:
        kc = cp.kubectl
        kc("apply", "--server-side", "-f", str(CRD))
        kc("wait", "--for=condition=Established", "--timeout=30s",
           "crd/stemedbclusters.stemedb.io")
        for ns in (OPERATOR_NS, TENANT_NS, VICTIM_NS):
            kc("create", "namespace", ns)
        rbac = chart_rbac(bin_dir / "helm", RELEASE, OPERATOR_NS)
        sa = next(d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount")

        victim_value = f"VICTIM-{uuid.uuid4().hex}"
        tenant_value = f"tenant-{uuid.uuid4().hex}"
        tenant_secrets: dict[str, dict[str, str]] = {
            TENANT_SECRET: {TENANT_SECRET_KEY: tenant_value},
            "tenant-ca": {"ca.crt": PEM},
        }
        for v in VALID:
            for name, data in v.secrets.items():
                tenant_secrets.setdefault(name, {}).update(data)
        objects: list[dict[str, Any]] = [
            *rbac,
            _secret(VICTIM_NS, VICTIM_SECRET, {VICTIM_SECRET_KEY: victim_value}),
            _pod(VICTIM_NS, VICTIM_POD, {"owner": "victim"}),
            *(_secret(TENANT_NS, n, d) for n, d in tenant_secrets.items()),
            *(_pod(TENANT_NS, n) for n in (TENANT_POD, "db-node2.v1", "x-pod-control-node2")),
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "tenant", "namespace": TENANT_NS}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "tenant", "namespace": TENANT_NS},
             "rules": [{"apiGroups": ["stemedb.io"], "resources": ["stemedbclusters"],
                        "verbs": ["get", "list", "watch", "create", "update", "patch",
                                  "delete"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "tenant", "namespace": TENANT_NS},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "tenant"},
             "subjects": [{"kind": "ServiceAccount", "name": "tenant",
                           "namespace": TENANT_NS}]},
        ]
        kc("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": objects}))
        tenant_token = kc("-n", TENANT_NS, "create", "token", "tenant",
                          "--duration=1h").stdout.strip()
        operator_token = kc("-n", OPERATOR_NS, "create", "token", sa,
                            "--duration=1h").stdout.strip()
        kubeconfig = workdir / "operator.kubeconfig"
        kubeconfig.write_text(cp.kubeconfig_text(user=sa, token=operator_token))
        w = World(
            cp=cp, workdir=workdir, tenant_token=tenant_token,
            operator_user=f"system:serviceaccount:{OPERATOR_NS}:{sa}",
            operator_token=operator_token, operator_kubeconfig=kubeconfig,
            tenant_secret_value=tenant_value, victim_secret_value=victim_value,
            victim_pod_annotations={}, capture=capture, denied=denied,
        )
        w.victim_pod_annotations = w.pod_annotations(VICTIM_NS, VICTIM_POD)
        # The tenant really is confined: it cannot read the victim's Secret itself.
        probe = kc("-n", VICTIM_NS, "get", "secret", VICTIM_SECRET, token=tenant_token,
                   check=False)
        assert probe.returncode != 0 and "Forbidden" in probe.stderr
        try:
            yield w
        finally:
            capture.close()
            denied.close()


@pytest.fixture(scope="module")
def operator(world: World) -> Iterator[Operator]:
    """The operator as it ships, under the chart's token, watching the tenant's namespace;
    127.0.0.2 denied on top of the defaults (if this build has the flag)."""
    extra = ["--deny-destination", DENIED_CIDR]
    op = Operator.start(world.operator_kubeconfig, TENANT_NS,
                        world.workdir / "operator.log", *extra)
    world.operator = op
    try:
        yield op
    finally:
        op.stop()


# ----------------------------------------------------------------------------- the corpus run

@dataclass
class Result:
    name: str
    case: Case | None
    valid: Valid | None
    returncode: int
    stderr: str
    obj: dict[str, Any] | None = None
    verdict: str = ""

    @property
    def label(self) -> str:
        return self.case.id if self.case else f"valid/{self.valid.id if self.valid else '?'}"


@dataclass
class CorpusRun:
    results: list[Result]

    def hostile(self) -> list[Result]:
        return [r for r in self.results if r.case is not None]

    def valid(self) -> list[Result]:
        return [r for r in self.results if r.valid is not None]

    def by_verdict(self, verdict: str) -> list[Result]:
        return [r for r in self.hostile() if r.verdict == verdict]


def _names_field(text: str, case: Case) -> bool:
    return any(p in text for p in case.paths) and (not case.mention or case.mention in text)


def _false_conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return [c for c in conds if c.get("status") == "False"]


def _reporting_condition(obj: dict[str, Any], case: Case) -> dict[str, Any] | None:
    return next((c for c in _false_conditions(obj)
                 if _names_field(str(c.get("message", "")), case)), None)


def _looked_at(obj: dict[str, Any]) -> bool:
    return bool((obj.get("status") or {}).get("conditions"))


def _pruned(obj: dict[str, Any]) -> bool:
    return "namespace" not in json.dumps(obj.get("spec") or {}).replace(
        f'"{VICTIM_SECRET}.{VICTIM_NS}"', "")


def _scrapes(world: World, name: str) -> int:
    return sum(1 for s in world.capture.requests(f"/t/{name}/") if s.path.endswith("/metrics"))


def _wait_polls(world: World, name: str, more: int, timeout: float = 60.0) -> None:
    """Proof that the operator had time to act: `more` further scrapes of a valid cluster."""
    target = _scrapes(world, name) + more
    wait_for(f"{more} more scrapes of {name}", lambda: _scrapes(world, name) >= target,
             timeout=timeout)


@pytest.fixture(scope="module")
def corpus_run(world: World, operator: Operator) -> CorpusRun:
    jobs: list[tuple[str, Case | None, Valid | None, dict[str, Any]]] = []
    for i, case in enumerate(c for c in CASES if c.json_ok):
        name = f"h{i:03d}"
        jobs.append((name, case, None, case_spec(case.ops, world.values(name))))
    for v in VALID:
        name = f"ok-{v.id}"
        jobs.append((name, None, v, case_spec(v.ops, world.values(name))))

    def apply(job: tuple[str, Case | None, Valid | None, dict[str, Any]]) -> Result:
        name, case, valid, spec = job
        r = world.apply_as_tenant(name, spec)
        return Result(name, case, valid, r.returncode, r.stderr)

    with ThreadPoolExecutor(APPLY_WORKERS) as pool:
        results = list(pool.map(apply, jobs))
    accepted = {r.name for r in results if r.returncode == 0}

    def all_looked_at() -> bool:
        objs = world.clusters()
        return all(name in objs and _looked_at(objs[name]) for name in accepted)

    try:
        wait_for("the operator to look at every accepted cluster", all_looked_at, timeout=60,
                 interval=1.0)
    except AssertionError as err:
        print(f"not every accepted cluster was looked at: {err}")
    assert operator.proc.poll() is None, f"the operator exited:\n{operator.logs()[-4000:]}"
    # Two more polls of a valid cluster: a report that comes after the first look
    # has had its chance.
    try:
        _wait_polls(world, "ok-base", 2)
    except AssertionError:
        base = world.cluster("ok-base") or {}
        print(json.dumps(base.get("status"), indent=1)[:3000])
        print(operator.logs()[-3000:])
        raise
    objs = world.clusters()
    for r in results:
        r.obj = objs.get(r.name)
        if r.valid is not None:
            r.verdict = "accepted" if r.returncode == 0 else "refused"
        elif r.case is None:
            continue
        elif r.returncode != 0:
            r.verdict = "refused-named" if _names_field(r.stderr, r.case) else "refused-unnamed"
        elif r.obj is not None and _reporting_condition(r.obj, r.case) is not None:
            r.verdict = "reported"
        elif r.case.unknown_field and r.obj is not None and _pruned(r.obj):
            r.verdict = "pruned"
        else:
            r.verdict = "silent"
    run = CorpusRun(results)
    _print_figures(world, run)
    return run


def _print_figures(world: World, run: CorpusRun) -> None:
    hostile = run.hostile()
    figures = {v: len(run.by_verdict(v)) for v in
               ("refused-named", "refused-unnamed", "reported", "pruned", "silent")}
    print("\nhostile corpus against the API server and the operator"
          f" (--deny-destination {DENIED_CIDR}):")
    print(f"  tried                                   {len(hostile)}")
    print(f"  refused at admission naming the field   {figures['refused-named']}")
    print(f"  refused at admission, field not named   {figures['refused-unnamed']}")
    print(f"  accepted and reported in a condition    {figures['reported']}")
    print(f"  accepted, undeclared field pruned       {figures['pruned']}")
    print(f"  accepted and silent                     {figures['silent']}")
    valid = run.valid()
    print(f"  valid specs accepted                    "
          f"{sum(r.verdict == 'accepted' for r in valid)}/{len(valid)}")
    for r in run.by_verdict("silent"):
        print(f"    silent: {r.label}")
    for r in run.by_verdict("refused-unnamed"):
        print(f"    refused without the field: {r.label}: {_short(r.stderr)}")


def _short(text: str, n: int = 300) -> str:
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= n else text[:n] + "..."


# ----------------------------------------------------------------------------- the corpus tests

def test_no_hostile_spec_is_accepted_silently(corpus_run: CorpusRun) -> None:
    silent = corpus_run.by_verdict("silent")
    assert not silent, f"{len(silent)} hostile specs accepted and never reported: " + ", ".join(
        r.label for r in silent)


def test_refused_specs_are_refused_at_admission_naming_the_field(corpus_run: CorpusRun) -> None:
    wrong = [r for r in corpus_run.hostile()
             if r.case is not None and r.case.outcome == "refused" and r.verdict != "refused-named"
             and r.verdict != "pruned"]
    assert not wrong, f"{len(wrong)} specs not refused at admission with their field: " + "; ".join(
        f"{r.label} ({r.verdict}: {_short(r.stderr, 160)})" for r in wrong)


def test_destinations_only_the_operator_can_judge_are_reported_as_denied(
    corpus_run: CorpusRun,
) -> None:
    """Refused at admission is as good (a host like 127.1 or 2852039166 is no DNS name)."""
    wrong = []
    for r in corpus_run.hostile():
        if r.case is None or r.case.outcome != "reported" or r.verdict == "refused-named":
            continue
        cond = _reporting_condition(r.obj, r.case) if r.obj else None
        if cond is None or cond.get("reason") != "DestinationDenied":
            wrong.append(f"{r.label} ({r.verdict}, {cond and cond.get('reason')}: "
                         f"{_short(str(cond and cond.get('message')), 200)})")
    assert not wrong, "not reported as DestinationDenied naming the field: " + "; ".join(wrong)


def test_tricky_valid_specs_are_accepted_and_not_reported_invalid(corpus_run: CorpusRun) -> None:
    wrong = []
    for r in corpus_run.valid():
        if r.returncode != 0:
            wrong.append(f"{r.label} refused: {_short(r.stderr, 200)}")
            continue
        bad = [c for c in _false_conditions(r.obj or {})
               if c.get("reason") in ("InvalidSpec", "DestinationDenied")]
        if bad:
            wrong.append(f"{r.label}: {bad[0]['reason']}: {_short(bad[0].get('message', ''))}")
    assert not wrong, "; ".join(wrong)


def test_the_capture_server_works_and_gets_the_tenants_own_token(
    world: World, corpus_run: CorpusRun,
) -> None:
    """Positive control: without it, every 'never sent' below would prove nothing."""
    seen = world.capture.requests("/t/ok-base/primary/metrics")
    assert seen, "the operator never scraped the valid base cluster"
    assert seen[-1].header("Authorization") == f"Bearer {world.tenant_secret_value}"


def test_the_victims_token_is_never_sent_anywhere(world: World, corpus_run: CorpusRun) -> None:
    secret = world.victim_secret_value
    leaks = [s for s in world.capture.requests() + world.denied.requests() if secret in s.raw()]
    assert not leaks, (f"the victim's token went out {len(leaks)} times, e.g. "
                       f"{leaks[0].method} {leaks[0].path}")
    assert secret not in world.operator_logs()


def test_invalid_specs_cause_no_request_at_all(world: World, corpus_run: CorpusRun) -> None:
    sent = {}
    for r in corpus_run.hostile():
        if r.case is not None and r.case.outcome == "refused":
            hits = world.capture.requests(f"/t/{r.name}/")
            if hits:
                sent[r.label] = f"{hits[0].method} {hits[0].path}"
    assert not sent, f"{len(sent)} invalid specs still made requests: {sent}"


def test_denied_destinations_get_no_request(world: World, corpus_run: CorpusRun) -> None:
    assert not world.denied.requests(), [f"{s.method} {s.path}" for s in world.denied.requests()]
    to_api = [e for e in world.cp.audit_events()
              if str(e.get("requestURI", "")).startswith("/t/")]
    assert not to_api, [(e["user"].get("username"), e["requestURI"]) for e in to_api[:5]]


def test_the_victims_pod_is_untouched(world: World, corpus_run: CorpusRun) -> None:
    assert world.pod_annotations(VICTIM_NS, VICTIM_POD) == world.victim_pod_annotations


# ----------------------------------------------------------------------------- the two exploits

def test_exploit_a_token_secret_ref_into_another_namespace(
    world: World, operator: Operator, corpus_run: CorpusRun,
) -> None:
    """Issue 11, first exploit: tokenSecretRef.name "../../OTHER/secrets/NAME" with the
    adminUrl at the tenant's server made the operator send OTHER's token there."""
    control = world.apply_as_tenant("x-token-control",
                                    case_spec((), world.values("x-token-control")))
    assert control.returncode == 0, control.stderr
    exploit_ops = (Set("auth.tokenSecretRef", {
        "name": f"../../{VICTIM_NS}/secrets/{VICTIM_SECRET}", "key": VICTIM_SECRET_KEY}),)
    exploit = world.apply_as_tenant("x-token-exploit",
                                    case_spec(exploit_ops, world.values("x-token-exploit")))
    wait_for("the control cluster scraped with the tenant's token", lambda: any(
        s.header("Authorization") == f"Bearer {world.tenant_secret_value}"
        for s in world.capture.requests("/t/x-token-control/")))
    if exploit.returncode != 0:
        assert "spec.auth.tokenSecretRef.name" in exploit.stderr, exploit.stderr
    else:
        wait_for("the operator to look at the exploit",
                 lambda: _looked_at(world.cluster("x-token-exploit") or {}))
        _wait_polls(world, "x-token-control", 2)
    leaks = [s for s in world.capture.requests() if world.victim_secret_value in s.raw()]
    assert not leaks, f"the victim's token was sent to {leaks[0].path}"
    if exploit.returncode == 0:
        obj = world.cluster("x-token-exploit") or {}
        case = Case("x", "traversal", exploit_ops, "spec.auth.tokenSecretRef.name")
        assert _reporting_condition(obj, case), (obj.get("status") or {}).get("conditions")


def _rebuild_spec(world: World, name: str, pod: str) -> dict[str, Any]:
    """A spec whose replica node2 is marked for rebuild at once: node2 lags 20 s
    (critical 4 s), every earlier ladder step is off, rebuilds are automatic."""
    ops = (
        Set("primary.adminUrl", "$CAPTURE/t/$CASE/lagging/primary"),
        Set("replicas[0].podRef.name", pod),
        Set("detection.critical.forSeconds", 1),
        Set("remediation.breakerReset.enabled", False),
        Set("remediation.throttle.enabled", False),
        Set("remediation.merkleSync.enabled", False),
        Set("remediation.rebuild.policy", "Automatic"),
    )
    return case_spec(ops, world.values(name))


def test_exploit_b_pod_ref_into_another_namespace(
    world: World, operator: Operator, corpus_run: CorpusRun,
) -> None:
    """Issue 11, second exploit: podRef.name "../../OTHER/pods/NAME" on a replica marked
    for rebuild made the operator annotate OTHER's Pod."""
    control = world.apply_as_tenant("x-pod-control", _rebuild_spec(
        world, "x-pod-control", "x-pod-control-node2"))
    assert control.returncode == 0, control.stderr
    exploit = world.apply_as_tenant("x-pod-exploit", _rebuild_spec(
        world, "x-pod-exploit", f"../../{VICTIM_NS}/pods/{VICTIM_POD}"))
    wait_for("the control replica's own Pod annotated for rebuild", lambda: REBUILD_ANNOTATION
             in world.pod_annotations(TENANT_NS, "x-pod-control-node2"), timeout=60)
    if exploit.returncode != 0:
        assert "spec.replicas[0].podRef.name" in exploit.stderr, exploit.stderr
    else:
        case = Case("x", "traversal", (), "spec.replicas[0].podRef.name")

        def decided() -> bool:
            obj = world.cluster("x-pod-exploit") or {}
            marked = any(r.get("rebuildMarked") for r in (obj.get("status") or {}).get(
                "replicas") or [])
            return marked or _reporting_condition(obj, case) is not None

        wait_for("the exploit marked for rebuild or reported", decided, timeout=60)
        _wait_polls(world, "x-pod-control", 2)
    assert world.pod_annotations(VICTIM_NS, VICTIM_POD) == world.victim_pod_annotations


def _events(world: World, name: str) -> list[dict[str, Any]]:
    out = world.cp.kubectl("-n", TENANT_NS, "get", "events", "-o", "json",
                           f"--field-selector=involvedObject.name={name}").stdout
    return list(json.loads(out)["items"])


def _told(world: World, name: str, path: str) -> str | None:
    """A condition or Event of cluster `name` whose message names `path`."""
    obj = world.cluster(name) or {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if path in str(c.get("message", "")):
            return f"condition {c['type']}={c['status']} {c.get('reason')}"
    for e in _events(world, name):
        if path in str(e.get("message", "")):
            return f"Event {e.get('reason')}"
    return None


def test_denied_metrics_and_webhook_urls_are_refused_when_an_episode_needs_them(
    world: World, operator: Operator, corpus_run: CorpusRun,
) -> None:
    """metricsUrl is read only in an episode and webhookUrl only on escalation: in one
    (node2 lags 20 s, escalation at 10 s), both at a denied address, the operator
    names both fields before any episode needs them, sends nothing there, and acts
    on nothing while the spec points at a denied destination."""
    name = "x-denied-in-episode"
    ops = (
        Set("primary.adminUrl", "$CAPTURE/t/$CASE/lagging/primary"),
        Set("replicas[0].metricsUrl", "http://$DENIED/t/$CASE/node2"),
        Set("escalation.webhookUrl", "http://$DENIED/t/$CASE/hook"),
        Set("detection.escalation.lagSeconds", 10),
        Set("remediation.mode", "Observe"),
    )
    applied = world.apply_as_tenant(name, case_spec(ops, world.values(name)))
    if applied.returncode != 0:
        assert "spec.replicas[0].metricsUrl" in applied.stderr, applied.stderr
        return
    try:
        wait_for("the metricsUrl named",
                 lambda: _told(world, name, "spec.replicas[0].metricsUrl"))
        wait_for("the webhookUrl named",
                 lambda: _told(world, name, "spec.escalation.webhookUrl"))
        ready = next(c for c in (world.cluster(name) or {})["status"]["conditions"]
                     if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "DestinationDenied"), ready
    except AssertionError:
        obj = world.cluster(name) or {}
        print(json.dumps((obj.get("status") or {}).get("conditions"), indent=1))
        print([(e.get("reason"), e.get("message")) for e in _events(world, name)])
        raise
    assert not world.denied.requests(), [s.path for s in world.denied.requests()]


# ----------------------------------------------------------------------------- defence in depth

SECRET_NAMES = [
    f"../../{VICTIM_NS}/secrets/{VICTIM_SECRET}",
    f"x/../../../{VICTIM_NS}/secrets/{VICTIM_SECRET}",
    f"..%2F..%2F{VICTIM_NS}%2Fsecrets%2F{VICTIM_SECRET}",
    f"%2e%2e/%2e%2e/{VICTIM_NS}/secrets/{VICTIM_SECRET}",
    f"../../../../api/v1/namespaces/{VICTIM_NS}/secrets/{VICTIM_SECRET}",
    f"{VICTIM_SECRET}?namespace={VICTIM_NS}",
    f"{VICTIM_NS}/{VICTIM_SECRET}",
    "..",
    "",
]
POD_NAMES = [
    f"../../{VICTIM_NS}/pods/{VICTIM_POD}",
    f"x/../../../{VICTIM_NS}/pods/{VICTIM_POD}",
    f"..%2F..%2F{VICTIM_NS}%2Fpods%2F{VICTIM_POD}",
    f"{TENANT_POD}/../../../{VICTIM_NS}/pods/{VICTIM_POD}",
    f"{VICTIM_NS}/{VICTIM_POD}",
    "..",
]


def _suspect(user: str) -> bool:
    """A user whose request into the victim's namespace is a finding: any ServiceAccount
    (the operator's above all) but the tenant's refused probe in `world`, anonymous
    requests, and anyone else not the admin or the API server itself."""
    if user in (ADMIN_USER, TENANT_USER):
        return False
    return not user.startswith("system:") or user.startswith("system:serviceaccount:") or (
        user == "system:anonymous")


def _victim_requests(world: World) -> list[str]:
    return [f"{e['user'].get('username')} {e.get('verb')} {e.get('requestURI')}"
            for e in world.cp.audit_events()
            if (e.get("objectRef") or {}).get("namespace") == VICTIM_NS
            and _suspect(str(e["user"].get("username", "")))]


@pytest.mark.parametrize("name", SECRET_NAMES, ids=[str(i) for i in range(len(SECRET_NAMES))])
async def test_the_kube_adapter_never_reads_a_secret_outside_the_namespace(
    world: World, name: str,
) -> None:
    client = KubeClient()
    client.use(world.endpoint())
    try:
        value = await client.read_secret_key(TENANT_NS, name, VICTIM_SECRET_KEY)
    except KubeError:
        value = None
    finally:
        await client.aclose()
    assert value is None, ("read the victim's token" if value == world.victim_secret_value.encode()
                           else "returned a value instead of raising KubeError")
    assert not _victim_requests(world)


@pytest.mark.parametrize("name", POD_NAMES, ids=[str(i) for i in range(len(POD_NAMES))])
async def test_the_kube_adapter_never_annotates_a_pod_outside_the_namespace(
    world: World, name: str,
) -> None:
    client = KubeClient()
    client.use(world.endpoint())
    try:
        with pytest.raises(KubeError):
            await client.annotate_pod(TENANT_NS, name, {REBUILD_ANNOTATION: "true"})
    finally:
        await client.aclose()
    assert world.pod_annotations(VICTIM_NS, VICTIM_POD) == world.victim_pod_annotations
    assert not _victim_requests(world)


async def test_the_kube_adapter_still_reads_and_annotates_in_the_namespace(world: World) -> None:
    client = KubeClient()
    client.use(world.endpoint())
    try:
        token = await client.read_secret_key(TENANT_NS, TENANT_SECRET, TENANT_SECRET_KEY)
        await client.annotate_pod(TENANT_NS, "db-node2.v1", {"stemedb.io/probe": "1"})
    finally:
        await client.aclose()
    assert token.decode() == world.tenant_secret_value
    assert world.pod_annotations(TENANT_NS, "db-node2.v1").get("stemedb.io/probe") == "1"


# ----------------------------------------------------------------------------- the audit log

def _operator_outside_namespace(world: World) -> list[str]:
    out = []
    for e in world.cp.audit_events():
        if e["user"].get("username") != world.operator_user:
            continue
        ref = e.get("objectRef")
        if ref is None:
            continue  # non-resource URLs (discovery, /version)
        if ref.get("namespace") != TENANT_NS:
            out.append(f"{e.get('verb')} {e.get('requestURI')} -> "
                       f"{(e.get('responseStatus') or {}).get('code')}")
    return out


def test_the_operator_user_never_left_the_tenant_namespace(
    world: World, corpus_run: CorpusRun,
) -> None:
    """Runs last: covers the corpus, the exploits and the adapter tests above."""
    events = [e for e in world.cp.audit_events() if e["user"].get("username")
              == world.operator_user]
    assert events, "the audit log has no request of the operator's user"
    outside = _operator_outside_namespace(world)
    assert not outside, f"{len(outside)} requests outside {TENANT_NS}: {sorted(set(outside))[:10]}"
    assert not _victim_requests(world)
