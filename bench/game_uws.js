// bench/game_uws.js: the game-server scenario of `make bench` for
// uWebSockets.js (npm package `uwebsockets`):  node game_uws.js PORT
// Every connection subscribes to "state"; 20 times a second app.publish
// sends one 64-byte binary message to all of them (uWS's own pub/sub).
// The first 8 bytes are the send time, process.hrtime.bigint() (libuv's
// uv_hrtime: CLOCK_MONOTONIC on Linux), big-endian.
'use strict';
const uWS = require('uwebsockets');

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node game_uws.js PORT');
  process.exit(2);
}
const HZ = 20, SIZE = 64;

const app = uWS.App();
app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1024,
  idleTimeout: 0,
  open: (ws) => ws.subscribe('state'),
}).listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`uws: cannot listen on ${port}`);
    process.exit(1);
  }
  console.log(`game uws (npm uwebsockets ${require('uwebsockets/package.json').version}) listening on ${port}, ${HZ} Hz, ${SIZE}-byte messages`);
});
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
  app.publish('state', msg, true, false);
  const now = Number(process.hrtime.bigint());
  due += period;
  if (due < now + 5e6) due = now + 5e6; // behind
  setTimeout(tick, Math.round((due - now) / 1e6));
}
setTimeout(tick, 1000 / HZ);
