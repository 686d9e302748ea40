// lib/fanout.js on its own: the channel → sockets index the addon keeps in step with its
// registry, the per-broadcast loop, and the slow-consumer cut (maxBufferedBytesPerConnection).
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it, vi } from 'vitest'

const require = createRequire(import.meta.url)
const { createJsFanOut, CLOSE_SLOW_CONSUMER, CUT_GRACE_MS } = require('../lib/fanout.js') as {
  createJsFanOut: (
    onSendError: (id: string | undefined, error: unknown) => void,
    options?: { maxBufferedBytes?: number; hooks?: Hooks },
  ) => FanOut
  CLOSE_SLOW_CONSUMER: number
  CUT_GRACE_MS: number
}

interface Hooks {
  pong(key: number): void
  close(key: number): void
  error(id: string, error: unknown): void
  message(key: number, data: unknown): void
}

interface FanOut {
  track(ws: unknown, key: number, id: string, protocol: boolean): void
  envelope(channel: string, data: unknown, timestamp: string): string
  add(channel: string, key: number, ws: unknown, id: string): void
  remove(channel: string, key: number): void
  forget(key: number): void
  clear(): void
  sendAll(channel: string, text: string): number | { failed: number; cut: number[] }
}

interface Sock {
  readyState: number
  bufferedAmount?: number
  sent: string[]
  send: (text: string) => void
  close: ReturnType<typeof vi.fn>
  terminate: ReturnType<typeof vi.fn>
}

/** A WebSocket-like socket; close() moves it to CLOSING (2), terminate() to CLOSED (3). */
function sock(init: Partial<Pick<Sock, 'readyState' | 'bufferedAmount'>> = {}): Sock {
  const s: Sock = {
    readyState: init.readyState ?? 1,
    sent: [],
    send(text: string) {
      s.sent.push(text)
    },
    close: vi.fn(() => {
      s.readyState = 2
    }),
    terminate: vi.fn(() => {
      s.readyState = 3
    }),
  }
  if ('bufferedAmount' in init) s.bufferedAmount = init.bufferedAmount
  return s
}

afterEach(() => {
  vi.useRealTimers()
})

describe('lib/fanout.js: track()', () => {
  function recorder() {
    const calls: unknown[][] = []
    const hooks: Hooks = {
      pong: (key) => calls.push(['pong', key]),
      close: (key) => calls.push(['close', key]),
      error: (id, error) => calls.push(['error', id, error]),
      message: (key, data) => calls.push(['message', key, data]),
    }
    return { calls, hooks }
  }

  it("hands each socket's events to the hooks with its key (error with its id)", () => {
    const { calls, hooks } = recorder()
    const f = createJsFanOut(() => {}, { hooks })
    const a = new EventEmitter()
    const b = new EventEmitter()
    f.track(a, 1, 'a', true)
    f.track(b, 2, 'b', false)
    const boom = new Error('boom')
    a.emit('pong')
    a.emit('message', 'hi', false)
    a.emit('error', boom)
    a.emit('close', 1000, Buffer.alloc(0))
    b.emit('pong')
    b.emit('message', 'ignored')
    expect(calls).toEqual([
      ['pong', 1],
      ['message', 1, 'hi'],
      ['error', 'a', boom],
      ['close', 1],
      ['pong', 2],
    ])
    // 'message' only with protocol (handleConnection)
    expect(b.listenerCount('message')).toBe(0)
  })

  it('installs plain closures that need no `this` (a mock may call them detached)', () => {
    const { calls, hooks } = recorder()
    const f = createJsFanOut(() => {}, { hooks })
    const handlers: Record<string, (...args: unknown[]) => void> = {}
    const fire = (event: string, ...args: unknown[]) => {
      const listener = handlers[event]
      if (listener === undefined) throw new Error(`no '${event}' listener`)
      listener(...args)
    }
    f.track({ on: (event: string, fn: () => void) => (handlers[event] = fn) }, 7, 'x', true)
    fire('pong')
    fire('close')
    expect(calls).toEqual([
      ['pong', 7],
      ['close', 7],
    ])
  })

  it('lets what on() throws reach the caller', () => {
    const f = createJsFanOut(() => {}, { hooks: recorder().hooks })
    const boom = new Error('no listeners here')
    expect(() =>
      f.track(
        {
          on() {
            throw boom
          },
        },
        1,
        'a',
        false,
      ),
    ).toThrow(boom)
  })

  it("reports a tracked subscriber's send error with the id it was tracked under", () => {
    const errors: [string | undefined, unknown][] = []
    const f = createJsFanOut((id, error) => errors.push([id, error]), { hooks: recorder().hooks })
    const boom = new Error('boom')
    const ws = Object.assign(new EventEmitter(), {
      readyState: 1,
      send() {
        throw boom
      },
    })
    f.track(ws, 1, 'conn-1', false)
    f.add('files', 1, ws, 'conn-1')
    expect(f.sendAll('files', 'x')).toBe(1)
    expect(errors).toEqual([['conn-1', boom]])
  })
})

