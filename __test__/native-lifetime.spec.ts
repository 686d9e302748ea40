// Process lifetime with native transports (issue 3, item 7): a listener or a native connection
// keeps node alive like a listening http.Server does; after shutdown() nothing of the addon
// does, and the process exits by itself.
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** How long a child gets to exit by itself. shutdown() drains for at most 2 s. */
const EXIT_DEADLINE_MS = 8000
/** How long a listening child is watched to confirm it stays alive. */
const ALIVE_WINDOW_MS = 1500

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** A `node -e` child in the repository root whose stdout lines can be awaited. */
class Child {
  readonly process: ChildProcess
  stdout = ''
  stderr = ''
  readonly exited: Promise<Exit>
  private wake: (() => void) | null = null

  constructor(script: string, nodeFlags: string[] = []) {
    this.process = spawn(process.execPath, [...nodeFlags, '-e', script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.process.stdout!.on('data', (d: Buffer) => {
      this.stdout += d.toString()
      this.wake?.()
    })
    this.process.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()))
    this.exited = new Promise((resolve) => this.process.once('exit', (code, signal) => resolve({ code, signal })))
    void this.exited.then(() => this.wake?.())
    children.push(this)
  }

  get alive(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null
  }

  describe(): string {
    return `stdout:\n${this.stdout}\nstderr:\n${this.stderr}`
  }

