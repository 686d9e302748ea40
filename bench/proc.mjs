// Child processes speaking JSON lines, and /proc CPU readings: shared by the
// benchmark runners (bench/run.mjs, bench/cluster/run.mjs).
import { spawn, execFileSync } from 'node:child_process'
import { createInterface } from 'node:readline'
import fs from 'node:fs'

// ---------- child process bookkeeping ----------
export const children = new Set()
export function killAll() {
  for (const c of children) { try { c.kill('SIGKILL') } catch {} }
  children.clear()
}
process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { killAll(); process.exit(130) })
process.on('uncaughtException', (e) => { console.error(e); killAll(); process.exit(1) })
process.on('unhandledRejection', (e) => { console.error(e); killAll(); process.exit(1) })

export const hasTaskset = (() => { try { execFileSync('taskset', ['-c', '0', 'true']); return true } catch { return false } })()

/** A child speaking JSON lines on stdout; stdin for commands. */
export class Proc {
  constructor(label, cmd, args, { env, cpu, nice = 0 } = {}) {
    let full = hasTaskset && cpu !== undefined ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, args]
    if (cpu !== undefined && nice) full = ['nice', ['-n', String(nice), full[0], ...full[1]]]
    this.label = label
    this.child = spawn(full[0], full[1], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    children.add(this.child)
    this.lines = []
    this.waiters = []
    this.stderr = ''
    this.exited = new Promise((r) => this.child.on('exit', (code, sig) => {
      children.delete(this.child)
      this.exitCode = code ?? sig
      for (const w of this.waiters.splice(0)) w.reject(new Error(`${label} exited (${code ?? sig}): ${this.stderr.slice(-2000)}`))
      r()
    }))
    this.child.stdin.on('error', () => {})
    this.child.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-20000) })
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      let v
      try { v = JSON.parse(line) } catch { return }
      const i = this.waiters.findIndex((w) => w.pred(v))
      if (i >= 0) { const [w] = this.waiters.splice(i, 1); clearTimeout(w.timer); w.resolve(v) } else this.lines.push(v)
    })
  }
  get pid() { return this.child.pid }
  /** Resolves with the first JSON line (queued or future) matching pred. */
  wait(pred, timeoutMs, what) {
    const i = this.lines.findIndex(pred)
    if (i >= 0) return Promise.resolve(this.lines.splice(i, 1)[0])
    if (this.exitCode !== undefined) return Promise.reject(new Error(`${this.label} has exited: ${this.stderr.slice(-2000)}`))
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject }
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        reject(new Error(`${this.label}: timeout after ${timeoutMs} ms waiting for ${what}; stderr: ${this.stderr.slice(-2000)}`))
      }, timeoutMs)
      this.waiters.push(w)
    })
  }
  send(obj) { this.child.stdin.write(JSON.stringify(obj) + '\n') }
  async call(obj, timeoutMs) {
    const id = `${obj.cmd}-${Math.random().toString(36).slice(2, 8)}`
    this.send({ ...obj, id })
    return this.wait((v) => v.id === id, timeoutMs, obj.cmd)
  }
  async stop(graceMs = 3000) {
    if (this.exitCode !== undefined) return
    try { this.child.stdin.end() } catch {}
    const t = setTimeout(() => { try { this.child.kill('SIGKILL') } catch {} }, graceMs)
    await this.exited
    clearTimeout(t)
  }
}

// ---------- /proc helpers ----------
export const TICK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK']).toString()) } catch { return 100 } })()
export function cpuMs(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICK // utime + stime (fields 14, 15)
  } catch { return NaN }
}
/** Busy CPU time of the whole machine (all cores), ms. */
export function machineBusyMs() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal (guest is inside user)
    return ((f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] || 0)) * 1000) / TICK
  } catch { return NaN }
}
/** Resident set size of a process from /proc/<pid>/status, KiB (NaN when gone). */
export function rssKb(pid) {
  try { return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) } catch { return NaN }
}
/** Peak RSS (VmHWM) of a process, KiB (NaN when gone). */
export function hwmKb(pid) {
  try { return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) } catch { return NaN }
}
/** Resets a process's VmHWM to its current RSS (`5` > clear_refs); false when not allowed. */
export function resetHwm(pid) {
  try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
