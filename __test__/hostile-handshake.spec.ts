// Hostile handshakes (issue 4, items 1–5 and 7): what a web page, a rebinding DNS name, a
// misbehaving authenticate / authorizeSubscribe callback, a connection flood or a slowloris
// peer can get out of a native listener (`listen()`) or an attached http.Server
// (`attach()`). Raw TCP throughout, so every header is exactly what the test says.
//
// Cases already in native-transport.spec.ts are not repeated here: `Origin:
// http://evil.example`, `Origin: null`, `Origin: http://127.0.0.1.evil.example`, `Host:
// evil.example`, `Origin: http://localhost:5173`, same-host origin on an IP, the token mode,
// and a listed host/origin on listen().
import { afterEach, describe, expect, it } from 'vitest'
import type { WebSocketManager } from '../index.js'
import {
  CWD,
  forceGc,
  hostileManager,
  openProbe,
  serve,
  serveJs,
  settledRss,
  expectRssNear,
  type ManagerOptions,
} from './helpers/hostile.js'
import {
  RawConnection,
  cleanUp,
  onCleanUp,
  openClient,
  rawExchange,
  statusOf,
  upgradeRequest,
  waitFor,
  welcomeId,
  type NativeEndpoint,
  type TransportKind,
} from './helpers/native.js'

const TRANSPORTS: TransportKind[] = ['listen', 'attach']

afterEach(async () => {
  await cleanUp()
})

/**
 * The status a request gets. A `101` connection is left open (the caller may close it or
 * let `cleanUp()` do it); any other answer is read to the end.
 */
async function statusFor(port: number, request: string | Buffer): Promise<number> {
  const raw = await RawConnection.open(port)
  raw.write(request)
  const head = await raw.responseHead()
  const status = statusOf(head)
  if (status === 101) raw.socket.destroy()
  return status
}

/** Sends an upgrade request; returns the connection if it was admitted (kept open), else null. */
async function admitted(port: number): Promise<RawConnection | null> {
  const raw = await RawConnection.open(port)
  raw.write(upgradeRequest('/ws'))
  if (statusOf(await raw.responseHead()) === 101) return raw
  raw.socket.destroy()
  return null
}

/** A request head with headers in exactly this order, repeats allowed. */
function rawRequest(path: string, headers: Array<[string, string]>): string {
  return `GET ${path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`
}

const BASE_HEADERS: Array<[string, string]> = [
  ['Upgrade', 'websocket'],
  ['Connection', 'Upgrade'],
  ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
  ['Sec-WebSocket-Version', '13'],
]

type Expectation = number | Partial<Record<TransportKind, number>>

function expected(e: Expectation, kind: TransportKind): number {
  if (typeof e === 'number') return e
  const status = e[kind]
  if (status === undefined) throw new Error(`no expectation for ${kind}`)
  return status
}

/** Runs a table of header sets against `endpoint`, collecting every mismatch at once. */
async function expectStatuses(
  endpoint: NativeEndpoint,
  table: Array<[string, Record<string, string> | Array<[string, string]>, Expectation]>,
  path = '/ws',
): Promise<void> {
  const mismatches: string[] = []
  for (const [what, headers, want] of table) {
    const request = Array.isArray(headers) ? rawRequest(path, headers) : upgradeRequest(path, headers)
    const got = await statusFor(endpoint.port, request)
    if (got !== expected(want, endpoint.kind)) mismatches.push(`${what}: got ${got}, expected ${expected(want, endpoint.kind)}`)
  }
  expect(mismatches).toEqual([])
}