  /** Waits for a stdout line matching `re` and returns its match. */
  async line(re: RegExp, deadlineMs = EXIT_DEADLINE_MS): Promise<RegExpMatchArray> {
    const end = Date.now() + deadlineMs
    for (;;) {
      const m = re.exec(this.stdout)
      if (m) return m
      if (!this.alive) throw new Error(`child exited before printing ${re}\n${this.describe()}`)
      const left = end - Date.now()
      if (left <= 0) throw new Error(`child did not print ${re} within ${deadlineMs} ms\n${this.describe()}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          this.wake = null
          resolve()
        }
      })
    }
  }

  /** Resolves with the exit, or rejects if the child is still running after `deadlineMs`. */
  async exit(deadlineMs = EXIT_DEADLINE_MS): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`child did not exit by itself within ${deadlineMs} ms\n${this.describe()}`)),
        deadlineMs,
      )
    })
    try {
      return await Promise.race([this.exited, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Stays alive for `ms`: resolves true if it is still running then. */
  async aliveAfter(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const outcome = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), ms)
      }),
    ])
    clearTimeout(timer)
    return outcome && this.alive
  }
}

const children: Child[] = []

afterEach(async () => {
  // Only the children this spec started, by their own handle.
  while (children.length > 0) {
    const child = children.pop()!
    if (child.alive) {
      child.process.kill('SIGKILL')
      await child.exited
    }
  }
})

function expectCleanExit(exit: Exit, child: Child): void {
  expect(exit, child.describe()).toEqual({ code: 0, signal: null })
  expect(child.stderr).not.toMatch(/panick|Segmentation|Abort|FATAL ERROR|Error:/i)
}

/** Connects to a child's endpoint and returns the welcome message. */
async function welcomeFrom(url: string): Promise<{ ws: WebSocket; welcome: string; closed: Promise<number> }> {
  const ws = new WebSocket(url)
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
  const welcome = await new Promise<string>((resolve, reject) => {
    ws.once('message', (d) => resolve(String(d)))
    ws.once('error', reject)
  })
  return { ws, welcome, closed }
}

const PRELUDE = `
const { WebSocketManager } = require('./index.js')
const { WebSocket } = require('ws')
const http = require('node:http')
process.on('exit', (code) => console.log('exiting ' + code))
`

describe('native transport process lifetime', () => {
  it('stays alive while listening, with no other handle open', async () => {
    const child = new Child(`${PRELUDE}
      const m = new WebSocketManager(undefined, {})
      m.listen({ port: 0, cwd: '/child' }).then((a) => console.log('listening ' + a.port))
    `)
    const [, port] = await child.line(/listening (\d+)/)
    const client = await welcomeFrom(`ws://127.0.0.1:${port}/ws`)
    expect(client.welcome).toContain('"cwd":"/child"')
    client.ws.close()
    await client.closed
    expect(await child.aliveAfter(ALIVE_WINDOW_MS), `the listening child exited\n${child.describe()}`).toBe(true)
    // Still serving after the window.
    const again = await welcomeFrom(`ws://127.0.0.1:${port}/ws`)
    again.ws.terminate()
  })

  it('exits by itself with code 0 after shutdown() closes its listener and a connected client', async () => {
    const child = new Child(`${PRELUDE}
      const m = new WebSocketManager(undefined, {})
      m.listen({ port: 0 }).then(({ port }) => {
        const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws')
        ws.on('message', (data) => {
          const text = String(data)
          if (text.includes('"connected"')) ws.send('{"type":"subscribe","channel":"files"}')
          else if (text.includes('"subscribed"')) {
            m.broadcast('files', { last: true })
          } else if (text.includes('"last":true')) {
            console.log('shutting down')
            m.shutdown()
          }
        })
        ws.on('close', (code) => console.log('client closed ' + code))
      })
    `)
    await child.line(/shutting down/)
    const started = Date.now()
    const exit = await child.exit()
    expectCleanExit(exit, child)
    expect(child.stdout).toContain('client closed 1001')
    // shutdown() drains for at most 2 s; nothing should hold the process beyond that.
    expect(Date.now() - started).toBeLessThan(4000)
  })

  it('exits by itself when shutdown() is called before listen() has resolved', async () => {
    const child = new Child(`${PRELUDE}
      const m = new WebSocketManager(undefined, {})
      m.listen({ port: 0 }).then(
        () => console.log('listen resolved'),
        (e) => console.log('listen rejected: ' + e.message),
      )
      m.shutdown()
    `)
    expectCleanExit(await child.exit(), child)
  })

  it('exits by itself after the http.Server it is attached to closes and shutdown() runs', async () => {
    const child = new Child(`${PRELUDE}
      const m = new WebSocketManager(undefined, {})
      const server = http.createServer((req, res) => res.end('ok'))
      m.attach(server, { path: '/ws', cwd: '/child' })
      server.listen(0, '127.0.0.1', () => {
        const ws = new WebSocket('ws://127.0.0.1:' + server.address().port + '/ws')
        ws.on('message', (data) => {
          if (!String(data).includes('"connected"')) return
          console.log('closing')
          server.close(() => console.log('server closed'))
          m.shutdown()
        })
        ws.on('close', (code) => console.log('client closed ' + code))
      })
    `)
    await child.line(/closing/)
    expectCleanExit(await child.exit(), child)
    expect(child.stdout).toContain('server closed')
    expect(child.stdout).toContain('client closed 1001')
  })

  it('keeps listening and answering after the manager object is no longer referenced and gc runs', async () => {
    const child = new Child(
      `${PRELUDE}
      ;(function () {
        const m = new WebSocketManager(undefined, {})
        m.listen({ port: 0 }).then(({ port }) => {
          for (let i = 0; i < 5; i++) global.gc()
          setImmediate(() => {
            for (let i = 0; i < 5; i++) global.gc()
            console.log('collected, port ' + port)
          })
        })
      })()
    `,
      ['--expose-gc'],
    )
    const [, port] = await child.line(/collected, port (\d+)/)
    const client = await welcomeFrom(`ws://127.0.0.1:${port}/ws`)
    const ack = new Promise<string>((resolve) => client.ws.once('message', (d) => resolve(String(d))))
    client.ws.send('{"type":"subscribe","channel":"files","id":"g"}')
    expect(await ack).toBe('{"type":"response","id":"g","data":{"status":"subscribed","channel":"files"}}')
    client.ws.terminate()
    expect(child.alive, child.describe()).toBe(true)
  })

  it('is kept alive by a native connection alone, and exits once it closes', async () => {
    // The server stops listening as soon as the test's client is connected: from then on
    // only the native connection is left.
    const child = new Child(`${PRELUDE}
      const m = new WebSocketManager(undefined, {})
      const server = http.createServer()
      m.attach(server, { path: '/ws' })
      server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port))
      const poll = setInterval(() => {
        if (m.getStats().nativeConnections === 0) return
        clearInterval(poll)
        server.close(() => console.log('server closed'))
      }, 10)
    `)
    const [, port] = await child.line(/listening (\d+)/)
    const client = await welcomeFrom(`ws://127.0.0.1:${port}/ws`)
    await child.line(/server closed/)
    expect(await child.aliveAfter(ALIVE_WINDOW_MS), `exited with a native connection open\n${child.describe()}`).toBe(true)
    client.ws.close()
    await client.closed
    expectCleanExit(await child.exit(), child)
  })
})
