// A TLS-terminating TCP proxy built on Node's tls module: accepts TLS on a
// free port and forwards the plaintext to 127.0.0.1:UPSTREAM. When the
// upstream closes, it destroys the TLS socket WITHOUT sending close_notify
// (what browsers and many servers do), so a spec can check that luvws
// treats that as a clean end after a completed WebSocket close handshake.
//
//   node tls_proxy.js --upstream PORT --cert CERT --key KEY [--lifetime S]
// Prints {"event":"listening","port":N} and one {"event":"dropped"} line
// per connection it ends without close_notify.
'use strict';
const tls = require('tls');
const net = require('net');
const fs = require('fs');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const upstream = Number(opt('--upstream'));
const lifetime = Number(opt('--lifetime', '30'));
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const server = tls.createServer({
  cert: fs.readFileSync(opt('--cert')),
  key: fs.readFileSync(opt('--key')),
}, (client) => {
  const up = net.connect(upstream, '127.0.0.1');
  client.on('data', (d) => up.write(d));
  up.on('data', (d) => client.write(d));
  up.on('end', () => {
    // Let the last bytes out, then drop TCP with no close_notify.
    setTimeout(() => { client.destroy(); say({ event: 'dropped' }); }, 20);
  });
  up.on('error', () => client.destroy());
  client.on('error', () => up.destroy());
  client.on('end', () => up.end());
});
server.listen(0, '127.0.0.1', () => say({ event: 'listening', port: server.address().port }));
setTimeout(() => process.exit(0), lifetime * 1000).unref();
process.on('SIGTERM', () => process.exit(0));
