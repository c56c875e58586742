// bench/game_node_ws.js: the game-server scenario of `make bench` for
// Node's ws:  node game_node_ws.js PORT
// 20 times a second, one 64-byte binary message to every client (ws has no
// topics: a loop over wss.clients). The first 8 bytes are the send time,
// process.hrtime.bigint() (libuv's uv_hrtime: CLOCK_MONOTONIC on Linux, the
// clock luv's uv.hrtime() and the load generator read), big-endian.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node game_node_ws.js PORT');
  process.exit(2);
}
const HZ = 20, SIZE = 64;

const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 1024, perMessageDeflate: false });
wss.on('connection', (ws) => ws.on('error', () => {}));
// Ticks on a fixed schedule (tick k at start + k / HZ), as a game server's
// fixed time step does (a repeating timer would drift by its wake-up
// delay). A server that falls behind sends the next tick 5 ms after the
// last one ends (time for its loop to accept and read: without it Node's ws
// stops accepting new connections once saturated) and does not make up the
// ones it missed: the load generator reports the ticks per second reached.
const period = 1e9 / HZ;
let due = Number(process.hrtime.bigint()) + period;
function tick() {
  const msg = Buffer.alloc(SIZE);
  msg.writeBigUInt64BE(process.hrtime.bigint(), 0);
  for (const ws of wss.clients) ws.send(msg, { binary: true });
  const now = Number(process.hrtime.bigint());
  due += period;
  if (due < now + 5e6) due = now + 5e6; // behind
  setTimeout(tick, Math.round((due - now) / 1e6));
}
setTimeout(tick, 1000 / HZ);
wss.on('listening', () => console.log(`game node-ws (ws ${require('ws/package.json').version}) listening on ${port}, ${HZ} Hz, ${SIZE}-byte messages`));
