'use strict';
// The benchmark's load generator: one Node.js process (npm `ws` and node's http agent), pinned
// to its own core by the harness. Python clients could not keep up with the fastest server; see
// docs/benchmarks.md.
//
// Usage: node loadgen.js '<json config>'. It prints JSON lines on stdout:
//   {"mark": NAME}                 the harness snapshots the server's CPU time and RSS
//   {"mark": NAME, "wait": true}   ... and answers with a line on stdin before we go on
//   {"result": {...}}              the last line: counts over the measured window, and our CPU
// and exits non-zero with a message on stderr when a server answers something unexpected.
//
// Every message sent is exactly 32 characters of [0-9a-z-], so a SockJS frame of k messages,
// a["...",...,"..."], is 35 * k + 2 characters long and can be counted without parsing it.
const http = require('http');
const readline = require('readline');
const WebSocket = require('ws');

const config = JSON.parse(process.argv[2]);
const HOST = '127.0.0.1';
const PAYLOAD = 'echo-0123456789abcdefghijklmnopq';
const SOCKJS_PAYLOAD = JSON.stringify([PAYLOAD]);
const CONNECT_CONCURRENCY = 200;

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
// Streaming responses get connections of their own, never reused: a server may close one at its
// response limit while answering "Connection: keep-alive" (aiohttp-sockjs does), and a request
// sent on it would be reset.
const streamingAgent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
let running = true;

function emit(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

function fail(message) {
  process.stderr.write(`loadgen: ${message}\n`);
  process.exit(1);
}

const acks = [];
readline.createInterface({ input: process.stdin }).on('line', () => {
  const resolve = acks.shift();
  if (resolve) resolve();
});

function mark(name, wait) {
  emit(wait ? { mark: name, wait: true } : { mark: name });
  return wait ? new Promise((resolve) => acks.push(resolve)) : Promise.resolve();
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const now = () => Number(process.hrtime.bigint()) / 1e6; // milliseconds

let sessionCounter = 0;
function sessionId() {
  sessionCounter += 1;
  return `${process.pid.toString(36)}x${sessionCounter.toString(36)}`;
}

function url(template) {
  return `ws://${HOST}:${config.port}${template.replace('{session}', sessionId())}`;
}

// How many messages a websocket frame carries: a SockJS `a` frame holds several, `o` and `h`
// none; a raw websocket message is one.
function countFrame(data) {
  if (config.framing === 'raw') return 1;
  const kind = data[0];
  if (kind === 0x61) return messagesIn(data); // 'a'
  if (kind === 0x68 || kind === 0x6f) return 0; // 'h', 'o'
  fail(`unexpected frame ${data.toString().slice(0, 80)}`);
  return 0;
}

// The number of messages in an `a` frame (a string or a buffer) of 32-character messages.
function messagesIn(frame) {
  const count = (frame.length - 2) / 35;
  if (!Number.isInteger(count)) fail(`not a frame of 32-character messages: ${frame.toString().slice(0, 80)}`);
  return count;
}

const outgoing = () => (config.framing === 'raw' ? PAYLOAD : SOCKJS_PAYLOAD);

// Open a websocket; resolve once open, and once the server's first message (SockJS `o`) is in
// when `config.hello` says one comes.
function openSocket(template) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url(template), { perMessageDeflate: false });
    socket.on('error', reject);
    if (config.hello) socket.once('message', () => resolve(socket));
    else socket.once('open', () => resolve(socket));
  });
}

async function openMany(count, template) {
  const sockets = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      next += 1;
      sockets.push(await openSocket(template));
    }
  }
  await Promise.all(Array.from({ length: Math.min(count, CONNECT_CONCURRENCY) }, worker));
  return sockets;
}

// The measured window: `warmup` seconds after the load is on, then `duration` seconds.
async function measure(counter) {
  await sleep(config.warmup);
  await mark('start', false);
  const count0 = counter();
  const cpu0 = process.cpuUsage();
  const time0 = now();
  await sleep(config.duration);
  const count1 = counter();
  const cpu = process.cpuUsage(cpu0);
  const seconds = (now() - time0) / 1000;
  await mark('end', false);
  return { count: count1 - count0, seconds, cpu: (cpu.user + cpu.system) / 1e6 / seconds, start: time0 };
}

function post(path, body) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: HOST,
        port: config.port,
        method: 'POST',
        path,
        agent,
        headers: { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) },
      },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString() }));
        response.on('error', reject);
      },
    );
    request.on('error', (error) => reject(new Error(`POST ${path}: ${error.message}`)));
    request.end(body);
  });
}

// -- scenarios -----------------------------------------------------------------------------

// `sessions` websockets, each keeping `inflight` messages on the way; every message that comes
// back is sent again.
async function echo() {
  const sockets = await openMany(config.sessions, config.path);
  let received = 0;
  const message = outgoing();
  for (const socket of sockets) {
    socket.on('message', (data) => {
      const count = countFrame(data);
      received += count;
      for (let i = 0; i < count; i++) socket.send(message);
    });
    for (let i = 0; i < config.inflight; i++) socket.send(message);
  }
  return measure(() => received);
}

