"""Every rendered object validates with `kubernetes-validate --strict` against the oldest and newest supported Kubernetes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.k8s.support import OVERLAYS, Doc, run, tool

pytestmark = pytest.mark.k8s

KUBERNETES_VERSIONS = ("1.29", "1.37")
# Custom resources have no schema in kubernetes-validate (it ships the core API's OpenAPI only), so
# they are reported as "Couldn't find schema" and skipped. Only these are expected: anything else
# without a schema is a typo in apiVersion/kind and fails. Their fields are checked in test_render.
CRDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}


def validate(path: Path, version: str) -> tuple[int, list[str]]:
    proc = run([str(tool("kubernetes-validate")), "--strict", "--kubernetes-version", version, str(path)])
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_validate_strictly(render: Callable[[str], str], docs_of: Callable[[str], list[Doc]],
                                            tmp_path: Path, overlay: str, version: str) -> None:
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(render(overlay))
    code, lines = validate(rendered, version)
    errors = [line for line in lines if line.startswith("ERROR")]
    assert errors == []
    assert code == 0
    docs = docs_of(overlay)
    custom = [d for d in docs if (d["apiVersion"], d["kind"]) in CRDS]
    no_schema = [line for line in lines if "Couldn't find schema" in line]
    assert len(no_schema) == len(custom)
    for line in no_schema:
        assert any(f"kind {kind} with api version {api}" in line for api, kind in CRDS), line
    passed = [line for line in lines if " passed for resource " in line]
    assert len(passed) == len(docs) - len(custom)


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    # The validator itself: a misspelt field must fail, or the test above proves nothing.
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  selectr: {}\n"
                   "  ports: [{port: 80}]\n")
    code, lines = validate(bad, KUBERNETES_VERSIONS[0])
    assert code != 0
    assert any(line.startswith("ERROR") and "selectr" in line for line in lines)
