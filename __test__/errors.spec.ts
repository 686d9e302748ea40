// Errors at the boundary (issue 8, items 2 and 6): what `listen()` fails with, and the
// "log, never throw" contract of every write method after `shutdown()`.
import { spawnSync } from 'node:child_process'
import { createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { DEADLINE_MS, cleanUp, manager, onCleanUp } from './helpers/native.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

afterEach(cleanUp)

/** What `fn` throws or what its promise rejects with: `listen()` may fail either way. */
async function failureOf(fn: () => unknown): Promise<unknown> {
  try {
    await fn()
  } catch (error) {
    return error
  }
  throw new Error('expected a failure, but it succeeded')
}

describe('listen() errors', () => {
  it('rejects on a port another server holds with EADDRINUSE, the address and the cause', async () => {
    const holder = createServer()
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
    onCleanUp(() => new Promise<void>((resolve) => holder.close(() => resolve())))
    const { port } = holder.address() as AddressInfo

    const error = await failureOf(() => manager().listen({ port, host: '127.0.0.1' }))
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ code: 'EADDRINUSE' })
    expect((error as Error).message).toContain(`listen on 127.0.0.1:${port} failed`)
    expect((error as Error).cause).toBeInstanceOf(Error)
  })

  it('throws a RangeError with ERR_CLUSO_INVALID_OPTION for a port out of range', async () => {
    const error = await failureOf(() => manager().listen({ port: 70000 }))
    expect(error).toBeInstanceOf(RangeError)
    expect(error).toMatchObject({ code: 'ERR_CLUSO_INVALID_OPTION' })
  })

  it('fails with ERR_CLUSO_SHUT_DOWN after shutdown()', async () => {
    const m = manager()
    await m.shutdown()
    const error = await failureOf(() => m.listen({ port: 0 }))
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ code: 'ERR_CLUSO_SHUT_DOWN' })
  })
})

describe('write methods after shutdown()', () => {
  it('log one warning per method however often they are called, and never throw', () => {
    const script = `
const { WebSocketManager, EventBroadcaster } = require(${JSON.stringify(`${ROOT}index.js`)})
;(async () => {
  const m = new WebSocketManager()
  const events = new EventBroadcaster(m)
  await m.shutdown()
  for (let i = 0; i < 3; i++) m.broadcast('files', { i })
  for (let i = 0; i < 2; i++) m.send('conn-1', { i })
  for (let i = 0; i < 2; i++) m.subscribe('conn-1', 'files')
  for (let i = 0; i < 2; i++) events.fileChanged('x.ts', 'change')
  console.log('ok')
})().catch((error) => {
  console.error('threw: ' + (error && error.stack || error))
  process.exit(2)
})
`
    // spawnSync kills only this child (SIGKILL) if it is still running at the deadline.
    const r = spawnSync(process.execPath, ['-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, CLUSO_WS_LOG: 'warn' },
      timeout: DEADLINE_MS,
      killSignal: 'SIGKILL',
    })
    const info = `status=${r.status} signal=${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
    expect(r.error, info).toBeUndefined()
    expect(r.signal, info).toBeNull()
    expect(r.status, info).toBe(0)
    expect(r.stdout, info).toContain('ok')

    const ignored = r.stderr.split('\n').filter((line) => line.includes('WebSocketManager is shut down; call ignored'))
    const method = (name: string) => ignored.filter((line) => line.includes(`method="${name}"`))
    expect(method('broadcast'), info).toHaveLength(1)
    expect(method('send'), info).toHaveLength(1)
    expect(method('subscribe'), info).toHaveLength(1)
    // The EventBroadcaster writes through manager.broadcast, so its calls fall under the one
    // `broadcast` warning; no method warns twice.
    const methods = ignored.map((line) => /method="([^"]*)"/.exec(line)?.[1])
    expect(new Set(methods).size, info).toBe(methods.length)
  })
})
