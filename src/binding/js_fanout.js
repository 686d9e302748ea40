// The JavaScript-socket half of a broadcast, evaluated once per manager by the binding.
// Looping over JavaScript sockets is cheapest in JavaScript itself: the binding keeps this
// channel → sockets index in step with the registry and calls sendAll() once per
// broadcast instead of crossing into JavaScript once per subscriber.
(function createJsFanOut(onSendError) {
  'use strict'
  const OPEN = 1
  const channels = new Map() // channel -> Map<record key, ws>
  const ids = new Map() // record key -> connection id, for error reports

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
    forget(key) {
      ids.delete(key)
      for (const [channel, subscribers] of channels) {
        if (subscribers.delete(key) && subscribers.size === 0) channels.delete(channel)
      }
    },
    clear() {
      channels.clear()
      ids.clear()
    },
    // Sends `text` to every open subscriber of `channel`; returns how many failed.
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
})
