'use strict';
// What node_client.js and node_server.js share: the JSON event log on stdout
// and the payload helpers. Contract: spec/peers/README.md.
const crypto = require('crypto');

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

// Code points, so a surrogate pair is never cut in half.
const head = (s, n) => Array.from(s).slice(0, n).join('');

function messageEvent(data, isBinary) {
  const sha256 = crypto.createHash('sha256').update(data).digest('hex');
  if (isBinary) return { event: 'message', type: 'binary', length: data.length, sha256 };
  return { event: 'message', type: 'text', length: data.length, sha256, text: head(data.toString('utf8'), 200) };
}

// Control-frame payload: text when it is valid UTF-8 (else null), and hex.
function payloadFields(buf) {
  const text = buf.toString('utf8');
  const valid = Buffer.from(text, 'utf8').equals(buf);
  return { payload: valid ? text : null, hex: buf.toString('hex') };
}

// n bytes, byte i = i % 251.
function pattern(n) {
  const block = Buffer.alloc(251);
  for (let i = 0; i < 251; i++) block[i] = i;
  return n > 0 ? Buffer.alloc(n, block) : Buffer.alloc(0);
}

module.exports = { emit, messageEvent, payloadFields, pattern };
