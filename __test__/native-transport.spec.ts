// The native transport end to end (issue 3): connections owned by Rust through `listen()` and
// `attach()`, exercised with two independent client implementations (`ws` and undici's WHATWG
// WebSocket) and with raw TCP where byte-level control matters.
import { spawnSync } from 'node:child_process'
import { Agent, request as httpRequest } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { NativeSocket, WebSocketManager } from '../index.js'
import { startServer } from './helpers.js'
import {
  CONN_ID_RE,
  DEADLINE_MS,
  ISO_RE,
  RawConnection,
  SAMPLE_ACCEPT,
  TEST_TLS,
  cleanUp,
  fdCount,
  httpServer,
  portRefuses,
  manager,
  maskedFrame,
  onCleanUp,
  openClient,
  parseFrames,
  rawExchange,
  serveNative,
  statusOf,
  subscribeVia,
  subscribedClients,
  upgradeRequest,
  waitFor,
  welcomeId,
  within,
  type ClientKind,
  type TestClient,
  type TransportKind,
} from './helpers/native.js'

/** A cwd that needs JSON escaping, so the welcome message's bytes are really checked. */
const CWD = '/tmp/proj "quoted" \\ back é'

const TRANSPORTS: TransportKind[] = ['listen', 'attach']
const CLIENTS: ClientKind[] = ['ws', 'undici']

afterEach(async () => {
  await cleanUp()
})

function eventOf(text: string): { channel: string; data: unknown; timestamp: string } {
  return JSON.parse(text) as { channel: string; data: unknown; timestamp: string }
}

