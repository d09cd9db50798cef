"""Every other overlay (high availability, ...) deployed on a control plane of its own: it must schedule and roll out too."""

from __future__ import annotations

import pytest

from tests.cluster.support import NAMESPACE, Kubectl, eventually, overlay_dirs, ready, warnings

pytestmark = pytest.mark.cluster

# The session's control plane runs these two (test_admission, test_workloads).
SESSION_OVERLAYS = {"minikube", "minikube-keda"}


@pytest.mark.parametrize("overlay", sorted(set(overlay_dirs()) - SESSION_OVERLAYS))
def test_overlay_rolls_out_on_an_empty_control_plane(own_cluster: Kubectl, overlay: str) -> None:
    applied = own_cluster.run("apply", "--server-side", "-k", str(overlay_dirs()[overlay]))
    assert applied.returncode == 0, applied.stderr
    assert warnings(applied.stderr) == []
    for kind in ("deployment", "statefulset"):
        status = own_cluster.run("-n", NAMESPACE, "rollout", "status", kind, "--timeout", "60s", timeout=90)
        assert status.returncode == 0, f"{status.stdout}{status.stderr}\n{own_cluster.describe_problems()}"
    if own_cluster.items("jobs"):
        done = own_cluster.run("-n", NAMESPACE, "wait", "--for", "condition=Complete", "job", "--all", "--timeout", "60s", timeout=90)
        assert done.returncode == 0, f"{done.stderr}\n{own_cluster.describe_problems()}"

    fake = {n["metadata"]["name"] for n in own_cluster.items("nodes", namespace="default")}
    for pod in own_cluster.items("pods"):
        name = pod["metadata"]["name"]
        assert pod["spec"].get("nodeName") in fake, name
        assert ready(pod) or pod["status"]["phase"] == "Succeeded", name

    def budgets_and_claims() -> None:
        for claim in own_cluster.items("pvc"):
            assert claim["status"]["phase"] == "Bound", claim["metadata"]["name"]
        for budget in own_cluster.items("pdb"):
            assert budget["status"].get("disruptionsAllowed", 0) >= 1, budget["metadata"]["name"]

    eventually(budgets_and_claims)
