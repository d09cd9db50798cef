"""Each broker and database client has its own user in the cluster, allowed only its queues and collections.

RabbitMQ: the broker pod's postStart hook runs rabbit/service-users.sh (the script `make infra` runs locally)
with the passwords mounted from rabbitmq-secret. MongoDB: authentication is on (the root user from
mongodb-secret) and the image's entrypoint runs mongodb/service-users.js on first boot. Each service reads
RABBITMQ_URL and MONGO_URI from Secrets of its own.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.k8s.support import ROOT, Doc, container_env, containers, data_values, find

pytestmark = pytest.mark.k8s

CLIENTS = ("gateway", "converter", "notification")
COLLECTIONS = {
    "gateway": {"jobs", "idempotency_keys", "videos.files", "videos.chunks", "mp3s.files", "mp3s.chunks"},
    "converter": {"jobs", "videos.files", "videos.chunks", "mp3s.files", "mp3s.chunks"},
    "notification": {"jobs"},
}


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def env_of(docs: list[Doc], service: str) -> dict[str, str]:
    (container,) = containers(find(docs, "Deployment", service))
    return container_env(container, docs)


def secret_of(docs: list[Doc], service: str, variable: str) -> str:
    (container,) = containers(find(docs, "Deployment", service))
    (item,) = [e for e in container["env"] if e["name"] == variable]
    return item["valueFrom"]["secretKeyRef"]["name"]


@pytest.mark.parametrize("service", CLIENTS)
def test_each_service_reads_its_own_urls_from_its_own_secrets(docs: list[Doc], service: str) -> None:
    assert secret_of(docs, service, "RABBITMQ_URL") == f"{service}-rabbitmq"
    assert secret_of(docs, service, "MONGO_URI") == f"{service}-mongodb"
    env = env_of(docs, service)
    rabbit, mongo = urlsplit(env["RABBITMQ_URL"]), urlsplit(env["MONGO_URI"])
    assert (rabbit.username, rabbit.hostname, rabbit.port) == (f"mp3-{service}", "rabbitmq", 5672)
    # The users live in the application's database, so the URI's path is also where they authenticate.
    assert (mongo.username, mongo.hostname, mongo.path) == (f"mp3-{service}", "mongodb", "/mp3converter")
    assert "authSource" not in mongo.query


def test_no_two_services_share_a_broker_or_database_password(docs: list[Doc]) -> None:
    passwords = [urlsplit(env_of(docs, s)[v]).password for s in CLIENTS for v in ("RABBITMQ_URL", "MONGO_URI")]
    assert len(set(passwords)) == len(passwords)


@pytest.mark.parametrize(("server", "variable"), [("rabbitmq", "RABBITMQ_URL"), ("mongodb", "MONGO_URI")])
def test_the_servers_set_the_passwords_the_services_use(docs: list[Doc], server: str, variable: str) -> None:
    server_secret = data_values(find(docs, "Secret", f"{server}-secret"))
    for service in CLIENTS:
        assert urlsplit(env_of(docs, service)[variable]).password == server_secret[f"{service.upper()}_PASSWORD"]


def mounted_file(workload: Doc, path: str) -> tuple[Doc, str]:
    """The volume mounted at the folder of `path`, and the file's key in it."""
    folder, name = path.rsplit("/", 1)
    (container,) = pod_spec(workload)["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    return volume, name


def test_the_broker_runs_the_shared_script_with_the_passwords_at_every_start(docs: list[Doc]) -> None:
    sts = find(docs, "StatefulSet", "rabbitmq")
    (container,) = pod_spec(sts)["containers"]
    hook = " ".join(container["lifecycle"]["postStart"]["exec"]["command"])
    script = re.search(r"exec bash ([^\s;]+)", hook).group(1)
    volume, key = mounted_file(sts, script)
    configmap = find(docs, "ConfigMap", volume["configMap"]["name"])
    assert configmap["data"][key] == (ROOT / "rabbit" / "service-users.sh").read_text()
    password_dir = re.search(r"PASSWORD_DIR=(\S+)", hook).group(1)
    volume, _ = mounted_file(sts, password_dir + "/GATEWAY_PASSWORD")
    assert volume["secret"]["secretName"] == "rabbitmq-secret"
    assert {i["key"] for i in volume["secret"]["items"]} == {f"{s.upper()}_PASSWORD" for s in CLIENTS}
    assert "env" not in container  # no Secret in the environment (checkov CKV_K8S_35)


def run_service_users(tmp_path: Path, existing: str = "",
                      **passwords: str) -> tuple[subprocess.CompletedProcess[str], list[tuple[list[str], str]]]:
    """Runs rabbit/service-users.sh against a stand-in rabbitmqctl that records each call as (arguments, standard
    input); it lists the users in `existing` and refuses every authenticate_user. The passwords are pw-<service>
    unless given by service name."""
    log, ctl = tmp_path / "calls", tmp_path / "rabbitmqctl"
    ctl.write_text(f'#!/bin/sh\nprintf "%s\\t" "$@" >>{log}\nprintf "%s\\n" "$(base64 -w0)" >>{log}\n'
                   f'case "$2" in list_users) printf "{existing}";; authenticate_user) exit 1;; esac\n')
    ctl.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "RABBITMQCTL": str(ctl),
           **{f"{s.upper()}_PASSWORD": passwords.get(s, f"pw-{s}") for s in CLIENTS}}
    run = subprocess.run(["bash", str(ROOT / "rabbit" / "service-users.sh")], env=env, timeout=30,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)
    calls = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    return run, [(c[:-1], base64.b64decode(c[-1]).decode()) for c in calls]


