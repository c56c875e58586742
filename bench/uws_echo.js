// bench/uws_echo.js: uWebSockets.js echo server for `make bench`.
// node uws_echo.js PORT [--tls CERT KEY]
// uWebSockets.js comes from the npm package `uwebsockets` (a repackaging of
// uWebSockets.js's prebuilt binaries; the upstream project installs from
// GitHub, which is not reachable here).
// Echoes every message back with its type; no compression; 64 MiB messages.
'use strict';
const uWS = require('uwebsockets');

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node uws_echo.js PORT [--tls CERT KEY]');
  process.exit(2);
}
const tls = process.argv[3] === '--tls';
const app = tls
  ? uWS.SSLApp({ cert_file_name: process.argv[4], key_file_name: process.argv[5] })
  : uWS.App();

app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024 * 1024,
  // uWS drops a message sent while more than maxBackpressure bytes are
  // queued: make room for several 4 MiB echoes so nothing is dropped.
  maxBackpressure: 256 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  idleTimeout: 0,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary, false);
  },
}).listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`uws: cannot listen on ${port}`);
    process.exit(1);
  }
  console.log(`uws (npm uwebsockets ${require('uwebsockets/package.json').version}) listening on ${port}${tls ? ' (tls)' : ''}`);
});
