// `npm run package`: writes into dist/ what a release publishes, as tarballs —
//  - the root package: JavaScript and types only (never a .node), with `optionalDependencies`
//    on every target's platform package at exactly this version (what `napi pre-publish`
//    writes into package.json at publish time; not committed, so `npm ci` keeps working
//    before those packages exist on the registry);
//  - the platform package (npm/<platform>/) of every binary `npm run build` left here.
import { execFileSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readNapiConfig } from '@napi-rs/cli'

const root = join(import.meta.dirname, '..')
const dist = join(root, 'dist')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const { targets, binaryName } = await readNapiConfig(join(root, 'package.json'))
const fail = (msg) => {
  console.error(`package: ${msg}`)
  process.exit(1)
}

rmSync(dist, { recursive: true, force: true })
mkdirSync(dist)
const pack = (dir) => {
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dist], { cwd: dir, encoding: 'utf8' })
  const [{ filename, files }] = JSON.parse(out)
  return { filename, paths: files.map((f) => f.path) }
}

// Root: stage the `files` and a package.json with the optionalDependencies, pack the stage.
const stage = mkdtempSync(join(tmpdir(), 'cluso-ws-root-'))
let rootTarball
try {
  for (const entry of pkg.files) if (existsSync(join(root, entry))) cpSync(join(root, entry), join(stage, entry), { recursive: true })
  const optionalDependencies = Object.fromEntries(targets.map((t) => [`${pkg.name}-${t.platformArchABI}`, pkg.version]))
  writeFileSync(join(stage, 'package.json'), JSON.stringify({ ...pkg, optionalDependencies }, null, 2) + '\n')
  rootTarball = pack(stage)
} finally {
  rmSync(stage, { recursive: true, force: true })
}
const stray = rootTarball.paths.filter((p) => p.endsWith('.node'))
if (stray.length) fail(`the root tarball must not carry a binary: ${stray.join(', ')}`)
const packed = [rootTarball.filename]

// Platforms: every binary built here goes into its npm/<platform>/ package.
for (const { platformArchABI } of targets) {
  const binary = `${binaryName}.${platformArchABI}.node`
  if (!existsSync(join(root, binary))) continue
  const dir = join(root, 'npm', platformArchABI)
  copyFileSync(join(root, binary), join(dir, binary))
  const { filename, paths } = pack(dir)
  if (!paths.includes(binary)) fail(`${filename} does not carry ${binary}`)
  packed.push(filename)
}
if (packed.length === 1) fail(`no ${binaryName}.<platform>.node built here for any napi target: run \`npm run build\``)

for (const name of packed) console.log(`${name}\t${statSync(join(dist, name)).size} bytes`)
