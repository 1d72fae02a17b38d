"""How numbers and rates read in messages."""

from __future__ import annotations


def _f(v: float | None) -> str:
    if v is None:
        return "unknown"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.1f}"


def _rate_str(rate: int | None) -> str:
    return "unlimited" if rate is None else f"{rate}/s"
