// Where a cold broadcast() goes (issue 12): the JS-thread time of single calls made after
// the thread slept, next to the same-sized pieces of work any broadcast must do on that
// thread — an empty measurement, `new Date().toISOString()`, the original module's
// `JSON.stringify` of the envelope, a native call that does nothing (getChannels of an
// unknown id) — so the floor this machine puts under a cold call is measured in the same
// process, interleaved, instead of guessed.
//
//   node bench/micro/cold-floor.mjs [N=1000] [rounds=150] [idleMs=3]
//
// N subscribers connect from a child process (ws), so the server's JS thread does
// nothing between calls but sleep. To see the harness's one-core case, pin the server and
// put the subscribers on the other core:
//   SUBSCRIBERS_CPU=0 taskset -c 1 node bench/micro/cold-floor.mjs 1000
import { createRequire } from 'node:module'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const N = Number(process.argv[2] ?? 1000)

if (process.argv[3] === 'child') {
  const WebSocket = require('ws')
  let open = 0
  for (let i = 0; i < N; i++) {
    const client = new WebSocket(process.argv[4])
    client.on('open', () => {
      client.send('{"type":"subscribe","channel":"files"}')
      if (++open === N) process.send('ready')
    })
    client.on('error', (error) => {
      console.error(error.message)
      process.exit(1)
    })
  }
} else {
  const ROUNDS = Number(process.argv[3] ?? 150)
  const IDLE_MS = Number(process.argv[4] ?? 3)
  const { WebSocketManager } = require('../../index.js')
  const manager = new WebSocketManager(undefined, { pingIntervalMs: 0 })
  const { port } = await manager.listen({ port: 0 })
  const argv = [process.execPath, fileURLToPath(import.meta.url), String(N), 'child', `ws://127.0.0.1:${port}/ws`]
  const pinned = process.env.SUBSCRIBERS_CPU ? ['taskset', '-c', process.env.SUBSCRIBERS_CPU] : []
  const [command, ...args] = [...pinned, ...argv]
  const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`subscribers exited with ${code}`)))
  })
  const deadline = Date.now() + 30_000
  while (manager.getSubscribers('files').length < N) {
    if (Date.now() > deadline) throw new Error('subscribers did not all subscribe')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }

  const data = { file: 'src/components/editor/Editor.tsx', event: 'change', timestamp: new Date().toISOString() }
  const work = {
    'empty measurement': () => {},
    'new Date().toISOString()': () => new Date().toISOString(),
    'JSON.stringify(envelope)': () => JSON.stringify({ type: 'event', channel: 'files', data, timestamp: new Date().toISOString() }),
    'native no-op call': () => manager.getChannels('nobody'),
    'broadcast(), no subscriber': () => manager.broadcast('nobody', data),
    [`broadcast(), ${N} subscribers`]: () => manager.broadcast('files', data),
  }
  const samples = Object.fromEntries(Object.keys(work).map((name) => [name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of Object.entries(work)) {
      // The previous broadcast's fan-out ends, then the thread sleeps: every call is cold.
      const drained = Date.now() + 5_000
      while (manager.getStats().pendingBroadcasts > 0 && Date.now() < drained) await new Promise((resolve) => setTimeout(resolve, 1))
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS))
      const start = process.hrtime.bigint()
      run()
      samples[name].push(Number(process.hrtime.bigint() - start) / 1000)
    }
  }
  const at = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]
  const result = { n: N, rounds: ROUNDS, idleMs: IDLE_MS, node: process.version, coldUs: {} }
  for (const [name, values] of Object.entries(samples)) {
    const sorted = values.sort((a, b) => a - b)
    result.coldUs[name] = { median: +at(sorted, 0.5).toFixed(1), p25: +at(sorted, 0.25).toFixed(1), p75: +at(sorted, 0.75).toFixed(1) }
  }
  console.log(JSON.stringify(result, null, 2))
  child.kill()
  await manager.shutdown()
}
