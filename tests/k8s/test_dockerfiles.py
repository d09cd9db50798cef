"""Dockerfiles: hadolint-clean, one pinned base image, non-root, only the core and the package copied, CMD as
specified, ports as deployed, every image built from the repository root through one .dockerignore."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.k8s.support import ROOT, SERVICES, Doc, containers, find, run, tool

pytestmark = pytest.mark.k8s

# The issue's exact commands; `make run` and the lead's tests run this same line.
EXPECTED_CMD = {
    "auth": ["gunicorn", "-c", "python:auth.gunicorn_conf", "auth:create_app()"],
    "gateway": ["gunicorn", "-c", "python:gateway.gunicorn_conf", "gateway:create_app()"],
    "converter": ["python", "-m", "converter"],
    "notification": ["python", "-m", "notification"],
}
PYTHON_IMAGE = re.compile(r"^python:3\.12\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
# The shared base (mp3core/Dockerfile): the tag `make images` gives it, and what every service starts FROM
# unless --build-arg BASE_IMAGE names another.
BASE = "mp3core"
BASE_TAG = "mp3converter/base:dev"
BASE_FROM = "${BASE_IMAGE:-" + BASE_TAG + "}"
IMAGES = (BASE, *SERVICES)
APP_UID = 10001


def dockerfile(image: str) -> Path:
    return ROOT / image / "Dockerfile"


def instructions(image: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = dockerfile(image).read_text()
    logical, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(ins.upper(), args.strip()) for ins, _, args in (line.strip().partition(" ") for line in logical)]


def stages(image: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a FROM and what follows it), in order."""
    result: list[list[tuple[str, str]]] = []
    for ins, args in instructions(image):
        if ins == "FROM":
            result.append([])
        if result:
            result[-1].append((ins, args))
    return result


def copied_sources(image: str) -> set[str]:
    """What COPY/ADD take from the build context (not from another stage)."""
    copies = [args for ins, args in instructions(image) if ins in ("COPY", "ADD") and "--from=" not in args]
    return {arg for args in copies for arg in args.split()[:-1] if not arg.startswith("--")}


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {name.lower(): version for name, _, version in (line.partition("==") for line in lines if line)}


def hadolint(path: Path) -> tuple[int, str]:
    proc = run([str(tool("hadolint")), "--no-color", str(path)])
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_reports_nothing(image: str) -> None:
    code, output = hadolint(dockerfile(image))
    assert output == ""
    assert code == 0


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    # The linter itself: an unpinned base and a non-exec CMD must be reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install ffmpeg\nCMD python -m app\n")
    code, output = hadolint(bad)
    assert code != 0
    assert "DL3007" in output and "DL3025" in output


@pytest.mark.parametrize("service", SERVICES)
def test_cmd_is_the_single_line_exec_form_the_issue_specifies(service: str) -> None:
    # scripts/procs.py reads this line to start the service locally exactly as the container does.
    lines = [line for line in dockerfile(service).read_text().splitlines() if line.startswith("CMD")]
    assert len(lines) == 1
    assert json.loads(lines[0][len("CMD"):]) == EXPECTED_CMD[service]


