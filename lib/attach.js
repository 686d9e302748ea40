'use strict'
// The JavaScript half of `manager.attach(server, options)`. It only touches Node internals
// the native core cannot reach: the socket handle, the pending response of a pipelined
// request, and the `ws` fallback for sockets that cannot be handed over.

const { createRequire } = require('node:module')

const UNSUPPORTED_MESSAGE =
  'attach(): sockets of a TLS server (or any socket on Windows) cannot be handed to the ' +
  "native core, and the 'ws' package needed to fall back is not installed. Install 'ws', " +
  'or use manager.listen() behind a TLS-terminating proxy.'

/**
 * The `ws` package's WebSocketServer, resolved the way the application resolves it: from
 * the entry module (`require.main`) when there is one, else from this package.
 * @param {{ filename?: string } | undefined} main  the application's entry module
 * @param {(id: string) => any} ownRequire  this package's require
 */
function resolveWebSocketServer(main = require.main, ownRequire = require) {
  const candidates = []
  if (main && typeof main.filename === 'string') {
    candidates.push(() => createRequire(main.filename)('ws'))
  }
  candidates.push(() => ownRequire('ws'))
  for (const load of candidates) {
    let ws
    try {
      ws = load()
    } catch {
      continue
    }
    if (ws && typeof ws.WebSocketServer === 'function') return ws.WebSocketServer
  }
  const error = new Error(UNSUPPORTED_MESSAGE)
  error.code = 'ERR_CLUSO_ATTACH_UNSUPPORTED'
  throw error
}

/** Whether an upgrade for `url` is ours: its path (without the query) is exactly `path`. */
function matchesPath(url, path) {
  const target = url || '/'
  const query = target.indexOf('?')
  return (query === -1 ? target : target.slice(0, query)) === path
}

/**
 * Calls `then` once earlier responses on this connection are fully written: a pipelined
 * upgrade handed over before that would cut them off.
 */
function whenFlushed(socket, then) {
  const pending = socket._httpMessage
  if (pending && !pending.writableFinished && !pending.destroyed) {
    let done = false
    const next = () => {
      if (done) return
      done = true
      pending.removeListener('finish', next)
      pending.removeListener('close', next)
      whenFlushed(socket, then)
    }
    pending.once('finish', next)
    pending.once('close', next)
    return
  }
  if (socket.writableLength > 0 && !socket.destroyed) {
    socket.once('drain', () => whenFlushed(socket, then))
    return
  }
  then()
}

/**
 * Installs the `'upgrade'` listener of `manager.attach()` on `server` and returns it (the
 * addon removes it again on shutdown).
 * @param {import('node:http').Server} server
 * @param {string} path  upgrades on this path are ours; others are left alone
 * @param {Function} handoff  (fd, method, url, rawHeaders, head, localAddress, remoteAddress)
 * @param {{ handleConnection(ws: unknown, cwd?: string): void }} manager
 * @param {string | undefined} cwd  sent in the welcome message of fallback connections
 * @param {{ platform?: string, resolve?: () => Function }} [env]  for tests
 */
function attachCluso(server, path, handoff, manager, cwd, env = {}) {
  const platform = env.platform ?? process.platform
  const canHandOff = platform !== 'win32' && typeof server.addContext !== 'function'
  let fallbackServer = null
  if (!canHandOff) {
    const WebSocketServer = (env.resolve ?? resolveWebSocketServer)()
    fallbackServer = new WebSocketServer({ noServer: true })
  }

  function onUpgrade(req, socket, head) {
    if (!matchesPath(req.url, path)) return
    const url = req.url || '/'
    const handle = socket._handle
    const fd = handle && typeof handle.fd === 'number' ? handle.fd : -1
    if (fallbackServer !== null) {
      fallbackServer.handleUpgrade(req, socket, head, (ws) => manager.handleConnection(ws, cwd))
      return
    }
    if (fd < 0) {
      socket.destroy()
      return
    }
    // Stop libuv reading: unread bytes stay in the kernel for the native core.
    if (typeof handle.readStop === 'function') handle.readStop()
    whenFlushed(socket, () => {
      if (socket.destroyed) return
      try {
        handoff(
          fd,
          req.method,
          url,
          req.rawHeaders,
          head,
          socket.localAddress || '',
          socket.remoteAddress || ''
        )
      } finally {
        socket.destroy()
      }
    })
  }

  server.on('upgrade', onUpgrade)
  return onUpgrade
}

module.exports = { attachCluso, resolveWebSocketServer, matchesPath, whenFlushed }
