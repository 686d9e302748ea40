// The client's side of the wire protocol against a scripted server (a `ws` server the test
// drives message by message), for what the addon does not answer yet (issue 9: invoke
// responses, seq/epoch, `since` and `recovered`) and for exact message shapes. The same
// behaviour against the real server is in client-resume.spec.ts.pending.
import { afterEach, describe, expect, it } from 'vitest'
import {
  cleanUp,
  fakeServer,
  holdsFor,
  openClient,
  rejectionOf,
  stateIs,
  subscribedCount,
  waitFor,
  type FakeConnection,
} from './helpers/client.js'

afterEach(async () => {
  await cleanUp()
})

const WELCOME = { type: 'response', data: { status: 'connected', connectionId: 'conn-1-a', cwd: '/' } }

/** Accepts the next connection, welcomes it, and answers the subscribe for `channel` with `reply`. */
async function acceptSubscribe(
  server: Awaited<ReturnType<typeof fakeServer>>,
  channel: string,
  reply: Record<string, unknown>,
): Promise<{ conn: FakeConnection; request: Record<string, unknown> }> {
  const conn = await server.accept()
  conn.send(WELCOME)
  const request = await conn.next()
  expect(request).toMatchObject({ type: 'subscribe', channel, id: expect.any(String) })
  conn.send({ type: 'response', id: request.id, data: { status: 'subscribed', channel, ...reply } })
  return { conn, request }
}

const event = (seq: number, epoch = 'E1', channel = 'files') => ({
  type: 'event',
  channel,
  data: { n: seq },
  timestamp: '2026-01-01T00:00:00.000Z',
  seq,
  epoch,
})

describe('resume', () => {
  it('resumes from the last event delivered: nothing lost, duplicated or reordered', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const got: unknown[] = []
    rec.client.subscribe('files', (d, e) => got.push([d, e.seq]))
    const first = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 10 })
    expect(first.request).not.toHaveProperty('since')
    for (const n of [11, 12]) first.conn.send(event(n))
    await waitFor('11 and 12', () => got.length === 2)
    first.conn.terminate()

    const second = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 14, recovered: true })
    expect(second.request.since).toEqual({ epoch: 'E1', seq: 12 })
    // the replay (13, 14), a duplicate (14), then live (15)
    for (const n of [13, 14, 14, 15]) second.conn.send(event(n))
    await waitFor('13, 14, 15', () => got.length === 5)
    expect(got).toEqual([11, 12, 13, 14, 15].map((n) => [{ n }, n]))
    expect(rec.subscribed).toEqual([{ channel: 'files' }, { channel: 'files', recovered: true }])
    expect(rec.errors).toEqual([])
  })

  it('resumes from the position of the subscribe answer when no event came yet', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    rec.client.subscribe('files', () => {})
    const first = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 5 })
    await subscribedCount(rec, 1)
    first.conn.terminate()
    const second = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 5, recovered: true })
    expect(second.request.since).toEqual({ epoch: 'E1', seq: 5 })
  })

  it('reports recovered:false, then follows the new stream', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const got: unknown[] = []
    rec.client.subscribe('files', (_d, e) => got.push(e.seq))
    const first = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 0 })
    first.conn.send(event(1))
    await waitFor('1', () => got.length === 1)
    first.conn.terminate()
    // a restarted server: another epoch, nothing replayed
    const second = await acceptSubscribe(server, 'files', { epoch: 'E2', seq: 40, recovered: false })
    expect(second.request.since).toEqual({ epoch: 'E1', seq: 1 })
    await subscribedCount(rec, 2)
    expect(rec.subscribed[1]).toEqual({ channel: 'files', recovered: false })
    second.conn.send(event(41, 'E2'))
    await waitFor('41', () => got.length === 2)
    second.conn.terminate()
    const third = await acceptSubscribe(server, 'files', { epoch: 'E2', seq: 41, recovered: true })
    expect(third.request.since).toEqual({ epoch: 'E2', seq: 41 })
  })

  it('asks again on a gap in seq, once, and delivers the replay in order', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const got: number[] = []
    rec.client.subscribe('files', (_d, e) => got.push(e.seq!))
    const { conn } = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 10 })
    conn.send(event(11))
    conn.send(event(13))
    conn.send(event(14))
    const again = await conn.next()
    expect(again).toMatchObject({ type: 'subscribe', channel: 'files', since: { epoch: 'E1', seq: 11 } })
    conn.send({ type: 'response', id: again.id, data: { status: 'subscribed', channel: 'files', epoch: 'E1', seq: 14, recovered: true } })
    for (const n of [12, 13, 14, 15]) conn.send(event(n))
    await waitFor('up to 15', () => got.length === 5)
    expect(got).toEqual([11, 12, 13, 14, 15])
    expect(conn.queued()).toBe(0)
  })

  it('treats a new epoch in the event stream as recovered:false', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const got: number[] = []
    rec.client.subscribe('files', (_d, e) => got.push(e.seq!))
    const { conn } = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 3 })
    conn.send(event(4))
    conn.send(event(1, 'E9'))
    await waitFor('both events', () => got.length === 2)
    expect(rec.subscribed).toEqual([{ channel: 'files' }, { channel: 'files', recovered: false }])
    conn.terminate()
    const second = await acceptSubscribe(server, 'files', { epoch: 'E9', seq: 1, recovered: true })
    expect(second.request.since).toEqual({ epoch: 'E9', seq: 1 })
  })

  it('subscribes without since when the server refuses it (INVALID_SINCE), reporting recovered:false', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    rec.client.subscribe('files', () => {})
    const first = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 2 })
    await subscribedCount(rec, 1)
    first.conn.terminate()
    const conn = await server.accept()
    const withSince = await conn.next()
    expect(withSince.since).toEqual({ epoch: 'E1', seq: 2 })
    conn.send({ type: 'response', id: withSince.id, data: { error: 'bad since', code: 'INVALID_SINCE' } })
    const plain = await conn.next()
    expect(plain).toMatchObject({ type: 'subscribe', channel: 'files' })
    expect(plain).not.toHaveProperty('since')
    conn.send({ type: 'response', id: plain.id, data: { status: 'subscribed', channel: 'files', epoch: 'E1', seq: 2 } })
    await subscribedCount(rec, 2)
    expect(rec.subscribed[1]).toEqual({ channel: 'files', recovered: false })
    expect(rec.errors).toEqual([])
  })

  it('drops the position with the subscription: a later subscribe starts fresh', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const off = rec.client.subscribe('files', () => {})
    const { conn } = await acceptSubscribe(server, 'files', { epoch: 'E1', seq: 7 })
    await subscribedCount(rec, 1)
    off()
    const unsub = await conn.next()
    expect(unsub).toEqual({ type: 'unsubscribe', channel: 'files', id: expect.any(String) })
    // an event already in flight behind the unsubscribe is not an error
    conn.send(event(8))
    conn.send({ type: 'response', id: unsub.id, data: { status: 'unsubscribed', channel: 'files' } })
    rec.client.subscribe('files', () => {})
    const again = await conn.next()
    expect(again).not.toHaveProperty('since')
    expect(rec.errors).toEqual([])
  })
})

