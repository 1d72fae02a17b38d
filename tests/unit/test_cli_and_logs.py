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
], ids=["no scope given", "a negative budget"])
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
