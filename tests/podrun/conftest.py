"""The four services' pods started as the rendered minikube overlay says (scripts/podrun.py), once per module."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest

from tests.support import ROOT, SmtpServer, free_port

sys.path.insert(0, str(ROOT / "scripts"))
import podrun  # noqa: E402

SERVICES = ("auth", "gateway", "converter", "notification")


@dataclass
class MailpitSink(SmtpServer):
    """The SMTP sink behind Service `mailpit`: like the cluster's Mailpit it accepts any login without TLS
    (MP_SMTP_AUTH_ACCEPT_ANY, MP_SMTP_AUTH_ALLOW_INSECURE), and it records the logins it saw."""

    logins: list[tuple[str, str]] = field(default_factory=list)

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def accept_any(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            if isinstance(data, LoginPassword):
                self.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=True)

        self._controller = Controller(self, hostname=self.host, port=self.port, auth_require_tls=False, authenticator=accept_any)
        self._controller.start()


def _quiet(line: str) -> None:
    if os.environ.get("E2E_SERVICE_LOGS"):
        print(line, flush=True)


@pytest.fixture(scope="session")
def rendered() -> list[dict]:
    if os.geteuid() != 0:
        pytest.fail("the pod tests need root (namespaces, mounts, setpriv)", pytrace=False)
    return podrun.render()


@dataclass
class Pods:
    """A running set of pods, their servers, the SMTP sink, and the overlay they were started from."""

    cluster: podrun.Cluster
    mail: MailpitSink

    @property
    def manifests(self) -> podrun.Manifests:
        return self.cluster.manifests

    def __getitem__(self, name: str) -> podrun.Pod:
        return self.cluster.pods[name]

    def start(self, deployment: str, *, name: str, register: bool = False, wait: str | None = "startup",
              edit: Callable[[podrun.PodSpec], None] | None = None) -> podrun.Pod:
        """Another pod of `deployment` (optionally with its spec changed by `edit`), not a Service endpoint
        unless `register`; waits for its `wait` probe."""
        spec = podrun.pod_spec(self.manifests, deployment)
        if edit is not None:
            edit(spec)
        pod = podrun.Pod(spec, self.manifests, self.cluster.network, sink=_quiet).start()
        self.cluster.pods[name] = pod
        if register:
            self.cluster.route_to(pod)
        if wait:
            pod.wait_probe(wait, timeout=90)
        return pod

    def stop(self, name: str) -> None:
        self.cluster.pods.pop(name).stop(grace=10)


@pytest.fixture(scope="module")
def pods(rendered: list[dict]) -> Iterator[Pods]:
    """The overlay's four service Deployments, one pod each, against their servers and an SMTP sink."""
    cluster = podrun.Cluster(rendered, sink=_quiet, free_port=free_port)
    mail = MailpitSink("127.0.0.1", free_port())
    mail.start()
    cluster.network.set_endpoints("mailpit", 1025, [("127.0.0.1", mail.port)])
    started: list[podrun.Pod] = []
    try:
        cluster.start_backends()
        for name in SERVICES:
            started.append(cluster.start_pod(name))
        for name in SERVICES:
            cluster.pods[name].wait_probe("startup", timeout=120)
        yield Pods(cluster, mail)
    finally:
        started += [pod for pod in cluster.pods.values() if pod not in started]
        cluster.stop()
        mail.stop()
        for pod in started:
            if pod.proc is not None and pod.proc.returncode not in (0, -15, None):
                print(f"--- {pod.id} exited with {pod.proc.returncode}; its last lines ---\n" + pod.tail())
