"""The notification flags: what the command line refuses (exit 2, one line, no
credential echoed)."""

from __future__ import annotations

import pytest

from controller import cli


@pytest.mark.parametrize("argv, message", [
    (["--alertmanager-url", "alertmanager:9093"], "is not an http(s) URL with a host"),
    (["--alertmanager-url", "http://am:9093", "--alertmanager-url", "http://am:9093/?x"],
     "has a query or fragment"),
    (["--alertmanager-url", "http://pager:s3cret@am:9093"], "user:password@ is refused"),
    (["--notification-resend-seconds", "0"], "--notification-resend-seconds must be 1-3600"),
    (["--notification-resend-seconds", "86400"], "must be 1-3600"),
], ids=["no scheme", "a query (in the second of two)", "userinfo", "zero", "a day"])
def test_bad_notification_flags_exit_2(argv: list[str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "-n", "a", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "s3cret" not in err


def test_the_flags_parse_as_the_chart_renders_them() -> None:
    args = cli.build_parser().parse_args([
        "run", "-A", "--alertmanager-url", "http://am-0:9093", "--alertmanager-url",
        "http://am-1:9093", "--alertmanager-credentials", "/etc/stemedb-operator/alertmanager",
        "--notification-resend-seconds", "30"])
    assert args.alertmanager_url == ["http://am-0:9093", "http://am-1:9093"]
    assert args.alertmanager_credentials == "/etc/stemedb-operator/alertmanager"
    assert args.notification_resend_seconds == 30.0
