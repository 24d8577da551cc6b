// Starts fauxqs (SQS + SNS emulator) bound to 127.0.0.1 only, with request
// logging off, optional SQLite persistence, and queue URLs on the endpoint's
// own host. fauxqs's startFauxqs() listens on 0.0.0.0 and its CLI logs every
// request, so this assembles the same parts from buildApp() instead.
// Usage: node fauxqs_launcher.mjs --port N [--data-dir DIR] [--region R] [--fifo-receive aws]
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const EXPECTED_VERSION = "2.4.1"; // internals below are read from this release

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "4566" },
    "data-dir": { type: "string" },
    region: { type: "string", default: "us-east-1" },
    "fifo-receive": { type: "string", default: "aws" },
  },
});

const entry = fileURLToPath(import.meta.resolve("fauxqs"));
const dist = dirname(entry);
const pkg = JSON.parse(readFileSync(join(dist, "..", "package.json"), "utf8"));
if (pkg.version !== EXPECTED_VERSION) {
  console.error(`fauxqs ${pkg.version} found; this launcher was written for ${EXPECTED_VERSION}`);
  process.exit(3);
}
const load = (rel) => import(pathToFileURL(join(dist, rel)).href);
const { buildApp } = await load("app.js");
const { SqsQueue, SqsStore } = await load("sqs/sqsStore.js");
const { SnsStore } = await load("sns/snsStore.js");
const { S3Store } = await load("s3/s3Store.js");
const { PersistenceManager } = await load("persistence.js");

// fauxqs returns expired in-flight messages (and due delayed ones) to the
// queue only while a long poll waits or on a receive, so with no consumer the
// Approximate* counts stay stale: a message retried in place for 1 s was still
// "not visible" minutes later. AWS counts by the clock; so do we, by settling
// a queue's timers before any count is read.
const getAttribute = SqsQueue.prototype.getAttribute;
SqsQueue.prototype.getAttribute = function (name) {
  if (name.startsWith("ApproximateNumberOfMessages")) this.processTimers();
  return getAttribute.call(this, name);
};

// AWS returns up to ten messages of one FIFO group in one receive; fauxqs returns
// one per group (and none while one is in flight), which hides every code path
// that handles several messages of a group in one worker (the group gate's
// waiting and hand-back). With --fifo-receive aws (the default) one receive may
// take several messages of a group, in order; the group stays locked while any
// of them is in flight, as on AWS.
if (values["fifo-receive"] === "aws") {
  const dequeueFifo = SqsQueue.prototype.dequeueFifo;
  SqsQueue.prototype.dequeueFifo = function (maxCount, visibilityTimeout, dlqResolver) {
    // A group is locked exactly while it has messages in flight. fauxqs keeps a
    // counter instead, which drifts after a restart on persisted state (seen: every
    // group stayed locked with nothing in flight, and no receive ever returned a
    // message again); count from the in-flight messages themselves.
    this.processTimers();
    this.fifoLockedGroups.clear();
    for (const entry of this.inflightMessages.values()) {
      const group = entry.message.messageGroupId;
      if (group) this.fifoLockedGroups.set(group, (this.fifoLockedGroups.get(group) ?? 0) + 1);
    }
    const limit = Math.min(maxCount, 10);
    const result = [];
    const locks = new Map(); // groups this receive took messages from -> how many
    while (result.length < limit) {
      const got = dequeueFifo.call(this, limit - result.length, visibilityTimeout, dlqResolver);
      if (got.length === 0) break;
      for (const message of got) {
        result.push(message);
        const group = this.inflightMessages.get(message.ReceiptHandle).message.messageGroupId;
        locks.set(group, (locks.get(group) ?? 0) + 1);
        this.fifoLockedGroups.delete(group); // this same receive may take the next one
      }
    }
    for (const [group, count] of locks) this.fifoLockedGroups.set(group, count);
    return result;
  };
  // fauxqs puts a message that comes back (visibility 0, or expired) at the front
  // of its group; with several of a group in flight that reverses them. AWS keeps
  // a group in sequence order: so do we.
  const inOrder = (queue) => {
    for (const group of queue.fifoMessages?.values() ?? []) {
      group.sort((a, b) => (BigInt(a.sequenceNumber) < BigInt(b.sequenceNumber) ? -1 : 1));
    }
  };
  for (const name of ["changeVisibility", "processTimers"]) {
    const original = SqsQueue.prototype[name];
    SqsQueue.prototype[name] = function (...args) {
      const outcome = original.apply(this, args);
      if (this.isFifo()) inOrder(this);
      return outcome;
    };
  }
} else if (values["fifo-receive"] !== "fauxqs") {
  console.error(`--fifo-receive must be aws or fauxqs, got ${values["fifo-receive"]}`);
  process.exit(2);
}