def test_the_base_image_is_pinned_python_312_slim_with_the_core() -> None:
    (stage,) = stages(BASE)
    assert PYTHON_IMAGE.match(stage[0][1]), stage[0][1]
    env = " ".join(args for ins, args in stage if ins == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert ("WORKDIR", "/app") in stage
    assert copied_sources(BASE) == {"mp3core/requirements.txt", "mp3core/mp3core/"}
    assert any(ins == "COPY" and args.endswith(" /app/mp3core/") for ins, args in stage)
    # The base runs nothing: no command, no port; each service image declares its own.
    assert not {ins for ins, _ in stage} & {"CMD", "ENTRYPOINT", "EXPOSE"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_stage_starts_from_the_shared_base(service: str) -> None:
    # One Python for all images (and for auth's wheel-building stage), pinned once in mp3core/Dockerfile.
    assert [ins for ins, _ in instructions(service)][0] == "ARG"
    assert ("ARG", "BASE_IMAGE") in instructions(service)
    assert [stage[0][1].split()[0] for stage in stages(service)] == [BASE_FROM] * len(stages(service))


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_the_numeric_non_root_user_the_base_creates(service: str, docs: list[Doc]) -> None:
    final = stages(service)[-1]
    assert final[-1] == ("USER", f"{APP_UID}:{APP_UID}"), "USER must be the final stage's last instruction"
    created = " ".join(args for ins, args in instructions(BASE) if ins == "RUN")
    assert f"--uid {APP_UID}" in created and f"--gid {APP_UID}" in created
    # The pod runs as the same user, so files the image owns stay readable.
    pod = find(docs, "Deployment", service)["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == APP_UID


@pytest.mark.parametrize("service", SERVICES)
def test_only_its_requirements_and_its_package_enter_the_image(service: str) -> None:
    assert copied_sources(service) == {f"{service}/requirements.txt", f"{service}/{service}/"}
    # Beside the core in /app, where `python -m <service>` and gunicorn import both from.
    assert any(ins == "COPY" and args == f"{service}/{service}/ /app/{service}/" for ins, args in instructions(service))


def test_the_root_dockerignore_lets_in_only_what_the_images_copy() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    # Deny everything, then allow exactly these: tests/, manifests/, docs, bench, venvs and caches stay out.
    assert lines[0] == "*"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    copied = set().union(*(copied_sources(image) for image in IMAGES))
    assert allowed == copied
    for path in allowed:
        assert (ROOT / path).exists(), f"{path} is let in but does not exist"
    assert {"**/__pycache__", "**/*.py[cod]"} <= set(lines)
    # A per-folder ignore file would be silently unused with the root as context: none may exist.
    for image in IMAGES:
        assert not (ROOT / image / ".dockerignore").exists()
        assert not (ROOT / image / "Dockerfile.dockerignore").exists()


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_pins_agree_with_the_core_pins(service: str) -> None:
    # Both files are installed into one image: a second, different pin would silently replace the core's.
    core = pins(ROOT / BASE / "requirements.txt")
    own = pins(ROOT / service / "requirements.txt")
    assert {name: own[name] for name in own.keys() & core.keys()} == {name: core[name] for name in own.keys() & core.keys()}


@pytest.mark.parametrize("service", SERVICES)
def test_exposed_port_is_the_deployed_container_port(service: str, docs: list[Doc]) -> None:
    exposed = {int(port) for ins, args in instructions(service) if ins == "EXPOSE" for port in args.split()}
    (container,) = containers(find(docs, "Deployment", service))
    assert exposed == {p["containerPort"] for p in container["ports"]}


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_hits_the_deployed_port(service: str, docs: list[Doc]) -> None:
    (check,) = [args for ins, args in instructions(service) if ins == "HEALTHCHECK"]
    (container,) = containers(find(docs, "Deployment", service))
    (port,) = {p["containerPort"] for p in container["ports"]}
    assert f"'{port}'" in check and "/healthz" in check


def test_only_the_converter_image_carries_ffmpeg() -> None:
    for image in IMAGES:
        installs = " ".join(args for ins, args in instructions(image) if ins == "RUN")
        assert ("ffmpeg" in installs) == (image == "converter"), image


def test_make_images_builds_the_base_first_then_each_service_from_the_root() -> None:
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\nimages:", 1)[1].split("\n\n", 1)[0]
    commands = [line.strip() for line in recipe.splitlines()[1:]]
    assert commands[0] == f"minikube image build -t {BASE_TAG} -f {BASE}/Dockerfile ."
    assert "minikube image build -t mp3converter/$$svc:dev -f $$svc/Dockerfile ." in commands[1]
    assert "for svc in $(SERVICES)" in commands[1]
