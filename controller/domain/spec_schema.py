"""The spec's one source of truth: each field declared once, with what both checks need.

Each field of the spec dataclasses (controller/domain/spec.py) carries a `Meta`
in its metadata: description, bounds, the text format of a string, CEL rules,
how a list is keyed. Two things are derived from it, so they cannot disagree:
the CRD's OpenAPI schema (controller/domain/spec_crd.py, written to crds/ by
hack/gen-crd.py; a unit test fails when the file drifts) and the domain's
parser (controller/domain/spec_reader.py), which repeats the same rules so a
spec that slipped past an older CRD is reported, not used. Defaults are the
dataclasses' own.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any

from controller.domain.codec import JSON_KEY, camel, json_key
from controller.domain.validation import (
    CONTACT_MAX,
    CONTACT_PATTERN,
    DNS1123_SUBDOMAIN,
    DNS1123_SUBDOMAIN_MAX,
    NODE_ID,
    NODE_ID_MAX,
    SECRET_KEY,
    SECRET_KEY_MAX,
    URL,
    URL_MAX,
    contact_problem,
    node_id_problem,
    object_name_problem,
    secret_key_problem,
    url_problem,
)

META = "spec"


@dataclass(frozen=True, slots=True)
class Rule:
    """A CEL rule (x-kubernetes-validations) on the node it is declared with."""

    rule: str
    message: str
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        return out


@dataclass(frozen=True, slots=True)
class Text:
    """A kind of untrusted text: the CRD's pattern and bounds and the domain's check."""

    pattern: str
    max_length: int
    check: Callable[[str], str | None]
    rules: tuple[Rule, ...] = ()
    note: str = ""  # appended to the field's description


URL_RULE = Rule(
    "isURL(self) && url(self).getHostname() != '' && !url(self).getHost().endsWith(':') && "
    "(url(self).getPort() == '' || (int(url(self).getPort()) >= 1 && "
    "int(url(self).getPort()) <= 65535))",
    "must be an http:// or https:// URL with a host and a port in 1-65535, without user, "
    "password, query or fragment",
)
URL_TEXT = Text(URL, URL_MAX, url_problem, (URL_RULE,),
                "Only http or https with a host; no user:password@ (credentials come from "
                "spec.auth), no query or fragment.")
NODE_ID_TEXT = Text(NODE_ID, NODE_ID_MAX, node_id_problem)
OBJECT_NAME_TEXT = Text(DNS1123_SUBDOMAIN, DNS1123_SUBDOMAIN_MAX, object_name_problem)
SECRET_KEY_TEXT = Text(SECRET_KEY, SECRET_KEY_MAX, secret_key_problem)
CONTACT_TEXT = Text(CONTACT_PATTERN, CONTACT_MAX, contact_problem)


class Order(enum.StrEnum):
    DECREASING = "decreasing"
    INCREASING = "increasing"


@dataclass(frozen=True, slots=True)
class Via:
    """An object of the JSON form that the dataclass flattens away (podRef.name)."""

    key: str
    description: str
    defaulted: bool = False  # the CRD fills the object in when it is absent


@dataclass(frozen=True, slots=True)
class Meta:
    """What the CRD and the parser know about one field (or a list's items)."""

    description: str = ""
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    exclusive_maximum: bool = False
    text: Text | None = None
    required: bool = False
    via: Via | None = None
    items: Meta | None = None  # bounds of a list's numbers
    item_description: str | None = None
    min_items: int | None = None
    max_items: int | None = None
    order: Order | None = None
    list_type: str | None = None
    map_keys: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    # Descriptions of a nested dataclass's fields where this use differs (Threshold).
    describe: tuple[tuple[str, str], ...] = ()


def spec_field(default: Any = MISSING, *, key: str | None = None, **meta: Any) -> Any:
    """A dataclass field with its `Meta` (keyword arguments; a wrong name fails at
    import); `key` is its JSON key when not its camelCase name (needed under `via`)."""
    info = Meta(**meta)
    metadata: dict[str, Any] = {META: info}
    if key is not None:
        metadata[JSON_KEY] = f"{info.via.key}.{key}" if info.via is not None else key
    elif info.via is not None:
        raise ValueError(f"a field under {info.via.key!r} must name its own key")
    return field(default=default, metadata=metadata)


def meta_of(f: Field[Any]) -> Meta:
    info = f.metadata.get(META)
    return info if isinstance(info, Meta) else Meta()


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def dataclass_type(tp: Any) -> type | None:
    """`tp` when it is a dataclass (a nested object of the spec), else None."""
    return tp if isinstance(tp, type) and is_dataclass(tp) else None


def key_of(f: Field[Any]) -> str:
    """The field's own JSON key (the last one when it sits under a `via` object)."""
    return json_key(f)[-1] if f.metadata.get(JSON_KEY) else camel(f.name)


class Kind(enum.Enum):
    """How a field is read and written, from its type."""

    OBJECT = "object"
    LIST = "list"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMBER = "number"
    CHOICE = "choice"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Declared:
    """One field as the parser needs it, worked out once per class."""

    name: str
    key: str  # its own JSON key (under `meta.via` when that is set)
    meta: Meta
    kind: Kind
    type: Any  # the nested dataclass or enum (None allowed or not: `optional`)
    optional: bool
    default: Any  # MISSING when the class has none


def _kind(tp: Any) -> Kind:
    if dataclass_type(tp) is not None:
        return Kind.OBJECT
    if typing.get_origin(tp) is tuple:
        return Kind.LIST
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return Kind.CHOICE
    kinds = {bool: Kind.BOOLEAN, int: Kind.INTEGER, float: Kind.NUMBER}
    return kinds.get(tp, Kind.TEXT)


@functools.cache
def declared(cls: type) -> tuple[Declared, ...]:
    """The fields of spec dataclass `cls` with their Meta, kind and JSON key."""
    out = []
    for f in fields(cls):
        tp, optional = unwrap_optional(hints(cls)[f.name])
        out.append(Declared(f.name, key_of(f), meta_of(f), _kind(tp), tp, optional, f.default))
    return tuple(out)


def defaults_of(cls: type, instance: Any | None) -> dict[str, Any]:
    """Each field's default: from `instance` (a parent's default value) if given,
    else the class's own defaults (fields without one are left out)."""
    if instance is not None:
        return {f.name: getattr(instance, f.name) for f in fields(cls)}
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def json_path(item: Declared, path: str) -> str:
    """The field's path under `path` (through its `via` object when it has one)."""
    via = item.meta.via
    return f"{path}.{via.key}.{item.key}" if via is not None else f"{path}.{item.key}"


def list_item(item: Declared) -> Any:
    """The type of a list field's items."""
    return typing.get_args(item.type)[0]


def numeric_fields(cls: type, path: str) -> Iterator[tuple[str, Meta]]:
    """(field path with [i] dropped, Meta) of every number in `cls`, nested included."""
    for item in declared(cls):
        at = json_path(item, path)
        if item.kind is Kind.OBJECT:
            yield from numeric_fields(item.type, at)
        elif item.kind is Kind.LIST and dataclass_type(list_item(item)) is not None:
            yield from numeric_fields(list_item(item), at)
        elif item.kind in (Kind.INTEGER, Kind.NUMBER):
            yield at, item.meta