describe('lib/fanout.js: the index', () => {
  it('builds the original envelope', () => {
    const f = createJsFanOut(() => {})
    expect(f.envelope('files', { a: 1 }, 'T')).toBe('{"type":"event","channel":"files","data":{"a":1},"timestamp":"T"}')
  })

  it('sends to every subscriber of the channel and to no other', () => {
    const f = createJsFanOut(() => {})
    const a = sock()
    const b = sock()
    const c = sock()
    f.add('files', 1, a, 'a')
    f.add('files', 2, b, 'b')
    f.add('git', 3, c, 'c')
    expect(f.sendAll('files', 'x')).toBe(0)
    expect(a.sent).toEqual(['x'])
    expect(b.sent).toEqual(['x'])
    expect(c.sent).toEqual([])
    expect(f.sendAll('nobody', 'y')).toBe(0)
  })

  it('adding a socket twice to a channel sends once', () => {
    const f = createJsFanOut(() => {})
    const a = sock()
    f.add('files', 1, a, 'a')
    f.add('files', 1, a, 'a')
    f.sendAll('files', 'x')
    expect(a.sent).toEqual(['x'])
  })

  it('remove() drops one channel of a socket; forget() drops all of them; clear() everything', () => {
    const f = createJsFanOut(() => {})
    const a = sock()
    const b = sock()
    f.add('files', 1, a, 'a')
    f.add('git', 1, a, 'a')
    f.add('files', 2, b, 'b')
    f.add('git', 2, b, 'b')
    f.remove('files', 1)
    f.remove('files', 99) // unknown: ignored
    f.remove('nope', 1)
    f.sendAll('files', 'f1')
    f.sendAll('git', 'g1')
    expect(a.sent).toEqual(['g1'])
    expect(b.sent).toEqual(['f1', 'g1'])
    f.forget(2)
    f.sendAll('files', 'f2')
    f.sendAll('git', 'g2')
    expect(a.sent).toEqual(['g1', 'g2'])
    expect(b.sent).toEqual(['f1', 'g1'])
    f.clear()
    f.sendAll('git', 'g3')
    expect(a.sent).toEqual(['g1', 'g2'])
  })

  it('counts sockets that are not open as failures without calling send', () => {
    const f = createJsFanOut(() => {})
    const open = sock()
    const connecting = sock({ readyState: 0 })
    const closing = sock({ readyState: 2 })
    const closed = sock({ readyState: 3 })
    const send = vi.fn()
    for (const s of [connecting, closing, closed]) s.send = send
    f.add('files', 1, open, 'open')
    f.add('files', 2, connecting, 'connecting')
    f.add('files', 3, closing, 'closing')
    f.add('files', 4, closed, 'closed')
    expect(f.sendAll('files', 'x')).toBe(3)
    expect(send).not.toHaveBeenCalled()
    expect(open.sent).toEqual(['x'])
  })

  it('counts a send that throws and reports it with the connection id; the loop goes on', () => {
    const errors: [string | undefined, unknown][] = []
    const f = createJsFanOut((id, error) => errors.push([id, error]))
    const boom = new Error('boom')
    const bad = sock()
    bad.send = () => {
      throw boom
    }
    const good = sock()
    f.add('files', 1, bad, 'bad')
    f.add('files', 2, good, 'good')
    expect(f.sendAll('files', 'x')).toBe(2 - 1)
    expect(errors).toEqual([['bad', boom]])
    expect(good.sent).toEqual(['x'])
  })
})

