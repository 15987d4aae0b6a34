'use strict';
// The benchmark's load generator: one Node.js process, pinned to its own core by the harness:
// websockets with npm `ws` (a broadcast's receivers with the minimal client below), HTTP with the
// small keep-alive client below (node's own http client costs about as much CPU per request as
// the fastest servers spend answering it). Python clients
// could not keep up with the fastest servers either; see docs/benchmarks.md.
//
// Usage: node loadgen.js '<json config>'. It prints JSON lines on stdout:
//   {"mark": NAME}                 the harness snapshots the server's CPU time and RSS
//   {"mark": NAME, "wait": true}   ... and answers with a line on stdin before we go on
//   {"mark": "ready", "wait": true} (with `together`) set up; the answer says go
//   {"result": {...}}              the last line: counts over the measured window, and our CPU
// and exits non-zero with a message on stderr when a server answers something unexpected.
//
// Every message sent is exactly 32 characters of [0-9a-z-], so a SockJS frame of k messages,
// a["...",...,"..."], is 35 * k + 2 characters long and can be counted without parsing it.
const net = require('net');
const readline = require('readline');
const WebSocket = require('ws');

const config = JSON.parse(process.argv[2]);
const HOST = '127.0.0.1';
const PAYLOAD = 'echo-0123456789abcdefghijklmnopq';
const SOCKJS_PAYLOAD = JSON.stringify([PAYLOAD]);
const CONNECT_CONCURRENCY = 200;

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

// With `ports` (several processes of one service), sessions go to each in turn.
function url(template) {
  const session = sessionId();
  const port = config.ports ? config.ports[sessionCounter % config.ports.length] : config.port;
  return { port, url: `ws://${HOST}:${port}${template.replace('{session}', session)}` };
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
    // What we receive is counted, never read: no UTF-8 validation to pay for.
    const target = url(template);
    const socket = new WebSocket(target.url, { perMessageDeflate: false, skipUTF8Validation: true });
    socket.port = target.port;
    socket.on('error', reject);
    if (config.hello) socket.once('message', () => resolve(socket));
    else socket.once('open', () => resolve(socket));
  });
}

// Where every light socket's reads land (see LightSocket).
const READ_BUFFER = Buffer.alloc(256 * 1024);

// A websocket client that does only what a receiver of broadcasts needs, over a plain TCP
// socket: the handshake, unmasked frames in (each payload handed over whole, as a Buffer; pings
// answered), and masked text frames out.  A delivery costs the load generator 10-12 us of CPU
// through it and 15-18 us through `ws` (`config.light` chooses it).
class LightSocket {
  constructor(port, path) {
    this.port = port;
    this.onMessage = null;
    this.buffered = null;
    this.upgraded = false;
    // Reads land in one buffer shared by every light socket (`onread`): no Buffer per read and
    // no 'data' event.  A payload is handed over as a view of it, valid until the listener
    // returns; what waits for the rest of its frame is copied out.
    const onread = { buffer: READ_BUFFER, callback: (n, buffer) => this.received(buffer.subarray(0, n)) };
    this.socket = net.connect({ port, host: HOST, onread });
    this.socket.setNoDelay(true);
    this.socket.write(
      `GET ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
  }

  on(event, listener) {
    if (event === 'message') this.onMessage = listener;
    else this.socket.on(event, listener);
  }

  once(event, listener) {
    if (event !== 'message') return this.socket.once(event, listener);
    const previous = this.onMessage;
    this.onMessage = (data) => {
      this.onMessage = previous;
      listener(data);
    };
    return this;
  }

  received(chunk) {
    let data = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    this.buffered = null;
    if (!this.upgraded) {
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) {
        this.buffered = Buffer.from(data);
        return;
      }
      const status = data.toString('latin1', 0, end).split('\r\n')[0];
      if (!status.startsWith('HTTP/1.1 101')) fail(`websocket handshake answered ${status}`);
      this.upgraded = true;
      data = data.subarray(end + 4);
      this.socket.emit('open');
    }
    let at = 0;
    while (data.length - at >= 2) {
      const opcode = data[at] & 0x0f;
      let length = data[at + 1] & 0x7f;
      let header = 2;
      if (length === 126) {
        if (data.length - at < 4) break;
        length = data.readUInt16BE(at + 2);
        header = 4;
      } else if (length === 127) {
        if (data.length - at < 10) break;
        length = Number(data.readBigUInt64BE(at + 2));
        header = 10;
      }
      if (data.length - at < header + length) break;
      const payload = data.subarray(at + header, at + header + length);
      at += header + length;
      if (opcode === 0x1 || opcode === 0x2) {
        if (this.onMessage !== null) this.onMessage(payload);
      } else if (opcode === 0x9) {
        this.frame(0xa, payload); // a ping: pong
      } else if (opcode === 0x8) {
        this.socket.end();
        return;
      }
    }
    if (at < data.length) this.buffered = Buffer.from(data.subarray(at));
  }

  // One frame to the server, masked as a client's must be (with a zero key: servers do not care).
  frame(opcode, payload) {
    let header;
    if (payload.length < 126) {
      header = Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0]);
    } else {
      header = Buffer.alloc(8);
      header[0] = 0x80 | opcode;
      header[1] = 0x80 | 126;
      header.writeUInt16BE(payload.length, 2);
    }
    this.socket.write(Buffer.concat([header, payload]));
  }

  send(text) {
    this.frame(0x1, Buffer.from(text));
  }
}

function openLight(template) {
  return new Promise((resolve, reject) => {
    const target = url(template);
    const socket = new LightSocket(target.port, target.url.slice(`ws://${HOST}:${target.port}`.length));
    socket.on('error', reject);
    if (config.hello) socket.once('message', () => resolve(socket));
    else socket.once('open', () => resolve(socket));
  });
}

