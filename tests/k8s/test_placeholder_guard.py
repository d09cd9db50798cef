"""The broker and the databases refuse the repository's dev-only placeholders as the services do: an init container
runs k8s/placeholder-guard/placeholder-guard.sh over every Secret the pod mounts and stops the pod unless ConfigMap
infra-config says DEV_MODE "true" (only the minikube overlay does). The script itself is run by
tests/test_placeholder_guard_script.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.k8s.support import (
    DEFAULT_OVERLAY, OVERLAYS, ROOT, SERVICES, Doc, container_env, data_values, find, kustomize_command, run,
)

pytestmark = pytest.mark.k8s

SCRIPT = ROOT / "k8s" / "placeholder-guard" / "placeholder-guard.sh"
GUARD = "placeholder-guard"
GUARD_ROOT = "/run/placeholder-guard"
MARKER = "dev-only"
# A client of the guarded members, not a server: with placeholders and DEV_MODE off it finds no member to talk to.
# It keeps no guard because a Job's pod template cannot change once created, and the guard's ConfigMap name
# carries the script's hash (mongodb/replicaset/kustomization.yaml gives the Job's own script a fixed name).
UNGUARDED = {("Job", "mongodb-bootstrap")}


def pod_templates(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def secret_volumes(workload: Doc, docs: list[Doc]) -> dict[str, Doc]:
    """The pod's Secret volumes whose keys (all, or the items it projects) hold a dev-only value."""
    found = {}
    for volume in pod_spec(workload).get("volumes", []):
        if "secret" not in volume:
            continue
        values = data_values(find(docs, "Secret", volume["secret"]["secretName"]))
        keys = [i["key"] for i in volume["secret"].get("items", [])] or list(values)
        if any(MARKER in values[key] for key in keys):
            found[volume["name"]] = volume
    return found


def env_secrets(workload: Doc) -> set[str]:
    """The Secrets a pod's containers read through their environment."""
    names = set()
    spec = pod_spec(workload)
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
                  if "secretKeyRef" in e.get("valueFrom", {})}
    return names


def guarded(docs: list[Doc]) -> list[Doc]:
    return [w for w in pod_templates(docs) if secret_volumes(w, docs)
            and (w["kind"], w["metadata"]["name"]) not in UNGUARDED]


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    import yaml  # only in the k8s tools venv (conftest skips these tests elsewhere)

    proc = run([*kustomize_command(), str(ROOT / "k8s" / "base")])
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


# --- the manifests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_that_mounts_a_placeholder_secret_runs_the_guard_first(docs_of: Callable[[str], list[Doc]],
                                                                          overlay: str) -> None:
    docs = docs_of(overlay)
    pods = guarded(docs)
    assert {w["metadata"]["name"] for w in pods} == {"rabbitmq", "mongodb", "mysql"}
    for workload in pods:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        # First, before any init container copies a secret anywhere (the HA overlay's cookie and keyfile).
        guard = spec["initContainers"][0]
        assert guard["name"] == GUARD, name
        (server,) = spec["containers"]
        assert guard["image"] == server["image"], f"{name}: the guard must not pull an image of its own"
        assert guard["command"] == ["sh", f"/etc/{GUARD}/{GUARD}.sh", GUARD_ROOT], name
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in guard["volumeMounts"]}
        script = volumes[mounts[f"/etc/{GUARD}"]["name"]]["configMap"]["name"]
        assert data_values(find(docs, "ConfigMap", script)) == {f"{GUARD}.sh": SCRIPT.read_text()}
        # Every Secret the pod mounts, all its keys (not only those the server reads), in a folder named after it.
        secrets = {v["secret"]["secretName"] for v in secret_volumes(workload, docs).values()}
        checked = {path.removeprefix(f"{GUARD_ROOT}/"): volumes[m["name"]] for path, m in mounts.items()
                   if path.startswith(f"{GUARD_ROOT}/")}
        assert set(checked) == secrets, name
        for secret, volume in checked.items():
            assert volume["secret"]["secretName"] == secret and "items" not in volume["secret"], f"{name}: {secret}"
            assert mounts[f"{GUARD_ROOT}/{secret}"]["readOnly"] is True
        assert container_env(guard, docs) == {"DEV_MODE": "true"}, name
        (ref,) = guard["env"]
        assert ref["valueFrom"]["configMapKeyRef"] == {"name": "infra-config", "key": "DEV_MODE"}
        assert guard["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert "ports" not in guard  # it talks to nobody: the NetworkPolicies need no flow for it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_guard_is_hardened_like_the_server(docs_of: Callable[[str], list[Doc]], overlay: str) -> None:
    for workload in guarded(docs_of(overlay)):
        spec = pod_spec(workload)
        guard, (server,) = spec["initContainers"][0], spec["containers"]
        assert guard["securityContext"] == server["securityContext"]
        assert guard["securityContext"]["readOnlyRootFilesystem"] is True
        assert guard["securityContext"]["runAsNonRoot"] is True
        assert guard["securityContext"]["allowPrivilegeEscalation"] is False
        assert guard["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        resources = guard["resources"]
        assert resources["limits"]["cpu"] == "100m" and resources["limits"]["memory"] == "64Mi"
        assert {"cpu", "memory"} <= set(resources["requests"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_other_placeholder_readers_are_the_services_which_check_themselves(docs_of: Callable[[str], list[Doc]],
                                                                               overlay: str) -> None:
    # The services read their Secrets as variables and refuse a placeholder themselves (mp3core/settings.py);
    # the only pod that mounts a placeholder Secret without the guard is the one named in UNGUARDED.
    docs = docs_of(overlay)
    placeholders = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"
                    and any(MARKER in v for v in data_values(d).values())}
    readers = {w["metadata"]["name"] for w in pod_templates(docs) if env_secrets(w) & placeholders}
    assert readers == set(SERVICES)
    unguarded = {(w["kind"], w["metadata"]["name"]) for w in pod_templates(docs) if secret_volumes(w, docs)} \
        - {(w["kind"], w["metadata"]["name"]) for w in guarded(docs)}
    assert unguarded <= UNGUARDED


def test_base_leaves_the_infrastructure_dev_mode_off_and_minikube_turns_it_on(base: list[Doc],
                                                                              docs_of: Callable[[str], list[Doc]]) -> None:
    assert data_values(find(base, "ConfigMap", "infra-config")) == {"DEV_MODE": "false"}
    for overlay in OVERLAYS:  # minikube and the overlays built on it
        assert data_values(find(docs_of(overlay), "ConfigMap", "infra-config")) == {"DEV_MODE": "true"}, overlay
    # The base's servers carry the guard too: an overlay of real Secrets on the base is guarded.
    assert {w["metadata"]["name"] for w in guarded(base)} == {"rabbitmq", "mongodb", "mysql"}
    assert {w["metadata"]["name"] for w in guarded(docs_of(DEFAULT_OVERLAY))} == {"rabbitmq", "mongodb", "mysql"}
