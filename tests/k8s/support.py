"""Shared constants and helpers for the manifest and Dockerfile checks (no third-party imports)."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "gateway", "converter", "notification")
NAMESPACE = "mp3converter"
DEFAULT_OVERLAY = "minikube"
# minikube plus the optional KEDA component: a superset of the default overlay.
KEDA_OVERLAY = "minikube-keda"
# minikube plus KEDA, a three-node RabbitMQ and a MongoDB replica set (docs/ha.md; tests/k8s/test_ha.py).
HA_OVERLAY = "ha"
OVERLAYS = (DEFAULT_OVERLAY, KEDA_OVERLAY, HA_OVERLAY)
# The tools live in the venv that runs these tests (scripts/k8s-tools.sh); checkov has its own
# venv inside it because its pins conflict with pytest's.
VENV_BIN = Path(sys.prefix) / "bin"
CHECKOV = Path(sys.prefix) / "checkov" / "bin" / "checkov"
TOOLS_HINT = "run scripts/k8s-tools.sh, then .venv-k8s/bin/python -m pytest tests/k8s -p no:cacheprovider"

Doc = dict[str, Any]


def tool(name: str) -> Path:
    """A tool installed by scripts/k8s-tools.sh into the test venv; a missing one fails, never skips."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: {TOOLS_HINT}", pytrace=False)
    return path


def kustomize_command() -> list[str]:
    # The machine's kubectl first (what `kubectl apply -k` will use), then what k8s-tools.sh installed.
    for candidate in (shutil.which("kubectl"), VENV_BIN / "kubectl"):
        if candidate and Path(candidate).exists():
            return [str(candidate), "kustomize"]
    for candidate in (shutil.which("kustomize"), VENV_BIN / "kustomize"):
        if candidate and Path(candidate).exists():
            return [str(candidate), "build"]
    pytest.fail(f"neither kubectl nor kustomize found: {TOOLS_HINT}", pytrace=False)


def run(cmd: list[str], *, timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def containers(workload: Doc) -> list[Doc]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def container_env_names(container: Doc, docs: list[Doc]) -> set[str]:
    """Every variable the container gets: explicit env plus the keys of envFrom ConfigMaps/Secrets."""
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        obj = find(docs, kind, ref["name"])
        names |= {prefix + key for key in data_keys(obj)}
    return names


def container_env(container: Doc, docs: list[Doc]) -> dict[str, str]:
    """The environment the container starts with (envFrom first, env overriding, as the kubelet does)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source.get("configMapRef") or source.get("secretRef")
        obj = data_values(find(docs, kind, ref["name"]))
        env |= {source.get("prefix", "") + key: value for key, value in obj.items()}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        key_ref = ref.get("configMapKeyRef") or ref.get("secretKeyRef")
        assert key_ref, f"{item['name']}: only ConfigMap/Secret references are expected"
        kind = "ConfigMap" if "configMapKeyRef" in ref else "Secret"
        env[item["name"]] = data_values(find(docs, kind, key_ref["name"]))[key_ref["key"]]
    return env


def data_values(obj: Doc) -> dict[str, str]:
    """A ConfigMap's data, or a Secret's data (base64) and stringData, as plain strings."""
    if obj["kind"] == "ConfigMap":
        return dict(obj.get("data", {}))
    decoded = {key: base64.b64decode(value).decode() for key, value in obj.get("data", {}).items()}
    return decoded | obj.get("stringData", {})


def data_keys(obj: Doc) -> set[str]:
    return {*obj.get("data", {}), *obj.get("stringData", {}), *obj.get("binaryData", {})}


def load_config(service: str) -> ModuleType:
    """<svc>/<svc>/config.py loaded by path: these tests' venv has none of the services' dependencies."""
    path = ROOT / service / service / "config.py"
    assert path.exists(), f"{path} is missing"
    name = f"_k8s_check_{service}_config"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules, so the module must be registered.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        pytest.fail(f"{path} imports a non-stdlib module ({exc}); config.py must stay importable alone",
                    pytrace=False)
    return module


def run_checkov(cmd: list[str]) -> list[Doc]:
    # No platform API key and --skip-download: checkov runs offline, with its bundled checks only.
    proc = run(cmd, timeout=180)
    # Exit code 1 only means "some check failed"; the report says which.
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    return report if isinstance(report, list) else [report]
