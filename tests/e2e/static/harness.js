// The browser side of tests/e2e: opens SockJS connections and reports what happened.
//
// Messages travel from Python as base64 of their UTF-16LE code units, so that strings a
// Python str cannot carry to the browser (lone surrogates) arrive exactly.  Every wait has a
// time limit and resolves (never rejects) with a report the test asserts on.
"use strict";

(function () {
  const sockets = new Map();
  let nextId = 0;

  function decode(base64) {
    const bytes = atob(base64);
    const length = bytes.length >> 1;
    const parts = [];
    for (let start = 0; start < length; start += 8192) {
      const end = Math.min(length, start + 8192);
      const units = new Array(end - start);
      for (let i = start; i < end; i++) {
        units[i - start] = bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8);
      }
      parts.push(String.fromCharCode.apply(null, units));
    }
    return parts.join("");
  }

  function hex(text, from, count) {
    const units = [];
    for (let i = from; i < Math.min(text.length, from + count); i++) {
      units.push(text.charCodeAt(i).toString(16).padStart(4, "0"));
    }
    return units.join(" ");
  }

  // A short description of where two strings differ, in code units.
  function difference(expected, got) {
    if (typeof got !== "string") {
      return "expected length " + expected.length + ", got " + typeof got + " " + String(got);
    }
    let at = 0;
    while (at < expected.length && at < got.length && expected.charCodeAt(at) === got.charCodeAt(at)) {
      at++;
    }
    const from = Math.max(0, at - 4);
    return (
      "expected length " + expected.length + ", got length " + got.length +
      "; first difference at unit " + at +
      ": expected [" + hex(expected, from, 12) + "], got [" + hex(got, from, 12) + "]"
    );
  }

  function notify(state) {
    for (const waiter of Array.from(state.waiters)) {
      waiter();
    }
  }

  // Resolves true once predicate() holds, false after timeoutMs.
  function waitFor(state, predicate, timeoutMs) {
    return new Promise((resolve) => {
      if (predicate()) {
        resolve(true);
        return;
      }
      let timer = null;
      const waiter = () => {
        if (predicate()) {
          finish(true);
        }
      };
      function finish(result) {
        clearTimeout(timer);
        state.waiters.delete(waiter);
        resolve(result);
      }
      timer = setTimeout(() => finish(false), timeoutMs);
      state.waiters.add(waiter);
    });
  }

  function get(id) {
    const state = sockets.get(id);
    if (!state) {
      throw new Error("no socket " + id);
    }
    return state;
  }

  window.E2E = {
    // Open a connection restricted to one transport; resolves once it is open or closed.
    async open(url, transport, timeoutMs) {
      const id = ++nextId;
      const state = {
        sock: null, transport: null, opened: false, closed: null, messages: [], heartbeats: 0,
        waiters: new Set(),
      };
      sockets.set(id, state);
      const sock = new SockJS(url, null, { transports: [transport] });
      state.sock = sock;
      sock.onopen = () => {
        state.opened = true;
        state.transport = sock.transport; // null again once closed: read it now
        notify(state);
      };
      sock.onmessage = (event) => {
        state.messages.push(event.data);
        notify(state);
      };
      sock.onheartbeat = () => {
        state.heartbeats++;
        notify(state);
      };
      sock.onclose = (event) => {
        state.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
        notify(state);
      };
      const settled = await waitFor(state, () => state.opened || state.closed !== null, timeoutMs);
      return { id, settled, opened: state.opened, transport: state.transport, closed: state.closed };
    },

    // Send every message, then wait for as many messages back and compare them in order.
    async roundTrip(id, encoded, timeoutMs) {
      const state = get(id);
      const expected = encoded.map(decode);
      const start = state.messages.length;
      for (const message of expected) {
        state.sock.send(message);
      }
      const complete = await waitFor(
        state, () => state.messages.length - start >= expected.length || state.closed !== null, timeoutMs);
      const got = state.messages.slice(start);
      const problems = [];
      expected.forEach((message, index) => {
        if (index >= got.length) {
          problems.push("message " + index + ": missing (expected length " + message.length + ")");
        } else if (got[index] !== message) {
          problems.push("message " + index + ": " + difference(message, got[index]));
        }
      });
      for (let index = expected.length; index < got.length; index++) {
        problems.push("unexpected message " + index + ": " + difference("", got[index]));
      }
      return { complete, sent: expected.length, received: got.length, problems, closed: state.closed };
    },

    send(id, text) {
      get(id).sock.send(text);
    },

    async waitMessages(id, count, timeoutMs) {
      const state = get(id);
      await waitFor(state, () => state.messages.length >= count || state.closed !== null, timeoutMs);
      return state.messages.slice();
    },

    async waitClosed(id, timeoutMs) {
      const state = get(id);
      await waitFor(state, () => state.closed !== null, timeoutMs);
      return { closed: state.closed, messages: state.messages.slice() };
    },

    async close(id, timeoutMs) {
      const state = get(id);
      state.sock.close();
      await waitFor(state, () => state.closed !== null, timeoutMs);
      return state.closed;
    },

    // Wait for the next heartbeat frame; resolves with the number seen so far.
    async waitHeartbeat(id, timeoutMs) {
      const state = get(id);
      const seen = state.heartbeats;
      await waitFor(state, () => state.heartbeats > seen || state.closed !== null, timeoutMs);
      return { heartbeats: state.heartbeats - seen, messages: state.messages.length, closed: state.closed };
    },
  };
})();
