"""Every service pod of the minikube overlay run as its spec says: probes, identity, read-only root, the curl flow."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import make_clip, probe_duration
from tests.podrun.conftest import SERVICES, Pods, podrun
from tests.support import body_text

pytestmark = pytest.mark.pods


@pytest.mark.parametrize("service", SERVICES)
def test_every_probe_succeeds(pods: Pods, service: str) -> None:
    pod = pods[service]
    assert {"readiness", "liveness"} <= set(pod.spec.probes), f"{service} lacks a readiness or liveness probe"
    for kind in pod.spec.probes:
        detail = pod.wait_probe(kind, timeout=60)
        assert detail.startswith("HTTP 2") or detail.startswith("exit 0"), (kind, detail)


@pytest.mark.parametrize("service", SERVICES)
def test_exec_probes_run_inside_the_pod(pods: Pods, service: str) -> None:
    """The image's HEALTHCHECK as an exec probe (the overlay has none of its own): it runs in the pod, as its user,
    with its env (the port comes from PORT/METRICS_PORT), and reaches the service on the pod's own loopback."""
    pod = pods[service]
    image = pods.manifests.get("Deployment", service)["spec"]["template"]["spec"]["containers"][0]["image"]
    healthcheck = podrun.image_config(podrun.dockerfile_for(image)).healthcheck
    assert healthcheck, f"{service}'s image has no HEALTHCHECK"
    assert pod.run_probe({"exec": {"command": healthcheck}, "timeoutSeconds": 10}) == (True, "exit 0: ")
    whoami = pod.run_probe({"exec": {"command": ["sh", "-c", "test \"$(id -u):$(id -g)\" = 10001:10001 && test -n \"$HOSTNAME\""]}})
    assert whoami[0], whoami
    failing = pod.run_probe({"exec": {"command": ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:1/')"]},
                             "timeoutSeconds": 10})
    assert failing[0] is False and "Connection refused" in failing[1]


@pytest.mark.parametrize("service", SERVICES)
def test_pod_runs_as_its_spec_says(pods: Pods, service: str) -> None:
    """The container's process: user, group, no capabilities, no new privileges, the image's working directory,
    the core and its package from the image's folders, the env resolved from the ConfigMaps and Secrets."""
    pod = pods[service]
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pod.proc.pid}/status").read_text().splitlines() if ":\t" in line)
    assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4
    assert status["Groups"].strip() == ""
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pod.proc.pid}/environ").read_text().split("\0") if "=" in item)
    script = ("import json, os, sys, mp3core, importlib; m = importlib.import_module(sys.argv[1]); "
              "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'cwd': os.getcwd(), "
              "'core': mp3core.__file__, 'pkg': m.__file__}))")
    inside = pod.exec(["python", "-c", script, service])
    assert inside.returncode == 0, inside.stderr
    assert json.loads(inside.stdout) == {"uid": 10001, "gid": 10001, "cwd": "/app", "core": "/app/mp3core/__init__.py",
                                         "pkg": f"/app/{service}/__init__.py"}
    # Every variable the manifests give, with the value the rendered ConfigMaps and Secrets hold.
    container = next(c for c in pods.manifests.get("Deployment", service)["spec"]["template"]["spec"]["containers"])
    expected: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        expected.update(pods.manifests.data(kind, ref["name"]))
    for var in container.get("env", []):
        ref = var["valueFrom"]["secretKeyRef"] if "valueFrom" in var else None
        expected[var["name"]] = pods.manifests.data("Secret", ref["name"])[ref["key"]] if ref else var["value"]
    assert {k: environ.get(k) for k in expected} == expected


# New files in each kind of place (the skeleton, the image's folders, the system's), and the pod's own /etc/hosts:
# never an existing file of this machine, which a broken mount would let root change.
ROOT_PROBES = ("/podrun-probe", "/app/podrun-probe", "/etc/podrun-probe", "/usr/local/podrun-probe", "/etc/hosts",
               "/dev/podrun-probe")


