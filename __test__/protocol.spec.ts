// SPEC A.2: the client protocol, over real `ws` sockets (the app.ts wiring on port 0)
// and over a mock socket driven by 'message' events. Exact bytes of every answer.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { WebSocketManager } from '../index.js'
import {
  asWs,
  Client,
  CONN_ID_RE,
  envelopeTimestamp,
  expectedEnvelope,
  expectRecentIso,
  mockSocket,
  newManager,
  sent,
  shutdownAll,
  startServer,
  type MockSocket,
  type TestServer,
} from './helpers.js'

const CWD = '/home/dev/my "project"\\ü\u2028'
const PROBE = '{"type":"request","id":"probe"}'
const PROBE_REPLY = '{"type":"response","id":"probe","data":{"error":"No handler for request type"}}'
const PARSE_ERROR = '{"type":"response","data":{"error":"Failed to parse message"}}'

interface Row {
  name: string
  send: string
  /** the exact answer, or null when the server must send nothing */
  reply: string | null
  /** channels the connection must be subscribed to afterwards */
  channels?: string[]
  /** channels to subscribe first (through the protocol) */
  before?: string[]
}

const rows: Row[] = [
  {
    name: 'subscribe with id',
    send: '{"type":"subscribe","channel":"files","id":"7"}',
    reply: '{"type":"response","id":"7","data":{"status":"subscribed","channel":"files"}}',
    channels: ['files'],
  },
  {
    name: 'subscribe without id (id omitted)',
    send: '{"type":"subscribe","channel":"files"}',
    reply: '{"type":"response","data":{"status":"subscribed","channel":"files"}}',
    channels: ['files'],
  },
  {
    name: 'subscribe, id first in the request',
    send: '{"id":"x1","channel":"git","type":"subscribe","extra":[1,2]}',
    reply: '{"type":"response","id":"x1","data":{"status":"subscribed","channel":"git"}}',
    channels: ['git'],
  },
  {
    name: 'subscribe with an escaped unicode channel',
    send: '{"type":"subscribe","channel":"f\\u00fcles \\"q\\""}',
    reply: '{"type":"response","data":{"status":"subscribed","channel":"füles \\"q\\""}}',
    channels: ['füles "q"'],
  },
  {
    name: 'subscribe, padded with JSON whitespace',
    send: ' \n\t{ "type" : "subscribe" , "channel" : "files" }\r\n ',
    reply: '{"type":"response","data":{"status":"subscribed","channel":"files"}}',
    channels: ['files'],
  },
  {
    name: 'subscribe with duplicate keys (last one wins, as JSON.parse)',
    send: '{"type":"request","channel":"nope","type":"subscribe","channel":"files"}',
    reply: '{"type":"response","data":{"status":"subscribed","channel":"files"}}',
    channels: ['files'],
  },
  {
    name: 'subscribe twice (idempotent, answered twice)',
    before: ['files'],
    send: '{"type":"subscribe","channel":"files","id":"again"}',
    reply: '{"type":"response","id":"again","data":{"status":"subscribed","channel":"files"}}',
    channels: ['files'],
  },
  {
    name: 'unsubscribe',
    before: ['files', 'git'],
    send: '{"type":"unsubscribe","channel":"files"}',
    reply: '{"type":"response","data":{"status":"unsubscribed","channel":"files"}}',
    channels: ['git'],
  },
  {
    name: 'unsubscribe with id',
    before: ['files'],
    send: '{"type":"unsubscribe","channel":"files","id":"u1"}',
    reply: '{"type":"response","id":"u1","data":{"status":"unsubscribed","channel":"files"}}',
    channels: [],
  },
  {
    name: 'unsubscribe from a channel never subscribed',
    send: '{"type":"unsubscribe","channel":"files"}',
    reply: '{"type":"response","data":{"status":"unsubscribed","channel":"files"}}',
    channels: [],
  },
  {
    // README "deliberate differences": channel names must be well-formed Unicode
    name: 'subscribe with an escaped lone-surrogate channel (refused, README)',
    send: '{"type":"subscribe","channel":"a\\ud800","id":"s1"}',
    reply: '{"type":"response","id":"s1","data":{"error":"Channel name must be well-formed Unicode","code":"INVALID_CHANNEL"}}',
    channels: [],
  },
  {
    // JSON.parse accepts escaped unpaired surrogates (a browser's JSON.stringify produces them
    // for a string cut in the middle of an emoji)
    name: 'a request whose data holds an escaped lone surrogate',
    send: '{"type":"request","id":"ls","data":{"chunk":"half an emoji \\ud83d"}}',
    reply: '{"type":"response","id":"ls","data":{"error":"No handler for request type"}}',
  },
  {
    name: 'a request whose data nests 200 levels deep (JSON.parse has no depth limit)',
    send: `{"type":"request","id":"deep","data":${'['.repeat(200)}${']'.repeat(200)}}`,
    reply: '{"type":"response","id":"deep","data":{"error":"No handler for request type"}}',
  },
  { name: 'subscribe without channel', send: '{"type":"subscribe","id":"s"}', reply: null, channels: [] },
  { name: 'unsubscribe without channel', before: ['files'], send: '{"type":"unsubscribe"}', reply: null, channels: ['files'] },
  {
    name: 'request with id',
    send: '{"type":"request","id":"9","handler":"files.read","data":{"path":"a.ts"}}',
    reply: '{"type":"response","id":"9","data":{"error":"No handler for request type"}}',
  },
  {
    name: 'request without id',
    send: '{"type":"request","handler":"x"}',
    reply: '{"type":"response","data":{"error":"No handler for request type"}}',
  },
  { name: 'type "event"', send: '{"type":"event","channel":"files","data":1}', reply: null },
  { name: 'type "response"', send: '{"type":"response","id":"1","data":1}', reply: null },
  { name: 'an unknown type', send: '{"type":"SUBSCRIBE","channel":"files"}', reply: null, channels: [] },
  { name: 'a JSON object without type', send: '{"channel":"files"}', reply: null, channels: [] },
  { name: 'type null', send: '{"type":null}', reply: null },
  { name: 'a JSON array', send: '[{"type":"subscribe","channel":"files"}]', reply: null, channels: [] },
  { name: 'a JSON number', send: '42', reply: null },
  { name: 'a JSON string', send: '"subscribe"', reply: null },
  { name: 'JSON true', send: 'true', reply: null },
  { name: 'text that is not JSON', send: 'hello there', reply: PARSE_ERROR },
  { name: 'truncated JSON', send: '{"type":"subscribe","channel":', reply: PARSE_ERROR },
  { name: 'an empty message', send: '', reply: PARSE_ERROR },
  { name: 'JSON null', send: 'null', reply: PARSE_ERROR },
  { name: 'JSON with trailing garbage', send: '{"type":"subscribe"} x', reply: PARSE_ERROR },
]

