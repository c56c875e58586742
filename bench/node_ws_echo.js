// bench/node_ws_echo.js: Node's `ws` echo server for `make bench`.
// node node_ws_echo.js PORT [--tls CERT KEY]
// Echoes every message back with its type; no compression; 64 MiB messages.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node node_ws_echo.js PORT [--tls CERT KEY]');
  process.exit(2);
}
const tls = process.argv[3] === '--tls';
const opts = { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 };

let server;
if (tls) {
  const fs = require('fs');
  server = require('https').createServer({
    cert: fs.readFileSync(process.argv[4]),
    key: fs.readFileSync(process.argv[5]),
  });
  opts.server = server;
} else {
  opts.host = '127.0.0.1';
  opts.port = port;
}

const wss = new WebSocketServer(opts);
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
const ready = () => console.log(`node-ws (ws ${require('ws/package.json').version}) listening on ${port}${tls ? ' (tls)' : ''}`);
if (tls) server.listen(port, '127.0.0.1', ready);
else wss.on('listening', ready);
