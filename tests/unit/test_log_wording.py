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
    ("kopf.objects", logging.INFO, "Handler 'object_changed' succeeded.", None, None),
    ("kopf.objects", logging.INFO, "Handler 'restore_rate' succeeded.", "info",
     "Handler 'restore_rate' succeeded."),
    ("kopf.objects", logging.ERROR, "Handler 'object_changed' failed with an exception.",
     "error", "Handler 'object_changed' failed with an exception."),
], ids=["kopf's cancel line is reworded", "kopf's real warning stays", "only kopf's lines",
        "a watch-event handler's success is not logged at info",
        "another handler's success is", "a watch-event handler's failure is"])
def test_kopf_routine_lines_are_reworded_or_quieted_and_nothing_else(
    capsys: pytest.CaptureFixture[str], logger: str, level: int, text: str,
    want_level: str | None, want_text: str | None,
) -> None:
    logs.configure("json", "info")
    try:
        logging.LoggerAdapter(logging.getLogger(logger), {}).log(level, text)
        lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    want = [(want_level, want_text)] if want_level else []
    assert [(x["level"], x["event"]) for x in lines] == want


def test_a_watch_event_handlers_success_is_kept_at_debug(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", "debug")
    try:
        logging.getLogger("kopf.objects").info("Handler 'object_changed' succeeded.")
        lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert [(x["level"], x["event"]) for x in lines] == [
        ("debug", "Handler 'object_changed' succeeded.")]


def test_every_watch_event_handler_is_quieted() -> None:
    """A new `@kopf.on.event` handler would log a line per event at INFO unless it
    is listed in `logs.EVENT_HANDLERS`."""
    import kopf

    import controller.handlers  # noqa: F401  (registers the handlers)

    registered = {str(h.id) for h in kopf.get_default_registry()._watching.get_all_handlers()}
    assert registered and registered <= logs.EVENT_HANDLERS
