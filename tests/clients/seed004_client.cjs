// Seed 004's dashboard side with socket.io-client 4 from npm (as its dashboard connects):
// start a session, join its room, answer its decision point, lose the connection and let
// the client reconnect on its own, handing victor the last seq it saw. tests/seeds.rs runs it
// against a real victor (NODE_PATH names npm's global modules) and checks the JSON report it
// prints on its last line.
//
//   node seed004_client.cjs URL API_KEY

const { io } = require("socket.io-client");

const [base, key] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/json" };
const report = {};

function follow(sessionId, { dropAfterDecision = false } = {}) {
  return new Promise((resolve, reject) => {
    const seen = [];
    let lastSeq = 0;
    let connects = 0;
    const socket = io(base, {
      query: { session_id: sessionId },
      // Called at every (re)connection: victor resumes after the last seq seen.
      auth: (cb) => cb({ token: key, after: lastSeq }),
      reconnectionDelay: 100,
      reconnectionDelayMax: 200,
    });
    const timer = setTimeout(() => reject(new Error(`timed out: ${JSON.stringify(seen)}`)), 30000);
    socket.on("connect", () => (connects += 1));
    socket.on("connect_error", (e) => reject(e));
    socket.onAny(async (event, payload) => {
      if (event === "connected") return;
      seen.push([event, payload.seq]);
      lastSeq = payload.seq;
      if (event === "decision:point" && dropAfterDecision) {
        report.decision_ack = await socket.emitWithAck("command", {
          type: "DECISION",
          decision_id: payload.data.decision_id,
          choice: "approve",
        });
        // The connection drops; the client reconnects by itself.
        socket.io.engine.close();
      }
      if (event === "agent:completed") {
        clearTimeout(timer);
        const ping = await socket.emitWithAck("ping", {});
        const halt = await socket.emitWithAck("command", { type: "HALT" });
        socket.disconnect();
        resolve({ seen, connects, ping, halt });
      }
    });
  });
}

function refusal(sessionId) {
  return new Promise((resolve) => {
    const socket = io(base, { query: { session_id: sessionId }, auth: { token: key } });
    socket.on("connect_error", (e) => {
      socket.disconnect();
      resolve(e.message);
    });
    socket.on("connect", () => {
      socket.disconnect();
      resolve("connected");
    });
  });
}

(async () => {
  const created = await fetch(`${base}/api/sessions`, {
    method: "POST",
    headers,
    body: JSON.stringify({ prompt: "Write a.txt" }),
  });
  const session = await created.json();
  const live = await follow(session.session_id, { dropAfterDecision: true });
  report.live = live.seen;
  report.connects = live.connects;
  report.ping = live.ping;
  report.halt = live.halt;
  report.full = (await follow(session.session_id)).seen;
  report.unknown_session = await refusal("no-such-session");
  console.log(JSON.stringify(report));
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
