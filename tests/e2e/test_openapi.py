"""Schemathesis against the running gateway: no 5xx, and every answer is one its OpenAPI document allows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import bearer

pytestmark = pytest.mark.e2e

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)
# Bounded so the whole run stays well under three minutes; the fixed seed makes a failure reproducible
# (set SCHEMATHESIS_SEED to explore other inputs).
MAX_EXAMPLES = 25
SEED = os.environ.get("SCHEMATHESIS_SEED", "20250101")
RUN_TIMEOUT_S = 240


def operation_config(operation_id: str, **path_or_query: str) -> str:
    """A schemathesis.toml block that pins parameters of one operation to real values."""
    values = ", ".join(f"{json.dumps(name)} = {json.dumps(value)}" for name, value in path_or_query.items())
    return f'[[operations]]\ninclude-operation-id = "{operation_id}"\nparameters = {{ {values} }}\n'


def test_gateway_conforms_to_its_openapi_document(stack, clip, tmp_path: Path) -> None:
    admin_token = stack.login(*stack.admin)
    _, _, token = stack.create_user(admin_token)
    document = requests.get(f"{stack.url}/openapi.json", timeout=30)
    assert document.status_code == 200
    operations = sum(
        1 for item in document.json()["paths"].values() for method in item if method in ("get", "post", "delete")
    )

    # Real jobs, so that job views written by the converter (progress, options, expiry) are checked
    # against the schema too, not only the 404s random ids get. One is kept, one is there to delete.
    kept, doomed = (stack.upload(token, clip, bitrate="128", channels="1").json()["job_id"] for _ in range(2))
    job = stack.wait_job(token, kept)
    stack.wait_job(token, doomed)
    config = operation_config("getJob", **{"path.job_id": kept}) + operation_config(
        "deleteJob", **{"path.job_id": doomed}
    )
    if job["status"] == "done":
        config += operation_config("download", **{"query.fid": job["mp3_fid"]})
    (tmp_path / "schemathesis.toml").write_text(config)

    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file", str(tmp_path / "schemathesis.toml"),
        "run",
        f"{stack.url}/openapi.json",
        "--url", stack.url,
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", SEED,
        "--phases", "examples,coverage,fuzzing",
        "--header", f"Authorization: {bearer(token)['Authorization']}",
        # Our token on every request; generated Authorization values would only test the auth service.
        "--generation-with-security-parameters", "false",
        "--generation-database", "none",
        "--request-timeout", "30",
        "--no-color",
    ]
    # tmp_path as working directory: nothing (reports, example databases) lands in the repository.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)

    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis found problems (exit {result.returncode}):\n{output[-20000:]}"
    # A run that tested nothing (schema not loaded, every operation filtered out) must not pass.
    # Schemathesis leaves out the operation that serves the document it was loaded from.
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert counts, output[-5000:]
    selected, total, tested = map(int, counts.groups())
    assert selected == total == tested >= operations - 1, output[-5000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and int(generated.group(1)) >= operations * 5, output[-5000:]
    # The pinned ids were really used: the job to delete is gone, the kept one still answers.
    assert stack.job(token, doomed).status_code == 404
    assert stack.job(token, kept).status_code == 200
