'use strict';
// sockjs-node (npm `sockjs`) on node's own http server, serving the benchmark's three services:
//   /echo       every message goes back to its sender
//   /broadcast  every message goes to every connected session
//   /flood      a message "N" asks for N copies of a 32-character message
// Usage: node sockjs_node.js PORT
const http = require('http');
const sockjs = require('sockjs');

const port = Number(process.argv[2]);
const FLOOD = 'flood-0123456789abcdefghijklmnop';
const options = { log: () => {} };

const echo = sockjs.createServer(options);
echo.on('connection', (conn) => conn.on('data', (message) => conn.write(message)));

const broadcast = sockjs.createServer(options);
const everyone = new Set();
broadcast.on('connection', (conn) => {
  everyone.add(conn);
  conn.on('close', () => everyone.delete(conn));
  conn.on('data', (message) => {
    for (const peer of everyone) peer.write(message);
  });
});

const flood = sockjs.createServer(options);
flood.on('connection', (conn) =>
  conn.on('data', (message) => {
    const count = parseInt(message, 10);
    for (let i = 0; i < count; i++) conn.write(FLOOD);
  }),
);

const server = http.createServer();
echo.installHandlers(server, { prefix: '/echo' });
broadcast.installHandlers(server, { prefix: '/broadcast' });
flood.installHandlers(server, { prefix: '/flood' });
server.listen(port, '127.0.0.1');
