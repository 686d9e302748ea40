'use strict'
// The JavaScript-socket half of a broadcast. The addon creates one index per manager with
// createJsFanOut() and keeps it in step with its registry: every subscription change of a
// JavaScript socket calls add() / remove() / forget() here. A broadcast then costs one call
// into JavaScript, sendAll(), instead of one crossing per subscriber: a JIT-compiled loop
// iteration is far cheaper than a call from Rust into JavaScript.
//
// track() installs a socket's event listeners. They are ordinary closures made here, which
// call the manager's one set of native hooks with the socket's record key: a native
// function made per socket would cost far more memory (each is a function template of its
// own in V8, with its own maps and prototype, plus native bookkeeping) than the original
// module's closures.

const OPEN = 1
const CLOSED = 3

/** Close code for a subscriber that stopped reading (the native transport's too). */
const CLOSE_SLOW_CONSUMER = 4008
const SLOW_CONSUMER_REASON = 'slow consumer'

/**
 * How long a socket cut as a slow consumer may take to reach CLOSED before it is
 * terminate()d. A peer that stopped reading never answers the close frame (it is queued
 * behind everything it did not read), and `ws` itself would wait 30 s for that answer.
 */
const CUT_GRACE_MS = 1000

/**
 * @typedef {object} SocketHooks the manager's handlers of its sockets' events
 * @property {(key: number) => void} pong
 * @property {(key: number) => void} close
 * @property {(id: string, error: unknown) => void} error
 * @property {(key: number, data: unknown) => void} message
 */

/**
 * @param {(id: string | undefined, error: unknown) => void} onSendError
 *   told when a socket's send(), close() or terminate() throws
 * @param {{ maxBufferedBytes?: number, hooks?: SocketHooks }} [options]
 *   maxBufferedBytes: a socket whose `bufferedAmount` exceeds it when a broadcast reaches
 *   it is cut (closed with 4008) instead of sent to. Sockets without a numeric
 *   `bufferedAmount` (mocks) are never cut. hooks: what track()'s listeners call.
 */
function createJsFanOut(onSendError, options = {}) {
  const maxBufferedBytes = options.maxBufferedBytes ?? Infinity
  const hooks = options.hooks
  const channels = new Map() // channel -> Map<record key, ws>
  // record key -> connection id, for error reports: of every tracked socket, and of every
  // subscriber. One string per socket, shared with its listeners.
  const ids = new Map()

  function forget(key) {
    ids.delete(key)
    for (const [channel, subscribers] of channels) {
      if (subscribers.delete(key) && subscribers.size === 0) channels.delete(channel)
    }
  }

  function terminate(ws, id) {
    try {
      if (typeof ws.terminate === 'function') ws.terminate()
    } catch (error) {
      onSendError(id, error)
    }
  }

  // Closes a slow consumer with 4008; terminate()s it when close() throws or the socket is
  // still not CLOSED after CUT_GRACE_MS.
  function cut(ws, id) {
    try {
      ws.close(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)
    } catch (error) {
      onSendError(id, error)
      terminate(ws, id)
      return
    }
    if (ws.readyState === CLOSED) return
    const timer = setTimeout(() => {
      if (ws.readyState !== CLOSED) terminate(ws, id)
    }, CUT_GRACE_MS)
    if (typeof timer.unref === 'function') timer.unref()
  }

  return {
    // Listens on `ws` for 'pong', 'close' and 'error' and, with `protocol` (handleConnection),
    // 'message', as the original module did; each listener hands the event to the hooks.
    // What ws.on() throws reaches the caller.
    track(ws, key, id, protocol) {
      ids.set(key, id)
      ws.on('pong', () => hooks.pong(key))
      ws.on('close', () => hooks.close(key))
      ws.on('error', (error) => hooks.error(id, error))
      if (protocol) ws.on('message', (data) => hooks.message(key, data))
    },
    // The original module's envelope, byte for byte (toJSON sees the key 'data').
    envelope(channel, data, timestamp) {
      return JSON.stringify({ type: 'event', channel, data, timestamp })
    },
    add(channel, key, ws, id) {
      let subscribers = channels.get(channel)
      if (subscribers === undefined) {
        subscribers = new Map()
        channels.set(channel, subscribers)
      }
      subscribers.set(key, ws)
      // A key's id never changes: keep the string already held (track's).
      if (!ids.has(key)) ids.set(key, id)
    },
    remove(channel, key) {
      const subscribers = channels.get(channel)
      if (subscribers !== undefined && subscribers.delete(key) && subscribers.size === 0) {
        channels.delete(channel)
      }
    },
    forget,
    clear() {
      channels.clear()
      ids.clear()
    },
    // Sends `text` to every open subscriber of `channel`. Returns how many failed (not
    // open, or send() threw) as a number — or, when some subscribers were over the cap,
    // `{ failed, cut }` with the record keys of those cut: they are closed with 4008 and
    // forgotten here, and the caller drops their records.
    sendAll(channel, text) {
      const subscribers = channels.get(channel)
      if (subscribers === undefined) return 0
      let failed = 0
      let slow = null
      for (const [key, ws] of subscribers) {
        if (ws.readyState !== OPEN) {
          failed++
          continue
        }
        // undefined > n is false: a socket without bufferedAmount is never cut
        if (ws.bufferedAmount > maxBufferedBytes) {
          if (slow === null) slow = []
          slow.push(key, ws)
          continue
        }
        try {
          ws.send(text)
        } catch (error) {
          failed++
          onSendError(ids.get(key), error)
        }
      }
      if (slow === null) return failed
      // After the loop: close() may emit events that change the index.
      const keys = []
      for (let i = 0; i < slow.length; i += 2) {
        const key = slow[i]
        const id = ids.get(key)
        forget(key)
        keys.push(key)
        cut(slow[i + 1], id)
      }
      return { failed, cut: keys }
    },
  }
}

module.exports = { createJsFanOut, CLOSE_SLOW_CONSUMER, CUT_GRACE_MS }
