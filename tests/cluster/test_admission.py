"""The API server's admission: the overlays are accepted as they are, non-compliant pods are not."""

from __future__ import annotations

import copy
import subprocess
import time

import pytest
import yaml

from tests.cluster.support import NAMESPACE, Doc, Kubectl, find, overlay_dirs, render, warnings

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("overlay", ["minikube", "minikube-keda"])
def test_overlay_is_accepted_server_side_without_warnings(applied: dict[str, subprocess.CompletedProcess[str]], overlay: str) -> None:
    result = applied[overlay]
    assert result.returncode == 0, result.stderr
    # A PodSecurity violation in a Deployment is only a warning at apply time: its pods are refused later.
    assert warnings(result.stderr) == []
    assert "serverside-applied" in result.stdout


@pytest.mark.parametrize("overlay", sorted(overlay_dirs()))
def test_every_overlay_passes_a_server_side_dry_run(dry_runs: dict[str, subprocess.CompletedProcess[str]], overlay: str) -> None:
    result = dry_runs[overlay]
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == []
    assert "serverside-applied (server dry run)" in result.stdout


def test_namespace_enforces_the_restricted_pod_security_standard(applied: object, cluster: Kubectl) -> None:
    labels = cluster.get("namespace", NAMESPACE, namespace="default")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def _gateway_pod_template() -> Doc:
    return copy.deepcopy(find(render(), "Deployment", "gateway")["spec"]["template"])


def _without_run_as_non_root(spec: Doc) -> None:
    # Set on the pod and on each container: either one alone satisfies the standard.
    spec["securityContext"].pop("runAsNonRoot", None)
    for container in spec["containers"]:
        container["securityContext"].pop("runAsNonRoot", None)


def _privilege_escalation(spec: Doc) -> None:
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _extra_capability(spec: Doc) -> None:
    spec["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_RAW"]


def _host_path(spec: Doc) -> None:
    spec["volumes"] = [*spec.get("volumes", []), {"name": "host", "hostPath": {"path": "/etc"}}]


BREAKS = {
    "runAsNonRoot removed": (_without_run_as_non_root, "runAsNonRoot"),
    "privilege escalation": (_privilege_escalation, "allowPrivilegeEscalation"),
    "NET_RAW added": (_extra_capability, "NET_RAW"),
    "hostPath volume": (_host_path, "hostPath"),
}


@pytest.mark.parametrize("case", BREAKS)
def test_a_non_compliant_pod_is_refused(applied: object, cluster: Kubectl, case: str) -> None:
    template = _gateway_pod_template()
    # The compliant pod is admitted (dry run): the refusal below is the change's doing, nothing else.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "podsecurity-probe", "namespace": NAMESPACE, "labels": {"test": "podsecurity"}}, "spec": template["spec"]}
    accepted = cluster.run("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod))
    assert accepted.returncode == 0 and warnings(accepted.stderr) == [], accepted.stderr

    change, field = BREAKS[case]
    change(pod["spec"])
    try:
        refused = cluster.run("create", "-f", "-", stdin=yaml.safe_dump(pod))
        assert refused.returncode != 0, refused.stdout
        assert 'violates PodSecurity "restricted:latest"' in refused.stderr
        assert field in refused.stderr
        assert cluster.run("-n", NAMESPACE, "get", "pod", "podsecurity-probe").returncode != 0
    finally:
        cluster.run("-n", NAMESPACE, "delete", "pod", "podsecurity-probe", "--ignore-not-found", "--wait")


def test_a_non_compliant_deployment_gets_no_pods(applied: object, cluster: Kubectl) -> None:
    """The Deployment is admitted with a warning; its ReplicaSet's pods are refused, so it never rolls out."""
    deployment = copy.deepcopy(find(render(), "Deployment", "gateway"))
    name = "podsecurity-probe"
    deployment["metadata"] = {"name": name, "namespace": NAMESPACE, "labels": {"test": "podsecurity"}}
    deployment["spec"]["replicas"] = 1
    deployment["spec"]["selector"] = {"matchLabels": {"test": name}}
    deployment["spec"]["template"]["metadata"]["labels"] = {"test": name}
    _without_run_as_non_root(deployment["spec"]["template"]["spec"])
    try:
        created = cluster.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(deployment))
        assert created.returncode == 0, created.stderr
        assert any("would violate PodSecurity" in line for line in warnings(created.stderr)), created.stderr

        rollout = cluster.run("-n", NAMESPACE, "rollout", "status", f"deployment/{name}", "--timeout", "5s", timeout=30)
        assert rollout.returncode != 0, rollout.stdout

        deadline = time.monotonic() + 30
        refusals: list[Doc] = []
        while not refusals and time.monotonic() < deadline:
            refusals = [
                e for e in cluster.events()
                if e["reason"] == "FailedCreate" and e["involvedObject"]["kind"] == "ReplicaSet"
                and e["involvedObject"]["name"].startswith(f"{name}-") and "violates PodSecurity" in e["message"]
            ]
            time.sleep(0.5)
        assert refusals, "no FailedCreate event naming PodSecurity for the ReplicaSet"
        assert cluster.items("pods", "-l", f"test={name}") == []
        status = cluster.get("deployment", name)["status"]
        assert status.get("availableReplicas", 0) == 0
    finally:
        cluster.run("-n", NAMESPACE, "delete", "deployment", name, "--ignore-not-found", "--wait")
