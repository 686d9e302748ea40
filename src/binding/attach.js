// The JavaScript half of `manager.attach(server, options)`, evaluated once per call by the
// binding. It only touches Node internals the native core cannot reach: the socket handle,
// the pending response of a pipelined request, and the `ws` fallback.
(function attachCluso(server, path, handoff, manager, cwd) {
  'use strict'
  const canHandOff = process.platform !== 'win32' && typeof server.addContext !== 'function'
  let fallbackServer = null
  if (!canHandOff) {
    let WebSocketServer
    try {
      const { createRequire } = process.getBuiltinModule('module')
      WebSocketServer = createRequire(process.cwd() + '/')('ws').WebSocketServer
    } catch {
      const error = new Error(
        'attach(): sockets of a TLS server (or any socket on Windows) cannot be handed to the ' +
          "native core, and the 'ws' package needed to fall back is not installed. Install 'ws', " +
          'or use manager.listen() behind a TLS-terminating proxy.'
      )
      error.code = 'ERR_CLUSO_ATTACH_UNSUPPORTED'
      throw error
    }
    fallbackServer = new WebSocketServer({ noServer: true })
  }

  // Waits until earlier responses on this connection are fully written: a pipelined upgrade
  // handed over before that would cut them off.
  function whenFlushed(socket, then) {
    const pending = socket._httpMessage
    if (pending && !pending.writableFinished && !pending.destroyed) {
      pending.once('finish', () => whenFlushed(socket, then))
      pending.once('close', () => whenFlushed(socket, then))
      return
    }
    if (socket.writableLength > 0 && !socket.destroyed) {
      socket.once('drain', () => whenFlushed(socket, then))
      return
    }
    then()
  }

  function onUpgrade(req, socket, head) {
    const url = req.url || '/'
    const query = url.indexOf('?')
    if ((query === -1 ? url : url.slice(0, query)) !== path) return
    const handle = socket._handle
    const fd = handle && typeof handle.fd === 'number' ? handle.fd : -1
    if (fallbackServer !== null || fd < 0) {
      if (fallbackServer === null) {
        socket.destroy()
        return
      }
      fallbackServer.handleUpgrade(req, socket, head, (ws) => manager.handleConnection(ws, cwd))
      return
    }
    // Stop libuv reading: unread bytes stay in the kernel for the native core.
    if (typeof handle.readStop === 'function') handle.readStop()
    whenFlushed(socket, () => {
      if (socket.destroyed) return
      try {
        handoff(fd, req.method, url, req.rawHeaders, head, socket.localAddress || '', socket.remoteAddress || '')
      } finally {
        socket.destroy()
      }
    })
  }

  server.on('upgrade', onUpgrade)
  return onUpgrade
})