// `sessions` websockets; the first sends a message, the server sends it to all; once all have
// it, the next one goes. The time from send to the last arrival is recorded per message.
async function broadcast() {
  const sockets = await openMany(config.sessions, config.path);
  const everyone = sockets.length;
  let arrived = 0;
  let sent = 0;
  let sentAt = 0;
  let completed = 0;
  const times = []; // [when completed, time until all had it]
  function next() {
    arrived = 0;
    sent += 1;
    sentAt = now();
    const text = String(sent).padStart(32, '0');
    sockets[0].send(config.framing === 'raw' ? text : JSON.stringify([text]));
  }
  for (const socket of sockets) {
    socket.on('message', (data) => {
      arrived += countFrame(data);
      if (arrived === everyone) {
        const done = now();
        times.push([done, done - sentAt]);
        completed += 1;
        setImmediate(next);
      } else if (arrived > everyone) {
        fail(`broadcast ${sent} arrived ${arrived} times to ${everyone} sessions`);
      }
    });
  }
  next();
  const result = await measure(() => completed);
  const end = result.start + result.seconds * 1000;
  result.latencies = times.filter(([done]) => done >= result.start && done <= end).map(([, took]) => took);
  result.deliveries = result.count * everyone;
  return result;
}

// `sessions` idle websockets, in two steps so that the server's one-time costs (imports, first
// buffers) fall before the first snapshot: `warm` sessions, a snapshot, `sessions` more, another.
async function idle() {
  const warm = await openMany(config.warm, config.path);
  await mark('base', true);
  const cpu0 = process.cpuUsage();
  const time0 = now();
  const more = await openMany(config.sessions, config.path);
  const seconds = (now() - time0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await mark('loaded', true);
  return { count: more.length, warm: warm.length, seconds, cpu: (cpu.user + cpu.system) / 1e6 / seconds };
}

// `concurrency` loops of: open a websocket, wait for the server's first message, close.
async function setup() {
  let done = 0;
  async function loop() {
    while (running) {
      const socket = await openSocket(config.path);
      await new Promise((resolve) => {
        socket.once('close', resolve);
        socket.close(1000);
      });
      done += 1;
    }
  }
  const loops = Array.from({ length: config.concurrency }, loop);
  const result = await measure(() => done);
  running = false;
  await Promise.all(loops);
  return result;
}

// `clients` pollers: each opens a session, then sends a message (xhr_send) and polls it back
// (xhr), one round trip after the other.
async function polling() {
  let trips = 0;
  async function client() {
    const base = `${config.path}/000/${sessionId()}`;
    const opened = await post(`${base}/xhr`, '');
    if (opened.body !== 'o\n') fail(`xhr open answered ${opened.status} ${opened.body.slice(0, 80)}`);
    while (running) {
      const sent = await post(`${base}/xhr_send`, SOCKJS_PAYLOAD);
      if (sent.status !== 204 && sent.status !== 200) fail(`xhr_send answered ${sent.status}`);
      let polled = await post(`${base}/xhr`, '');
      while (polled.body === 'h\n') polled = await post(`${base}/xhr`, '');
      if (polled.body[0] !== 'a') fail(`xhr answered ${polled.status} ${polled.body.slice(0, 80)}`);
      trips += 1;
    }
  }
  const clients = Array.from({ length: config.clients }, client);
  const result = await measure(() => trips);
  running = false;
  await Promise.all(clients);
  return result;
}

// `receivers` xhr_streaming sessions on the flood service; each asks (xhr_send ["N"]) for
// `batch` messages at a time and keeps up to two batches owed, so the server is never idle and
// never buffers without bound. A response that ends (the server's response limit) is reopened.
async function streaming() {
  let received = 0;
  function receiver() {
    const base = `${config.path}/000/${sessionId()}`;
    let owed = 0;
    let asking = false;
    function ask() {
      if (asking || !running || owed > config.batch) return;
      asking = true;
      owed += config.batch;
      post(`${base}/xhr_send`, JSON.stringify([String(config.batch)])).then((answer) => {
        if (answer.status !== 204 && answer.status !== 200) fail(`xhr_send answered ${answer.status}`);
        asking = false;
        ask();
      }, fail);
    }
    function open() {
      let rest = '';
      const path = `${base}/xhr_streaming`;
      // With a length, as browsers send it: a chunked empty body may still be unread when the
      // server closes at its response limit, and the kernel would then reset the connection.
      const headers = { 'Content-Length': '0' };
      const request = http.request({ host: HOST, port: config.port, method: 'POST', path, agent: streamingAgent, headers });
      request.on('error', (error) => running && fail(`xhr_streaming: ${error.message}`));
      request.on('response', (response) => {
        response.on('data', (chunk) => {
          const lines = (rest + chunk.toString()).split('\n');
          rest = lines.pop();
          for (const line of lines) {
            if (line[0] === 'a') {
              const count = messagesIn(line);
              received += count;
              owed -= count;
            } else if (line === 'o') {
              ask();
            } else if (line[0] !== 'h') {
              fail(`xhr_streaming sent ${line.slice(0, 80)}`);
            }
          }
          ask();
        });
        response.on('end', () => running && open());
        response.on('error', (error) => running && fail(String(error)));
      });
      request.end();
    }
    open();
  }
  for (let i = 0; i < config.receivers; i++) receiver();
  const result = await measure(() => received);
  running = false;
  return result;
}

const scenarios = { echo, broadcast, idle, setup, polling, streaming };

scenarios[config.mode]().then(
  (result) => {
    emit({ result });
    process.exit(0);
  },
  (error) => fail(error && error.stack ? error.stack : String(error)),
);
