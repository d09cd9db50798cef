"""NetworkPolicies: default deny, DNS for all, and exactly the flows of docs/design.md between the pods."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.k8s.support import DEFAULT_OVERLAY, KEDA_OVERLAY, Doc, workloads

pytestmark = pytest.mark.k8s

# (from, to, port): every connection the design needs, and nothing else. "ingress-nginx" and "keda"
# stand for pods in those namespaces; the rest are app.kubernetes.io/name values in ours.
DESIGN_FLOWS = {
    ("ingress-nginx", "gateway", 8080),
    ("gateway", "auth", 5000),
    ("gateway", "mongodb", 27017),
    ("gateway", "rabbitmq", 5672),
    ("auth", "mysql", 3306),
    ("converter", "mongodb", 27017),
    ("converter", "rabbitmq", 5672),
    ("notification", "rabbitmq", 5672),
    ("notification", "mongodb", 27017),
    ("notification", "mailpit", 1025),
}
KEDA_FLOWS = {("keda", "rabbitmq", 5672)}
EXTERNAL_NAMESPACES = {"ingress-nginx": {"app.kubernetes.io/name": "ingress-nginx"}, "keda": {}}


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND matchExpressions); {} selects everything."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def peer_matches(peer: Doc, namespace: str, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": namespace}
        return selects(peer["namespaceSelector"], ns_labels) and selects(peer.get("podSelector"), labels)
    # A bare podSelector means pods of the policy's own namespace.
    return namespace == "mp3converter" and selects(peer.get("podSelector"), labels)


def port_allowed(rule: Doc, port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports)


def allows(policies: list[Doc], direction: str, own: dict[str, str], peer_ns: str, peer: dict[str, str],
           port: int) -> bool:
    """Whether the policies that select `own` allow this flow. Pods no policy selects are open."""
    kind = "Ingress" if direction == "ingress" else "Egress"
    relevant = [p for p in policies if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], own)]
    if not relevant:
        return True
    field = "from" if direction == "ingress" else "to"
    for policy in relevant:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get(field)
            peer_ok = not peers or any(peer_matches(x, peer_ns, peer) for x in peers)
            if peer_ok and port_allowed(rule, port):
                return True
    return False


def allowed_flows(docs: list[Doc]) -> set[tuple[str, str, int]]:
    """(source, destination, port) for every flow the policies allow between the workloads' and Jobs' pods, and
    from the external namespaces; the ports are those the workloads declare."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"]
            for w in [*workloads(docs), *(d for d in docs if d["kind"] == "Job")]}
    ports = {p["containerPort"] for w in workloads(docs) for c in w["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports", [])}
    flows = set()
    for dst, dst_labels in pods.items():
        for port in ports:
            for src, src_labels in pods.items():
                if (allows(policies, "egress", src_labels, "mp3converter", dst_labels, port)
                        and allows(policies, "ingress", dst_labels, "mp3converter", src_labels, port)):
                    flows.add((src, dst, port))
            for ns, labels in EXTERNAL_NAMESPACES.items():
                if allows(policies, "ingress", dst_labels, ns, labels, port):
                    flows.add((ns, dst, port))
    return flows


@pytest.mark.parametrize(("overlay", "expected"), [(DEFAULT_OVERLAY, DESIGN_FLOWS),
                                                    (KEDA_OVERLAY, DESIGN_FLOWS | KEDA_FLOWS)],
                         ids=[DEFAULT_OVERLAY, KEDA_OVERLAY])
def test_only_the_design_flows_are_allowed(docs_of: Callable[[str], list[Doc]], overlay: str,
                                           expected: set[tuple[str, str, int]]) -> None:
    assert allowed_flows(docs_of(overlay)) == expected


def test_default_deny_covers_every_pod_both_ways(docs: list[Doc]) -> None:
    deny = [d for d in docs if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"] == {}
            and not d["spec"].get("ingress") and not d["spec"].get("egress")]
    assert len(deny) == 1
    assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]


def test_every_pod_may_reach_cluster_dns_and_nothing_else_outside(docs: list[Doc]) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    dns = {"k8s-app": "kube-dns"}
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        name = workload["metadata"]["name"]
        assert allows(policies, "egress", labels, "kube-system", dns, 53), name
        # Only DNS leaves the namespace: no egress to other namespaces or the internet.
        assert not allows(policies, "egress", labels, "kube-system", {"k8s-app": "other"}, 53), name
        assert not allows(policies, "egress", labels, "default", {}, 443), name


def test_the_flow_model_sees_a_missing_rule() -> None:
    # The checker itself: a pod selected by an Egress policy without rules reaches nothing.
    policy = {"kind": "NetworkPolicy",
              "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "a"}}, "policyTypes": ["Egress"]}}
    a, b = {"app.kubernetes.io/name": "a"}, {"app.kubernetes.io/name": "b"}
    assert not allows([policy], "egress", a, "mp3converter", b, 80)
    assert allows([policy], "egress", b, "mp3converter", a, 80)
