// maxBufferedBytesPerConnection for JavaScript sockets (drop-in mode): a socket whose
// bufferedAmount is over the cap when a broadcast reaches it is closed with 4008, dropped
// from its channels and the registry, and counted in slowConsumerDisconnects.
import { afterEach, describe, expect, it } from 'vitest'
import type { WebSocket } from 'ws'
import { WebSocketManager } from '../index.js'
import { asWs, Client, mockSocket, shutdownAll, startServer, track, type MockSocket, type TestServer } from './helpers.js'

type Buffered = MockSocket & { bufferedAmount?: number }

function manager(maxBufferedBytesPerConnection: number): WebSocketManager {
  return track(new WebSocketManager(undefined, { maxBufferedBytesPerConnection, pingIntervalMs: 0 }))
}

function buffered(amount: number | undefined): Buffered {
  const ws = mockSocket() as Buffered
  if (amount !== undefined) ws.bufferedAmount = amount
  return ws
}

/** Polls `check` each turn of the event loop until it holds, failing after `ms`. */
async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const servers: TestServer[] = []
const clients: Client[] = []
afterEach(async () => {
  shutdownAll()
  for (const c of clients.splice(0)) await c.close()
  for (const s of servers.splice(0)) await s.close()
})

describe('slow consumers among JavaScript sockets (mocks)', () => {
  const CAP = 1000

  it('sends to a socket exactly at the cap and cuts one a byte over it with 4008', () => {
    const m = manager(CAP)
    const at = buffered(CAP)
    const over = buffered(CAP + 1)
    m.addConnection(asWs(at), 'at')
    m.addConnection(asWs(over), 'over')
    for (const id of ['at', 'over']) {
      m.subscribe(id, 'files')
      m.subscribe(id, 'git')
    }
    m.broadcast('files', { n: 1 })
    expect(at.send).toHaveBeenCalledTimes(1)
    expect(at.close).not.toHaveBeenCalled()
    expect(over.send).not.toHaveBeenCalled()
    expect(over.close).toHaveBeenCalledTimes(1)
    expect(over.close).toHaveBeenCalledWith(4008, 'slow consumer')

    const stats = m.getStats()
    expect(stats.slowConsumerDisconnects).toBe(1)
    expect(stats.messagesSent).toBe(1)
    expect(stats.sendFailures).toBe(0)
    expect(stats.jsConnections).toBe(1)
    expect(m.getSubscribers('files')).toEqual(['at'])
    expect(m.getSubscribers('git')).toEqual(['at'])
    expect(m.getChannels('over')).toEqual([])
    expect(m.getConnections().has('over')).toBe(false)

    // gone from every channel: the next broadcast elsewhere does not count it again
    m.broadcast('git', { n: 2 })
    expect(at.send).toHaveBeenCalledTimes(2)
    expect(over.send).not.toHaveBeenCalled()
    expect(over.close).toHaveBeenCalledTimes(1)
    expect(m.getStats().slowConsumerDisconnects).toBe(1)
    expect(m.getStats().messagesSent).toBe(2)
  })

  it('never cuts a socket without bufferedAmount', () => {
    const m = manager(1)
    const plain = buffered(undefined)
    m.addConnection(asWs(plain), 'plain')
    m.subscribe('plain', 'files')
    for (let i = 0; i < 3; i++) m.broadcast('files', 'x'.repeat(100))
    expect(plain.send).toHaveBeenCalledTimes(3)
    expect(plain.close).not.toHaveBeenCalled()
    expect(m.getStats().slowConsumerDisconnects).toBe(0)
  })

  it("counts a cut socket once when its close() emits 'close' at once", () => {
    const m = manager(CAP)
    const over = buffered(CAP + 1)
    over.close.mockImplementation(() => {
      over.readyState = 3
      over.emit('close')
    })
    const other = buffered(0)
    m.addConnection(asWs(over), 'over')
    m.addConnection(asWs(other), 'other')
    m.subscribe('over', 'files')
    m.subscribe('other', 'files')
    m.broadcast('files', 1)
    expect(m.getStats().slowConsumerDisconnects).toBe(1)
    expect(m.getStats().connections).toBe(1)
    expect(m.getSubscribers('files')).toEqual(['other'])
    expect(other.send).toHaveBeenCalledTimes(1)
  })

  it('terminates a cut socket whose close() throws', () => {
    const m = manager(CAP)
    const over = buffered(CAP + 1)
    over.close.mockImplementation(() => {
      throw new Error('close failed')
    })
    m.addConnection(asWs(over), 'over')
    m.subscribe('over', 'files')
    m.broadcast('files', 1)
    expect(over.terminate).toHaveBeenCalledTimes(1)
    expect(m.getStats().slowConsumerDisconnects).toBe(1)
    expect(m.getConnections().size).toBe(0)
  })
})