def service_users_calls(tmp_path: Path, existing: str = "") -> list[tuple[list[str], str]]:
    """The rabbitmqctl calls of a successful run_service_users."""
    run, calls = run_service_users(tmp_path, existing)
    assert run.returncode == 0, run.stderr
    return calls


def permissions(tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    """What rabbit/service-users.sh sets."""
    calls = [args for args, _ in service_users_calls(tmp_path)]
    return {c[4]: (c[5], c[6], c[7]) for c in calls if c[1] == "set_permissions" and c[2:4] == ["-p", "/"]}


@pytest.mark.skipif(sys.platform == "win32", reason="runs the bash script")
@pytest.mark.parametrize("existing", ["", "mp3-gateway\\nmp3-converter\\nmp3-notification\\n"],
                         ids=["new users", "existing users, changed passwords"])
def test_broker_passwords_go_to_rabbitmqctl_on_stdin_never_in_its_arguments(tmp_path: Path, existing: str) -> None:
    # A process's arguments are readable by every local user (ps, /proc/PID/cmdline) while it runs.
    calls = service_users_calls(tmp_path, existing)
    set_by = "change_password" if existing else "add_user"
    assert {(args[1], args[2], stdin) for args, stdin in calls if args[1] == set_by} == {
        (set_by, f"mp3-{s}", f"pw-{s}") for s in CLIENTS}
    assert not [args for args, _ in calls if any("pw-" in a for a in args)]


@pytest.mark.skipif(sys.platform == "win32", reason="runs the bash script")
@pytest.mark.parametrize("password", [" pw", "pw ", "pw\t", "p\nw"])
def test_a_broker_password_rabbitmqctl_would_trim_is_refused_before_any_user_is_touched(tmp_path: Path,
                                                                                        password: str) -> None:
    run, calls = run_service_users(tmp_path, converter=password)
    assert run.returncode != 0 and "CONVERTER_PASSWORD starts or ends with whitespace" in run.stderr
    assert password.strip() not in run.stderr.replace("CONVERTER_PASSWORD", "")
    assert [args[1] for args, _ in calls] == ["list_users"]  # nothing created or changed


@pytest.mark.skipif(sys.platform == "win32", reason="runs the bash script")
def test_each_broker_user_may_configure_write_and_read_only_its_queues(tmp_path: Path) -> None:
    perms = permissions(tmp_path)
    assert set(perms) == {f"mp3-{s}" for s in CLIENTS}

    def allowed(user: str, which: int, name: str) -> bool:
        return re.search(perms[user][which], name) is not None

    configure, write, read = 0, 1, 2
    # Queues and exchanges share the permission regexes: exchange <q> is queue <q>'s own (mp3core/contract.py).
    names = ["video", "video.dlx", "video.dead", "video.upgrade", "video.upgrade-lock", "video.dlq",
             "mp3", "mp3.dlx", "mp3.dead", "mp3.upgrade", "mp3.upgrade-lock", "mp3.dlq",
             "other", "videox", "xvideo", "mp3.dead.x", "amq.default", "amq.direct", "amq.topic"]
    upgrade = {"{q}.upgrade", "{q}.upgrade-lock"}
    expected = {
        # (configure, write, read), per role: a publisher declares queue and exchange (and migrates a classic
        # queue through {q}.upgrade), a consumer the queue and its dead letters; see rabbit/service-users.sh.
        "mp3-gateway": ({"video"} | {n.format(q="video") for n in upgrade}, {"video", "video.dlx", "video.upgrade"},
                        {"video", "video.upgrade"}),
        "mp3-converter": ({"video", "video.dlx", "video.dead", "mp3"} | {n.format(q="mp3") for n in upgrade},
                          {"video.dlx", "video.dead", "mp3", "mp3.dlx", "mp3.upgrade"},
                          {"video", "video.dlx", "mp3", "mp3.upgrade"}),
        "mp3-notification": ({"mp3", "mp3.dlx", "mp3.dead"} | {n.format(q="mp3") for n in upgrade},
                             {"mp3", "mp3.dlx", "mp3.dead", "mp3.upgrade"}, {"mp3", "mp3.dlx", "mp3.upgrade"}),
    }
    for user, (configurable, writable, readable) in expected.items():
        assert {n for n in names if allowed(user, configure, n)} == configurable, user
        assert {n for n in names if allowed(user, write, n)} == writable, user
        assert {n for n in names if allowed(user, read, n)} == readable, user
    # Nobody writes to the default exchange (it reaches every queue by name) or reads dead letters; only the
    # gateway writes to `video`, only the converter and notification to `mp3`.
    for user in expected:
        assert not allowed(user, write, "amq.default") and not allowed(user, read, "video.dead")
        assert not allowed(user, read, "mp3.dead")
    assert [u for u in expected if allowed(u, write, "video")] == ["mp3-gateway"]


def test_mongodb_requires_authentication_with_the_root_user_from_the_secret(docs: list[Doc]) -> None:
    sts = find(docs, "StatefulSet", "mongodb")
    (container,) = pod_spec(sts)["containers"]
    env = {e["name"]: e for e in container["env"]}
    # The image's entrypoint starts mongod with --auth once a root user is configured.
    for variable in ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"):
        volume, key = mounted_file(sts, env[f"{variable}_FILE"]["value"])
        assert volume["secret"]["secretName"] == "mongodb-secret"
        assert key == variable
    assert not [e for e in container["env"] if "valueFrom" in e]  # no Secret in the environment (CKV_K8S_35)
    assert container["args"][0] == "mongod" and "--noauth" not in container["args"]


def test_mongodb_creates_each_service_s_user_on_first_boot_from_the_shared_script(docs: list[Doc]) -> None:
    sts = find(docs, "StatefulSet", "mongodb")
    volume, _ = mounted_file(sts, "/docker-entrypoint-initdb.d/x")
    data = find(docs, "ConfigMap", volume["configMap"]["name"])["data"]
    script = (ROOT / "mongodb" / "service-users.js").read_text()
    assert list(data.values()) == [script]
    assert all(name.endswith(".js") for name in data)
    # The script reads the passwords from the folder where mongodb-secret is mounted.
    folder = re.search(r'const secrets = "([^"]+)"', script).group(1)
    volume, _ = mounted_file(sts, folder + "/GATEWAY_PASSWORD")
    assert volume["secret"]["secretName"] == "mongodb-secret"


def test_each_database_user_is_allowed_only_its_service_s_collections() -> None:
    script = (ROOT / "mongodb" / "service-users.js").read_text()
    block = re.search(r"const services = \{(.*?)\n\};", script, re.S).group(1)
    granted = {}
    for service, listed in re.findall(r"(\w+): \[(.*?)\],", block):
        names = set(re.findall(r'"([^"]+)"', listed.split("...")[0]))
        for buckets in re.findall(r"buckets\(([^)]*)\)", listed):
            names |= {f"{b}.{part}" for b in re.findall(r'"([^"]+)"', buckets) for part in ("files", "chunks")}
        granted[service] = names
    assert granted == COLLECTIONS
    # Documents and indexes only: no dropping collections or databases, no user or role administration.
    actions = set(re.findall(r'"(\w+)"', re.search(r"const actions = \[(.*?)\];", script).group(1)))
    assert actions <= {"find", "insert", "update", "remove", "createIndex", "listIndexes", "createCollection"}
