// SPEC A.1 "JSON fidelity": broadcast and send serialise data with exactly
// JSON.stringify's semantics, byte for byte, apart from the envelope timestamp.
import { afterEach, describe, expect, it } from 'vitest'
import {
  asWs,
  envelopeTimestamp,
  expectedEnvelope,
  lastSent,
  mockSocket,
  newManager,
  shutdownAll,
  type MockSocket,
} from './helpers.js'
import type { WebSocketManager } from '../index.js'

afterEach(() => {
  shutdownAll()
})

class Point {
  constructor(
    public x: number,
    public y: number,
  ) {}
  get sum(): number {
    return this.x + this.y
  }
}

function withHidden(): object {
  const o: Record<string | symbol, unknown> = { visible: 1 }
  Object.defineProperty(o, 'hidden', { value: 2, enumerable: false })
  o[Symbol('s')] = 3
  return o
}

function sparse(): unknown[] {
  const a: unknown[] = [1]
  a[3] = 4
  return a
}

function arrayWithProps(): unknown[] {
  const a: unknown[] & { extra?: number } = [1, 2]
  a.extra = 3
  return a
}

function nullProto(): object {
  const o = Object.create(null) as Record<string, unknown>
  o.b = 1
  o.a = 2
  return o
}

function inheriting(): object {
  const proto = { inherited: true }
  const o = Object.create(proto) as Record<string, unknown>
  o.own = 1
  return o
}

/** Records the key it was called with, and returns it: proves toJSON(key) gets 'data' / '' / index. */
function keyEcho(): { toJSON(key: string): string } {
  return {
    toJSON(key: string) {
      return `key:${key}`
    },
  }
}

const LONE_HIGH = '\ud800'
const LONE_LOW = '\udfff'

const cases: Array<[string, () => unknown]> = [
  ['a plain object', () => ({ a: 1, b: 'two', c: null, d: true, e: false })],
  ['an object with undefined, function and symbol members', () => ({ a: undefined, b: () => 1, c: Symbol('x'), d: 1 })],
  ['NaN and ±Infinity', () => ({ nan: NaN, inf: Infinity, ninf: -Infinity, arr: [NaN, Infinity] })],
  ['-0', () => ({ z: -0, arr: [-0] })],
  [
    'number formatting edge cases',
    () => [1e21, 1e-7, 123456789012345680000, 0.1 + 0.2, 5e-324, Number.MAX_VALUE, -1e-7, 1.5e300, 2 ** 53 + 2, 100, 1e20],
  ],
  ['a Date', () => ({ when: new Date(Date.UTC(2024, 11, 9, 15, 30, 45, 123)) })],
  ['an invalid Date', () => ({ when: new Date(NaN) })],
  ['a Date as data itself', () => new Date(Date.UTC(2000, 0, 1))],
  ['toJSON(key) on data itself (key "data")', () => keyEcho()],
  ['toJSON(key) nested in objects and arrays', () => ({ inner: keyEcho(), list: [keyEcho(), keyEcho()] })],
  ['toJSON returning undefined', () => ({ a: { toJSON: () => undefined }, b: [{ toJSON: () => undefined }] })],
  ['toJSON returning an object with its own toJSON-free nested values', () => ({ a: { toJSON: () => ({ n: NaN, u: undefined }) } })],
  ['a non-function toJSON property', () => ({ toJSON: 5, x: 1 })],
  ['a Buffer', () => ({ buf: Buffer.from([0, 1, 255]) })],
  ['a Uint8Array', () => ({ bytes: new Uint8Array([1, 2, 3]) })],
  ['a Map and a Set', () => ({ m: new Map([['a', 1]]), s: new Set([1, 2]) })],
  ['an Error and a RegExp', () => ({ e: new Error('x'), r: /ab+c/g })],
  ['boxed primitives', () => ({ n: new Number(3), s: new String('str'), b: new Boolean(false), arr: [new Number(-0)] })],
  ['unicode text', () => ({ t: 'héllo wörld — 日本語 🎉 \u2028\u2029 \u007f' })],
  ['control characters and escapes', () => ({ t: '\u0000\u0001\b\f\n\r\t\u001f"\\/' })],
  ['lone surrogates', () => ({ hi: LONE_HIGH, lo: LONE_LOW, mixed: `a${LONE_LOW}${LONE_HIGH}b`, pair: '\ud83d\ude00' })],
  ['unicode and escapes in keys', () => ({ 'ké"y\n': 1, [LONE_HIGH]: 2, '': 3 })],
  ['nested arrays with undefined, functions and symbols', () => [[undefined, [() => 1, Symbol('s')]], [[[]]], {}]],
  ['a sparse array', () => sparse()],
  ['an array with extra properties', () => arrayWithProps()],
  ['integer-like keys (ordered first, ascending)', () => ({ b: 1, 2: 'two', a: 2, 1: 'one', '-1': 'neg', '01': 'lead' })],
  ['a class instance (own enumerable fields only)', () => new Point(1, 2)],
  ['non-enumerable and symbol-keyed members', () => withHidden()],
  ['a null-prototype object', () => nullProto()],
  ['inherited properties (ignored)', () => inheriting()],
  ['deep nesting', () => JSON.parse('['.repeat(200) + ']'.repeat(200)) as unknown],
  ['a long string', () => 'x'.repeat(100_000)],
  ['data undefined (key absent)', () => undefined],
  ['data a function (key absent)', () => () => 1],
  ['data a symbol (key absent)', () => Symbol('top')],
  ['data null', () => null],
  ['data a string', () => 'just a string'],
  ['data a number', () => 42.5],
  ['data NaN', () => NaN],
  ['data a boolean', () => false],
  ['data an empty array', () => []],
  ['a Proxy over an object', () => new Proxy({ a: 1, b: [2] }, {})],
  ['a getter', () => ({ get computed() { return 'yes' } })],
]

