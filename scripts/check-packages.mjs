// The platform packages are consistent with package.json (CI runs this):
//  - npm/ is exactly what `napi create-npm-dirs` generates (never edit it by hand;
//    `npm version` keeps it in step through `napi version`);
//  - the napi loader native.js requires each of those packages, at this version.
// With --publish (prepublishOnly), also refuses a root whose platform packages lack their
// binary: gather every target's .node first (`napi artifacts` in the release pipeline).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { NapiCli, readNapiConfig } from '@napi-rs/cli'

const root = join(import.meta.dirname, '..')
const { targets, binaryName, packageName, packageJson } = await readNapiConfig(join(root, 'package.json'))
const loader = readFileSync(join(root, 'native.js'), 'utf8')
const errors = []

// napi writes only inside the project: generate under target/ (ignored by git).
mkdirSync(join(root, 'target'), { recursive: true })
const generated = mkdtempSync(join(root, 'target', 'check-npm-'))
try {
  await new NapiCli().createNpmDirs({ cwd: root, npmDir: generated })
  for (const { platformArchABI: abi } of targets) {
    for (const file of readdirSync(join(generated, abi))) {
      const committed = join(root, 'npm', abi, file)
      if (!existsSync(committed) || readFileSync(committed, 'utf8') !== readFileSync(join(generated, abi, file), 'utf8'))
        errors.push(`npm/${abi}/${file} differs from what \`napi create-npm-dirs\` generates: run it and commit npm/`)
    }
    const name = `${packageName}-${abi}`
    if (!loader.includes(`require('${name}')`)) errors.push(`native.js never requires the platform package ${name}`)
    if (process.argv.includes('--publish') && !existsSync(join(root, 'npm', abi, `${binaryName}.${abi}.node`)))
      errors.push(`npm/${abi}/ has no ${binaryName}.${abi}.node: ${name}@${packageJson.version} is not built`)
  }
} finally {
  rmSync(generated, { recursive: true, force: true })
}
if (!loader.includes(`bindingPackageVersion !== '${packageJson.version}'`))
  errors.push(`native.js was generated for another version than ${packageJson.version}: run \`npm run build\``)
const extra = readdirSync(join(root, 'npm')).filter((d) => !targets.some((t) => t.platformArchABI === d))
if (extra.length) errors.push(`npm/ holds packages of no napi target: ${extra.join(', ')}`)

if (errors.length) {
  for (const e of errors) console.error(`check-packages: ${e}`)
  process.exit(1)
}
console.log(`check-packages: npm/ matches the ${targets.length} napi targets at ${packageJson.version}`)
