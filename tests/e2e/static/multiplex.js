// The browser side of tests/e2e/test_multiplex.py: SockJS connections carrying channels of the
// real websocket-multiplex client library, with every event recorded for the test to wait on.
"use strict";

(function () {
  const connections = new Map();
  let nextId = 0;

  function get(id) {
    const state = connections.get(id);
    if (!state) {
      throw new Error("no connection " + id);
    }
    return state;
  }

  window.MUX = {
    // Open a SockJS connection restricted to one transport, with a multiplexer over it.
    open(url, transport) {
      const id = ++nextId;
      const sock = new SockJS(url, null, { transports: [transport] });
      const state = {
        sock, multiplexer: new WebSocketMultiplex(sock), opened: false, transport: null, closed: null, channels: {},
      };
      sock.addEventListener("open", () => {
        state.opened = true;
        state.transport = sock.transport; // null again once closed: read it now
      });
      sock.addEventListener("close", (event) => {
        state.closed = { code: event.code, reason: event.reason };
      });
      connections.set(id, state);
      return id;
    },

    connection(id) {
      const state = get(id);
      return { opened: state.opened, transport: state.transport, closed: state.closed };
    },

    // Open a channel (the library sends "sub" once the connection is open).
    channel(id, name) {
      const record = { channel: get(id).multiplexer.channel(name), opened: false, closed: false, messages: [] };
      record.channel.onopen = () => { record.opened = true; };
      record.channel.onmessage = (event) => { record.messages.push(event.data); };
      record.channel.onclose = () => { record.closed = true; };
      get(id).channels[name] = record;
    },

    channelState(id, name) {
      const record = get(id).channels[name];
      return { opened: record.opened, closed: record.closed, messages: record.messages.slice() };
    },

    send(id, name, text) {
      get(id).channels[name].channel.send(text);
    },

    closeChannel(id, name) {
      get(id).channels[name].channel.close();
    },

    close(id) {
      get(id).sock.close();
    },
  };
})();
