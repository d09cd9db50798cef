"""Fixtures for the manifest and Dockerfile checks: rendered overlays (once per session) and a checkov report."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest

from tests.k8s.support import (
    CHECKOV, DEFAULT_OVERLAY, KEDA_OVERLAY, ROOT, SERVICES, TOOLS_HINT, Doc, kustomize_command, run, run_checkov,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the services' venv (no pyyaml, no tools) the k8s checks are skipped with a pointer, not errors."""
    if importlib.util.find_spec("yaml") is not None:
        return
    skip = pytest.mark.skip(reason=f"needs the k8s tools venv: {TOOLS_HINT}")
    for item in items:
        if item.get_closest_marker("k8s"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def render() -> Callable[[str], str]:
    """render(overlay) -> the overlay's YAML stream, rendered once per session."""
    cache: dict[str, str] = {}
    command = kustomize_command()

    def _render(overlay: str) -> str:
        if overlay not in cache:
            proc = run([*command, str(ROOT / "k8s" / "overlays" / overlay)])
            assert proc.returncode == 0, f"{' '.join(command)} {overlay} failed:\n{proc.stderr}"
            cache[overlay] = proc.stdout
        return cache[overlay]

    return _render


@pytest.fixture(scope="session")
def docs_of(render: Callable[[str], str]) -> Callable[[str], list[Doc]]:
    """docs_of(overlay) -> the rendered objects as dicts."""
    import yaml

    cache: dict[str, list[Doc]] = {}

    def _docs(overlay: str) -> list[Doc]:
        if overlay not in cache:
            cache[overlay] = [d for d in yaml.safe_load_all(render(overlay)) if d]
        return cache[overlay]

    return _docs


@pytest.fixture(scope="session")
def docs(docs_of: Callable[[str], list[Doc]]) -> list[Doc]:
    """The default overlay's objects: what `kubectl apply -k k8s/overlays/minikube` creates."""
    return docs_of(DEFAULT_OVERLAY)


@pytest.fixture(scope="session")
def checkov_report(render: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """One checkov run over the rendered KEDA overlay (a superset of the default) and the Dockerfiles."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: {TOOLS_HINT}", pytrace=False)
    rendered = tmp_path_factory.mktemp("checkov") / "rendered.yaml"
    rendered.write_text(render(KEDA_OVERLAY))
    cmd = [str(CHECKOV), "--framework", "kubernetes", "dockerfile", "--skip-download", "--output", "json",
           "--file", str(rendered)]
    # The shared base image (mp3core/Dockerfile) and the four service images built FROM it.
    for image in ("mp3core", *SERVICES):
        cmd += ["--file", str(ROOT / image / "Dockerfile")]
    return run_checkov(cmd)
