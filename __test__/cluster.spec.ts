// Scale-out through Redis (issue 13), against a real redis-server: three Node processes,
// each a manager with `cluster` that listens natively and takes JavaScript sockets through
// `ws`; clients on each. One order and one `seq` for all, resume on another process, Redis
// killed and restarted mid-stream, a slow Redis, bad and unreachable configuration.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocketManager } from '../index.js'
import { cleanUp, onCleanUp, openClient, waitFor, type TestClient } from './helpers/native.js'
import { startRedis, type TestRedis } from './helpers/redis.js'

afterEach(cleanUp)

const FIXTURE = fileURLToPath(new URL('./fixtures/cluster-node.mjs', import.meta.url))
/** Reconnection backs off up to 5 s. */
const RECONNECT_MS = 20_000

interface Event {
  type: 'event'
  channel: string
  data: { from: string; i: number }
  seq: number
  epoch: string
}

interface Stats {
  clusterUp?: boolean
  clusterDropped?: number
  clusterQueued?: number
  clusterLocalOnly?: number
  broadcasts: number
}

class Node {
  private next = 0
  private readonly waiting = new Map<number, (reply: Record<string, unknown>) => void>()
  constructor(
    readonly child: ChildProcess,
    readonly nativePort: number,
    readonly jsPort: number,
  ) {
    child.on('message', (message: Record<string, unknown>) => {
      const resolve = this.waiting.get(message.id as number)
      this.waiting.delete(message.id as number)
      resolve?.(message)
    })
  }

  ask(cmd: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = ++this.next
    return new Promise((resolve) => {
      this.waiting.set(id, resolve)
      this.child.send({ id, cmd, ...args })
    })
  }

  broadcast(from: string, count: number, channel = 'files') {
    return this.ask('broadcast', { from, count, channel })
  }

  async stats(): Promise<Stats> {
    return (await this.ask('stats')).stats as Stats
  }

  async metrics(): Promise<string> {
    return (await this.ask('stats')).metrics as string
  }

  up(deadline = RECONNECT_MS) {
    return waitFor('cluster up', async () => (await this.stats()).clusterUp === true, deadline)
  }

  client(kind: 'native' | 'js'): Promise<TestClient> {
    const port = kind === 'native' ? this.nativePort : this.jsPort
    return openClient('ws', `ws://127.0.0.1:${port}/ws`)
  }
}

