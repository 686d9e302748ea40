// The cluso-ws demo: one Node server that owns its http.Server, hands the WebSocket upgrades
// on /ws to the native core (attach), and serves a page built on cluso-ws/client at /.
// Everything it broadcasts is real and local: a watcher on the served folder (files), the
// folder's git repository (git), a JSON syntax check of changed .json files (diagnostics),
// and an AI answer streamed word by word from a canned, deterministic generator
// (ai-response). History is on, so a client that reconnects resumes where it left off.
//
//   npm run demo                                   serves the current directory on port 3000
//   node examples/demo/server.mjs --dir <path> --port <n>   (PORT=<n> works too; 0 = any free port)
import { execFile } from 'node:child_process'
import { readFile, readFileSync, statSync } from 'node:fs'
import http from 'node:http'
import { basename, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import chokidar from 'chokidar'
import { EventBroadcaster, WebSocketManager } from 'cluso-ws'

const { values: args } = parseArgs({
  options: { dir: { type: 'string' }, port: { type: 'string' } },
})
const dir = resolve(args.dir ?? process.cwd())
const port = Number(args.port ?? process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`cluso-ws demo: bad port ${args.port ?? process.env.PORT}`)
  process.exit(1)
}
if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
  console.error(`cluso-ws demo: ${dir} is not a directory`)
  process.exit(1)
}
let stopping = false // set by SIGINT / SIGTERM

// ---------------------------------------------------------------------------------------
// HTTP: the page, its module, and cluso-ws/client as it ships (a static ES module, resolved
// through the package's own exports map — what an app would serve from node_modules)

const PUBLIC = fileURLToPath(new URL('./public/', import.meta.url))
const STATIC = {
  '/': [join(PUBLIC, 'index.html'), 'text/html; charset=utf-8'],
  '/app.mjs': [join(PUBLIC, 'app.mjs'), 'text/javascript; charset=utf-8'],
  '/style.css': [join(PUBLIC, 'style.css'), 'text/css; charset=utf-8'],
  '/cluso-ws/client.mjs': [fileURLToPath(import.meta.resolve('cluso-ws/client')), 'text/javascript; charset=utf-8'],
}

const server = http.createServer((req, res) => {
  const file = STATIC[new URL(req.url ?? '/', 'http://localhost').pathname]
  if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(file ? 405 : 404, { 'content-type': 'text/plain' }).end(file ? 'method not allowed' : 'not found')
    return
  }
  readFile(file[0], (err, body) => {
    if (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err.message))
      return
    }
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
})

// ---------------------------------------------------------------------------------------
// cluso-ws: native sockets on /ws of this server, 500 events of history per channel

const manager = new WebSocketManager(undefined, { historySize: 500 })
manager.attach(server, { path: '/ws', cwd: dir })
const broadcaster = new EventBroadcaster(manager)

// ---------------------------------------------------------------------------------------
// files: chokidar on the served folder, without descending into the heavy or private trees

const SKIP = new Set(['node_modules', 'target', '.git', 'dist'])
const skipped = (path) => relative(dir, path).split(sep).some((part) => SKIP.has(part))

const watcher = chokidar.watch(dir, { ignored: skipped, ignoreInitial: true })
watcher.on('all', (event, path) => {
  const file = relative(dir, path)
  if (!file) return
  broadcaster.fileChanged(file, event)
  if (event === 'add' || event === 'change' || event === 'unlink') checkJson(file, event === 'unlink')
})
watcher.on('error', (error) => console.warn('cluso-ws demo: watcher:', error.message))

// ---------------------------------------------------------------------------------------
// diagnostics: a real, cheap check — changed .json files must parse. Each change of the set
// of problems broadcasts the whole set (cleared when it is empty).

const problems = new Map() // file -> LSPDiagnostic
function checkJson(file, removed) {
  if (!file.endsWith('.json')) return
  let diagnostic = null
  if (!removed) {
    let text
    try {
      text = readFileSync(join(dir, file), 'utf8')
    } catch {
      return // gone again, or unreadable: the next event tells
    }
    try {
      JSON.parse(text)
    } catch (error) {
      const at = Number(/position (\d+)/.exec(error.message)?.[1] ?? 0)
      const before = text.slice(0, at).split('\n')
      diagnostic = {
        file,
        line: before.length,
        column: before[before.length - 1].length + 1,
        message: error.message,
        severity: 'error',
        source: 'json',
      }
    }
  }
  if (!diagnostic && !problems.has(file)) return
  if (diagnostic) problems.set(file, diagnostic)
  else problems.delete(file)
  broadcaster.diagnosticsUpdated([...problems.values()], problems.size === 0)
}

// ---------------------------------------------------------------------------------------
// git: only when the folder is a repository. HEAD (branch), refs/heads (commits) and the
// index (status) are watched; the details come from git itself, read-only.

const git = gitDirs(dir)
const run = promisify(execFile)
async function gitOut(...argv) {
  try {
    const { stdout } = await run('git', ['--no-optional-locks', ...argv], { cwd: dir, timeout: 5000 })
    return stdout.trim()
  } catch {
    return null
  }
}

function gitDirs(root) {
  const dotGit = join(root, '.git')
  const stat = statSync(dotGit, { throwIfNoEntry: false })
  if (stat?.isDirectory()) return { dir: dotGit, common: dotGit }
  if (!stat?.isFile()) return null
  const gitdir = /^gitdir: (.+)$/m.exec(readFileSync(dotGit, 'utf8'))?.[1] // a worktree
  if (!gitdir) return null
  const own = resolve(root, gitdir.trim())
  let common = own
  try {
    common = resolve(own, readFileSync(join(own, 'commondir'), 'utf8').trim())
  } catch {
    // not a linked worktree: refs live next to HEAD
  }
  return { dir: own, common }
}

