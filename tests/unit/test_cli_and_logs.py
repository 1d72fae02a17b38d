"""The command line refuses what it cannot run, and logs never carry a credential."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from controller import cli, logs


@pytest.mark.parametrize("argv, message", [
    (["run"], "give --namespace NS (repeatable) or --all-namespaces"),
    (["run", "-n", "a", "--max-actions-per-hour", "-1"], "--max-actions-per-hour must be >= 0"),
    (["run", "-n", "a", "--deny-destination", "10.0.0.0/33"], "'10.0.0.0/33' is not an IP"),
    (["run", "-n", "a", "--allow-destination", "example.com"], "'example.com' is not an IP"),
    (["run", "-n", "a", "--secret-label", "novalue"], "--secret-label: 'novalue' is not KEY=VALUE"),
], ids=["no scope given", "a negative budget", "a bad deny CIDR", "a host name to allow",
        "a label without a value"])
def test_run_refuses_an_unusable_command_line_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_namespace_and_all_namespaces_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "-n", "a", "--all-namespaces"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("text", [
    "Authorization: Bearer s3cr3t-t0ken.value",
    "calling with token=s3cr3t-t0ken.value now",
    '{"token": "s3cr3t-t0ken.value"}',
], ids=["bearer header", "key=value", "json field"])
def test_a_token_in_any_log_text_is_redacted(text: str) -> None:
    assert "s3cr3t-t0ken" not in logs.redact_text(text)
    assert "[REDACTED]" in logs.redact_text(text)


def test_json_logs_from_structlog_and_the_stdlib_are_one_format_without_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", "info")
    try:
        structlog.get_logger("t").info("polled", namespace="ns", name="db", token="abc123")
        logging.getLogger("kopf.test").warning("retry with Bearer abc123 failed")
        lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert [x["event"] for x in lines] == ["polled", "retry with Bearer [REDACTED] failed"]
    assert lines[0]["namespace"] == "ns" and lines[0]["name"] == "db"
    assert lines[0]["token"] == "[REDACTED]"
    assert all("abc123" not in json.dumps(x) for x in lines)


@pytest.mark.parametrize(("argv", "denied", "allowed"), [
    (["run", "-n", "a"], ["169.254.169.254", "fe80::1", "0.0.0.0"], ["127.0.0.1", "10.1.1.1"]),
    (["run", "-n", "a", "--deny-loopback"], ["127.0.0.1", "::1"], ["10.1.1.1"]),
    (["run", "-n", "a", "--deny-destination", "10.0.0.0/8"], ["10.1.1.1"], ["192.168.0.1"]),
    (["run", "-n", "a", "--allow-destination", "10.0.0.0/8"], ["192.168.0.1", "169.254.1.1"],
     ["10.1.1.1"]),
], ids=["defaults", "the chart's loopback deny", "an extra deny", "an allow list"])
def test_the_destination_flags_make_the_policy(
    argv: list[str], denied: list[str], allowed: list[str]
) -> None:
    policy = cli.destination_policy(cli.build_parser().parse_args(argv))
    assert [a for a in denied if policy.refusal(a, 80) is None] == []
    assert [a for a in allowed if policy.refusal(a, 80) is not None] == []


@pytest.mark.parametrize(("text", "label"), [
    ("", None), ("stemedb.io/credentials=true", ("stemedb.io/credentials", "true")),
    ("a=", ("a", "")),
])
def test_the_secret_label_flag(text: str, label: tuple[str, str] | None) -> None:
    assert cli.secret_label(text) == label
    assert cli.build_parser().parse_args(["run", "-n", "a"]).secret_label == cli.SECRET_LABEL


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "-A", "--leader-election"], "--leader-election: give --leader-election-namespace"),
    (["run", "-n", "a", "-n", "b", "--leader-election"], "give --leader-election-namespace"),
    (["run", "-n", "a", "--leader-election", "--leader-election-id", "../x"],
     "--leader-election-id: '../x' is not a Kubernetes object name"),
    (["run", "-n", "a", "--leader-election", "--leader-election-namespace", "Bad_NS"],
     "--leader-election-namespace: 'Bad_NS' is not a Kubernetes object name"),
], ids=["no namespace for the Lease", "several watched, none chosen", "a path as Lease name",
        "a bad Lease namespace"])
def test_leader_election_needs_a_lease_it_can_name(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "pod_name", "message"), [
    (["run", "-n", "a", "--sharding", "--leader-election"], "op-a",
     "--sharding and --leader-election are exclusive"),
    (["run", "-A", "--sharding"], "op-a", "--sharding: give --leader-election-namespace"),
    (["run", "-n", "a", "--sharding", "--shard-ring", "Bad_Ring"], "op-a",
     "--sharding: --shard-ring: 'Bad_Ring-shard-op-a' is not a Kubernetes object name"),
    (["run", "-n", "a", "--sharding"], "Op_A",
     "--sharding: $POD_NAME: 'Op_A' is not a Kubernetes object name"),
    (["run", "-n", "a", "--sharding"], "p" * 64,
     "--sharding: $POD_NAME: is 64 characters long; a shard's name has at most 63"),
    (["run", "-n", "a", "--sharding", "--shard-lease-gc-seconds", "0"], "op-a",
     "--shard-lease-gc-seconds: must be a positive number of seconds, not 0.0"),
    (["run", "-n", "a", "--sharding", "--shard-lease-gc-seconds", "nan"], "op-a",
     "--shard-lease-gc-seconds: must be a positive number of seconds, not nan"),
], ids=["with leader election", "no namespace for the Leases", "a bad ring name",
        "a Pod name that cannot be in a Lease name", "a Pod name too long for status.shard",
        "no Lease kept at all", "not a number"])
def test_sharding_needs_leases_and_a_name_it_can_use(
    argv: list[str], pod_name: str, message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setenv("POD_NAME", pod_name)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_shard_without_a_pod_name_gets_a_lease_name_it_can_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.setattr(cli.socket, "gethostname", lambda: "Build_Host.example.com")
    first, second = cli.shard_identity(), cli.shard_identity()
    assert first != second, "two processes on one host never share it"
    assert first.startswith("build-host-example-com-")
    assert cli.object_name_problem(f"ring-shard-{first}") is None and len(first) <= 63


@pytest.mark.parametrize(("argv", "pod_namespace", "lease_ns"), [
    (["run", "-n", "a", "--leader-election-namespace", "ops"], "sys", "ops"),
    (["run", "-A"], "sys", "sys"),
    (["run", "-n", "a"], None, "a"),
    (["run", "-A"], None, None),
])
def test_the_lease_namespace(
    argv: list[str], pod_namespace: str | None, lease_ns: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if pod_namespace is None:
        monkeypatch.delenv("POD_NAMESPACE", raising=False)
    else:
        monkeypatch.setenv("POD_NAMESPACE", pod_namespace)
    assert cli.lease_namespace(cli.build_parser().parse_args(argv)) == lease_ns


def test_the_identity_is_the_pod_name_else_unique_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAME", "stemedb-operator-7d9f-abcde")
    assert cli.identity() == "stemedb-operator-7d9f-abcde"
    monkeypatch.delenv("POD_NAME")
    assert cli.identity() != cli.identity(), "two processes on one host never share it"
