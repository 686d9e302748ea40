// A TCP proxy on 127.0.0.1 that a test controls, between a client and a server: it can cut
// every link (both sides see the connection end), freeze links (no byte moves either way and
// nothing is closed, like a dead network path), refuse new links, stop listening (connection
// refused) and listen again on the same port, and point at another server.
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net'

interface Link {
  client: Socket
  upstream: Socket
}

export class TcpProxy {
  /** Accept times (performance.now()) of every connection the proxy took, refused ones included. */
  readonly accepts: number[] = []
  /** New links are frozen from the start (a connect attempt that hangs). */
  freezeNew = false
  /** New links are accepted and closed at once (a server that keeps failing). */
  refuseNew = false
  port = 0
  private server: Server | undefined
  private readonly links = new Set<Link>()

  constructor(public targetPort: number) {}

  /** Listens (again) on `port`, or on a free port the first time. */
  async start(): Promise<this> {
    const server = createServer((client) => this.accept(client))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, '127.0.0.1', () => resolve())
    })
    this.server = server
    this.port = (server.address() as AddressInfo).port
    return this
  }

  url(path = '/ws'): string {
    return `ws://127.0.0.1:${this.port}${path}`
  }

  /** Links currently open. */
  get linkCount(): number {
    return this.links.size
  }

  private accept(client: Socket): void {
    this.accepts.push(performance.now())
    client.on('error', () => {})
    if (this.refuseNew) {
      client.destroy()
      return
    }
    const upstream = netConnect(this.targetPort, '127.0.0.1')
    upstream.on('error', () => {})
    const link = { client, upstream }
    this.links.add(link)
    const end = (): void => {
      this.links.delete(link)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', end)
    upstream.on('close', end)
    client.pipe(upstream)
    upstream.pipe(client)
    if (this.freezeNew) this.freezeLink(link)
  }

  private freezeLink({ client, upstream }: Link): void {
    client.unpipe(upstream)
    upstream.unpipe(client)
    client.pause()
    upstream.pause()
  }

  /** Stops moving bytes on every open link; nothing is closed. */
  freeze(): void {
    for (const link of this.links) this.freezeLink(link)
  }

  /** Ends every open link (both sides see the TCP connection close). */
  cut(): void {
    for (const { client, upstream } of [...this.links]) {
      client.destroy()
      upstream.destroy()
    }
    this.links.clear()
  }

  /** Stops listening and cuts every link: connects are refused until `start()`. */
  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    this.cut()
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