def read_only_violations(pod: podrun.Pod) -> list[tuple[str, str]]:
    """Places of the root filesystem where a write inside the pod did not fail as read-only. Written as root in
    the pod's mount namespace, so that only the filesystem, not the user's permissions, can refuse it."""
    found = []
    for path in ROOT_PROBES + (f"/app/{pod.spec.name}/podrun-probe",):
        result = pod.exec(["sh", "-c", f"echo x >> {path}"], as_root=True)
        if result.returncode == 0 or "Read-only file system" not in result.stderr:
            found.append((path, result.stderr.strip()))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_root_filesystem_is_read_only(pods: Pods, service: str) -> None:
    pod = pods[service]
    assert read_only_violations(pod) == []
    # The emptyDirs are writable: /tmp, sized as the manifest's sizeLimit.
    for path, size in pod.spec.tmpfs:
        result = pod.exec(["sh", "-c", f"echo x > {path}/probe && cat {path}/probe && df -B1 --output=size {path} | tail -1"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["x", str(size)]


@pytest.mark.parametrize("service", SERVICES)
def test_cluster_names_resolve_inside_the_pod(pods: Pods, service: str) -> None:
    """Each Service name (short and qualified) has its own address in the pod, and what the pod's env names
    answers there: the broker, the databases, auth, mailpit."""
    pod = pods[service]
    names = ["rabbitmq", "mongodb", "mysql", "auth", "mailpit", "rabbitmq.mp3converter.svc.cluster.local"]
    result = pod.exec(["python", "-c", "import json, socket, sys; print(json.dumps({n: socket.gethostbyname(n) for n in sys.argv[1:]}))", *names])
    assert result.returncode == 0, result.stderr
    addresses = podrun.service_addresses(pods.manifests)
    assert json.loads(result.stdout) == {name: addresses[name.split(".")[0]] for name in names}
    # Each leads to its server: MariaDB (protocol 10) and SMTP greet first; the broker answers the AMQP header.
    talk = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); s.settimeout(5); "
            "s.sendall(bytes.fromhex(sys.argv[3])); print(s.recv(64).hex())")
    for name, port, send, check in (("mysql", 3306, "", lambda h: h[8:10] == "0a"),
                                    ("mailpit", 1025, "", lambda h: h.startswith(b"220 ".hex())),
                                    ("rabbitmq", 5672, b"AMQP\x00\x00\x09\x01".hex(), lambda h: h.startswith("010000"))):
        result = pod.exec(["python", "-c", talk, name, str(port), send])
        assert result.returncode == 0 and check(result.stdout.strip()), (name, result.stdout, result.stderr)


def test_curl_flow_end_to_end(pods: Pods, tmp_path: Path) -> None:
    """The README's flow through the gateway pod: log in, create a user, upload, job done, email, download."""
    url = pods["gateway"].url("http")
    secret = pods.manifests.data("Secret", "auth-secret")
    admin = requests.post(f"{url}/login", auth=(secret["ADMIN_EMAIL"], secret["ADMIN_PASSWORD"]), timeout=30)
    assert admin.status_code == 200, admin.text
    email, password = f"podrun-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    created = requests.post(f"{url}/users", json={"email": email, "password": password, "admin": False},
                            headers={"Authorization": f"Bearer {admin.text}"}, timeout=30)
    assert created.status_code == 201, created.text
    login = requests.post(f"{url}/login", auth=(email, password), timeout=30)
    assert login.status_code == 200, login.text
    bearer = {"Authorization": f"Bearer {login.text}"}

    clip = make_clip(tmp_path / "clip.mp4", seconds=2)
    with clip.open("rb") as handle:
        upload = requests.post(f"{url}/upload", headers=bearer, files={"file": ("clip.mp4", handle, "video/mp4")}, timeout=120)
    assert upload.status_code == 202, upload.text
    job_id = upload.json()["job_id"]

    mail = pods.mail.wait_for(lambda m: job_id in body_text(m) or m["To"] == email, timeout=120)
    job = requests.get(f"{url}/jobs/{job_id}", headers=bearer, timeout=30).json()
    assert job["status"] == "done", job
    assert mail["To"] == email and job["mp3_fid"] in body_text(mail)
    notification = pods.manifests.data("Secret", "notification-secret")
    assert (notification["SMTP_USER"], notification["SMTP_PASSWORD"]) in pods.mail.logins

    download = requests.get(f"{url}/download", params={"fid": job["mp3_fid"]}, headers=bearer, timeout=60)
    assert download.status_code == 200 and download.headers["Content-Type"] == "audio/mpeg"
    (tmp_path / "clip.mp3").write_bytes(download.content)
    fmt, duration = probe_duration(tmp_path / "clip.mp3")
    assert fmt == "mp3" and duration == pytest.approx(2, abs=0.5)


