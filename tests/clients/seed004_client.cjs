// Seed 004's dashboard side with socket.io-client 4 from npm (as its dashboard connects):
// start a session, join its room, answer its decision point, lose the connection and let
// the client reconnect on its own, handing victor the last seq it saw (`cursor`) or, with
// Socket.IO's connection state recovery (`recovery`), the pid and offset victor gave it.
// tests/seeds.rs runs it against a real victor (NODE_PATH names npm's global modules) and
// checks the JSON report it prints on its last line.
//
//   node seed004_client.cjs URL API_KEY [cursor|recovery]

const { io } = require("socket.io-client");

const [base, key, mode = "cursor"] = process.argv.slice(2);
const recovery = mode === "recovery";
const headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/json" };
const report = {};

function follow(sessionId, { dropAfterDecision = false, auth = {} } = {}) {
  return new Promise((resolve, reject) => {
    const seen = [];
    let lastSeq = 0;
    let connects = 0;
    const recovered = [];
    const greeted = [];
    let droppedAt = null;
    const gaps = [];
    const socket = io(base, {
      query: { session_id: sessionId },
      // Recovery: the client adds the pid and last offset itself. Otherwise a function,
      // called at every (re)connection: victor resumes after the last seq seen.
      auth: recovery ? { token: key, recovery: true, ...auth } : (cb) => cb({ token: key, after: lastSeq }),
      // With recovery, a gap long enough for the agent to go on without the client.
      reconnectionDelay: recovery ? 1500 : 100,
      reconnectionDelayMax: recovery ? 1500 : 200,
      randomizationFactor: 0,
    });
    const timer = setTimeout(() => reject(new Error(`timed out: ${JSON.stringify(seen)}`)), 30000);
    socket.on("connect", () => {
      connects += 1;
      recovered.push(Boolean(socket.recovered));
      if (droppedAt !== null) gaps.push([droppedAt, Date.now()]);
    });
    socket.on("connect_error", (e) => reject(e));
    socket.onAny(async (event, payload, offset) => {
      if (event === "connected") {
        greeted.push(payload.recovered);
        return;
      }
      // [name, seq, offset (recovery), server time in ms]
      seen.push([event, payload.seq, offset ?? null, Date.parse(payload.timestamp)]);
      lastSeq = payload.seq;
      if (event === "decision:point" && dropAfterDecision) {
        report.decision_ack = await socket.emitWithAck("command", {
          type: "DECISION",
          decision_id: payload.data.decision_id,
          choice: "approve",
        });
        // The connection drops; the client reconnects by itself.
        droppedAt = Date.now();
        socket.io.engine.close();
      }
      if (event === "agent:completed") {
        clearTimeout(timer);
        const ping = await socket.emitWithAck("ping", {});
        const halt = await socket.emitWithAck("command", { type: "HALT" });
        socket.disconnect();
        resolve({ seen, connects, recovered, greeted, gaps, ping, halt });
      }
    });
  });
}

// Recovery before any event arrived: connected after the session's last seq, dropped at
// once, back with a pid and no offset.
function quiet(sessionId, after) {
  return new Promise((resolve, reject) => {
    const socket = io(base, {
      query: { session_id: sessionId },
      auth: { token: key, recovery: true, after },
      reconnectionDelay: 100,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
    });
    const events = [];
    const recovered = [];
    const timer = setTimeout(() => reject(new Error("no reconnection")), 10000);
    socket.onAny((event) => event !== "connected" && events.push(event));
    socket.on("connect_error", reject);
    socket.on("connect", () => {
      recovered.push(Boolean(socket.recovered));
      if (recovered.length === 1) return socket.io.engine.close();
      setTimeout(() => {
        clearTimeout(timer);
        socket.disconnect();
        resolve({ recovered, events });
      }, 300);
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
  // Which events happened while the client was away.
  report.while_away = live.seen
    .filter(([, , , at]) => live.gaps.some(([from, to]) => at > from && at < to))
    .map(([event]) => event);
  const times = (seen) => seen.map(([event, seq, offset]) => [event, seq, offset]);
  report.live = times(live.seen);
  report.connects = live.connects;
  report.recovered = live.recovered;
  report.greeted = live.greeted;
  report.ping = live.ping;
  report.halt = live.halt;
  report.full = times((await follow(session.session_id)).seen);
  if (recovery) {
    // A pid that is no socket id, and an offset of no session: a connection of its own.
    const forged = await follow(session.session_id, { auth: { pid: "not-a-pid", offset: "x:1:0" } });
    report.forged = { greeted: forged.greeted, first: forged.seen[0][0], count: forged.seen.length };
    report.quiet = await quiet(session.session_id, live.seen[live.seen.length - 1][1]);
  }
  report.unknown_session = await refusal("no-such-session");
  console.log(JSON.stringify(report));
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