async function openMany(count, template, open = openSocket) {
  const sockets = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      next += 1;
      sockets.push(await open(template));
    }
  }
  await Promise.all(Array.from({ length: Math.min(count, CONNECT_CONCURRENCY) }, worker));
  return sockets;
}

// The measured window: `warmup` seconds after the load is on, then `duration` seconds.
async function measure(counter) {
  // Run side by side with another load generator (`together`): the harness lets both go on at
  // once, so that their windows are the same seconds of the machine's life.
  if (config.together) await mark('ready', true);
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

// -- HTTP/1.1 over one keep-alive connection ------------------------------------------------

const CRLF2 = Buffer.from('\r\n\r\n');

// One TCP connection, one request at a time. `request` resolves with the status and the whole
// body; `stream` calls `onData` with each piece of the body as it comes and resolves at its end.
// Bodies with a Content-Length, chunked bodies and bodies ended by closing are all understood;
// a connection the server closes is opened again for the next request.
class HttpConnection {
  constructor() {
    this.socket = null;
    this.exchange = null; // the response being read
  }

  connect() {
    const socket = net.connect(config.port, HOST);
    socket.setNoDelay(true);
    this.socket = socket;
    this.input = Buffer.alloc(0);
    socket.on('data', (data) => {
      this.input = this.input.length ? Buffer.concat([this.input, data]) : data;
      this.read();
    });
    socket.on('error', (error) => this.socket === socket && this.exchange && this.exchange.reject(error));
    socket.on('close', () => {
      // A socket closed after its last exchange (no keep-alive) says nothing of the next one's.
      if (this.socket !== socket) return;
      this.socket = null;
      const exchange = this.exchange;
      if (exchange && exchange.mode === 'close') {
        this.exchange = null;
        exchange.resolve(exchange.result());
      } else if (exchange && running) {
        exchange.reject(new Error('the server closed the connection mid-response'));
      }
    });
  }

  send(path, body, onData) {
    return new Promise((resolve, reject) => {
      if (this.socket === null) this.connect();
      const pieces = [];
      const exchange = {
        status: 0,
        mode: null, // 'length', 'chunked' or 'close'
        remaining: 0,
        keepAlive: true,
        onData: onData || ((piece) => pieces.push(piece)),
        result: () => ({ status: exchange.status, body: Buffer.concat(pieces).toString() }),
        resolve,
        reject: (error) => reject(new Error(`POST ${path}: ${error.message}`)),
      };
      this.exchange = exchange;
      this.socket.write(
        `POST ${path} HTTP/1.1\r\nHost: ${HOST}:${config.port}\r\nContent-Type: text/plain\r\n` +
          // config.fresh: a new connection for every request (as behind a proxy that does not
          // keep connections), so that with several worker processes any of them may answer.
          (config.fresh ? 'Connection: close\r\n' : '') +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    });
  }

  request(path, body) {
    return this.send(path, body, null);
  }

  stream(path, onData) {
    return this.send(path, '', onData);
  }

  read() {
    const exchange = this.exchange;
    if (!exchange) return;
    if (exchange.mode === null) {
      const end = this.input.indexOf(CRLF2);
      if (end < 0) return;
      const head = this.input.toString('latin1', 0, end).toLowerCase();
      this.input = this.input.subarray(end + 4);
      exchange.status = Number(head.slice(9, 12));
      exchange.keepAlive = !/\r\nconnection: *close/.test(head);
      const length = /\r\ncontent-length: *(\d+)/.exec(head);
      if (length) {
        exchange.mode = 'length';
        exchange.remaining = Number(length[1]);
      } else if (/\r\ntransfer-encoding: *chunked/.test(head)) {
        exchange.mode = 'chunked';
      } else if (exchange.status === 204 || exchange.status === 304) {
        exchange.mode = 'length';
      } else {
        exchange.mode = 'close';
        exchange.keepAlive = false;
      }
    }
    if (exchange.mode === 'length') {
      const piece = this.input.subarray(0, exchange.remaining);
      this.input = this.input.subarray(piece.length);
      exchange.remaining -= piece.length;
      if (piece.length) exchange.onData(piece);
      if (exchange.remaining === 0) this.finish();
    } else if (exchange.mode === 'chunked') {
      for (;;) {
        if (exchange.remaining > 0) {
          const piece = this.input.subarray(0, exchange.remaining);
          this.input = this.input.subarray(piece.length);
          exchange.remaining -= piece.length;
          if (piece.length) exchange.onData(piece);
          if (exchange.remaining > 0) return;
        }
        const line = this.input.indexOf('\r\n');
        if (line < 0) return;
        if (line === 0) {
          this.input = this.input.subarray(2); // the CRLF after a chunk's data
          continue;
        }
        const size = parseInt(this.input.toString('latin1', 0, line), 16);
        if (size === 0) {
          if (this.input.length < line + 4) return;
          this.input = this.input.subarray(line + 4);
          this.finish();
          return;
        }
        this.input = this.input.subarray(line + 2);
        exchange.remaining = size;
      }
    } else {
      const piece = this.input;
      this.input = Buffer.alloc(0);
      if (piece.length) exchange.onData(piece);
    }
  }

  finish() {
    const exchange = this.exchange;
    this.exchange = null;
    if (!exchange.keepAlive) {
      const socket = this.socket;
      this.socket = null;
      if (socket) socket.destroy();
    }
    exchange.resolve(exchange.result());
  }
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
      // Replies to the frames of one read leave in one write, not a system call each: this
      // halves the load generator's CPU per message.
      socket._socket.cork();
      for (let i = 0; i < count; i++) socket.send(message);
      process.nextTick(() => socket._socket.uncork());
    });
    for (let i = 0; i < config.inflight; i++) socket.send(message);
  }
  return measure(() => received);
}

