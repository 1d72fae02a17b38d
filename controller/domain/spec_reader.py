"""Reading untrusted spec JSON into the spec dataclasses by their declared `Meta`.

`SpecReader.build` reads every field of a dataclass: its type says how
(number, whole number, boolean, text, one of an enum, list of fractions, nested
object), its `Meta` gives the bounds and text checks that the CRD also carries,
and a missing field takes its default. Each problem is recorded with its field
path and reading goes on, so the caller can report every problem at once. A
refused value is never kept (the default stands in), so it cannot reach a request.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from controller.domain.spec_schema import Declared, Kind, Meta, Order, declared

_MISSING = object()


@dataclass(frozen=True, slots=True)
class SpecProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def shown_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SpecReader:
    """Collects `SpecProblem`s while reading; every read returns a usable value."""

    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(SpecProblem(path, message))

    def obj(self, raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        """The object at `key` ({} when absent; a problem when not an object)."""
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"{path}.{key}", f"{path}.{key} must be an object")
            return {}
        return value

    # ----------------------------------------------------------------- whole objects

    def build(self, cls: type, raw: Mapping[str, Any], path: str,
              instance: Any | None = None, **given: Any) -> Any:
        """An instance of dataclass `cls` read from `raw`; defaults from `instance`
        (or the class); fields in `given` are not read but taken as they are."""
        values = dict(given)
        for item in declared(cls):
            if item.name in given:
                continue
            if instance is not None:
                default = getattr(instance, item.name)
            else:
                default = None if item.default is MISSING else item.default
            values[item.name] = self.field(item, raw, path, default)
        return cls(**values)

    def field(self, item: Declared, raw: Mapping[str, Any], path: str, default: Any) -> Any:
        """One declared field from `raw` (under its `via` object when it has one)."""
        via = item.meta.via
        if via is not None:
            if raw.get(via.key) is None:
                return default
            raw = self.obj(raw, via.key, path)
            path = f"{path}.{via.key}"
        at = f"{path}.{item.key}"
        if item.kind is Kind.OBJECT:
            if item.optional and raw.get(item.key) is None:
                return default
            return self.build(item.type, self.obj(raw, item.key, path), at, default)
        value = raw.get(item.key, _MISSING)
        if value is _MISSING or value is None:
            if item.meta.required:
                self.fail(at, f"{at} is required")
            return default
        match item.kind:
            case Kind.LIST:
                return self.fractions(value, item.meta, at, default)
            case Kind.BOOLEAN:
                return self.boolean(value, at, default)
            case Kind.INTEGER:
                return self.integer(value, item.meta, at, default)
            case Kind.NUMBER:
                return self.number(value, item.meta, at, default)
            case Kind.CHOICE:
                return self.choice(item.type, value, at, default)
            case Kind.TEXT:
                return self.text(value, item.meta, at, default)

    # ----------------------------------------------------------------- one value

    def number(self, value: Any, meta: Meta, at: str, default: float) -> float:
        if not _is_number(value):
            self.fail(at, f"{at} must be a number, not {value!r}")
            return default
        number = float(value)
        if not math.isfinite(number):
            self.fail(at, f"{at} must be a finite number")
            return default
        low, high = meta.minimum, meta.maximum
        if low is not None and meta.exclusive_minimum and number <= low:
            self.fail(at, f"{at} ({shown_number(number)}) must be greater than {shown_number(low)}")
        elif low is not None and number < low:
            self.fail(at, f"{at} ({shown_number(number)}) must be at least {shown_number(low)}")
        elif high is not None and meta.exclusive_maximum and number >= high:
            self.fail(at, f"{at} ({shown_number(number)}) must be less than {shown_number(high)}")
            return default
        elif high is not None and number > high:
            self.fail(at, f"{at} ({shown_number(number)}) must be at most {shown_number(high)}")
            return default
        return number

    def integer(self, value: Any, meta: Meta, at: str, default: int) -> int:
        if (not _is_number(value) or (isinstance(value, float) and not math.isfinite(value))
                or value != int(value)):
            self.fail(at, f"{at} must be a whole number, not {value!r}")
            return default
        high = meta.maximum
        if high is not None and abs(value) > high:
            self.fail(at, f"{at} ({shown_number(value)}) must be at most {shown_number(high)}")
            return default
        number = int(value)
        low = int(meta.minimum or 0)
        if number < low:
            self.fail(at, f"{at} ({number}) must be at least {low}")
        return number

    def boolean(self, value: Any, at: str, default: bool) -> bool:
        if not isinstance(value, bool):
            self.fail(at, f"{at} must be true or false, not {value!r}")
            return default
        return value

    def choice(self, kind: type[enum.Enum], value: Any, at: str, default: enum.Enum) -> Any:
        if not isinstance(value, str):
            self.fail(at, f"{at} must be a string, not {value!r}")
            return default
        try:
            return kind(value)
        except ValueError:
            names = ", ".join(str(member.value) for member in kind)
            self.fail(at, f"{at} ({value}) must be one of {names}")
            return default

    def text(self, value: Any, meta: Meta, at: str, default: str | None) -> str | None:
        if not isinstance(value, str):
            self.fail(at, f"{at} must be a string, not {value!r}")
            return default
        if meta.required and not value:
            self.fail(at, f"{at} must not be empty")
            return default
        problem = meta.text.check(value) if meta.text is not None else None
        if problem is not None:
            # Never keep a refused value: it must not reach a request, even by mistake.
            self.fail(at, f"{at} {problem}")
            return default
        return value

    def fractions(self, value: Any, meta: Meta, at: str,
                  default: tuple[float, ...]) -> tuple[float, ...]:
        """A list of fractions within `meta.items`' bounds, in `meta.order`."""
        if not isinstance(value, list):
            self.fail(at, f"{at} must be a list of fractions")
            return default
        if meta.max_items is not None and len(value) > meta.max_items:
            self.fail(at, f"{at} lists {len(value)} steps; at most {meta.max_items}")
            return default
        bounds = meta.items or Meta()
        low, high = shown_number(bounds.minimum or 0), shown_number(bounds.maximum or 1)
        out: list[float] = []
        for i, item in enumerate(value):
            if not _is_number(item):
                self.fail(f"{at}[{i}]", f"{at}[{i}] must be a number, not {item!r}")
            elif not (bounds.minimum or 0) < item < (bounds.maximum or 1):
                self.fail(f"{at}[{i}]",
                          f"{at}[{i}] ({shown_number(item)}) must be between {low} and {high}")
            else:
                out.append(float(item))
        if not value and meta.min_items:
            self.fail(at, f"{at} must list at least one step")
        self._check_order(out, meta.order, at)
        return tuple(out)

    def _check_order(self, steps: list[float], order: Order | None, at: str) -> None:
        if order is Order.DECREASING:
            for a, b in itertools.pairwise(steps):
                if not a > b:
                    self.fail(at, f"{at} must be strictly decreasing "
                              f"({shown_number(a)} is followed by {shown_number(b)})")
                    return
        elif order is Order.INCREASING and len(steps) > 1 and steps != sorted(set(steps)):
            self.fail(at, f"{at} must be strictly increasing")
