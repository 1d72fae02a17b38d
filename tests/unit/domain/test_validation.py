"""The spec's untrusted text: one set of rules at admission and in the domain,
URL and name cases, the destination policy and contradictions with StemeDB."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.domain import Observation, ReplicaObservation, SourceStatus, parse_spec
from controller.domain.consistency import spec_contradictions
from controller.domain.destinations import DestinationPolicy, parse_networks
from controller.domain.spec import MAXIMA
from controller.domain.validation import (
    CONTACT_PATTERN,
    DNS1123_SUBDOMAIN,
    NODE_ID,
    SECRET_KEY,
    URL,
    contact_problem,
    object_name_problem,
    url_problem,
)

CRD = Path(__file__).resolve().parents[3] / "crds" / "stemedbclusters.stemedb.io.yaml"


def _spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def _node(path: str) -> dict[str, Any]:
    s = _spec_schema()
    for part in path.removeprefix("spec.").split("."):
        s = s["items"] if part == "[]" else s["properties"][part]
    return s


@pytest.mark.parametrize(("path", "pattern"), [
    ("spec.primary.adminUrl", URL),
    ("spec.replicas.[].metricsUrl", URL),
    ("spec.escalation.webhookUrl", URL),
    ("spec.primary.id", NODE_ID),
    ("spec.replicas.[].id", NODE_ID),
    ("spec.replicas.[].agentId", NODE_ID),
    ("spec.replicas.[].podRef.name", DNS1123_SUBDOMAIN),
    ("spec.auth.tokenSecretRef.name", DNS1123_SUBDOMAIN),
    ("spec.auth.caSecretRef.name", DNS1123_SUBDOMAIN),
    ("spec.auth.tokenSecretRef.key", SECRET_KEY),
    ("spec.auth.caSecretRef.key", SECRET_KEY),
    ("spec.escalation.clusterSre", CONTACT_PATTERN),
    ("spec.escalation.distributedSystemsEngineer", CONTACT_PATTERN),
    ("spec.escalation.principalEngineer", CONTACT_PATTERN),
])
def test_the_crd_refuses_with_the_same_pattern_the_domain_checks(path: str, pattern: str) -> None:
    assert _node(path)["pattern"] == pattern


def test_every_number_in_the_crd_has_the_domains_maximum() -> None:
    found: dict[str, float] = {}

    def walk(s: dict[str, Any], path: str) -> None:
        if s.get("type") in ("number", "integer") and not path.endswith("[]"):
            found[path] = s.get("maximum", float("inf"))
        for key, sub in (s.get("properties") or {}).items():
            walk(sub, f"{path}.{key}")
        if "items" in s:
            walk(s["items"], f"{path}[]")

    walk(_spec_schema(), "spec")
    expected = {p: MAXIMA.get(p, 1.0) for p in found}  # fractions are bounded by 1
    assert found == expected


@pytest.mark.parametrize(("url", "ok"), [
    ("http://stemedb-0:18180", True),
    ("https://stemedb-0.stemedb.svc.cluster.local:18180/base/", True),
    ("http://10.0.0.7", True),
    ("http://[fd00::7]:8080", True),
    ("javascript:alert(1)", False),
    ("file:///etc/passwd", False),
    ("ftp://h/x", False),
    ("HTTP://h", False),
    ("http:/h", False),
    ("http://", False),
    ("http:///x", False),
    ("http://u:p@h", False),
    ("http://@h", False),
    ("http://h:0", False),
    ("http://h:99999", False),
    ("http://h:", False),
    ("http://h/?q=1", False),
    ("http://h/#f", False),
    ("http://h /x", False),
    ("http://h\r\nX-Evil: 1", False),
    ("http://h\tx", False),
    ("http://bücher.example", False),
    ("http://h/" + "a" * 2100, False),
    ("stemedb-0:18180", False),
])
def test_url_rules(url: str, ok: bool) -> None:
    assert (url_problem(url) is None) is ok, url_problem(url)


@pytest.mark.parametrize(("name", "ok"), [
    ("stemedb-admin", True), ("a.b-c", True), ("a" * 253, True),
    ("../x", False), ("a/b", False), ("A", False), ("a_b", False), ("a b", False),
    ("-a", False), ("a.", False), ("a" * 254, False), ("", False),
])
def test_object_names(name: str, ok: bool) -> None:
    assert (object_name_problem(name) is None) is ok


@pytest.mark.parametrize(("contact", "ok"), [
    ("Cluster SRE", True), ("Ünïcode Persön", True), ("team@example.com", True),
    ("a\nb", False), ("a\u202eb", False), ("a\u200bb", False), ("   ", False),
    ("x" * 257, False),
])
def test_contacts(contact: str, ok: bool) -> None:
    assert (contact_problem(contact) is None) is ok


def test_a_refused_value_is_never_kept_in_what_parse_spec_reports() -> None:
    hostile = "../../other/secrets/token\nX: y"
    spec = {"primary": {"adminUrl": "http://p:1"}, "replicas": [{"id": "n2", "agentId": "a2"}],
            "auth": {"tokenSecretRef": {"name": hostile, "key": "t"}}}
    with pytest.raises(Exception) as info:
        parse_spec(spec)
    [problem] = info.value.problems  # type: ignore[attr-defined]
    assert problem.path == "spec.auth.tokenSecretRef.name"
    assert "\n" not in problem.message  # escaped, so it cannot forge a line


# --------------------------------------------------------------------------- destinations

POLICY = DestinationPolicy.default().with_denied_endpoints([("10.0.0.1", 443)])


@pytest.mark.parametrize(("address", "port", "denied"), [
    ("169.254.169.254", 80, True),
    ("::ffff:169.254.169.254", 80, True),  # IPv4-mapped
    ("fe80::1", 80, True),
    ("fd00:ec2::254", 80, True),
    ("0.0.0.0", 18180, True),
    ("10.0.0.1", 443, True),  # the API server
    ("10.0.0.1", 18180, False),  # same host, another port
    ("10.0.0.7", 18180, False),
    ("127.0.0.1", 18180, False),  # loopback: denied only with --deny-loopback
])
def test_the_default_destination_policy(address: str, port: int, denied: bool) -> None:
    assert (POLICY.refusal(address, port) is not None) is denied


def test_an_allow_list_admits_only_its_networks_and_deny_wins() -> None:
    policy = DestinationPolicy(deny=parse_networks(["10.1.2.3"]),
                               allow=parse_networks(["10.0.0.0/8"]))
    assert policy.refusal("10.9.9.9", 80) is None
    assert policy.refusal("192.168.1.1", 80) is not None
    assert policy.refusal("10.1.2.3", 80) is not None


def test_a_bad_cidr_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        parse_networks(["10.0.0.0/33"])


# --------------------------------------------------------------------------- contradictions

SPEC = parse_spec({
    "primary": {"adminUrl": "http://p:1", "id": "node1"},
    "replicas": [{"id": "node2", "agentId": "agent-node2"},
                 {"id": "node3", "agentId": "agent-node3"}],
})


def _obs(node: str | None = "node1", role: str | None = "primary",
         agents: tuple[str | None, str | None] = ("agent-node2", "agent-node3")) -> Observation:
    return Observation(
        at=0.0, primary=SourceStatus.ok(), primary_node=node, primary_role=role,
        replicas=(ReplicaObservation("node2", 1.0, agent_id=agents[0]),
                  ReplicaObservation("node3", 1.0, agent_id=agents[1])),
    )


@pytest.mark.parametrize(("obs", "paths"), [
    pytest.param(_obs(), [], id="agrees"),
    pytest.param(_obs(node=None, role=None, agents=(None, None)), [], id="says nothing"),
    pytest.param(_obs(agents=("agent-node3", "agent-node2")),
                 ["spec.replicas[0].agentId", "spec.replicas[1].agentId"], id="agents swapped"),
    pytest.param(_obs(role="replica", node="node2"),
                 ["spec.primary.adminUrl", "spec.primary.id"], id="adminUrl reaches a replica"),
    pytest.param(_obs(node="node9"), ["spec.primary.id"], id="primary id differs"),
])
def test_contradictions_with_stemedb_name_the_field(obs: Observation, paths: list[str]) -> None:
    assert [p.path for p in spec_contradictions(SPEC, obs)] == paths


@pytest.mark.parametrize(("url", "ok"), [
    ("http://127.0.0.1:5", True), ("http://[::1]:5", True), ("http://a.b.example.:1", True),
    ("http://127.1:1", False), ("http://2130706433", False), ("http://0x7f.1", False),
    ("http://0x7f000001", False), ("http://01.2.3.4", False), ("http://1.2.3.4.5", False),
])
def test_numeric_host_shorthands_are_refused(url: str, ok: bool) -> None:
    assert (url_problem(url) is None) is ok
