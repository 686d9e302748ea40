// Takes docs/demo.png: the demo (examples/demo/server.mjs) serving a small throw-away git
// repository, after a few file changes, a commit, a broken JSON file and an AI answer, in
// headless Chromium (Debian's /usr/bin/chromium driven by playwright-core).
//
//   node scripts/demo-screenshot.mjs [out.png]
/* global document -- the page.waitForFunction callbacks run in the page */
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const root = fileURLToPath(new URL('..', import.meta.url))
const out = process.argv[2] ?? join(root, 'docs', 'demo.png')
// a fixed path, so that the picture does not change with each run
const base = join(tmpdir(), 'cluso-ws-screenshot')
rmSync(base, { recursive: true, force: true })
const dir = join(base, 'my-app')
mkdirSync(join(dir, 'src'), { recursive: true })
const git = (...args) =>
  execFileSync('git', ['-c', 'user.name=demo', '-c', 'user.email=demo@example.invalid', ...args], { cwd: dir, stdio: 'ignore' })
git('init', '-q', '-b', 'main')
writeFileSync(join(dir, 'README.md'), '# my-app\n')
git('add', '.')
git('commit', '-q', '-m', 'initial commit')

const server = spawn(process.execPath, [join(root, 'examples', 'demo', 'server.mjs'), '--dir', dir, '--port', '0'], {
  stdio: ['ignore', 'pipe', 'inherit'],
})
const url = await new Promise((resolve, reject) => {
  let output = ''
  server.stdout.on('data', (chunk) => {
    output += chunk
    const found = /http:\/\/127\.0\.0\.1:\d+\//.exec(output)
    if (found) resolve(found[0])
  })
  server.once('exit', (code) => reject(new Error(`the demo exited with ${code}: ${output}`)))
})

let browser
try {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
  const page = await browser.newPage({ viewport: { width: 1100, height: 600 }, deviceScaleFactor: 1 })
  await page.goto(url)
  const feedHas = (text) =>
    page.waitForFunction((text) => document.getElementById('feed').textContent.includes(text), text, { timeout: 10000 })
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 10000 })

  writeFileSync(join(dir, 'src', 'app.ts'), 'export const answer = 42\n')
  await feedHas('add src/app.ts')
  writeFileSync(join(dir, 'src', 'app.ts'), 'export const answer = 43\n')
  await feedHas('change src/app.ts')
  git('add', '.')
  git('commit', '-q', '-m', 'answer the question')
  await feedHas('answer the question')
  git('checkout', '-q', '-b', 'feature/live-feed')
  await feedHas('switched to feature/live-feed')
  writeFileSync(join(dir, 'package.json'), '{ "name": "my-app", }\n')
  await feedHas('package.json:1:')

  await page.fill('#question', 'How does resume work?')
  await page.click('#ask-button')
  await page.waitForFunction(() => document.getElementById('answer').dataset.state === 'done', null, { timeout: 10000 })
  await page.screenshot({ path: out, fullPage: true })
  console.log(`wrote ${out}`)
} finally {
  await browser?.close()
  server.kill('SIGTERM')
  rmSync(base, { recursive: true, force: true })
}
