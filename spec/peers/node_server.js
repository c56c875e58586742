#!/usr/bin/env node
// Echo/command WebSocket server around Node's `ws` (npm, pinned in
// package-lock.json). Contract: spec/peers/README.md.
// Every event is one JSON line on stdout (synchronous for pipes and files
// on Linux). Diagnostics go to stderr.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, 'node_modules', 'ws'));
const { emit, messageEvent, payloadFields, pattern } = require('./node_common');

function usage(msg) {
  process.stderr.write(`node_server: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = {
    host: '127.0.0.1', port: 0, subprotocols: null, decline: null,
    maxSize: 64 * 1024 * 1024, compress: 'off', tls: null, clientCa: null, lifetime: 60
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${k} needs a value`);
      return argv[++i];
    };
    switch (k) {
      case '--host': a.host = next(); break;
      case '--port': a.port = Number(next()); break;
      case '--subprotocols': a.subprotocols = next().split(','); break;
      case '--decline': a.decline = next(); break;
      case '--max-size': a.maxSize = Number(next()); break;
      case '--compress': a.compress = next(); break;
      case '--tls': a.tls = [next(), next()]; break;
      case '--client-ca': a.clientCa = next(); break;
      case '--lifetime': a.lifetime = Number(next()); break;
      default: usage(`unknown argument ${k}`);
    }
  }
  if (a.compress !== 'on' && a.compress !== 'off') usage('--compress on|off');
  return a;
}

function splitParts(text, n) {
  const cps = Array.from(text);
  n = Math.max(1, n);
  const q = Math.floor(cps.length / n);
  const r = cps.length % n;
  const parts = [];
  let pos = 0;
  for (let i = 0; i < n; i++) {
    const size = q + (i < r ? 1 : 0);
    parts.push(cps.slice(pos, pos + size).join(''));
    pos += size;
  }
  return parts;
}

function headersObject(rawHeaders) {
  const out = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    out[name] = name in out ? `${out[name]}, ${rawHeaders[i + 1]}` : rawHeaders[i + 1];
  }
  return out;
}

function runCommand(ws, req, text) {
  const rest = text.slice(4);
  const colon = rest.indexOf(':');
  const verb = colon < 0 ? rest : rest.slice(0, colon);
  const arg = colon < 0 ? '' : rest.slice(colon + 1);
  const cut = (s) => {
    const c = s.indexOf(':');
    return c < 0 ? [s, ''] : [s.slice(0, c), s.slice(c + 1)];
  };
  switch (verb) {
    case 'close': {
      const [code, reason] = cut(arg);
      ws.close(Number(code), reason);
      break;
    }
    case 'ping':
      ws.ping(arg);
      break;
    case 'fragments': {
      const [n, body] = cut(arg);
      const parts = splitParts(body, Number(n));
      parts.forEach((p, i) => ws.send(p, { binary: false, fin: i === parts.length - 1 }));
      break;
    }
    case 'big':
      ws.send(pattern(Number(arg)), { binary: true });
      break;
    case 'headers':
      ws.send(JSON.stringify(headersObject(req.rawHeaders)));
      break;
    default:
      throw new Error(`unknown command ${JSON.stringify(text)}`);
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));

  let server;
  if (args.tls) {
    const opts = { cert: fs.readFileSync(args.tls[0]), key: fs.readFileSync(args.tls[1]) };
    if (args.clientCa) {
      opts.ca = fs.readFileSync(args.clientCa);
      opts.requestCert = true;
      opts.rejectUnauthorized = true;
    }
    server = https.createServer(opts);
  } else {
    server = http.createServer();
  }
  server.on('request', (req, res) => { res.writeHead(426, { 'Content-Type': 'text/plain' }); res.end('upgrade required'); });
  // HTTP parse errors and (https) TLS handshake failures both land here.
  server.on('clientError', (err, socket) => {
    emit({ event: 'error', message: `clientError: ${(err.reason || err.message).trim()}`, code: err.code || null });
    socket.destroy();
  });

  const wsOpts = {
    server,
    maxPayload: args.maxSize,
    closeTimeout: 5000, // wait for the peer's close frame (python_server: close_timeout=5)
    perMessageDeflate: args.compress === 'on' // true = ws's default parameters
  };
  if (args.subprotocols) {
    const supported = args.subprotocols;
    // ws has no list of supported subprotocols (it would take the client's
    // first offer): pick the first of the client's offer that we support.
    wsOpts.handleProtocols = (offered) => {
      for (const p of offered) if (supported.includes(p)) return p;
      return false;
    };
  }
  if (args.decline) {
    const c = args.decline.indexOf(':');
    const status = Number(c < 0 ? args.decline : args.decline.slice(0, c));
    const body = c < 0 ? '' : args.decline.slice(c + 1);
    // ws's own rejection path: status line, Connection: close,
    // Content-Type: text/html, Content-Length, our header, body (an empty
    // body becomes the status text).
    wsOpts.verifyClient = (info, cb) => cb(false, status, body, { 'X-Declined': 'yes' });
  }
  const wss = new WebSocketServer(wsOpts);

  wss.on('headers', (headers, req) => {
    const ext = headers.filter((h) => /^sec-websocket-extensions:/i.test(h))
      .map((h) => h.slice(h.indexOf(':') + 1).trim());
    req.luvwsExtensions = ext.length ? ext.join(', ') : null;
  });

  wss.on('connection', (ws, req) => {
    emit({ event: 'connection', path: req.url, subprotocol: ws.protocol || null, extensions: req.luvwsExtensions });
    ws.on('message', (data, isBinary) => {
      emit(messageEvent(data, isBinary));
      if (!isBinary && data.length >= 4 && data.toString('latin1', 0, 4) === 'cmd:') {
        try {
          runCommand(ws, req, data.toString('utf8'));
        } catch (err) {
          emit({ event: 'error', message: `command failed: ${err.message}` });
        }
      } else {
        ws.send(data, { binary: isBinary });
      }
    });
    ws.on('ping', (data) => emit({ event: 'ping', ...payloadFields(data) }));
    ws.on('pong', (data) => emit({ event: 'pong', ...payloadFields(data) }));
    ws.on('error', (err) => emit({ event: 'error', message: err.message, code: err.code || null }));
    ws.on('close', (code, reason) => emit({ event: 'close', code, reason: reason.toString('utf8') }));
  });
  wss.on('error', (err) => emit({ event: 'error', message: err.message, code: err.code || null }));

  let exiting = false;
  const shutdown = (why) => {
    if (exiting) return;
    exiting = true;
    emit({ event: 'exit', reason: why });
    server.close();
    for (const ws of wss.clients) ws.close(1001, '');
    const done = () => process.exit(0);
    if (wss.clients.size === 0) return done();
    const t = setTimeout(done, 2000);
    t.unref();
    const check = setInterval(() => { if (wss.clients.size === 0) done(); }, 20);
    check.unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  setTimeout(() => shutdown('lifetime'), args.lifetime * 1000).unref();
  // Keep the process alive until shutdown even when the server is idle:
  // the listening server already does that; the timer above is unref'd so
  // that shutdown's exit is not delayed by it.

  server.listen(args.port, args.host, () => emit({ event: 'listening', port: server.address().port }));
}

main();
