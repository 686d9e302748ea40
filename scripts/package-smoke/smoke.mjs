// Runs in a fresh app that installed the two tarballs of `npm run package` (see
// ../package-smoke.sh): the client loads without the binary, `require` and `import` give the
// same binding from the platform package, and listen → connect → subscribe → broadcast →
// receive → shutdown works. Exits non-zero on any failure or after the deadline.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import WebSocket from 'ws'

const deadline = setTimeout(() => {
  console.error('smoke: deadline of 20 s passed')
  process.exit(1)
}, 20_000)
const require = createRequire(import.meta.url)
// dlopen'ed addons of this package, from the process's memory map (Linux).
const binaries = () => readFileSync('/proc/self/maps', 'utf8').match(/\S*cluso-ws\.[\w-]+\.node$/gm) ?? []

const { connect } = await import('cluso-ws/client')
assert.equal(typeof connect, 'function')
assert.equal(typeof require('cluso-ws/client').connect, 'function')
assert.deepEqual(binaries(), [], 'cluso-ws/client must not load the native binary')

const cjs = require('cluso-ws')
const { WebSocketManager, EventBroadcaster } = await import('cluso-ws')
assert.equal(WebSocketManager, cjs.WebSocketManager, 'import and require give one binding')
const [binary] = binaries()
assert.match(binary ?? '', /node_modules\/cluso-ws-[\w-]+\/cluso-ws\.[\w-]+\.node$/, 'binary from the platform package')

const manager = new WebSocketManager(undefined, { pingIntervalMs: 0 })
const broadcaster = new EventBroadcaster(manager)
const { port, host } = await manager.listen({ port: 0, host: '127.0.0.1' })
const ws = new WebSocket(`ws://${host}:${port}/ws`)
const inbox = []
let waiter
ws.on('message', (data) => {
  inbox.push(JSON.parse(data.toString()))
  waiter?.()
})
ws.on('error', (err) => {
  console.error('smoke: client error', err)
  process.exit(1)
})
const next = async (match) => {
  for (;;) {
    const i = inbox.findIndex(match)
    if (i >= 0) return inbox.splice(i, 1)[0]
    await new Promise((resolve) => (waiter = resolve))
  }
}

await next((m) => m.data?.status === 'connected')
ws.send(JSON.stringify({ type: 'subscribe', channel: 'files', id: '1' }))
await next((m) => m.id === '1' && m.data?.status === 'subscribed')
broadcaster.fileChanged('src/main.ts', 'change')
const event = await next((m) => m.type === 'event')
assert.equal(event.channel, 'files')
assert.deepEqual([event.data.file, event.data.event], ['src/main.ts', 'change'])

ws.close()
await manager.shutdown()
clearTimeout(deadline)
console.log(`smoke ok on Node ${process.version}: ${binary.slice(binary.indexOf('node_modules'))}`)
