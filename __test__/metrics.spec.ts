// manager.metrics() (issue 11, item 5): the Prometheus text exposition format 0.0.4, with
// both transports, a broadcast, refused handshakes by code, and no channel name in any label.
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { asWs, mockSocket } from './helpers'
import { cleanUp, manager, openClient, serveNative, subscribeVia, waitFor, welcomeId } from './helpers/native'

afterEach(cleanUp)

/** The samples of `text` as `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

/** Resolves once a handshake with `headers` has been refused (the client sees an HTTP error). */
function refusedHandshake(url: string, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    ws.once('open', () => reject(new Error('handshake was accepted')))
    ws.once('error', () => resolve())
  })
}

describe('metrics()', () => {
  it('exposes every family with HELP and TYPE lines, zeros for a fresh manager', () => {
    const text = manager().metrics()
    expect(text.endsWith('\n')).toBe(true)
    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]])
    expect(families).toEqual([
      ['cluso_ws_connections', 'gauge'],
      ['cluso_ws_channels', 'gauge'],
      ['cluso_ws_subscriptions', 'gauge'],
      ['cluso_ws_queued_bytes_max', 'gauge'],
      ['cluso_ws_pending_broadcast_bytes', 'gauge'],
      ['cluso_ws_messages_sent_total', 'counter'],
      ['cluso_ws_sent_bytes_total', 'counter'],
      ['cluso_ws_broadcasts_total', 'counter'],
      ['cluso_ws_broadcasts_dropped_total', 'counter'],
      ['cluso_ws_slow_consumer_disconnects_total', 'counter'],
      ['cluso_ws_rejected_handshakes_total', 'counter'],
      ['cluso_ws_dead_peers_removed_total', 'counter'],
      ['cluso_ws_requests_total', 'counter'],
    ])
    for (const [name] of families) expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'))
    const values = samples(text)
    expect([...values.values()].every((v) => v === 0)).toBe(true)
    expect(values.has('cluso_ws_connections{transport="native"}')).toBe(true)
    expect(values.has('cluso_ws_connections{transport="js"}')).toBe(true)
    expect(values.has('cluso_ws_rejected_handshakes_total{code="ORIGIN_FORBIDDEN"}')).toBe(true)
    for (const result of ['ok', 'error', 'timeout', 'busy', 'no_handler']) {
      expect(values.has(`cluso_ws_requests_total{result="${result}"}`)).toBe(true)
    }
  })

  it('counts both transports, a broadcast and refusals by code, and never names a channel', async () => {
    const m = manager()
    const endpoint = await serveNative(m, 'listen', '/srv')
    const client = await openClient('ws', endpoint.url())
    await welcomeId(client, '/srv')
    const channel = 'secret-channel-name'
    await subscribeVia(client, channel)
    const js = mockSocket()
    m.addConnection(asWs(js), 'js-1')
    m.subscribe('js-1', channel)

    await refusedHandshake(endpoint.url(), { Origin: 'http://evil.example' })
    await refusedHandshake(endpoint.url('/elsewhere'), {})
    // Replies (the welcome, the subscribe acknowledgement) count as sent messages too.
    const sentBefore = m.getStats().messagesSent
    m.broadcast(channel, { n: 1 })
    const event = JSON.parse(await client.next()) as { type: string; data: unknown }
    expect(event).toMatchObject({ type: 'event', channel, data: { n: 1 } })
    const bytes = m.getStats().bytesSent

    const text = m.metrics()
    const values = samples(text)
    expect(values.get('cluso_ws_connections{transport="native"}')).toBe(1)
    expect(values.get('cluso_ws_connections{transport="js"}')).toBe(1)
    expect(values.get('cluso_ws_channels')).toBe(1)
    expect(values.get('cluso_ws_subscriptions')).toBe(2)
    expect(values.get('cluso_ws_broadcasts_total')).toBe(1)
    expect(values.get('cluso_ws_messages_sent_total')).toBe(sentBefore + 2)
    expect(values.get('cluso_ws_messages_sent_total')).toBe(m.getStats().messagesSent)
    expect(values.get('cluso_ws_sent_bytes_total')).toBe(bytes)
    expect(values.get('cluso_ws_rejected_handshakes_total{code="ORIGIN_FORBIDDEN"}')).toBe(1)
    expect(values.get('cluso_ws_rejected_handshakes_total{code="NOT_FOUND"}')).toBe(1)
    expect(values.get('cluso_ws_rejected_handshakes_total{code="UNAUTHORIZED"}')).toBe(0)
    expect(text).not.toContain(channel)

    // The event has been written to the client: nothing stays queued.
    expect(values.get('cluso_ws_queued_bytes_max')).toBe(0)
    expect(m.getStats().maxQueuedBytes).toBe(0)
    // eslint-disable-next-line no-console
    if (process.env.CLUSO_WS_SHOW_METRICS) console.log(text)
  })

  it('shows what a native subscriber has queued, and works after shutdown', async () => {
    const m = manager({ maxBufferedBytesPerConnection: 1 << 20 })
    const endpoint = await serveNative(m, 'listen', '/srv')
    const client = await openClient('ws', endpoint.url())
    await welcomeId(client, '/srv')
    await subscribeVia(client, 'load')
    // Half a megabyte at once (under the 1 MiB cap), then the gauge returns to 0 as the
    // client reads it all. (How it rounds and follows each outbox is unit-tested in Rust.)
    const payload = 'x'.repeat(64 * 1024)
    for (let i = 0; i < 8; i++) m.broadcast('load', payload)
    let received = 0
    await waitFor('every event received', async () => {
      while (client.pending() > 0) {
        await client.next()
        received++
      }
      return received === 8 && samples(m.metrics()).get('cluso_ws_queued_bytes_max') === 0
    })
    await m.shutdown()
    const after = samples(m.metrics())
    expect(after.get('cluso_ws_connections{transport="native"}')).toBe(0)
    expect(after.get('cluso_ws_broadcasts_total')).toBe(8)
  })
})
