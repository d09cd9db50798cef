"""The HA overlay (k8s/overlays/ha, docs/ha.md): a three-node RabbitMQ formed by Kubernetes peer discovery, a
three-member MongoDB replica set with its bootstrap Job, replicas spread over nodes and kept by disruption budgets,
KEDA on the converter, and exactly the design's network flows plus the brokers' and members' own.

Rendering, strict schema validation, labels, Secret placeholders and cross-references run for this overlay with
the others (tests/k8s/support.py: OVERLAYS); checkov runs here on its own rendering."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.k8s.support import (
    CHECKOV, DEFAULT_OVERLAY, HA_OVERLAY, KEDA_OVERLAY, ROOT, TOOLS_HINT, Doc, container_env, containers, data_values,
    find, load_config, run_checkov,
)
from tests.k8s.test_checkov import ALLOWED_SKIPS
from tests.k8s.test_network import DESIGN_FLOWS, KEDA_FLOWS, allowed_flows

pytestmark = pytest.mark.k8s

CLIENTS = ("gateway", "converter", "notification")
HOSTNAME = "kubernetes.io/hostname"
BOOTSTRAP_JS = ROOT / "mongodb" / "replicaset" / "bootstrap.js"
# The flows a cluster adds to the design's: RabbitMQ nodes reach each other's epmd and distribution port, MongoDB
# members replicate and heartbeat on 27017, and the bootstrap Job reaches the members.
HA_FLOWS = {
    ("rabbitmq", "rabbitmq", 4369),
    ("rabbitmq", "rabbitmq", 25672),
    ("mongodb", "mongodb", 27017),
    ("mongodb-bootstrap", "mongodb", 27017),
}
# Skips the HA overlay adds to tests/k8s/test_checkov.py's (each with its reason on the object).
HA_SKIPS = {"CKV_K8S_43": {"Job.mp3converter.mongodb-bootstrap"}}


@pytest.fixture(scope="module")
def ha(docs_of: Callable[[str], list[Doc]]) -> list[Doc]:
    return docs_of(HA_OVERLAY)


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def container(workload: Doc, name: str) -> Doc:
    (found,) = [c for c in containers(workload) if c["name"] == name]
    return found


def mounted(workload: Doc, container_name: str, path: str) -> Doc:
    """The volume mounted at path in that container (the mount's subPath, if any, under key "subPath")."""
    (mount,) = [m for m in container(workload, container_name).get("volumeMounts", []) if m["mountPath"] == path]
    claims = [{"name": t["metadata"]["name"], "claim": t["spec"]}
              for t in workload["spec"].get("volumeClaimTemplates", [])]
    (volume,) = [v for v in [*pod_spec(workload)["volumes"], *claims] if v["name"] == mount["name"]]
    return {**volume, "subPath": mount.get("subPath")}


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def bootstrap_constants() -> dict[str, str]:
    text = BOOTSTRAP_JS.read_text()
    return {name: re.search(rf"^const {name} = (.+?);$", text, re.M).group(1) for name in ("SET", "MEMBERS")}


def mongo_uri_parts(uri: str) -> dict[str, object]:
    """mongodb://user:password@h1,h2,h3/db?opts split by hand (urllib cannot parse a host list)."""
    rest = uri.removeprefix("mongodb://")
    credentials, _, rest = rest.rpartition("@")
    hosts, _, rest = rest.partition("/")
    database, _, query = rest.partition("?")
    user, _, password = credentials.partition(":")
    return {"user": user, "password": password, "hosts": hosts.split(","), "database": database,
            "options": {k: v[0] for k, v in parse_qs(query).items()}}


# --- spread and budgets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rabbitmq", "mongodb"])
def test_broker_and_database_run_three_members_spread_over_nodes(ha: list[Doc], name: str) -> None:
    workload = find(ha, "StatefulSet", name)
    assert workload["spec"]["replicas"] == 3
    assert_spread(workload, name)
    # One member at a time may go in a drain: two of three keep the quorum (queues) and the majority (writes).
    pdb = find(ha, "PodDisruptionBudget", name)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}
    assert pdb["spec"]["selector"]["matchLabels"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("name", ["gateway", "auth", "converter", "notification"])
def test_every_service_runs_two_pods_spread_over_nodes(ha: list[Doc], name: str) -> None:
    workload = find(ha, "Deployment", name)
    assert_spread(workload, name)
    replicas = workload["spec"]["replicas"]
    if name == "converter":  # KEDA owns its replica count
        replicas = find(ha, "ScaledObject", "converter")["spec"]["minReplicaCount"]
    assert replicas >= 2
    if name in ("gateway", "auth"):
        assert find(ha, "PodDisruptionBudget", name)["spec"]["minAvailable"] == 1


def assert_spread(workload: Doc, name: str) -> None:
    # Preferred, not required: a one-node cluster must still schedule everything.
    anti = pod_spec(workload)["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {"topologyKey": HOSTNAME,
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}
    assert workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name


def test_keda_scales_the_converter_on_the_video_queue(ha: list[Doc]) -> None:
    scaled = find(ha, "ScaledObject", "converter")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "converter"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == find(ha, "ConfigMap", "converter-config")["data"]["VIDEO_QUEUE"]
    assert scaled["spec"]["maxReplicaCount"] > scaled["spec"]["minReplicaCount"]


# --- RabbitMQ --------------------------------------------------------------------------------------------------

def test_rabbitmq_nodes_are_named_after_a_headless_service_that_publishes_them_before_they_are_ready(ha):
    broker = find(ha, "StatefulSet", "rabbitmq")
    service = find(ha, "Service", broker["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "rabbitmq"}
    env = {e["name"]: e for e in container(broker, "rabbitmq")["env"]}
    assert env["RABBITMQ_USE_LONGNAME"]["value"] == "true"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # Peer discovery derives the seed node (pod -0) from this name: it must be the pod's own DNS name.
    assert env["RABBITMQ_NODENAME"]["value"] == (
        f"rabbit@$(POD_NAME).{service['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local")
    # After a full stop every node waits for its peers: they must all start, not one after another.
    assert broker["spec"]["podManagementPolicy"] == "Parallel"
    ports = {p["name"]: p["containerPort"] for p in container(broker, "rabbitmq")["ports"]}
    assert ports["epmd"] == 4369 and ports["cluster-links"] == 25672


def test_rabbitmq_forms_its_cluster_with_the_kubernetes_plugin_and_grows_quorum_queues_to_three(ha):
    broker = find(ha, "StatefulSet", "rabbitmq")
    conf = mounted(broker, "rabbitmq", "/etc/rabbitmq/conf.d/40-cluster.conf")
    settings = dict(line.split(" = ", 1) for line in
                    data_values(find(ha, "ConfigMap", conf["configMap"]["name"]))[conf["subPath"]].splitlines()
                    if line and not line.startswith("#"))
    assert settings["cluster_formation.peer_discovery_backend"] == "rabbit_peer_discovery_k8s"
    assert settings["cluster_partition_handling"] == "pause_minority"
    assert settings["quorum_queue.continuous_membership_reconciliation.enabled"] == "true"
    assert int(settings["quorum_queue.continuous_membership_reconciliation.target_group_size"]) == \
        broker["spec"]["replicas"]
    plugins = mounted(broker, "rabbitmq", "/etc/rabbitmq/enabled_plugins")
    listed = data_values(find(ha, "ConfigMap", plugins["configMap"]["name"]))[plugins["subPath"]]
    names = set(re.fullmatch(r"\[([a-z0-9_,]+)\]\.\n?", listed).group(1).split(","))
    # The image's own plugins (the management UI of k8s/README.md, metrics) stay enabled.
    assert names == {"rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_peer_discovery_k8s"}


def test_every_node_gets_the_same_erlang_cookie_readable_by_its_owner_only(ha: list[Doc]) -> None:
    broker = find(ha, "StatefulSet", "rabbitmq")
    init = container(broker, "erlang-cookie")
    assert init["image"] == container(broker, "rabbitmq")["image"]
    source = mounted(broker, "erlang-cookie", "/etc/rabbitmq-cookie")
    assert "dev-only" in data_values(find(ha, "Secret", source["secret"]["secretName"]))["cookie"]
    # Into the rabbitmq user's HOME (the data volume), where Erlang and rabbitmqctl look for it.
    assert mounted(broker, "erlang-cookie", "/var/lib/rabbitmq")["name"] == "data"
    script = init["command"][-1]
    assert "/etc/rabbitmq-cookie/cookie /var/lib/rabbitmq/.erlang.cookie" in script
    assert "chmod 0400 /var/lib/rabbitmq/.erlang.cookie" in script


def test_peer_discovery_asks_no_kubernetes_api_so_the_broker_gets_no_token_and_no_role(ha: list[Doc]) -> None:
    # RabbitMQ 4.1 replaced the plugin's endpoint listing with the pod ordinal (pod -0 is the seed): no
    # ServiceAccount token, Role or RoleBinding is needed. An image before 4.1 would need them again.
    broker = find(ha, "StatefulSet", "rabbitmq")
    version = re.match(r"rabbitmq:(\d+)\.(\d+)\.", container(broker, "rabbitmq")["image"])
    assert (int(version.group(1)), int(version.group(2))) >= (4, 1)
    assert pod_spec(broker)["automountServiceAccountToken"] is False
    assert not [d for d in ha if d["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
                                               "ServiceAccount")]


# --- MongoDB ---------------------------------------------------------------------------------------------------

def test_mongodb_members_join_one_replica_set_with_keyfile_authentication(ha: list[Doc]) -> None:
    members = find(ha, "StatefulSet", "mongodb")
    mongod = container(members, "mongodb")
    args = mongod["args"]
    constants = bootstrap_constants()
    assert arg_after(args, "--replSet") == constants["SET"].strip('"')
    assert int(constants["MEMBERS"]) == members["spec"]["replicas"]
    # The keyfile is written by the init container onto a memory emptyDir the server mounts read-only.
    keyfile = arg_after(args, "--keyFile")
    folder = str(Path(keyfile).parent)
    assert "emptyDir" in mounted(members, "mongodb", folder)
    assert mounted(members, "keyfile", folder)["name"] == mounted(members, "mongodb", folder)["name"]
    script = container(members, "keyfile")["command"][-1]
    assert f"chmod 0400 {keyfile}" in script
    source = mounted(members, "keyfile", "/etc/mongodb-keyfile-secret")
    assert "/etc/mongodb-keyfile-secret/passphrase" in script
    assert "passphrase" in data_values(find(ha, "Secret", source["secret"]["secretName"]))
    # Only member 0 goes through the image's first-boot initialisation (root and service users).
    assert mongod["command"][:2] == ["bash", "-c"]
    assert '*-0) exec docker-entrypoint.sh "$@"' in mongod["command"][2]
    assert mongod["args"][0] == "mongod"
    service = find(ha, "Service", members["spec"]["serviceName"])
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_the_bootstrap_names_the_members_as_their_pods_are_named() -> None:
    text = BOOTSTRAP_JS.read_text()
    assert "`mongodb-${i}.mongodb:27017`" in text
    # Idempotent: it initiates nothing once any member is in a set, and an AlreadyInitialized reply is success.
    assert "inSet.length > 0" in text and "quit(0)" in text
    assert "reply.code !== 23" in text


@pytest.mark.parametrize("service", CLIENTS)
def test_each_service_names_the_replica_set_with_its_own_user(ha: list[Doc], docs_of, service: str) -> None:
    members = find(ha, "StatefulSet", "mongodb")
    workload = find(ha, "Deployment", service)
    uri = mongo_uri_parts(container_env(containers(workload)[0], ha)["MONGO_URI"])
    single = mongo_uri_parts(container_env(containers(find(docs_of(DEFAULT_OVERLAY), "Deployment", service))[0],
                                           docs_of(DEFAULT_OVERLAY))["MONGO_URI"])
    assert uri["options"]["replicaSet"] == arg_after(container(members, "mongodb")["args"], "--replSet")
    name = members["spec"]["serviceName"]
    assert uri["hosts"] == [f"mongodb-{i}.{name}:27017" for i in range(members["spec"]["replicas"])]
    # The same user, password and database as the single server: service-users.js made them on member 0.
    assert (uri["user"], uri["password"], uri["database"]) == (single["user"], single["password"],
                                                               single["database"])


@pytest.mark.parametrize("service", CLIENTS)
def test_the_settings_accept_the_replica_set_uri(ha: list[Doc], service: str) -> None:
    (app,) = containers(find(ha, "Deployment", service))
    settings = load_config(service).Settings.from_env(container_env(app, ha))
    assert "replicaSet=rs0" in settings.mongo_uri


def test_the_bootstrap_job_runs_restricted_with_the_root_credentials(ha: list[Doc]) -> None:
    job = find(ha, "Job", "mongodb-bootstrap")
    spec = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"] == {"app.kubernetes.io/name": "mongodb-bootstrap",
                                                             "app.kubernetes.io/part-of": "mp3converter"}
    assert spec["restartPolicy"] == "OnFailure" and spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (bootstrap,) = spec["containers"]
    assert bootstrap["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert bootstrap["resources"]["limits"] and bootstrap["resources"]["requests"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    script = find(ha, "ConfigMap", volumes["script"]["configMap"]["name"])
    assert data_values(script)["bootstrap.js"] == BOOTSTRAP_JS.read_text()
    assert bootstrap["command"][-1] == "/etc/mongodb-bootstrap/bootstrap.js"
    secret = data_values(find(ha, "Secret", volumes["credentials"]["secret"]["secretName"]))
    assert {i["key"] for i in volumes["credentials"]["secret"]["items"]} <= secret.keys()


# --- network and checkov ---------------------------------------------------------------------------------------

def test_only_the_design_flows_and_the_cluster_flows_are_allowed(ha: list[Doc]) -> None:
    assert allowed_flows(ha) == DESIGN_FLOWS | KEDA_FLOWS | HA_FLOWS


def test_checkov_passes_the_ha_overlay_with_only_the_known_skips(render, tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: {TOOLS_HINT}", pytrace=False)
    rendered = tmp_path / "ha.yaml"
    rendered.write_text(render(HA_OVERLAY))
    (result,) = run_checkov([str(CHECKOV), "--framework", "kubernetes", "--skip-download", "--output", "json",
                             "--file", str(rendered)])
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in result["results"]["failed_checks"]]
    assert failed == []
    assert result["results"]["parsing_errors"] == []
    seen: dict[str, set[str]] = {}
    for check in result["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) >= 30, check["check_id"]
        seen.setdefault(check["check_id"], set()).add(check["resource"])
    manifests = {k: v for k, v in ALLOWED_SKIPS.items() if not k.startswith("CKV_DOCKER")}
    expected = {k: manifests.get(k, set()) | HA_SKIPS.get(k, set()) for k in {*manifests, *HA_SKIPS}}
    assert seen == expected


def test_the_rest_of_the_ha_overlay_is_the_keda_overlay_unchanged(ha: list[Doc], docs_of) -> None:
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    keda = {key(d): d for d in docs_of(KEDA_OVERLAY)}
    mine = {key(d): d for d in ha}
    changed = {k for k in keda.keys() & mine.keys() if keda[k] != mine[k]}
    assert changed == {
        ("StatefulSet", "rabbitmq"), ("StatefulSet", "mongodb"), ("Service", "mongodb"),
        ("Secret", "gateway-mongodb"), ("Secret", "converter-mongodb"), ("Secret", "notification-mongodb"),
        ("Deployment", "gateway"), ("Deployment", "auth"), ("Deployment", "converter"), ("Deployment", "notification"),
        ("ScaledObject", "converter"),
    }
    assert keda.keys() - mine.keys() == set()
    assert mine.keys() - keda.keys() == {
        ("ConfigMap", "rabbitmq-cluster"), ("Secret", "rabbitmq-erlang-cookie"), ("Service", "rabbitmq-nodes"),
        ("PodDisruptionBudget", "rabbitmq"), ("NetworkPolicy", "rabbitmq-cluster"),
        ("Secret", "mongodb-keyfile"), ("ConfigMap", "mongodb-bootstrap"), ("Job", "mongodb-bootstrap"),
        ("PodDisruptionBudget", "mongodb"), ("NetworkPolicy", "mongodb-replicaset"),
        ("NetworkPolicy", "mongodb-bootstrap"),
    }
    # The Deployments change only in replicas and affinity.
    for name in ("gateway", "auth", "converter", "notification"):
        before, after = keda["Deployment", name], mine["Deployment", name]
        strip = lambda d: {**d, "spec": {**d["spec"], "replicas": None, "template": {  # noqa: E731
            **d["spec"]["template"], "spec": {k: v for k, v in pod_spec(d).items() if k != "affinity"}}}}
        assert strip(before) == strip(after), name
