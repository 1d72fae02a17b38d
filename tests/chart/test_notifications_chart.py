"""The chart's `notifications:` block: the flags, the mounted Secret and the egress it
renders, and that the operator's own command line accepts what is rendered."""

from __future__ import annotations

from typing import Any

import pytest

from controller.cli import build_parser
from tests.chart.conftest import Render, one

MOUNT = "/etc/stemedb-operator/alertmanager"


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(docs, "Deployment")["spec"]["template"]["spec"])


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


@pytest.mark.parametrize("sets, urls, resend, credentials", [
    ([], [], [], []),
    (["notifications.alertmanager.urls={http://am-0:9093,http://am-1:9093}"],
     ["http://am-0:9093", "http://am-1:9093"], ["60"], []),
    (["notifications.alertmanager.urls={https://am.example/prefix}",
      "notifications.alertmanager.credentialsSecret=am-auth",
      "notifications.alertmanager.resendSeconds=15"],
     ["https://am.example/prefix"], ["15"], [MOUNT]),
], ids=["off by default", "every instance is a flag", "credentials mounted"])
def test_alertmanager_values_become_flags_the_operator_accepts(
        render: Render, sets: list[str], urls: list[str], resend: list[str],
        credentials: list[str]) -> None:
    docs = render(sets=sets)
    spec = pod(docs)
    args = spec["containers"][0]["args"]
    assert flag_values(args, "--alertmanager-url") == urls
    assert flag_values(args, "--notification-resend-seconds") == resend
    assert flag_values(args, "--alertmanager-credentials") == credentials
    parsed = build_parser().parse_args(args)
    assert parsed.alertmanager_url == urls
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    if credentials:
        assert mounts[MOUNT]["readOnly"] is True
        assert volumes[mounts[MOUNT]["name"]]["secret"]["secretName"] == "am-auth"
    else:
        assert MOUNT not in mounts and "alertmanager-credentials" not in volumes


@pytest.mark.parametrize("sets, rule", [
    (["networkPolicy.enabled=true"], None),
    (["networkPolicy.enabled=true", "notifications.alertmanager.urls={http://am:9093}"],
     {"ports": [{"port": 9093, "protocol": "TCP"}]}),
    (["networkPolicy.enabled=true", "notifications.alertmanager.urls={http://am:9093}",
      "notifications.alertmanager.egress.ports={8080}",
      "notifications.alertmanager.egress.peers[0].namespaceSelector.matchLabels.name=monitoring"],
     {"ports": [{"port": 8080, "protocol": "TCP"}],
      "to": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}),
], ids=["no Alertmanager, no egress for it", "egress on its port", "to the given peers"])
def test_the_network_policy_lets_the_operator_reach_its_alertmanagers(
        render: Render, sets: list[str], rule: dict[str, Any] | None) -> None:
    egress = one(render(sets=sets), "NetworkPolicy")["spec"]["egress"]
    am_rules = [r for r in egress if r.get("ports", [{}])[0].get("port") in (9093, 8080)]
    assert am_rules == ([] if rule is None else [rule])


@pytest.mark.parametrize("bad", [
    "notifications.alertmanager.urls={http://user:pw@am:9093}",
    "notifications.alertmanager.urls={ftp://am:9093}",
    "notifications.alertmanager.credentialsSecret=Not_A_Name",
    "notifications.alertmanager.resendSeconds=0",
])
def test_the_schema_refuses_bad_notification_values(render: Render, bad: str) -> None:
    with pytest.raises(AssertionError, match="notifications"):
        render(sets=[bad])