describe('Origin check (allowedOrigins)', () => {
  for (const kind of TRANSPORTS) {
    describe(`${kind}()`, () => {
      it('admits no Origin and loopback origins on any port, http or https, by default', async () => {
        const m = hostileManager()
        const endpoint = await serve(m, kind)
        await expectStatuses(endpoint, [
          ['no Origin (CLI client)', {}, 101],
          ['http://localhost', { Origin: 'http://localhost' }, 101],
          ['https://localhost:8443', { Origin: 'https://localhost:8443' }, 101],
          ['http://127.0.0.1:1', { Origin: 'http://127.0.0.1:1' }, 101],
          ['https://127.0.0.1', { Origin: 'https://127.0.0.1' }, 101],
          ['http://[::1]:3000', { Origin: 'http://[::1]:3000' }, 101],
          ['https://[::1]', { Origin: 'https://[::1]' }, 101],
          ['upper-case spelling', { Origin: 'HTTP://LOCALHOST:3000' }, 101],
          ['lower-case header name', [...BASE_HEADERS, ['host', '127.0.0.1'], ['origin', 'http://localhost:1234']], 101],
        ])
        expect(m.getStats().rejectedHandshakes).toBe(0)
      })

      it('refuses look-alikes, userinfo tricks, non-loopback IPs and non-web schemes with 403', async () => {
        const m = hostileManager()
        const endpoint = await serve(m, kind)
        const table: Array<[string, Record<string, string> | Array<[string, string]>, Expectation]> = [
          ['look-alike suffix', { Origin: 'http://localhost.evil.com' }, 403],
          ['userinfo: localhost@evil.com', { Origin: 'http://localhost@evil.com' }, 403],
          ['userinfo: evil.com@localhost', { Origin: 'http://evil.com@localhost' }, 403],
          ['other loopback spelling 127.0.0.2', { Origin: 'http://127.0.0.2:3000' }, 403],
          ['*.localhost page', { Origin: 'http://app.localhost:3000' }, 403],
          ['0.0.0.0 (the "0.0.0.0 day")', { Origin: 'http://0.0.0.0:3000' }, 403],
          ['private LAN IP', { Origin: 'http://192.168.1.10:3000' }, 403],
          ['10/8 IP', { Origin: 'http://10.0.0.1' }, 403],
          ['public IP', { Origin: 'https://93.184.215.14' }, 403],
          ['IPv4-mapped loopback', { Origin: 'http://[::ffff:127.0.0.1]:3000' }, 403],
          ['decimal IP for 127.0.0.1', { Origin: 'http://2130706433' }, 403],
          ['short IP 127.1', { Origin: 'http://127.1' }, 403],
          ['trailing dot', { Origin: 'http://localhost.:3000' }, 403],
          ['with a path', { Origin: 'http://localhost:3000/x' }, 403],
          ['ws: scheme', { Origin: 'ws://localhost:3000' }, 403],
          ['file:', { Origin: 'file://' }, 403],
          ['browser extension', { Origin: 'chrome-extension://abcdefghijklmnop' }, 403],
          ['empty Origin', { Origin: '' }, 403],
          ['version-8 Sec-WebSocket-Origin', { 'Sec-WebSocket-Origin': 'http://evil.example' }, 403],
          [
            'a loopback and an evil Origin',
            [...BASE_HEADERS, ['Host', '127.0.0.1'], ['Origin', 'http://localhost'], ['Origin', 'http://evil.example']],
            403,
          ],
          [
            'page on a rebound name, same host and port (DNS rebinding)',
            { Host: `evil.example:${endpoint.port}`, Origin: `http://evil.example:${endpoint.port}` },
            403,
          ],
        ]
        await expectStatuses(endpoint, table)
        expect(m.getStats()).toMatchObject({ rejectedHandshakes: table.length, connections: 0 })
      })

      it('switches to exact matches of scheme, host and port with an allowedOrigins list', async () => {
        const m = hostileManager({
          allowedOrigins: ['http://app.example:8080', 'https://ui.example/'],
          allowedHosts: ['app.example'],
        })
        const endpoint = await serve(m, kind)
        await expectStatuses(endpoint, [
          ['exact', { Origin: 'http://app.example:8080' }, 101],
          ['exact, upper case', { Origin: 'HTTP://APP.EXAMPLE:8080' }, 101],
          ['https default port spelled out', { Origin: 'https://ui.example:443' }, 101],
          ['https default port omitted', { Origin: 'https://ui.example' }, 101],
          ['no Origin', {}, 101],
          ['port mismatch', { Origin: 'http://app.example:8081' }, 403],
          ['default port instead of 8080', { Origin: 'http://app.example' }, 403],
          ['scheme mismatch', { Origin: 'https://app.example:8080' }, 403],
          ['scheme mismatch (http for https)', { Origin: 'http://ui.example' }, 403],
          ['subdomain', { Origin: 'http://sub.app.example:8080' }, 403],
          ['suffix look-alike', { Origin: 'http://app.example.evil.com:8080' }, 403],
          ['null', { Origin: 'null' }, 403],
          [
            'the server itself, once a list is set',
            { Host: `127.0.0.1:${endpoint.port}`, Origin: `http://127.0.0.1:${endpoint.port}` },
            403,
          ],
          // Same host as the request: a listed Host is admitted as a same-host origin only
          // under the default policy, never under a list.
          ['same host as a listed Host', { Host: 'app.example:9000', Origin: 'http://app.example:9000' }, 403],
        ])
      })

      it("admits every origin with ['*'] but keeps the DNS-rebinding Host check", async () => {
        const m = hostileManager({ allowedOrigins: ['*'] })
        const endpoint = await serve(m, kind)
        await expectStatuses(endpoint, [
          ['foreign page', { Origin: 'http://evil.example' }, 101],
          ['null', { Origin: 'null' }, 101],
          ['file:', { Origin: 'file://' }, 101],
          ['two origins', [...BASE_HEADERS, ['Host', '127.0.0.1'], ['Origin', 'a'], ['Origin', 'b']], 101],
          ['rebound Host, even with ["*"]', { Host: 'evil.example', Origin: 'http://evil.example' }, 403],
        ])
      })
    })
  }

  it('refuses allowedOrigins entries that would open the server by mistake', () => {
    for (const entry of ['null', 'localhost:3000', '', 'http://', 'http://a.example/path', 'http://user@a.example']) {
      let thrown: unknown
      try {
        hostileManager({ allowedOrigins: [entry] })
      } catch (error) {
        thrown = error
      }
      expect(thrown, JSON.stringify(entry)).toBeInstanceOf(RangeError)
      expect((thrown as { code?: string }).code).toBe('ERR_CLUSO_INVALID_OPTION')
    }
  })
})

