"""A fast reader of the Prometheus text exposition format (0.0.4).

``prometheus_client.parser.text_string_to_metric_families`` is the reference.
It is correct but slow (it walks every character of every line in Python); this
reader validates every line with one compiled regular expression and only splits
labels and converts numbers for the series it is asked for.

Contract, checked by ``tests/unit/adapters/test_metrics_text.py``:

* **Agreement.** Whenever :func:`parse_samples` returns, each sample it returns
  equals the reference's sample (name, labels, value, timestamp) for the same
  line, and it returns exactly the reference's samples whose name is wanted.
* **Garbage is an error.** Whenever the reference raises, this reader raises
  :class:`MetricsParseError`. It never returns a partial result.
* **Stricter than the reference**, on purpose, where the reference is lax and a
  silent wrong number would be worse than a failed scrape:

  - the body must be non-empty and end with a newline (a body cut off mid-line,
    e.g. ``...lag_seconds{replica="node2"} 12`` cut from ``12.5``, parses
    "fine" in the reference; a body cut exactly at a line boundary cannot be
    told apart from a complete one, so callers must treat a missing series as
    unknown, never as healthy);
  - a sample line is ``name[{labels}] value [timestamp]`` with legacy (ASCII)
    metric and label names; the reference also accepts extra tokens between
    value and timestamp (it silently ignores them), unicode whitespace as a
    separator, a missing metric name validation when labels are present, quoted
    UTF-8 names and ``{,}``;
  - ``# HELP`` / ``# TYPE`` must name a valid legacy metric name, and ``# TYPE``
    a known type (as the reference also demands).

* **Not reproduced:** the reference renames the samples of a ``counter`` family
  whose name lacks ``_total`` to ``<name>_total`` (OpenMetrics munging); this
  reader reports names as written. StemeDB's counters all end in ``_total``.
* **Known gap:** a duplicate label name is detected only in series that were
  asked for (the reference rejects it anywhere).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import NamedTuple

from controller.adapters.stemedb_errors import MetricsParseError

__all__ = ["MetricsParseError", "Sample", "parse_samples"]


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None  # seconds (the exposition carries milliseconds)


# Each pattern matches a line in one way only (no two quantifiers may share the same
# characters, as in ``\d+\.?\d*`` or ``[ \t]*,?[ \t]*``): a line that fails to
# match is then rejected in linear time, not in time quadratic in its length (a
# 100,000-digit number followed by junk took minutes and blocked the event loop).
_NUM = r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|infinity|nan))"
_LNAME = r"(?!__)[a-zA-Z_][a-zA-Z0-9_]*"
_LVALUE = r'"(?:[^"\\]|\\.)*"'
_PAIR = rf"{_LNAME}[ \t]*=[ \t]*{_LVALUE}"
_LABELS = rf"\{{[ \t]*(?:{_PAIR}(?:[ \t]*,[ \t]*{_PAIR})*[ \t]*(?:,[ \t]*)?)?\}}"

# name, optional labels (group 2, braces included), value (3), timestamp (4)
_SAMPLE_RE = re.compile(
    rf"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:[ \t]*({_LABELS})[ \t]*|[ \t]+)"
    rf"({_NUM})(?:[ \t]+({_NUM}))?"
)
_PAIR_RE = re.compile(rf"({_LNAME})[ \t]*=[ \t]*\"((?:[^\"\\]|\\.)*)\"")
_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# The reference splits comments on ASCII whitespace only.
_COMMENT_SPLIT_RE = re.compile(r"[ \t\n\r\x0b\x0c]+")
# The reference builds a Metric for every TYPE line, which accepts only these.
_TYPES = frozenset(
    {
        "counter",
        "gauge",
        "histogram",
        "summary",
        "untyped",
        "unknown",
        "info",
        "stateset",
        "gaugehistogram",
    }
)
# Well-formed HELP/TYPE lines, accepted without the exact (slower) check.
_COMMENT_OK_RE = re.compile(
    r"# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]*(?:[ \t].*)?"
    r"|TYPE [a-zA-Z_:][a-zA-Z0-9_:]*[ \t]+(?:counter|gauge|histogram|summary|untyped))"
)
_ESCAPE_RE = re.compile(r'\\[\\n"]')
_ESCAPES = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}


def _unescape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group(0)]


def _check_comment(line: str, lineno: int) -> None:
    # Like the reference, any first token ("#", "##", "#x") makes a HELP/TYPE line.
    parts = _COMMENT_SPLIT_RE.split(line, maxsplit=3)
    if len(parts) < 2 or parts[1] not in ("HELP", "TYPE"):
        return
    if len(parts) > 2 and _METRIC_NAME_RE.fullmatch(parts[2]) is None:
        raise MetricsParseError(
            f"metrics line {lineno}: bad metric name in {parts[1]}", line=lineno
        )
    if parts[1] == "TYPE" and (len(parts) < 4 or parts[3] not in _TYPES):
        raise MetricsParseError(f"metrics line {lineno}: TYPE without a known type", line=lineno)


def _parse_labels(text: str, lineno: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    count = 0
    for name, value in _PAIR_RE.findall(text):
        count += 1
        labels[name] = _ESCAPE_RE.sub(_unescape, value) if "\\" in value else value
    if len(labels) != count:
        raise MetricsParseError(f"metrics line {lineno}: duplicate label name", line=lineno)
    return labels


def parse_samples(text: str, wanted: Collection[str] | None = None) -> list[Sample]:
    """Return the samples of ``text`` whose metric name is in ``wanted`` (all if None).

    Raises :class:`MetricsParseError` on an empty body, a body that does not end
    with a newline, or any line that is not valid exposition text, naming the
    first bad line's number (never its content, which could be anything).
    """
    if not text:
        raise MetricsParseError("metrics body is empty")
    if text[-1] != "\n":
        raise MetricsParseError("metrics body is truncated (no final newline)")
    want = None if wanted is None else frozenset(wanted)
    match = _SAMPLE_RE.fullmatch
    comment_ok = _COMMENT_OK_RE.fullmatch
    out: list[Sample] = []
    append = out.append
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            if ("HELP" in line or "TYPE" in line) and comment_ok(line) is None:
                _check_comment(line, lineno)
            continue
        m = match(line)
        if m is None:
            raise MetricsParseError(f"metrics line {lineno}: not a valid sample", line=lineno)
        name = m.group(1)
        if want is not None and name not in want:
            continue
        label_text = m.group(2)
        labels = _parse_labels(label_text, lineno) if label_text else {}
        ts = m.group(4)
        append(Sample(name, labels, float(m.group(3)), None if ts is None else float(ts) / 1000))
    return out
