"""The CRD is generated from the spec dataclasses (and is committed as generated), its
schema defaults equal the domain's defaults, and the schema is well formed."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.domain.spec import parse_spec, spec_to_raw

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "stemedbclusters.stemedb.io.yaml"
GENERATOR = ROOT / "hack" / "gen-crd.py"
MINIMAL = {
    "primary": {"adminUrl": "http://p:18180"},
    "replicas": [{"id": "node2", "agentId": "agent-node2"}],
}


def _crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def _schema() -> dict[str, Any]:
    return _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _render() -> str:
    spec = importlib.util.spec_from_file_location("gen_crd", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.render()
    return text


def test_the_committed_crd_is_the_one_generated_from_the_spec_dataclasses() -> None:
    """The drift check: fix with `make crd` (hack/gen-crd.py, then hack/sync-crd.sh)."""
    assert CRD_PATH.read_text() == _render()


@pytest.mark.parametrize(("edit", "code", "says"), [
    ("", 0, "matches the spec dataclasses"),
    ("\n# hand edit\n", 1, "run `make crd`"),
])
def test_gen_crd_check_fails_on_a_hand_edited_crd(
        tmp_path: Path, edit: str, code: int, says: str) -> None:
    """`hack/gen-crd.py --check` (run by `make check`) reads the checkout it sits in."""
    root = tmp_path / "repo"
    for part in ("hack/gen-crd.py", "hack/crd/frame.yaml", "crds/stemedbclusters.stemedb.io.yaml"):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        (root / part).write_text((ROOT / part).read_text())
    crd = root / "crds" / "stemedbclusters.stemedb.io.yaml"
    crd.write_text(crd.read_text() + edit)
    done = subprocess.run([sys.executable, str(root / "hack" / "gen-crd.py"), "--check"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)},
                          check=False)
    assert done.returncode == code, done.stderr
    assert says in done.stdout + done.stderr


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else k))
    else:
        out[prefix] = d
    return out


def test_crd_defaults_equal_the_domain_defaults() -> None:
    defaulted = apply_defaults(_schema()["properties"]["spec"], copy.deepcopy(MINIMAL))
    domain = spec_to_raw(parse_spec(MINIMAL))
    crd_leaves = _leaves(defaulted)
    dom_leaves = _leaves(domain)
    assert crd_leaves == dom_leaves


def test_defaulted_spec_parses_to_the_same_spec() -> None:
    defaulted = apply_defaults(_schema()["properties"]["spec"], copy.deepcopy(MINIMAL))
    assert parse_spec(defaulted) == parse_spec(MINIMAL)


def _walk(schema: dict[str, Any], path: str):  # type: ignore[no-untyped-def]
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_every_spec_field_has_a_description() -> None:
    missing = [p for p, s in _walk(_schema()["properties"]["spec"], "spec")
               if not s.get("description") and not p.endswith("[]")]
    assert missing == []


def test_every_spec_string_and_list_is_bounded_for_cel_cost() -> None:
    unbounded = []
    for p, s in _walk(_schema()["properties"]["spec"], "spec"):
        if s.get("type") == "string" and "maxLength" not in s and "enum" not in s:
            unbounded.append(p)
        if s.get("type") == "array" and "maxItems" not in s:
            unbounded.append(p)
    assert unbounded == []


def test_names_printer_columns_and_status_subresource() -> None:
    crd = _crd()
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"]) == (
        "stemedb.io", "StemeDBCluster", "stemedbclusters")
    assert names["shortNames"] == ["sdb"] and names["categories"] == ["stemedb"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    cols = [c["name"] for c in version["additionalPrinterColumns"]]
    assert cols == ["Ready", "Max Lag", "Lagging", "Step", "Escalated", "Shard", "Age"]


@pytest.mark.parametrize("field", ["maxLagSeconds", "laggingReplicas", "currentStep"])
def test_printer_columns_read_status_fields_the_domain_writes(field: str) -> None:
    from controller.domain import Memory, build_status

    status = build_status(parse_spec(MINIMAL), Memory.empty(), (), 1)
    assert field in status
    props = _schema()["properties"]["status"]["properties"]
    assert field in props
