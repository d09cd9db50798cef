#!/usr/bin/env python3
"""Runs the services' pods on this machine the way the rendered manifests say, without a container runtime.

For one Deployment of the rendered overlay this starts its container as the kubelet would: the container's
command/args over the image's ENTRYPOINT/CMD (parsed from the service's Dockerfile and the base it is built
FROM), the image's WORKDIR and ENV, the env from the rendered ConfigMaps and Secrets (`env`, `valueFrom`,
`envFrom`), the pod's user and group via `setpriv` (no capabilities, no new privileges), and a root filesystem
that is read-only except for the pod's emptyDir mounts (a private mount namespace, read-only bind mounts,
tmpfs for each emptyDir, `chroot`). Each pod gets a network namespace of its own (loopback only): every
Service of the overlay gets an address of its own there (127.0.1.N, like a ClusterIP) under its cluster names
in the pod's /etc/hosts, and a forwarder carries each connection out through a Unix socket to whatever this
machine's `Network` says backs that Service (a local server, an SMTP sink, another pod). The pod's
containerPorts are published on 127.0.0.1 at ports the kernel picks, which is where the probes go, as the
kubelet's do. docs/podrun.md explains the mapping and what is and is not faithful.

Needs root (namespaces, mounts, setpriv) and the dev venv's Python (`make venv`):

    .venv/bin/python scripts/podrun.py run auth gateway converter notification   # Ctrl-C stops
    .venv/bin/python scripts/podrun.py show gateway     # the resolved command, env, user, mounts

`run` also starts the servers the pods need (scripts/podrun.py: Backends) and prints where everything is.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("STATE_DIR", ROOT / ".state"))
DEFAULT_OVERLAY = ROOT / "k8s" / "overlays" / "minikube"
# The dev venv stands in for the image's Python (/usr/local/bin/python and its site-packages): it is bound
# read-only at its own path inside the pod (its scripts' shebangs name that path) and put first on PATH.
VENV = Path(os.environ.get("PODRUN_VENV", ROOT / ".venv"))
# The python:*-slim images' own ENV, which the base Dockerfile builds on (only what affects running them).
PYTHON_IMAGE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# What of this machine's root a pod sees (read-only): the operating system, as the image's Debian layer would
# provide it. Nothing else (no /work, /root, /home, /var, /run): the image does not have it either.
SYSTEM_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib64", "lib32", "libx32")
FIRST_SERVICE_IP = (127, 0, 1, 1)

Doc = dict[str, Any]


# --- manifests -----------------------------------------------------------------------------------------

def render(overlay: Path = DEFAULT_OVERLAY) -> list[Doc]:
    """The overlay rendered by kubectl kustomize (or kustomize build), as a list of objects."""
    import yaml

    candidates = [(shutil.which("kubectl"), "kustomize"), (str(ROOT / ".venv-k8s" / "bin" / "kubectl"), "kustomize"),
                  (shutil.which("kustomize"), "build"), (str(ROOT / ".venv-k8s" / "bin" / "kustomize"), "build")]
    for tool, verb in candidates:
        if tool and Path(tool).exists():
            out = subprocess.run([tool, verb, str(overlay)], capture_output=True, text=True, timeout=120, check=True).stdout
            return [doc for doc in yaml.safe_load_all(out) if doc]
    raise FileNotFoundError("neither kubectl nor kustomize found: run scripts/k8s-tools.sh")


class Manifests:
    """Lookups in a rendered overlay."""

    def __init__(self, docs: list[Doc]):
        self.docs = docs

    def get(self, kind: str, name: str) -> Doc:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        if len(found) != 1:
            raise KeyError(f"{kind}/{name}: {len(found)} objects in the rendered overlay")
        return found[0]

    def deployments(self) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == "Deployment"]

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's data, or a Secret's data (base64-decoded) merged with its stringData (which wins, as
        the API server does when it stores the object)."""
        obj = self.get(kind, name)
        values = dict(obj.get("data") or {})
        if kind == "Secret":
            values = {key: base64.b64decode(value).decode() for key, value in values.items()}
            values.update(obj.get("stringData") or {})
        return {key: str(value) for key, value in values.items()}

    def services(self) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == "Service"]

    def namespace(self) -> str:
        return next(d["metadata"].get("namespace", "default") for d in self.deployments())


# --- images --------------------------------------------------------------------------------------------

@dataclass
class Image:
    """What a container runtime takes from the image: ENV, WORKDIR, ENTRYPOINT, CMD, USER, and the folders of
    this repository its COPY lines put into it (bound read-only at the same place in the pod)."""

    env: dict[str, str]
    workdir: str = "/"
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    copies: list[tuple[Path, str]] = field(default_factory=list)
    healthcheck: list[str] | None = None  # HEALTHCHECK CMD (exec form); Kubernetes ignores it, probes replace it


def dockerfile_for(image: str) -> Path | None:
    """The Dockerfile in this repository that builds `image` (mp3converter/<service>:tag, mp3converter/base:tag)."""
    match = re.fullmatch(r"mp3converter/([a-z0-9-]+)(:[\w.-]+)?", image)
    if not match:
        return None
    folder = "mp3core" if match.group(1) == "base" else match.group(1)
    path = ROOT / folder / "Dockerfile"
    return path if path.exists() else None


def _instructions(dockerfile: Path) -> Iterator[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            yield word.upper(), rest.strip()


def _exec_form(value: str) -> list[str]:
    parsed = json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]
    if not (isinstance(parsed, list) and all(isinstance(part, str) for part in parsed)):
        raise ValueError(f"not an exec-form list: {value}")
    return parsed