function welcome(id: string, cwd: string): string {
  return JSON.stringify({ type: 'response', data: { status: 'connected', connectionId: id, cwd } })
}

function welcomeId(raw: string): string {
  const m = /"connectionId":"([^"]*)"/.exec(raw)
  expect(m, raw).not.toBeNull()
  return m![1]!
}

afterEach(() => {
  shutdownAll()
})

describe('client protocol over real ws sockets', () => {
  let manager: WebSocketManager
  let server: TestServer
  const clients: Client[] = []

  async function connect(): Promise<{ client: Client; id: string }> {
    const client = await Client.connect(server.url)
    clients.push(client)
    const first = await client.nextText()
    const id = welcomeId(first)
    expect(id).toMatch(CONN_ID_RE)
    expect(first).toBe(welcome(id, CWD))
    return { client, id }
  }

  beforeEach(async () => {
    manager = newManager({ pingIntervalMs: 0 })
    server = await startServer(manager, CWD)
  })

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await server.close()
  })

  it('sends the welcome message with the connection id and cwd on connect', async () => {
    const { id } = await connect()
    expect([...manager.getConnections().keys()]).toEqual([id])
  })

  it.each(rows)('answers $name with the exact bytes', async (row) => {
    const { client, id } = await connect()
    for (const ch of row.before ?? []) {
      client.send(JSON.stringify({ type: 'subscribe', channel: ch }))
      expect(await client.nextText()).toBe(JSON.stringify({ type: 'response', data: { status: 'subscribed', channel: ch } }))
    }
    client.send(row.send)
    if (row.reply !== null) {
      expect(await client.nextText()).toBe(row.reply)
    }
    // "nothing" is proven by the probe's reply being the very next frame
    client.send(PROBE)
    expect(await client.nextText()).toBe(PROBE_REPLY)
    if (row.channels) expect(manager.getChannels(id)).toEqual(row.channels)
  })

  it('handles JSON carried in a binary frame like text', async () => {
    const { client, id } = await connect()
    client.send(Buffer.from('{"type":"subscribe","channel":"files","id":"b"}'))
    expect(await client.nextText()).toBe('{"type":"response","id":"b","data":{"status":"subscribed","channel":"files"}}')
    expect(manager.getSubscribers('files')).toEqual([id])
  })

  it('delivers broadcasts to the subscribed client only, as text frames with exact bytes', async () => {
    const a = await connect()
    const b = await connect()
    a.client.send('{"type":"subscribe","channel":"files"}')
    await a.client.nextText()
    b.client.send('{"type":"subscribe","channel":"git"}')
    await b.client.nextText()
    expect(manager.getSubscribers('files')).toEqual([a.id])
    expect(manager.getSubscribers('git')).toEqual([b.id])

    const data = { file: 'src/main.ts', event: 'change', timestamp: '2024-12-09T15:30:45.123Z' }
    const before = Date.now()
    manager.broadcast('files', data)
    const after = Date.now()
    manager.broadcast('git', { type: 'commit', message: 'm' })

    const got = await a.client.nextText()
    const ts = envelopeTimestamp(got)
    expectRecentIso(ts, before, after)
    expect(got).toBe(expectedEnvelope('files', data, ts))

    const gotB = await b.client.nextText()
    expect(gotB).toBe(expectedEnvelope('git', { type: 'commit', message: 'm' }, envelopeTimestamp(gotB)))

    // a did not get the git event: its next frame is the probe reply
    a.client.send(PROBE)
    expect(await a.client.nextText()).toBe(PROBE_REPLY)
  })

  it('stops delivering after unsubscribe', async () => {
    const { client } = await connect()
    client.send('{"type":"subscribe","channel":"files"}')
    await client.nextText()
    client.send('{"type":"unsubscribe","channel":"files"}')
    expect(await client.nextText()).toBe('{"type":"response","data":{"status":"unsubscribed","channel":"files"}}')
    manager.broadcast('files', { n: 1 })
    client.send(PROBE)
    expect(await client.nextText()).toBe(PROBE_REPLY)
  })

  it('delivers many broadcasts in order', async () => {
    const { client } = await connect()
    client.send('{"type":"subscribe","channel":"files"}')
    await client.nextText()
    for (let i = 0; i < 200; i++) manager.broadcast('files', { i })
    for (let i = 0; i < 200; i++) {
      const raw = await client.nextText()
      expect(raw).toBe(expectedEnvelope('files', { i }, envelopeTimestamp(raw)))
    }
  })

  it('send(id, data) reaches that client as a text frame', async () => {
    const { client, id } = await connect()
    manager.send(id, { hello: 'world', n: [1, null] })
    expect(await client.nextText()).toBe('{"hello":"world","n":[1,null]}')
  })

  it('gives two clients distinct ids', async () => {
    const a = await connect()
    const b = await connect()
    expect(a.id).not.toBe(b.id)
    expect(new Set(manager.getConnections().keys())).toEqual(new Set([a.id, b.id]))
  })

  it('forgets a client that disconnects', async () => {
    const { client, id } = await connect()
    client.send('{"type":"subscribe","channel":"files"}')
    await client.nextText()
    client.ws.close()
    await client.closed
    await vi.waitFor(() => expect(manager.getConnections().has(id)).toBe(false))
    expect(manager.getSubscribers('files')).toEqual([])
  })

  it('removeConnection closes the client', async () => {
    const { client, id } = await connect()
    manager.removeConnection(id)
    await client.closed
    expect(manager.getConnections().has(id)).toBe(false)
  })

  it('shutdown closes the client', async () => {
    const { client } = await connect()
    manager.shutdown()
    await client.closed
    expect(client.ws.readyState).toBe(3)
  })
})

