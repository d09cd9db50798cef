// Creates a role and a user per service in the mp3converter database, each allowed only the collections that
// service uses (docs/design.md). Run by the image's entrypoint once, on an empty volume, as the root user
// (MONGO_INITDB_ROOT_*); the passwords are files from mongodb-secret (statefulset.yaml).
const fs = require("fs");
const secrets = "/etc/mongodb-secret";
const database = db.getSiblingDB("mp3converter");
// What the services do: read, insert, update and delete documents, and create their indexes at start.
const actions = ["find", "insert", "update", "remove", "createIndex", "listIndexes", "createCollection"];
const buckets = (...names) => names.flatMap((name) => [`${name}.files`, `${name}.chunks`]);  // GridFS
const services = {
  gateway: ["jobs", "idempotency_keys", ...buckets("videos", "mp3s")],
  converter: ["jobs", ...buckets("videos", "mp3s")],
  notification: ["jobs"],
};
for (const [service, collections] of Object.entries(services)) {
  const name = `mp3-${service}`;
  const password = fs.readFileSync(`${secrets}/${service.toUpperCase()}_PASSWORD`, "utf8").replace(/\n$/, "");
  if (!password) throw new Error(`${service.toUpperCase()}_PASSWORD is empty`);
  database.createRole({
    role: name,
    privileges: collections.map((collection) => ({ resource: { db: "mp3converter", collection }, actions })),
    roles: [],
  });
  database.createUser({ user: name, pwd: password, roles: [{ role: name, db: "mp3converter" }] });
}