describe('slow consumers among JavaScript sockets (real ws clients)', () => {
  const CAP = 256 * 1024
  const payload = 'x'.repeat(64 * 1024)

  /** A server with the app wiring, a healthy reader and a client that stopped reading. */
  async function setup() {
    const m = manager(CAP)
    const server = await startServer(m, '/proj')
    servers.push(server)
    const connect = async () => {
      const c = await Client.connect(server.url)
      clients.push(c)
      const welcome = JSON.parse(await c.nextText())
      const id = welcome.data.connectionId as string
      m.subscribe(id, 'files')
      return { c, id }
    }
    const healthy = await connect()
    const stalled = await connect()
    let received = 0
    healthy.c.ws.on('message', () => received++)
    const stalledSocket = (stalled.c.ws as unknown as { _socket: import('node:net').Socket })._socket
    stalledSocket.pause()

    // Broadcast until the stalled client's buffers fill and it is cut, a turn of the event
    // loop between broadcasts so the healthy one reads along.
    let broadcasts = 0
    await until(() => {
      if (m.getStats().slowConsumerDisconnects > 0) return true
      m.broadcast('files', { n: broadcasts++, payload })
      return false
    }, 'the stalled client to be cut')
    return { m, server, healthy, stalled, stalledSocket, broadcasts, received: () => received }
  }

  function serverSide(server: TestServer): WebSocket[] {
    return [...server.wss.clients]
  }

  it('closes a client that stopped reading with 4008 and keeps serving the others', async () => {
    const { m, healthy, stalled, stalledSocket, broadcasts, received } = await setup()
    expect(m.getStats().slowConsumerDisconnects).toBe(1)
    expect(m.getSubscribers('files')).toEqual([healthy.id])
    expect(m.getConnections().has(stalled.id)).toBe(false)

    const closed = new Promise<[number, string]>((resolve) =>
      stalled.c.ws.once('close', (code, reason) => resolve([code, reason.toString()]))
    )
    stalledSocket.resume()
    expect(await closed).toEqual([4008, 'slow consumer'])

    // the healthy reader got every broadcast, and gets the next ones
    await until(() => received() === broadcasts, 'the healthy client to read every broadcast')
    m.broadcast('files', { n: 'after' })
    await until(() => received() === broadcasts + 1, 'the broadcast after the cut')
    expect(m.getStats().slowConsumerDisconnects).toBe(1)
  })

  it('terminates a cut client that never reads its close frame', async () => {
    const { m, server, stalled, stalledSocket } = await setup()
    const stalledServerSide = serverSide(server).filter((ws) => ws.readyState !== 1)
    expect(stalledServerSide).toHaveLength(1)
    // the close handshake cannot finish: the server side ends once the grace time passes
    await new Promise((resolve) => stalledServerSide[0]!.once('close', resolve))
    expect(m.getStats().slowConsumerDisconnects).toBe(1)
    const closed = new Promise<number>((resolve) => stalled.c.ws.once('close', (code) => resolve(code)))
    stalledSocket.resume()
    expect(await closed).toBe(1006)
  })
})
