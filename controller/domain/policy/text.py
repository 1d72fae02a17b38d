"""How numbers and rates read in messages, conditions and Events."""

from __future__ import annotations

import datetime as _dt


def number_text(value: float | None) -> str:
    """A number as a human reads it: whole numbers without a decimal point."""
    if value is None:
        return "unknown"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"


def rate_text(rate: int | None) -> str:
    """An ingestion limit; None is no limit."""
    return "unlimited" if rate is None else f"{rate}/s"


def clock_text(timestamp: float) -> str:
    """A moment as a UTC wall-clock time ("21:55:03Z"). Messages name when something
    happens, not "in N s": a countdown would change the status on every poll."""
    return _dt.datetime.fromtimestamp(int(timestamp), tz=_dt.UTC).strftime("%H:%M:%SZ")
