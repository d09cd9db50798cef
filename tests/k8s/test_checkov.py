"""checkov on the rendered manifests and the Dockerfiles: no failed check, and every skip justified where it is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.support import CHECKOV, ROOT, Doc, run_checkov

pytestmark = pytest.mark.k8s

# Every skip in the repository, with where it is allowed. A new skip must be added here on purpose;
# its reason lives next to the object (a checkov.io/skipN annotation), and this test requires one.
ALLOWED_SKIPS = {
    # Our four images are built inside minikube: no registry to pull from, no digest to pin.
    "CKV_K8S_15": {"Deployment.mp3converter.auth", "Deployment.mp3converter.gateway",
                   "Deployment.mp3converter.converter", "Deployment.mp3converter.notification"},
    "CKV_K8S_43": {"Deployment.mp3converter.auth", "Deployment.mp3converter.gateway",
                   "Deployment.mp3converter.converter", "Deployment.mp3converter.notification",
                   "Deployment.mp3converter.mailpit", "StatefulSet.mp3converter.rabbitmq",
                   "StatefulSet.mp3converter.mongodb", "StatefulSet.mp3converter.mysql"},
    # docs/design.md: services are configured by environment variables only.
    "CKV_K8S_35": {"Deployment.mp3converter.auth", "Deployment.mp3converter.gateway",
                   "Deployment.mp3converter.converter", "Deployment.mp3converter.notification"},
    # Official database/broker images run as their own UID 999.
    "CKV_K8S_40": {"StatefulSet.mp3converter.rabbitmq", "StatefulSet.mp3converter.mongodb",
                   "StatefulSet.mp3converter.mysql"},
    # The shared base image runs nothing itself: each service image built FROM it declares its own
    # HEALTHCHECK and ends with USER 10001 (tests/k8s/test_dockerfiles.py checks both).
    "CKV_DOCKER_2": {"mp3core/Dockerfile."},
    "CKV_DOCKER_3": {"mp3core/Dockerfile."},
}
MIN_REASON_LENGTH = 30


def by_type(report: list[Doc]) -> dict[str, Doc]:
    return {r["check_type"]: r for r in report}


@pytest.mark.parametrize("check_type", ["kubernetes", "dockerfile"])
def test_no_failed_checks(checkov_report: list[Doc], check_type: str) -> None:
    result = by_type(checkov_report)[check_type]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in result["results"]["failed_checks"]]
    assert failed == []
    assert result["results"]["parsing_errors"] == []
    assert result["summary"]["passed"] > 0
    # The Dockerfiles are five resources (the base and four services); the manifests dozens.
    assert result["summary"]["resource_count"] >= (5 if check_type == "dockerfile" else 30)


def test_every_skip_is_expected_and_has_a_reason(checkov_report: list[Doc]) -> None:
    skipped = [c for r in checkov_report for c in r["results"]["skipped_checks"]]
    seen: dict[str, set[str]] = {}
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) >= MIN_REASON_LENGTH, f"{check['check_id']} on {check['resource']}: reason {reason!r}"
        # Dockerfiles are named by the path given to checkov (absolute); compare them from the repository root.
        resource = check["resource"].removeprefix(f"{ROOT}/")
        seen.setdefault(check["check_id"], set()).add(resource)
    assert seen == ALLOWED_SKIPS


def test_checkov_does_fail_an_insecure_pod(tmp_path: Path) -> None:
    # checkov itself: a root, privileged pod without probes or limits must fail, or "0 failed" means nothing.
    bad = tmp_path / "pod.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  namespace: x\nspec:\n  containers:\n"
                   "    - name: c\n      image: busybox:latest\n      securityContext:\n        privileged: true\n")
    (result,) = run_checkov([str(CHECKOV), "--framework", "kubernetes", "--skip-download", "--output", "json",
                             "--file", str(bad)])
    failed = {c["check_id"] for c in result["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_8", "CKV_K8S_14"} <= failed