async function startNode(redis: TestRedis, prefix: string, env: Record<string, string> = {}): Promise<Node> {
  const child = fork(FIXTURE, [], {
    env: { ...process.env, REDIS_URL: redis.url, PREFIX: prefix, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  onCleanUp(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const ready = await new Promise<{ nativePort: number; jsPort: number }>((resolve, reject) => {
    child.once('message', (m: { nativePort: number; jsPort: number }) => resolve(m))
    child.once('exit', (code) => reject(new Error(`cluster node exited with ${code}`)))
  })
  return new Node(child, ready.nativePort, ready.jsPort)
}

/** Reads the welcome, subscribes, returns the reply's data. */
async function subscribe(client: TestClient, since?: { epoch: string; seq: number }) {
  await client.next()
  return resubscribe(client, since)
}

async function resubscribe(client: TestClient, since?: { epoch: string; seq: number }) {
  client.send(JSON.stringify({ type: 'subscribe', channel: 'files', id: 's', ...(since ? { since } : {}) }))
  const reply = JSON.parse(await client.next())
  expect(reply.type).toBe('response')
  return reply.data as { epoch: string; seq: number; recovered?: boolean }
}

async function events(client: TestClient, count: number): Promise<Event[]> {
  const out: Event[] = []
  for (let i = 0; i < count; i++) out.push(JSON.parse(await client.next()) as Event)
  return out
}

const tag = (e: Event) => `${e.data.from}${e.data.i}@${e.seq}`

describe('cluster: several processes through one Redis', () => {
  it('delivers every broadcast to every client on every process in one order and seq', async () => {
    const redis = await startRedis()
    const nodes = await Promise.all([1, 2, 3].map(() => startNode(redis, 'order')))
    await Promise.all(nodes.map((n) => n.up()))
    const clients = await Promise.all(
      nodes.flatMap((n) => [n.client('native'), n.client('js')]),
    )
    const positions = await Promise.all(clients.map((c) => subscribe(c)))
    expect(new Set(positions.map((p) => p.epoch)).size).toBe(1)
    expect(positions.every((p) => p.seq === 0)).toBe(true)

    await Promise.all(nodes.map((n, k) => n.broadcast(`p${k}`, 40)))
    const seen = await Promise.all(clients.map((c) => events(c, 120)))
    const reference = seen[0]!.map(tag)
    for (const s of seen) expect(s.map(tag)).toEqual(reference)
    expect(seen[0]!.map((e) => e.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1))
    // each process's own broadcasts keep the order it made them in
    for (const k of [0, 1, 2]) {
      const mine = seen[0]!.filter((e) => e.data.from === `p${k}`).map((e) => e.data.i)
      expect(mine).toEqual(Array.from({ length: 40 }, (_, i) => i))
    }
    const stats = await nodes[0]!.stats()
    expect(stats).toMatchObject({ clusterUp: true, clusterDropped: 0, clusterLocalOnly: 0, broadcasts: 40 })
  })

  it('keeps a JavaScript socket\'s subscription changes in order with the events', async () => {
    const redis = await startRedis()
    const a = await startNode(redis, 'changes')
    await a.up()
    const flaky = await a.client('js')
    const steady = await a.client('js')
    await flaky.next()
    await subscribe(steady)
    // subscribe and unsubscribe back to back, without waiting for the first answer
    flaky.send(JSON.stringify({ type: 'subscribe', channel: 'files', id: 's' }))
    flaky.send(JSON.stringify({ type: 'unsubscribe', channel: 'files', id: 'u' }))
    const answers = [JSON.parse(await flaky.next()), JSON.parse(await flaky.next())]
    expect(answers.map((r) => r.data.status)).toEqual(['subscribed', 'unsubscribed'])
    await a.broadcast('a', 1)
    expect(tag((await events(steady, 1))[0]!)).toBe('a0@1')
    // the same fan-out call would have reached it: after a ping's answer, nothing is pending
    flaky.send(JSON.stringify({ type: 'ping' }))
    expect(JSON.parse(await flaky.next()).type).toBe('pong')
    expect(flaky.pending()).toBe(0)
  })

  it('resumes a client on another process, from the mirror or from the Redis stream', async () => {
    const redis = await startRedis()
    const [a, b] = await Promise.all([startNode(redis, 'resume'), startNode(redis, 'resume')])
    await Promise.all([a!.up(), b!.up()])
    const onA = await a!.client('native')
    await subscribe(onA)
    await a!.broadcast('a', 30)
    const seen = await events(onA, 30)
    const epoch = seen[0]!.epoch
    await onA.close()

    // b saw every event go by: the gap comes from its mirror
    const onB = await b!.client('js')
    const reply = await subscribe(onB, { epoch, seq: 10 })
    expect(reply).toMatchObject({ epoch, seq: 30, recovered: true })
    expect((await events(onB, 20)).map(tag)).toEqual(seen.slice(10).map(tag))

    // a process that started after them knows nothing: the gap comes from Redis
    const c = await startNode(redis, 'resume')
    await c.up()
    for (const kind of ['native', 'js'] as const) {
      const onC = await c.client(kind)
      const fromRedis = await subscribe(onC, { epoch, seq: 25 })
      expect(fromRedis).toMatchObject({ epoch, seq: 30, recovered: true })
      expect((await events(onC, 5)).map(tag)).toEqual(seen.slice(25).map(tag))
      const stale = await resubscribe(onC, { epoch: 'elsewhere', seq: 3 })
      expect(stale).toMatchObject({ epoch, seq: 30, recovered: false })
    }
    // live events continue after the replay on every process
    await b!.broadcast('b', 1)
    expect(tag((await events(onB, 1))[0]!)).toBe('b0@31')
  })

  it('keeps local delivery while Redis is down and resumes cross-process delivery when it returns', async () => {
    const redis = await startRedis()
    const [a, b] = await Promise.all([startNode(redis, 'outage'), startNode(redis, 'outage')])
    await Promise.all([a!.up(), b!.up()])
    const onA = await a!.client('js')
    const onB = await b!.client('native')
    await Promise.all([subscribe(onA), subscribe(onB)])
    await a!.broadcast('a', 5)
    const before = await events(onA, 5)
    expect((await events(onB, 5)).map(tag)).toEqual(before.map(tag))

    await redis.kill()
    await waitFor('a sees Redis down', async () => (await a!.stats()).clusterUp === false)
    expect(await a!.metrics()).toMatch(/^cluso_ws_cluster_up 0$/m)
    await a!.broadcast('down', 3)
    const during = await events(onA, 3)
    expect(during.map((e) => e.data.i)).toEqual([0, 1, 2])
    expect(during[0]!.epoch).not.toBe(before[0]!.epoch)
    expect(new Set(during.map((e) => e.epoch)).size).toBe(1)
    // resuming from the shared epoch while it is gone: told so, nothing partial
    const resumed = await resubscribe(onA, { epoch: before[0]!.epoch, seq: 2 })
    expect(resumed.recovered).toBe(false)
    expect(onB.pending()).toBe(0)

    await redis.restart()
    await Promise.all([a!.up(), b!.up()])
    expect(await a!.metrics()).toMatch(/^cluso_ws_cluster_up 1$/m)
    await b!.broadcast('after', 2)
    const afterA = await events(onA, 2)
    const afterB = await events(onB, 2)
    expect(afterA.map(tag)).toEqual(afterB.map(tag))
    expect(afterA.map((e) => e.data.from)).toEqual(['after', 'after'])
    expect((await a!.stats()).clusterLocalOnly).toBe(3)
  }, 60_000)

  it('meets a slow Redis with its bounded queue and counts what overflows', async () => {
    const redis = await startRedis()
    const a = await startNode(redis, 'slow', { MAX_QUEUED: '20', HISTORY_SIZE: '0' })
    await a.up()
    const onA = await a.client('native')
    await subscribe(onA)
    const sleeping = redis.cli('DEBUG', 'SLEEP', '1')
    await waitFor('Redis asleep', async () => {
      // the queue holds what the sleeping Redis cannot take; past it broadcasts are dropped
      await a.broadcast('x', 200)
      return ((await a.stats()).clusterDropped ?? 0) > 0
    })
    await sleeping
    const stats = await waitFor('queue drained', async () => {
      const s = await a.stats()
      return s.clusterQueued === 0 && s
    })
    expect(stats.clusterUp).toBe(true)
    expect(stats.clusterQueued).toBe(0)
    // what was not dropped was delivered, in order
    const delivered = stats.broadcasts - (stats.clusterDropped ?? 0)
    const got = await events(onA, delivered)
    expect(got.length).toBe(delivered)
    expect(onA.pending()).toBe(0)
  }, 30_000)
})

describe('cluster: security', () => {
  it('works over rediss:// (TLS) with a user and password, and stays local with a wrong one', async () => {
    const user = { name: 'alice', pass: 's3cret' }
    const redis = await startRedis({ tls: true, user })
    const env = { SSL_CERT_FILE: redis.caFile ?? '' }
    const [a, b] = await Promise.all([startNode(redis, 'tls', env), startNode(redis, 'tls', env)])
    await Promise.all([a!.up(), b!.up()])
    const onB = await b!.client('native')
    await subscribe(onB)
    await a!.broadcast('a', 3)
    expect((await events(onB, 3)).map(tag)).toEqual(['a0@1', 'a1@2', 'a2@3'])

    const wrong = await startNode(
      { ...redis, url: redis.url.replace(':s3cret@', ':wrong@') },
      'tls',
      env,
    )
    const onWrong = await wrong.client('js')
    await subscribe(onWrong)
    await wrong.broadcast('w', 1)
    expect(tag((await events(onWrong, 1))[0]!)).toBe('w0@1')
    const stats = await wrong.stats()
    expect(stats).toMatchObject({ clusterUp: false, clusterLocalOnly: 1 })
    expect(onB.pending()).toBe(0)
  }, 30_000)
})

describe('cluster: configuration', () => {
  it('throws ERR_CLUSO_INVALID_OPTION for a URL that does not parse, or a bad prefix', () => {
    for (const cluster of [
      { redisUrl: 'not a url' },
      { redisUrl: 'http://127.0.0.1:6379' },
      { redisUrl: 'redis://127.0.0.1', prefix: 'a*b' },
      { redisUrl: 'redis://127.0.0.1', maxQueuedPublishes: 0 },
    ]) {
      let thrown: unknown
      try {
        new WebSocketManager(undefined, { cluster })
      } catch (e) {
        thrown = e
      }
      expect(thrown).toBeInstanceOf(RangeError)
      expect((thrown as { code?: string }).code).toBe('ERR_CLUSO_INVALID_OPTION')
      expect(String(thrown)).not.toContain('secret')
    }
    let thrown: unknown
    try {
      new WebSocketManager(undefined, { cluster: { redisUrl: 'redis://user:secret@[bad' } })
    } catch (e) {
      thrown = e
    }
    expect(String(thrown)).not.toContain('secret')
  })

  it('runs locally when Redis cannot be reached, without a hung listen()', async () => {
    const m = new WebSocketManager(undefined, {
      pingIntervalMs: 0,
      historySize: 10,
      cluster: { redisUrl: 'redis://user:pass@127.0.0.1:1' },
    })
    onCleanUp(() => m.shutdown())
    const { port } = await m.listen({ port: 0 })
    const client = await openClient('ws', `ws://127.0.0.1:${port}/ws`)
    await subscribe(client)
    m.broadcast('files', { from: 'local', i: 0 })
    const [event] = await events(client, 1)
    expect(event).toMatchObject({ data: { from: 'local', i: 0 }, seq: 1 })
    expect(m.getStats()).toMatchObject({ clusterUp: false, clusterLocalOnly: 1 })
    await client.close()
  })
})
