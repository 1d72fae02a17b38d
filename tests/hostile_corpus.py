"""Hostile and invalid StemeDBCluster specs, and tricky specs that must still be accepted.

Data only, shared by tests/unit/domain/test_hostile_corpus.py (the operator's own
parser refuses every case) and tests/e2e/test_hostile_specs.py (the API server
refuses them at admission, or the operator reports them in a condition).

Threat model (issue 11): a tenant may create StemeDBCluster objects in its own
namespace and nothing else; the operator may `get` Secrets and `get/patch` Pods in
every namespace. Every case is the valid `base_spec()` with one mutation.

Each `Case` says
- `path`: the field path the refusal must name (kubectl's stderr at admission,
  `SpecProblem.path` in the parser: equal to it or starting with it);
- `also`: other paths that are as good (where the API server and the parser put
  the same problem at different levels, e.g. a list-map duplicate);
- `outcome`: "refused" (schema and parser refuse it) or "reported" (only the
  operator can judge it: accepted, then a condition with status False names the
  field; no request goes to that destination);
- `mention`: a word the admission message must also contain;
- `unknown_field`: a field the schema does not declare (strict kubectl refuses
  it; a lax client gets it pruned, so the parser never sees it);
- `json_ok`: False for values JSON cannot carry (NaN, infinity): parser only.

Strings may hold placeholders that the tests fill in (see `PLACEHOLDERS`).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from localkube.simulator import FAST_DETECTION, FAST_REMEDIATION

# ----------------------------------------------------------------------------- world

VICTIM_NS = "hostile-victim"
VICTIM_SECRET = "victim-token"
VICTIM_SECRET_KEY = "token"
VICTIM_POD = "victim-pod"
TENANT_SECRET = "tenant-token"
TENANT_SECRET_KEY = "token"
TENANT_POD = "db-node2"

# Filled in by the tests: the e2e test points them at its capture servers and the
# API server; the parser test uses `UNIT_VALUES`.
PLACEHOLDERS = ("$CAPTURE", "$HOSTPORT", "$CAPPORT", "$APISERVER", "$APIPORT", "$DENIED",
                "$CASE")
UNIT_VALUES = {
    "$CAPTURE": "http://stemedb-0.tenant.svc:18180",
    "$HOSTPORT": "stemedb-0.tenant.svc:18180",
    "$CAPPORT": "18180",
    "$APISERVER": "10.96.0.1:443",
    "$APIPORT": "443",
    "$DENIED": "127.0.0.2:18180",
    "$CASE": "case",
}

KB300 = 300 * 1024


def base_spec() -> dict[str, Any]:
    """A valid spec that uses every field a tenant controls (second-scale windows)."""
    return {
        "primary": {"adminUrl": "$CAPTURE/t/$CASE/primary", "id": "node1"},
        "replicas": [
            {"id": "node2", "agentId": "agent-node2", "metricsUrl": "$CAPTURE/t/$CASE/node2",
             "podRef": {"name": TENANT_POD}},
            {"id": "node3", "agentId": "agent-node3", "metricsUrl": "$CAPTURE/t/$CASE/node3"},
        ],
        "auth": {"tokenSecretRef": {"name": TENANT_SECRET, "key": TENANT_SECRET_KEY}},
        "detection": copy.deepcopy(FAST_DETECTION),
        "remediation": copy.deepcopy(FAST_REMEDIATION),
        "escalation": {"clusterSre": "Cluster SRE", "webhookUrl": "$CAPTURE/t/$CASE/hook"},
    }


# ----------------------------------------------------------------------------- mutations

@dataclass(frozen=True)
class Set:
    """Set the value at a path relative to `.spec` ("replicas[0].podRef.name")."""

    at: str
    value: Any


@dataclass(frozen=True)
class Drop:
    """Remove the key at a path relative to `.spec`."""

    at: str


Op = Set | Drop
Outcome = Literal["refused", "reported"]


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    ops: tuple[Op, ...]
    path: str
    outcome: Outcome = "refused"
    also: tuple[str, ...] = ()
    mention: str = ""
    unknown_field: bool = False
    json_ok: bool = True

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.also)

    @property
    def field_group(self) -> str:
        """The field the case aims at, indexes dropped: replicas[].podRef.name."""
        return re.sub(r"\[\d+\]", "[]", self.path.removeprefix("spec."))


@dataclass(frozen=True)
class Valid:
    id: str
    why: str
    ops: tuple[Op, ...] = ()
    # Secrets (name -> data) the tenant namespace needs for this spec to work.
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parts(at: str) -> list[str | int]:
    return [int(idx) if idx else key for key, idx in _TOKEN.findall(at)]


def mutated(spec: Mapping[str, Any], ops: tuple[Op, ...]) -> dict[str, Any]:
    """A deep copy of `spec` with `ops` applied; missing intermediate objects are made."""
    out: dict[str, Any] = copy.deepcopy(dict(spec))
    for op in ops:
        parts = _parts(op.at)
        node: Any = out
        for part in parts[:-1]:
            if isinstance(part, int):
                node = node[part]
            else:
                if not isinstance(node.get(part), dict | list):
                    node[part] = {}
                node = node[part]
        last = parts[-1]
        if isinstance(op, Drop):
            if isinstance(last, int):
                del node[last]
            else:
                node.pop(last, None)
        else:
            node[last] = copy.deepcopy(op.value)
    return out


def filled(value: Any, values: Mapping[str, str]) -> Any:
    """`value` with every placeholder in its strings replaced (keys are left alone)."""
    if isinstance(value, str):
        if "$" not in value:
            return value
        for name in PLACEHOLDERS:
            value = value.replace(name, values[name])
        return value
    if isinstance(value, dict):
        return {k: filled(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [filled(v, values) for v in value]
    return value


def case_spec(ops: tuple[Op, ...], values: Mapping[str, str]) -> dict[str, Any]:
    return dict(filled(mutated(base_spec(), ops), values))


# ----------------------------------------------------------------------------- names

def _long_subdomain(n: int) -> str:
    """A lowercase DNS-1123 subdomain of exactly n characters (63-char labels)."""
    labels, left = [], n
    while left > 0:
        size = min(63, left)
        labels.append("a" * size)
        left -= size + 1
    name = ".".join(labels)
    return name[:n] if len(name) >= n else name + "b" * (n - len(name))


# (kind, label, value) for fields that must be DNS-1123 subdomains. `{target}` is the
# victim's object path for the field (secrets/victim-token or pods/victim-pod),
# `{victim}` the victim object's name, `{name}` the tenant's own object's name.
NAME_VALUES: list[tuple[str, str, str]] = [
    ("traversal", "victim-path", "../../" + VICTIM_NS + "/{target}"),
    ("traversal", "deeper-victim-path", "x/../../../" + VICTIM_NS + "/{target}"),
    ("traversal", "api-root-path", "../../../../api/v1/namespaces/" + VICTIM_NS + "/{target}"),
    ("traversal", "dotdot", ".."),
    ("traversal", "dot", "."),
    ("traversal", "dotdot-slash", "../x"),
    ("traversal", "trailing-dotdot", "x/.."),
    ("traversal", "slash", "a/b"),
    ("traversal", "other-namespace-slash", VICTIM_NS + "/{victim}"),
    ("traversal", "leading-slash", "/{name}"),
    ("traversal", "trailing-slash", "{name}/"),
    ("traversal", "subresource", "{name}/status"),
    ("traversal", "backslashes", "..\\..\\" + VICTIM_NS + "\\{name}"),
    ("encoding", "encoded-victim-path", "..%2F..%2F" + VICTIM_NS + "%2F{target_enc}"),
    ("encoding", "encoded-dots", "%2e%2e"),
    ("encoding", "encoded-dots-suffix", "a%2e%2e"),
    ("encoding", "encoded-slash", "a%2Fb"),
    ("encoding", "lone-encoded-slash", "%2F"),
    ("encoding", "double-encoded-slash", "..%252F..%252F" + VICTIM_NS),
    ("encoding", "query", "{name}?x=1"),
    ("encoding", "fragment", "{name}#x"),
    ("charset", "uppercase", "Tenant-Token"),
    ("charset", "underscore", "tenant_token"),
    ("charset", "space", "tenant token"),
    ("charset", "trailing-space", "tenant-token "),
    ("charset", "leading-dash", "-tenant"),
    ("charset", "trailing-dash", "tenant-"),
    ("charset", "leading-dot", ".tenant"),
    ("charset", "trailing-dot", "tenant."),
    ("charset", "empty-label", "a..b"),
    ("charset", "colon", "a:b"),
    ("charset", "at", "a@b"),
    ("charset", "star", "*"),
    ("control", "newline", "a\nb"),
    ("control", "nul", "a\x00b"),
    ("control", "tab", "a\tb"),
    ("control", "crlf-header", "a\r\nX-Evil: 1"),
    ("unicode", "rtl-override", "\u202etenant-token"),
    ("unicode", "zero-width-space", "tenant\u200b-token"),
    ("unicode", "cyrillic-homoglyph", "t\u0435nant-token"),
    ("unicode", "fullwidth", "\uff54enant-token"),
    ("unicode", "combining-accent", "tenant-token\u0301"),
    ("length", "empty", ""),
    ("length", "254-chars", _long_subdomain(254)),
    ("enormous", "300kb", "a" * KB300),
]

# A subset for caSecretRef.name (the same code path as tokenSecretRef.name).
CA_NAME_LABELS = {"victim-path", "dotdot", "slash", "encoded-victim-path", "uppercase",
                  "underscore", "newline", "rtl-override", "empty", "300kb"}

KEY_VALUES: list[tuple[str, str, str]] = [
    ("length", "empty", ""),
    ("traversal", "slash", "a/b"),
    ("traversal", "dotdot-slash", "../token"),
    ("charset", "space", "to ken"),
    ("charset", "colon", "token:x"),
    ("encoding", "percent", "%2F"),
    ("control", "newline", "tok\nen"),
    ("unicode", "accent", "tok\u00e9n"),
    ("unicode", "zero-width-space", "tok\u200ben"),
    ("length", "254-chars", "t" * 254),
    ("enormous", "300kb", "t" * KB300),
]
CA_KEY_LABELS = {"empty", "slash", "newline", "300kb"}

ID_VALUES: list[tuple[str, str, Any]] = [
    ("length", "empty", ""),
    ("charset", "leading-dash", "-node"),
    ("charset", "trailing-dash", "node-"),
    ("charset", "leading-dot", ".node"),
    ("charset", "trailing-underscore", "node_"),
    ("charset", "space", "no de"),
    ("charset", "colon", "a:b"),
    ("charset", "at", "a@b"),
    ("charset", "label-injection", 'node2",role="primary'),
    ("charset", "braces", "node{2}"),
    ("charset", "equals", "a=b"),
    ("traversal", "slash", "a/b"),
    ("traversal", "dotdot-slash", "../x"),
    ("control", "newline", "node\n2"),
    ("unicode", "accent", "n\u00f6de"),
    ("unicode", "rtl-override", "\u202enode"),
    ("unicode", "zero-width-space", "node\u200b"),
    ("length", "64-chars", "n" * 64),
    ("enormous", "300kb", "n" * KB300),
    ("type", "number", 2),
]

# Every URL a tenant controls must be http(s) with a host, no userinfo, no query or
# fragment, no whitespace or control characters, a valid port.
URL_VALUES: list[tuple[str, str, str]] = [
    ("scheme", "javascript", "javascript:alert(1)//$HOSTPORT"),
    ("scheme", "file", "file:///etc/passwd"),
    ("scheme", "file-host", "file://$HOSTPORT/etc/passwd"),
    ("scheme", "ftp", "ftp://$HOSTPORT/t/$CASE/x"),
    ("scheme", "gopher", "gopher://$HOSTPORT/_t/$CASE/x"),
    ("scheme", "data", "data:text/plain,stemedb"),
    ("scheme", "websocket", "ws://$HOSTPORT/t/$CASE/x"),
    ("scheme", "mailto", "mailto:sre@example.com"),
    ("scheme", "none", "$HOSTPORT/t/$CASE/x"),
    ("scheme", "scheme-relative", "//$HOSTPORT/t/$CASE/x"),
    ("scheme", "plain-word", "stemedb"),
    ("host", "empty-host-path", "http:///t/$CASE/x"),
    ("host", "scheme-only", "http://"),
    ("host", "https-colon-only", "https:"),
    ("host", "single-slash", "http:/$HOSTPORT/t/$CASE/x"),
    ("host", "bad-ipv6", "http://[::1/t/$CASE/x"),
    ("userinfo", "user-password", "http://user:pass@$HOSTPORT/t/$CASE/x"),
    ("userinfo", "user", "http://user@$HOSTPORT/t/$CASE/x"),
    ("userinfo", "empty-userinfo", "http://@$HOSTPORT/t/$CASE/x"),
    ("userinfo", "host-as-userinfo", "http://$HOSTPORT@example.com/t/$CASE/x"),
    ("port", "zero", "http://127.0.0.1:0/t/$CASE/x"),
    ("port", "99999", "http://127.0.0.1:99999/t/$CASE/x"),
    ("port", "negative", "http://127.0.0.1:-1/t/$CASE/x"),
    ("port", "word", "http://127.0.0.1:port/t/$CASE/x"),
    ("port", "two-ports", "http://$HOSTPORT:1/t/$CASE/x"),
    ("whitespace", "space-in-host", "http://stemedb 0:18180/t/$CASE/x"),
    ("whitespace", "space-in-path", "http://$HOSTPORT/t/$CASE/a b"),
    ("whitespace", "leading-space", " http://$HOSTPORT/t/$CASE/x"),
    ("whitespace", "trailing-space", "http://$HOSTPORT/t/$CASE/x "),
    ("whitespace", "tab", "http://$HOSTPORT/t/$CASE/x\t"),
    ("whitespace", "unicode-line-separator", "http://$HOSTPORT/t/$CASE/x\u2028"),
    ("injection", "crlf-header-in-path", "http://$HOSTPORT/t/$CASE/x\r\nX-Evil: 1"),
    ("injection", "crlf-header-in-host", "http://h\r\nX-Evil: 1"),
    ("injection", "lf-in-path", "http://$HOSTPORT/t/$CASE/x\nX-Evil: 1"),
    ("injection", "nul", "http://$HOSTPORT/t/$CASE/x\x00"),
    ("injection", "del", "http://$HOSTPORT/t/$CASE/x\x7f"),
    ("query", "query", "http://$HOSTPORT/t/$CASE/x?token=1"),
    ("query", "fragment", "http://$HOSTPORT/t/$CASE/x#frag"),
    ("length", "empty", ""),
    ("enormous", "300kb", "http://$HOSTPORT/" + "a" * KB300),
]

URL_FIELDS = {
    "primary.adminUrl": "spec.primary.adminUrl",
    "replicas[1].metricsUrl": "spec.replicas[1].metricsUrl",
    "escalation.webhookUrl": "spec.escalation.webhookUrl",
}

CONTACT_FIELDS = ("clusterSre", "distributedSystemsEngineer", "principalEngineer")
CONTACT_VALUES: list[tuple[str, str, Any]] = [
    ("control", "newline", "Cluster SRE\nCall 555-0100"),
    ("control", "crlf", "Cluster SRE\r\nX-Evil: 1"),
    ("control", "nul", "Cluster\x00SRE"),
    ("control", "escape-sequence", "\x1b[31mCluster SRE\x1b[0m"),
    ("control", "tab", "Cluster\tSRE"),
    ("control", "del", "Cluster SRE\x7f"),
    ("unicode", "rtl-override", "Cluster \u202eERS"),
    ("unicode", "zero-width-space", "Cluster\u200bSRE"),
]


# ----------------------------------------------------------------------------- the corpus

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _fill_name(template: str, name: str, target: str) -> str:
    return (template.replace("{target_enc}", target.replace("/", "%2F"))
            .replace("{target}", target).replace("{victim}", target.split("/")[-1])
            .replace("{name}", name))


def _name_cases() -> list[Case]:
    cases: list[Case] = []
    fields = [
        ("token-name", "auth.tokenSecretRef.name", f"secrets/{VICTIM_SECRET}", TENANT_SECRET,
         None),
        ("ca-name", "auth.caSecretRef.name", f"secrets/{VICTIM_SECRET}", TENANT_SECRET,
         CA_NAME_LABELS),
        ("pod-name", "replicas[0].podRef.name", f"pods/{VICTIM_POD}", TENANT_POD, None),
    ]
    for prefix, at, target, name, subset in fields:
        for kind, label, template in NAME_VALUES:
            if subset is not None and label not in subset:
                continue
            value = _fill_name(template, name, target)
            if at == "auth.caSecretRef.name":
                ops: tuple[Op, ...] = (Set("auth.caSecretRef", {"name": value, "key": "ca.crt"}),)
            else:
                ops = (Set(at, value),)
            cases.append(Case(f"{prefix}/{label}", kind, ops, f"spec.{at}"))
    for prefix, at, subset2 in [("token-key", "auth.tokenSecretRef.key", None),
                                ("ca-key", "auth.caSecretRef.key", CA_KEY_LABELS)]:
        for kind, label, value in KEY_VALUES:
            if subset2 is not None and label not in subset2:
                continue
            if at == "auth.caSecretRef.key":
                ops = (Set("auth.caSecretRef", {"name": "tenant-ca", "key": value}),)
            else:
                ops = (Set(at, value),)
            cases.append(Case(f"{prefix}/{label}", kind, ops, f"spec.{at}"))
    return cases


def _namespace_cases() -> list[Case]:
    """Fields naming another namespace do not exist: refused by a strict client,
    pruned by the API server otherwise; never followed."""
    return [
        Case("namespace/token-ref-namespace", "namespace",
             (Set("auth.tokenSecretRef.namespace", VICTIM_NS),),
             "spec.auth.tokenSecretRef.namespace", unknown_field=True),
        Case("namespace/token-ref-victim-name-and-namespace", "namespace",
             (Set("auth.tokenSecretRef", {"name": VICTIM_SECRET, "key": VICTIM_SECRET_KEY,
                                          "namespace": VICTIM_NS}),),
             "spec.auth.tokenSecretRef.namespace", unknown_field=True),
        Case("namespace/ca-ref-namespace", "namespace",
             (Set("auth.caSecretRef", {"name": VICTIM_SECRET, "key": VICTIM_SECRET_KEY,
                                       "namespace": VICTIM_NS}),),
             "spec.auth.caSecretRef.namespace", unknown_field=True),
        Case("namespace/pod-ref-namespace", "namespace",
             (Set("replicas[0].podRef", {"name": VICTIM_POD, "namespace": VICTIM_NS}),),
             "spec.replicas[0].podRef.namespace", unknown_field=True),
        Case("namespace/spec-namespace", "namespace", (Set("namespace", VICTIM_NS),),
             "spec.namespace", unknown_field=True),
    ]


def _id_cases() -> list[Case]:
    cases: list[Case] = []
    for prefix, at in [("primary-id", "primary.id"), ("replica-id", "replicas[0].id"),
                       ("agent-id", "replicas[0].agentId")]:
        for kind, label, value in ID_VALUES:
            also: tuple[str, ...] = ()
            if at == "replicas[0].id" and label == "empty":
                also = ("spec.replicas",)  # server-side apply: the list-map key is missing
            cases.append(Case(f"{prefix}/{label}", kind, (Set(at, value),), f"spec.{at}",
                              also=also))
    return cases


def _duplicate_cases() -> list[Case]:
    third = {"id": "node4", "agentId": "agent-node2"}
    return [
        Case("duplicate/replica-id", "duplicate", (Set("replicas[1].id", "node2"),),
             "spec.replicas[1].id", also=("spec.replicas[1]", "spec.replicas")),
        Case("duplicate/agent-id", "duplicate", (Set("replicas[1].agentId", "agent-node2"),),
             "spec.replicas", mention="agentId"),
        Case("duplicate/agent-id-third-replica", "duplicate", (Set("replicas", [
            {"id": "node2", "agentId": "agent-node2"},
            {"id": "node3", "agentId": "agent-node3"}, third]),),
             "spec.replicas", mention="agentId"),
        Case("duplicate/replica-id-is-primary-id", "duplicate", (Set("replicas[0].id", "node1"),),
             "spec.replicas[0].id", also=("spec.replicas", "spec.primary.id")),
        Case("duplicate/primary-id-is-replica-id", "duplicate", (Set("primary.id", "node3"),),
             "spec.replicas[1].id", also=("spec.replicas", "spec.primary.id")),
    ]


def _url_cases() -> list[Case]:
    cases: list[Case] = []
    for at, path in URL_FIELDS.items():
        prefix = at.split(".")[-1].replace("[1]", "")
        for kind, label, value in URL_VALUES:
            cases.append(Case(f"{_slug(prefix)}/{label}", f"url-{kind}", (Set(at, value),),
                              path))
        cases.append(Case(f"{_slug(prefix)}/number", "type", (Set(at, 18180),), path))
    return cases


def _destination_cases() -> list[Case]:
    """Well-formed URLs whose destination only the operator can judge."""
    admin = "primary.adminUrl"
    rows: list[tuple[str, str, str]] = [
        (admin, "api-server", "https://$APISERVER/t/$CASE/primary"),
        (admin, "api-server-localhost", "https://localhost:$APIPORT/t/$CASE/primary"),
        (admin, "api-server-short-ipv4", "https://127.1:$APIPORT/t/$CASE/primary"),
        (admin, "api-server-decimal-ipv4", "https://2130706433:$APIPORT/t/$CASE/primary"),
        (admin, "metadata", "http://169.254.169.254/latest/meta-data"),
        (admin, "metadata-port", "http://169.254.169.254:80/t/$CASE/primary"),
        (admin, "metadata-decimal", "http://2852039166/t/$CASE/primary"),
        (admin, "metadata-ipv4-mapped", "http://[::ffff:169.254.169.254]/t/$CASE/primary"),
        (admin, "link-local-ipv6", "http://[fe80::1]:18180/t/$CASE/primary"),
        (admin, "unspecified-ipv4", "http://0.0.0.0:$CAPPORT/t/$CASE/primary"),
        (admin, "unspecified-ipv6", "http://[::]:$CAPPORT/t/$CASE/primary"),
        (admin, "denied-by-flag", "http://$DENIED/t/$CASE/primary"),
        ("replicas[1].metricsUrl", "metadata", "http://169.254.169.254/t/$CASE/node3"),
        ("replicas[1].metricsUrl", "denied-by-flag", "http://$DENIED/t/$CASE/node3"),
        ("replicas[1].metricsUrl", "api-server", "https://$APISERVER/t/$CASE/node3"),
        ("escalation.webhookUrl", "metadata", "http://169.254.169.254/t/$CASE/hook"),
        ("escalation.webhookUrl", "api-server", "https://$APISERVER/t/$CASE/hook"),
        ("escalation.webhookUrl", "denied-by-flag", "http://$DENIED/t/$CASE/hook"),
    ]
    return [Case(f"destination/{_slug(at.split('.')[-1].replace('[1]', ''))}/{label}",
                 "destination", (Set(at, url),), URL_FIELDS[at], outcome="reported")
            for at, label, url in rows]


def _number_label(value: Any) -> str:
    text = str(value).replace("+", "").replace("-", "minus-")
    return _slug(text.replace(".", "p"))


def _number_cases() -> list[Case]:
    d, r = "detection", "remediation"
    rows: list[tuple[str, str, tuple[Op, ...], str]] = []

    def n(kind: str, at: str, value: Any, label: str | None = None,
          path: str | None = None, extra: tuple[Op, ...] = ()) -> None:
        lbl = label or _number_label(value)
        rows.append((kind, f"{at}/{lbl}", (*extra, Set(at, value)), path or f"spec.{at}"))

    # Seconds: > 0 where required, at most 7 days; lag thresholds at most 1 day.
    for at in (f"{d}.pollIntervalSeconds", f"{d}.staleAfterSeconds"):
        n("range", at, 0)
        n("range", at, -1)
        n("range", at, 1e308)
        n("range", at, 604801)
        n("type", at, "10", "string")
        n("type", at, True, "bool")
    for at in (f"{d}.warning.forSeconds", f"{d}.critical.forSeconds",
               f"{d}.recovery.forSeconds"):
        n("range", at, 1e308)
        n("range", at, 604801)
        n("range", at, -1)
    n("type", f"{d}.warning.forSeconds", "300", "string")
    n("type", f"{d}.critical.forSeconds", [2], "list")
    for at in (f"{d}.warning.lagSeconds", f"{d}.critical.lagSeconds",
               f"{d}.escalation.lagSeconds", f"{d}.recovery.lagSeconds"):
        n("range", at, 0)
        n("range", at, -1)
    n("range", f"{d}.escalation.lagSeconds", 86401)
    n("range", f"{d}.escalation.lagSeconds", 1e308)
    n("range", f"{d}.critical.lagSeconds", 1e308)
    n("type", f"{d}.warning.lagSeconds", "5", "string")
    n("type", f"{d}.critical.lagSeconds", {"value": 4}, "object")
    n("range", f"{d}.stormReplicas", 1)
    n("type", f"{d}.stormReplicas", 2.5)
    n("type", f"{d}.stormReplicas", "2", "string")
    n("range", f"{d}.crashLoopRestarts", 0)
    n("range", f"{d}.crashLoopRestarts", -3)
    n("range", f"{r}.cooldownSeconds", -1)
    n("range", f"{r}.cooldownSeconds", 604801)
    n("range", f"{r}.cooldownSeconds", 1e308)
    n("range", f"{r}.maxActionsPerHour", -1)
    n("range", f"{r}.maxActionsPerHour", 10001)
    n("type", f"{r}.maxActionsPerHour", 1.5)
    n("type", f"{r}.maxActionsPerHour", "20", "string")
    n("range", f"{r}.maxConcurrentRebuilds", -1)
    n("range", f"{r}.minInSyncReplicas", -1)
    for v in (0, 1, 1.5, -0.1):
        n("range", f"{r}.drainFraction", v)
    n("range", f"{r}.breakerReset.timeoutSeconds", 0)
    n("range", f"{r}.breakerReset.timeoutSeconds", 604801)
    n("range", f"{r}.breakerReset.maxAttempts", 0)
    n("range", f"{r}.breakerReset.maxAttempts", 11)
    n("range", f"{r}.throttle.stepIntervalSeconds", 0)
    n("range", f"{r}.throttle.stepIntervalSeconds", 604801)
    n("range", f"{r}.throttle.restoreStepSeconds", 0)
    n("range", f"{r}.throttle.restoreStepSeconds", 1e308)
    n("range", f"{r}.throttle.floorAssertionsPerSec", 0)
    n("range", f"{r}.throttle.unlimitedBaselineAssertionsPerSec", 0)
    n("range", f"{r}.merkleSync.timeoutSeconds", 0)
    n("range", f"{r}.merkleSync.timeoutSeconds", 604801)
    n("range", f"{r}.merkleSync.maxAttempts", 0)
    n("range", f"{r}.backpressure.lagSeconds", 0)
    n("range", f"{r}.backpressure.lagSeconds", 86401)
    n("range", "escalation.promoteAfterSeconds", 0)
    n("range", "escalation.promoteAfterSeconds", 604801)
    n("range", "escalation.promoteAfterSeconds", 1e308)
    return [Case(f"number/{label}", kind, ops, path) for kind, label, ops, path in rows]


def _order_cases() -> list[Case]:
    d, t = "spec.detection", "spec.remediation.throttle"
    return [
        Case("order/stale-below-poll-interval", "order",
             (Set("detection.pollIntervalSeconds", 20), Set("detection.staleAfterSeconds", 0.001)),
             f"{d}.staleAfterSeconds"),
        Case("order/stale-half-the-poll-interval", "order",
             (Set("detection.pollIntervalSeconds", 10), Set("detection.staleAfterSeconds", 5)),
             f"{d}.staleAfterSeconds"),
        Case("order/warning-equals-critical", "order", (Set("detection.warning.lagSeconds", 4),),
             f"{d}.critical.lagSeconds"),
        Case("order/warning-above-critical", "order", (Set("detection.warning.lagSeconds", 30),),
             f"{d}.critical.lagSeconds"),
        Case("order/critical-above-escalation", "order",
             (Set("detection.critical.lagSeconds", 100),), f"{d}.escalation.lagSeconds"),
        Case("order/recovery-equals-warning", "order", (Set("detection.recovery.lagSeconds", 2),),
             f"{d}.recovery.lagSeconds"),
        Case("order/ladder-increasing", "order",
             (Set("remediation.throttle.ladder", [0.5, 0.75]),), f"{t}.ladder"),
        Case("order/ladder-repeated-step", "order",
             (Set("remediation.throttle.ladder", [0.5, 0.5]),), f"{t}.ladder"),
        Case("order/restore-ramp-decreasing", "order",
             (Set("remediation.throttle.restoreRamp", [0.75, 0.5]),), f"{t}.restoreRamp"),
        Case("order/floor-above-last-ladder-step", "order",
             (Set("remediation.throttle.floorAssertionsPerSec", 5000),),
             f"{t}.floorAssertionsPerSec"),
        Case("order/stall-timeout-above-timeout", "order",
             (Set("remediation.merkleSync.stallTimeoutSeconds", 60),),
             "spec.remediation.merkleSync.stallTimeoutSeconds"),
    ]


def _list_cases() -> list[Case]:
    t = "spec.remediation.throttle"
    return [
        Case("list/ladder-empty", "range", (Set("remediation.throttle.ladder", []),),
             f"{t}.ladder"),
        Case("list/ladder-above-one", "range", (Set("remediation.throttle.ladder", [1.5]),),
             f"{t}.ladder"),
        Case("list/ladder-zero", "range", (Set("remediation.throttle.ladder", [0]),),
             f"{t}.ladder"),
        Case("list/ladder-string-step", "type", (Set("remediation.throttle.ladder", ["a"]),),
             f"{t}.ladder"),
        Case("list/ladder-not-a-list", "type", (Set("remediation.throttle.ladder", "0.5"),),
             f"{t}.ladder"),
        Case("list/restore-ramp-one", "range", (Set("remediation.throttle.restoreRamp", [1.0]),),
             f"{t}.restoreRamp"),
        Case("list/replicas-empty", "range", (Set("replicas", []),), "spec.replicas"),
        Case("list/replicas-65", "enormous", (Set("replicas", [
            {"id": f"node{i}", "agentId": f"agent-node{i}"} for i in range(2, 67)]),),
             "spec.replicas"),
    ]


def _enum_cases() -> list[Case]:
    m, rb = "remediation.mode", "remediation.rebuild.policy"
    rows: list[tuple[str, str, Any]] = [
        (m, "lowercase", "auto"), (m, "uppercase", "AUTO"), (m, "trailing-space", "Auto "),
        (m, "empty", ""), (m, "unknown", "Delete"), (m, "number", 1),
        (rb, "lowercase", "automatic"), (rb, "unknown", "Always"), (rb, "empty", ""),
    ]
    cases = [Case(f"enum/{at.split('.')[-1]}/{label}", "enum", (Set(at, v),), f"spec.{at}")
             for at, label, v in rows]
    cases += [
        Case("type/paused-string", "type", (Set("remediation.paused", "true"),),
             "spec.remediation.paused"),
        Case("type/paused-number", "type", (Set("remediation.paused", 1),),
             "spec.remediation.paused"),
        Case("type/rebuild-enabled-string", "type", (Set("remediation.rebuild.enabled", "yes"),),
             "spec.remediation.rebuild.enabled"),
    ]
    return cases


def _structure_cases() -> list[Case]:
    rows: list[tuple[str, tuple[Op, ...], str]] = [
        ("primary-string", (Set("primary", "http://stemedb-0:18180"),), "spec.primary"),
        ("replicas-object", (Set("replicas", {"id": "node2"}),), "spec.replicas"),
        ("replica-string", (Set("replicas[0]", "node2"),), "spec.replicas[0]"),
        ("pod-ref-string", (Set("replicas[0].podRef", TENANT_POD),), "spec.replicas[0].podRef"),
        ("auth-list", (Set("auth", []),), "spec.auth"),
        ("token-ref-string", (Set("auth.tokenSecretRef", TENANT_SECRET),),
         "spec.auth.tokenSecretRef"),
        ("token-name-list", (Set("auth.tokenSecretRef.name", [TENANT_SECRET]),),
         "spec.auth.tokenSecretRef.name"),
        ("token-key-object", (Set("auth.tokenSecretRef.key", {"k": "v"}),),
         "spec.auth.tokenSecretRef.key"),
        ("detection-string", (Set("detection", "fast"),), "spec.detection"),
        ("throttle-bool", (Set("remediation.throttle", True),), "spec.remediation.throttle"),
        ("escalation-list", (Set("escalation", ["sre"]),), "spec.escalation"),
        ("contact-number", (Set("escalation.clusterSre", 5),), "spec.escalation.clusterSre"),
    ]
    cases = [Case(f"type/{label}", "type", ops, path) for label, ops, path in rows]
    required: list[tuple[str, str, tuple[str, ...]]] = [
        ("primary", "spec.primary", ()),
        ("primary.adminUrl", "spec.primary.adminUrl", ()),
        ("replicas", "spec.replicas", ()),
        ("replicas[0].id", "spec.replicas[0].id", ("spec.replicas",)),
        ("auth.tokenSecretRef.key", "spec.auth.tokenSecretRef.key", ()),
        ("auth.tokenSecretRef.name", "spec.auth.tokenSecretRef.name", ()),
        ("replicas[0].podRef.name", "spec.replicas[0].podRef.name", ()),
    ]
    cases += [Case(f"required/{_slug(at)}", "required", (Drop(at),), path, also=also)
              for at, path, also in required]
    return cases


def _contact_cases() -> list[Case]:
    cases: list[Case] = []
    for name in CONTACT_FIELDS:
        for kind, label, value in CONTACT_VALUES:
            cases.append(Case(f"contact/{_slug(name)}/{label}", kind,
                              (Set(f"escalation.{name}", value),), f"spec.escalation.{name}"))
    cases.append(Case("contact/cluster-sre/300kb", "enormous",
                      (Set("escalation.clusterSre", "S" * KB300),), "spec.escalation.clusterSre"))
    return cases


def _non_json_cases() -> list[Case]:
    nan, inf = float("nan"), float("inf")
    return [
        Case("number/poll-interval-nan", "range", (Set("detection.pollIntervalSeconds", nan),),
             "spec.detection.pollIntervalSeconds", json_ok=False),
        Case("number/critical-for-infinity", "range",
             (Set("detection.critical.forSeconds", inf),),
             "spec.detection.critical.forSeconds", json_ok=False),
        Case("number/stale-after-infinity", "range", (Set("detection.staleAfterSeconds", inf),),
             "spec.detection.staleAfterSeconds", json_ok=False),
    ]


CASES: tuple[Case, ...] = tuple(
    _name_cases() + _namespace_cases() + _id_cases() + _duplicate_cases() + _url_cases()
    + _destination_cases() + _number_cases() + _order_cases() + _list_cases()
    + _enum_cases() + _structure_cases() + _contact_cases() + _non_json_cases()
)

# ----------------------------------------------------------------------------- valid

LONG_SECRET = _long_subdomain(253)

VALID: tuple[Valid, ...] = (
    Valid("base", "the base spec itself"),
    Valid("secret-name-with-dots", "a Secret name with dots is a DNS-1123 subdomain",
          (Set("auth.tokenSecretRef.name", "tenant.token.v2"),),
          {"tenant.token.v2": {TENANT_SECRET_KEY: "tenant-token-v2"}}),
    Valid("secret-name-253-chars", "the longest DNS-1123 subdomain",
          (Set("auth.tokenSecretRef.name", LONG_SECRET),),
          {LONG_SECRET: {TENANT_SECRET_KEY: "tenant-token-long"}}),
    Valid("secret-name-looks-like-other-namespace", "dots, not a namespace: "
          "victim-token.hostile-victim is a name in the tenant's namespace",
          (Set("auth.tokenSecretRef.name", f"{VICTIM_SECRET}.{VICTIM_NS}"),),
          {f"{VICTIM_SECRET}.{VICTIM_NS}": {TENANT_SECRET_KEY: "tenant-token-dotted"}}),
    Valid("secret-key-mixed", "keys may hold upper case, '_', '.' and '-'",
          (Set("auth.tokenSecretRef.key", "Token_v2.txt-1"),),
          {TENANT_SECRET: {"Token_v2.txt-1": "tenant-token-key"}}),
    Valid("ca-secret-ref", "a CA in the tenant's namespace",
          (Set("auth.caSecretRef", {"name": "tenant-ca", "key": "ca.crt"}),)),
    Valid("pod-name-with-dots", "a Pod name with dots",
          (Set("replicas[0].podRef.name", "db-node2.v1"),)),
    Valid("no-pod-ref", "podRef is optional", (Drop("replicas[0].podRef"),)),
    Valid("no-metrics-url", "metricsUrl is optional", (Drop("replicas[1].metricsUrl"),)),
    Valid("no-webhook-url", "webhookUrl is optional", (Drop("escalation.webhookUrl"),)),
    Valid("no-auth", "auth is optional", (Drop("auth"),)),
    Valid("https-with-port", "an https URL with a port",
          (Set("primary.adminUrl", "https://$HOSTPORT/t/$CASE/primary"),)),
    Valid("trailing-slash", "a URL ending in '/'",
          (Set("primary.adminUrl", "$CAPTURE/t/$CASE/primary/"),)),
    Valid("localhost-other-port", "the API server's host on another port is not the API server",
          (Set("primary.adminUrl", "http://localhost:$CAPPORT/t/$CASE/primary"),)),
    Valid("cluster-dns-name", "a fully qualified Service name",
          (Set("primary.adminUrl", "http://stemedb-0.stemedb.tenant.svc.cluster.local:18180"),)),
    Valid("private-ip", "a private address (the operator must reach in-cluster Pods)",
          (Set("replicas[1].metricsUrl", "http://10.0.0.5:18180"),)),
    Valid("port-65535", "the highest port",
          (Set("replicas[1].metricsUrl", "http://stemedb-3:65535/x"),)),
    Valid("no-port", "the scheme's default port",
          (Set("escalation.webhookUrl", "https://hooks.example.com/services/T000/B000"),)),
    Valid("ipv6-loopback", "an IPv6 literal",
          (Set("replicas[1].metricsUrl", "http://[::1]:18180/metrics-base"),)),
    Valid("ids-with-dot-and-underscore", "ids may hold '.', '_' and '-', and upper case",
          (Set("replicas[0].id", "Node_2.a"), Set("replicas[0].agentId", "Agent.node_2-x"))),
    Valid("id-one-char", "a one-character id", (Set("replicas[1].id", "n"),)),
    Valid("id-63-chars", "the longest id", (Set("replicas[1].agentId", "a" * 63),)),
    Valid("unicode-contact", "a printable unicode contact name",
          (Set("escalation.clusterSre", "\u00c9quipe SRE \u2014 \u65e5\u672c \U0001f6a8"),)),
    Valid("punctuated-contact", "punctuation in a contact name",
          (Set("escalation.principalEngineer", "O'Brien (SRE), #ops-oncall <ops@example.com>"),)),
    Valid("stale-equals-poll", "staleAfterSeconds may equal pollIntervalSeconds",
          (Set("detection.pollIntervalSeconds", 2), Set("detection.staleAfterSeconds", 2))),
    Valid("seven-days", "seconds fields at the 7-day bound",
          (Set("detection.critical.forSeconds", 604800),
           Set("escalation.promoteAfterSeconds", 604800))),
    Valid("one-day-lag", "lag thresholds at the 1-day bound",
          (Set("detection.escalation.lagSeconds", 86400),)),
    Valid("zero-window", "a threshold with no window", (Set("detection.critical.forSeconds", 0),)),
)


def summary() -> dict[str, Counter[str]]:
    """Case counts by kind, by field and by outcome (for the report)."""
    return {
        "kind": Counter(c.kind for c in CASES),
        "field": Counter(c.field_group for c in CASES),
        "outcome": Counter(c.outcome for c in CASES),
    }


def _check_unique() -> None:
    ids = [c.id for c in CASES] + [f"valid/{v.id}" for v in VALID]
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise AssertionError(f"duplicate case ids: {dups}")


_check_unique()
