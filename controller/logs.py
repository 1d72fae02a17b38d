"""Structured logging: JSON lines (or console) through structlog, for us and for Kopf.

Kopf and the libraries log through the standard library; a ProcessorFormatter
renders their records the same way as ours, so one log stream has one format.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Redact anything that looks like a credential, whatever logged it.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:token|password|authorization)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
)
_SECRET_KEYS = frozenset({"token", "authorization", "password", "ca_pem"})


def redact_text(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[REDACTED]", text)
    return text


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-named keys and scrub bearer tokens from text."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[REDACTED]"
        elif isinstance(event_dict[key], str):
            event_dict[key] = redact_text(event_dict[key])
    return event_dict


_KOPF_CANCELLED = " is cancelled. Will escalate."
# Handlers Kopf runs on every watch event of every cluster (`@kopf.on.event`): Kopf
# logs "Handler '<id>' succeeded." at INFO for each, one line per status write
# (1,000 at a 1,000-cluster start-up) that says nothing. Those lines are DEBUG.
EVENT_HANDLERS = frozenset({"object_changed"})
_KOPF_EVENT_SUCCESSES = frozenset(f"Handler '{h}' succeeded." for h in EVENT_HANDLERS)


class KopfWording(logging.Filter):
    """Say in our words what Kopf's routine lines mean, at the level they deserve.

    "Daemon 'poll' is cancelled. Will escalate." Kopf logs as a warning whenever a
    daemon is stopped: on every normal delete, on shutdown and on a handover. In a
    product whose domain word is "escalate" (the runbook's levels) it reads like an
    incident. It is a routine stop, so it becomes an INFO line that says so; Kopf's
    original text stays in `kopf_message`.

    "Handler 'object_changed' succeeded." comes once per watch event
    (`EVENT_HANDLERS`): DEBUG, so dropped unless the operator logs at debug.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kopf") or not isinstance(record.msg, str) \
                or record.args:
            return True
        if record.msg.endswith(_KOPF_CANCELLED):
            what = record.msg[: -len(_KOPF_CANCELLED)]
            record.kopf_message = record.msg
            record.msg = (f"{what} stopped: its cluster is being deleted, or the operator "
                          "is shutting down or handing over")
            record.levelno, record.levelname = logging.INFO, "INFO"
        elif record.msg in _KOPF_EVENT_SUCCESSES:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure(fmt: str = "json", level: str = "info") -> None:
    """Route structlog and stdlib logging to stderr in one format."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(KopfWording())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The clients' own request logs would repeat what our metrics already count.
    for noisy in ("httpx", "httpcore", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
