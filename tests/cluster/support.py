"""kubectl against the test session's control plane, and the overlays' rendered objects."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Built by scripts/cluster.sh build (make cluster-tools): kubectl is the same version as the API server.
BIN = ROOT / ".state" / "cluster" / "bin"
NAMESPACE = "mp3converter"
DEFAULT_OVERLAY = "minikube"

Doc = dict[str, Any]


@functools.cache
def overlay_dirs() -> dict[str, Path]:
    """Every overlay under k8s/overlays/ (found, not listed: new ones are checked too), minus git-ignored ones."""
    found = sorted(p.parent for p in (ROOT / "k8s" / "overlays").glob("*/kustomization.yaml"))
    ignored = subprocess.run(
        ["git", "check-ignore", *map(str, found)], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    return {p.name: p for p in found if str(p) not in ignored}


@functools.cache
def render(overlay: str = DEFAULT_OVERLAY) -> list[Doc]:
    out = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(overlay_dirs()[overlay])],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@dataclass(frozen=True)
class Kubectl:
    """kubectl with this control plane's kubeconfig, always explicit (a bare kubectl would try localhost:8080)."""

    kubeconfig: Path
    cache_dir: Path

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = self.run(*args, stdin=stdin, timeout=timeout)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def items(self, kind: str, *args: str, namespace: str = NAMESPACE) -> list[Doc]:
        return json.loads(self.ok("-n", namespace, "get", kind, "-o", "json", *args))["items"]

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> Doc:
        return json.loads(self.ok("-n", namespace, "get", kind, name, "-o", "json"))

    def events(self, namespace: str = NAMESPACE) -> list[Doc]:
        return self.items("events", namespace=namespace)

    def describe_problems(self) -> str:
        """Pods that are not Ready and warning events: what a failed rollout's message should show."""
        pods = self.run("-n", NAMESPACE, "get", "pods", "-o", "wide").stdout
        # The HPA's complaints about the missing metrics server are expected here, and would drown the rest.
        warnings = self.run(
            "-n", NAMESPACE, "get", "events", "--field-selector", "type=Warning,involvedObject.kind!=HorizontalPodAutoscaler"
        ).stdout
        return f"pods:\n{pods}\nwarning events:\n{warnings}"


def ready(pod: Doc) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.lower().startswith("warning")]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def eventually(check: Callable[[], None], timeout: float = 60) -> None:
    """Controllers catch up asynchronously: retry the assertions until they hold or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
