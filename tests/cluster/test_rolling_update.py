"""A new gateway image rolls out without ever leaving fewer ready gateways than its PodDisruptionBudget keeps.

Runs after the other modules (conftest orders it last): it changes the applied objects."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from tests.cluster.support import BIN, NAMESPACE, Doc, Kubectl, find, ready, render

pytestmark = pytest.mark.cluster


class ReadyWatch:
    """Follows a watch on the gateway pods and records the fewest Ready ones seen at any moment."""

    def __init__(self, cluster: Kubectl, selector: str, initial: int) -> None:
        self.initial = initial
        self.pods: dict[str, bool] = {}
        self.fewest: int | None = None
        self.events = 0
        self.process = subprocess.Popen(
            [str(BIN / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "--cache-dir", str(cluster.cache_dir),
             "-n", NAMESPACE, "get", "pods", "-l", selector, "--watch", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            self._record(event)

    def _record(self, event: Doc) -> None:
        name = event["object"]["metadata"]["name"]
        if event["type"] == "DELETED":
            self.pods.pop(name, None)
        else:
            self.pods[name] = ready(event["object"])
        self.events += 1
        count = sum(self.pods.values())
        # The initial listing arrives pod by pod: count only once every pod listed before the change is known.
        if self.events >= self.initial:
            self.fewest = count if self.fewest is None else min(self.fewest, count)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.thread.join(timeout=10)


def test_gateway_image_update_rolls_out_while_the_budget_holds(rolled_out: Kubectl) -> None:
    budget = find(render(), "PodDisruptionBudget", "gateway")["spec"]["minAvailable"]
    selector = "app.kubernetes.io/name=gateway"
    before = [p for p in rolled_out.items("pods", "-l", selector) if ready(p)]
    assert len(before) > budget

    watch = ReadyWatch(rolled_out, selector, initial=len(before))
    try:
        deadline = time.monotonic() + 30
        while watch.fewest is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watch.fewest == len(before), "the watch did not see the running gateways"

        image = "mp3converter/gateway:rolling-update-test"
        rolled_out.ok("-n", NAMESPACE, "set", "image", "deployment/gateway", f"gateway={image}")
        status = rolled_out.run("-n", NAMESPACE, "rollout", "status", "deployment/gateway", "--timeout", "120s", timeout=150)
        assert status.returncode == 0, status.stdout + status.stderr
        time.sleep(1)  # the last deletions reach the watch
    finally:
        watch.stop()

    after = rolled_out.items("pods", "-l", selector)
    assert {p["metadata"]["name"] for p in after}.isdisjoint(p["metadata"]["name"] for p in before)
    assert [c["image"] for p in after for c in p["spec"]["containers"]] == [image] * len(before)
    assert all(ready(p) for p in after)
    assert watch.fewest is not None and watch.fewest >= budget, f"only {watch.fewest} gateway(s) ready during the update"
    pdb = rolled_out.get("pdb", "gateway")["status"]
    assert pdb["currentHealthy"] >= pdb["desiredHealthy"] == budget