def image_config(dockerfile: Path) -> Image:
    """The final stage's configuration, following FROM through this repository's Dockerfiles."""
    args: dict[str, str] = {}
    image = Image(env={})
    for word, rest in _instructions(dockerfile):
        if word == "ARG":
            name, _, default = rest.partition("=")
            args.setdefault(name, default)
        elif word == "FROM":
            base = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: args.get(m.group(1)) or m.group(2), rest.split()[0])
            parent = dockerfile_for(base)
            if parent is not None:
                inherited = image_config(parent)
                image = Image(dict(inherited.env), inherited.workdir, inherited.entrypoint, inherited.cmd,
                              inherited.user, list(inherited.copies), inherited.healthcheck)
            elif base.startswith("python:"):
                image = Image(dict(PYTHON_IMAGE_ENV), "/", None, ["python3"])
            else:
                raise ValueError(f"{dockerfile}: cannot follow FROM {base}")
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                image.env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: image.env.get(m.group(1), ""), value)
        elif word == "WORKDIR":
            image.workdir = rest if rest.startswith("/") else f"{image.workdir.rstrip('/')}/{rest}"
        elif word == "ENTRYPOINT":
            image.entrypoint, image.cmd = _exec_form(rest), None  # as in Docker: a new ENTRYPOINT resets CMD
        elif word == "CMD":
            image.cmd = _exec_form(rest)
        elif word == "USER":
            image.user = rest
        elif word == "HEALTHCHECK":
            command = re.sub(r"^(--\S+\s+)*", "", rest)
            image.healthcheck = None if command.upper() == "NONE" else _exec_form(command.partition(" ")[2].strip())
        elif word == "COPY" and not rest.startswith("--from"):
            *sources, dest = shlex.split(rest)
            for source in sources:
                if (ROOT / source).is_dir():
                    image.copies.append((ROOT / source, dest))
    return image


# --- pod specs -----------------------------------------------------------------------------------------

@dataclass
class PodSpec:
    """One container of a Deployment, resolved against the rendered overlay and its image."""

    name: str
    labels: dict[str, str]
    argv: list[str]
    env: dict[str, str]
    workdir: str
    uid: int
    gid: int
    groups: list[int]
    read_only_root: bool
    no_new_privs: bool
    drop_all_caps: bool
    tmpfs: list[tuple[str, int]]          # emptyDir mountPaths and their sizeLimit in bytes (0: none)
    files: list[tuple[str, dict[str, str], int]]  # configMap/secret volumes: mountPath, files, mode
    binds: list[tuple[str, str]]          # (path on this machine, path in the pod), read-only
    ports: dict[str, int]                 # containerPort by name (and by its number as a string)
    probes: dict[str, Doc]                # startup, readiness, liveness
    grace_seconds: int


_QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def quantity(value: str | int | None) -> int:
    if value is None:
        return 0
    match = re.fullmatch(r"(\d+)([KMGT]i|[kMG])?", str(value))
    if not match:
        raise ValueError(f"unsupported quantity {value!r}")
    return int(match.group(1)) * _QUANTITY.get(match.group(2) or "", 1)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion ($$ escapes; unknown references stay as they are)."""
    return re.sub(r"\$\$|\$\((\w+)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def pod_spec(manifests: Manifests, deployment: str, container: str | None = None) -> PodSpec:
    """The container of Deployment `deployment` (its first, or the one named `container`) as it would run."""
    dep = manifests.get("Deployment", deployment)
    template = dep["spec"]["template"]
    spec = template["spec"]
    c = next(x for x in spec["containers"] if container in (None, x["name"]))
    dockerfile = dockerfile_for(c["image"])
    if dockerfile is None:
        raise ValueError(f"{deployment}: image {c['image']} is not built from this repository; podrun runs only those")
    image = image_config(dockerfile)
    namespace = dep["metadata"].get("namespace", "default")

    # The image's ENV first; then envFrom in order, then env in order (later wins), as the kubelet does.
    env = dict(image.env)
    for source in c.get("envFrom", []):
        ref, kind = (source["configMapRef"], "ConfigMap") if "configMapRef" in source else (source["secretRef"], "Secret")
        try:
            values = manifests.data(kind, ref["name"])
        except KeyError:
            if ref.get("optional"):
                continue
            raise
        env.update({source.get("prefix", "") + key: value for key, value in values.items()})
    for var in c.get("env", []):
        if "value" in var or "valueFrom" not in var:
            env[var["name"]] = _expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            ref, kind = (source["secretKeyRef"], "Secret") if "secretKeyRef" in source else (source["configMapKeyRef"], "ConfigMap")
            try:
                env[var["name"]] = manifests.data(kind, ref["name"])[ref["key"]]
            except KeyError:
                if not ref.get("optional"):
                    raise KeyError(f"{deployment}: {var['name']} refers to {kind} {ref['name']} key {ref['key']}, which does not exist")
        elif "fieldRef" in source:
            fields = {"metadata.name": f"{deployment}-podrun", "metadata.namespace": namespace,
                      "status.podIP": "127.0.0.1", "spec.nodeName": socket.gethostname()}
            env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
        else:
            raise ValueError(f"{deployment}: unsupported valueFrom in {var['name']}: {sorted(source)}")
    env.setdefault("HOSTNAME", f"{deployment}-podrun")
    env.setdefault("HOME", "/")
    # The image's Python is the dev venv here (bound at its own path, see VENV): first on the image's PATH.
    env["PATH"] = f"{VENV}/bin:{env.get('PATH', PYTHON_IMAGE_ENV['PATH'])}"

    # command replaces ENTRYPOINT (and drops CMD); args replaces CMD.
    command = c.get("command") or image.entrypoint or []
    args = c.get("args") if c.get("args") is not None else ([] if c.get("command") else (image.cmd or []))
    argv = [_expand(part, env) for part in [*command, *args]]
    if not argv:
        raise ValueError(f"{deployment}: neither the pod nor the image says what to run")

    pod_ctx, ctx = spec.get("securityContext") or {}, c.get("securityContext") or {}
    user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    group = ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    if user is None and image.user:
        name, _, grp = image.user.partition(":")
        user, group = int(name), int(grp) if grp else group
    if user is None:
        user = 0
    if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) and user == 0:
        raise ValueError(f"{deployment}: runAsNonRoot, but the container would run as root")
    groups = sorted({*pod_ctx.get("supplementalGroups", []), *([pod_ctx["fsGroup"]] if "fsGroup" in pod_ctx else [])})

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    tmpfs, files = [], []
    for mount in c.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            tmpfs.append((mount["mountPath"], quantity((volume["emptyDir"] or {}).get("sizeLimit"))))
        elif "configMap" in volume or "secret" in volume:
            kind, ref = ("ConfigMap", volume["configMap"]) if "configMap" in volume else ("Secret", volume["secret"])
            data = manifests.data(kind, ref.get("name") or ref.get("secretName"))
            if ref.get("items"):
                data = {item["path"]: data[item["key"]] for item in ref["items"]}
            if "subPath" in mount:
                data = {Path(mount["mountPath"]).name: data[mount["subPath"]]}
                files.append((str(Path(mount["mountPath"]).parent), data, ref.get("defaultMode", 0o644)))
            else:
                files.append((mount["mountPath"], data, ref.get("defaultMode", 0o644)))
        else:
            raise ValueError(f"{deployment}: volume {mount['name']} is of a kind podrun does not run: {sorted(volume)}")

    ports: dict[str, int] = {}
    for port in c.get("ports", []):
        ports[str(port["containerPort"])] = port["containerPort"]
        if "name" in port:
            ports[port["name"]] = port["containerPort"]
    caps = (ctx.get("capabilities") or {}).get("drop", [])
    return PodSpec(
        name=deployment,
        labels=dict(template["metadata"].get("labels", {})),
        argv=argv,
        env=env,
        workdir=c.get("workingDir") or image.workdir,
        uid=int(user),
        gid=int(group if group is not None else user),
        groups=groups,
        read_only_root=bool(ctx.get("readOnlyRootFilesystem")),
        no_new_privs=ctx.get("allowPrivilegeEscalation") is False,
        drop_all_caps="ALL" in caps,
        tmpfs=tmpfs,
        files=files,
        binds=[(str(src), dest.rstrip("/") or "/") for src, dest in image.copies],
        ports=ports,
        probes={kind: c[f"{kind}Probe"] for kind in ("startup", "readiness", "liveness") if f"{kind}Probe" in c},
        grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
    )


def service_addresses(manifests: Manifests) -> dict[str, str]:
    """An address of its own for every Service, as a ClusterIP would be (127.0.1.N, on the pod's loopback)."""
    a, b, c, d = FIRST_SERVICE_IP
    return {svc["metadata"]["name"]: f"{a}.{b}.{c}.{d + i}" for i, svc in enumerate(sorted(manifests.services(), key=lambda s: s["metadata"]["name"]))}


def hosts_file(manifests: Manifests, pod_name: str) -> str:
    namespace = manifests.namespace()
    lines = ["127.0.0.1\tlocalhost", f"127.0.0.1\t{pod_name}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for name, address in service_addresses(manifests).items():
        lines.append(f"{address}\t{name} {name}.{namespace} {name}.{namespace}.svc {name}.{namespace}.svc.cluster.local")
    return "\n".join(lines) + "\n"


# --- the host side of the pods' network ----------------------------------------------------------------

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))