// `sessions` websockets; the first sends a message, the server sends it to all; once all have
// it, the next one goes. The time from send to the last arrival is recorded per message, and
// the messages that arrived in the window are counted.
//
// With `senders` (default 1) and `inflight` (default 1), that many sessions send, spread over the
// `ports` in turn, and each keeps `inflight` broadcasts on their way: a sender's next broadcast
// goes once one of its own has reached everyone. Each message then carries its number, read
// back from every frame to know which broadcast arrived.
async function broadcast() {
  const sockets = await openMany(config.sessions, config.path, config.light ? openLight : openSocket);
  const everyone = sockets.length;
  const senderCount = config.senders || 1;
  const inflight = config.inflight || 1;
  const senders = pickSenders(sockets, senderCount);
  const single = senderCount * inflight === 1; // arrivals need no number: one broadcast at a time
  const pending = new Map(); // number -> {sender, sentAt, left}
  let last = 0; // the number of the last broadcast sent
  let delivered = 0;
  const times = []; // [when completed, time until all had it]
  function send(sender) {
    last += 1;
    pending.set(last, { sender, sentAt: now(), left: everyone });
    const text = String(last).padStart(32, '0');
    senders[sender].send(config.framing === 'raw' ? text : JSON.stringify([text]));
  }
  function arrived(number, count) {
    const entry = pending.get(number);
    if (entry === undefined) fail(`broadcast ${number} arrived more than ${everyone} times (or was never sent)`);
    entry.left -= count;
    if (entry.left === 0) {
      pending.delete(number);
      const done = now();
      times.push([done, done - entry.sentAt]);
      setImmediate(send, entry.sender);
    } else if (entry.left < 0) {
      fail(`broadcast ${number} arrived more than ${everyone} times`);
    }
  }
  for (const socket of sockets) {
    socket.on('message', (data) => {
      const count = countFrame(data);
      if (count === 0) return;
      delivered += count;
      if (single) {
        arrived(last, count);
      } else if (config.framing === 'raw') {
        arrived(Number(data.toString('latin1')), 1);
      } else {
        // a["<32>","<32>",...]: message i starts at 3 + 35 * i; its number is in its last digits.
        for (let i = 0; i < count; i++) arrived(Number(data.toString('latin1', 3 + 35 * i + 20, 3 + 35 * i + 32)), 1);
      }
    });
  }
  for (let sender = 0; sender < senders.length; sender++) for (let i = 0; i < inflight; i++) send(sender);
  // Deliveries, not whole broadcasts, are counted over the window: at a few broadcasts per
  // second the count of whole ones would move in steps of 10% or more.
  const result = await measure(() => delivered);
  const end = result.start + result.seconds * 1000;
  result.latencies = times.filter(([done]) => done >= result.start && done <= end).map(([, took]) => took);
  result.deliveries = result.count;
  result.count = result.latencies.length; // whole broadcasts
  return result;
}