describe('requests', () => {
  it('sends invoke with a numeric id and resolves with the answer data', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const conn = await server.accept()
    conn.send(WELCOME)
    await stateIs(rec, 'open')
    const answer = rec.client.request<{ sum: number }>('add', [1, 2])
    const invoke = await conn.next()
    expect(invoke).toEqual({ type: 'invoke', id: expect.any(Number), channel: 'add', data: [1, 2] })
    conn.send({ type: 'response', id: invoke.id, data: { sum: 3 } })
    expect(await answer).toEqual({ sum: 3 })
  })

  it('rejects with the code of an error answer, in either place the server puts it', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const conn = await server.accept()
    await stateIs(rec, 'open')
    const answers: Array<[Record<string, unknown>, string, string]> = [
      [{ error: 'boom', data: { error: 'boom', code: 'HANDLER_ERROR' } }, 'HANDLER_ERROR', 'boom'],
      [{ error: 'No handler: x', data: { error: 'No handler: x', code: 'NO_HANDLER' } }, 'NO_HANDLER', 'No handler: x'],
      [{ error: 'too many', data: { error: 'too many', code: 'BUSY' } }, 'BUSY', 'too many'],
      [{ data: { error: 'slow down', code: 'RATE_LIMITED' } }, 'RATE_LIMITED', 'slow down'],
      [{ error: 'no code' }, 'SERVER_ERROR', 'no code'],
    ]
    for (const [body, code, message] of answers) {
      const pending = rec.client.request('x')
      const invoke = await conn.next()
      conn.send({ type: 'response', id: invoke.id, ...body })
      const error = await rejectionOf(pending)
      expect(error).toBeInstanceOf(Error)
      expect([error.code, error.message]).toEqual([code, message])
    }
    // a result that merely contains an `error` field is a result
    const ok = rec.client.request('y')
    const invoke = await conn.next()
    conn.send({ type: 'response', id: invoke.id, data: { error: 'text', count: 1 } })
    expect(await ok).toEqual({ error: 'text', count: 1 })
  })

  it('ignores a late answer to a request that timed out', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const conn = await server.accept()
    await stateIs(rec, 'open')
    const error = await rejectionOf(rec.client.request('slow', null, { timeoutMs: 50 }))
    expect(error.code).toBe('TIMEOUT')
    const invoke = await conn.next()
    conn.send({ type: 'response', id: invoke.id, error: 'too late', data: { error: 'too late', code: 'TIMEOUT' } })
    conn.send({ type: 'response', id: invoke.id, data: 1 })
    await holdsFor('no error report', () => rec.errors.length === 0, 100)
  })

  it('send() writes a send message when open, and nothing otherwise', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    expect(rec.client.send('log', 1)).toBe(false)
    const conn = await server.accept()
    await stateIs(rec, 'open')
    expect(rec.client.send('log', { line: 2 })).toBe(true)
    expect(await conn.next()).toEqual({ type: 'send', channel: 'log', data: { line: 2 } })
    expect(conn.queued()).toBe(0)
  })
})

describe('handshake and ping', () => {
  it('offers cluso and the token as subprotocols, and pings an idle link', async () => {
    const server = await fakeServer()
    openClient(server.url, { token: 'abc.DEF_123-x', pingIntervalMs: 50, pongTimeoutMs: 1000 })
    const conn = await server.accept()
    expect(conn.protocols).toEqual(['cluso', 'cluso-token.abc.DEF_123-x'])
    expect(await conn.next()).toEqual({ type: 'ping' })
    conn.send({ type: 'pong' })
    expect(await conn.next()).toEqual({ type: 'ping' })
  })
})