describe('lib/fanout.js: the slow-consumer cut', () => {
  const CAP = 1000

  it('sends to a socket exactly at the cap and cuts one a byte over it', () => {
    const f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    const at = sock({ bufferedAmount: CAP })
    const over = sock({ bufferedAmount: CAP + 1 })
    f.add('files', 1, at, 'at')
    f.add('files', 2, over, 'over')
    expect(f.sendAll('files', 'x')).toEqual({ failed: 0, cut: [2] })
    expect(at.sent).toEqual(['x'])
    expect(at.close).not.toHaveBeenCalled()
    expect(over.sent).toEqual([])
    expect(over.close).toHaveBeenCalledTimes(1)
    expect(over.close).toHaveBeenCalledWith(CLOSE_SLOW_CONSUMER, 'slow consumer')
    expect(CLOSE_SLOW_CONSUMER).toBe(4008)
  })

  it('forgets a cut socket in every channel, so later broadcasts do not reach it', () => {
    const f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    const over = sock({ bufferedAmount: CAP + 1 })
    const other = sock({ bufferedAmount: 0 })
    f.add('files', 1, over, 'over')
    f.add('git', 1, over, 'over')
    f.add('git', 2, other, 'other')
    expect(f.sendAll('files', 'x')).toEqual({ failed: 0, cut: [1] })
    over.readyState = 1 // even if it were still open
    expect(f.sendAll('git', 'y')).toBe(0)
    expect(f.sendAll('files', 'z')).toBe(0)
    expect(over.sent).toEqual([])
    expect(over.close).toHaveBeenCalledTimes(1)
    expect(other.sent).toEqual(['y'])
  })

  it('reports failures and cuts of one broadcast together', () => {
    const f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    f.add('files', 1, sock({ bufferedAmount: CAP + 5 }), 'a')
    f.add('files', 2, sock({ readyState: 3 }), 'b')
    f.add('files', 3, sock({ bufferedAmount: 10 }), 'c')
    f.add('files', 4, sock({ bufferedAmount: CAP * 10 }), 'd')
    expect(f.sendAll('files', 'x')).toEqual({ failed: 1, cut: [1, 4] })
  })

  it('never cuts a socket without a numeric bufferedAmount (mocks), nor without a cap', () => {
    const capped = createJsFanOut(() => {}, { maxBufferedBytes: 0 })
    const mock = sock()
    capped.add('files', 1, mock, 'mock')
    expect(capped.sendAll('files', 'x')).toBe(0)
    expect(mock.sent).toEqual(['x'])

    const uncapped = createJsFanOut(() => {})
    const huge = sock({ bufferedAmount: 2 ** 40 })
    uncapped.add('files', 1, huge, 'huge')
    expect(uncapped.sendAll('files', 'x')).toBe(0)
    expect(huge.sent).toEqual(['x'])
  })

  it('terminates at once a socket whose close() throws, and reports the error', () => {
    const errors: [string | undefined, unknown][] = []
    const f = createJsFanOut((id, error) => errors.push([id, error]), { maxBufferedBytes: CAP })
    const over = sock({ bufferedAmount: CAP + 1 })
    const boom = new Error('close failed')
    over.close = vi.fn(() => {
      throw boom
    })
    f.add('files', 1, over, 'over')
    expect(f.sendAll('files', 'x')).toEqual({ failed: 0, cut: [1] })
    expect(over.terminate).toHaveBeenCalledTimes(1)
    expect(errors).toEqual([['over', boom]])
  })

  it('terminates a cut socket that is still not CLOSED after the grace time, and not before', () => {
    vi.useFakeTimers()
    const f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    const stuck = sock({ bufferedAmount: CAP + 1 })
    f.add('files', 1, stuck, 'stuck')
    f.sendAll('files', 'x')
    expect(stuck.readyState).toBe(2)
    vi.advanceTimersByTime(CUT_GRACE_MS - 1)
    expect(stuck.terminate).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    expect(stuck.terminate).toHaveBeenCalledTimes(1)
  })

  it('leaves a cut socket that closed within the grace time alone', () => {
    vi.useFakeTimers()
    const f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    const polite = sock({ bufferedAmount: CAP + 1 })
    f.add('files', 1, polite, 'polite')
    f.sendAll('files', 'x')
    polite.readyState = 3 // the close handshake finished
    vi.advanceTimersByTime(CUT_GRACE_MS * 2)
    expect(polite.terminate).not.toHaveBeenCalled()
  })

  it('sets no timer for a socket that close() closes at once', () => {
    vi.useFakeTimers()
    const f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    const quick = sock({ bufferedAmount: CAP + 1 })
    quick.close = vi.fn(() => {
      quick.readyState = 3
    })
    f.add('files', 1, quick, 'quick')
    f.sendAll('files', 'x')
    expect(vi.getTimerCount()).toBe(0)
  })

  it("reports a terminate() that throws instead of throwing from sendAll", () => {
    vi.useFakeTimers()
    const errors: unknown[] = []
    const f = createJsFanOut((_id, error) => errors.push(error), { maxBufferedBytes: CAP })
    const stuck = sock({ bufferedAmount: CAP + 1 })
    const boom = new Error('terminate failed')
    stuck.terminate = vi.fn(() => {
      throw boom
    })
    f.add('files', 1, stuck, 'stuck')
    f.sendAll('files', 'x')
    expect(() => vi.advanceTimersByTime(CUT_GRACE_MS)).not.toThrow()
    expect(errors).toEqual([boom])
  })

  it('does not keep the process alive while a cut socket closes (the timer is unref’d)', () => {
    const refTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const before = refTimers()
    const f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    const stuck = sock({ bufferedAmount: CAP + 1 })
    f.add('files', 1, stuck, 'stuck')
    f.sendAll('files', 'x')
    expect(stuck.close).toHaveBeenCalled()
    expect(refTimers()).toBe(before)
  })

  it('survives a close() that changes the index (a synchronous close event)', () => {
    let f: FanOut
    const over = sock({ bufferedAmount: CAP + 1 })
    over.close = vi.fn(() => {
      over.readyState = 3
      f.forget(1) // what the addon does on 'close'
      f.remove('files', 2)
    })
    const other = sock()
    f = createJsFanOut(() => {}, { maxBufferedBytes: CAP })
    f.add('files', 1, over, 'over')
    f.add('files', 2, other, 'other')
    expect(f.sendAll('files', 'x')).toEqual({ failed: 0, cut: [1] })
    expect(other.sent).toEqual(['x'])
    expect(f.sendAll('files', 'y')).toBe(0)
  })
})
