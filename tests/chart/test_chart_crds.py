"""crds.install / crds.keep: the CRD as a release object (rendered from the chart's one
crds/ copy), or Helm's crds/ directory alone (the default)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.conftest import CRD_SOURCE, Render, by_kind, one

KEEP = "helm.sh/resource-policy"


@pytest.mark.parametrize(
    ("sets", "rendered", "keep"),
    [
        ([], False, None),
        (["crds.keep=false"], False, None),
        (["crds.install=true"], True, "keep"),
        (["crds.install=true", "crds.keep=false"], True, None),
        # A common annotation cannot switch the keep policy off, nor crds.keep=false on.
        (["crds.install=true", "commonAnnotations.helm\\.sh/resource-policy=none"], True, "keep"),
        (["crds.install=true", "crds.keep=false",
          "commonAnnotations.helm\\.sh/resource-policy=keep"], True, None),
    ],
    ids=["default: crds/ only", "keep alone renders nothing", "install: kept",
         "install, keep=false", "keep wins over commonAnnotations",
         "keep=false wins over commonAnnotations"],
)
def test_crds_install_and_keep(
    render: Render, sets: list[str], rendered: bool, keep: str | None
) -> None:
    crds = by_kind(render(sets=sets), "CustomResourceDefinition")
    assert len(crds) == (1 if rendered else 0)
    if rendered:
        assert crds[0]["metadata"].get("annotations", {}).get(KEEP) == keep


def test_the_rendered_crd_is_the_one_source_with_the_chart_metadata(render: Render) -> None:
    """The templated CRD is crds/ (what `make crd` writes) plus labels: no copy to drift."""
    source: dict[str, Any] = yaml.safe_load(CRD_SOURCE.read_text())
    crd = one(render(sets=["crds.install=true", "commonLabels.team=data"],
                     release="ops"), "CustomResourceDefinition")
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["name"] == source["metadata"]["name"] == "stemedbclusters.stemedb.io"
    assert "namespace" not in crd["metadata"], "a CRD is cluster-scoped"
    labels = crd["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "ops" and labels["team"] == "data"
