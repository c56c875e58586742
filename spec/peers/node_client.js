#!/usr/bin/env node
// Scripted WebSocket client around Node's `ws` (npm, pinned in
// package-lock.json). Contract: spec/peers/README.md.
// Every event is one JSON line on stdout. Diagnostics go to stderr.
// Exit status: 0 all steps ran, 1 a step or the connection failed,
// 2 bad usage, 3 --lifetime expired.
'use strict';

const fs = require('fs');
const path = require('path');
const WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));
const { emit, messageEvent, payloadFields, pattern } = require('./node_common');

const STEP_TIMEOUT = 10000;

function usage(msg) {
  process.stderr.write(`node_client: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = {
    url: null, ca: null, insecure: false, cert: null, subprotocols: null, headers: [],
    compress: 'off', maxSize: 64 * 1024 * 1024, lifetime: 60, script: null
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${k} needs a value`);
      return argv[++i];
    };
    switch (k) {
      case '--url': a.url = next(); break;
      case '--ca': a.ca = next(); break;
      case '--insecure': a.insecure = true; break;
      case '--cert': a.cert = [next(), next()]; break;
      case '--subprotocols': a.subprotocols = next().split(','); break;
      case '--header': a.headers.push(next()); break;
      case '--compress': a.compress = next(); break;
      case '--max-size': a.maxSize = Number(next()); break;
      case '--lifetime': a.lifetime = Number(next()); break;
      case '--script': a.script = next(); break;
      default: usage(`unknown argument ${k}`);
    }
  }
  if (!a.url) usage('--url is required');
  if (a.compress !== 'on' && a.compress !== 'off') usage('--compress on|off');
  return a;
}

function withTimeout(promise, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what} within ${STEP_TIMEOUT / 1000} s`)), STEP_TIMEOUT); })
  ]).finally(() => clearTimeout(t));
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const steps = args.script ? JSON.parse(fs.readFileSync(args.script, 'utf8')) : [];

  setTimeout(() => { emit({ event: 'error', message: 'lifetime expired' }); process.exit(3); }, args.lifetime * 1000).unref();

  const headers = {};
  for (const h of args.headers) {
    const c = h.indexOf(':');
    if (c < 0) usage(`bad --header ${JSON.stringify(h)}`);
    const name = h.slice(0, c).trim();
    const value = h.slice(c + 1).trim();
    // A repeated name becomes an array: Node's http sends one line per value.
    if (name in headers) headers[name] = [].concat(headers[name], value);
    else headers[name] = value;
  }
  const opts = {
    headers,
    maxPayload: args.maxSize,
    perMessageDeflate: args.compress === 'on', // true = ws's default offer
    handshakeTimeout: STEP_TIMEOUT,
    closeTimeout: STEP_TIMEOUT
  };
  if (args.url.startsWith('wss:')) {
    if (args.ca) opts.ca = fs.readFileSync(args.ca);
    if (args.insecure) opts.rejectUnauthorized = false;
    if (args.cert) { opts.cert = fs.readFileSync(args.cert[0]); opts.key = fs.readFileSync(args.cert[1]); }
  }

  const ws = new WebSocket(args.url, args.subprotocols || [], opts);

  // Messages are logged when they arrive and queued for `expect`.
  const queue = [];
  let waiter = null; // resolve function of a pending expect
  let closeInfo = null;
  let closeWaiters = [];
  let pongWaiters = [];
  let upgradeRes = null;
  let opened = false;

  ws.on('upgrade', (res) => { upgradeRes = res; });
  ws.on('unexpected-response', (req, res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      const hdrs = {};
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const n = res.rawHeaders[i].toLowerCase();
        hdrs[n] = n in hdrs ? `${hdrs[n]}, ${res.rawHeaders[i + 1]}` : res.rawHeaders[i + 1];
      }
      emit({ event: 'rejected', status: res.statusCode, body: Buffer.concat(chunks).toString('utf8'), headers: hdrs });
      process.exit(1);
    });
    res.on('error', () => {});
  });
  ws.on('message', (data, isBinary) => {
    emit(messageEvent(data, isBinary));
    if (waiter) { const w = waiter; waiter = null; w(true); } else queue.push(true);
  });
  ws.on('ping', (data) => emit({ event: 'ping', ...payloadFields(data) }));
  ws.on('pong', (data) => {
    emit({ event: 'pong', ...payloadFields(data) });
    const hex = data.toString('hex');
    pongWaiters = pongWaiters.filter(([h, resolve]) => (h === hex ? (resolve(), false) : true));
  });
  ws.on('error', (err) => emit({ event: 'error', message: err.message, code: err.code || null }));
  ws.on('close', (code, reason) => {
    if (!opened) process.exit(1); // failed before open (logged as error)
    closeInfo = { code, reason: reason.toString('utf8') };
    emit({ event: 'close', ...closeInfo });
    if (waiter) { const w = waiter; waiter = null; w(false); }
    closeWaiters.forEach((w) => w());
    closeWaiters = [];
  });

  const closed = () => (closeInfo ? Promise.resolve() : new Promise((r) => closeWaiters.push(r)));
  const sendP = (data, o) => new Promise((resolve, reject) => ws.send(data, o, (err) => (err ? reject(err) : resolve())));

  async function runStep(step) {
    if ('send' in step) {
      if (step.send === 'text') await sendP(step.data, { binary: false });
      else if (step.send === 'binary') await sendP('hex' in step ? Buffer.from(step.hex, 'hex') : pattern(step.size), { binary: true });
      else if (step.send === 'fragments') {
        const parts = step.parts;
        if (!parts.length) throw new Error('fragments: empty parts');
        await Promise.all(parts.map((p, i) => sendP(p, { binary: false, fin: i === parts.length - 1 })));
      } else throw new Error(`unknown send kind ${step.send}`);
    } else if ('expect' in step) {
      let got;
      if (queue.length) got = queue.shift();
      else if (closeInfo) got = false;
      else got = await withTimeout(new Promise((r) => { waiter = r; }), 'no message');
      if (!got) throw new Error('connection closed while expecting a message');
    } else if ('ping' in step) {
      const buf = Buffer.from(step.ping, 'utf8');
      const p = new Promise((resolve) => pongWaiters.push([buf.toString('hex'), resolve]));
      ws.ping(buf);
      await withTimeout(p, 'no pong');
    } else if ('close' in step) {
      ws.close(step.close, step.reason || '');
      await withTimeout(closed(), 'close handshake not finished');
      if (closeInfo.code === 1006) throw new Error('close handshake did not complete');
    } else if ('wait_close' in step) {
      await withTimeout(closed(), 'server did not close');
    } else if ('sleep' in step) {
      await new Promise((r) => setTimeout(r, step.sleep * 1000));
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }

  ws.on('open', async () => {
    opened = true;
    const ext = upgradeRes && upgradeRes.headers['sec-websocket-extensions'];
    emit({ event: 'open', subprotocol: ws.protocol || null, extensions: ext || null, status: upgradeRes ? upgradeRes.statusCode : 101 });
    let status = 0;
    for (let i = 0; i < steps.length; i++) {
      try {
        await runStep(steps[i]);
      } catch (err) {
        emit({ event: 'error', message: `step ${i + 1} ${JSON.stringify(steps[i]).slice(0, 100)}: ${err.message}` });
        status = 1;
        break;
      }
    }
    if (!closeInfo) {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, '');
      try { await withTimeout(closed(), 'close'); } catch (e) { /* exit anyway */ }
    }
    process.exit(status);
  });
}

main();
