"""What the controllers and the scheduler made of the applied objects: pods, volumes, endpoints, budgets."""

from __future__ import annotations

import pytest

from tests.cluster.support import Doc, Kubectl, eventually, find, ready, render, selects

pytestmark = pytest.mark.cluster


def workloads() -> list[Doc]:
    return [d for d in render("minikube-keda") if d["kind"] in ("Deployment", "StatefulSet")]


def test_every_workload_of_the_overlay_exists_and_is_rolled_out(rolled_out: Kubectl) -> None:
    rendered = {(d["kind"], d["metadata"]["name"]): d["spec"]["replicas"] for d in workloads()}
    live = {
        (d["kind"], d["metadata"]["name"]): d for kind in ("deployments", "statefulsets") for d in rolled_out.items(kind)
    }
    assert set(live) == set(rendered)
    for key, replicas in rendered.items():
        status = live[key]["status"]
        assert status.get("readyReplicas") == replicas, key
        assert status.get("updatedReplicas") == replicas, key
        assert status["observedGeneration"] == live[key]["metadata"]["generation"], key


def test_every_pod_is_scheduled_on_a_kwok_node_and_ready(rolled_out: Kubectl) -> None:
    fake = {
        n["metadata"]["name"] for n in rolled_out.items("nodes", namespace="default")
        if n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"
    }
    assert fake
    pods = rolled_out.items("pods")
    for workload in workloads():
        selector = workload["spec"]["selector"]["matchLabels"]
        mine = [p for p in pods if selects(selector, p["metadata"].get("labels", {}))]
        assert len(mine) == workload["spec"]["replicas"], workload["metadata"]["name"]
        for pod in mine:
            assert pod["spec"]["nodeName"] in fake, pod["metadata"]["name"]
            assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]
            assert ready(pod), pod["metadata"]["name"]


def test_every_claim_is_bound(rolled_out: Kubectl) -> None:
    expected = {
        f"{t['metadata']['name']}-{s['metadata']['name']}-{i}"
        for s in workloads() if s["kind"] == "StatefulSet"
        for t in s["spec"].get("volumeClaimTemplates", []) for i in range(s["spec"]["replicas"])
    }
    assert expected, "the overlay has no volume claims: this test would prove nothing"

    def check() -> None:
        claims = {c["metadata"]["name"]: c for c in rolled_out.items("pvc")}
        assert set(claims) == expected
        for name, claim in claims.items():
            assert claim["status"]["phase"] == "Bound", name
            volume = rolled_out.get("pv", claim["spec"]["volumeName"], namespace="default")
            assert volume["spec"]["claimRef"]["name"] == name
            assert volume["spec"]["capacity"]["storage"] == claim["spec"]["resources"]["requests"]["storage"]

    eventually(check)


def _target_port(service_port: Doc, pod: Doc) -> int:
    target = service_port.get("targetPort", service_port["port"])
    if isinstance(target, int):
        return target
    ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", []) if p.get("name") == target]
    assert len(ports) == 1, f"{pod['metadata']['name']} has no single container port named {target}"
    return ports[0]["containerPort"]


def test_every_service_has_endpoints_matching_its_pods(rolled_out: Kubectl) -> None:
    services = [s for s in rolled_out.items("services") if s["spec"].get("selector")]
    assert services

    def check() -> None:
        pods = [p for p in rolled_out.items("pods") if ready(p)]
        slices = rolled_out.items("endpointslices")
        for service in services:
            name = service["metadata"]["name"]
            mine = [p for p in pods if selects(service["spec"]["selector"], p["metadata"].get("labels", {}))]
            assert mine, f"service {name} selects no ready pod"
            own = [s for s in slices if s["metadata"]["labels"].get("kubernetes.io/service-name") == name]
            addresses = {
                a for s in own for e in s.get("endpoints") or [] if e["conditions"].get("ready") for a in e["addresses"]
            }
            assert addresses == {p["status"]["podIP"] for p in mine}, name
            ports = {(p.get("name", ""), p["port"]) for s in own for p in s.get("ports") or []}
            expected = {(sp.get("name", ""), _target_port(sp, pod)) for sp in service["spec"]["ports"] for pod in mine}
            assert ports == expected, name

    eventually(check)


def test_disruption_budgets_allow_the_expected_disruptions(rolled_out: Kubectl) -> None:
    rendered = [d for d in render("minikube-keda") if d["kind"] == "PodDisruptionBudget"]
    assert rendered

    def check() -> None:
        for budget in rendered:
            name = budget["metadata"]["name"]
            selector = budget["spec"]["selector"]["matchLabels"]
            replicas = sum(
                w["spec"]["replicas"] for w in workloads()
                if selects(selector, w["spec"]["template"]["metadata"]["labels"])
            )
            if "minAvailable" in budget["spec"]:
                allowed = max(0, replicas - budget["spec"]["minAvailable"])
            else:
                allowed = budget["spec"]["maxUnavailable"]
            live = rolled_out.get("pdb", name)
            status = live["status"]
            assert status.get("observedGeneration") == live["metadata"]["generation"], name
            assert (status["expectedPods"], status["currentHealthy"]) == (replicas, replicas), name
            assert status["disruptionsAllowed"] == allowed, name
            assert allowed >= 1, f"{name} allows no voluntary disruption: a node drain would block forever"

    eventually(check)


def test_the_autoscaler_is_accepted_and_watched(rolled_out: Kubectl) -> None:
    rendered = find(render(), "HorizontalPodAutoscaler", "gateway")

    def check() -> None:
        live = rolled_out.get("hpa", "gateway")
        assert live["spec"]["scaleTargetRef"] == rendered["spec"]["scaleTargetRef"]
        assert (live["spec"]["minReplicas"], live["spec"]["maxReplicas"]) == (rendered["spec"]["minReplicas"], rendered["spec"]["maxReplicas"])
        # The controller found the Deployment's scale subresource (no metrics server here, so it cannot
        # compute a CPU utilisation, and says so).
        conditions = {c["type"]: c for c in live["status"].get("conditions", [])}
        assert conditions.get("AbleToScale", {}).get("status") == "True", conditions
        assert live["status"]["currentReplicas"] == rendered["spec"]["minReplicas"]

    eventually(check, timeout=90)


def test_the_ingresses_are_accepted_as_written(rolled_out: Kubectl) -> None:
    rendered = [d for d in render() if d["kind"] == "Ingress"]
    assert rendered
    for ingress in rendered:
        live = rolled_out.get("ingress", ingress["metadata"]["name"])
        assert live["spec"] == ingress["spec"]
