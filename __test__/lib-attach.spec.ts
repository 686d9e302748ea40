// lib/attach.js on its own: which upgrades are ours, the wait for a pipelined response
// before the handoff, and how the `ws` fallback (TLS servers, Windows) is found.
import { EventEmitter } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { WebSocketServer } from 'ws'

const require = createRequire(import.meta.url)
const { attachCluso, resolveWebSocketServer, matchesPath, whenFlushed } = require('../lib/attach.js') as {
  attachCluso: (
    server: unknown,
    path: string,
    handoff: (...args: unknown[]) => void,
    manager: { handleConnection: (ws: unknown, cwd?: string) => void },
    cwd: string | undefined,
    env?: { platform?: string; resolve?: () => unknown }
  ) => (req: unknown, socket: unknown, head: unknown) => void
  resolveWebSocketServer: (main?: { filename?: string }, ownRequire?: (id: string) => unknown) => unknown
  matchesPath: (url: string | undefined, path: string) => boolean
  whenFlushed: (socket: unknown, then: () => void) => void
}

/** A net.Socket as the 'upgrade' event hands it over, with a handle that has an fd. */
function fakeSocket(fd = 42) {
  const socket = Object.assign(new EventEmitter(), {
    _handle: fd >= 0 ? { fd, readStop: vi.fn() } : null,
    _httpMessage: null as (EventEmitter & { writableFinished: boolean; destroyed: boolean }) | null,
    writableLength: 0,
    destroyed: false,
    localAddress: '127.0.0.1',
    remoteAddress: '127.0.0.1',
    destroy: vi.fn(() => {
      socket.destroyed = true
    }),
  })
  return socket
}

function pendingResponse() {
  return Object.assign(new EventEmitter(), { writableFinished: false, destroyed: false })
}

const req = (url: string | undefined) => ({ url, method: 'GET', rawHeaders: ['Host', 'x'] })

function attachTo(env: { platform?: string; resolve?: () => unknown } = { platform: 'linux' }, server = new EventEmitter()) {
  const handoff = vi.fn()
  const manager = { handleConnection: vi.fn() }
  const listener = attachCluso(server, '/ws', handoff, manager, '/proj', env)
  return { server, handoff, manager, listener }
}

describe('lib/attach.js: path matching', () => {
  it('matches the path exactly, ignoring the query', () => {
    expect(matchesPath('/ws', '/ws')).toBe(true)
    expect(matchesPath('/ws?token=abc', '/ws')).toBe(true)
    expect(matchesPath('/ws?', '/ws')).toBe(true)
    expect(matchesPath('/wsx', '/ws')).toBe(false)
    expect(matchesPath('/ws/', '/ws')).toBe(false)
    expect(matchesPath('/WS', '/ws')).toBe(false)
    expect(matchesPath('/other?/ws', '/ws')).toBe(false)
    expect(matchesPath('', '/')).toBe(true)
    expect(matchesPath(undefined, '/')).toBe(true)
    expect(matchesPath(undefined, '/ws')).toBe(false)
  })

  it("installs one 'upgrade' listener and leaves other paths to the server's other listeners", () => {
    const { server, handoff, listener } = attachTo()
    expect(server.listeners('upgrade')).toEqual([listener])
    const socket = fakeSocket()
    server.emit('upgrade', req('/other'), socket, Buffer.alloc(0))
    expect(handoff).not.toHaveBeenCalled()
    expect(socket.destroy).not.toHaveBeenCalled()
    expect(socket._handle?.readStop).not.toHaveBeenCalled()
  })

  it('hands an upgrade on its path to the native core, then destroys the JavaScript socket', () => {
    const { server, handoff } = attachTo()
    const socket = fakeSocket(42)
    const head = Buffer.from('x')
    server.emit('upgrade', req('/ws?token=t'), socket, head)
    expect(socket._handle?.readStop).toHaveBeenCalledTimes(1)
    expect(handoff).toHaveBeenCalledTimes(1)
    expect(handoff).toHaveBeenCalledWith(42, 'GET', '/ws?token=t', ['Host', 'x'], head, '127.0.0.1', '127.0.0.1')
    expect(socket.destroy).toHaveBeenCalledTimes(1)
  })

  it('destroys the socket even when the handoff throws', () => {
    const { server, handoff } = attachTo()
    handoff.mockImplementation(() => {
      throw new Error('handoff failed')
    })
    const socket = fakeSocket()
    expect(() => server.emit('upgrade', req('/ws'), socket, Buffer.alloc(0))).toThrow('handoff failed')
    expect(socket.destroy).toHaveBeenCalledTimes(1)
  })

  it('destroys a socket without a file descriptor', () => {
    const { server, handoff } = attachTo()
    const socket = fakeSocket(-1)
    server.emit('upgrade', req('/ws'), socket, Buffer.alloc(0))
    expect(handoff).not.toHaveBeenCalled()
    expect(socket.destroy).toHaveBeenCalledTimes(1)
  })
})

