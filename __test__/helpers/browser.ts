// Headless Chromium for the browser specs: Debian's /usr/bin/chromium (which .ci/run installs
// with apt-get) driven by playwright-core, with nothing of its own reaching the network.
import { existsSync } from 'node:fs'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll } from 'vitest'

export const CHROMIUM = '/usr/bin/chromium'

async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (as .ci/run should)`)
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  })
}

/** Launches Chromium before the spec file's tests and closes it after them. */
export function useChromium(): { newPage: () => Promise<Page> } {
  let browser: Browser | undefined
  beforeAll(async () => {
    browser = await launchChromium()
  }, 60_000)
  afterAll(async () => {
    await browser?.close()
  })
  return {
    newPage: () => {
      if (!browser) throw new Error('Chromium did not start')
      return browser.newPage()
    },
  }
}
