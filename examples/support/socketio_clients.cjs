// The clients of examples/seedbench.rs: N socket.io-client 4 connections (WebSocket
// transport, one manager each) to one session's room, then HALT / RESUME cycles sent by the
// first client. It measures connection set-up (first io() to the last `connected`), `ping`
// acknowledgements, command acknowledgements, and each client's delay from a command sent to
// its effect's event (`execution:halted` / `execution:resumed`) arriving. Prints JSON.
// The clients connect from several loopback addresses, 100 from each.
//
//   node socketio_clients.cjs URL TOKEN SESSION_ID CLIENTS CYCLES

const { io } = require("socket.io-client");

const [url, token, session, clientsArg, cyclesArg] = process.argv.slice(2);
const clients = Number(clientsArg);
const cycles = Number(cyclesArg);
const LIMIT_MS = 60000;
const PER_ADDRESS = 100;

const now = () => Number(process.hrtime.bigint()) / 1e6;
const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const summary = (values) => ({
  p50: percentile(values, 50),
  p99: percentile(values, 99),
  n: values.length,
});

function deadline(promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${LIMIT_MS} ms`)), LIMIT_MS)),
  ]);
}

(async () => {
  const sockets = [];
  const waiting = new Map(); // event name -> [resolve per client]
  const started = now();
  const connected = [];
  for (let i = 0; i < clients; i++) {
    const socket = io(url, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      // 100 clients per loopback source address (127.0.0.2, 127.0.0.3...): a server counts
      // the connections of one address that have not authenticated yet against a limit.
      localAddress: `127.0.0.${2 + Math.floor(i / PER_ADDRESS)}`,
      query: { session_id: session },
      auth: { token },
    });
    connected.push(
      new Promise((resolve, reject) => {
        socket.once("connected", resolve);
        socket.once("connect_error", reject);
      }),
    );
    for (const name of ["execution:halted", "execution:resumed"]) {
      socket.on(name, () => {
        const arrived = now();
        const list = waiting.get(name);
        if (list && list[i]) {
          const resolve = list[i];
          list[i] = null;
          resolve(arrived);
        }
      });
    }
    sockets.push(socket);
  }
  await deadline(Promise.all(connected), "connecting");
  const connectMs = now() - started;

  const pings = [];
  for (let i = 0; i < 200; i++) {
    const sent = now();
    await sockets[0].timeout(LIMIT_MS).emitWithAck("ping", {});
    pings.push(now() - sent);
  }

  const acks = [];
  const events = [];
  for (let cycle = 0; cycle < cycles; cycle++) {
    for (const [type, name] of [["HALT", "execution:halted"], ["RESUME", "execution:resumed"]]) {
      const arrivals = sockets.map(
        (_, i) =>
          new Promise((resolve) => {
            if (!waiting.has(name)) waiting.set(name, []);
            waiting.get(name)[i] = resolve;
          }),
      );
      const sent = now();
      const ack = await sockets[0].timeout(LIMIT_MS).emitWithAck("command", { type });
      acks.push(now() - sent);
      if (!ack.success) throw new Error(`${type} refused: ${JSON.stringify(ack)}`);
      for (const arrived of await deadline(Promise.all(arrivals), `${name} reaching every client`)) {
        events.push(arrived - sent);
      }
    }
  }
  for (const socket of sockets) socket.disconnect();
  console.log(
    JSON.stringify({
      clients,
      connect_ms: connectMs,
      ping_ms: summary(pings),
      command_ack_ms: summary(acks),
      command_to_event_ms: summary(events),
    }),
  );
  process.exit(0);
})().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
