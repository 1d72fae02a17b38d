"""helm lint --strict, and the values schema: unknown keys and wrong types are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, VALUES_FILES, helm_cmd, values_id

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_helm_lint_strict_passes(helm: Path, values: Path | None) -> None:
    args = ["--strict", str(CHART)] + ([] if values is None else ["-f", str(values)])
    result = helm_cmd(helm, "lint", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("description", "set_arg", "message"),
    [
        ("an unknown top-level key", "replicas=2",
         "additional properties 'replicas' not allowed"),
        ("an unknown nested key (a typo)", "operator.metricPort=9000",
         "additional properties 'metricPort' not allowed"),
        ("a port given as text", "operator.metricsPort=abc",
         "at '/operator/metricsPort': got string, want integer"),
        ("a boolean flag given as text", "serviceMonitor.enabled=yes",
         "at '/serviceMonitor/enabled': got string, want boolean"),
        ("a log format outside the enum", "operator.logFormat=xml",
         "at '/operator/logFormat'"),
        ("a port out of range", "operator.healthPort=70000",
         "at '/operator/healthPort'"),
        ("a namespace that is not a DNS label", "watch.namespaces={Bad_NS}",
         "at '/watch/namespaces/0'"),
    ],
)
@pytest.mark.parametrize("action", ["template", "lint"])
def test_schema_refuses_bad_values_with_a_clear_message(
    helm: Path, action: str, description: str, set_arg: str, message: str
) -> None:
    first = "stemedb" if action == "template" else "--strict"
    args = [first, str(CHART), "--set", set_arg]
    result = helm_cmd(helm, action, *args)
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"{description} was accepted by helm {action}"
    assert message in out, out


def _walk_schema(node: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every key declared in the schema."""
    keys = []
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        keys.append(path)
        if sub.get("type") == "object" and "properties" in sub:
            keys += _walk_schema(sub, path + ".")
    return keys


def _all_objects(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append((path, node))
        for k, v in node.items():
            found += _all_objects(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _all_objects(v, f"{path}[{i}]")
    return found


def test_every_object_with_declared_properties_refuses_unknown_keys() -> None:
    objects = _all_objects(SCHEMA)
    assert len(objects) > 10
    open_ = [path for path, node in objects if node.get("additionalProperties") is not False]
    assert open_ == [], f"objects that accept unknown keys: {open_}"


def test_every_schema_key_has_a_type() -> None:
    untyped = []

    def visit(node: dict[str, Any], path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            if "type" not in sub:
                untyped.append(f"{path}{name}")
            visit(sub, f"{path}{name}.")

    visit(SCHEMA, "")
    assert untyped == []


def test_values_yaml_and_schema_declare_the_same_keys() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
        keys = []
        for name, value in node.items():
            sub = schema.get("properties", {}).get(name, {})
            keys.append(prefix + name)
            if isinstance(value, dict) and "properties" in sub:
                keys += walk(value, sub, f"{prefix}{name}.")
        return keys

    in_values = set(walk(values, SCHEMA))
    in_schema = set(_walk_schema(SCHEMA))
    assert sorted(in_values - in_schema) == []
    # Resource quantities are optional keys (ephemeral-storage has no default).
    optional = {k for k in in_schema if k.startswith(("resources.requests.", "resources.limits."))}
    assert sorted(in_schema - in_values - optional) == [], "schema keys without a default"


def test_every_values_yaml_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if not m:
            continue
        indent = m.group(1)
        # A key is documented by a comment on the lines right above it at the
        # same indentation; keys of free-form maps/lists (resources) count
        # their parent's comment.
        prev = lines[i - 1] if i else ""
        parent_has_comment = indent and _parent_is_free_form(lines, i, len(indent))
        if not prev.strip().startswith("#") and not parent_has_comment:
            missing.append(line.strip())
    assert missing == [], f"values.yaml keys without a comment: {missing}"


def _parent_is_free_form(lines: list[str], i: int, indent: int) -> bool:
    for j in range(i - 1, -1, -1):
        m = re.match(r"^(\s*)([A-Za-z][\w-]*):", lines[j])
        if m and len(m.group(1)) < indent:
            return m.group(2) in {"resources", "requests", "limits", "podSecurityContext",
                                  "containerSecurityContext", "seccompProfile", "capabilities"}
    return False


def test_every_schema_key_is_documented_in_docs_values_md() -> None:
    doc = (ROOT / "docs" / "values.md").read_text()
    documented = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", doc, flags=re.MULTILINE))
    keys = set(_walk_schema(SCHEMA))
    assert sorted(keys - documented) == [], "schema keys missing from docs/values.md"
    assert sorted(documented - keys) == [], "docs/values.md documents keys the schema lacks"