describe('Host check against DNS rebinding (allowedHosts)', () => {
  for (const kind of TRANSPORTS) {
    it(`${kind}(): admits loopback Host names only, by default`, async () => {
      const m = hostileManager()
      const endpoint = await serve(m, kind)
      const p = endpoint.port
      await expectStatuses(endpoint, [
        ['127.0.0.1:port', { Host: `127.0.0.1:${p}` }, 101],
        ['localhost:port', { Host: `localhost:${p}` }, 101],
        ['LOCALHOST (case)', { Host: 'LOCALHOST' }, 101],
        ['[::1]:port', { Host: `[::1]:${p}` }, 101],
        ['127.0.0.0/8', { Host: '127.1.2.3' }, 101],
        ['*.localhost (RFC 6761)', { Host: `app.localhost:${p}` }, 101],
        ['IPv4-mapped loopback', { Host: '[::ffff:127.0.0.1]' }, 101],
        ['look-alike suffix', { Host: `localhost.evil.com:${p}` }, 403],
        ['wildcard DNS to 127.0.0.1', { Host: '127.0.0.1.nip.io' }, 403],
        ['0.0.0.0', { Host: `0.0.0.0:${p}` }, 403],
        ['LAN IP', { Host: '192.168.1.10' }, 403],
        ['trailing dot', { Host: 'localhost.' }, 403],
        ['short IP', { Host: '127.1' }, 403],
        ['decimal IP', { Host: '2130706433' }, 403],
        ['port out of range', { Host: 'localhost:99999' }, 403],
        ['userinfo', { Host: 'evil.example@127.0.0.1' }, 403],
        ['two Host headers', [...BASE_HEADERS, ['Host', '127.0.0.1'], ['Host', 'evil.example']], 403],
        ['no Host', [...BASE_HEADERS], 403],
      ])
      expect(m.getStats().connections).toBe(0)
    })

    it(`${kind}(): admits listed hosts, domains with a leading dot, and anything with ['*']`, async () => {
      const m = hostileManager({ allowedHosts: ['.example.com', 'dev.test'] })
      const endpoint = await serve(m, kind)
      await expectStatuses(endpoint, [
        ['the domain itself', { Host: 'example.com' }, 101],
        ['a subdomain, with port', { Host: 'a.b.example.com:8080' }, 101],
        ['an exact name', { Host: 'dev.test:3000' }, 101],
        ['loopback still', { Host: 'localhost' }, 101],
        ['subdomain of an exact name', { Host: 'x.dev.test' }, 403],
        ['suffix without the dot', { Host: 'badexample.com' }, 403],
        ['listed name as a prefix', { Host: 'example.com.evil.net' }, 403],
      ])
      const open = hostileManager({ allowedHosts: ['*'] })
      const anyHost = await serve(open, kind)
      await expectStatuses(anyHost, [['any name', { Host: 'anything.test' }, 101]])
    })
  }
})

