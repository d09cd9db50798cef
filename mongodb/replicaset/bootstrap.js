// Initiates replica set rs0 from the three members of the mongodb StatefulSet, once. Run by the mongodb-bootstrap
// Job (mongosh --nodb --file). Idempotent: when any member already belongs to a set, it initiates nothing.
// Member 0 holds the root user (the image's first boot, mongodb/service-users.js beside it), so the initiation
// is sent there, authenticated; the other members answer `hello`, which needs no login, to say whether they
// are in a set. Keep SET and MEMBERS equal to statefulset-patch.yaml (--replSet, replicas) and the MONGO_URIs.
const fs = require("fs");

const SET = "rs0";
const MEMBERS = 3;
const HOSTS = Array.from({ length: MEMBERS }, (_, i) => `mongodb-${i}.mongodb:27017`);
const WAIT_MS = 10 * 60 * 1000;
const secret = (name) => fs.readFileSync(`/etc/mongodb-secret/${name}`, "utf8").replace(/\n$/, "");

function hello(host) {
  // The member's own view (setName once it is in a set), or null while it cannot be reached.
  let conn = null;
  try {
    conn = new Mongo(`mongodb://${host}/?directConnection=true&serverSelectionTimeoutMS=3000`);
    return conn.getDB("admin").runCommand({ hello: 1 });
  } catch (e) {
    print(`${host}: not reachable yet (${e.message})`);
    return null;
  } finally {
    if (conn) conn.close();
  }
}

function waitFor(what, test) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = test();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${WAIT_MS / 1000} s`);
    sleep(3000);
  }
}

// Every member must be up: an initiation that cannot reach one would leave it out of the set.
const replies = waitFor("every member", () => {
  const all = HOSTS.map(hello);
  return all.every((reply) => reply && reply.ok) ? all : null;
});
const inSet = replies.filter((reply) => reply.setName);
if (inSet.length > 0) {
  print(`replica set ${inSet[0].setName} already initiated (${inSet.map((r) => r.me).join(", ")}); nothing to do`);
  quit(0);
}

const user = encodeURIComponent(secret("MONGO_INITDB_ROOT_USERNAME"));
const password = encodeURIComponent(secret("MONGO_INITDB_ROOT_PASSWORD"));
const seed = new Mongo(`mongodb://${user}:${password}@${HOSTS[0]}/admin?directConnection=true`);
const config = { _id: SET, members: HOSTS.map((host, i) => ({ _id: i, host })) };
const reply = seed.getDB("admin").runCommand({ replSetInitiate: config });
// AlreadyInitialized (23): another run got there first, which is what this one wanted.
if (!reply.ok && reply.code !== 23) throw new Error(`replSetInitiate failed: ${JSON.stringify(reply)}`);
print(`replica set ${SET} initiated with ${HOSTS.join(", ")}`);
seed.close();

waitFor("a primary", () => {
  const reply = hello(HOSTS[0]);
  return reply && reply.primary ? reply.primary : null;
});
print(`replica set ${SET} has a primary; members 1 and 2 copy the data from it (initial sync) in the background`);
