// The demo page: one cluso-ws/client connection to /ws of the server that served it.
import { connect } from 'cluso-ws/client'

const $ = (id) => document.getElementById(id)
const client = connect(`ws://${location.host}/ws`, { maxReconnectDelayMs: 5000 })

// connection state: the word "connected" while open
const STATES = { connecting: 'connecting…', open: 'connected', reconnecting: 'reconnecting…', closed: 'closed' }
function showState(state) {
  $('state').textContent = STATES[state]
  $('state').dataset.state = state
}
showState(client.state)

// the workspace header, loaded on the first connection and reloaded whenever a channel could
// not be resumed (the server restarted, or history ran short) and after git activity
async function loadState() {
  try {
    const { dir, git } = await client.request('demo.state')
    $('dir').textContent = dir
    $('branch').textContent = git ? git.branch : 'not a git repository'
    $('head').textContent = git?.head ?? ''
  } catch (error) {
    addToFeed('note', `could not load the workspace state: ${error.message}`)
  }
}

let loaded = false
let reloadNoted = false
client.on('state', (state) => {
  showState(state)
  if (state !== 'open') return
  reloadNoted = false
  if (!loaded) {
    loaded = true
    loadState()
  }
})
client.on('subscribed', ({ recovered }) => {
  if (recovered !== false || reloadNoted) return
  reloadNoted = true // once per connection, not once per channel
  addToFeed('note', 'reconnected, but the events missed meanwhile could not be replayed (server restarted?): state reloaded')
  loadState()
})
client.on('error', (error) => console.warn('cluso-ws/client:', error.code, error.message))

// the feed: newest first, bounded
const feed = $('feed')
function addToFeed(kind, text, timestamp = new Date().toISOString()) {
  const item = document.createElement('li')
  const time = document.createElement('time')
  time.dateTime = timestamp
  time.textContent = new Date(timestamp).toLocaleTimeString([], { hour12: false })
  const tag = document.createElement('span')
  tag.className = `tag ${kind}`
  tag.textContent = kind
  const body = document.createElement('span')
  body.className = 'text'
  body.textContent = text
  item.append(time, tag, body)
  feed.prepend(item)
  while (feed.children.length > 200) feed.lastElementChild.remove()
}

client.subscribe('files', ({ file, event, timestamp }) => addToFeed('files', `${event} ${file}`, timestamp))
client.subscribe('git', ({ type, message, timestamp }) => {
  addToFeed('git', `${type}: ${message}`, timestamp)
  loadState()
})
client.subscribe('diagnostics', ({ diagnostics, cleared, timestamp }) => {
  const summary = cleared
    ? 'none'
    : diagnostics.map((d) => `${d.file}:${d.line}:${d.column} ${d.message}`).join('; ')
  $('diagnostics').textContent = summary
  addToFeed('diagnostics', cleared ? 'all clear' : summary, timestamp)
})

// the AI answer: chunks kept per answer id and placed by index (chunks may come before the
// request's result names the id)
const answers = new Map() // id -> { chunks, finished }
let current = null
function showAnswer() {
  const { chunks, finished } = answers.get(current) ?? { chunks: [], finished: false }
  $('answer').textContent = chunks.join('')
  if (finished) finishAnswer(`done: ${chunks.length} chunks`)
}
function finishAnswer(status) {
  $('answer').dataset.state = 'done'
  $('answer-status').textContent = status
  $('ask-button').disabled = false
}

client.subscribe('ai-response', ({ id, chunk, index, finished }) => {
  if (!answers.has(id)) answers.set(id, { chunks: [], finished: false })
  const entry = answers.get(id)
  entry.chunks[index] = chunk
  entry.finished ||= finished
  if (id === current) showAnswer()
})
client.on('subscribed', ({ channel, recovered }) => {
  if (channel === 'ai-response' && recovered === false && $('answer').dataset.state === 'streaming')
    finishAnswer('interrupted: the rest of the answer could not be replayed')
})

$('ask').addEventListener('submit', async (event) => {
  event.preventDefault()
  $('ask-button').disabled = true
  $('answer').textContent = ''
  $('answer').dataset.state = 'streaming'
  $('answer-status').textContent = 'asking…'
  answers.clear()
  current = null
  try {
    const { id, chunks } = await client.request('ai.ask', { question: $('question').value }, { timeoutMs: 10000 })
    current = id
    $('answer-status').textContent = `streaming ${chunks} chunks…`
    showAnswer()
  } catch (error) {
    finishAnswer(`failed: ${error.code ?? 'ERROR'} ${error.message}`)
  }
})