const sqsStore = new SqsStore();
// An empty host makes buildQueueUrl() use the request's Host header (the
// default "localhost" gives sqs.<region>.localhost, which does not resolve).
sqsStore.host = "";
const snsStore = new SnsStore();
const s3Store = new S3Store();
// fauxqs 2.4.1's PersistenceManager.updateMessageReady (a message made visible
// again: ChangeMessageVisibility 0) writes NULL into approximate_receive_count, a
// NOT NULL column: it throws after the message has left the in-flight set and
// before it is queued again, so with persistence on every such message was lost
// (a hand-back after a killed pool process; seen as an order stuck in RECEIVED),
// and it came back from the database at the next restart out of its group's
// order. Here only the in-flight fields are cleared.
const updateMessageReady = PersistenceManager.prototype.updateMessageReady;
PersistenceManager.prototype.updateMessageReady = function (messageId) {
  if (!this.db) return updateMessageReady.call(this, messageId);
  this.pipelineReady ??= this.db.prepare(
    "UPDATE sqs_messages SET receipt_handle = NULL, visibility_deadline = NULL WHERE message_id = ?");
  this.pipelineReady.run(messageId);
};

let persistence;
if (values["data-dir"]) {
  // Same order as startFauxqs(): load state first, then wire write-through.
  persistence = new PersistenceManager(values["data-dir"]);
  persistence.load(sqsStore, snsStore, s3Store);
  sqsStore.persistence = persistence;
  snsStore.persistence = persistence;
  s3Store.persistence = persistence;
  for (const queue of sqsStore.allQueues()) queue.persistence = persistence;
}
// No `host` option: queue URLs then use the request's Host header, i.e. the
// endpoint the client was configured with (127.0.0.1:PORT).
const app = buildApp({
  logger: false,
  defaultRegion: values.region,
  stores: { sqsStore, snsStore, s3Store },
});
if (persistence) app.addHook("preClose", () => persistence.close());

// Requests by API action, for `make bench` (requests and $ per order): SQS
// speaks JSON (x-amz-target), SNS the query protocol (Action in the form).
// A receive that returned no message is counted apart, as AWS bills it too.
let counts = {};
const count = (name) => { counts[name] = (counts[name] ?? 0) + 1; };
app.addHook("preHandler", async (request) => {
  if (request.method !== "POST") return;
  const target = request.headers["x-amz-target"];
  let action;
  if (typeof target === "string") action = "SQS." + target.split(".").pop();
  else if (request.body && typeof request.body === "object" && request.body.Action)
    action = "SNS." + request.body.Action;
  if (action) request.pipelineAction = action;
});
app.addHook("onSend", async (request, reply, payload) => {
  const action = request.pipelineAction;
  if (!action) return payload;
  if (action === "SQS.ReceiveMessage" && typeof payload === "string" &&
      !payload.includes('"Messages":[{')) count("SQS.ReceiveMessage(empty)");
  else count(action);
  return payload;
});
app.get("/_pipeline/requests", async () => counts);
app.post("/_pipeline/requests/reset", async () => { counts = {}; return {}; });

// AWS publishes a queue's ApproximateAgeOfOldestMessage to CloudWatch, which
// fauxqs does not have; pipeline.monitoring.metrics reads it here instead:
// {queueName: seconds} for every queue holding a message (bodies not sent).
app.get("/_pipeline/oldest", async () => {
  const now = Date.now();
  const oldest = {};
  for (const queue of sqsStore.allQueues()) {
    queue.processTimers();
    const { ready, delayed, inflight } = queue.inspectMessages();
    let first = Infinity;
    for (const message of [...ready, ...delayed, ...inflight.map((entry) => entry.message)]) {
      if (message.sentTimestamp < first) first = message.sentTimestamp;
    }
    if (first !== Infinity) oldest[queue.name] = (now - first) / 1000;
  }
  return oldest;
});

// FIFO group locks and queued messages per group: what a stuck group looks like.
app.get("/_pipeline/fifo-groups", async () => {
  const groups = {};
  for (const queue of sqsStore.allQueues()) {
    if (!queue.isFifo()) continue;
    queue.processTimers();
    const locks = Object.fromEntries(queue.fifoLockedGroups);
    const queued = Object.fromEntries([...queue.fifoMessages].map(([g, m]) => [g, m.length]));
    groups[queue.name] = { locks, queued, inflight: queue.inflightMessages.size };
  }
  return groups;
});

const address = await app.listen({ port: Number(values.port), host: "127.0.0.1" });
console.log(JSON.stringify({ ready: true, endpoint: address, pid: process.pid }));

let closing = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    if (closing) return;
    closing = true;
    await app.close();
    process.exit(0);
  });
}
