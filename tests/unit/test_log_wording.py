"""Kopf's routine lines read as routine: a daemon stopped on delete or shutdown is not
an escalation, while Kopf's real warnings stay warnings."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from controller import logs


@pytest.mark.parametrize(("logger", "level", "text", "want_level", "want_text"), [
    ("kopf.objects", logging.WARNING, "Daemon 'poll' is cancelled. Will escalate.", "info",
     "Daemon 'poll' stopped: its cluster is being deleted, or the operator is shutting "
     "down or handing over"),
    ("kopf.objects", logging.WARNING, "Daemon 'poll' did not exit in time. Leaving it orphaned.",
     "warning", "Daemon 'poll' did not exit in time. Leaving it orphaned."),
    ("controller.reconcile", logging.WARNING, "Daemon 'poll' is cancelled. Will escalate.",
     "warning", "Daemon 'poll' is cancelled. Will escalate."),
], ids=["kopf's cancel line is reworded", "kopf's real warning stays", "only kopf's lines"])
def test_kopf_cancel_line_is_reworded_and_nothing_else(
    capsys: pytest.CaptureFixture[str], logger: str, level: int, text: str,
    want_level: str, want_text: str,
) -> None:
    logs.configure("json", "info")
    try:
        logging.LoggerAdapter(logging.getLogger(logger), {}).log(level, text)
        lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert [(x["level"], x["event"]) for x in lines] == [(want_level, want_text)]
