"""How numbers and rates read in messages, conditions and Events."""

from __future__ import annotations


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