// ------------------------------------------------------------------ authenticate

interface SeenRequest {
  url: string
  headers: Record<string, string>
  remoteAddress: string
}

/** An authenticate callback that answers by the request's path and records what it saw. */
function authenticateByPath(
  seen: SeenRequest[],
  onLateAnswer: () => void = () => {},
): NonNullable<ManagerOptions['authenticate']> {
  return (request) => {
    seen.push(request)
    const what = new URL(request.url, 'http://x').searchParams.get('auth') ?? 'true'
    switch (what) {
      case 'true':
        return true
      case 'false':
        return false
      case 'async-true':
        return Promise.resolve(true)
      case 'async-false':
        return Promise.resolve(false)
      case 'later-true':
        return new Promise((resolve) => setTimeout(() => resolve(true), 20))
      case 'reject':
        return Promise.reject(new Error('auth backend down'))
      case 'throw':
        throw new Error('authenticate threw')
      case 'string':
        return 'true' as unknown as boolean
      case 'one':
        return 1 as unknown as boolean
      case 'null':
        return null as unknown as boolean
      case 'cycle': {
        const meta: Record<string, unknown> = {}
        meta.self = meta
        return meta
      }
      case 'never':
        return new Promise<boolean>(() => {})
      case 'too-late':
        return new Promise((resolve) =>
          setTimeout(() => {
            resolve(true)
            onLateAnswer()
          }, 600),
        )
      default:
        return false
    }
  }
}

