'use strict'
// The JavaScript-socket half of a broadcast. The addon creates one index per manager with
// createJsFanOut() and keeps it in step with its registry: every subscription change of a
// JavaScript socket calls add() / remove() / forget() here. A broadcast then costs one call
// into JavaScript, sendAll(), instead of one crossing per subscriber: a JIT-compiled loop
// iteration is far cheaper than a call from Rust into JavaScript.

const OPEN = 1

/**
 * @param {(id: string | undefined, error: unknown) => void} onSendError
 *   told when a socket's send() throws
 */
function createJsFanOut(onSendError) {
  const channels = new Map() // channel -> Map<record key, ws>
  const ids = new Map() // record key -> connection id, for error reports

  function forget(key) {
    ids.delete(key)
    for (const [channel, subscribers] of channels) {
      if (subscribers.delete(key) && subscribers.size === 0) channels.delete(channel)
    }
  }

  return {
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
      ids.set(key, id)
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
    // Sends `text` to every open subscriber of `channel`; returns how many failed (not
    // open, or send() threw).
    sendAll(channel, text) {
      const subscribers = channels.get(channel)
      if (subscribers === undefined) return 0
      let failed = 0
      for (const [key, ws] of subscribers) {
        if (ws.readyState !== OPEN) {
          failed++
          continue
        }
        try {
          ws.send(text)
        } catch (error) {
          failed++
          onSendError(ids.get(key), error)
        }
      }
      return failed
    },
  }
}

module.exports = { createJsFanOut }
