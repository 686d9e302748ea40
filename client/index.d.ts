// Types of cluso-ws/client (client/index.mjs, client/index.cjs). The event interfaces repeat
// those of the server's index.d.ts so that a browser bundle needs nothing from the addon.

/** What happened to a file (chokidar's event names). */
export type FileEventType = 'add' | 'change' | 'unlink' | 'unlinkDir' | 'addDir'
/** Severity of an LSP diagnostic. */
export type DiagnosticSeverity = 'error' | 'warning' | 'info' | 'hint'
/** Which validation ran. */
export type ValidationType = 'lint' | 'typecheck' | 'format'
/** Which git operation happened. */
export type GitEventType = 'status' | 'commit' | 'push' | 'pull' | 'branch'

/** Data of a `files` event. */
export interface FileChangeEvent {
  file: string
  event: FileEventType
  timestamp: string
}

/** One diagnostic from a language server. */
export interface LSPDiagnostic {
  file: string
  line: number
  column: number
  message: string
  severity: DiagnosticSeverity
  source: string
}

/** Data of a `diagnostics` event. */
export interface DiagnosticsUpdateEvent {
  diagnostics: LSPDiagnostic[]
  cleared: boolean
  timestamp: string
}

/** Data of an `ai-response` event: one chunk of a streamed AI answer. */
export interface AIChunkEvent {
  id: string
  chunk: string
  index: number
  finished: boolean
  timestamp: string
}

/** One search hit. */
export interface SearchResult {
  file: string
  line: number
  column: number
  match: string
  context: string
}

/** Data of a `search` event. */
export interface SearchProgressEvent {
  query: string
  completed: number
  total: number | null
  results: SearchResult[]
  timestamp: string
}

/** One problem found by a validation run. */
export interface ValidationError {
  file: string
  line: number
  column: number
  message: string
  rule?: string
}

/** The outcome of a lint, typecheck or format run. */
export interface ValidationResult {
  type: ValidationType
  passed: boolean
  errors: ValidationError[]
}

/** Data of a `validation` event. */
export interface ValidationEvent {
  validation: ValidationResult
  timestamp: string
}

/** Data of a `git` event. */
export interface GitEvent {
  type: GitEventType
  message: string
  timestamp: string
}

/** The channels of the Cluso server and the data of their events. */
export interface SeedChannels {
  files: FileChangeEvent
  diagnostics: DiagnosticsUpdateEvent
  'ai-response': AIChunkEvent
  search: SearchProgressEvent
  validation: ValidationEvent
  git: GitEvent
}

/**
 * The data of channel `C`: from the app's own map `M` first, then the seed channels, else
 * `unknown`.
 */
export type ChannelData<M, C extends string> = C extends keyof M
  ? M[C]
  : C extends keyof SeedChannels
    ? SeedChannels[C]
    : unknown

/** An event as it came from the server (the handler's second argument). */
export interface ChannelEvent<T = unknown> {
  type: 'event'
  channel: string
  data: T
  /** When the server broadcast it (ISO 8601). */
  timestamp: string
  /** Position in the channel's stream, when the server keeps history. */
  seq?: number
  /** The channel stream's identity, when the server keeps history. */
  epoch?: string
}

/** `'connecting'` until the first open; `'reconnecting'` between connections; `'closed'` after `close()`. */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

/** What the `'subscribed'` listeners get each time the server confirms a subscription. */
export interface SubscribedInfo {
  channel: string
  /**
   * Present when the client asked to resume from its last event: `true` when the server
   * replayed everything missed (the events follow), `false` when it could not — the app
   * should reload its state for this channel.
   */
  recovered?: boolean
}

/**
 * Errors the client rejects with or reports on `'error'`. Codes: `TIMEOUT` (no answer in
 * time, connected or not), `DISCONNECTED` (the connection dropped while the request was
 * pending: the server may or may not have run it), `CLOSED` (`close()` was called), the
 * server's codes (`HANDLER_ERROR`, `NO_HANDLER`, `BUSY`, `FORBIDDEN`, `INVALID_CHANNEL`, …),
 * `SERVER_ERROR` (an error answer without a code), `BAD_MESSAGE` (the server sent something
 * the client cannot use; it was ignored). Errors thrown by the app's own handlers and
 * listeners are reported on `'error'` as they were thrown.
 */
export interface ClientError extends Error {
  code: string
}

/** The listeners of `client.on()`. */
export interface ClientEvents {
  state: ClientState
  subscribed: SubscribedInfo
  error: ClientError
}

/** A WebSocket constructor: `globalThis.WebSocket` (browsers, Node >= 22) or the `ws` package. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => unknown

export interface ClientOptions {
  /** @default globalThis.WebSocket (on Node 20, pass the `ws` package's `WebSocket`) */
  WebSocket?: WebSocketConstructor
  /** Offered as the subprotocol `cluso-token.<token>` next to `cluso`. */
  token?: string
  /**
   * The n-th reconnect waits a delay drawn uniformly between the minimum and
   * `min(maxReconnectDelayMs, minReconnectDelayMs * 2^n)` (full jitter); n counts from 1
   * again after a connection that stayed open for `maxReconnectDelayMs`.
   * @default 500
   */
  minReconnectDelayMs?: number
  /** @default 20000 */
  maxReconnectDelayMs?: number
  /** Sends `{"type":"ping"}` after this long without traffic; `0` disables. @default 25000 */
  pingIntervalMs?: number
  /**
   * A link that stays silent this long after a ping, or a connect attempt that does not open
   * within it, is dropped and reconnected.
   * @default 10000
   */
  pongTimeoutMs?: number
  /** Default of `request()`'s `timeoutMs`. @default 30000 */
  requestTimeoutMs?: number
}

export interface RequestOptions {
  /** Rejects with code `TIMEOUT` after this long, waiting for a connection included. */
  timeoutMs?: number
}

/** Channel names to offer in completions: the app's, the seed's, any string. */
type ChannelName<M> = Extract<keyof M, string> | keyof SeedChannels | (string & {})

export interface ClusoClient<M extends object = {}> {
  readonly state: ClientState
  /**
   * Calls `handler` with each event of `channel` until the returned function is called. The
   * subscription is kept across reconnects and resumed from the last event delivered.
   */
  subscribe<C extends ChannelName<M>>(
    channel: C,
    handler: (data: ChannelData<M, C>, event: ChannelEvent<ChannelData<M, C>>) => void,
  ): () => void
  /**
   * Invokes the server handler `name`; resolves to its result. While disconnected it waits
   * for the connection, up to `timeoutMs`.
   */
  request<T = unknown>(name: string, data?: unknown, options?: RequestOptions): Promise<T>
  /** Sends to the server handler `name` without an answer; `false` (nothing sent) unless open. */
  send(name: string, data?: unknown): boolean
  on<E extends keyof ClientEvents>(event: E, listener: (value: ClientEvents[E]) => void): () => void
  /** Closes the connection for good: no reconnect; pending requests reject with `CLOSED`. */
  close(): void
}

/**
 * Opens a client to a cluso-ws server. Throws a `TypeError` or `RangeError` with code
 * `ERR_CLUSO_INVALID_OPTION` naming the option when one is invalid.
 */
export function connect<M extends object = {}>(url: string | URL, options?: ClientOptions): ClusoClient<M>
