// Scenario F of bench/run.mjs (issue 12): a producer that paces at the
// slow-consumer cap. The server adapter (servers/common.mjs, `pace`)
// broadcasts back to back and pauses 1 ms only while its largest
// per-connection backlog is >= capBytes (1 MiB), ignoring every other signal;
// it times each broadcast() call. This side adds what the server cannot see
// about itself: RSS sampled from /proc every 50 ms (also while its event loop
// is blocked inside a call), VmHWM when it can be reset, the load generator's
// count and the closes it saw, and a hard RSS limit that kills a server
// running away with the machine's memory.
import { rssKb, hwmKb, resetHwm } from './proc.mjs'

const SAMPLE_MS = 50

/**
 * Runs F on an established session. Never throws: a failure (or the RSS
 * limit) is returned as `{ error }` so the session's other scenarios stay.
 * `phase` is run.mjs's measured phase.
 */
export async function paceScenario({ server, lg, cfg, phase, log }) {
  let sampler
  let overLimitKb = 0
  try {
    const closed0 = (await lg.call({ cmd: 'status' }, 10000)).closed ?? 0
    const live = lg.connections - closed0
    await server.call({ cmd: 'mem' }, 20000) // global.gc(): the same starting point for every server
    const rss0 = rssKb(server.pid)
    const hwmReset = resetHwm(server.pid)
    const limitKb = cfg.rssLimitMb * 1024
    let peakKb = rss0, samples = 0
    sampler = setInterval(() => {
      const r = rssKb(server.pid)
      if (!Number.isFinite(r)) return
      samples++
      if (r > peakKb) peakKb = r
      if (r > limitKb && !overLimitKb) {
        overLimitKb = r
        try { server.child.kill('SIGKILL') } catch { /* already gone */ }
      }
    }, SAMPLE_MS)
    const cmd = { cmd: 'pace', durationMs: cfg.paceMs, capBytes: cfg.paceBytes }
    // settle: up to 60 s for stragglers, ended by 1 s without any message. A server that
    // queued more than it wrote in the window is still writing; the ratio measures loss,
    // and the drain time says how late the last messages were.
    const ph = await phase(server, lg, 'F', cmd, cfg.paceMs + 240000, { conns: live, quietMs: 1000, maxDrainMs: 60000 })
    clearInterval(sampler)
    sampler = undefined
    const rssSettled = rssKb(server.pid)
    const hwm = hwmReset ? hwmKb(server.pid) : NaN
    peakKb = Math.max(peakKb, rssSettled, ph.server.rssEnd / 1024, Number.isFinite(hwm) ? hwm : 0)
    const closedAfter = ph.loadgen.closedDuringRun ?? closed0
    const st = ph.server.stats
    const r = {
      ...ph,
      subscribers: live,
      deliveredRatio: ph.expected > 0 ? ph.loadgen.delivered / ph.expected : null,
      closesSeen: closedAfter - closed0,
      slowConsumerDisconnects: st ? st.after.slowConsumerDisconnects - st.before.slowConsumerDisconnects : null,
      rssBeforeMB: rss0 / 1024,
      rssPeakMB: peakKb / 1024,
      rssEndMB: ph.server.rssEnd / 2 ** 20,
      rssSettledMB: rssSettled / 1024,
      rssGrowthPeakMB: (peakKb - rss0) / 1024,
      rssGrowthEndMB: ph.server.rssEnd / 2 ** 20 - rss0 / 1024,
      rssSamples: samples,
      hwmReset,
    }
    log(`F: ${r.server.broadcasts} broadcasts, longest call ${r.server.longestCallMs.toFixed(2)} ms (p99 ${(r.server.callP99Us / 1000).toFixed(3)} ms, `
      + `longest wait for the event loop ${r.server.longestStallMs.toFixed(1)} ms), `
      + `RSS +${r.rssGrowthPeakMB.toFixed(1)} MB peak, delivered ${(r.deliveredRatio * 100).toFixed(2)} %, `
      + `${r.serverCpuUsPerMsg?.toFixed(3)} µs CPU/msg, ${r.closesSeen} closes seen, other load ${r.foreignCores.toFixed(2)} cores`)
    return r
  } catch (e) {
    const error = overLimitKb
      ? `server RSS reached ${(overLimitKb / 1024).toFixed(0)} MB (over --rss-limit-mb ${cfg.rssLimitMb}): killed`
      : String(e?.message ?? e).split('\n')[0].slice(0, 500)
    log(`F: ERROR ${error}`)
    return { error }
  } finally {
    if (sampler) clearInterval(sampler)
  }
}
