// cluso-ws/client: a WebSocket client for cluso-ws servers that reconnects (full-jitter
// backoff), rebuilds its subscriptions on every open and resumes them from the last event
// delivered, detects dead links with its own ping, and sends requests. Plain JavaScript, no
// dependency; the single source of index.cjs (scripts/build-client.mjs). Keep it under the
// 4 KB min+gzip budget that `npm run build:client` checks.

const SETTLE_MS = 2147483647 // the longest delay setTimeout honours

/** An Error with a machine-readable `code`. */
const error = (message, code, Kind = Error) => Object.assign(new Kind(message), { code })

const invalid = (Kind, option, what) => {
  throw error(`cluso-ws/client: option ${option} ${what}`, 'ERR_CLUSO_INVALID_OPTION', Kind)
}

const now = () => performance.now()

export function connect(url, options) {
  const o = options == null ? {} : options
  if (typeof o != 'object') invalid(TypeError, 'options', 'must be an object')
  let href
  try {
    href = new URL(url)
  } catch {
    // reported below
  }
  if (!href || !/^wss?:$/.test(href.protocol)) invalid(TypeError, 'url', 'must be a ws: or wss: URL')
  href = href.href
  const WS = o.WebSocket === undefined ? globalThis.WebSocket : o.WebSocket
  if (typeof WS != 'function' || !WS.prototype)
    invalid(TypeError, 'WebSocket', 'must be a WebSocket constructor (on Node 20 pass the ws package)')
  const token = o.token
  if (token != null && (typeof token != 'string' || !/^[\w!#$%&'*+.^`|~-]+$/.test(token)))
    invalid(TypeError, 'token', 'must be a non-empty string of token characters')
  const ms = (name, fallback, least) => {
    const v = o[name] === undefined ? fallback : o[name]
    if (typeof v != 'number' || !(v >= least && v <= SETTLE_MS))
      invalid(RangeError, name, `must be a number of milliseconds >= ${least}`)
    return v
  }
  const minDelay = ms('minReconnectDelayMs', 500, 0)
  const maxDelay = ms('maxReconnectDelayMs', 20000, 0)
  if (maxDelay < minDelay) invalid(RangeError, 'maxReconnectDelayMs', 'must be >= minReconnectDelayMs')
  const pingMs = ms('pingIntervalMs', 25000, 0)
  const pongMs = ms('pongTimeoutMs', 10000, 1)
  const requestMs = ms('requestTimeoutMs', 30000, 1)
  const protocols = token == null ? ['cluso'] : ['cluso', 'cluso-token.' + token]

  let state = 'connecting'
  let ws // the current socket, null between connections
  let attempt = 0 // reconnects since the last connection that stayed up
  let openedAt = 0
  let lastRx = 0 // when the current socket last showed life
  let pingAt = 0 // when the unanswered ping (or the connect attempt) started
  let nextId = 0
  let retryTimer
  let tickTimer
  const subs = new Map() // channel -> { ch, fns: Set, pos?: { epoch, seq }, req, lost, sync }
  const pending = new Map() // id -> request | { ch, id, since } | { unsub: channel }
  const waiting = new Set() // requests made while not open
  const listeners = { __proto__: null, state: new Set(), subscribed: new Set(), error: new Set() }

  const emit = (name, value) => {
    for (const fn of [...listeners[name]]) {
      try {
        fn(value)
      } catch (e) {
        if (name != 'error') emit('error', e)
      }
    }
  }
  const report = (message, code = 'BAD_MESSAGE') => emit('error', error(message, code))
  const setState = (s) => {
    if (state != s) emit('state', (state = s))
  }
  const raw = (msg) => ws.send(JSON.stringify(msg))

  function open() {
    let sock
    try {
      sock = ws = new WS(href, protocols)
    } catch (e) {
      emit('error', e)
      return retry()
    }
    // the connect attempt is answered by the open event, or the link counts as dead
    lastRx = 0
    pingAt = now()
    arm(pongMs)
    sock.onerror = () => {} // a close event follows
    sock.onclose = () => drop(sock)
    sock.onopen = () => {
      openedAt = lastRx = now()
      pingAt = 0
      tick()
      for (const s of subs.values()) sendSubscribe(s)
      for (const r of waiting) dispatch(r)
      setState('open')
    }
    sock.onmessage = (e) => {
      lastRx = now()
      if (pingAt) tick() // answered: the next ping is due pingIntervalMs from now
      receive(e.data)
    }
  }

  const arm = (delay) => (tickTimer = setTimeout(tick, delay))

  // ping after pingIntervalMs without traffic; no traffic for pongTimeoutMs after it is a dead link
  function tick() {
    clearTimeout(tickTimer)
    if (pingAt && lastRx < pingAt) return drop(ws, true)
    pingAt = 0
    if (!pingMs) return
    const idle = now() - lastRx
    if (idle < pingMs) return arm(pingMs - idle)
    pingAt = now()
    raw({ type: 'ping' })
    arm(pongMs)
  }

  function drop(sock, dead) {
    if (sock != ws) return
    ws = null
    clearTimeout(tickTimer)
    sock.onopen = sock.onmessage = sock.onclose = null
    if (dead) {
      try {
        sock.terminate ? sock.terminate() : sock.close()
      } catch {
        // already closing
      }
    }
    for (const p of pending.values()) {
      if (p.reject) {
        settle(p)
        p.reject(error(`request ${p.name}: connection lost; the server may or may not have run it`, 'DISCONNECTED'))
      }
    }
    pending.clear()
    if (openedAt && now() - openedAt >= maxDelay) attempt = 0
    openedAt = 0
    retry()
  }

  function retry() {
    if (state == 'closed') return
    setState('reconnecting')
    const ceiling = Math.min(maxDelay, Math.max(minDelay, 1) * 2 ** Math.min(++attempt, 30))
    retryTimer = setTimeout(open, minDelay + Math.random() * (ceiling - minDelay))
  }

  function sendSubscribe(s) {
    const id = String(++nextId)
    const msg = { type: 'subscribe', channel: s.ch, id }
    if (s.pos) msg.since = s.pos
    s.req = id
    pending.set(id, { ch: s.ch, id, since: !!s.pos })
    raw(msg)
  }

  const settle = (r) => {
    clearTimeout(r.timer)
    waiting.delete(r)
    pending.delete(String(r.id))
  }

  function dispatch(r) {
    waiting.delete(r)
    r.id = ++nextId
    try {
      raw({ type: 'invoke', id: r.id, channel: r.name, data: r.data })
      pending.set(String(r.id), r)
    } catch (e) {
      settle(r)
      r.reject(e)
    }
  }

  function receive(text) {
    let m
    try {
      m = JSON.parse(typeof text == 'string' ? text : String(text))
    } catch {
      // reported below
    }
    if (!m || typeof m != 'object') return report('server sent something that is not a JSON object')
    if (m.type == 'event' && typeof m.channel == 'string') onEvent(m)
    else if (m.type == 'response') onResponse(m, m.data || {})
    else if (m.type != 'pong') report('server sent a message the client cannot use: ' + String(text).slice(0, 200))
  }

  function onEvent(m) {
    const ch = m.channel
    const s = subs.get(ch)
    if (!s) {
      // events in flight behind an unsubscribe are expected; anything else is not
      for (const p of pending.values()) if (p.unsub == ch) return
      return report(`server sent an event for a channel nobody subscribed to: ${ch}`)
    }
    const { seq, epoch } = m
    if (typeof seq == 'number' && typeof epoch == 'string') {
      const p = s.pos
      if (p && p.epoch == epoch) {
        if (seq <= p.seq) return // delivered already
        if (seq > p.seq + 1) {
          // a gap: ask for the missing events again; they arrive in order after the answer
          if (!s.sync) sendSubscribe(s)
          s.sync = 1
          return
        }
      } else if (p) emit('subscribed', { channel: ch, recovered: false })
      s.pos = { epoch, seq }
    }
    for (const fn of [...s.fns]) fn(m.data, m)
  }

  function onResponse(m, d) {
    // an error is a top-level `error` (answers to invoke) or data that is just { error, code? }
    let e = m.error
    if (e == null && typeof d.error == 'string' && Object.keys(d).every((k) => k == 'error' || k == 'code')) e = d.error
    const code = d.code || (e == null ? 0 : 'SERVER_ERROR')
    const p = m.id != null && pending.get(String(m.id))
    // unknown ids are late answers to requests that timed out: not an error
    if (!p) return e == null || m.id != null || report(String(e), code)
    pending.delete(String(m.id))
    if (p.reject) {
      settle(p)
      return e == null ? p.resolve(m.data) : p.reject(error(String(e), code))
    }
    const s = p.ch && subs.get(p.ch)
    if (!s || s.req != p.id) return // an unsubscribe answer, or a subscription given up since
    s.sync = 0
    if (e != null) {
      if (code != 'INVALID_SINCE' || !p.since) return report(`subscribe ${p.ch}: ${e}`, code)
      s.pos = null
      s.lost = true
      return sendSubscribe(s)
    }
    const recovered = p.since ? d.recovered === true : s.lost ? false : undefined
    s.lost = false
    const q = s.pos
    if (!recovered && typeof d.epoch == 'string' && typeof d.seq == 'number' && !(q && q.epoch == d.epoch && q.seq > d.seq))
      s.pos = { epoch: d.epoch, seq: d.seq }
    emit('subscribed', recovered === undefined ? { channel: p.ch } : { channel: p.ch, recovered })
  }

  function close() {
    if (state == 'closed') return
    clearTimeout(retryTimer)
    clearTimeout(tickTimer)
    const sock = ws
    ws = null
    if (sock) {
      sock.onopen = sock.onmessage = sock.onclose = null
      try {
        sock.close(1000)
      } catch {
        // already closing
      }
    }
    for (const r of [...pending.values(), ...waiting]) {
      if (r.reject) {
        settle(r)
        r.reject(error(`request ${r.name}: the client was closed`, 'CLOSED'))
      }
    }
    pending.clear()
    subs.clear()
    setState('closed')
  }

  open()

  return {
    get state() {
      return state
    },

    subscribe(channel, handler) {
      if (typeof channel != 'string' || !channel) throw new TypeError('cluso-ws/client: channel must be a non-empty string')
      if (typeof handler != 'function') throw new TypeError('cluso-ws/client: handler must be a function')
      if (state == 'closed') return () => {}
      let s = subs.get(channel)
      if (!s) {
        subs.set(channel, (s = { ch: channel, fns: new Set() }))
        if (state == 'open') sendSubscribe(s)
      }
      // one entry per call, so the same function subscribed twice is two subscriptions
      const fn = (data, event) => {
        try {
          handler(data, event)
        } catch (e) {
          emit('error', e)
        }
      }
      s.fns.add(fn)
      return () => {
        if (!s.fns.delete(fn) || s.fns.size || subs.get(channel) != s) return
        subs.delete(channel)
        if (state != 'open') return
        const id = String(++nextId)
        pending.set(id, { unsub: channel })
        raw({ type: 'unsubscribe', channel, id })
      }
    },

    request(name, data, opts) {
      return new Promise((resolve, reject) => {
        if (typeof name != 'string' || !name) throw new TypeError('cluso-ws/client: request name must be a non-empty string')
        if (state == 'closed') throw error(`request ${name}: the client is closed`, 'CLOSED')
        const timeout = opts && opts.timeoutMs !== undefined ? opts.timeoutMs : requestMs
        if (typeof timeout != 'number' || !(timeout > 0 && timeout <= SETTLE_MS))
          throw new RangeError('cluso-ws/client: timeoutMs must be a positive number of milliseconds')
        const r = { name, data, resolve, reject }
        r.timer = setTimeout(() => {
          settle(r)
          reject(error(`request ${name}: no answer within ${timeout} ms`, 'TIMEOUT'))
        }, timeout)
        if (state == 'open') dispatch(r)
        else waiting.add(r)
      })
    },

    send(name, data) {
      if (typeof name != 'string' || !name) throw new TypeError('cluso-ws/client: send name must be a non-empty string')
      if (state != 'open') return false
      raw({ type: 'send', channel: name, data })
      return true
    },

    on(name, fn) {
      const set = listeners[name]
      if (!set || typeof fn != 'function') throw new TypeError(`cluso-ws/client: on() takes 'state', 'subscribed' or 'error' and a function`)
      // one entry per call (see subscribe)
      const entry = (v) => fn(v)
      set.add(entry)
      return () => set.delete(entry)
    },

    close,
  }
}
