"""The CRD's OpenAPI schema of `.spec`, derived from the spec's declarations.

hack/gen-crd.py writes it into crds/stemedbclusters.stemedb.io.yaml. Every node
comes from one declared field (controller/domain/spec_schema.py): its type, its
Meta (description, bounds, text rules, list keys, CEL rules) and its default,
which for a nested object's fields is the value in the parent's default (the
warning threshold's lagSeconds defaults to 5 because DetectionSpec().warning
is Threshold(5, 300)).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from controller.domain.codec import to_json
from controller.domain.spec_schema import (
    Declared,
    Kind,
    Meta,
    Text,
    dataclass_type,
    declared,
    defaults_of,
    list_item,
)


def openapi_schema(cls: type, meta: Meta) -> dict[str, Any]:
    """The CRD's `.spec` schema for the spec dataclass `cls` (no default of its own)."""
    schema = object_schema(cls, meta, None)
    if meta.rules:
        schema["x-kubernetes-validations"] = [rule.to_schema() for rule in meta.rules]
    return schema


def object_schema(cls: type, meta: Meta, instance: Any | None) -> dict[str, Any]:
    """The node of dataclass `cls`; leaf defaults from `instance` (else the class's),
    descriptions from each field's Meta unless `meta.describe` says otherwise."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    defaults = defaults_of(cls, instance)
    described = dict(meta.describe)
    for item in declared(cls):
        field_meta = item.meta
        if item.name in described:
            field_meta = replace(field_meta, description=described[item.name])
        default = defaults.get(item.name)
        node = field_schema(item, field_meta, default)
        via = field_meta.via
        if via is None:
            properties[item.key] = node
            if field_meta.required:
                required.append(item.key)
            continue
        # A field the dataclass flattens (podRef.name) sits in an object of its own.
        outer = properties.setdefault(via.key, {
            "type": "object", "description": via.description, "properties": {}})
        outer["properties"][item.key] = node
        if field_meta.required:
            outer.setdefault("required", []).append(item.key)
        if via.defaulted and default is not None:
            outer["default"] = {item.key: to_json(default)}
    schema: dict[str, Any] = {"type": "object", "description": meta.description,
                              "properties": properties}
    if required:
        schema["required"] = required
    return schema


def field_schema(item: Declared, meta: Meta, default: Any) -> dict[str, Any]:
    """The node of one declared field whose default is `default` (None: no default)."""
    match item.kind:
        case Kind.OBJECT:
            node = object_schema(item.type, meta, default)
        case Kind.LIST:
            node = _list(item, meta)
        case Kind.BOOLEAN:
            node = {"type": "boolean", "description": meta.description}
        case Kind.CHOICE:
            node = {"type": "string", "description": meta.description,
                    "enum": [member.value for member in item.type]}
        case Kind.INTEGER | Kind.NUMBER:
            node = {"type": "integer" if item.kind is Kind.INTEGER else "number",
                    "description": meta.description, **_bounds(meta)}
        case Kind.TEXT:
            node = {"type": "string", "description": _description(meta), **_text(meta.text)}
    if default is not None:
        node["default"] = to_json(default)
    if meta.rules:
        node.setdefault("x-kubernetes-validations", []).extend(r.to_schema() for r in meta.rules)
    return node


def _list(item: Declared, meta: Meta) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "array", "description": _description(meta)}
    element = dataclass_type(list_item(item))
    if element is not None:
        node["items"] = object_schema(element, Meta(description=meta.item_description or ""),
                                      None)
    else:
        node["items"] = {"type": "number", **_bounds(meta.items or Meta())}
    for key, value in (("minItems", meta.min_items), ("maxItems", meta.max_items),
                       ("x-kubernetes-list-type", meta.list_type)):
        if value is not None:
            node[key] = value
    if meta.map_keys:
        node["x-kubernetes-list-map-keys"] = list(meta.map_keys)
    return node


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
        out["x-kubernetes-validations"] = [rule.to_schema() for rule in text.rules]
    return out


def _description(meta: Meta) -> str:
    note = meta.text.note if meta.text is not None else ""
    return f"{meta.description} {note}" if note else meta.description
