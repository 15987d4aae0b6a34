'use strict';
// Clients of the scale run (benchmarks/scale.py): one Node.js process holds `count` idle
// websocket sessions from one loopback source address, then reports when every one of them
// has each broadcast message.
//
// Usage: node scale_clients.js '<json config>' with {port, kind: "sockjs"|"bare", count, first,
// address}.  Lines on stdout: {"ready": n} once every socket is open (and, for SockJS, has its
// "o"); {"round": k, "last": ms} when the last socket got message k (ms since the epoch,
// sub-millisecond).  Lines on stdin: "send K" makes this process send message K on its first
// socket (answered by {"sent": K, "at": ms}); "quit" closes everything.
const readline = require('readline');
const WebSocket = require('ws');

const config = JSON.parse(process.argv[2]);
const CONCURRENCY = 100;
const ATTEMPTS = 3; // a connection refused in the storm of connects is tried again
const now = () => performance.timeOrigin + performance.now();
const sockets = [];
const missing = new Map(); // round -> sockets still waiting for it

function emit(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

function connect(index) {
  const id = (config.first + index).toString(36);
  const path = config.kind === 'sockjs' ? `/broadcast/000/${id}/websocket` : `/broadcast/${id}`;
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${config.port}${path}`, {
      localAddress: config.address,
      perMessageDeflate: false,
    });
    let isOpen = false;
    socket.once('message', (data) => {
      if (data.toString() !== 'o') fail(`expected "o", got ${data}`);
      isOpen = true;
      socket.on('message', (more) => received(more.toString()));
      resolve(socket);
    });
    socket.on('error', (error) => { if (!isOpen) reject(error); });
    socket.once('close', (code, reason) => {
      if (isOpen && !config.quitting) fail(`socket ${id} closed by the server: ${code} ${reason}`);
    });
  });
}

async function open(index) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect(index);
    } catch (error) {
      if (attempt === ATTEMPTS) throw error;
    }
  }
}

function received(text) {
  const match = /scale-(\d+)-/.exec(text);
  if (match === null) return;
  const round = Number(match[1]);
  const left = (missing.get(round) ?? sockets.length) - 1;
  missing.set(round, left);
  if (left === 0) emit({ round, last: now() });
}

function fail(message) {
  process.stderr.write(`scale_clients: ${message}\n`);
  process.exit(1);
}

async function main() {
  for (let start = 0; start < config.count; start += CONCURRENCY) {
    const batch = [];
    for (let index = start; index < Math.min(config.count, start + CONCURRENCY); index++) batch.push(open(index));
    sockets.push(...(await Promise.all(batch)));
  }
  emit({ ready: sockets.length });
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const [command, argument] = line.split(' ');
    if (command === 'send') {
      const text = `scale-${argument}-` + 'x'.repeat(20);
      emit({ sent: Number(argument), at: now() });
      sockets[0].send(config.kind === 'sockjs' ? JSON.stringify([text]) : text);
    } else if (command === 'quit') {
      config.quitting = true;
      for (const socket of sockets) socket.terminate();
      process.exit(0);
    }
  });
}

main().catch((error) => fail(error.message));
