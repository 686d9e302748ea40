// SPEC A.4: index.d.ts exports every type of the original module, and the original app.ts
// wiring plus the SEED.md examples type-check in strict mode with only the import changed.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TSC = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url))

function tsc(project: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSC, '--noEmit', '--pretty', 'false', '-p', project], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
  })
}

describe('index.d.ts', () => {
  it('type-checks the original app wiring, the SEED examples and the exact unions (strict)', async () => {
    const { code, output } = await tsc('__test__/fixtures/tsconfig.json')
    expect(output).toBe('')
    expect(code).toBe(0)
  }, 60_000)
})