/** Asserts `text` is exactly the envelope the original would have sent for (channel, data). */
function expectEnvelope(text: string, channel: string, data: unknown): void {
  expect(text, 'an event envelope').toMatch(/^\{"type":"event","channel":/)
  const { timestamp } = eventOf(text)
  expect(timestamp).toMatch(ISO_RE)
  expect(text).toBe(JSON.stringify({ type: 'event', channel, data, timestamp }))
}

/** Every row of SPEC A.2 plus ping/pong, and the manager API on the native id. */
async function exerciseProtocol(m: WebSocketManager, client: TestClient): Promise<void> {
  const id = await welcomeId(client, CWD)
  expect(id).toMatch(CONN_ID_RE)
  const record = m.getConnections().get(id)
  expect(record?.ws).toBeInstanceOf(NativeSocket)
  expect(record?.id).toBe(id)
  expect(record?.isAlive).toBe(true)
  expect([...(record?.channels ?? ['missing'])]).toEqual([])
  expect(m.getStats()).toMatchObject({ connections: 1, nativeConnections: 1, jsConnections: 0 })

  client.send('{"type":"subscribe","channel":"files","id":"7"}')
  expect(await client.next()).toBe('{"type":"response","id":"7","data":{"status":"subscribed","channel":"files"}}')
  client.send('{"type":"subscribe","channel":"git"}')
  expect(await client.next()).toBe('{"type":"response","data":{"status":"subscribed","channel":"git"}}')
  expect(m.getSubscribers('files')).toEqual([id])
  expect(m.getChannels(id)).toEqual(['files', 'git'])

  const data = { file: 'src/main.ts', event: 'change', n: 1.5, list: [1, null, 'é"\\'], nested: { a: true } }
  m.broadcast('files', data)
  expectEnvelope(await client.next(), 'files', data)

  client.send('{"type":"request","id":"9","handler":"x","data":{}}')
  expect(await client.next()).toBe('{"type":"response","id":"9","data":{"error":"No handler for request type"}}')
  client.send('{"type":"ping"}')
  expect(await client.next()).toBe('{"type":"pong"}')
  client.send('not json')
  expect(await client.next()).toBe('{"type":"response","data":{"error":"Failed to parse message"}}')
  client.send('null')
  expect(await client.next()).toBe('{"type":"response","data":{"error":"Failed to parse message"}}')

  // Silently ignored: subscribe without a channel, unknown types. The pong proves nothing
  // was sent for them.
  client.send('{"type":"subscribe","id":"n"}')
  client.send('{"type":"bogus","id":"b"}')
  client.send('{"type":"event","channel":"files"}')
  client.send('{"type":"ping","id":"p"}')
  expect(await client.next()).toBe('{"type":"pong","id":"p"}')

  client.send('{"type":"unsubscribe","channel":"files"}')
  expect(await client.next()).toBe('{"type":"response","data":{"status":"unsubscribed","channel":"files"}}')
  expect(m.getSubscribers('files')).toEqual([])
  // Broadcasts are delivered in order: the git event arriving first proves the files one
  // went nowhere.
  m.broadcast('files', { skipped: true })
  m.broadcast('git', { seen: true })
  expectEnvelope(await client.next(), 'git', { seen: true })

  // The manager's API works on native ids.
  m.send(id, { hello: 'there', dropped: undefined })
  expect(await client.next()).toBe('{"hello":"there"}')
  m.subscribe(id, 'search')
  expect(m.getChannels(id)).toEqual(['git', 'search'])
  m.broadcast('search', 1)
  expectEnvelope(await client.next(), 'search', 1)
  m.unsubscribe(id, 'search')
  expect(m.getSubscribers('search')).toEqual([])

  m.removeConnection(id)
  const closed = await within(client.closed, DEADLINE_MS, 'close after removeConnection')
  expect(closed.code).toBe(1000)
  expect(m.getConnections().has(id)).toBe(false)
  await waitFor('the native connection to be gone', () => m.getStats().nativeConnections === 0)
}

describe('native transport', () => {
  for (const transport of TRANSPORTS) {
    describe(`${transport}()`, () => {
      for (const clientKind of CLIENTS) {
        it(`speaks the whole client protocol byte for byte to a ${clientKind} client`, async () => {
          const m = manager()
          const endpoint = await serveNative(m, transport, CWD)
          const client = await openClient(clientKind, endpoint.url())
          await exerciseProtocol(m, client)
        })
      }

      it('answers a frame sent in the same TCP packet as the upgrade request', async () => {
        const m = manager()
        const endpoint = await serveNative(m, transport, CWD)
        const raw = await RawConnection.open(endpoint.port)
        raw.socket.setNoDelay(true)
        // One write: the request head and two masked frames leave in one segment.
        raw.write(
          Buffer.concat([
            Buffer.from(upgradeRequest('/ws')),
            maskedFrame('{"type":"subscribe","channel":"files","id":"x"}'),
            maskedFrame('{"type":"ping"}'),
          ]),
        )
        const head = await raw.responseHead()
        expect(head).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/)
        expect(head).toContain(`\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n`)
        const [welcome, ack, pong] = await raw.frames(3)
        expect(welcome!.payload.toString()).toMatch(/^\{"type":"response","data":\{"status":"connected"/)
        expect(ack!.opcode).toBe(1)
        expect(ack!.payload.toString()).toBe(
          '{"type":"response","id":"x","data":{"status":"subscribed","channel":"files"}}',
        )
        expect(pong!.payload.toString()).toBe('{"type":"pong"}')
        expect(m.getSubscribers('files')).toHaveLength(1)
      })

      it('answers pings and close frames, and closes protocol violations with the RFC 6455 codes', async () => {
        const m = manager()
        const endpoint = await serveNative(m, transport, CWD)
        const withRsv1 = maskedFrame('{"type":"ping"}')
        withRsv1[0] = withRsv1[0]! | 0x40
        const cases: Array<[string, Buffer, number]> = [
          ['client close 1000', maskedFrame(Buffer.from([0x03, 0xe8]), 0x8), 1000],
          ['unmasked frame', Buffer.from([0x81, 0x02, 0x7b, 0x7d]), 1002],
          ['reserved opcode', maskedFrame('x', 0x3), 1002],
          ['RSV1 without an extension', withRsv1, 1002],
          ['invalid UTF-8 text', maskedFrame(Buffer.from([0xff, 0xfe]), 0x1), 1007],
        ]
        for (const [what, bytes, code] of cases) {
          const raw = await RawConnection.open(endpoint.port)
          raw.write(upgradeRequest('/ws'))
          expect(await raw.responseHead()).toMatch(/^HTTP\/1\.1 101 /)
          await raw.frames(1) // welcome
          if (what === 'client close 1000') {
            // A ping first: answered with a pong carrying its payload.
            raw.write(maskedFrame('hi', 0x9))
            const [pong] = await raw.frames(1)
            expect(pong!.opcode).toBe(0xa)
            expect(pong!.payload.toString()).toBe('hi')
          }
          raw.write(bytes)
          const [close] = await raw.frames(1)
          expect(close!.opcode, what).toBe(0x8)
          expect(close!.payload.readUInt16BE(0), what).toBe(code)
          await raw.closedByPeer()
        }
        await waitFor('every connection removed', () => m.getStats().nativeConnections === 0)
      })

      it('refuses bad handshakes with the HTTP status the ws package would, and counts them', async () => {
        const m = manager()
        const endpoint = await serveNative(m, transport, CWD)
        const cases: Array<[string, string, number]> = [
          ['POST', upgradeRequest('/ws', {}, 'POST'), 405],
          ['bad key', upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'not-a-key' }), 400],
          ['version 12', upgradeRequest('/ws', { 'Sec-WebSocket-Version': '12' }), 426],
          ['cross-origin', upgradeRequest('/ws', { Origin: 'http://evil.example' }), 403],
          ['Origin: null', upgradeRequest('/ws', { Origin: 'null' }), 403],
          ['look-alike origin', upgradeRequest('/ws', { Origin: 'http://127.0.0.1.evil.example' }), 403],
          ['rebound Host', upgradeRequest('/ws', { Host: 'evil.example' }), 403],
        ]
        // With attach(), other paths belong to the app's other 'upgrade' listeners.
        if (transport === 'listen') cases.push(['wrong path', upgradeRequest('/elsewhere'), 404])
        for (const [what, request, status] of cases) {
          const response = await rawExchange(endpoint.port, request)
          expect(statusOf(response), `${what}: ${response}`).toBe(status)
          expect(response, what).toContain('\r\nConnection: close\r\n')
          if (status === 426) expect(response).toContain('\r\nSec-WebSocket-Version: 13')
        }
        expect(m.getStats().rejectedHandshakes).toBe(cases.length)
        expect(m.getStats().nativeConnections).toBe(0)

        // A loopback page origin, and the server's own origin, are admitted by default.
        const admitted: Array<Record<string, string>> = [
          { Origin: 'http://localhost:5173' },
          { Host: `127.0.0.1:${endpoint.port}`, Origin: `http://127.0.0.1:${endpoint.port}` },
        ]
        for (const headers of admitted) {
          const raw = await RawConnection.open(endpoint.port)
          raw.write(upgradeRequest('/ws', headers))
          expect(await raw.responseHead(), JSON.stringify(headers)).toMatch(/^HTTP\/1\.1 101 /)
        }
        expect(m.getStats().rejectedHandshakes).toBe(cases.length)
      })

      it('brings descriptors back to baseline after clients leave', async () => {
        const m = manager()
        const endpoint = await serveNative(m, transport, CWD)
        // Warm up: the runtime, its reactor and lazily opened descriptors exist from here on.
        const first = await openClient('ws', endpoint.url())
        await welcomeId(first, CWD)
        await first.close()
        await waitFor('warm-up connection gone', () => m.getStats().nativeConnections === 0)
        const baseline = fdCount()

        const N = 40
        const clients = await Promise.all(Array.from({ length: N }, () => openClient('ws', endpoint.url())))
        const ids = await Promise.all(clients.map((c) => welcomeId(c, CWD)))
        // Each connection costs the client's descriptor and the native core's one: with
        // attach(), Node's own descriptor for the upgraded socket is closed after the handoff.
        const during = fdCount() - baseline
        expect(during).toBeGreaterThanOrEqual(N)
        expect(during).toBeLessThanOrEqual(2 * N + 4)

        // Half leave on their own, half are removed by the server.
        await Promise.all(clients.slice(0, N / 2).map((c) => c.close()))
        for (const id of ids.slice(N / 2)) m.removeConnection(id)
        await Promise.all(clients.slice(N / 2).map((c) => within(c.closed, DEADLINE_MS, 'server close')))
        await waitFor('no native connection left', () => m.getStats().nativeConnections === 0)
        await waitFor(`descriptors back to ${baseline} (now ${fdCount()})`, () => fdCount() <= baseline)
      })
    })
  }

  describe('attach()', () => {
    it('keeps serving plain and keep-alive HTTP on the same port while WebSocket traffic flows', async () => {
      const m = manager()
      const endpoint = await serveNative(m, 'attach', CWD)
      const client = await openClient('undici', endpoint.url())
      await welcomeId(client, CWD)
      await subscribeVia(client, 'files')

      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      onCleanUp(() => agent.destroy())
      const get = (path: string, useAgent: boolean) =>
        new Promise<{ status: number; body: string; localPort: number }>((resolve, reject) => {
          const req = httpRequest(
            {
              host: '127.0.0.1',
              port: endpoint.port,
              path,
              agent: useAgent ? agent : false,
              headers: useAgent ? {} : { connection: 'close' },
            },
            (res) => {
              let body = ''
              res.setEncoding('utf8')
              res.on('data', (chunk: string) => (body += chunk))
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body, localPort: req.socket?.localPort ?? 0 }))
            },
          )
          req.on('error', reject)
          req.end()
        })

      const keepAlivePorts = new Set<number>()
      for (let i = 0; i < 20; i++) {
        m.broadcast('files', { i })
        const [kept, plain] = await Promise.all([get(`/kept/${i}`, true), get(`/plain/${i}`, false)])
        expect(kept).toMatchObject({ status: 200, body: `hello /kept/${i}` })
        expect(plain).toMatchObject({ status: 200, body: `hello /plain/${i}` })
        keepAlivePorts.add(kept.localPort)
        expectEnvelope(await client.next(), 'files', { i })
      }
      expect(keepAlivePorts.size, 'the keep-alive requests reused one connection').toBe(1)
      // The WebSocket connection is unaffected by the HTTP traffic.
      client.send('{"type":"ping"}')
      expect(await client.next()).toBe('{"type":"pong"}')
    })

    it('hands over a pipelined upgrade only after the earlier response on that connection is written', async () => {
      const BODY = 1 << 20
      const m = manager()
      const { server, port } = await httpServer((req, res) => {
        // A large body, ended a little later, so it is still being written when the
        // pipelined upgrade is parsed.
        res.setHeader('content-length', String(BODY))
        res.write('a'.repeat(BODY / 2))
        setImmediate(() => res.end('b'.repeat(BODY / 2)))
        void req
      })
      // Records whether the first response was still unfinished when the upgrade arrived,
      // i.e. whether this test really exercises the race.
      let responsePending: boolean | undefined
      server.on('upgrade', (_req, socket) => {
        const pending = (socket as unknown as { _httpMessage?: { writableFinished: boolean } | null })._httpMessage
        responsePending = pending != null && !pending.writableFinished
      })
      m.attach(server, { path: '/ws', cwd: CWD })
      const raw = await RawConnection.open(port)
      raw.write(`GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n${upgradeRequest('/ws')}`)
      const first = await raw.responseHead()
      expect(first).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
      await raw.until('the whole first body', (b) => b.length >= BODY)
      const body = raw.bytes().subarray(0, BODY).toString('latin1')
      expect(body).toBe('a'.repeat(BODY / 2) + 'b'.repeat(BODY / 2))
      raw.consume(BODY)
      const second = await raw.responseHead()
      expect(second).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/)
      const [welcome] = await raw.frames(1)
      expect(welcome!.payload.toString()).toContain('"status":"connected"')
      expect(responsePending, 'the upgrade arrived while the first response was in flight').toBe(true)
    })

    it("leaves upgrades on other paths to the app's other 'upgrade' listeners", async () => {
      const m = manager()
      const { server, port } = await httpServer()
      m.attach(server, { path: '/ws', cwd: CWD })
      // The app's own WebSocket endpoint (e.g. Vite HMR), routed by path.
      const hmr = new WebSocketServer({ noServer: true })
      onCleanUp(() => new Promise<void>((resolve) => {
        for (const ws of hmr.clients) ws.terminate()
        hmr.close(() => resolve())
      }))
      hmr.on('connection', (ws) => {
        ws.send('hmr-hello')
        ws.on('message', (data) => ws.send(`echo:${String(data)}`))
      })
      server.on('upgrade', (req, socket, head) => {
        if (req.url === '/hmr') hmr.handleUpgrade(req, socket, head, (ws) => hmr.emit('connection', ws, req))
      })

      const hmrClient = await openClient('ws', `ws://127.0.0.1:${port}/hmr`)
      const native = await openClient('undici', `ws://127.0.0.1:${port}/ws`)
      expect(await hmrClient.next()).toBe('hmr-hello')
      const id = await welcomeId(native, CWD)
      hmrClient.send('x')
      expect(await hmrClient.next()).toBe('echo:x')
      expect([...m.getConnections().keys()]).toEqual([id])
      expect(m.getStats()).toMatchObject({ nativeConnections: 1, rejectedHandshakes: 0 })
    })

    it('gives each of two managers attached to one server the upgrades on its own path', async () => {
      const { server, port } = await httpServer()
      const a = manager()
      const b = manager()
      a.attach(server, { path: '/a', cwd: '/cwd-a' })
      b.attach(server, { path: '/b', cwd: '/cwd-b' })
      const ca = await openClient('ws', `ws://127.0.0.1:${port}/a`)
      const cb = await openClient('undici', `ws://127.0.0.1:${port}/b`)
      const ida = await welcomeId(ca, '/cwd-a')
      const idb = await welcomeId(cb, '/cwd-b')
      expect([...a.getConnections().keys()]).toEqual([ida])
      expect([...b.getConnections().keys()]).toEqual([idb])
      await subscribeVia(ca, 'files')
      await subscribeVia(cb, 'files')
      a.broadcast('files', { from: 'a' })
      b.broadcast('files', { from: 'b' })
      expectEnvelope(await ca.next(), 'files', { from: 'a' })
      expectEnvelope(await cb.next(), 'files', { from: 'b' })
      expect(ca.pending() + cb.pending()).toBe(0)
    })

    it('falls back to JS sockets through the ws package on a TLS server', async () => {
      const m = manager()
      const server = createHttpsServer({ key: TEST_TLS.key, cert: TEST_TLS.cert }, (_req, res) => res.end('tls'))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      onCleanUp(async () => {
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      })
      m.attach(server, { path: '/ws', cwd: CWD })
      const { port } = server.address() as AddressInfo
      const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { rejectUnauthorized: false })
      onCleanUp(() => ws.terminate())
      const messages: string[] = []
      ws.on('message', (d) => messages.push(String(d)))
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve())
        ws.once('error', reject)
      })
      await waitFor('welcome over TLS', () => messages.length >= 1)
      const id = (JSON.parse(messages[0]!) as { data: { connectionId: string; cwd: string } }).data
      expect(id.cwd).toBe(CWD)
      expect(m.getStats()).toMatchObject({ jsConnections: 1, nativeConnections: 0 })
      expect(m.getConnections().get(id.connectionId)?.ws).not.toBeInstanceOf(NativeSocket)
      ws.send('{"type":"subscribe","channel":"files","id":"t"}')
      await waitFor('ack', () => messages.length >= 2)
      m.broadcast('files', { tls: true })
      await waitFor('event', () => messages.length >= 3)
      expectEnvelope(messages[2]!, 'files', { tls: true })
    })

    it('does not leak handed-over descriptors into child processes', async () => {
      const m = manager()
      const endpoint = await serveNative(m, 'attach', CWD)
      const childFds = () => {
        const out = spawnSync('ls', ['/proc/self/fd'], { encoding: 'utf8' })
        return out.stdout.split(/\s+/).filter(Boolean).sort()
      }
      const before = childFds()
      const clients = await Promise.all(Array.from({ length: 5 }, () => openClient('ws', endpoint.url())))
      await Promise.all(clients.map((c) => welcomeId(c, CWD)))
      expect(m.getStats().nativeConnections).toBe(5)
      expect(childFds()).toEqual(before)
    })
  })

  it('delivers one broadcast identically to JS sockets and native sockets of both transports', async () => {
    const m = manager()
    const jsServer = await startServer(m, CWD)
    onCleanUp(() => jsServer.close())
    const listened = await serveNative(m, 'listen', CWD)
    const attached = await serveNative(m, 'attach', CWD)
    const clients = [
      await openClient('ws', `${jsServer.url}/`),
      await openClient('undici', listened.url()),
      await openClient('ws', attached.url()),
      await openClient('undici', attached.url()),
    ]
    const ids = []
    for (const c of clients) {
      ids.push(await welcomeId(c, CWD))
      await subscribeVia(c, 'files')
    }
    expect(m.getSubscribers('files')).toEqual(ids)
    expect(m.getStats()).toMatchObject({ jsConnections: 1, nativeConnections: 3, subscriptions: 4 })
    expect(m.getConnections().get(ids[0]!)?.ws).not.toBeInstanceOf(NativeSocket)

    for (let i = 0; i < 10; i++) m.broadcast('files', { i, file: `f${i}.ts` })
    for (let i = 0; i < 10; i++) {
      const texts = await Promise.all(clients.map((c) => c.next()))
      expectEnvelope(texts[0]!, 'files', { i, file: `f${i}.ts` })
      // Serialised once: the same bytes, timestamp included, on every transport.
      for (const t of texts) expect(t).toBe(texts[0])
    }
  })

  it('delivers 200 broadcasts to each of 1 000 native clients, complete and in order', async () => {
    const N = 1000
    const B = 200
    const m = manager()
    const endpoint = await serveNative(m, 'listen', CWD)
    const received = new Array<number>(N).fill(0)
    const { problems } = await subscribedClients(endpoint.url(), N, 'load', (index, text) => {
      const expected = received[index]!
      if (!text.includes(`,"data":{"seq":${expected}},`)) {
        if (problems.length < 10) problems.push(`client ${index}: expected seq ${expected}, got ${text}`)
      }
      received[index] = expected + 1
    })
    expect(problems).toEqual([])
    expect(m.getSubscribers('load')).toHaveLength(N)

    const started = Date.now()
    for (let seq = 0; seq < B; seq++) m.broadcast('load', { seq })
    await waitFor(
      'every client to receive every broadcast',
      () => received.every((n) => n >= B) || problems.length > 0,
      20_000,
    )
    const elapsed = Date.now() - started
    expect(problems).toEqual([])
    expect(received.every((n) => n === B)).toBe(true)
    const stats = m.getStats()
    expect(stats.slowConsumerDisconnects).toBe(0)
    expect(stats.nativeConnections).toBe(N)
    expect(stats.broadcasts).toBe(B)
    // Informative only: deliveries per second through the whole stack, client parsing included.
    console.info(`1000 × 200 delivered in ${elapsed} ms (${Math.round((N * B) / (elapsed / 1000))} msg/s)`)
  }, 30_000)

  it('cuts a subscriber that stops reading off at the cap while another receives everything', async () => {
    const CAP = 64 * 1024
    const PAYLOAD = 'x'.repeat(32 * 1024)
    // Loopback socket buffers hold a few MiB at most; far fewer rounds than this fill them.
    const MAX_ROUNDS = 4000
    const m = manager({ maxBufferedBytesPerConnection: CAP })
    const endpoint = await serveNative(m, 'listen', CWD)

    const stuck = await RawConnection.open(endpoint.port)
    stuck.write(Buffer.concat([Buffer.from(upgradeRequest('/ws')), maskedFrame('{"type":"subscribe","channel":"files"}')]))
    expect(await stuck.responseHead()).toMatch(/^HTTP\/1\.1 101 /)
    await stuck.frames(2)
    stuck.socket.pause() // never reads again (until the end of the test)

    const healthy = await openClient('ws', endpoint.url())
    await welcomeId(healthy, CWD)
    await subscribeVia(healthy, 'files')
    expect(m.getSubscribers('files')).toHaveLength(2)

    let rounds = 0
    while (m.getStats().slowConsumerDisconnects === 0) {
      expect(rounds, 'the stuck subscriber was never cut off').toBeLessThan(MAX_ROUNDS)
      m.broadcast('files', { i: rounds, payload: PAYLOAD })
      const text = await healthy.next()
      expect(JSON.parse(text).data.i).toBe(rounds)
      rounds++
    }
    expect(m.getStats().slowConsumerDisconnects).toBe(1)
    await waitFor('the stuck subscriber to be removed', () => m.getSubscribers('files').length === 1)
    expect(m.getStats().nativeConnections).toBe(1)

    // The healthy subscriber keeps receiving, in order, and nothing more is cut off.
    for (let i = 0; i < 20; i++) m.broadcast('files', { after: i })
    for (let i = 0; i < 20; i++) expect(JSON.parse(await healthy.next()).data).toEqual({ after: i })
    expect(m.getStats().slowConsumerDisconnects).toBe(1)

    // What the stuck peer gets when it finally reads: an in-order prefix of the events, then
    // the end of the connection; the server did not keep the rest for it.
    stuck.socket.resume()
    await stuck.closedByPeer()
    const { frames } = parseFrames(stuck.bytes())
    const texts = frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString()).data.i as number)
    expect(texts).toEqual(texts.map((_, k) => k))
    expect(texts.length).toBeLessThan(rounds)
    const close = frames.find((f) => f.opcode === 8)
    if (close) expect(close.payload.readUInt16BE(0)).toBe(4008)
  })

  describe('listen()', () => {
    it('rejects when the port is taken, and validates its options', async () => {
      const m = manager()
      const { port } = await m.listen({ port: 0 })
      await expect(m.listen({ port })).rejects.toThrow(/in use/i)
      expect(() => m.listen({ port: 70000 })).toThrow(RangeError)
      expect(() => m.listen({ port: 0, path: 'ws' })).toThrow(/path/)
    })

    it('admits hosts named in allowedHosts and origins named in allowedOrigins', async () => {
      const m = manager({ allowedHosts: ['dev.example'], allowedOrigins: ['http://dev.example:8080'] })
      const endpoint = await serveNative(m, 'listen', CWD)
      const accepted = await RawConnection.open(endpoint.port)
      accepted.write(upgradeRequest('/ws', { Host: 'dev.example', Origin: 'http://dev.example:8080' }))
      expect(await accepted.responseHead()).toMatch(/^HTTP\/1\.1 101 /)
      // A list replaces the default: a loopback origin is no longer enough.
      expect(statusOf(await rawExchange(endpoint.port, upgradeRequest('/ws', { Origin: 'http://localhost:5173' })))).toBe(403)
      expect(statusOf(await rawExchange(endpoint.port, upgradeRequest('/ws', { Host: 'other.example' })))).toBe(403)
      expect(m.getStats().rejectedHandshakes).toBe(2)
    })

    it('negotiates the first offered subprotocol and reads binary and fragmented messages as text', async () => {
      const m = manager({ maxSubscriptionsPerConnection: 2 })
      const endpoint = await serveNative(m, 'listen', CWD)
      const ws = new WebSocket(endpoint.url('/ws?x=1'), ['chat', 'superchat'])
      onCleanUp(() => ws.terminate())
      const messages: string[] = []
      ws.on('message', (d) => messages.push(String(d)))
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve())
        ws.once('error', reject)
      })
      expect(ws.protocol).toBe('chat')
      ws.send(Buffer.from('{"type":"subscribe","channel":"b","id":1}'), { binary: true })
      ws.send('{"type":"subscribe","channel":"fr', { fin: false })
      ws.send('ag","id":2}', { fin: true })
      ws.send('{"type":"subscribe","channel":"c","id":3}')
      await waitFor('four messages', () => messages.length >= 4)
      expect(messages.slice(1)).toEqual([
        '{"type":"response","id":1,"data":{"status":"subscribed","channel":"b"}}',
        '{"type":"response","id":2,"data":{"status":"subscribed","channel":"frag"}}',
        '{"type":"response","id":3,"data":{"error":"Subscription limit of 2 channels reached","code":"SUBSCRIPTION_LIMIT"}}',
      ])
      // Outbound messages are not limited by maxPayloadBytes (an inbound limit).
      const big = 'y'.repeat(300 * 1024)
      m.broadcast('b', { big })
      await waitFor('the large event', () => messages.length >= 5)
      expect(JSON.parse(messages[4]!).data).toEqual({ big })
    })

    it('closes with 1009 a client whose message exceeds maxPayloadBytes', async () => {
      const m = manager({ maxPayloadBytes: 1024 })
      const endpoint = await serveNative(m, 'listen', CWD)
      const client = await openClient('ws', endpoint.url())
      await welcomeId(client, CWD)
      client.send(`{"type":"subscribe","channel":"${'x'.repeat(1100)}"}`)
      expect((await within(client.closed, DEADLINE_MS, 'close 1009')).code).toBe(1009)
      await waitFor('the connection to be removed', () => m.getStats().nativeConnections === 0)
    })
  })

  describe('ordering and draining', () => {
    // The original wrote every message with ws.send() on the caller's thread, so a message
    // sent after a broadcast arrived after it, and close() came after everything sent before.
    it('keeps the order of broadcast() and a following send() to the same connection', async () => {
      const m = manager()
      const endpoint = await serveNative(m, 'listen', CWD)
      const client = await openClient('ws', endpoint.url())
      const id = await welcomeId(client, CWD)
      await subscribeVia(client, 'files')
      const native = m.getConnections().get(id)?.ws as unknown as NativeSocket
      for (let round = 0; round < 30; round++) {
        m.broadcast('files', { round })
        m.send(id, { sent: round })
        native.send(`raw ${round}`)
        expectEnvelope(await client.next(), 'files', { round })
        expect(await client.next()).toBe(`{"sent":${round}}`)
        expect(await client.next()).toBe(`raw ${round}`)
      }
    })

    it('keeps every subscriber complete and in order when a burst outruns the fan-out task', async () => {
      // One synchronous burst far faster than the fan-out task delivers, and far under
      // maxPendingBroadcastBytes (~700 KB of 64 MiB): queued whole, nothing dropped.
      const BURST = 10_000
      const m = manager({ maxBufferedBytesPerConnection: 8 * 1024 * 1024 })
      const endpoint = await serveNative(m, 'listen', CWD)
      const clients = [await openClient('ws', endpoint.url()), await openClient('undici', endpoint.url())]
      for (const c of clients) {
        await welcomeId(c, CWD)
        await subscribeVia(c, 'burst')
      }
      for (let i = 0; i < BURST; i++) m.broadcast('burst', i)
      for (const c of clients) {
        await waitFor(`${c.kind}: all ${BURST} events`, () => c.pending() >= BURST, 15_000)
        for (let i = 0; i < BURST; i++) {
          const text = await c.next()
          if (!text.includes(`"data":${i},`)) expect(text, `${c.kind}: event ${i}`).toContain(`"data":${i},`)
        }
      }
      expect(m.getStats().slowConsumerDisconnects).toBe(0)
      expect(m.getStats().droppedBroadcasts).toBe(0)
    }, 30_000)

    const closers: Array<[string, (m: WebSocketManager, id: string) => void, number]> = [
      ['removeConnection()', (m, id) => m.removeConnection(id), 1000],
      ['NativeSocket.close()', (m, id) => (m.getConnections().get(id)?.ws as unknown as NativeSocket).close(4000), 4000],
      ['shutdown()', (m) => m.shutdown(), 1001],
    ]
    for (const [what, closeIt, code] of closers) {
      it(`delivers every broadcast made before ${what}, then closes with ${code}`, async () => {
        // A few rounds: the loss this guards against depends on timing.
        for (let round = 0; round < 5; round++) {
          const m = manager()
          const endpoint = await serveNative(m, 'listen', CWD)
          const client = await openClient('ws', endpoint.url())
          const id = await welcomeId(client, CWD)
          await subscribeVia(client, 'files')
          for (let i = 0; i < 100; i++) m.broadcast('files', { i })
          closeIt(m, id)
          const closed = await within(client.closed, DEADLINE_MS, `close after ${what}`)
          const got: number[] = []
          while (client.pending() > 0) got.push((eventOf(await client.next()).data as { i: number }).i)
          expect(got, `round ${round}: events received before the close`).toEqual(Array.from({ length: 100 }, (_, i) => i))
          expect(closed.code).toBe(code)
          m.shutdown()
        }
      })
    }
  })

  describe('health check', () => {
    it('terminates a native peer that stops answering pings and keeps one that answers', async () => {
      const INTERVAL = 200
      const m = manager({ pingIntervalMs: INTERVAL })
      const endpoint = await serveNative(m, 'listen', CWD)
      const responsive = await openClient('ws', endpoint.url()) // `ws` answers pings itself
      const responsiveId = await welcomeId(responsive, CWD)
      const silent = await RawConnection.open(endpoint.port) // never answers a ping
      silent.write(upgradeRequest('/ws'))
      await silent.responseHead()
      const [welcome] = await silent.frames(1)
      const silentId = (JSON.parse(welcome!.payload.toString()) as { data: { connectionId: string } }).data.connectionId

      const started = Date.now()
      await silent.closedByPeer(10 * INTERVAL)
      const elapsed = Date.now() - started
      expect(elapsed).toBeLessThan(5 * INTERVAL)
      // It was pinged, and terminated without a close handshake.
      const { frames } = parseFrames(silent.bytes())
      expect(frames.some((f) => f.opcode === 9)).toBe(true)
      expect(frames.some((f) => f.opcode === 8)).toBe(false)
      await waitFor('the silent peer to be forgotten', () => !m.getConnections().has(silentId))
      expect(m.getStats().deadPeersRemoved).toBe(1)

      // Several intervals later the responsive peer is still there.
      const later = Date.now() + 3 * INTERVAL
      await waitFor('three more intervals', () => Date.now() >= later)
      expect(m.getConnections().has(responsiveId)).toBe(true)
      responsive.send('{"type":"ping"}')
      expect(await responsive.next()).toBe('{"type":"pong"}')
      expect(m.getStats().deadPeersRemoved).toBe(1)
    })
  })

  describe('shutdown()', () => {
    it('closes native connections of both transports with 1001, stops the listener and detaches from the server', async () => {
      const m = manager()
      const listened = await serveNative(m, 'listen', CWD)
      const { server, port } = await httpServer()
      const upgradeListenersBefore = server.listenerCount('upgrade')
      m.attach(server, { path: '/ws', cwd: CWD })
      expect(server.listenerCount('upgrade')).toBe(upgradeListenersBefore + 1)
      const a = await openClient('ws', listened.url())
      const b = await openClient('undici', `ws://127.0.0.1:${port}/ws`)
      await welcomeId(a, CWD)
      await welcomeId(b, CWD)

      const done = m.shutdown()
      expect(m.shutdown()).toBe(done) // idempotent: the same promise
      expect((await within(a.closed, DEADLINE_MS, 'listen client close')).code).toBe(1001)
      expect((await within(b.closed, DEADLINE_MS, 'attach client close')).code).toBe(1001)
      expect(server.listenerCount('upgrade')).toBe(upgradeListenersBefore)
      expect(m.getStats()).toMatchObject({ connections: 0, nativeConnections: 0 })
      await waitFor('connection refused on the listen port', () => portRefuses(listened.port))
      // The app's server still serves HTTP on its port.
      const res = await fetch(`http://127.0.0.1:${port}/still`)
      expect(await res.text()).toBe('hello /still')
      await within(done, DEADLINE_MS, 'shutdown() resolves')
      expect(() => m.broadcast('files', 1)).not.toThrow()
      expect(() => m.listen({ port: 0 })).toThrow(/shut down/)
      expect(() => m.attach(server, { path: '/ws' })).toThrow(/shut down/)
    })
    it('leaves no descriptor behind: listener, attached and half-open connections all closed', async () => {
      // Warm up the runtime so its own descriptors are part of the baseline.
      const warm = manager()
      await warm.listen({ port: 0 })
      warm.shutdown()
      const { server, port } = await httpServer()
      await waitFor('warm-up listener closed', () => portRefuses(port).then((r) => !r))
      const baseline = fdCount()

      const m = manager()
      const listened = await serveNative(m, 'listen', CWD)
      m.attach(server, { path: '/ws', cwd: CWD })
      const clients = [
        await openClient('ws', listened.url()),
        await openClient('undici', `ws://127.0.0.1:${port}/ws`),
      ]
      for (const c of clients) await welcomeId(c, CWD)
      // A connection that never finishes its handshake.
      const halfOpen = await RawConnection.open(listened.port)
      halfOpen.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n')
      expect(fdCount()).toBeGreaterThan(baseline)

      m.shutdown()
      await Promise.all(clients.map((c) => within(c.closed, DEADLINE_MS, 'close at shutdown')))
      await halfOpen.closedByPeer()
      await waitFor(`descriptors back to ${baseline} (now ${fdCount()})`, () => fdCount() <= baseline)
    })
  })

  describe('statistics', () => {
    it('counts native replies in messagesSent and bytesSent as it counts them for JS sockets', async () => {
      const exchange = async (client: TestClient, m: WebSocketManager) => {
        await welcomeId(client, CWD)
        await subscribeVia(client, 'files')
        client.send('{"type":"ping"}')
        expect(await client.next()).toBe('{"type":"pong"}')
        m.broadcast('files', { n: 1 })
        await client.next()
        return m.getStats()
      }
      const jsManager = manager()
      const jsServer = await startServer(jsManager, CWD)
      onCleanUp(() => jsServer.close())
      const js = await exchange(await openClient('ws', `${jsServer.url}/`), jsManager)
      const nativeManager = manager()
      const endpoint = await serveNative(nativeManager, 'listen', CWD)
      const native = await exchange(await openClient('ws', endpoint.url()), nativeManager)
      expect(js.messagesSent).toBe(4)
      expect({ messagesSent: native.messagesSent, bytesSent: native.bytesSent }).toEqual({
        messagesSent: js.messagesSent,
        bytesSent: js.bytesSent,
      })
    })

    it('counts only what the kernel refused: a big send() to a reader is delivered, a stuck one is cut as a slow consumer', async () => {
      const CAP = 64 * 1024
      const BIG = 'x'.repeat(2 * CAP)
      // Loopback socket buffers hold a few MiB at most; far fewer sends than this fill them.
      const MAX_SENDS = 400
      const m = manager({ maxBufferedBytesPerConnection: CAP })
      const endpoint = await serveNative(m, 'listen', CWD)

      const reader = await openClient('ws', endpoint.url())
      const readerId = await welcomeId(reader, CWD)
      m.send(readerId, { big: BIG })
      expect(JSON.parse(await reader.next()).big).toHaveLength(BIG.length)
      expect(m.getStats().slowConsumerDisconnects).toBe(0)

      const stuck = await RawConnection.open(endpoint.port)
      stuck.write(upgradeRequest('/ws'))
      expect(await stuck.responseHead()).toMatch(/^HTTP\/1\.1 101 /)
      const [welcome] = (await stuck.frames(1)).map((f) => JSON.parse(f.payload.toString()))
      stuck.socket.pause()
      let sends = 0
      while (m.getStats().slowConsumerDisconnects === 0) {
        expect(sends, 'the stuck peer was never cut off').toBeLessThan(MAX_SENDS)
        m.send(welcome.data.connectionId, { i: sends, big: BIG })
        sends++
        // Welcomes (2) and the reader's send come first.
        await waitFor('the send to be written or refused', () => {
          const stats = m.getStats()
          return stats.messagesSent >= sends + 3 || stats.slowConsumerDisconnects > 0
        })
      }
      expect(m.getStats().slowConsumerDisconnects).toBe(1)
      await waitFor('the stuck peer to be removed', () => m.getStats().nativeConnections === 1)
      stuck.socket.resume()
      await stuck.closedByPeer()
    })
  })

  describe('NativeSocket', () => {
    it('sends, pings, closes with a code and terminates a native connection', async () => {
      const m = manager()
      const endpoint = await serveNative(m, 'listen', CWD)
      const open = async () => {
        const ws = new WebSocket(endpoint.url())
        onCleanUp(() => ws.terminate())
        const messages: string[] = []
        ws.on('message', (d) => messages.push(String(d)))
        const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve())
          ws.once('error', reject)
        })
        await waitFor('welcome', () => messages.length >= 1)
        const id = (JSON.parse(messages[0]!) as { data: { connectionId: string } }).data.connectionId
        return { ws, messages, closed, id }
      }
      const a = await open()
      const native = m.getConnections().get(a.id)?.ws as unknown as NativeSocket
      expect(native).toBeInstanceOf(NativeSocket)
      expect(native.readyState).toBe(1)

      native.send('plain text')
      await waitFor('the sent text', () => a.messages.length >= 2)
      expect(a.messages[1]).toBe('plain text')

      const pinged = new Promise<void>((resolve) => a.ws.once('ping', () => resolve()))
      native.ping()
      await within(pinged, DEADLINE_MS, 'ping frame')

      native.close(4001)
      expect(await within(a.closed, DEADLINE_MS, 'close 4001')).toBe(4001)
      await waitFor('readyState CLOSED', () => native.readyState === 3)
      expect(m.getConnections().has(a.id)).toBe(false)
      // A handle to a closed connection is inert.
      expect(() => {
        native.send('late')
        native.ping()
        native.close()
        native.terminate()
      }).not.toThrow()

      const b = await open()
      const other = m.getConnections().get(b.id)?.ws as unknown as NativeSocket
      other.terminate()
      expect(await within(b.closed, DEADLINE_MS, 'terminated')).toBe(1006)
      await waitFor('record removed', () => !m.getConnections().has(b.id))
      expect(other.readyState).toBe(3)
    })
  })

  describe('token mode', () => {
    for (const transport of TRANSPORTS) {
      it(`${transport}(): refuses upgrades without the token with 401 and admits each carrier`, async () => {
        const m = manager({ token: true })
        const token = m.token
        expect(token).toMatch(/^[0-9a-f]{64}$/)
        const endpoint = await serveNative(m, transport, CWD)

        const refused: Array<[string, string]> = [
          ['no token', upgradeRequest('/ws')],
          ['wrong bearer', upgradeRequest('/ws', { Authorization: `Bearer ${'0'.repeat(64)}` })],
          ['wrong query', upgradeRequest(`/ws?token=${token!.slice(1)}`)],
          ['wrong subprotocol', upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'cluso, cluso-token.nope' })],
        ]
        for (const [what, request] of refused) {
          const response = await rawExchange(endpoint.port, request)
          expect(statusOf(response), what).toBe(401)
          expect(response, what).toContain('\r\nWWW-Authenticate: Bearer\r\n')
        }
        expect(m.getStats().rejectedHandshakes).toBe(refused.length)

        const admitted: TestClient[] = [
          await openClient('ws', endpoint.url(), { headers: { Authorization: `Bearer ${token}` } }),
          await openClient('undici', endpoint.url(), { headers: { Authorization: `Bearer ${token}` } }),
          await openClient('ws', endpoint.url(), { protocols: ['cluso', `cluso-token.${token}`] }),
          await openClient('undici', endpoint.url(), { protocols: ['cluso', `cluso-token.${token}`] }),
          await openClient('ws', endpoint.url(`/ws?token=${token}`)),
          await openClient('undici', endpoint.url(`/ws?x=1&token=${token}`)),
        ]
        for (const c of admitted) await welcomeId(c, CWD)
        // The token carrier is never echoed back as the chosen subprotocol.
        expect(admitted[2]!.protocol).toBe('cluso')
        expect(admitted[3]!.protocol).toBe('cluso')
        // Offered alone, the token carrier is accepted but not echoed: the 101 names no
        // subprotocol (so WHATWG and `ws` clients need the companion entry, as documented).
        const raw = await RawConnection.open(endpoint.port)
        raw.write(upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': `cluso-token.${token}` }))
        const head = await raw.responseHead()
        expect(head).toMatch(/^HTTP\/1\.1 101 /)
        expect(head.toLowerCase()).not.toContain('sec-websocket-protocol')
        expect(head).not.toContain(token!)
        await raw.frames(1)
        expect(m.getStats()).toMatchObject({
          nativeConnections: admitted.length + 1,
          rejectedHandshakes: refused.length,
        })
      })
    }

    it('uses a configured token as given', async () => {
      const m = manager({ token: 'a-fixed-token_0123456789' })
      expect(m.token).toBe('a-fixed-token_0123456789')
      expect(manager().token).toBeNull()
      const endpoint = await serveNative(m, 'listen', CWD)
      const c = await openClient('ws', endpoint.url('/ws?token=a-fixed-token_0123456789'))
      await welcomeId(c, CWD)
    })
  })
})
