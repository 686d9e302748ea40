// Request handlers (issue 9, item 1): `manager.handle(name, handler)` answers `invoke`,
// `request` and `send` on every transport, with the exact bytes the web client and the
// original module's clients read.
import { afterEach, describe, expect, it } from 'vitest'
import type { RequestContext } from '../index.js'
import { waitFor } from './helpers/native.js'
import { ask, cleanUp, serve, TRANSPORTS } from './helpers/transports.js'

afterEach(cleanUp)

const failed = (id: unknown, message: string, code: string): string =>
  JSON.stringify({ type: 'response', id, error: message, data: { error: message, code } })

describe.each(TRANSPORTS)('request handlers over %s', (transport) => {
  it('answers invoke and request with the result, echoing the id as sent', async () => {
    const { m, connect } = await serve(transport)
    const contexts: RequestContext[] = []
    m.handle('sum', (data: { a: number; b: number }, context) => {
      contexts.push(context)
      return { total: data.a + data.b }
    })
    const { client, id } = await connect()
    expect(await ask(client, { type: 'invoke', id: 7, channel: 'sum', data: { a: 1, b: 2 } })).toBe(
      '{"type":"response","id":7,"data":{"total":3}}',
    )
    expect(await ask(client, { type: 'request', id: 'r-1', handler: 'sum', data: { a: 2, b: 2 } })).toBe(
      '{"type":"response","id":"r-1","data":{"total":4}}',
    )
    expect(await ask(client, '{"type":"invoke","id":1.0e0,"channel":"sum","data":{"a":0,"b":0}}')).toBe(
      '{"type":"response","id":1,"data":{"total":0}}',
    )
    expect(contexts[0]).toEqual({ connectionId: id, meta: undefined, name: 'sum' })
  })

  it('awaits a promise, and leaves data out for an undefined result', async () => {
    const { m, connect } = await serve(transport)
    m.handle('later', async (data: string) => `got ${data}`)
    m.handle('nothing', () => undefined)
    const { client } = await connect()
    expect(await ask(client, { type: 'invoke', id: 1, channel: 'later', data: 'x' })).toBe(
      '{"type":"response","id":1,"data":"got x"}',
    )
    expect(await ask(client, { type: 'invoke', id: 2, channel: 'nothing' })).toBe('{"type":"response","id":2}')
  })

  it('answers HANDLER_ERROR for a throw, a rejection and a result JSON.stringify rejects', async () => {
    const { m, connect } = await serve(transport)
    m.handle('throws', () => {
      throw new Error('broke "here"')
    })
    m.handle('rejects', () => Promise.reject(new TypeError('no way')))
    m.handle('throws-a-string', () => {
      throw 'plain'
    })
    m.handle('bigint', () => ({ n: 1n }))
    const cycle: Record<string, unknown> = {}
    cycle.self = cycle
    m.handle('cycle', () => cycle)
    const { client } = await connect()
    expect(await ask(client, { type: 'invoke', id: 1, channel: 'throws' })).toBe(
      failed(1, 'broke "here"', 'HANDLER_ERROR'),
    )
    expect(await ask(client, { type: 'invoke', id: 2, channel: 'rejects' })).toBe(failed(2, 'no way', 'HANDLER_ERROR'))
    expect(await ask(client, { type: 'request', id: '3', handler: 'throws-a-string' })).toBe(
      failed('3', 'plain', 'HANDLER_ERROR'),
    )
    for (const name of ['bigint', 'cycle']) {
      const answer = JSON.parse(await ask(client, { type: 'invoke', id: name, channel: name }))
      expect(answer).toMatchObject({ type: 'response', id: name, data: { code: 'HANDLER_ERROR' } })
      expect(answer.error).toMatch(/cannot be serialised/)
    }
    // The connection and the host carry on.
    expect(await ask(client, { type: 'ping', id: 'alive' })).toBe('{"type":"pong","id":"alive"}')
  })

  it('keeps the original bytes for an unregistered request and answers NO_HANDLER to invoke', async () => {
    const { connect } = await serve(transport)
    const { client } = await connect()
    expect(await ask(client, { type: 'request', id: '9' })).toBe(
      '{"type":"response","id":"9","data":{"error":"No handler for request type"}}',
    )
    expect(await ask(client, { type: 'request', id: '9', handler: 'missing' })).toBe(
      '{"type":"response","id":"9","data":{"error":"No handler for request type"}}',
    )
    expect(await ask(client, { type: 'request', handler: 'missing' })).toBe(
      '{"type":"response","data":{"error":"No handler for request type"}}',
    )
    const noHandler = failed(4, 'No handler for this request', 'NO_HANDLER')
    expect(await ask(client, { type: 'invoke', id: 4, channel: 'missing' })).toBe(noHandler)
    expect(await ask(client, { type: 'invoke', id: 4 })).toBe(noHandler)
  })

  it('runs send (and invoke without an id) without answering, logging failures', async () => {
    const { m, connect } = await serve(transport)
    const seen: unknown[] = []
    m.handle('log', (data) => {
      seen.push(data)
    })
    m.handle('bad', () => {
      throw new Error('ignored')
    })
    const { client } = await connect()
    client.send(JSON.stringify({ type: 'send', channel: 'log', data: 1 }))
    client.send(JSON.stringify({ type: 'invoke', channel: 'log', data: 2 }))
    client.send(JSON.stringify({ type: 'send', channel: 'bad' }))
    client.send(JSON.stringify({ type: 'send', channel: 'missing' }))
    expect(await ask(client, { type: 'ping' })).toBe('{"type":"pong"}')
    await waitFor('both sends handled', () => seen.length === 2)
    expect(seen).toEqual([1, 2])
    expect(client.pending()).toBe(0)
  })

  it('answers TIMEOUT after requestTimeoutMs and ignores the late result', async () => {
    const { m, connect } = await serve(transport, { requestTimeoutMs: 150 })
    let finish: (value: string) => void = () => {}
    m.handle('slow', () => new Promise<string>((resolve) => (finish = resolve)))
    const { client } = await connect()
    expect(await ask(client, { type: 'invoke', id: 'slow-1', channel: 'slow' })).toBe(
      failed('slow-1', 'Request timed out', 'TIMEOUT'),
    )
    finish('too late')
    expect(await ask(client, { type: 'ping' })).toBe('{"type":"pong"}')
  })

  it('answers BUSY beyond maxPendingRequestsPerConnection, and takes requests again once some finish', async () => {
    const { m, connect } = await serve(transport, { maxPendingRequestsPerConnection: 2 })
    const waiting: Array<() => void> = []
    m.handle('hold', () => new Promise<string>((resolve) => waiting.push(() => resolve('done'))))
    const { client } = await connect()
    client.send(JSON.stringify({ type: 'invoke', id: 1, channel: 'hold' }))
    client.send(JSON.stringify({ type: 'invoke', id: 2, channel: 'hold' }))
    expect(await ask(client, { type: 'invoke', id: 3, channel: 'hold' })).toBe(
      failed(3, 'Too many requests in flight', 'BUSY'),
    )
    await waitFor('two handlers running', () => waiting.length === 2)
    waiting.shift()!()
    expect(await client.next()).toBe('{"type":"response","id":1,"data":"done"}')
    client.send(JSON.stringify({ type: 'invoke', id: 4, channel: 'hold' }))
    await waitFor('the fourth running', () => waiting.length === 2)
    for (const resolve of waiting.splice(0)) resolve()
    const rest = [await client.next(), await client.next()].sort()
    expect(rest).toEqual(['{"type":"response","id":2,"data":"done"}', '{"type":"response","id":4,"data":"done"}'])
  })

  it('removes a handler with null and replaces it on a second handle()', async () => {
    const { m, connect } = await serve(transport)
    m.handle('h', () => 'first')
    const { client } = await connect()
    expect(await ask(client, { type: 'invoke', id: 1, channel: 'h' })).toBe('{"type":"response","id":1,"data":"first"}')
    m.handle('h', () => 'second')
    expect(await ask(client, { type: 'invoke', id: 2, channel: 'h' })).toBe('{"type":"response","id":2,"data":"second"}')
    m.handle('h', null)
    expect(await ask(client, { type: 'invoke', id: 3, channel: 'h' })).toBe(
      failed(3, 'No handler for this request', 'NO_HANDLER'),
    )
  })

  it('counts calls against maxMessagesPerSecond', async () => {
    const { m, connect } = await serve(transport, { maxMessagesPerSecond: 1 })
    m.handle('h', () => 'ok')
    const { client } = await connect()
    for (let id = 1; id <= 3; id++) client.send(JSON.stringify({ type: 'invoke', id, channel: 'h' }))
    const answers = [await client.next(), await client.next(), await client.next()]
    expect(answers).toContain('{"type":"response","data":{"error":"Too many messages; slow down","code":"RATE_LIMITED"}}')
    expect(answers.filter((a) => a.includes('"data":"ok"'))).toHaveLength(2)
  })
})