describe('client protocol over a mock socket', () => {
  let manager: WebSocketManager
  let ws: MockSocket
  let id: string

  function emit(text: string): void {
    ws.emit('message', Buffer.from(text), false)
  }

  /** Waits for the (n+1)-th send and returns it. */
  async function sentAt(n: number): Promise<string> {
    await vi.waitFor(() => expect(ws.send.mock.calls.length).toBeGreaterThan(n))
    const v = sent(ws)[n]
    expect(typeof v).toBe('string')
    return v as string
  }

  beforeEach(() => {
    manager = newManager({ pingIntervalMs: 0 })
    ws = mockSocket()
    manager.handleConnection(asWs(ws), CWD)
    id = [...manager.getConnections().keys()][0]!
  })

  it('sends the welcome message', async () => {
    expect(id).toMatch(CONN_ID_RE)
    expect(await sentAt(0)).toBe(welcome(id, CWD))
  })

  it.each(rows)('answers $name with the exact bytes', async (row) => {
    let n = 1
    for (const ch of row.before ?? []) {
      emit(JSON.stringify({ type: 'subscribe', channel: ch }))
      expect(await sentAt(n++)).toBe(JSON.stringify({ type: 'response', data: { status: 'subscribed', channel: ch } }))
    }
    emit(row.send)
    if (row.reply !== null) expect(await sentAt(n++)).toBe(row.reply)
    emit(PROBE)
    expect(await sentAt(n)).toBe(PROBE_REPLY)
    expect(ws.send).toHaveBeenCalledTimes(n + 1)
    if (row.channels) expect(manager.getChannels(id)).toEqual(row.channels)
  })

  // The original echoed `message.id` whatever it was: JSON.stringify(JSON.parse(text).id)
  it.each([
    ['a number', '9'],
    ['null', 'null'],
    ['an empty string', '""'],
    ['1.0', '1.0'],
    ['1e400 (Infinity after JSON.parse)', '1e400'],
    ['an object with integer-like keys', '{"b":1,"2":0,"a":2,"1":[1.50,-0]}'],
    ['escaped text', '"\\u00e9\\u2028\\u0007\\/"'],
  ])('echoes an id that is %s as JSON.stringify(JSON.parse(...)) does', async (_name, idJson) => {
    const text = `{"type":"request","id":${idJson}}`
    emit(text)
    const original = JSON.stringify({
      type: 'response',
      id: (JSON.parse(text) as { id: unknown }).id,
      data: { error: 'No handler for request type' },
    })
    expect(await sentAt(1)).toBe(original)
  })

  it('welcomes with a cwd holding a lone surrogate as U+FFFD (README: deliberate difference)', async () => {
    const ws2 = mockSocket()
    manager.handleConnection(asWs(ws2), '/tmp/\udc00')
    const id2 = [...manager.getConnections().keys()].find((k) => k !== id)!
    expect(sent(ws2)).toEqual([welcome(id2, '/tmp/\ufffd')])
  })

  it('omits cwd from the welcome when none is given (JSON.stringify drops undefined)', async () => {
    const ws2 = mockSocket()
    const handle = manager.handleConnection.bind(manager) as (ws: unknown, cwd?: string) => void
    handle(ws2)
    const id2 = [...manager.getConnections().keys()].find((k) => k !== id)!
    expect(sent(ws2)).toEqual([JSON.stringify({ type: 'response', data: { status: 'connected', connectionId: id2 } })])
  })

  it('delivers a broadcast after a protocol subscribe', async () => {
    emit('{"type":"subscribe","channel":"files"}')
    await sentAt(1)
    manager.broadcast('files', { file: 'a.ts' })
    const raw = await sentAt(2)
    expect(raw).toBe(expectedEnvelope('files', { file: 'a.ts' }, envelopeTimestamp(raw)))
  })
})
