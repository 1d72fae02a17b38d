"""The spec's one source of truth: each field declared once, with what both checks need.

Each field of the spec dataclasses (controller/domain/spec.py) carries a `Meta`
in its metadata: description, bounds, the text format of a string, CEL rules,
how a list is keyed. Two things are derived from it, so they cannot disagree:
the CRD's OpenAPI schema (`openapi_schema`, written to crds/ by
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

from controller.domain.codec import JSON_KEY, camel, json_key, to_json
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
    """A dataclass field with its `Meta`; `key` renames it in JSON (under `via`)."""
    info = Meta(**meta)
    metadata: dict[str, Any] = {META: info}
    if info.via is not None or key is not None:
        inner = key or ""
        metadata[JSON_KEY] = ".".join(k for k in (info.via.key if info.via else "", inner) if k)
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


# --------------------------------------------------------------------------- the CRD schema


def _bounds(meta: Meta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if meta.minimum is not None:
        if meta.exclusive_minimum:
            out["exclusiveMinimum"] = True
        out["minimum"] = meta.minimum
    if meta.maximum is not None:
        if meta.exclusive_maximum:
            out["exclusiveMaximum"] = True
        out["maximum"] = meta.maximum
    return out


def _text(text: Text | None) -> dict[str, Any]:
    if text is None:
        return {}
    out: dict[str, Any] = {"minLength": 1, "maxLength": text.max_length, "pattern": text.pattern}
    if text.rules:
        out["x-kubernetes-validations"] = [r.to_schema() for r in text.rules]
    return out


def _description(meta: Meta) -> str:
    note = meta.text.note if meta.text is not None else ""
    return f"{meta.description} {note}" if note else meta.description


def _list(meta: Meta, item: Any, default: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "array", "description": _description(meta)}
    item_class = dataclass_type(item)
    if item_class is not None:
        node["items"] = object_schema(item_class, Meta(description=meta.item_description or ""),
                                      None)
    else:
        node["items"] = {"type": "number", **_bounds(meta.items or Meta())}
    for key, value in (("minItems", meta.min_items), ("maxItems", meta.max_items),
                       ("x-kubernetes-list-type", meta.list_type)):
        if value is not None:
            node[key] = value
    if meta.map_keys:
        node["x-kubernetes-list-map-keys"] = list(meta.map_keys)
    if default is not None:
        node["default"] = to_json(default)
    return node


def field_schema(tp: Any, meta: Meta, default: Any) -> dict[str, Any]:
    """The OpenAPI node of one field of type `tp` whose default is `default`."""
    tp, _ = unwrap_optional(tp)
    nested = dataclass_type(tp)
    if nested is not None:
        node = object_schema(nested, meta, default)
        if default is not None:
            node["default"] = to_json(default)
        return node
    if typing.get_origin(tp) is tuple:
        node = _list(meta, typing.get_args(tp)[0], default)
    elif tp is bool:
        node = {"type": "boolean", "description": meta.description}
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        node = {"type": "string", "description": meta.description,
                "enum": [member.value for member in tp]}
    elif tp is int or tp is float:
        node = {"type": "integer" if tp is int else "number", "description": meta.description,
                **_bounds(meta)}
    else:
        node = {"type": "string", "description": _description(meta), **_text(meta.text)}
    if default is not None and not isinstance(default, tuple):
        node["default"] = to_json(default)
    if meta.rules:
        node.setdefault("x-kubernetes-validations", []).extend(r.to_schema() for r in meta.rules)
    return node


def object_schema(cls: type, meta: Meta, instance: Any | None) -> dict[str, Any]:
    """The OpenAPI node of dataclass `cls`; leaf defaults come from `instance` (see
    `defaults_of`), descriptions from each field's Meta unless `meta.describe` says."""
    node: dict[str, Any] = {"type": "object", "description": meta.description}
    properties: dict[str, Any] = {}
    required: list[str] = []
    defaults = defaults_of(cls, instance)
    described = dict(meta.describe)
    for f in fields(cls):
        info = meta_of(f)
        if f.name in described:
            info = Meta(**{**_as_dict(info), "description": described[f.name]})
        default = defaults.get(f.name)
        sub = field_schema(hints(cls)[f.name], info, default)
        key = key_of(f)
        if info.via is None:
            properties[key] = sub
            if info.required:
                required.append(key)
            continue
        holder = properties.setdefault(info.via.key, {
            "type": "object", "description": info.via.description, "properties": {}})
        holder["properties"][key] = sub
        if info.required:
            holder.setdefault("required", []).append(key)
        if info.via.defaulted and default is not None:
            holder["default"] = {key: to_json(default)}
    node["properties"] = properties
    if required:
        node["required"] = required
    if meta.rules:
        node["x-kubernetes-validations"] = [r.to_schema() for r in meta.rules]
    return node


def _as_dict(meta: Meta) -> dict[str, Any]:
    return {f.name: getattr(meta, f.name) for f in fields(meta)}


def openapi_schema(cls: type, meta: Meta) -> dict[str, Any]:
    """The CRD's `.spec` schema for the spec dataclass `cls` (no default of its own)."""
    return object_schema(cls, meta, None)


# --------------------------------------------------------------------------- walking


def numeric_fields(cls: type, path: str) -> Iterator[tuple[str, Meta]]:
    """(field path with [i] dropped, Meta) of every number in `cls`, nested included."""
    for f in fields(cls):
        tp, _ = unwrap_optional(hints(cls)[f.name])
        sub = f"{path}.{'.'.join(json_key(f))}"
        nested = dataclass_type(tp)
        if nested is not None:
            yield from numeric_fields(nested, sub)
        elif typing.get_origin(tp) is tuple:
            item = dataclass_type(typing.get_args(tp)[0])
            if item is not None:
                yield from numeric_fields(item, sub)
        elif tp is int or tp is float:
            yield sub, meta_of(f)
