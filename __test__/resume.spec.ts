// Sequence numbers, history and resume (issue 9, items 2-4), on every transport: events
// carry `seq` and `epoch` with history on, a resume replays the whole gap or nothing, and
// the wire stays the original's with history off.
import { afterEach, describe, expect, it } from 'vitest'
import { ISO_RE, waitFor } from './helpers/native.js'
import { ask, cleanUp, serve, TRANSPORTS } from './helpers/transports.js'
import type { TestClient } from './helpers/native.js'

afterEach(cleanUp)

interface Event {
  type: 'event'
  channel: string
  data: { n: number }
  timestamp: string
  seq: number
  epoch: string
}

async function subscribe(client: TestClient, channel: string, since?: { epoch: string; seq: number }) {
  const reply = JSON.parse(await ask(client, { type: 'subscribe', channel, id: 's', ...(since ? { since } : {}) }))
  return reply.data as { status: string; channel: string; epoch?: string; seq?: number; recovered?: boolean }
}

async function events(client: TestClient, count: number): Promise<Event[]> {
  const out: Event[] = []
  for (let i = 0; i < count; i++) out.push(JSON.parse(await client.next()) as Event)
  return out
}

function broadcastRange(m: { broadcast(channel: string, data: unknown): void }, from: number, to: number) {
  for (let n = from; n <= to; n++) m.broadcast('files', { n })
}

describe.each(TRANSPORTS)('history and resume over %s', (transport) => {
  it('keeps the original wire with history off', async () => {
    const { m, connect } = await serve(transport)
    const { client } = await connect()
    expect(await ask(client, { type: 'subscribe', channel: 'files', id: 's' })).toBe(
      '{"type":"response","id":"s","data":{"status":"subscribed","channel":"files"}}',
    )
    m.broadcast('files', { n: 1 })
    const text = await client.next()
    expect(text).toMatch(/^\{"type":"event","channel":"files","data":\{"n":1\},"timestamp":"[^"]+"\}$/)
  })

  it('numbers events one by one after the timestamp, under one epoch per channel', async () => {
    const { m, connect } = await serve(transport, { historySize: 10 })
    const { client } = await connect()
    const reply = await subscribe(client, 'files')
    expect(reply).toEqual({ status: 'subscribed', channel: 'files', epoch: expect.any(String), seq: 0 })
    broadcastRange(m, 1, 3)
    const texts = [await client.next(), await client.next(), await client.next()]
    texts.forEach((text, i) => {
      const event = JSON.parse(text) as Event
      expect(event.timestamp).toMatch(ISO_RE)
      expect(text).toBe(
        `{"type":"event","channel":"files","data":{"n":${i + 1}},"timestamp":"${event.timestamp}","seq":${i + 1},"epoch":"${reply.epoch}"}`,
      )
    })
    const other = await subscribe(client, 'other')
    expect(other.epoch).not.toBe(reply.epoch)
    expect(other.seq).toBe(0)
  })

  it('recovers exactly historySize missed events, and not one more', async () => {
    const { m, connect } = await serve(transport, { historySize: 5 })
    const { client: watcher } = await connect()
    const { epoch } = await subscribe(watcher, 'files')
    broadcastRange(m, 1, 5)
    const { client: back } = await connect()
    const resumed = await subscribe(back, 'files', { epoch: epoch!, seq: 0 })
    expect(resumed).toEqual({ status: 'subscribed', channel: 'files', epoch, seq: 5, recovered: true })
    expect((await events(back, 5)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5])
    m.broadcast('files', { n: 6 })
    expect((await events(back, 1))[0]!.seq).toBe(6)

    const { client: late } = await connect()
    const refused = await subscribe(late, 'files', { epoch: epoch!, seq: 0 })
    expect(refused).toEqual({ status: 'subscribed', channel: 'files', epoch, seq: 6, recovered: false })
    m.broadcast('files', { n: 7 })
    expect((await events(late, 1))[0]!.seq).toBe(7) // live only, nothing replayed
  })

  it('does not recover a foreign epoch, a future seq, expired events or a gap over historyMaxBytes', async () => {
    const { m, connect } = await serve(transport, { historySize: 100, historyTtlMs: 200, historyMaxBytes: 400 })
    const { client: first } = await connect()
    const { epoch } = await subscribe(first, 'files')
    const { client } = await connect()
    expect((await subscribe(client, 'files', { epoch: 'not-it', seq: 0 })).recovered).toBe(false)
    expect((await subscribe(client, 'files', { epoch: epoch!, seq: 1 })).recovered).toBe(false)
    broadcastRange(m, 1, 10) // ~1.1 KB of events: only the last few fit in 400 bytes
    await events(client, 10)
    const { client: b } = await connect()
    expect((await subscribe(b, 'files', { epoch: epoch!, seq: 0 })).recovered).toBe(false)
    const { client: c } = await connect()
    const recent = await subscribe(c, 'files', { epoch: epoch!, seq: 9 })
    expect(recent.recovered).toBe(true)
    expect((await events(c, 1))[0]!.seq).toBe(10)
    const expiresAt = Date.now() + 250
    await waitFor('the kept events to expire', () => Date.now() > expiresAt)
    const { client: d } = await connect()
    const expired = await subscribe(d, 'files', { epoch: epoch!, seq: 9 })
    expect(expired).toEqual({ status: 'subscribed', channel: 'files', epoch, seq: 10, recovered: false })
    const { client: e } = await connect()
    expect((await subscribe(e, 'files', { epoch: epoch!, seq: 10 })).recovered).toBe(true)
  })

  it('answers a malformed since with INVALID_SINCE and subscribes nothing', async () => {
    const { m, connect } = await serve(transport, { historySize: 10 })
    const { client, id } = await connect()
    for (const since of [5, null, {}, { epoch: '', seq: 1 }, { epoch: 'e', seq: -1 }, { epoch: 'e', seq: 1.5 }]) {
      const answer = await ask(client, { type: 'subscribe', channel: 'files', id: 'x', since })
      expect(JSON.parse(answer)).toEqual({
        type: 'response',
        id: 'x',
        data: { error: expect.stringContaining('since'), code: 'INVALID_SINCE' },
      })
    }
    expect(m.getChannels(id)).toEqual([])
  })

  it('loses and repeats nothing when a resume races a burst of broadcasts', async () => {
    const { m, connect } = await serve(transport, { historySize: 5000, historyMaxBytes: 16 * 1024 * 1024 })
    const { client: first } = await connect()
    const { epoch } = await subscribe(first, 'files')
    broadcastRange(m, 1, 50)
    let n = 50
    const total = 1500
    const producer = new Promise<void>((resolve) => {
      const step = () => {
        for (let i = 0; i < 25 && n < total; i++) m.broadcast('files', { n: ++n })
        if (n < total) setImmediate(step)
        else resolve()
      }
      step()
    })
    const { client } = await connect()
    const reply = await subscribe(client, 'files', { epoch: epoch!, seq: 20 })
    expect(reply.recovered).toBe(true)
    await producer
    const seqs = (await events(client, total - 20)).map((e) => e.seq)
    expect(seqs).toEqual(Array.from({ length: total - 20 }, (_, i) => i + 21))
  })
})