class Network:
    """Where each Service leads (`endpoints`), and the forwarding between pods and this machine.

    Runs an asyncio loop in a daemon thread. For every pod it listens on a Unix socket per Service port
    (the pod's own forwarder connects there) and connects to the Service's endpoint on 127.0.0.1; and it
    publishes each containerPort on 127.0.0.1 (a port the kernel picks), forwarding into the pod."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.endpoints: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self._cut: set[tuple[str, str]] = set()
        self._live: dict[tuple[str, str], set[asyncio.StreamWriter]] = {}
        self._servers: dict[str, list[asyncio.AbstractServer]] = {}
        self._next: dict[tuple[str, int], int] = {}
        threading.Thread(target=self.loop.run_forever, name="podrun-network", daemon=True).start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def set_endpoints(self, service: str, port: int, addresses: list[tuple[str, int]]) -> None:
        self.loop.call_soon_threadsafe(self.endpoints.__setitem__, (service, port), list(addresses))

    def partition(self, pod: str, service: str) -> None:
        """`pod` can no longer reach `service`: its open connections are cut, new ones are refused."""
        async def cut() -> None:
            self._cut.add((pod, service))
            for writer in self._live.pop((pod, service), set()):
                writer.transport.abort()
        self._call(cut())

    def heal(self, pod: str, service: str) -> None:
        self.loop.call_soon_threadsafe(self._cut.discard, (pod, service))

    def attach(self, pod: str, sockets: Path, services: list[tuple[str, int]]) -> None:
        async def listen() -> None:
            for service, port in services:
                handler = self._outbound(pod, service, port)
                server = await asyncio.start_unix_server(handler, path=str(sockets / f"out-{service}-{port}.sock"))
                self._servers.setdefault(pod, []).append(server)
        self._call(listen())

    def _outbound(self, pod: str, service: str, port: int) -> Callable[..., Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            addresses = self.endpoints.get((service, port)) or []
            if (pod, service) in self._cut or not addresses:
                writer.transport.abort()
                return
            turn = self._next.get((service, port), 0)
            self._next[(service, port)] = turn + 1
            host, target = addresses[turn % len(addresses)]
            try:
                upstream = await asyncio.open_connection(host, target)
            except OSError:
                writer.transport.abort()
                return
            live = self._live.setdefault((pod, service), set())
            live |= {writer, upstream[1]}
            try:
                await _splice((reader, writer), upstream)
            finally:
                live.discard(writer)
                live.discard(upstream[1])
        return handle

    def publish(self, pod: str, sockets: Path, container_port: int) -> int:
        """Listens on 127.0.0.1 for `pod`'s containerPort; returns the port this machine reaches it on."""
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                inside = await asyncio.open_unix_connection(str(sockets / f"in-{container_port}.sock"))
            except OSError:
                writer.transport.abort()
                return
            await _splice((reader, writer), inside)

        async def listen() -> int:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self._servers.setdefault(pod, []).append(server)
            return server.sockets[0].getsockname()[1]
        return self._call(listen())

    def close(self) -> None:
        """Stops the loop (after every pod is detached)."""
        self.loop.call_soon_threadsafe(self.loop.stop)

    def detach(self, pod: str) -> None:
        async def close() -> None:
            for server in self._servers.pop(pod, []):
                server.close()
            for key in [k for k in self._live if k[0] == pod]:
                for writer in self._live.pop(key):
                    writer.transport.abort()
        self._call(close())


