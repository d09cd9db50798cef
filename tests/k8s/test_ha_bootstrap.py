"""mongodb/replicaset/bootstrap.js, the replica set's one-time initiation, run under Node.js with a fake of mongosh's
globals (Mongo, sleep, quit, print) and fake members: it initiates exactly once, waits for every member first, and
does nothing where a set already exists. mongosh itself is Node.js, so the script's JavaScript runs as it does
there; the MongoDB side is the fake's (no MongoDB runs here)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.k8s.support import ROOT

pytestmark = pytest.mark.k8s

SCRIPT = ROOT / "mongodb" / "replicaset" / "bootstrap.js"
HOSTS = [f"mongodb-{i}.mongodb:27017" for i in range(3)]
USER, PASSWORD = "root-dev-only", "dev-only p@ss:w/rd"

# The fake: each member answers `hello` as the scenario says; replSetInitiate is recorded and answered.
HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const scenario = JSON.parse(process.argv[3]);
const events = [];
const secrets = {MONGO_INITDB_ROOT_USERNAME: scenario.user + "\n",
                 MONGO_INITDB_ROOT_PASSWORD: scenario.password + "\n"};
const realRead = fs.readFileSync;
fs.readFileSync = (path, ...rest) => {
  const name = String(path).replace("/etc/mongodb-secret/", "");
  if (String(path).startsWith("/etc/mongodb-secret/")) return secrets[name];
  return realRead(path, ...rest);
};
let initiated = false;
const helloCalls = {};
class Mongo {
  constructor(uri) { this.uri = uri; this.host = uri.replace(/^mongodb:\/\/([^@]*@)?/, "").split("/")[0]; }
  getDB(name) {
    return { runCommand: (cmd) => {
      if (cmd.hello) {
        helloCalls[this.host] = (helloCalls[this.host] || 0) + 1;
        const down = scenario.downFor[this.host] || 0;
        if (helloCalls[this.host] <= down) throw new Error(`getaddrinfo ENOTFOUND ${this.host}`);
        const reply = {ok: 1, isWritablePrimary: false};
        const setName = scenario.inSet.includes(this.host) || initiated ? "rs0" : undefined;
        if (setName) Object.assign(reply, {setName, me: this.host});
        if (initiated) reply.primary = scenario.hosts[0];
        return reply;
      }
      if (cmd.replSetInitiate) {
        events.push({initiate: cmd.replSetInitiate, uri: this.uri, db: name});
        initiated = true;
        return scenario.initiateReply;
      }
      throw new Error("unexpected command " + JSON.stringify(cmd));
    }};
  }
  close() {}
}
class Quit extends Error {}
Object.assign(globalThis, {
  Mongo, require, sleep: () => {}, print: (line) => events.push({print: line}),
  quit: (code) => { throw new Quit(String(code)); },
});
let code = 0;
try {
  vm.runInThisContext(realRead(process.argv[2], "utf8"), {filename: "bootstrap.js"});
} catch (e) {
  code = e instanceof Quit ? Number(e.message) : 1;
  if (!(e instanceof Quit)) events.push({error: e.message});
}
console.log(JSON.stringify({code, events, helloCalls}));
"""


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node") or shutil.which("nodejs")
    if not found:
        pytest.skip("Node.js is not installed (mongosh's runtime, used here to run bootstrap.js)")
    return found


@pytest.fixture
def run(node: str, tmp_path: Path):
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)

    def _run(*, in_set=(), down_for=None, initiate_reply=None) -> dict:
        scenario = {"hosts": HOSTS, "inSet": list(in_set), "downFor": down_for or {}, "user": USER,
                    "password": PASSWORD, "initiateReply": initiate_reply or {"ok": 1}}
        proc = subprocess.run([node, str(harness), str(SCRIPT), json.dumps(scenario)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return _run


def initiations(result: dict) -> list[dict]:
    return [e for e in result["events"] if "initiate" in e]


def test_a_fresh_set_is_initiated_once_on_member_0_as_root_with_all_three_members(run):
    result = run()
    assert result["code"] == 0
    (call,) = initiations(result)
    assert call["initiate"] == {"_id": "rs0", "members": [{"_id": i, "host": h} for i, h in enumerate(HOSTS)]}
    assert call["db"] == "admin"
    # The root user of mongodb-secret, URL-encoded (a password may hold @ : /), straight to member 0.
    assert call["uri"] == ("mongodb://root-dev-only:dev-only%20p%40ss%3Aw%2Frd@mongodb-0.mongodb:27017/admin"
                           "?directConnection=true")


@pytest.mark.parametrize("member", HOSTS)
def test_nothing_is_initiated_when_any_member_is_already_in_a_set(run, member):
    result = run(in_set=[member])
    assert result["code"] == 0
    assert initiations(result) == []
    assert any("already initiated" in e.get("print", "") for e in result["events"])


def test_it_waits_for_every_member_before_initiating(run):
    result = run(down_for={HOSTS[2]: 4})
    assert result["code"] == 0
    assert len(initiations(result)) == 1
    # Five rounds of hello to member 2 (four unanswered), then the set was made with it in.
    assert result["helloCalls"][HOSTS[2]] >= 5
    assert [m["host"] for m in initiations(result)[0]["initiate"]["members"]] == HOSTS


def test_another_run_having_initiated_first_counts_as_success(run):
    result = run(initiate_reply={"ok": 0, "code": 23, "codeName": "AlreadyInitialized"})
    assert result["code"] == 0


def test_a_refused_initiation_fails_the_job_so_it_is_retried(run):
    result = run(initiate_reply={"ok": 0, "code": 93, "codeName": "InvalidReplicaSetConfig"})
    assert result["code"] == 1
    assert any("replSetInitiate failed" in e.get("error", "") for e in result["events"])
