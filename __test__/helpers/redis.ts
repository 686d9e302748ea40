// A redis-server of a test's own (Debian's package; .ci/run installs it): a free loopback
// port, no persistence, stopped by cleanUp. Commands go through redis-cli.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
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

export interface TestRedis {
  readonly port: number
  readonly url: string
  cli(...args: string[]): Promise<string>
  kill(): Promise<void>
  restart(): Promise<void>
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort()
  let child: ChildProcess | null = null
  const cli = async (...args: string[]) =>
    (await run('redis-cli', ['-p', String(port), ...args], { timeout: 10_000 })).stdout.trim()
  const redis: TestRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
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
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'],
        { stdio: 'ignore' },
      )
      await waitFor('redis-server answers PING', async () => (await cli('PING').catch(() => '')) === 'PONG')
    },
  }
  await redis.restart()
  onCleanUp(() => redis.kill())
  return redis
}
