// Headless Chromium for the tests of what people look at: Debian's `chromium`
// (scripts/test.sh installs it) driven by playwright-core. Every page records its
// console errors and uncaught exceptions, and tests save screenshots under
// target/screenshots/ so a person can look at what the browser saw.

import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
export const SCREENSHOTS = join(REPOSITORY_ROOT, 'target', 'screenshots')
export const CHROMIUM = process.env.COEDIT_CHROMIUM || '/usr/bin/chromium'

// Without the background-networking flags Chromium keeps trying to reach Google's
// hosts, which a closed test network refuses; the sandbox needs a non-root user.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]

/**
 * Why the browser tests cannot run here, or false when they can. Under CI they
 * always run: a missing browser there is a failure, never a skip.
 */
export function browserMissing () {
  if (existsSync(CHROMIUM) || process.env.CI === 'true') return false
  return `no Chromium at ${CHROMIUM} (scripts/test.sh installs Debian's chromium; COEDIT_CHROMIUM picks another)`
}

/** A headless Chromium with a fresh profile of its own. */
export async function launchBrowser () {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}`)
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
}

/**
 * Opens `url` in a new browser context (its own storage) and collects what went
 * wrong on the page: console errors and uncaught exceptions, in `problems`.
 */
export async function openPage (browser, url, { colorScheme = 'light', width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme })
  const page = await context.newPage()
  const problems = []
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`)
  })
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`))
  await page.goto(url)
  return { context, page, problems }
}

/** Saves a PNG of the whole page as target/screenshots/NAME.png; returns its path. */
export async function screenshot (page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true })
  const path = join(SCREENSHOTS, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  return path
}