# --- pods ----------------------------------------------------------------------------------------------

def selects(service: Doc, labels: dict[str, str]) -> bool:
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Pod:
    """One running pod: its namespaces, its processes, its published ports, its probes."""

    def __init__(self, spec: PodSpec, manifests: Manifests, network: Network, *, sink: Callable[[str], None] | None = None,
                 tag: str | None = None):
        self.spec = spec
        self.manifests = manifests
        self.network = network
        self.id = f"{spec.name}-{tag or secrets.token_hex(3)}"
        self.sink = sink or (lambda line: print(line, flush=True))
        self.lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.published: dict[int, int] = {}
        self.dir: Path | None = None

    def start(self) -> "Pod":
        self.dir = Path(tempfile.mkdtemp(prefix=f"podrun-{self.id}-"))
        self.dir.chmod(0o700)  # the forwarders' sockets: only root (the "node") may reach them
        sockets = self.dir / "sockets"
        sockets.mkdir()
        addresses = service_addresses(self.manifests)
        services = []
        own = set(self.spec.ports.values())
        for svc in self.manifests.services():
            for port in svc["spec"]["ports"]:
                if port["port"] not in own:
                    services.append((svc["metadata"]["name"], port["port"]))
                elif not selects(svc, self.spec.labels):
                    # Service addresses are local addresses of the pod's loopback here, so the app's 0.0.0.0:P
                    # and a Service's address:P cannot both be bound in the pod (a ClusterIP is not local).
                    raise ValueError(f"{self.spec.name} listens on {port['port']}, as Service {svc['metadata']['name']} "
                                     "does: podrun cannot give the pod both")
        (self.dir / "hosts").write_text(hosts_file(self.manifests, self.spec.env["HOSTNAME"]))
        config = {
            "spec": self.spec.__dict__,
            "python": python_installation(),
            "root": str(self.dir / "root"),
            "hosts": str(self.dir / "hosts"),
            "sockets": str(sockets),
            "outbound": [[addresses[name], port, str(sockets / f"out-{name}-{port}.sock")] for name, port in services],
            "inbound": sorted({port for port in self.spec.ports.values()}),
        }
        (self.dir / "pod.json").write_text(json.dumps(config))
        self.network.attach(self.id, sockets, services)
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private", "--",
             sys.executable, str(Path(__file__).resolve()), "_enter", str(self.dir / "pod.json")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        for port in config["inbound"]:
            self.published[port] = self.network.publish(self.id, sockets, port)
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self.sink(f"[{self.id}] {line}")

    def tail(self, lines: int = 20, width: int = 400) -> str:
        """The pod's last output lines, each cut to `width` characters (a JSON traceback is one long line)."""
        return "\n".join(line if len(line) <= width else line[:width] + " ..." for line in self.lines[-lines:])

    def port(self, name_or_number: str | int) -> int:
        """Where this machine reaches the containerPort named (or numbered) so."""
        container_port = self.spec.ports.get(str(name_or_number)) or int(name_or_number)
        return self.published[container_port]

    def url(self, port: str | int, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port(port)}{path}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def probe(self, kind: str) -> tuple[bool, str]:
        """One run of the pod's `kind` probe (startup, readiness, liveness): (success, what happened)."""
        return self.run_probe(self.spec.probes[kind])

    def run_probe(self, probe: Doc) -> tuple[bool, str]:
        """One run of a probe as a pod spec writes it (httpGet, tcpSocket or exec)."""
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            request = urllib.request.Request(f"{scheme}://127.0.0.1:{self.port(get['port'])}{get.get('path', '/')}",
                                             headers={h["name"]: h["value"] for h in get.get("httpHeaders", [])})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return 200 <= response.status < 400, f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                return False, f"HTTP {exc.code}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                return False, f"no answer: {exc}"
        if "tcpSocket" in probe:
            try:
                with socket.create_connection(("127.0.0.1", self.port(probe["tcpSocket"]["port"])), timeout=timeout) as sock:
                    sock.settimeout(timeout)
                    # The published port accepts before the pod does; a refused inner connection closes at once.
                    sock.setblocking(False)
                    time.sleep(0.2)
                    try:
                        closed = sock.recv(1) == b""
                    except BlockingIOError:
                        closed = False
                    return not closed, "connected" if not closed else "closed"
            except OSError as exc:
                return False, str(exc)
        if "exec" in probe:
            result = self.exec(probe["exec"]["command"], timeout=timeout)
            return result.returncode == 0, f"exit {result.returncode}: {(result.stdout + result.stderr).strip()[-300:]}"
        raise ValueError(f"{self.spec.name}: a probe of an unsupported kind: {sorted(probe)}")

    def wait_probe(self, kind: str, timeout: float = 60.0, *, want: bool = True) -> str:
        """Runs the probe every half second until it gives `want`; fails when the pod exits or time is up."""
        deadline = time.monotonic() + timeout
        detail = "never ran"
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.id} exited with {self.proc.returncode if self.proc else None}:\n" + self.tail())
            ok, detail = self.probe(kind)
            if ok == want:
                return detail
            time.sleep(0.5)
        raise TimeoutError(f"{self.id}: {kind} probe did not {'succeed' if want else 'fail'} within {timeout}s "
                           f"(last: {detail})\n" + self.tail())

    def exec(self, argv: list[str], timeout: float = 30.0, env: dict[str, str] | None = None,
             as_root: bool = False) -> subprocess.CompletedProcess[str]:
        """Runs `argv` inside the pod, as `kubectl exec` and exec probes do: its namespaces, root, working
        directory, user, groups and environment (`as_root`: as root, to look at the filesystem itself)."""
        assert self.proc is not None
        user = [] if as_root else setpriv_argv(self.spec)
        return subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "-n", "-r", "-w", "--", *user, *argv],
            env=env or self.spec.env, capture_output=True, text=True, timeout=timeout, check=False,
        )

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM to the container's process, SIGKILL to everything of the pod after the grace period."""
        try:
            if self.running():
                assert self.proc is not None
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(self.spec.grace_seconds if grace is None else grace)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
        finally:
            self.network.detach(self.id)
            if self.dir is not None:
                # The pod's mounts lived in its own mount namespace, gone with its last process.
                shutil.rmtree(self.dir, ignore_errors=True)