function currentBranch() {
  try {
    const head = readFileSync(join(git.dir, 'HEAD'), 'utf8').trim()
    return head.startsWith('ref: refs/heads/') ? head.slice(16) : `(detached at ${head.slice(0, 7)})`
  } catch {
    return null
  }
}

let branch = git && currentBranch()
let gitWatcher = null
if (git) {
  const heads = join(git.common, 'refs', 'heads')
  const wanted = (path) => {
    if (path === git.dir || path === git.common || path === join(git.common, 'refs')) return true
    if (path === join(git.dir, 'HEAD') || path === join(git.dir, 'index')) return true
    return path === heads || (path.startsWith(heads + sep) && !path.endsWith('.lock'))
  }
  gitWatcher = chokidar.watch([...new Set([git.dir, git.common])], {
    ignored: (path) => !wanted(path),
    ignoreInitial: true,
  })
  // git writes through lock files and renames, often several files per command: gather a
  // burst of changes, then report once
  let pending = null
  gitWatcher.on('all', (event, path) => {
    pending ??= { head: false, index: false, refs: new Map() }
    if (path === join(git.dir, 'HEAD')) pending.head = true
    else if (path === join(git.dir, 'index')) pending.index = true
    else if (path.startsWith(heads + sep)) pending.refs.set(relative(heads, path).split(sep).join('/'), event)
    else return
    clearTimeout(pending.timer)
    pending.timer = setTimeout(() => {
      const burst = pending
      pending = null
      reportGit(burst).catch((error) => console.warn('cluso-ws demo: git:', error.message))
    }, 100)
  })
  gitWatcher.on('error', (error) => console.warn('cluso-ws demo: git watcher:', error.message))
}

let lastStatus = null
async function reportGit({ head, index, refs }) {
  if (stopping) return
  // refs first, against the branch before the burst: `checkout -b x` creates x, then moves HEAD
  for (const [name, event] of refs) {
    if (name === branch && event !== 'unlink') {
      broadcaster.gitEvent('commit', `${name}: ${(await gitOut('log', '-1', '--format=%h %s')) ?? 'new commit'}`)
    } else if (event === 'add') {
      broadcaster.gitEvent('branch', `created ${name}`)
    } else if (event === 'unlink') {
      broadcaster.gitEvent('branch', `deleted ${name}`)
    }
  }
  if (head) {
    const now = currentBranch()
    if (now && now !== branch) {
      branch = now
      broadcaster.gitEvent('branch', `switched to ${now}`)
    }
  }
  if (index) {
    const status = await gitOut('status', '--porcelain')
    const n = status ? status.split('\n').length : 0
    const message = `${n === 0 ? 'clean' : `${n} changed ${n === 1 ? 'path' : 'paths'}`} on ${branch}`
    // editors and shells refresh the index often; say only what changed
    if (status !== null && message !== lastStatus) broadcaster.gitEvent('status', (lastStatus = message))
  }
}

// ---------------------------------------------------------------------------------------
// requests the page makes

manager.handle('demo.state', async () => ({
  dir,
  git: git ? { branch, head: await gitOut('log', '-1', '--format=%h %s') } : null,
}))

// ai.ask: answers at once with the answer's id, then streams it as ai-response events, one
// word every 50 ms. The generator is canned and deterministic — no model, no network.
const streams = new Set()
let asked = 0
manager.handle('ai.ask', (data) => {
  if (streams.size >= 20) throw new Error('too many answers streaming at once; ask again shortly')
  const question = String(data?.question ?? '').trim().slice(0, 200) || 'What is this?'
  const id = `answer-${++asked}`
  const words = cannedAnswer(question).split(/(?<= )/)
  let index = 0
  const timer = setInterval(() => {
    const finished = index === words.length - 1
    broadcaster.aiChunk(id, words[index], index, finished)
    index++
    if (finished) {
      clearInterval(timer)
      streams.delete(timer)
    }
  }, 50)
  streams.add(timer)
  return { id, chunks: words.length }
})

function cannedAnswer(question) {
  return (
    `You asked: “${question}”. This answer comes from a local generator, not a model: ` +
    `the server sends it one word at a time on the ai-response channel, each chunk with its ` +
    `index, through the native fan-out core. The page built on cluso-ws/client puts the ` +
    `chunks in order. Cut the connection halfway and the client reconnects and resumes ` +
    `from the last chunk it received, so no word is lost or repeated. ` +
    `Files changed in ${basename(dir)}/ and its git activity ` +
    `stream into the feed next to it the same way.`
  )
}

// ---------------------------------------------------------------------------------------

server.on('error', (error) => {
  console.error(`cluso-ws demo: ${error.code === 'EADDRINUSE' ? `port ${port} is in use (try --port)` : error.message}`)
  process.exit(1)
})
// listen once the watchers have scanned, so that no change made after the URL is printed is lost
await Promise.all([watcher, gitWatcher].filter(Boolean).map((w) => new Promise((ready) => w.once('ready', ready))))
server.listen(port, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}/`
  console.log(`cluso-ws demo: serving ${dir}${git ? ` (git, on ${branch})` : ''}`)
  console.log(url)
})

async function stop() {
  if (stopping) process.exit(1) // a second signal: stop now
  stopping = true
  for (const timer of streams) clearInterval(timer)
  await Promise.all([watcher.close(), gitWatcher?.close()])
  await manager.shutdown()
  server.close()
  server.closeAllConnections()
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