// `count` of the sockets, taking each port in turn (sockets remember theirs): with several
// processes, each gets its share of the senders.
function pickSenders(sockets, count) {
  if (count > sockets.length) fail(`${count} senders but ${sockets.length} sessions`);
  const byPort = new Map();
  for (const socket of sockets) {
    if (!byPort.has(socket.port)) byPort.set(socket.port, []);
    byPort.get(socket.port).push(socket);
  }
  const queues = [...byPort.values()];
  const picked = [];
  for (let i = 0; picked.length < count; i++) {
    const queue = queues[i % queues.length];
    if (queue.length) picked.push(queue.shift());
  }
  return picked;
}

// `sessions` idle websockets, in two steps so that the server's one-time costs (imports, first
// buffers) fall before the first snapshot: `warm` sessions, a snapshot, `sessions` more, another.
async function idle() {
  const open = config.light ? openLight : openSocket;
  const warm = await openMany(config.warm, config.path, open);
  await mark('base', true);
  const cpu0 = process.cpuUsage();
  const time0 = now();
  const more = await openMany(config.sessions, config.path, open);
  const seconds = (now() - time0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await mark('loaded', true);
  return { count: more.length, warm: warm.length, seconds, cpu: (cpu.user + cpu.system) / 1e6 / seconds };
}

// `concurrency` loops of: open a websocket, wait for the server's first message, close. The
// handshake is written by hand (a fixed key, the answer's accept header not checked), as `ws`
// spends as much CPU opening a connection as the fastest servers spend accepting it.
const CLOSE_FRAME = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]); // 1000, masked with zeros

