// Micro-benchmark for issue 12 item 6: memory per JavaScript socket in drop-in mode, against
// the original algorithm (SPEC A.1) in plain JavaScript. Each implementation runs in its own
// child process; N mock sockets (EventEmitters, as in the original's unit tests) are handed
// to handleConnection() and subscribed through the protocol ('message' events), as the app
// wiring does with `ws` sockets. Reports, per socket: RSS, V8 heap used, and the rest of RSS
// (native allocations: the addon's records, napi references), all after global.gc().
// The sockets themselves cost the same in both, so the difference is the manager's.
//
//   node --expose-gc bench/micro/dropin-memory.mjs [N=10000] [rounds=3]
//
// WARM=0 leaves out the 200 warm-up connections made before the first reading (with them,
// one-off costs such as compiling the code paths are not counted). IMPLS=cluso runs one.
import { execFileSync } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { OriginalManager } from '../servers/original-manager.mjs'

const require = createRequire(import.meta.url)
const self = fileURLToPath(import.meta.url)

function mockSocket() {
  const ws = new EventEmitter()
  ws.readyState = 1
  ws.send = function () {}
  ws.ping = function () {}
  return ws
}

function gcAll() {
  for (let i = 0; i < 6; i++) global.gc()
}

function sample() {
  gcAll()
  const m = process.memoryUsage()
  return { rss: m.rss, heap: m.heapUsed, external: m.external }
}

async function child(impl, n) {
  const manager =
    impl === 'original'
      ? new OriginalManager()
      : new (require(process.env.CLUSO_INDEX ?? '../../index.js').WebSocketManager)()
  const subscribe = Buffer.from(JSON.stringify({ type: 'subscribe', channel: 'files', id: 's' }))
  // Warm up the code paths, so their one-off allocations are not counted.
  const warm = []
  for (let i = 0; i < Number(process.env.WARM ?? 200); i++) {
    const ws = mockSocket()
    manager.handleConnection(ws, '/app')
    ws.emit('message', subscribe)
    warm.push(ws)
  }
  const sockets = []
  for (let i = 0; i < n; i++) sockets.push(mockSocket())
  await new Promise((r) => setTimeout(r, 50))
  const before = sample()
  for (let i = 0; i < n; i++) {
    const ws = sockets[i]
    manager.handleConnection(ws, '/app')
    ws.emit('message', subscribe)
    // Yield now and then, as connections arrive over time.
    if (i % 500 === 499) await new Promise((r) => setImmediate(r))
  }
  await new Promise((r) => setTimeout(r, 200))
  const after = sample()
  const per = (k) => (after[k] - before[k]) / n
  const subscribers =
    impl === 'original' ? manager.connections.size : manager.getSubscribers('files').length
  process.stdout.write(
    JSON.stringify({ impl, n, subscribers, rss: per('rss'), heap: per('heap'), external: per('external') }) + '\n',
  )
  if (sockets.length + warm.length < 0) console.log(manager) // keep everything reachable
  process.exit(0)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

if (process.argv[2] === '--child') {
  await child(process.argv[3], Number(process.argv[4]))
} else {
  const n = Number(process.argv[2] ?? 10000)
  const rounds = Number(process.argv[3] ?? 3)
  const impls = (process.env.IMPLS ?? 'original,cluso').split(',')
  const results = Object.fromEntries(impls.map((i) => [i, []]))
  for (let r = 0; r < rounds; r++) {
    for (const impl of impls) {
      const out = execFileSync(process.execPath, ['--expose-gc', self, '--child', impl, String(n)], {
        encoding: 'utf8',
        env: { ...process.env, CLUSO_WS_LOG: 'error' },
      })
      results[impl].push(JSON.parse(out))
    }
  }
  console.log(`N = ${n}, ${rounds} rounds; bytes per subscribed socket (median [min–max])`)
  for (const impl of impls) {
    const rows = results[impl]
    const fmt = (k) => {
      const v = rows.map((x) => x[k])
      return `${median(v).toFixed(0)} [${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)}]`
    }
    const native = rows.map((x) => x.rss - x.heap)
    console.log(
      `${impl.padEnd(9)} rss ${fmt('rss')}  heap ${fmt('heap')}  external ${fmt('external')}  ` +
        `rss-heap ${median(native).toFixed(0)}  (subscribers ${rows[0].subscribers})`,
    )
  }
}
