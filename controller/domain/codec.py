"""Frozen dataclasses to camelCase JSON, the one codec for status memory and the spec.

A field's JSON key is its name in camelCase unless its metadata says otherwise
(`json_key`, a dotted path such as "podRef.name", which nests the value in an
object). The caller says which fields to leave out: memory leaves out defaults
to stay small, the spec leaves out only what is unset (None).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import Field, fields
from typing import Any

JSON_KEY = "json_key"

Omit = Callable[["Field[Any]", Any], bool]


@functools.cache
def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def json_key(f: Field[Any]) -> tuple[str, ...]:
    """The path of keys under which field `f` is written (one key unless nested)."""
    key = f.metadata.get(JSON_KEY)
    return tuple(key.split(".")) if isinstance(key, str) else (camel(f.name),)


def unset(f: Field[Any], value: Any) -> bool:
    """Omit rule of the spec: only None is left out."""
    return value is None


@functools.cache
def _keyed_fields(cls: type) -> tuple[tuple[Field[Any], tuple[str, ...]], ...]:
    return tuple((f, json_key(f)) for f in fields(cls))


def to_json(obj: Any, omit: Omit = unset) -> Any:
    """`obj` as JSON data: dataclasses as objects, enums as their values, tuples as lists."""
    if isinstance(obj, enum.Enum):
        return obj.value
    cls: type = type(obj)
    if hasattr(cls, "__dataclass_fields__"):
        out: dict[str, Any] = {}
        for f, keys in _keyed_fields(cls):
            value = getattr(obj, f.name)
            if omit(f, value):
                continue
            *parents, last = keys
            target = out
            for key in parents:
                target = target.setdefault(key, {})
            target[last] = to_json(value, omit)
        return out
    if isinstance(obj, tuple | list):
        return [to_json(x, omit) for x in obj]
    return obj
