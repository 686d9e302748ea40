// Process lifetime (SPEC A.6 "the ping timer keeps the process alive", STYLE 5): the addon must
// never keep node alive on its own, and must not hang or crash at exit.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DEADLINE_MS = 8000

interface Result {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
}

/** Runs `node -e script` in the repo root; kills it (only it) after the deadline. */
function runChild(script: string, deadlineMs = DEADLINE_MS): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, deadlineMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })
}

function expectCleanExit(r: Result): void {
  const info = `code=${r.code} signal=${r.signal} timedOut=${r.timedOut}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
  expect(r.timedOut, `child did not exit by itself within ${DEADLINE_MS} ms\n${info}`).toBe(false)
  expect(r.signal, info).toBeNull()
  expect(r.code, info).toBe(0)
  expect(r.stdout, info).toContain('ok')
  expect(r.stderr, info).not.toMatch(/panick|Segmentation|Abort|FATAL ERROR/i)
}

const PRELUDE = `
const path = require('path')
const { EventEmitter } = require('events')
const { WebSocketManager, EventBroadcaster } = require(path.resolve('index.js'))
function mock() {
  const ws = new EventEmitter()
  ws.readyState = 1
  ws.sent = []
  ws.send = (s) => ws.sent.push(s)
  ws.close = () => {}
  ws.terminate = () => {}
  ws.ping = () => setImmediate(() => ws.emit('pong'))
  return ws
}
function check(cond, msg) { if (!cond) { console.error('check failed: ' + msg); process.exit(3) } }
`

describe('process lifetime', () => {
  it('exits by itself with a live manager (default options) that was never shut down', async () => {
    const r = await runChild(`${PRELUDE}
const m = new WebSocketManager()
const ws = mock()
m.addConnection(ws, 'a')
m.subscribe('a', 'files')
m.broadcast('files', { file: 'x.ts' })
new EventBroadcaster(m).fileChanged('x.ts', 'change')
check(ws.sent.length === 2, 'sent ' + ws.sent.length)
console.log('ok')
`)
    expectCleanExit(r)
  })

  it('exits by itself with a short ping interval and an answering connection', async () => {
    const r = await runChild(`${PRELUDE}
const m = new WebSocketManager(undefined, { pingIntervalMs: 20 })
const ws = mock()
let pings = 0
ws.ping = () => { pings++; setImmediate(() => ws.emit('pong')) }
m.addConnection(ws, 'a')
console.log('ok')
`)
    expectCleanExit(r)
  })

  it('exits by itself after shutdown() is called twice', async () => {
    const r = await runChild(`${PRELUDE}
const m = new WebSocketManager(new EventEmitter())
const ws = mock()
m.handleConnection(ws, process.cwd())
m.subscribe([...m.getConnections().keys()][0], 'files')
m.broadcast('files', 1)
const first = m.shutdown()
check(m.shutdown() === first, 'a second shutdown() returned another promise')
for (let i = 0; i < 3; i++) { m.broadcast('files', 1); m.send('x', 1); m.subscribe('x', 'files') }
check(m.getSubscribers('files').length === 0, 'reads after shutdown are not empty')
first.then(() => console.log('ok'))
`)
    expectCleanExit(r)
  })

  it('exits cleanly through process.exit(0) with a live ws server and client', async () => {
    const r = await runChild(`${PRELUDE}
const http = require('http')
const { WebSocketServer, WebSocket } = require('ws')
const server = http.createServer()
const wss = new WebSocketServer({ server })
const m = new WebSocketManager(wss)
wss.on('connection', (ws) => m.handleConnection(ws, process.cwd()))
server.listen(0, '127.0.0.1', () => {
  const client = new WebSocket('ws://127.0.0.1:' + server.address().port)
  let n = 0
  client.on('message', (data) => {
    n++
    const msg = JSON.parse(data.toString())
    if (n === 1) { check(msg.data.status === 'connected', 'welcome'); client.send('{"type":"subscribe","channel":"files"}') }
    else if (n === 2) { check(msg.data.status === 'subscribed', 'subscribed'); m.broadcast('files', { big: 'x'.repeat(1000) }) }
    else if (n === 3) { check(msg.type === 'event', 'event'); console.log('ok'); process.exit(0) }
  })
})
`)
    expectCleanExit(r)
  })

  it('exits by itself once real sockets are closed and the manager is shut down', async () => {
    const r = await runChild(`${PRELUDE}
const http = require('http')
const { WebSocketServer, WebSocket } = require('ws')
const server = http.createServer()
const wss = new WebSocketServer({ server })
const m = new WebSocketManager(wss, { pingIntervalMs: 50 })
wss.on('connection', (ws) => m.handleConnection(ws, process.cwd()))
server.listen(0, '127.0.0.1', () => {
  const client = new WebSocket('ws://127.0.0.1:' + server.address().port)
  client.on('message', () => {
    m.shutdown()
    client.on('close', () => {
      wss.close()
      server.close()
      console.log('ok')
    })
  })
})
`)
    expectCleanExit(r)
  })

  it('exits by itself once real sockets are closed, without shutdown()', async () => {
    const r = await runChild(`${PRELUDE}
const http = require('http')
const { WebSocketServer, WebSocket } = require('ws')
const server = http.createServer()
const wss = new WebSocketServer({ server })
const m = new WebSocketManager(wss)
wss.on('connection', (ws) => m.handleConnection(ws, process.cwd()))
server.listen(0, '127.0.0.1', () => {
  const client = new WebSocket('ws://127.0.0.1:' + server.address().port)
  client.on('message', () => {
    client.close()
    client.on('close', () => {
      wss.close()
      server.close()
      console.log('ok')
    })
  })
})
`)
    expectCleanExit(r)
  })

  it('survives a worker thread that loads the addon and exits without shutdown', async () => {
    const r = await runChild(`
const { Worker } = require('worker_threads')
const path = require('path')
const code = ${JSON.stringify(PRELUDE)} + \`
const m = new WebSocketManager()
const ws = mock()
m.handleConnection(ws, '/')
m.subscribe([...m.getConnections().keys()][0], 'files')
m.broadcast('files', 1)
check(ws.sent.length === 2, 'worker sent')
\`
const w = new Worker(code, { eval: true })
w.on('error', (e) => { console.error(e); process.exit(4) })
w.on('exit', (c) => {
  if (c !== 0) { console.error('worker exit ' + c); process.exit(5) }
  // and a second worker terminated while its manager is live
  const w2 = new Worker(code + "\\nsetInterval(() => {}, 1000); require('worker_threads').parentPort.postMessage('ready')", { eval: true })
  w2.on('message', () => w2.terminate())
  w2.on('exit', () => {
    const { WebSocketManager } = require(path.resolve('index.js'))
    const m = new WebSocketManager()
    m.shutdown()
    console.log('ok')
  })
})
`)
    expectCleanExit(r)
  })
})
