"""Cross-references in the rendered manifests, and between them and the services' code."""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.k8s.support import (
    OVERLAYS, ROOT, SERVICES, Doc, container_env, container_env_names, containers, data_keys, find, load_config,
    workloads,
)

pytestmark = pytest.mark.k8s

# The variable holding each service's listening port (docs/design.md), i.e. what its probes must hit.
PORT_VARIABLE = {"auth": "PORT", "gateway": "PORT", "converter": "METRICS_PORT", "notification": "METRICS_PORT"}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def templates(docs: list[Doc]) -> list[tuple[Doc, dict[str, str]]]:
    return [(w, w["spec"]["template"]["metadata"]["labels"]) for w in workloads(docs)]


def resolve_port(container: Doc, port: int | str) -> int | None:
    """A probe/targetPort (number or name) -> the container port it reaches, None if undeclared."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    return None


def string_literals(package: Path) -> set[str]:
    """Every string literal in the package's code (not comments): where route paths are written."""
    found = set()
    for path in package.rglob("*.py"):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type == tokenize.STRING:
                try:
                    value = ast.literal_eval(token.string)
                except (SyntaxError, ValueError):  # f-strings are not route paths
                    continue
                if isinstance(value, str):
                    found.add(value)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_selects_pods_and_targets_declared_ports(docs_of: Callable[[str], list[Doc]],
                                                              overlay: str) -> None:
    docs = docs_of(overlay)
    services = [d for d in docs if d["kind"] == "Service"]
    assert services
    for service in services:
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        matched = [w for w, labels in templates(docs) if selector.items() <= labels.items()]
        assert matched, f"Service {name} selects no pod template"
        for workload in matched:
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                reached = [resolve_port(c, target) for c in containers(workload)]
                assert any(reached), f"Service {name} targetPort {target} is not a port of {workload['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_referenced_configmap_and_secret_key_exists(docs_of: Callable[[str], list[Doc]], overlay: str) -> None:
    docs = docs_of(overlay)
    refs: list[tuple[str, str, str | None, str]] = []  # (kind, name, key or None, where)
    for workload in workloads(docs):
        where = workload["metadata"]["name"]
        spec = workload["spec"]["template"]["spec"]
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    refs.append(("ConfigMap", source["configMapRef"]["name"], None, where))
                if "secretRef" in source:
                    refs.append(("Secret", source["secretRef"]["name"], None, where))
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    refs.append(("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"], where))
                if "secretKeyRef" in ref:
                    refs.append(("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"], where))
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                keys = [i["key"] for i in volume["configMap"].get("items", [])] or [None]
                refs += [("ConfigMap", volume["configMap"]["name"], k, where) for k in keys]
            if "secret" in volume:
                keys = [i["key"] for i in volume["secret"].get("items", [])] or [None]
                refs += [("Secret", volume["secret"]["secretName"], k, where) for k in keys]
    for auth in (d for d in docs if d["kind"] == "TriggerAuthentication"):
        refs += [("Secret", r["name"], r["key"], auth["metadata"]["name"]) for r in auth["spec"]["secretTargetRef"]]
    assert refs
    existing = {(d["kind"], d["metadata"]["name"]): data_keys(d) for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    for kind, name, key, where in refs:
        assert (kind, name) in existing, f"{where} references missing {kind} {name}"
        assert key is None or key in existing[kind, name], f"{where} references missing key {key} of {kind} {name}"


@pytest.mark.parametrize("service", SERVICES)
def test_manifest_env_matches_what_the_settings_read(docs: list[Doc], service: str) -> None:
    read = set(load_config(service).ENV_VARS)
    (container,) = containers(find(docs, "Deployment", service))
    provided = container_env_names(container, docs)
    assert sorted(read - provided) == [], "read by config.py but not set by the manifests"
    assert sorted(provided - read) == [], "set by the manifests but read by nobody"


# auth's from_env also validates ADMIN_* through modules that need argon2, which this venv lacks;
# its JWT_SECRET length, the one rule a placeholder could break, is checked below.
@pytest.mark.parametrize("service", ["gateway", "converter", "notification"])
def test_the_settings_accept_the_manifest_values(docs: list[Doc], service: str) -> None:
    config = load_config(service)
    (container,) = containers(find(docs, "Deployment", service))
    settings = config.Settings.from_env(container_env(container, docs))
    assert settings.host == "0.0.0.0"


def test_auth_jwt_secret_placeholder_is_long_enough_to_start(docs: list[Doc]) -> None:
    (container,) = containers(find(docs, "Deployment", "auth"))
    assert len(container_env(container, docs)["JWT_SECRET"]) >= load_config("auth").MIN_JWT_SECRET_LENGTH


@pytest.mark.parametrize("service", SERVICES)
def test_probes_hit_the_port_the_service_listens_on_and_its_routes(docs: list[Doc], service: str) -> None:
    workload = find(docs, "Deployment", service)
    (container,) = containers(workload)
    config = find(docs, "ConfigMap", f"{service}-config")["data"]
    listening = int(config[PORT_VARIABLE[service]])
    # The image holds the service's package and the shared core (the consumers' /healthz is mp3core.health).
    routes = string_literals(ROOT / service / service) | string_literals(ROOT / "mp3core" / "mp3core")
    probes = [container[p] for p in PROBES if p in container]
    assert len(probes) >= 2
    for probe in probes:
        action = probe.get("httpGet") or probe.get("tcpSocket")
        assert action, f"{service}: probes must reach the server (httpGet or tcpSocket)"
        assert resolve_port(container, action["port"]) == listening
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] in routes, f"{service} has no route {probe['httpGet']['path']}"


def test_route_check_ignores_paths_only_mentioned_in_comments(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text('# GET /readyz is planned\n@bp.get("/healthz")\ndef f(): pass\n')
    assert "/healthz" in string_literals(tmp_path)
    assert "/readyz" not in string_literals(tmp_path)
