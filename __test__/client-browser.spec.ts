// cluso-ws/client in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// client/index.mjs served as-is from a small http server, connected with the browser's own
// WebSocket to a native listen() manager through the test's proxy: subscribe, receive, and
// come back after the link is cut and after it freezes (found by the client's ping).
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { CLIENT_MJS, cleanUp, startProxy, startServer, waitFor } from './helpers/client.js'
import { useChromium } from './helpers/browser.js'
import { onCleanUp } from './helpers/native.js'

const browser = useChromium()

afterEach(async () => {
  await cleanUp()
})

/** The page: connects to the URL in `?ws=`, records what the client reports in `window.log`. */
const PAGE = `<!doctype html><title>cluso-ws/client</title>
<script type="module">
import { connect } from '/client.mjs'
const log = (window.log = { states: [], subscribed: 0, events: [], errors: [] })
const client = connect(new URLSearchParams(location.search).get('ws'), {
  minReconnectDelayMs: 20, maxReconnectDelayMs: 100, pingIntervalMs: 100, pongTimeoutMs: 300,
})
client.on('state', (s) => log.states.push(s))
client.on('subscribed', () => log.subscribed++)
client.on('error', (e) => log.errors.push(e.code + ': ' + e.message))
client.subscribe('files', (data) => log.events.push(data))
</script>`

/** Serves `/` (the page) and `/client.mjs` (client/index.mjs as it is) on 127.0.0.1. */
async function pageServer(): Promise<string> {
  const source = readFileSync(CLIENT_MJS)
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    if (path === '/client.mjs') {
      res.writeHead(200, { 'content-type': 'text/javascript' })
      res.end(source)
    } else if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(PAGE)
    } else {
      res.writeHead(404).end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onCleanUp(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
}

interface PageLog {
  states: string[]
  subscribed: number
  events: unknown[]
  errors: string[]
}

describe('cluso-ws/client in headless Chromium', () => {
  it('subscribes and receives with the browser WebSocket; reconnects after a cut and after a freeze', async () => {
    const server = await startServer('native')
    const proxy = await startProxy(server.port)
    const origin = await pageServer()
    const page = await browser.newPage()
    onCleanUp(() => page.close())
    const pageErrors: string[] = []
    page.on('pageerror', (e) => pageErrors.push(e.message))
    await page.goto(`${origin}?ws=${encodeURIComponent(proxy.url())}`)
    const read = (): Promise<PageLog> =>
      page.evaluate(() => (globalThis as unknown as { log?: PageLog }).log ?? { states: [], subscribed: 0, events: [], errors: [] })

    await waitFor('subscribed in the page', async () => (await read()).subscribed === 1, 10_000)
    server.manager.broadcast('files', { file: 'a.ts', event: 'add', timestamp: 't' })
    await waitFor('the event in the page', async () => (await read()).events.length === 1)

    proxy.cut()
    await waitFor('subscribed again', async () => (await read()).subscribed === 2, 10_000)
    server.manager.broadcast('files', { file: 'b.ts', event: 'add', timestamp: 't' })
    await waitFor('the second event', async () => (await read()).events.length === 2)

    // a frozen link (no bytes, no close: the browser cannot tell) is found by the client's ping
    proxy.freeze()
    await waitFor('subscribed after the freeze', async () => (await read()).subscribed === 3, 10_000)
    server.manager.broadcast('files', { file: 'c.ts', event: 'add', timestamp: 't' })
    await waitFor('the third event', async () => (await read()).events.length === 3)

    const log = await read()
    expect(log.events).toEqual([
      { file: 'a.ts', event: 'add', timestamp: 't' },
      { file: 'b.ts', event: 'add', timestamp: 't' },
      { file: 'c.ts', event: 'add', timestamp: 't' },
    ])
    expect(log.states).toEqual(['open', 'reconnecting', 'open', 'reconnecting', 'open'])
    expect(log.errors).toEqual([])
    expect(pageErrors).toEqual([])
  }, 60_000)
})
