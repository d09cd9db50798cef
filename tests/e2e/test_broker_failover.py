"""The whole system on a three-node RabbitMQ cluster of its own (scripts/infra.sh, INFRA_RABBITMQ_NODES=3, on
ports and in a state folder apart from the shared broker): the node leading the `video` queue, then the node
leading the `mp3` queue, is stopped with a conversion in flight and 20 jobs queued. Every job ends `done` exactly
once (one MP3, one email), every upload meanwhile is answered 202 or a quick JSON 503 (never a 202 that is then
lost), the services move to another node by themselves, and the stopped node, started again, rejoins.

Marked `faults`: it stops broker nodes, so `make test` runs it on its own, after everything else.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.conftest import Stack, make_clip, running_stack
from tests.support import ROOT, body_text, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
QUEUED = 20
OUTAGE_UPLOADS, UPLOAD_EVERY_S = 15, 1.0  # uploads while the node goes away: the first 15 s or so
RESULTS = os.environ.get("BROKER_FAILOVER_RESULTS")  # a file to append the measured figures to (docs/broker.md)


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports nobody listens on (infra.sh puts node i on port + i - 1)."""
    for _ in range(200):
        first = free_port()
        rest = []
        for port in range(first + 1, first + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    break
            rest.append(port)
        if len(rest) == count - 1:
            return first
    raise RuntimeError("no consecutive free ports")


@dataclass
class Cluster:
    state: Path
    env: dict[str, str]
    nodes: list[str]
    ports: list[int]

    def infra(self, command: str) -> None:
        result = subprocess.run([str(ROOT / "scripts" / "infra.sh"), command], env=self.env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr

    def ctl(self, node: str, *args: str) -> str:
        return subprocess.run([CTL, "-n", node, "-q", *args], capture_output=True, text=True, timeout=60,
                              check=True).stdout

    def running(self) -> list[str]:
        for node in self.nodes:
            try:
                status = json.loads(self.ctl(node, "cluster_status", "--formatter", "json"))
                return sorted(status["running_nodes"])
            except subprocess.CalledProcessError:
                continue
        return []

    def leader(self, queue: str) -> str:
        for node in self.running():
            queues = json.loads(self.ctl(node, "list_queues", "name", "leader", "--formatter", "json"))
            return next(q["leader"] for q in queues if q["name"] == queue)
        raise AssertionError("no node answers")

    def stop(self, node: str) -> None:
        self.ctl(node, "stop")

    def url(self, service: str) -> str:
        return (self.state / "rabbitmq" / f"{service}.url").read_text().strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("rabbit")
    port, dist = consecutive_free_ports(3), consecutive_free_ports(3)
    name = f"mp3ha{secrets.token_hex(3)}"
    env = {**os.environ, "STATE_DIR": str(state), "INFRA_RABBITMQ_PORT": str(port),
           "INFRA_RABBITMQ_DIST_PORT": str(dist), "INFRA_RABBITMQ_NODE": f"{name}@localhost",
           "INFRA_RABBITMQ_NODES": "3"}
    own = Cluster(state, env, [f"{name}@localhost", f"{name}-2@localhost", f"{name}-3@localhost"],
                  [port, port + 1, port + 2])
    try:
        own.infra("rabbitmq")
        assert own.running() == sorted(own.nodes)
        yield own
    finally:
        own.infra("down")  # only RabbitMQ runs under this state folder


@pytest.fixture(scope="module")
def ha_stack(cluster: Cluster, mysql_account, tmp_path_factory) -> Iterator[Stack]:
    rabbit = {"admin": ",".join(f"amqp://guest:guest@127.0.0.1:{p}/%2F" for p in cluster.ports),
              **{service: cluster.url(service) for service in ("gateway", "converter", "notification")}}
    # One user uploads them all: no in-flight limit in the way.
    with running_stack(mysql_account, tmp_path_factory.mktemp("work"), rabbit=rabbit,
                       MAX_JOBS_IN_FLIGHT_PER_USER="1000") as stack:
        yield stack


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    # Four minutes of audio (a tiny picture): its conversion takes a few seconds, long enough to be in flight.
    return make_clip(tmp_path_factory.mktemp("media") / "long.mp4", seconds=240, size="64x64")


@dataclass
class Uploads:
    """Uploads a clip every UPLOAD_EVERY_S in a thread, OUTAGE_UPLOADS of them, recording each answer."""

    stack: Stack
    token: str
    clip: Path
    answers: list[tuple[float, int, float, dict]] = field(default_factory=list)  # (sent, status, seconds, body)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Uploads:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.answers) < OUTAGE_UPLOADS:
            sent = time.monotonic()
            try:
                response = self.stack.upload(self.token, self.clip)
                answer = (response.status_code, response.json())
            except (requests.RequestException, ValueError) as exc:  # no answer, or not JSON: the test fails
                answer = (0, {"exception": repr(exc)})
            self.answers.append((sent, answer[0], time.monotonic() - sent, answer[1]))
            self._stop.wait(max(0.0, UPLOAD_EVERY_S - (time.monotonic() - sent)))

    def __exit__(self, *exc) -> None:
        self._thread.join(180)


def upload(stack: Stack, token: str, clip: Path) -> str:
    response = stack.upload(token, clip)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def status(stack: Stack, job_id: str) -> str:
    return stack.db["jobs"].find_one({"_id": job_id}, {"status": 1})["status"]


def exactly_once(stack: Stack, token: str, email: str, job_ids: list[str]) -> None:
    for job_id in job_ids:
        job = stack.wait_job(token, job_id, timeout=240)
        assert job["status"] == "done", job
        assert len(stack.files("mp3s", job_id)) == 1, job_id
    wait_until(lambda: all(stack.db["jobs"].find_one({"_id": j})["notified_at"] for j in job_ids), 120,
               "every job's email")
    time.sleep(3)  # a duplicate would arrive right behind
    mails = [body_text(m) for m in list(stack.smtp.messages) if email in m["To"]]
    for job_id in job_ids:
        assert sum(job_id in body for body in mails) == 1, job_id


@pytest.mark.parametrize("queue", ["VIDEO_QUEUE", "MP3_QUEUE"])
def test_stopping_the_node_that_leads_a_queue_loses_and_doubles_nothing(cluster, ha_stack, long_clip, clip, queue):
    stack = ha_stack
    admin = stack.login(*stack.admin)
    email, _, token = stack.create_user(admin)
    pids = {name: service.proc.pid for name, service in stack.services.items()}

    # One conversion in flight, 20 jobs queued behind it.
    jobs = [upload(stack, token, long_clip)]
    wait_until(lambda: status(stack, jobs[0]) == "converting", 60, "the long conversion to start")
    jobs += [upload(stack, token, clip) for _ in range(QUEUED)]
    queued = sum(status(stack, j) == "queued" for j in jobs)

    leader = cluster.leader(stack.env[queue])
    with Uploads(stack, token, clip) as during:
        stopped_at, stopped_wall = time.monotonic(), datetime.now(timezone.utc).replace(tzinfo=None)  # as stored
        cluster.stop(leader)
        assert leader not in cluster.running()
        # The services carry on through the two other nodes, by themselves: every job gets done meanwhile.
        try:
            wait_until(lambda: all(status(stack, j) == "done" for j in jobs), 240, "every job done with the node down")
        except AssertionError:
            print({j: status(stack, j) for j in jobs}, cluster.running())
            raise
        all_done_s = time.monotonic() - stopped_at
        time.sleep(2)
        cluster.infra("rabbitmq")  # starts the stopped node again
        assert cluster.running() == sorted(cluster.nodes)  # it rejoined
        time.sleep(1)

    accepted = [body["job_id"] for _, code, _, body in during.answers if code == 202]
    refused = [(sent, seconds, body) for sent, code, seconds, body in during.answers if code != 202]
    for sent, seconds, body in refused:
        assert body.get("error") and seconds < 25, (seconds, body)  # a JSON 503 within NACK_RETRY_S, never a hang
    assert all(code in (202, 503) for _, code, _, _ in during.answers)
    exactly_once(stack, token, email, jobs + accepted)
    assert {name: service.proc.pid for name, service in stack.services.items()} == pids  # no restarts
    assert all(service.is_healthy(stack.health[name]) for name, service in stack.services.items())

    window = (max(s + d for s, d, _ in refused) - min(s for s, _, _ in refused)) if refused else 0.0
    # How long the jobs waited for the consumers to move: the longest pause between two jobs getting done after
    # the stop (without a fault, one short clip is done about every second or two on this machine).
    done_after = [stopped_wall] + sorted(j["updated_at"] for j in stack.db["jobs"].find({"_id": {"$in": jobs}})
                                         if j["updated_at"] > stopped_wall)
    longest_pause = max((b - a).total_seconds() for a, b in zip(done_after, done_after[1:]))
    figures = {"queue": stack.env[queue].split("_")[0], "leader": leader, "queued_when_stopped": queued,
               "uploads_during": len(during.answers), "uploads_503": len(refused), "window_503_s": round(window, 1),
               "slowest_upload_s": round(max(d for _, _, d, _ in during.answers), 1),
               "longest_pause_between_jobs_done_s": round(longest_pause, 1),
               "slowest_accepted_upload_s": round(max((d for _, c, d, _ in during.answers if c == 202), default=0), 1),
               "all_jobs_done_after_stop_s": round(all_done_s, 1)}
    print("broker failover:", json.dumps(figures))
    if RESULTS:
        with open(RESULTS, "a") as out:
            out.write(json.dumps(figures) + "\n")
