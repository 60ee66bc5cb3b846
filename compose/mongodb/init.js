// rs.initiate for the `catalog` replica set of docker-compose.yml, run once by
// the catalog-init service (mongosh against catalog-east-1). Laid out as
// OrderGroove runs it: two data-bearing members in each of two regions, an
// arbiter in a third, the highest priorities in the primary region, so losing
// any one region leaves 3 of 5 votes. Must match topologies/examples/compose.toml.
const config = {
  _id: "rs0",
  members: [
    { _id: 0, host: "172.30.1.21:27017", priority: 2 }, // catalog-east-1
    { _id: 1, host: "172.30.1.22:27017", priority: 2 }, // catalog-east-2
    { _id: 2, host: "172.30.2.23:27017", priority: 1 }, // catalog-west-1
    { _id: 3, host: "172.30.2.24:27017", priority: 1 }, // catalog-west-2
    { _id: 4, host: "172.30.3.25:27017", arbiterOnly: true }, // catalog-south-arbiter
  ],
  settings: { electionTimeoutMillis: 10000, heartbeatIntervalMillis: 2000 },
};

// Idempotent: a second run (`docker compose up` again) finds the set
// initiated and only waits for its primary.
let initiated = false;
try {
  initiated = rs.status().ok === 1;
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
}
if (!initiated) {
  printjson(rs.initiate(config));
}

// Done only when a member of the primary region is primary (priority takeover
// puts it there once the set has settled).
const deadline = Date.now() + 180 * 1000;
for (;;) {
  const hello = db.hello();
  const primary = hello.primary || "";
  if (primary === "172.30.1.21:27017" || primary === "172.30.1.22:27017") {
    print(`catalog: primary ${primary}`);
    break;
  }
  if (Date.now() > deadline) {
    throw new Error(`no primary in east within 180 s (hello.primary = ${primary || "none"})`);
  }
  sleep(1000);
}