describe('authenticate', () => {
  for (const kind of TRANSPORTS) {
    it(`${kind}(): admits true, an object or their promises; refuses everything else with 401`, async () => {
      const seen: SeenRequest[] = []
      const m = hostileManager({ authenticate: authenticateByPath(seen), callbackTimeoutMs: 300 })
      const endpoint = await serve(m, kind)
      const table: Array<[string, number]> = [
        ['true', 101],
        ['async-true', 101],
        ['later-true', 101],
        ['false', 401],
        ['async-false', 401],
        ['reject', 401],
        ['throw', 401],
        ['string', 401],
        ['one', 401],
        ['null', 401],
        ['cycle', 401],
      ]
      const mismatches: string[] = []
      for (const [what, status] of table) {
        const response = await statusFor(endpoint.port, upgradeRequest(`/ws?auth=${what}`))
        if (response !== status) mismatches.push(`${what}: got ${response}, expected ${status}`)
      }
      expect(mismatches).toEqual([])
      expect(seen).toHaveLength(table.length)
      // A 401 carries the Bearer challenge.
      const refused = await rawExchange(endpoint.port, upgradeRequest('/ws?auth=false'))
      expect(refused).toMatch(/^HTTP\/1\.1 401 /)
      expect(refused).toContain('\r\nWWW-Authenticate: Bearer\r\n')
      // The event loop stayed free: a well-behaved client is served afterwards.
      const client = await openClient('ws', endpoint.url('/ws?auth=true'))
      await welcomeId(client, CWD)
    })

    it(`${kind}(): refuses with 401 when the answer does not come within callbackTimeoutMs`, async () => {
      const seen: SeenRequest[] = []
      let lateAnswers = 0
      const m = hostileManager({
        authenticate: authenticateByPath(seen, () => lateAnswers++),
        callbackTimeoutMs: 250,
      })
      const endpoint = await serve(m, kind)
      for (const what of ['never', 'too-late']) {
        const started = Date.now()
        const status = await statusFor(endpoint.port, upgradeRequest(`/ws?auth=${what}`))
        const elapsed = Date.now() - started
        expect(status, what).toBe(401)
        expect(elapsed, what).toBeGreaterThanOrEqual(200)
        expect(elapsed, what).toBeLessThan(250 + 2000)
      }
      // The late `true` (at 600 ms) must not resurrect the refused connection: once it has
      // been given, a full handshake round trip later, nothing is registered.
      await waitFor('the late answer', () => lateAnswers === 1)
      expect(await statusFor(endpoint.port, upgradeRequest('/ws?auth=false'))).toBe(401)
      expect(m.getStats()).toMatchObject({ connections: 0, nativeConnections: 0, rejectedHandshakes: 3 })
    })

    it(`${kind}(): sees url, lower-cased headers combined as Node does, and the remote address`, async () => {
      const seen: SeenRequest[] = []
      const m = hostileManager({ authenticate: authenticateByPath(seen) })
      const endpoint = await serve(m, kind)
      const status = await statusFor(
        endpoint.port,
        rawRequest('/ws?auth=true&q=a%20b', [
          ['Host', `127.0.0.1:${endpoint.port}`],
          ...BASE_HEADERS,
          ['X-Custom-Header', 'Mixed Case Value'],
          ['X-Dup', 'one'],
          ['x-dup', 'two'],
          ['Cookie', 'a=1'],
          ['COOKIE', 'b=2'],
          ['User-Agent', 'first'],
          ['User-Agent', 'second'],
        ]),
      )
      expect(status).toBe(101)
      expect(seen).toHaveLength(1)
      const [request] = seen
      expect(request!.url).toBe('/ws?auth=true&q=a%20b')
      expect(request!.remoteAddress).toBe('127.0.0.1')
      expect(Object.keys(request!.headers).every((k) => k === k.toLowerCase())).toBe(true)
      expect(request!.headers).toMatchObject({
        host: `127.0.0.1:${endpoint.port}`,
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'x-custom-header': 'Mixed Case Value',
        'x-dup': 'one, two',
        cookie: 'a=1; b=2',
        'user-agent': 'first',
      })
    })

    it(`${kind}(): is not asked about requests the Origin, Host or token checks refused`, async () => {
      const seen: SeenRequest[] = []
      const m = hostileManager({ authenticate: authenticateByPath(seen), token: 'tok_0123456789abcdef' })
      const endpoint = await serve(m, kind)
      expect(await statusFor(endpoint.port, upgradeRequest('/ws?token=tok_0123456789abcdef', { Origin: 'http://evil.example' }))).toBe(403)
      expect(await statusFor(endpoint.port, upgradeRequest('/ws?token=tok_0123456789abcdef', { Host: 'evil.example' }))).toBe(403)
      expect(await statusFor(endpoint.port, upgradeRequest('/ws'))).toBe(401)
      expect(seen).toHaveLength(0)
      expect(await statusFor(endpoint.port, upgradeRequest('/ws?token=tok_0123456789abcdef'))).toBe(101)
      expect(seen).toHaveLength(1)
    })
  }

  it('hands the object it returns to authorizeSubscribe as meta, without polluting prototypes', async () => {
    const seen: Array<{ connection: { id: string; meta?: unknown }; channel: string }> = []
    const m = hostileManager({
      // JSON.parse makes `__proto__` an own key, exactly what a hostile token payload would carry.
      authenticate: () => JSON.parse('{"user":"ann","roles":["dev"],"__proto__":{"polluted":1}}') as object,
      authorizeSubscribe: (connection, channel) => {
        seen.push({ connection, channel })
        return (connection.meta as { roles?: string[] } | undefined)?.roles?.includes('dev') === true
      },
    })
    for (const kind of TRANSPORTS) {
      const endpoint = await serve(m, kind)
      const client = await openClient('ws', endpoint.url())
      const id = await welcomeId(client, CWD)
      client.send(JSON.stringify({ type: 'subscribe', channel: `files-${kind}`, id: 1 }))
      expect(await client.next()).toBe(`{"type":"response","id":1,"data":{"status":"subscribed","channel":"files-${kind}"}}`)
      const last = seen[seen.length - 1]!
      expect(last.channel).toBe(`files-${kind}`)
      expect(last.connection.id).toBe(id)
      expect(last.connection.meta).toEqual(JSON.parse('{"user":"ann","roles":["dev"],"__proto__":{"polluted":1}}'))
    }
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty('polluted')
  })
})

// ------------------------------------------------------------------ authorizeSubscribe