function setup(): { m: WebSocketManager; ws: MockSocket } {
  const m = newManager({ pingIntervalMs: 0 })
  const ws = mockSocket()
  m.addConnection(asWs(ws), 'a')
  m.subscribe('a', 'ch')
  return { m, ws }
}

describe('WebSocketManager JSON fidelity', () => {
  describe('#broadcast', () => {
    it.each(cases)('serialises %s exactly as JSON.stringify of the whole envelope', (_name, make) => {
      const { m, ws } = setup()
      m.broadcast('ch', make())
      const raw = lastSent(ws)
      expect(raw).toBe(expectedEnvelope('ch', make(), envelopeTimestamp(raw)))
    })

    it('omits the data key when data is undefined', () => {
      const { m, ws } = setup()
      m.broadcast('ch', undefined)
      const raw = lastSent(ws)
      expect(raw).toBe(`{"type":"event","channel":"ch","timestamp":"${envelopeTimestamp(raw)}"}`)
    })

    it('writes a channel name with a lone surrogate as JSON.stringify does (the registry keys it as U+FFFD, README)', () => {
      const m = newManager({ pingIntervalMs: 0 })
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'ch\ud800')
      m.broadcast('ch\ud800', { s: 'data keeps \ud800' })
      const raw = lastSent(ws)
      expect(raw).toBe(expectedEnvelope('ch\ud800', { s: 'data keeps \ud800' }, envelopeTimestamp(raw)))
      expect(m.getChannels('a')).toEqual(['ch\ufffd'])
    })

    it('passes "data" as the key to a top-level toJSON', () => {
      const { m, ws } = setup()
      const keys: string[] = []
      m.broadcast('ch', {
        toJSON(key: string) {
          keys.push(key)
          return { ok: true }
        },
      })
      expect(keys).toEqual(['data'])
      const raw = lastSent(ws)
      expect(raw).toBe(`{"type":"event","channel":"ch","data":{"ok":true},"timestamp":"${envelopeTimestamp(raw)}"}`)
    })

    it('calls toJSON once per broadcast, not once per subscriber', () => {
      const m = newManager({ pingIntervalMs: 0 })
      for (const id of ['a', 'b', 'c']) {
        m.addConnection(asWs(mockSocket()), id)
        m.subscribe(id, 'ch')
      }
      let calls = 0
      m.broadcast('ch', {
        toJSON() {
          calls++
          return 1
        },
      })
      expect(calls).toBe(1)
    })

    it('throws a TypeError for a cycle, and sends nothing', () => {
      const { m, ws } = setup()
      const a: Record<string, unknown> = { name: 'a' }
      a.list = [{ back: a }]
      expect(() => m.broadcast('ch', a)).toThrow(TypeError)
      expect(ws.send).not.toHaveBeenCalled()
    })

    it('throws a TypeError for a BigInt, and sends nothing', () => {
      const { m, ws } = setup()
      expect(() => m.broadcast('ch', { n: 10n })).toThrow(TypeError)
      expect(() => m.broadcast('ch', 10n)).toThrow(TypeError)
      expect(ws.send).not.toHaveBeenCalled()
    })

    it('rethrows the error a toJSON throws', () => {
      const { m, ws } = setup()
      class Custom extends Error {}
      const boom = new Custom('from toJSON')
      let thrown: unknown
      try {
        m.broadcast('ch', {
          toJSON() {
            throw boom
          },
        })
      } catch (err) {
        thrown = err
      }
      expect(thrown).toBe(boom)
      expect(ws.send).not.toHaveBeenCalled()
    })

    it('keeps working after a rejected value', () => {
      const { m, ws } = setup()
      expect(() => m.broadcast('ch', { n: 1n })).toThrow(TypeError)
      m.broadcast('ch', { ok: 1 })
      const raw = lastSent(ws)
      expect(raw).toBe(expectedEnvelope('ch', { ok: 1 }, envelopeTimestamp(raw)))
    })
  })

  describe('#send', () => {
    // Top-level undefined / function / symbol are left out: JSON.stringify returns undefined for
    // them and the original then passed undefined to ws.send; there is no byte-level expectation.
    const sendable = cases.filter(([, make]) => {
      const v = make()
      return JSON.stringify(v) !== undefined
    })

    it.each(sendable)('sends %s exactly as JSON.stringify(data)', (_name, make) => {
      const { m, ws } = setup()
      m.send('a', make())
      expect(lastSent(ws)).toBe(JSON.stringify(make()))
    })

    it('passes "" as the key to a top-level toJSON', () => {
      const { m, ws } = setup()
      m.send('a', keyEcho())
      expect(lastSent(ws)).toBe('"key:"')
    })

    it('throws a TypeError for a cycle or a BigInt', () => {
      const { m, ws } = setup()
      const a: Record<string, unknown> = {}
      a.a = a
      expect(() => m.send('a', a)).toThrow(TypeError)
      expect(() => m.send('a', { n: 1n })).toThrow(TypeError)
      expect(ws.send).not.toHaveBeenCalled()
    })
  })
})
