"""Typed errors of the StemeDB adapter.

Every error the StemeDB client lets escape is a :class:`StemeDBError`. Messages
are short, carry numbers where useful, and never carry secrets (the bearer token
is never part of a message, and server-provided text is truncated and scrubbed),
so the handlers can put ``str(err)`` straight into a condition message.

``reason`` is a CamelCase word for a condition ``reason``; ``kind`` is the short
label used for the ``code`` label of the operator's request counter.
"""

from __future__ import annotations

_MAX_SERVER_TEXT = 200


def scrub(text: str, secret: str | None) -> str:
    """Shorten server-provided text and remove the secret from it, if present."""
    if secret:
        text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
    if len(text) > _MAX_SERVER_TEXT:
        text = text[: _MAX_SERVER_TEXT - 3] + "..."
    return text


class StemeDBError(Exception):
    """Base of every error the StemeDB adapter raises."""

    reason = "StemeDBError"
    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StemeDBUnreachable(StemeDBError):
    """No usable connection: refused, DNS failure, reset, or the server broke the protocol.

    ``may_have_applied`` is False when the request cannot have reached the server
    (connection refused, DNS), True when it broke after sending (reset, bad answer).
    """

    reason = "Unreachable"
    kind = "unreachable"

    def __init__(self, message: str, *, may_have_applied: bool = False) -> None:
        super().__init__(message)
        self.may_have_applied = may_have_applied


class StemeDBTimeout(StemeDBError):
    """A connect/read/write/pool timeout or the per-attempt deadline ran out.

    ``phase`` is one of ``connect``, ``read``, ``write``, ``pool``, ``deadline``.
    ``may_have_applied`` is True when the request may have reached the server
    (anything but a connect or pool timeout), which matters for non-idempotent calls.
    """

    reason = "Timeout"
    kind = "timeout"

    def __init__(self, message: str, *, phase: str, may_have_applied: bool) -> None:
        super().__init__(message)
        self.phase = phase
        self.may_have_applied = may_have_applied


class StemeDBDestinationDenied(StemeDBError):
    """The operator's destination policy refuses the URL's address (docs/security.md).

    Nothing was sent, and nothing will be until the spec or the policy changes:
    never retried.
    """

    reason = "DestinationDenied"
    kind = "denied"


class StemeDBTLSError(StemeDBError):
    """The TLS handshake failed (unknown CA, bad certificate, hostname mismatch, bad CA PEM)."""

    reason = "TLSError"
    kind = "tls"


class StemeDBHTTPError(StemeDBError):
    """The server answered with a non-2xx status (other than 401/403).

    ``code`` and ``server_message`` come from the error envelope
    ``{"error": {"code", "message"}}`` when present.
    """

    reason = "HTTPError"
    kind = "http"

    def __init__(self, status: int, code: str | None, server_message: str | None) -> None:
        detail = f"HTTP {status}"
        if code:
            detail += f" {code}"
        if server_message:
            detail += f": {server_message}"
        super().__init__(detail)
        self.status = status
        self.code = code
        self.server_message = server_message


class StemeDBUnauthorized(StemeDBHTTPError):
    """401 or 403: the token is missing, wrong or lacks the permission."""

    reason = "Unauthorized"
    kind = "unauthorized"


class StemeDBBadResponse(StemeDBError):
    """A 2xx answer whose body is not what the contract says (bad JSON, missing field)."""

    reason = "BadResponse"
    kind = "bad_response"


class MetricsParseError(StemeDBBadResponse):
    """The /metrics body is garbled, truncated or empty.

    ``line`` is the 1-based line number of the first bad line (0 when the fault
    is about the body as a whole).
    """

    reason = "MetricsGarbled"
    kind = "parse"

    def __init__(self, message: str, *, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


__all__ = [
    "MetricsParseError",
    "StemeDBBadResponse",
    "StemeDBError",
    "StemeDBHTTPError",
    "StemeDBTLSError",
    "StemeDBTimeout",
    "StemeDBUnauthorized",
    "StemeDBUnreachable",
    "scrub",
]