describe('lib/attach.js: a pipelined response is written before the handoff', () => {
  it('waits for the pending response to finish, and hands over once', () => {
    const { server, handoff } = attachTo()
    const socket = fakeSocket()
    const pending = pendingResponse()
    socket._httpMessage = pending
    server.emit('upgrade', req('/ws'), socket, Buffer.alloc(0))
    expect(socket._handle?.readStop).toHaveBeenCalled()
    expect(handoff).not.toHaveBeenCalled()
    pending.writableFinished = true
    pending.emit('finish')
    expect(handoff).toHaveBeenCalledTimes(1)
    pending.emit('close')
    expect(handoff).toHaveBeenCalledTimes(1)
  })

  it('waits for the socket to drain its write buffer', () => {
    const socket = fakeSocket()
    socket.writableLength = 10
    const then = vi.fn()
    whenFlushed(socket, then)
    expect(then).not.toHaveBeenCalled()
    socket.writableLength = 0
    socket.emit('drain')
    expect(then).toHaveBeenCalledTimes(1)
  })

  it('does not hand over a socket destroyed while its response was pending', () => {
    const { server, handoff } = attachTo()
    const socket = fakeSocket()
    const pending = pendingResponse()
    socket._httpMessage = pending
    server.emit('upgrade', req('/ws'), socket, Buffer.alloc(0))
    socket.destroyed = true
    pending.destroyed = true
    pending.emit('close')
    expect(handoff).not.toHaveBeenCalled()
  })

  it('goes ahead at once when nothing is pending', () => {
    const then = vi.fn()
    const socket = fakeSocket()
    socket._httpMessage = Object.assign(pendingResponse(), { writableFinished: true })
    whenFlushed(socket, then)
    expect(then).toHaveBeenCalledTimes(1)
  })
})

describe('lib/attach.js: the ws fallback', () => {
  const dirs: string[] = []
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })

  /** An app directory; with `withWs`, its node_modules holds a stand-in `ws` package. */
  function appDir(withWs: boolean): string {
    const dir = mkdtempSync(join(tmpdir(), 'cluso-attach-'))
    dirs.push(dir)
    if (withWs) {
      mkdirSync(join(dir, 'node_modules', 'ws'), { recursive: true })
      writeFileSync(
        join(dir, 'node_modules', 'ws', 'index.js'),
        "class WebSocketServer { constructor(o) { this.options = o } }\nWebSocketServer.appCopy = true\nmodule.exports = { WebSocketServer }\n"
      )
    }
    writeFileSync(join(dir, 'app.js'), '')
    return dir
  }
  const noOwnWs = () => {
    const error = new Error("Cannot find module 'ws'") as Error & { code: string }
    error.code = 'MODULE_NOT_FOUND'
    throw error
  }

  it("resolves ws from the application's entry module first", () => {
    const dir = appDir(true)
    const found = resolveWebSocketServer({ filename: join(dir, 'app.js') }, require) as { appCopy?: boolean }
    expect(found.appCopy).toBe(true)
  })

  it("falls back to this package's own ws when the application has none, or no entry module", () => {
    const dir = appDir(false)
    expect(resolveWebSocketServer({ filename: join(dir, 'app.js') }, require)).toBe(WebSocketServer)
    expect(resolveWebSocketServer(undefined, require)).toBe(WebSocketServer)
    expect(resolveWebSocketServer({}, require)).toBe(WebSocketServer)
  })

  it('throws ERR_CLUSO_ATTACH_UNSUPPORTED when neither finds ws', () => {
    const dir = appDir(false)
    let thrown: (Error & { code?: string }) | undefined
    try {
      resolveWebSocketServer({ filename: join(dir, 'app.js') }, noOwnWs)
    } catch (error) {
      thrown = error as Error & { code?: string }
    }
    expect(thrown?.code).toBe('ERR_CLUSO_ATTACH_UNSUPPORTED')
    expect(thrown?.message).toMatch(/TLS server .* 'ws' package/)
  })

  it('ignores a ws without WebSocketServer', () => {
    expect(() => resolveWebSocketServer(undefined, () => ({}))).toThrow(/Install 'ws'/)
  })

  it('attach() on a TLS server or on Windows fails with the error when ws is missing', () => {
    const resolve = () => resolveWebSocketServer(undefined, noOwnWs)
    const tls = Object.assign(new EventEmitter(), { addContext() {} })
    expect(() => attachTo({ platform: 'linux', resolve }, tls)).toThrow(expect.objectContaining({ code: 'ERR_CLUSO_ATTACH_UNSUPPORTED' }))
    expect(tls.listenerCount('upgrade')).toBe(0)
    expect(() => attachTo({ platform: 'win32', resolve })).toThrow(expect.objectContaining({ code: 'ERR_CLUSO_ATTACH_UNSUPPORTED' }))
  })

  it('accepts upgrades through ws as JavaScript sockets and never hands them over', () => {
    const accepted = { kind: 'ws socket' }
    const handleUpgrade = vi.fn((_req, _socket, _head, done: (ws: unknown) => void) => done(accepted))
    class FakeServer {
      options: unknown
      constructor(options: unknown) {
        this.options = options
      }
      handleUpgrade = handleUpgrade
    }
    for (const [env, server] of [
      [{ platform: 'win32', resolve: () => FakeServer }, new EventEmitter()],
      [{ platform: 'linux', resolve: () => FakeServer }, Object.assign(new EventEmitter(), { addContext() {} })],
    ] as const) {
      handleUpgrade.mockClear()
      const { handoff, manager } = attachTo(env, server)
      const socket = fakeSocket()
      server.emit('upgrade', req('/ws'), socket, Buffer.alloc(0))
      server.emit('upgrade', req('/elsewhere'), fakeSocket(), Buffer.alloc(0))
      expect(handleUpgrade).toHaveBeenCalledTimes(1)
      expect(manager.handleConnection).toHaveBeenCalledWith(accepted, '/proj')
      expect(handoff).not.toHaveBeenCalled()
      expect(socket.destroy).not.toHaveBeenCalled()
    }
  })
})