function handshake(path) {
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${HOST}:${config.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'
  );
}

function openAndClose(path) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(config.port, HOST);
    socket.setNoDelay(true);
    let input = Buffer.alloc(0);
    let state = 'upgrade'; // then 'hello', then 'closing'
    socket.on('data', (data) => {
      input = input.length ? Buffer.concat([input, data]) : data;
      if (state === 'upgrade') {
        const end = input.indexOf(CRLF2);
        if (end < 0) return;
        if (input.toString('latin1', 9, 12) !== '101') {
          reject(new Error(`GET ${path} answered ${input.toString('latin1', 0, 12)}`));
          socket.destroy();
          return;
        }
        input = input.subarray(end + 4);
        state = 'hello';
      }
      // The first frame: a short unmasked text frame, such as SockJS's `o`.
      if (state === 'hello' && input.length >= 2 && input.length >= 2 + (input[1] & 0x7f)) {
        if (input[0] !== 0x81) reject(new Error(`GET ${path} sent a frame of type ${input[0]} first`));
        state = 'closing';
        socket.write(CLOSE_FRAME);
        input = Buffer.alloc(0);
      } else if (state === 'closing' && input.includes(0x88)) {
        socket.end(); // the server's close frame: the handshake is over
      }
    });
    socket.on('error', reject);
    socket.on('close', () => (state === 'closing' ? resolve() : reject(new Error(`GET ${path}: closed early`))));
    socket.write(handshake(path.replace('{session}', sessionId())));
  });
}

async function setup() {
  if (!config.hello) fail('setup waits for the server to speak first');
  let done = 0;
  async function loop() {
    while (running) {
      await openAndClose(config.path);
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
    const connection = new HttpConnection();
    const base = `${config.path}/000/${sessionId()}`;
    const opened = await connection.request(`${base}/xhr`, '');
    if (opened.body !== 'o\n') fail(`xhr open answered ${opened.status} ${opened.body.slice(0, 80)}`);
    while (running) {
      const sent = await connection.request(`${base}/xhr_send`, SOCKJS_PAYLOAD);
      if (sent.status !== 204 && sent.status !== 200) fail(`xhr_send answered ${sent.status}`);
      let polled = await connection.request(`${base}/xhr`, '');
      while (polled.body === 'h\n') polled = await connection.request(`${base}/xhr`, '');
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
    const asker = new HttpConnection();
    const listener = new HttpConnection();
    let owed = 0;
    let asking = false;
    function ask() {
      if (asking || !running || owed > config.batch) return;
      asking = true;
      owed += config.batch;
      asker.request(`${base}/xhr_send`, JSON.stringify([String(config.batch)])).then((answer) => {
        if (answer.status !== 204 && answer.status !== 200) fail(`xhr_send answered ${answer.status}`);
        asking = false;
        ask();
      }, fail);
    }
    // Lines may be cut anywhere: the first byte and the length of the current line are carried
    // from one piece to the next.
    let first = -1;
    let length = 0;
    function onData(piece) {
      let start = 0;
      while (start < piece.length) {
        const end = piece.indexOf(10, start); // '\n'
        const stop = end < 0 ? piece.length : end;
        if (first < 0 && stop > start) first = piece[start];
        length += stop - start;
        if (end < 0) break;
        if (first === 0x61) {
          const count = (length - 2) / 35; // 'a'
          if (!Number.isInteger(count)) fail(`xhr_streaming: not a frame of 32-character messages`);
          received += count;
          owed -= count;
        } else if (first === 0x6f) {
          ask(); // 'o'
        } else if (first !== 0x68) {
          fail(`xhr_streaming sent a line starting with ${String.fromCharCode(first)}`); // not 'h'
        }
        first = -1;
        length = 0;
        start = end + 1;
      }
      ask();
    }
    async function listen() {
      while (running) {
        const answer = await listener.stream(`${base}/xhr_streaming`, onData);
        if (answer.status !== 200) fail(`xhr_streaming answered ${answer.status}`);
      }
    }
    listen().catch((error) => running && fail(String(error)));
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
