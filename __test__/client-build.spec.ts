// cluso-ws/client as shipped: the size budget (min+gzip ≤ 4096 B, printed), index.cjs derived
// from index.mjs and current, the types (strict tsc on a fixture), and the client on the
// global WebSocket of Node 22 and 24 (`npx -p node@N`, the runtimes the issue names).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TSC = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url))

function run(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
  })
}

describe('cluso-ws/client build', () => {
  it('is at most 4096 bytes minified and gzipped, and index.cjs is current', async () => {
    const { code, output } = await run(process.execPath, ['scripts/build-client.mjs', '--check'])
    console.log(output.trim())
    expect(output).not.toMatch(/stale|over its/)
    expect(code).toBe(0)
    const gzipped = Number(/(\d+) B min\+gzip/.exec(output)?.[1])
    expect(gzipped).toBeGreaterThan(0)
    expect(gzipped).toBeLessThanOrEqual(4096)
  }, 30_000)

  it('index.d.ts types the seed channels, unknown others and an app channel map (strict tsc)', async () => {
    const { code, output } = await run(process.execPath, [
      TSC,
      '--noEmit',
      '--pretty',
      'false',
      '-p',
      '__test__/fixtures/client/tsconfig.json',
    ])
    expect(output).toBe('')
    expect(code).toBe(0)
  }, 60_000)

  it.each(['22', '24'])('runs on the global WebSocket of Node %s (ESM and CJS)', async (major) => {
    const { code, output } = await run('npx', ['-y', '-p', `node@${major}`, 'node', '__test__/fixtures/client/node-global.mjs'])
    expect(output).toMatch(new RegExp(`ok v${major}\\.\\d+\\.\\d+ global WebSocket`))
    expect(code).toBe(0)
  }, 240_000)
})
