// A redis-server of a test's own (Debian's package; .ci/run installs it): a free loopback
// port, no persistence, stopped by cleanUp. Commands go through redis-cli.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { onCleanUp, waitFor } from './native.js'

const run = promisify(execFile)

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export interface RedisOptions {
  /** TLS only (rediss://), with a certificate for localhost from a CA made for the test. */
  tls?: boolean
  /** Turns the default user off and adds this one (redis://user:pass@…). */
  user?: { name: string; pass: string }
}

export interface TestRedis {
  readonly port: number
  readonly url: string
  /** The CA that signed the server's certificate (with `tls`). */
  readonly caFile?: string
  cli(...args: string[]): Promise<string>
  kill(): Promise<void>
  restart(): Promise<void>
}

/** A CA and a certificate for localhost / 127.0.0.1 signed by it, in a fresh directory. */
async function certificates(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'cluso-redis-tls-'))
  onCleanUp(() => rmSync(dir, { recursive: true, force: true }))
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir })
  await openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=cluso-test-ca')
  await openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  await openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'ext')
  return dir
}

export async function startRedis(options: RedisOptions = {}): Promise<TestRedis> {
  const port = await freePort()
  let child: ChildProcess | null = null
  const dir = options.tls ? await certificates() : undefined
  const serverArgs = dir
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', join(dir, 'server.pem'),
       '--tls-key-file', join(dir, 'server.key'), '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no']
    : ['--port', String(port)]
  const cliArgs = dir ? ['--tls', '--cacert', join(dir, 'ca.pem'), '-h', 'localhost'] : []
  if (options.user) {
    const { name, pass } = options.user
    serverArgs.push('--user', 'default', 'off', '--user', name, 'on', `>${pass}`, '~*', '&*', '+@all')
    cliArgs.push('--user', name, '--pass', pass, '--no-auth-warning')
  }
  const cli = async (...args: string[]) =>
    (await run('redis-cli', ['-p', String(port), ...cliArgs, ...args], { timeout: 10_000 })).stdout.trim()
  const auth = options.user ? `${options.user.name}:${options.user.pass}@` : ''
  const redis: TestRedis = {
    port,
    url: dir ? `rediss://${auth}localhost:${port}` : `redis://${auth}127.0.0.1:${port}`,
    caFile: dir ? join(dir, 'ca.pem') : undefined,
    cli,
    async kill() {
      if (!child) return
      const exited = new Promise((resolve) => child?.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
      child = null
    },
    async restart() {
      child = spawn(
        'redis-server',
        [...serverArgs, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'],
        { stdio: 'ignore' },
      )
      await waitFor('redis-server answers PING', async () => (await cli('PING').catch(() => '')) === 'PONG')
    },
  }
  await redis.restart()
  onCleanUp(() => redis.kill())
  return redis
}
