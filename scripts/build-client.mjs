// npm run build:client — derives client/index.cjs from client/index.mjs (the only source) and
// prints the client's size minified (esbuild) and gzipped (level 9); fails above the 4 KB
// budget of issue 10. `--check` writes nothing and fails when index.cjs is stale (tests, CI).
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { transform } from 'esbuild'

export const BUDGET_BYTES = 4096
const ESM = fileURLToPath(new URL('../client/index.mjs', import.meta.url))
const CJS = fileURLToPath(new URL('../client/index.cjs', import.meta.url))

/** The CommonJS twin of the ESM source: its one export rewritten, nothing else touched. */
export function cjsOf(source) {
  const exports = source.match(/^export\b.*$/gm) ?? []
  if (exports.length !== 1 || !exports[0].startsWith('export function connect(') || /^import\b/m.test(source)) {
    throw new Error('client/index.mjs must have no import and exactly one export: `export function connect(`')
  }
  return (
    "'use strict'\n// Generated from index.mjs by scripts/build-client.mjs (npm run build:client): do not edit.\n" +
    source.replace(/^export function connect\(/m, 'function connect(') +
    '\nexports.connect = connect\n'
  )
}

/** Bytes of the source minified by esbuild, then gzipped at level 9. */
export async function minGzipBytes(source) {
  const { code } = await transform(source, { minify: true, format: 'esm', target: 'es2020' })
  return { minified: Buffer.byteLength(code), gzipped: gzipSync(code, { level: 9 }).length }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const source = readFileSync(ESM, 'utf8')
  const cjs = cjsOf(source)
  if (process.argv.includes('--check')) {
    if (readFileSync(CJS, 'utf8') !== cjs) {
      console.error('client/index.cjs is stale: run npm run build:client and commit it')
      process.exitCode = 1
    }
  } else {
    writeFileSync(CJS, cjs)
  }
  const { minified, gzipped } = await minGzipBytes(source)
  console.log(`cluso-ws/client: ${minified} B minified, ${gzipped} B min+gzip (budget ${BUDGET_BYTES} B)`)
  if (gzipped > BUDGET_BYTES) {
    console.error(`cluso-ws/client is over its ${BUDGET_BYTES} B min+gzip budget`)
    process.exitCode = 1
  }
}
