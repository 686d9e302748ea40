// The demo (`npm run demo`: examples/demo/server.mjs) in headless Chromium: the server runs as
// a child process on a free port, serving a temporary git repository, and the page is loaded
// through a TCP proxy the test controls. The page shows "connected"; a file created in the
// folder and a commit appear in its feed; the AI answer streams to the end, and again whole,
// in order and without a repeated word when the link is cut mid-answer (resume); after the
// server is stopped and started again on the same port the page reconnects, says it
// reloaded, and shows new files again. No script error.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { afterEach, describe, expect, it } from 'vitest'
import { useChromium } from './helpers/browser.js'
import { within } from './helpers/native.js'
import { TcpProxy } from './helpers/proxy.js'

/** The page's document, as far as the callbacks run in it use it (tsconfig has no DOM lib). */
declare const document: {
  getElementById(id: string): { textContent: string | null; dataset: Record<string, string | undefined> } | null
}

const DEMO = fileURLToPath(new URL('../examples/demo/server.mjs', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const WAIT_MS = 10_000

const browser = useChromium()
const children = new Set<ChildProcess>()
let folder: string
let proxy: TcpProxy | undefined

afterEach(async () => {
  for (const child of children) await stopDemo(child, 'SIGKILL')
  await proxy?.stop()
  if (folder) rmSync(folder, { recursive: true, force: true })
})

interface Demo {
  child: ChildProcess
  url: string
}

/** Starts the demo server on `port` (0: any free one); resolves once it printed its URL. */
function startDemo(dir: string, port = 0): Promise<Demo> {
  const child = spawn(process.execPath, [DEMO, '--dir', dir, '--port', String(port)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLUSO_WS_LOG: 'off' },
  })
  children.add(child)
  let output = ''
  return within(
    new Promise<Demo>((resolve, reject) => {
      const read = (chunk: Buffer) => {
        output += chunk
        const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(output)?.[0]
        if (url) resolve({ child, url })
      }
      child.stdout!.on('data', read)
      child.stderr!.on('data', read)
      child.once('exit', (code) => reject(new Error(`the demo exited with ${code} before printing its URL:\n${output}`)))
    }),
    WAIT_MS,
    'the demo server to print its URL',
  )
}

/** Sends `signal` and waits (bounded) for the exit; SIGKILL if a SIGTERM was not enough. */
async function stopDemo(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  children.delete(child)
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.kill(signal)
  try {
    return await within(exited, 5000, `the demo to exit on ${signal}`)
  } catch (error) {
    child.kill('SIGKILL')
    await within(exited, 5000, 'the demo to exit on SIGKILL')
    throw error
  }
}

function git(dir: string, ...args: string[]): void {
  execFileSync('git', ['-c', 'user.name=demo', '-c', 'user.email=demo@example.invalid', ...args], {
    cwd: dir,
    stdio: 'ignore',
  })
}

const textOf = (page: Page, id: string) => page.evaluate((id) => document.getElementById(id)?.textContent ?? '', id)

type Match = 'is' | 'is not' | 'includes' | 'ends with'

/** Waits (polled in the page, with a deadline) until the text of element `id` matches. */
async function waitForText(page: Page, id: string, match: Match, value: string): Promise<void> {
  try {
    await page.waitForFunction(
      ({ id, match, value }) => {
        const text = document.getElementById(id)?.textContent ?? ''
        if (match === 'is') return text === value
        if (match === 'is not') return text !== value
        if (match === 'includes') return text.includes(value)
        return text.endsWith(value)
      },
      { id, match, value },
      { timeout: WAIT_MS, polling: 20 },
    )
  } catch {
    throw new Error(`timed out waiting until #${id} ${match} "${value}"; it says: ${await textOf(page, id)}`)
  }
}

const answerDone = (page: Page) =>
  page.waitForFunction(() => document.getElementById('answer')?.dataset.state === 'done', null, { timeout: WAIT_MS })

const feedHas = (page: Page, text: string) => waitForText(page, 'feed', 'includes', text)

describe('the demo in headless Chromium', () => {
  it('shows connected, files, commits, the streamed answer; resumes it after a cut; survives a server restart', async () => {
    folder = mkdtempSync(join(tmpdir(), 'cluso-demo-'))
    git(folder, 'init', '-q', '-b', 'main')
    const demo = await startDemo(folder)
    const port = Number(new URL(demo.url).port)
    proxy = await new TcpProxy(port).start()

    const page = await browser.newPage()
    const problems: string[] = []
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`))
    page.on('console', (message) => {
      const text = message.text()
      // Chromium logs each refused connect while the server is down: network, not script
      if (message.type() === 'error' && /^WebSocket connection to .* failed/.test(text)) return
      if (message.type() === 'error' || text.startsWith('cluso-ws/client:')) problems.push(`console: ${text}`)
    })
    try {
      await page.goto(`http://127.0.0.1:${proxy.port}/`)
      await waitForText(page, 'state', 'is', 'connected')
      await waitForText(page, 'dir', 'is', folder)
      await waitForText(page, 'branch', 'is', 'main')

      // a file created in the folder
      writeFileSync(join(folder, 'hello.txt'), 'hello\n')
      await feedHas(page, 'add hello.txt')

      // a commit in its repository
      git(folder, 'add', 'hello.txt')
      git(folder, 'commit', '-q', '-m', 'say hello')
      await feedHas(page, 'say hello')
      await waitForText(page, 'head', 'ends with', 'say hello')

      // the AI answer, streamed to its end
      await page.fill('#question', 'What is cluso-ws?')
      await page.click('#ask-button')
      await answerDone(page)
      const answer = await textOf(page, 'answer')
      expect(answer).toMatch(/^You asked: “What is cluso-ws\?”\. /)
      expect(answer).toMatch(/the same way\.$/)
      expect(await textOf(page, 'answer-status')).toMatch(/^done: \d+ chunks$/)

      // the same answer again (the generator is deterministic), with the link cut mid-answer:
      // the client reconnects and resumes ai-response from the last chunk it had
      await page.click('#ask-button')
      await waitForText(page, 'answer', 'includes', 'one word at a time')
      const partial = await textOf(page, 'answer')
      proxy.cut()
      await waitForText(page, 'state', 'is not', 'connected')
      await waitForText(page, 'state', 'is', 'connected')
      await answerDone(page)
      expect(partial.length).toBeLessThan(answer.length)
      expect(await textOf(page, 'answer')).toBe(answer)
      expect(await textOf(page, 'feed')).not.toContain('could not be replayed')

      // a restart: the page notices, reconnects to the new server, reloads, and goes on
      expect(await stopDemo(demo.child)).toBe(0)
      await waitForText(page, 'state', 'is not', 'connected')
      await startDemo(folder, port)
      await waitForText(page, 'state', 'is', 'connected')
      await feedHas(page, 'could not be replayed')
      writeFileSync(join(folder, 'after-restart.txt'), 'again\n')
      await feedHas(page, 'add after-restart.txt')

      expect(problems).toEqual([])
    } finally {
      await page.close()
    }
  }, 90_000)
})