/** An authorizeSubscribe that answers by channel name. */
function authorizeByChannel(calls: string[]): NonNullable<ManagerOptions['authorizeSubscribe']> {
  return (_connection, channel) => {
    calls.push(channel)
    switch (channel) {
      case 'deny':
        return false
      case 'throw':
        throw new Error('authorizeSubscribe threw')
      case 'reject':
        return Promise.reject(new Error('no'))
      case 'string':
        return 'true' as unknown as boolean
      case 'one':
        return 1 as unknown as boolean
      case 'later':
        return new Promise((resolve) => setTimeout(() => resolve(true), 20))
      case 'never':
        return new Promise<boolean>(() => {})
      default:
        return true
    }
  }
}

const FORBIDDEN = (id: number) =>
  `{"type":"response","id":${id},"data":{"error":"Not allowed to subscribe to this channel","code":"FORBIDDEN"}}`
const SUBSCRIBED = (id: number, channel: string) =>
  `{"type":"response","id":${id},"data":{"status":"subscribed","channel":"${channel}"}}`

const AUTHORIZE_TABLE: Array<[string, 'ok' | 'forbidden']> = [
  ['files', 'ok'],
  ['deny', 'forbidden'],
  ['throw', 'forbidden'],
  ['reject', 'forbidden'],
  ['string', 'forbidden'],
  ['one', 'forbidden'],
  ['later', 'ok'],
]

async function exerciseAuthorize(m: WebSocketManager, url: string, calls: string[]): Promise<void> {
  const client = await openClient('ws', url)
  const id = await welcomeId(client, CWD)
  let n = 0
  for (const [channel, outcome] of AUTHORIZE_TABLE) {
    n++
    client.send(JSON.stringify({ type: 'subscribe', channel, id: n }))
    expect(await client.next(), channel).toBe(outcome === 'ok' ? SUBSCRIBED(n, channel) : FORBIDDEN(n))
  }
  expect(m.getChannels(id)).toEqual(['files', 'later'])
  expect(calls).toEqual(AUTHORIZE_TABLE.map(([c]) => c))
  // Already subscribed: answered without asking again.
  client.send('{"type":"subscribe","channel":"files","id":99}')
  expect(await client.next()).toBe(SUBSCRIBED(99, 'files'))
  expect(calls).toHaveLength(AUTHORIZE_TABLE.length)
  // The server's own subscribe() is not the client's, and is never asked about.
  m.subscribe(id, 'deny')
  expect(calls).toHaveLength(AUTHORIZE_TABLE.length)
  // The refused client is still connected and served.
  client.send('{"type":"ping","id":"p"}')
  expect(await client.next()).toBe('{"type":"pong","id":"p"}')
  m.broadcast('files', { after: true })
  expect(JSON.parse(await client.next()).data).toEqual({ after: true })
}

describe('authorizeSubscribe', () => {
  it('answers FORBIDDEN to refusals, throws, rejections and non-true answers on a native connection', async () => {
    const calls: string[] = []
    const m = hostileManager({ authorizeSubscribe: authorizeByChannel(calls) })
    const endpoint = await serve(m, 'listen')
    await exerciseAuthorize(m, endpoint.url(), calls)
  })

  it('answers FORBIDDEN to refusals, throws, rejections and non-true answers on a JS socket (handleConnection)', async () => {
    const calls: string[] = []
    const m = hostileManager({ authorizeSubscribe: authorizeByChannel(calls) })
    const { url } = await serveJs(m)
    await exerciseAuthorize(m, url, calls)
  })

  for (const transport of ['native', 'js'] as const) {
    it(`answers FORBIDDEN when the answer does not come within callbackTimeoutMs (${transport} socket)`, async () => {
      const calls: string[] = []
      const m = hostileManager({ authorizeSubscribe: authorizeByChannel(calls), callbackTimeoutMs: 200 })
      const url = transport === 'native' ? (await serve(m, 'listen')).url() : (await serveJs(m)).url
      const client = await openClient('ws', url)
      const id = await welcomeId(client, CWD)
      const started = Date.now()
      client.send('{"type":"subscribe","channel":"never","id":1}')
      expect(await client.next(2000)).toBe(FORBIDDEN(1))
      expect(Date.now() - started).toBeGreaterThanOrEqual(150)
      expect(m.getChannels(id)).toEqual([])
      client.send('{"type":"subscribe","channel":"files","id":2}')
      expect(await client.next()).toBe(SUBSCRIBED(2, 'files'))
    })
  }
})

// ------------------------------------------------------------------ maxConnections

