// worker_threads (issue 11, item 4): one manager per worker. Terminating a worker whose
// manager has a listener and a connected, subscribed client frees the port and the sockets
// (the manager's env cleanup hook shuts its core down) and never crashes the process.
import { once } from 'node:events'
import { createServer, connect as netConnect } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'

const FIXTURE = fileURLToPath(new URL('./fixtures/worker/listen.cjs', import.meta.url))
const CYCLES = 50
const EARLY_CYCLES = 20

interface Listening {
  type: 'listening'
  port: number
}

/** Resolves with the first JSON message from `ws` that satisfies `match`. */
function nextMessage(ws: WebSocket, match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: Buffer) => {
      const message = JSON.parse(data.toString()) as Record<string, unknown>
      if (!match(message)) return
      ws.off('message', onMessage)
      ws.off('close', onClose)
      resolve(message)
    }
    const onClose = () => reject(new Error('closed before the expected message'))
    ws.on('message', onMessage)
    ws.once('close', onClose)
  })
}

/** Whether a TCP connection to the port is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ port, host: '127.0.0.1' })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

/** Binds the port with a plain `net` server and releases it again. */
async function bindAndRelease(port: number): Promise<void> {
  const server = createServer()
  server.listen({ port, host: '127.0.0.1', exclusive: true })
  await once(server, 'listening')
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

async function cycle(i: number): Promise<void> {
  const worker = new Worker(FIXTURE)
  const errors: unknown[] = []
  worker.on('error', (error) => errors.push(error))
  const [message] = (await once(worker, 'message')) as [Listening | { type: 'error'; message: string }]
  if (message.type !== 'listening') throw new Error(`cycle ${i}: listen failed: ${message.message}`)
  const { port } = message

  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  const status = (m: Record<string, unknown>) => (m.data as { status?: string } | undefined)?.status
  await nextMessage(ws, (m) => status(m) === 'connected')
  ws.send(JSON.stringify({ type: 'subscribe', channel: 'jobs' }))
  await nextMessage(ws, (m) => status(m) === 'subscribed')
  const event = nextMessage(ws, (m) => m.type === 'event')
  worker.postMessage({ type: 'broadcast', channel: 'jobs', data: { cycle: i } })
  expect((await event).data).toEqual({ cycle: i })

  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
  await worker.terminate()
  // The worker's thread has ended: its listener is closed and its port free.
  expect(await refused(port)).toBe(true)
  await bindAndRelease(port)
  // The server side of the connection is gone too: the client sees it close.
  expect(await closed).toBeGreaterThan(0)
  expect(errors).toEqual([])
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer()
  server.listen({ port: 0, host: '127.0.0.1' })
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('worker_threads', () => {
  it(`frees the port and sockets of a terminated worker, ${CYCLES} times, without crashing`, { timeout: 45_000 }, async () => {
    for (let i = 0; i < CYCLES; i++) await cycle(i)
  })

  it(`frees a port whose bind was in flight when the worker was terminated, ${EARLY_CYCLES} times`, async () => {
    for (let i = 0; i < EARLY_CYCLES; i++) {
      const port = await freePort()
      const worker = new Worker(FIXTURE, { workerData: { port } })
      const errors: unknown[] = []
      worker.on('error', (error) => errors.push(error))
      await once(worker, 'message') // 'started': listen() was called, its bind may be pending
      await worker.terminate()
      await bindAndRelease(port)
      expect(errors).toEqual([])
    }
  })
})
