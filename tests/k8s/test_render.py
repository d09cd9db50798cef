"""The overlays render, and the rendered objects have the shape the issue asks for (replicas, security, probes)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.k8s.support import (
    DEFAULT_OVERLAY, KEDA_OVERLAY, NAMESPACE, OVERLAYS, ROOT, SERVICES, Doc, container_env, containers, data_values,
    find, kustomize_command, load_config, run, workloads,
)

pytestmark = pytest.mark.k8s

CLUSTER_SCOPED = {"Namespace"}
CRD_GROUPS = ("keda.sh/",)
EXPECTED_WORKLOADS = {
    ("Deployment", "auth"): 2,
    ("Deployment", "gateway"): 2,
    ("Deployment", "converter"): 2,
    ("Deployment", "notification"): 1,
    ("Deployment", "mailpit"): 1,
    ("StatefulSet", "rabbitmq"): 1,
    ("StatefulSet", "mongodb"): 1,
    ("StatefulSet", "mysql"): 1,
}
PLACEHOLDER_ANNOTATION = "mp3converter/placeholder"
# What the services refuse in a Secret value unless DEV_MODE=true (mp3core/mp3core/settings.py).
DEV_PLACEHOLDER = "dev-only"
# The kubelet's default when a pod sets no terminationGracePeriodSeconds.
DEFAULT_POD_GRACE_SECONDS = 30


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_lands_in_the_app_namespace(docs_of: Callable[[str], list[Doc]], overlay: str) -> None:
    docs = docs_of(overlay)
    assert docs, f"{overlay} rendered nothing"
    wrong = [f"{d['kind']}/{d['metadata']['name']}: {d['metadata'].get('namespace')}"
             for d in docs if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != NAMESPACE]
    assert wrong == []
    namespace = find(docs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_and_pod_template_carries_the_standard_labels(docs_of: Callable[[str], list[Doc]],
                                                                   overlay: str) -> None:
    missing = []
    for doc in docs_of(overlay):
        holders = [("", doc["metadata"])]
        if doc["kind"] in ("Deployment", "StatefulSet"):
            holders.append((" template", doc["spec"]["template"]["metadata"]))
        for where, meta in holders:
            labels = meta.get("labels", {})
            if not labels.get("app.kubernetes.io/name") or labels.get("app.kubernetes.io/part-of") != "mp3converter":
                missing.append(f"{doc['kind']}/{doc['metadata']['name']}{where}")
    assert missing == []


def test_workloads_and_replica_counts(docs: list[Doc]) -> None:
    found = {(w["kind"], w["metadata"]["name"]): w["spec"]["replicas"] for w in workloads(docs)}
    assert found == EXPECTED_WORKLOADS


@pytest.mark.parametrize("name", ["rabbitmq", "mongodb", "mysql"])
def test_data_stores_are_statefulsets_with_a_claim_and_a_headless_service(docs: list[Doc], name: str) -> None:
    sts = find(docs, "StatefulSet", name)
    claims = sts["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert claims[0]["spec"]["resources"]["requests"]["storage"]
    mounted = {m["name"]: m["mountPath"] for c in containers(sts) for m in c.get("volumeMounts", [])}
    assert "data" in mounted
    service = find(docs, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"


def test_rabbitmq_memory_alarm_is_sized_from_the_container_limit(docs: list[Doc]) -> None:
    conf = find(docs, "ConfigMap", "rabbitmq-config")["data"]["30-kubernetes.conf"]
    settings = dict(line.split(" = ") for line in conf.splitlines() if " = " in line and not line.startswith("#"))
    (broker,) = pod_spec(find(docs, "StatefulSet", "rabbitmq"))["containers"]
    limit = broker["resources"]["limits"]["memory"]
    assert int(settings["total_memory_available_override_value"]) == mebibytes(limit) * 1024 * 1024


def test_mysql_runs_init_sql_from_a_configmap_with_the_same_content(docs: list[Doc]) -> None:
    sts = find(docs, "StatefulSet", "mysql")
    (server,) = pod_spec(sts)["containers"]
    (mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == "/docker-entrypoint-initdb.d"]
    (volume,) = [v for v in pod_spec(sts)["volumes"] if v["name"] == mount["name"]]
    configmap = find(docs, "ConfigMap", volume["configMap"]["name"])
    scripts = sorted(configmap["data"])
    # The entrypoint runs them in name order: the schema first, then the Secret's password.
    assert scripts == ["10-init.sql", "20-auth-user-password.sh"]
    assert configmap["data"]["10-init.sql"] == (ROOT / "mysql" / "init.sql").read_text()


def test_rabbitmq_management_is_not_exposed_and_guest_is_never_created(docs: list[Doc]) -> None:
    exposed = [(s["metadata"]["name"], p.get("targetPort"), p["port"])
               for s in docs if s["kind"] == "Service" for p in s["spec"]["ports"]]
    assert not [e for e in exposed if 15672 in e or "management" in e]
    assert all(d["kind"] != "Ingress" or "rabbitmq" not in str(d["spec"]) for d in docs)
    conf = find(docs, "Secret", "rabbitmq-secret")["stringData"]["20-default-user.conf"]
    user = [line.split("=", 1)[1].strip() for line in conf.splitlines() if line.startswith("default_user")]
    assert user and user != ["guest"]


@pytest.mark.parametrize(("kind", "name"), list(EXPECTED_WORKLOADS))
def test_pod_security_is_restricted(docs: list[Doc], kind: str, name: str) -> None:
    workload = find(docs, kind, name)
    spec = pod_spec(workload)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] > 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec.get("hostNetwork", False) is False and spec.get("hostPID", False) is False
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in containers(workload):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, container["name"]
        assert ctx["readOnlyRootFilesystem"] is True, container["name"]
        assert ctx["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in ctx["capabilities"], container["name"]
        assert ctx.get("privileged", False) is False, container["name"]
        if container["name"] == "placeholder-guard":  # reads Secrets, writes nothing: every mount read-only
            assert all(m.get("readOnly") for m in container["volumeMounts"]), container["name"]
            continue
        # A read-only root needs a writable, size-capped /tmp.
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert volumes[tmp["name"]]["emptyDir"]["sizeLimit"], container["name"]


@pytest.mark.parametrize(("kind", "name"), list(EXPECTED_WORKLOADS))
def test_every_container_has_probes_requests_and_limits(docs: list[Doc], kind: str, name: str) -> None:
    workload = find(docs, kind, name)
    # Init containers run to completion before the pod starts: the API allows them no probes.
    for container in pod_spec(workload)["containers"]:
        assert container.get("livenessProbe"), container["name"]
        assert container.get("readinessProbe"), container["name"]
    for container in containers(workload):
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound]), f"{container['name']} {bound}"


def test_converter_scratch_space_fits_the_largest_upload(docs: list[Doc]) -> None:
    converter = find(docs, "Deployment", "converter")
    (tmp,) = [v for v in pod_spec(converter)["volumes"] if v["name"] == "tmp"]
    max_upload_mib = int(find(docs, "ConfigMap", "gateway-config")["data"]["MAX_UPLOAD_MB"])
    assert mebibytes(tmp["emptyDir"]["sizeLimit"]) > max_upload_mib
    limit = containers(converter)[0]["resources"]["limits"]["ephemeral-storage"]
    assert mebibytes(limit) >= mebibytes(tmp["emptyDir"]["sizeLimit"])


def mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    raise AssertionError(f"unexpected quantity {quantity!r}")


@pytest.mark.parametrize("service", SERVICES)
def test_app_pods_get_no_service_link_variables(docs: list[Doc], service: str) -> None:
    # Service links would inject e.g. MYSQL_PORT=tcp://10.0.0.1:3306, which auth parses as a port.
    assert pod_spec(find(docs, "Deployment", service))["enableServiceLinks"] is False


@pytest.mark.parametrize("service", SERVICES)
def test_app_images_are_ours_with_a_fixed_tag(docs: list[Doc], service: str) -> None:
    (container,) = containers(find(docs, "Deployment", service))
    image, _, tag = container["image"].rpartition(":")
    assert image == f"mp3converter/{service}"
    assert tag and tag != "latest"


def test_ingress_routes_the_host_to_the_gateway_with_the_upload_limit(docs: list[Doc]) -> None:
    ingress = find(docs, "Ingress", "gateway")
    annotations = ingress["metadata"]["annotations"]
    max_upload_mb = find(docs, "ConfigMap", "gateway-config")["data"]["MAX_UPLOAD_MB"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{max_upload_mb}m"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    for timeout in ("proxy-send-timeout", "proxy-read-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 600
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "mp3converter.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    service = find(docs, "Service", backend["name"])
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "gateway"}
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_gateway_hpa_targets_the_gateway_and_keeps_its_replicas(docs: list[Doc]) -> None:
    hpa = find(docs, "HorizontalPodAutoscaler", "gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "gateway")
    assert hpa["spec"]["minReplicas"] == find(docs, "Deployment", "gateway")["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("name", ["gateway", "auth"])
def test_pod_disruption_budgets_keep_one_pod(docs: list[Doc], name: str) -> None:
    pdb = find(docs, "PodDisruptionBudget", name)
    assert pdb["spec"]["minAvailable"] == 1
    template_labels = find(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_secrets_are_marked_as_dev_placeholders(docs: list[Doc]) -> None:
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert len(secrets) >= 5
    unmarked = [s["metadata"]["name"] for s in secrets
                if "dev-only placeholder" not in s["metadata"].get("annotations", {}).get(PLACEHOLDER_ANNOTATION, "")]
    assert unmarked == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_value_is_a_dev_only_placeholder(docs_of: Callable[[str], list[Doc]], overlay: str) -> None:
    # The services refuse such values unless DEV_MODE=true, so a real deployment cannot start on them by mistake.
    secrets = [d for d in docs_of(overlay) if d["kind"] == "Secret"]
    assert secrets
    bare = [f"{s['metadata']['name']}/{key}" for s in secrets for key, value in data_values(s).items()
            if DEV_PLACEHOLDER not in value]
    assert bare == []


def dev_mode_readers() -> list[str]:
    return [service for service in SERVICES if "DEV_MODE" in load_config(service).ENV_VARS]


def test_base_leaves_dev_mode_off_and_the_dev_overlay_turns_it_on(docs: list[Doc]) -> None:
    import yaml  # only in the k8s tools venv (conftest skips these tests elsewhere)

    proc = run([*kustomize_command(), str(ROOT / "k8s" / "base")])
    assert proc.returncode == 0, proc.stderr
    base = [d for d in yaml.safe_load_all(proc.stdout) if d]
    # Off (or unset) in the base that real overlays build on; on in minikube, which uses the placeholders.
    assert {d["data"]["DEV_MODE"] for d in base if d["kind"] == "ConfigMap" and "DEV_MODE" in d.get("data", {})} <= {"false"}
    readers = dev_mode_readers()
    assert readers, "no service reads DEV_MODE"
    for service in readers:
        (container,) = containers(find(docs, "Deployment", service))
        assert container_env(container, docs).get("DEV_MODE") == "true", service


@pytest.mark.parametrize("service", ["converter", "notification"])
def test_consumers_stop_waiting_before_the_pod_is_killed(docs: list[Doc], service: str) -> None:
    workload = find(docs, "Deployment", service)
    (container,) = containers(workload)
    grace = int(container_env(container, docs)["SHUTDOWN_GRACE_SECONDS"])
    assert 0 < grace < pod_spec(workload).get("terminationGracePeriodSeconds", DEFAULT_POD_GRACE_SECONDS)


def test_keda_is_only_in_the_optional_overlay(docs_of: Callable[[str], list[Doc]]) -> None:
    assert not [d for d in docs_of(DEFAULT_OVERLAY) if d["apiVersion"].startswith(CRD_GROUPS)]
    keda = docs_of(KEDA_OVERLAY)
    scaled = find(keda, "ScaledObject", "converter")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "converter"
    find(keda, "Deployment", "converter")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == find(keda, "ConfigMap", "converter-config")["data"]["VIDEO_QUEUE"]
    auth = find(keda, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    url = urlsplit(find(keda, "Secret", ref["name"])["stringData"][ref["key"]])
    # KEDA runs in its own namespace: a short Service name would not resolve there.
    assert url.scheme == "amqp" and url.hostname == f"rabbitmq.{NAMESPACE}.svc.cluster.local"
    # The rest of the KEDA overlay is the default overlay, unchanged.
    plain = [d for d in keda if not d["apiVersion"].startswith(CRD_GROUPS) and d["metadata"]["name"] != "rabbitmq-from-keda"]
    assert plain == docs_of(DEFAULT_OVERLAY)