describe('maxConnections', () => {
  for (const kind of TRANSPORTS) {
    it(`${kind}(): admits exactly the limit, answers 503 beyond it, and frees a slot on close`, async () => {
      const LIMIT = 3
      const m = hostileManager({ maxConnections: LIMIT })
      const endpoint = await serve(m, kind)
      const clients = []
      for (let i = 0; i < LIMIT; i++) {
        const c = await openClient('ws', endpoint.url())
        await welcomeId(c, CWD)
        clients.push(c)
      }
      const busy = await rawExchange(endpoint.port, upgradeRequest('/ws'))
      expect(statusOf(busy)).toBe(503)
      expect(busy).toContain('Too many connections')
      expect(m.getStats()).toMatchObject({ nativeConnections: LIMIT, rejectedHandshakes: 1 })

      // A client that leaves gives its slot back (once its socket is closed, which may be a
      // moment after its record left the registry: poll with fresh handshakes).
      await clients[0]!.close()
      await waitFor('a handshake admitted after a client left', () => admitted(endpoint.port))
      expect(statusOf(await rawExchange(endpoint.port, upgradeRequest('/ws')))).toBe(503)

      // So does a connection the server removes (after its close handshake).
      m.removeConnection([...m.getConnections().keys()][0]!)
      await waitFor('a handshake admitted after removeConnection()', () => admitted(endpoint.port))
      expect(statusOf(await rawExchange(endpoint.port, upgradeRequest('/ws')))).toBe(503)
    })
  }

  it('counts a handshake waiting for authenticate against the limit', async () => {
    let release: ((v: boolean) => void) | undefined
    const m = hostileManager({
      maxConnections: 1,
      authenticate: () => new Promise<boolean>((resolve) => (release = resolve)),
    })
    const endpoint = await serve(m, 'listen')
    const pending = await RawConnection.open(endpoint.port)
    pending.write(upgradeRequest('/ws'))
    await waitFor('authenticate to be asked', () => release !== undefined)
    expect(statusOf(await rawExchange(endpoint.port, upgradeRequest('/ws')))).toBe(503)
    release!(true)
    expect(await pending.responseHead()).toMatch(/^HTTP\/1\.1 101 /)
  })

  it('listen(): does not let connections that never finish their request head take every descriptor', async () => {
    // README: maxConnections counts native connections "established or mid-handshake". A
    // peer that opens sockets and sends half a request head holds a descriptor and a task
    // for up to 10 s each; if those are not counted, a flood of them is bounded by nothing
    // but the process's descriptor limit, which Node and the addon share.
    const LIMIT = 2
    const m = hostileManager({ maxConnections: LIMIT })
    const endpoint = await serve(m, 'listen')
    const halfOpen: RawConnection[] = []
    for (let i = 0; i < LIMIT + 3; i++) {
      const raw = await RawConnection.open(endpoint.port)
      raw.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n')
      halfOpen.push(raw)
    }
    // Either a complete handshake now gets 503, or the half-open sockets beyond the limit
    // were closed; admitting it with all of them still open means the limit does not bound
    // the mid-handshake state.
    const status = await statusFor(endpoint.port, upgradeRequest('/ws'))
    await waitFor('extra half-open sockets closed', () => halfOpen.filter((r) => r.ended).length >= 3, 1000).catch(() => {})
    const dropped = halfOpen.filter((r) => r.ended).length
    expect({ status, dropped }, 'a full handshake admitted while LIMIT + 3 half-open sockets are held').not.toEqual({
      status: 101,
      dropped: 0,
    })
  })
})

// ------------------------------------------------------------------ request head limits