def python_installation() -> list[str]:
    """What stands in for the image's Python: the dev venv and the interpreter installation it was made from
    (pyvenv.cfg `home`), each bound read-only at its own path, since the venv's links and scripts name them."""
    cfg = dict(line.split(" = ", 1) for line in (VENV / "pyvenv.cfg").read_text().splitlines() if " = " in line)
    home = Path(cfg["home"]).resolve().parent
    paths = [str(VENV)]
    if not any(home == Path("/") / d or str(home).startswith(f"/{d}/") for d in SYSTEM_DIRS):
        paths.append(str(home))
    return paths


def setpriv_argv(spec: PodSpec) -> list[str]:
    argv = ["setpriv", f"--reuid={spec.uid}", f"--regid={spec.gid}"]
    argv += [f"--groups={','.join(map(str, spec.groups))}"] if spec.groups else ["--clear-groups"]
    if spec.drop_all_caps:
        argv += ["--inh-caps=-all", "--bounding-set=-all"]
    if spec.no_new_privs:
        argv += ["--no-new-privs"]
    return argv + ["--"]


# --- inside the pod's namespaces (run as root by `unshare`, before the container starts) --------------

def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _loopback_up() -> None:
    """`ip link set lo up` without iproute2: a new network namespace starts with its loopback down."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def _enter(config_path: str) -> None:
    """Builds the pod's root filesystem in its fresh mount namespace, starts its network forwarder in its fresh
    network namespace, then becomes the container: chroot, working directory, user, exec."""
    config = json.loads(Path(config_path).read_text())
    spec = PodSpec(**config["spec"])
    _loopback_up()
    forwarder = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_forward", config_path],
                                 stdin=subprocess.DEVNULL)
    ready = Path(config["sockets"]) / "forwarder.ready"

    root = Path(config["root"])
    root.mkdir()
    _mount("-t", "tmpfs", "-o", "mode=0755,size=16m", "podrun-root", str(root))
    read_only: list[Path] = []   # bind mounts to make read-only (each, with what is mounted below it)

    def bind(source: str, target: str, *, recursive: bool = False) -> None:
        where = root / target.lstrip("/")
        if Path(source).is_dir():
            where.mkdir(parents=True, exist_ok=True)
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            where.touch()
        if spec.read_only_root or recursive or not Path(source).is_dir():
            _mount("--rbind" if recursive else "--bind", source, str(where))
            read_only.append(where)
        else:
            # A writable root: a throwaway copy-on-write layer over the image's files, as a container has.
            layer = Path(config["sockets"]).parent / "layers" / target.strip("/").replace("/", "_")
            (layer / "upper").mkdir(parents=True)
            (layer / "work").mkdir()
            _mount("-t", "overlay", "overlay", "-o", f"lowerdir={source},upperdir={layer / 'upper'},workdir={layer / 'work'}", str(where))

    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            (root / name).symlink_to(os.readlink(host))
        elif host.is_dir():
            bind(str(host), f"/{name}")
    bind("/dev", "/dev", recursive=True)
    bind("/proc", "/proc", recursive=True)
    def under_empty_dir(path: str) -> bool:
        return any(path == d or path.startswith(d.rstrip("/") + "/") for d, _ in spec.tmpfs)

    # A venv under an emptyDir's path (a clone in /tmp, say) would be hidden by that tmpfs: bound after it.
    late_python = [path for path in config["python"] if under_empty_dir(path)]
    for path in config["python"]:
        if path not in late_python:
            bind(path, path)
    for source, target in spec.binds:
        bind(source, target)
    bind(config["hosts"], "/etc/hosts")
    files_root = Path(config["sockets"]).parent / "volumes"
    for i, (path, data, mode) in enumerate(spec.files):
        folder = files_root / str(i)
        folder.mkdir(parents=True)
        for name, value in data.items():
            (folder / name).write_text(value)
            (folder / name).chmod(mode)
        bind(str(folder), path)
    (root / spec.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    mountpoints = [root / path.lstrip("/") for path, _ in spec.tmpfs]
    for where in mountpoints:
        where.mkdir(parents=True, exist_ok=True)

    # Read-only: every bind mount and whatever lies below it (e.g. /dev/pts), then the skeleton itself.
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for where in read_only:
        for target in mounts:
            if target == str(where) or target.startswith(str(where) + "/"):
                subprocess.run(["mount", "-o", "remount,bind,ro", target], check=False, stderr=subprocess.DEVNULL)
    # /dev/shm: a container runtime gives every container a private one (64 MiB), whatever its root is.
    _mount("-t", "tmpfs", "-o", "mode=1777,size=64m,nosuid,nodev", "shm", str(root / "dev" / "shm"))
    for (path, size), where in zip(spec.tmpfs, mountpoints):
        options = "mode=0777,nosuid,nodev" + (f",size={size}" if size else "")
        _mount("-t", "tmpfs", "-o", options, "emptydir", str(where))
    for path in late_python:
        bind(path, path)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root / path.lstrip("/"))], check=False)
    if spec.read_only_root:
        _mount("-o", "remount,ro", str(root))

    deadline = time.monotonic() + 10
    while not ready.exists():
        if forwarder.poll() is not None or time.monotonic() > deadline:
            sys.exit("podrun: the pod's network forwarder did not start")
        time.sleep(0.02)

    os.chroot(root)
    os.chdir(spec.workdir)
    argv = setpriv_argv(spec) + spec.argv
    os.execvpe(argv[0], argv, spec.env)


def _forward(config_path: str) -> None:
    """The pod's end of its network: each Service address:port leads out through a Unix socket to the host's
    Network, and each containerPort is reachable from the host through a Unix socket."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: go when the pod's process goes
    config = json.loads(Path(config_path).read_text())
    sockets = Path(config["sockets"])

    async def main() -> None:
        def outbound(path: str) -> Callable[..., Any]:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    upstream = await asyncio.open_unix_connection(path)
                except OSError:
                    writer.transport.abort()
                    return
                await _splice((reader, writer), upstream)
            return handle

        def inbound(port: int) -> Callable[..., Any]:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    inside = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    writer.transport.abort()
                    return
                await _splice((reader, writer), inside)
            return handle

        for address, port, path in config["outbound"]:
            await asyncio.start_server(outbound(path), address, port)
        for port in config["inbound"]:
            await asyncio.start_unix_server(inbound(port), path=str(sockets / f"in-{port}.sock"))
        (sockets / "forwarder.ready").touch()
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the servers behind the Services -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Backends:
    """The servers the pods' Services lead to, with the accounts the rendered Secrets name: private instances of
    this machine's MariaDB, RabbitMQ and FerretDB (own ports and folders), never the shared ones of `make infra`,
    which are left alone.

    - MariaDB: first booted as the mysql StatefulSet's image does, with the rendered init ConfigMap's scripts
      (mysql/init.sql, then the Secret's auth_user password).
    - RabbitMQ: configured from the rabbitmq ConfigMap and Secret (conf.d files), its service users made by the
      manifests' own rabbit/service-users.sh from the Secret's passwords, as the broker pod's postStart hook does.
      (The shared broker has users of these names with other passwords, which its other clients use.)
    - MongoDB: FerretDB with authentication on, its root user from mongodb-secret and one user per service as
      mongodb/service-users.js makes them. FerretDB has no roles (createRole), so each user may use every
      collection. (The shared FerretDB runs without authentication and refuses every login.)
    Everything lives in one temporary folder, removed by stop()."""

    RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
    FERRETDB_VERSION = "v1.24.2"

    def __init__(self, manifests: Manifests, free_port: Callable[[], int] | None = None):
        self.m = manifests
        # Where the private servers listen; tests pass theirs (tests/support.py: free_port, outside the range
        # the kernel hands out for outgoing connections, which could take a port before the server binds it).
        self.free_port = free_port or _free_port
        self.dir = Path(tempfile.mkdtemp(prefix="podrun-servers-"))
        self.rabbit_node = f"podrun-{secrets.token_hex(4)}@localhost"
        self.rabbit_port = 0
        self.ferret_port = 0
        self.mariadb_port = 0
        self.mariadb_socket = self.dir / "mariadb" / "mysqld.sock"
        self._ferret: subprocess.Popen[bytes] | None = None
        self._rabbit: subprocess.Popen[bytes] | None = None
        self._mariadbd: subprocess.Popen[bytes] | None = None

    # MariaDB ------------------------------------------------------------------------------------------
    def _mariadb(self, sql: str) -> str:
        result = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.mariadb_socket}", "-N", "-B", "-e", sql],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb: {result.stderr.strip()}")
        return result.stdout

    def start_mariadb(self) -> None:
        """A private MariaDB, first booted as the mysql StatefulSet's image does: an empty data directory, then
        the rendered init ConfigMap's scripts in name order (init.sql, then the Secret's auth_user password)."""
        base = self.mariadb_socket.parent
        base.mkdir()
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={base / 'data'}", "--user=root",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
        self.mariadb_port = self.free_port()
        self._mariadbd = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={base / 'data'}", f"--socket={self.mariadb_socket}",
             f"--port={self.mariadb_port}", "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
             f"--log-error={base / 'error.log'}", f"--pid-file={base / 'mariadb.pid'}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        ping = ["mariadb-admin", "--no-defaults", f"--socket={self.mariadb_socket}", "ping"]
        _wait(lambda: self._mariadbd.poll() is not None or subprocess.run(ping, capture_output=True).returncode == 0,
              60, "the private MariaDB")
        if self._mariadbd.poll() is not None:
            raise RuntimeError(f"the private MariaDB exited: {(base / 'error.log').read_text()[-2000:]}")
        # The image removes anonymous accounts (they would shadow auth_user for local connections).
        self._mariadb("DELETE FROM mysql.global_priv WHERE User=''; FLUSH PRIVILEGES;")
        statefulset = self.m.get("StatefulSet", "mysql")
        pod = statefulset["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: volumes.get(m["name"], {}) for c in pod["containers"] for m in c.get("volumeMounts", [])}
        secret_dirs: dict[str, Path] = {}
        for path, volume in mounts.items():
            if "secret" in volume:
                folder = base / "secrets" / volume["secret"]["secretName"]
                folder.mkdir(parents=True)
                for key, value in self.m.data("Secret", volume["secret"]["secretName"]).items():
                    (folder / key).write_text(value)
                secret_dirs[path] = folder
        initdb = next(v["configMap"]["name"] for path, v in mounts.items()
                      if "configMap" in v and path == "/docker-entrypoint-initdb.d")
        # The two helpers of the image's entrypoint that its init scripts may call (the same definitions).
        helpers = (f'docker_process_sql() {{ mariadb --no-defaults --socket={shlex.quote(str(self.mariadb_socket))} "$@"; }}\n'
                   + r"""docker_sql_escape_string_literal() {
    local newline=$'\n'
    local escaped=${1//\\/\\\\}
    escaped="${escaped//$newline/\\n}"
    echo "${escaped//\'/\\\'}"
}
""")
        for name, text in sorted(self.m.data("ConfigMap", initdb).items()):
            for path, folder in secret_dirs.items():
                text = text.replace(path, str(folder))
            if name.endswith(".sql"):
                subprocess.run(["mariadb", "--no-defaults", f"--socket={self.mariadb_socket}"], input=text, text=True,
                               check=True, capture_output=True, timeout=60)
            elif name.endswith(".sh"):
                subprocess.run(["bash", "-euc", helpers + text], check=True, capture_output=True, text=True, timeout=60)
        # What auth will do: log in over TCP as its ConfigMap's user with its Secret's password.
        config, secret = self.m.data("ConfigMap", "auth-config"), self.m.data("Secret", "mysql-secret")
        login = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.mariadb_port), "-u", config["MYSQL_USER"],
                                f"-p{secret['auth-user-password']}", config["MYSQL_DB"], "-e", "SELECT 1"],
                               capture_output=True, text=True, timeout=30)
        if login.returncode != 0:
            raise RuntimeError(f"after the init scripts, auth's MySQL account does not work: {login.stderr.strip()}")

    # RabbitMQ -----------------------------------------------------------------------------------------
    def _rabbitmqctl(self) -> list[str]:
        return [str(self.RABBIT_BIN / "rabbitmqctl"), "-n", self.rabbit_node]

    def start_rabbitmq(self) -> None:
        base = self.dir / "rabbitmq"
        confd = base / "conf.d"
        for sub in ("mnesia", "log", "conf.d", "passwords"):
            (base / sub).mkdir(parents=True)
        self.rabbit_port = self.free_port()
        (base / "enabled_plugins").write_text("[].\n")
        config = {**self.m.data("ConfigMap", "rabbitmq-config"), **{k: v for k, v in self.m.data("Secret", "rabbitmq-secret").items() if k.endswith(".conf")}}
        for name, text in config.items():
            (confd / name).write_text(text)
        # This node's own place (the pod's is its Service on 5672; the Network forwards to here).
        (confd / "90-podrun.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.rabbit_port}\n")
        env = {**os.environ, "RABBITMQ_NODENAME": self.rabbit_node, "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
               "RABBITMQ_LOG_BASE": str(base / "log"), "RABBITMQ_PID_FILE": str(base / "pid"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"), "RABBITMQ_CONFIG_FILES": str(confd),
               "RABBITMQ_CONFIG_FILE": str(base / "none"), "RABBITMQ_DIST_PORT": str(self.free_port()),
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1"}
        # Its own folder as working directory: an Erlang crash dump (MnesiaCore.*) lands there, not in the repository.
        self._rabbit = subprocess.Popen([str(self.RABBIT_BIN / "rabbitmq-server")], env=env, cwd=base, stdin=subprocess.DEVNULL,
                                        stdout=(base / "log" / "stdout.log").open("wb"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        _wait(lambda: self._rabbit.poll() is not None or _port_open(self.rabbit_port), 120, "the private RabbitMQ")
        if self._rabbit.poll() is not None:
            raise RuntimeError(f"the private RabbitMQ exited: {(base / 'log' / 'stdout.log').read_text()[-2000:]}")
        subprocess.run([*self._rabbitmqctl(), "-q", "await_startup", "--timeout", "60"], check=True, timeout=90)
        # The users, as the broker pod's postStart hook makes them: the manifests' script, passwords as files.
        secret = self.m.data("Secret", "rabbitmq-secret")
        for key, value in secret.items():
            if key.endswith("_PASSWORD"):
                (base / "passwords" / key).write_text(value)
        script = self.m.data("ConfigMap", next(d["metadata"]["name"] for d in self.m.docs if d["kind"] == "ConfigMap"
                                               and "service-users.sh" in (d.get("data") or {})))["service-users.sh"]
        (base / "service-users.sh").write_text(script)
        subprocess.run(["bash", str(base / "service-users.sh")], check=True, timeout=120,
                       env={**os.environ, "RABBITMQCTL": " ".join(self._rabbitmqctl()), "PASSWORD_DIR": str(base / "passwords")})

    # FerretDB -----------------------------------------------------------------------------------------
    def start_ferretdb(self) -> None:
        import pymongo

        binary = STATE / "bin" / f"ferretdb-{self.FERRETDB_VERSION}"
        if not binary.exists():
            raise FileNotFoundError(f"{binary} is missing: run `make infra` (it builds FerretDB)")
        base = self.dir / "ferretdb"
        (base / "data").mkdir(parents=True)
        secret = self.m.data("Secret", "mongodb-secret")
        root_user, root_password = secret["MONGO_INITDB_ROOT_USERNAME"], secret["MONGO_INITDB_ROOT_PASSWORD"]
        self.ferret_port = self.free_port()
        self._ferret = subprocess.Popen(
            [str(binary), "--handler=sqlite", f"--sqlite-url=file:{base / 'data'}/", f"--listen-addr=127.0.0.1:{self.ferret_port}",
             f"--state-dir={base}", "--telemetry=disable", "--debug-addr=-", "--log-level=error", "--test-enable-new-auth",
             "--setup-database=admin", f"--setup-username={root_user}", f"--setup-password={root_password}"],
            stdin=subprocess.DEVNULL, stdout=(base / "log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait(lambda: self._ferret.poll() is not None or _port_open(self.ferret_port), 60, "the private FerretDB")
        if self._ferret.poll() is not None:
            raise RuntimeError(f"the private FerretDB exited: {(base / 'log').read_text()[-2000:]}")
        client = pymongo.MongoClient(f"mongodb://{root_user}:{root_password}@127.0.0.1:{self.ferret_port}/admin",
                                     serverSelectionTimeoutMS=10000)
        try:
            # mongodb/service-users.js: user mp3-<service> with <SERVICE>_PASSWORD, in the services' database.
            database = client[self.mongo_database()]
            for key, password in secret.items():
                match = re.fullmatch(r"([A-Z]+)_PASSWORD", key)
                if match and not key.startswith("MONGO_INITDB"):
                    database.command("createUser", f"mp3-{match.group(1).lower()}", pwd=password, roles=[])
        finally:
            client.close()

    def mongo_database(self) -> str:
        uris = [v for d in self.m.docs if d["kind"] == "Secret" for k, v in self.m.data("Secret", d["metadata"]["name"]).items() if k == "MONGO_URI"]
        names = {uri.rsplit("/", 1)[1].split("?")[0] for uri in uris}
        if len(names) != 1:
            raise ValueError(f"the services' MONGO_URIs name {len(names)} databases: {sorted(names)}")
        return names.pop()

    def mongo_uri(self) -> str:
        """The root user's URI of the private FerretDB (for tests that look at what the services stored)."""
        secret = self.m.data("Secret", "mongodb-secret")
        return (f"mongodb://{secret['MONGO_INITDB_ROOT_USERNAME']}:{secret['MONGO_INITDB_ROOT_PASSWORD']}"
                f"@127.0.0.1:{self.ferret_port}/{self.mongo_database()}?authSource=admin")

    def start(self) -> "Backends":
        try:
            self.start_mariadb()
            self.start_rabbitmq()
            self.start_ferretdb()
        except BaseException:
            self.stop()
            raise
        return self

    def wire(self, network: Network) -> None:
        network.set_endpoints("mysql", 3306, [("127.0.0.1", self.mariadb_port)])
        network.set_endpoints("rabbitmq", 5672, [("127.0.0.1", self.rabbit_port)])
        network.set_endpoints("mongodb", 27017, [("127.0.0.1", self.ferret_port)])

    def stop(self) -> None:
        if self._rabbit is not None and self._rabbit.poll() is None:
            subprocess.run([*self._rabbitmqctl(), "-q", "stop"], capture_output=True, timeout=60)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._rabbit.wait(30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._rabbit.pid, signal.SIGKILL)
        if self._ferret is not None and self._ferret.poll() is None:
            self._ferret.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._ferret.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._ferret.pid, signal.SIGKILL)
        if self._mariadbd is not None and self._mariadbd.poll() is None:
            self._mariadbd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._mariadbd.wait(30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._mariadbd.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """The Backends, a Network and the pods of some Deployments: what `run` starts and the tests use."""

    def __init__(self, docs: list[Doc] | None = None, *, sink: Callable[[str], None] | None = None,
                 free_port: Callable[[], int] | None = None):
        self.manifests = Manifests(docs if docs is not None else render())
        self.network = Network()
        self.backends = Backends(self.manifests, free_port=free_port)
        self.pods: dict[str, Pod] = {}
        self.sink = sink

    def start_backends(self) -> None:
        self.backends.start()
        self.backends.wire(self.network)

    def start_pod(self, deployment: str, *, name: str | None = None, register: bool = True) -> Pod:
        """Starts one pod of `deployment`; with `register` it becomes the endpoint of the Services selecting it."""
        pod = Pod(pod_spec(self.manifests, deployment), self.manifests, self.network, sink=self.sink).start()
        self.pods[name or deployment] = pod
        if register:
            self.route_to(pod)
        return pod

    def route_to(self, pod: Pod) -> None:
        for svc in self.manifests.services():
            if selects(svc, pod.spec.labels):
                for port in svc["spec"]["ports"]:
                    target = port.get("targetPort", port["port"])
                    self.network.set_endpoints(svc["metadata"]["name"], port["port"], [("127.0.0.1", pod.port(target))])

    def stop(self, grace: float = 10) -> None:
        self.stop_pods(grace)
        self.backends.stop()
        self.network.close()

    def stop_pods(self, grace: float = 10) -> None:
        """Stops every pod at once, each given `grace` seconds after its SIGTERM."""
        threads = [threading.Thread(target=pod.stop, kwargs={"grace": grace}) for pod in self.pods.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.pods.clear()


def _smtp_sink(port: int) -> Any:
    """A local SMTP server that prints every mail and accepts any login, like the cluster's Mailpit
    (MP_SMTP_AUTH_ACCEPT_ANY, MP_SMTP_AUTH_ALLOW_INSECURE)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    class Printer:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            print(f"[mailpit] mail from {envelope.mail_from} to {envelope.rcpt_tos}:\n"
                  + envelope.content.decode("utf-8", "replace"), flush=True)
            return "250 Message accepted for delivery"

    controller = Controller(Printer(), hostname="127.0.0.1", port=port, auth_require_tls=False,
                            authenticator=lambda *args: AuthResult(success=True))
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print how a Deployment's container would run")
    show.add_argument("deployment")
    show.add_argument("--overlay", type=Path, default=DEFAULT_OVERLAY)
    run = sub.add_parser("run", help="start the servers and these Deployments' pods; Ctrl-C stops them")
    run.add_argument("deployments", nargs="*", default=["auth", "gateway", "converter", "notification"])
    run.add_argument("--overlay", type=Path, default=DEFAULT_OVERLAY)
    enter = sub.add_parser("_enter")
    enter.add_argument("config")
    forward = sub.add_parser("_forward")
    forward.add_argument("config")
    args = parser.parse_args()

    if args.command == "_enter":
        _enter(args.config)
    elif args.command == "_forward":
        _forward(args.config)
    elif args.command == "show":
        spec = pod_spec(Manifests(render(args.overlay)), args.deployment)
        print(json.dumps(spec.__dict__, indent=2))
    else:
        if os.geteuid() != 0:
            sys.exit("podrun needs root: namespaces, mounts and setpriv")
        cluster = Cluster(render(args.overlay))
        smtp_port = _free_port()
        sink = _smtp_sink(smtp_port)
        cluster.network.set_endpoints("mailpit", 1025, [("127.0.0.1", smtp_port)])
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            cluster.start_backends()
            print(f"[podrun] RabbitMQ (private) 127.0.0.1:{cluster.backends.rabbit_port}, FerretDB (private) "
                  f"127.0.0.1:{cluster.backends.ferret_port}, MariaDB (private) 127.0.0.1:{cluster.backends.mariadb_port}, "
                  f"SMTP sink 127.0.0.1:{smtp_port}", flush=True)
            for deployment in args.deployments:
                pod = cluster.start_pod(deployment)
                print(f"[podrun] {pod.id}: " + ", ".join(f"containerPort {c} at 127.0.0.1:{h}" for c, h in pod.published.items()), flush=True)
            for pod in cluster.pods.values():
                for kind in pod.spec.probes:
                    print(f"[podrun] {pod.id} {kind} probe: {pod.wait_probe(kind, timeout=120)}", flush=True)
            print("[podrun] all pods ready; Ctrl-C stops them", flush=True)
            while not stop.is_set() and all(pod.running() for pod in cluster.pods.values()):
                stop.wait(1)
        except KeyboardInterrupt:
            pass
        finally:
            cluster.stop()
            sink.stop()


if __name__ == "__main__":
    main()