def test_converter_liveness_fails_without_its_broker(pods: Pods) -> None:
    """A second converter pod loses the broker (its connections cut, new ones refused; the broker itself runs
    on): its liveness probe fails, as the kubelet would see it, and passes again once the broker is back."""
    pod = pods.start("converter", name="converter-cut")
    try:
        pod.wait_probe("liveness", timeout=60)
        pods.cluster.network.partition(pod.id, "rabbitmq")
        pod.wait_probe("liveness", timeout=120, want=False)
        assert pod.probe("readiness")[0] is False
        pods.cluster.network.heal(pod.id, "rabbitmq")
        pod.wait_probe("liveness", timeout=120)
    finally:
        pods.stop("converter-cut")


def test_gateway_readiness_fails_without_mongodb(pods: Pods) -> None:
    """The gateway's readiness (MongoDB reachable) fails while its database is gone; its liveness does not."""
    pod = pods.start("gateway", name="gateway-cut")
    try:
        pod.wait_probe("readiness", timeout=60)
        pods.cluster.network.partition(pod.id, "mongodb")
        pod.wait_probe("readiness", timeout=60, want=False)
        assert pod.probe("liveness")[0] is True
    finally:
        pods.stop("gateway-cut")


# What the manifests say decides what runs: the same checks on a changed pod spec see the change.

def test_a_writable_root_is_noticed(pods: Pods) -> None:
    def writable(spec: podrun.PodSpec) -> None:
        spec.read_only_root = False

    pod = pods.start("notification", name="notification-rw", edit=writable)
    try:
        # The image's files get a throwaway writable layer; /etc/hosts and /dev stay read-only (as files podrun
        # binds in, like the kubelet's, and the runtime's /dev).
        assert {path for path, _ in read_only_violations(pod)} == {
            "/podrun-probe", "/app/podrun-probe", "/app/notification/podrun-probe", "/etc/podrun-probe", "/usr/local/podrun-probe"}
        assert not (podrun.ROOT / "notification" / "notification" / "podrun-probe").exists()
        assert not Path("/etc/podrun-probe").exists() and not Path("/usr/local/podrun-probe").exists()
    finally:
        pods.stop("notification-rw")


def test_a_wrong_probe_path_is_noticed(pods: Pods) -> None:
    def wrong_path(spec: podrun.PodSpec) -> None:
        spec.probes["readiness"] = {**spec.probes["readiness"], "httpGet": {**spec.probes["readiness"]["httpGet"], "path": "/ready"}}

    pod = pods.start("auth", name="auth-badprobe", edit=wrong_path)
    try:
        ok, detail = pod.probe("readiness")
        assert not ok and detail == "HTTP 404"
    finally:
        pods.stop("auth-badprobe")


def test_a_missing_env_var_is_noticed(pods: Pods) -> None:
    def without_password(spec: podrun.PodSpec) -> None:
        del spec.env["MYSQL_PASSWORD"]

    pod = pods.start("auth", name="auth-noenv", edit=without_password, wait=None)
    try:
        with pytest.raises(RuntimeError, match="MYSQL_PASSWORD"):
            pod.wait_probe("startup", timeout=60)
    finally:
        pods.stop("auth-noenv")