describe('request head limits', () => {
  /** A valid upgrade request head of exactly `size` bytes (padded with an X-Fill header). */
  function headOfSize(size: number, port: number): string {
    const base = upgradeRequest('/ws', { Host: `127.0.0.1:${port}`, 'X-Fill': '' })
    const fill = size - Buffer.byteLength(base)
    if (fill < 0) throw new Error('size too small')
    const head = upgradeRequest('/ws', { Host: `127.0.0.1:${port}`, 'X-Fill': 'f'.repeat(fill) })
    expect(Buffer.byteLength(head)).toBe(size)
    return head
  }

  it('listen(): admits a head of exactly 16 KiB and answers 431 to one byte more', async () => {
    const m = hostileManager()
    const endpoint = await serve(m, 'listen')
    expect(await statusFor(endpoint.port, headOfSize(16 * 1024, endpoint.port))).toBe(101)
    expect(await statusFor(endpoint.port, headOfSize(16 * 1024 + 1, endpoint.port))).toBe(431)
    // A head that never ends a line: refused as soon as 16 KiB are in, not buffered further.
    const endless = await RawConnection.open(endpoint.port)
    endless.write(`GET /ws HTTP/1.1\r\nX-Endless: ${'e'.repeat(64 * 1024)}`)
    expect(statusOf(await endless.responseHead())).toBe(431)
    await endless.closedByPeer()
    // 100 headers pass, 101 do not.
    const headers = (n: number) => {
      const h: Record<string, string> = {}
      for (let i = 0; Object.keys(h).length + 5 < n; i++) h[`X-H${i}`] = 'v'
      return h
    }
    expect(await statusFor(endpoint.port, upgradeRequest('/ws', headers(100)))).toBe(101)
    expect(await statusFor(endpoint.port, upgradeRequest('/ws', headers(101)))).toBe(431)
    expect(m.getStats().rejectedHandshakes).toBe(3)
  })

  it("attach(): leaves oversized heads to Node's parser (431), serving normal ones", async () => {
    const m = hostileManager()
    const endpoint = await serve(m, 'attach')
    expect(await statusFor(endpoint.port, headOfSize(15 * 1024, endpoint.port))).toBe(101)
    expect(await statusFor(endpoint.port, headOfSize(17 * 1024, endpoint.port))).toBe(431)
    const client = await openClient('ws', endpoint.url())
    await welcomeId(client, CWD)
  })

  it('listen(): drops a handshake that does not complete within 10 s (slowloris), serving others meanwhile', async () => {
    const m = hostileManager()
    const endpoint = await serve(m, 'listen')
    const probe = await openProbe(m, endpoint.url())
    const started = Date.now()
    // One peer sends half a head and goes silent; another trickles a byte every 500 ms.
    const silent = await RawConnection.open(endpoint.port)
    silent.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n')
    const trickler = await RawConnection.open(endpoint.port)
    const trickle = 'GET /ws HTTP/1.1\r\nX-Slow: ' + 's'.repeat(200)
    let sent = 0
    const timer = setInterval(() => {
      if (trickler.ended || sent >= trickle.length) return
      trickler.write(trickle[sent++]!)
    }, 500)
    onCleanUp(() => clearInterval(timer))
    // Meanwhile, well-behaved clients connect and are served.
    const other = await openClient('ws', endpoint.url())
    await welcomeId(other, CWD)
    await probe.check(10)
    await Promise.all([silent.closedByPeer(12_000), trickler.closedByPeer(12_000)])
    const elapsed = Date.now() - started
    clearInterval(timer)
    expect(elapsed).toBeGreaterThanOrEqual(9_000)
    expect(elapsed).toBeLessThan(11_500)
    // Dropped without an answer: nothing was ever a request to answer.
    expect(silent.text()).toBe('')
    await probe.check(10)
  }, 20_000)
})

describe('after handshake attacks', () => {
  it('serves a probe fully and returns RSS near its baseline after 2 000 refused handshakes', async () => {
    const m = hostileManager({ authenticate: (r) => !r.url.includes('deny'), maxConnections: 50 })
    const endpoint = await serve(m, 'listen')
    const probe = await openProbe(m, endpoint.url())
    forceGc()
    const baseline = settledRss()
    const requests = [
      upgradeRequest('/ws', { Origin: 'http://evil.example' }),
      upgradeRequest('/ws', { Host: 'evil.example' }),
      upgradeRequest('/ws?deny'),
      upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'bad' }),
      `GET /ws HTTP/1.1\r\nX: ${'y'.repeat(17 * 1024)}\r\n\r\n`,
    ]
    const N = 2000
    const WIDTH = 40
    for (let start = 0; start < N; start += WIDTH) {
      await Promise.all(
        Array.from({ length: WIDTH }, (_, k) => rawExchange(endpoint.port, requests[(start + k) % requests.length]!)),
      )
    }
    expect(m.getStats()).toMatchObject({ rejectedHandshakes: N, nativeConnections: 1 })
    await probe.check()
    await expectRssNear(baseline, '2 000 refused handshakes')
  }, 30_000)

})
