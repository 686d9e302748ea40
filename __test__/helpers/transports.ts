// One connected client on each transport a manager serves: native `listen()`, native
// `attach()`, and the drop-in wiring (`ws` owns the socket, `handleConnection`).
import type { ManagerOptions, WebSocketManager } from '../../index.js'
import { startServer } from '../helpers.js'
import { cleanUp, manager, onCleanUp, openClient, serveNative, type TestClient, welcomeId } from './native.js'

export type Transport = 'listen' | 'attach' | 'drop-in'
export const TRANSPORTS: Transport[] = ['listen', 'attach', 'drop-in']
export const CWD = '/srv/project'

export interface Served {
  m: WebSocketManager
  /** Opens one more client, its welcome read; returns it with its connection id. */
  connect(): Promise<{ client: TestClient; id: string }>
}

/** A manager with `options` serving `transport`; everything is closed by `cleanUp()`. */
export async function serve(transport: Transport, options: ManagerOptions = {}): Promise<Served> {
  const m = manager(options as Parameters<typeof manager>[0])
  let url: string
  if (transport === 'drop-in') {
    const server = await startServer(m, CWD)
    onCleanUp(() => server.close())
    url = server.url
  } else {
    url = (await serveNative(m, transport, CWD)).url()
  }
  return {
    m,
    async connect() {
      const client = await openClient('ws', url)
      const id = await welcomeId(client, CWD)
      return { client, id }
    },
  }
}

/** Sends `message` as JSON and returns the next text the client gets. */
export async function ask(client: TestClient, message: unknown): Promise<string> {
  client.send(typeof message === 'string' ? message : JSON.stringify(message))
  return client.next()
}

export { cleanUp }
