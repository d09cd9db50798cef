"""A real control plane for this test session (scripts/cluster.sh): etcd, kube-apiserver, controllers,
scheduler and kwok's fake nodes, on their own ports and state folder, with the system's objects applied."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.cluster.support import BIN, NAMESPACE, ROOT, Kubectl, overlay_dirs, render
from tests.support import free_port

SCRIPT = ROOT / "scripts" / "cluster.sh"
# Each pytest process (an xdist worker, another session in the same tree) has its own control planes,
# beside one from `make cluster-up`; after a run only their logs stay, under .state/cluster-test/.
RUNS = ROOT / ".state" / "cluster-test"
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwok-stages.yaml", "keda-crds.yaml")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The objects are applied once per session; the module that changes them (a rolling update) runs last.
    items.sort(key=lambda item: item.path.name == "test_rolling_update.py")


@contextmanager
def control_plane(name: str) -> Iterator[Kubectl]:
    """A control plane of its own (its state folder, free ports), stopped on exit; its logs stay."""
    missing = [binary for binary in REQUIRED if not (BIN / binary).exists()]
    if missing:
        pytest.fail(f"not built: {', '.join(missing)} in {BIN}; run `make cluster-tools` (scripts/cluster.sh build)", pytrace=False)
    # Earlier runs' logs go once their pytest process is gone.
    for earlier in RUNS.glob("*-*"):
        pid = earlier.name.split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(earlier, ignore_errors=True)
    state = RUNS / f"{os.getpid()}-{name}"
    env = {
        **os.environ,
        "CLUSTER_STATE": str(state),
        "CLUSTER_BIN": str(BIN),
        "CLUSTER_API_PORT": str(free_port()),
        "CLUSTER_ETCD_PORT": str(free_port()),
        "CLUSTER_ETCD_PEER_PORT": str(free_port()),
    }
    try:
        started = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=300, check=False)
        if started.returncode != 0:
            pytest.fail(f"scripts/cluster.sh up failed:\n{started.stderr}", pytrace=False)
        yield Kubectl(state / "kubeconfig", state / "kube-cache")
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
        for left in state.iterdir() if state.exists() else ():
            if left.is_dir() and left.name != "logs":
                shutil.rmtree(left)
            elif left.is_file():
                left.unlink()


def install_keda_crds(cluster: Kubectl) -> None:
    crds = cluster.run("apply", "--server-side", "-f", str(BIN / "keda-crds.yaml"))
    assert crds.returncode == 0, crds.stderr
    established = cluster.run("wait", "--for", "condition=Established", "--timeout", "60s", "-f", str(BIN / "keda-crds.yaml"))
    assert established.returncode == 0, established.stderr


@pytest.fixture(scope="session")
def cluster() -> Iterator[Kubectl]:
    """The session's control plane, started once and stopped after the session."""
    with control_plane("session") as kubectl:
        yield kubectl


@pytest.fixture
def own_cluster(request: pytest.FixtureRequest) -> Iterator[Kubectl]:
    """A fresh control plane for one test, with KEDA's CRDs."""
    with control_plane(request.node.name.replace("[", "-").replace("]", "")) as kubectl:
        install_keda_crds(kubectl)
        yield kubectl


@pytest.fixture(scope="session")
def dry_runs(cluster: Kubectl) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every overlay applied with --dry-run=server to the empty control plane (KEDA's CRDs and the overlays'
    namespaces only), as a first deployment would be: before anything else is applied, so that no overlay
    is judged as an update of another one (a StatefulSet's serviceName, for one, cannot change)."""
    install_keda_crds(cluster)
    namespaces = [d for overlay in overlay_dirs() for d in render(overlay) if d["kind"] == "Namespace"]
    created = cluster.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(namespaces))
    assert created.returncode == 0, created.stderr
    return {
        overlay: cluster.run("apply", "--server-side", "--dry-run=server", "-k", str(path))
        for overlay, path in overlay_dirs().items()
    }


@pytest.fixture(scope="session")
def applied(cluster: Kubectl, dry_runs: object) -> dict[str, subprocess.CompletedProcess[str]]:
    """The minikube overlay, then the KEDA overlay (a superset), each applied server-side.

    The results are kept for the tests to judge (an apply's warnings matter as much as its exit code)."""
    return {
        overlay: cluster.run("apply", "--server-side", "-k", str(overlay_dirs()[overlay]))
        for overlay in ("minikube", "minikube-keda")
    }


@pytest.fixture(scope="session")
def rolled_out(cluster: Kubectl, applied: dict[str, subprocess.CompletedProcess[str]]) -> Kubectl:
    """The applied objects, once every Deployment and StatefulSet has rolled out."""
    for overlay, result in applied.items():
        if result.returncode != 0:
            pytest.fail(f"apply of {overlay} failed:\n{result.stderr}", pytrace=False)
    for kind in ("deployment", "statefulset"):
        status = cluster.run("-n", NAMESPACE, "rollout", "status", kind, "--timeout", "60s", timeout=90)
        if status.returncode != 0:
            pytest.fail(f"{kind}s did not roll out:\n{status.stdout}{status.stderr}\n{cluster.describe_problems()}", pytrace=False)
    return cluster

