// How the package loads: index.js requires the generated loader (native.js), hands the
// addon its lib/ helpers once per JavaScript environment, and re-exports the loader so
// ESM named imports keep working. Each case runs in a fresh node process.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

function node(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 10_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

function expectOk(r: ReturnType<typeof node>): void {
  const info = `status=${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
  expect(r.status, info).toBe(0)
  expect(r.stdout, info).toContain('ok')
  expect(r.stderr, info).not.toMatch(/panick|Segmentation|Abort|FATAL ERROR/i)
}

describe('loading the package', () => {
  it('gives ESM importers the named exports (cjs-module-lexer sees the re-export)', () => {
    const script = `
import { WebSocketManager, EventBroadcaster, NativeSocket } from ${JSON.stringify(ROOT + 'index.js')}
if (typeof WebSocketManager !== 'function' || typeof EventBroadcaster !== 'function' || typeof NativeSocket !== 'function') {
  throw new Error('missing named export')
}
new WebSocketManager().shutdown()
console.log('ok')
`
    expectOk(node(['--input-type=module', '-e', script]))
  })

  it('fails with ERR_CLUSO_NOT_LOADED, not a crash, when native.js is used on its own', () => {
    const script = `
const { WebSocketManager } = require('./native.js')
try {
  new WebSocketManager()
  console.log('constructed')
} catch (error) {
  if (error.code !== 'ERR_CLUSO_NOT_LOADED' || !/require\\('cluso-ws'\\)/.test(error.message)) throw error
  // and the package entry point still works afterwards
  const m = new (require('./index.js').WebSocketManager)()
  m.shutdown()
  console.log('ok')
}
`
    expectOk(node(['-e', script]))
  })

  it('installs the helpers per environment: a worker thread gets its own, not the main thread’s', () => {
    const script = `
const { Worker } = require('node:worker_threads')
const { WebSocketManager } = require('./index.js')
const main = new WebSocketManager(undefined, { pingIntervalMs: 0 })
// a worker that loads only native.js finds no helpers, although the main thread has them
const bare = new Worker(\`
  const { WebSocketManager } = require(\${JSON.stringify(process.cwd() + '/native.js')})
  try { new WebSocketManager(); process.exit(3) } catch (e) { process.exit(e.code === 'ERR_CLUSO_NOT_LOADED' ? 0 : 4) }
\`, { eval: true })
bare.on('exit', (code) => {
  if (code !== 0) { console.error('bare worker exit ' + code); process.exit(1) }
  // a worker that loads the package broadcasts through its own fan-out
  const full = new Worker(\`
    const { EventEmitter } = require('node:events')
    const { WebSocketManager } = require(\${JSON.stringify(process.cwd() + '/index.js')})
    const m = new WebSocketManager(undefined, { pingIntervalMs: 0 })
    const ws = Object.assign(new EventEmitter(), { readyState: 1, sent: [], send(t) { this.sent.push(t) }, close() {} })
    m.addConnection(ws, 'w')
    m.subscribe('w', 'files')
    m.broadcast('files', 'from the worker')
    m.shutdown()
    process.exit(ws.sent.length === 1 && ws.sent[0].includes('from the worker') ? 0 : 5)
  \`, { eval: true })
  full.on('exit', (code) => {
    if (code !== 0) { console.error('full worker exit ' + code); process.exit(1) }
    main.shutdown()
    console.log('ok')
  })
})
`
    expectOk(node(['-e', script]))
  })
})