describe('handle() arguments', () => {
  it('throws a TypeError with ERR_CLUSO_INVALID_HANDLER for a bad name or handler', async () => {
    const { m } = await serve('listen')
    const bad: Array<[unknown, unknown]> = [
      ['', () => 1],
      [5, () => 1],
      [undefined, () => 1],
      ['h', 'not a function'],
      ['h', {}],
      ['h', undefined],
    ]
    for (const [name, handler] of bad) {
      let thrown: unknown
      try {
        ;(m.handle as (n: unknown, h: unknown) => void)(name, handler)
      } catch (error) {
        thrown = error
      }
      expect(thrown, `${String(name)} / ${typeof handler}`).toBeInstanceOf(TypeError)
      expect((thrown as { code?: string }).code).toBe('ERR_CLUSO_INVALID_HANDLER')
    }
  })

  it("hands a native connection's authenticate result to the handler as meta", async () => {
    const { m, connect } = await serve('listen', { authenticate: () => ({ user: 'ada' }) })
    let meta: unknown
    m.handle('who', (_data, context) => {
      meta = context.meta
      return context.name
    })
    const { client } = await connect()
    expect(await ask(client, { type: 'invoke', id: 1, channel: 'who' })).toBe('{"type":"response","id":1,"data":"who"}')
    expect(meta).toEqual({ user: 'ada' })
  })
})
