"""Comparing what the /metrics reader and prometheus_client's parser return."""

from __future__ import annotations

import math


def same_number(a: float | None, b: float | None) -> bool:
    """Equal values, NaN equal to NaN, None only to None."""
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12)
