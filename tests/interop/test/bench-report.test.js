// `coedit bench --report FILE.html` against the real server, opened in headless
// Chromium: the page must load with no errors, fetch nothing, and draw its plots.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, test } from 'node:test'

import { Coedit, coeditBinary } from '../lib/coedit.js'
import { browserMissing, launchBrowser, openPage, screenshot, SCREENSHOTS } from '../lib/browser.js'

const run = promisify(execFile)
const skip = browserMissing()
let browser
let server

before(async () => {
  if (skip) return
  browser = await launchBrowser()
  server = await Coedit.start()
})

after(async () => {
  await browser?.close()
  await server?.cleanup()
})

/** Runs a short bench against the server, writing its HTML report; returns the path. */
async function benchReport (name, extraArgs = []) {
  const directory = join(SCREENSHOTS, '..', 'bench-report')
  mkdirSync(directory, { recursive: true })
  const path = join(directory, `${name}.html`)
  const { stdout } = await run(coeditBinary(), [
    'bench', '--url', server.wsUrl, '--rooms', '3', '--clients', '4', '--rate', '8',
    '--ramp', '500ms', '--warmup', '1s', '--duration', '4s', '--drain', '3s',
    '--report', path, '--json', ...extraArgs
  ], { timeout: 60_000 })
  return { path, report: JSON.parse(stdout) }
}

describe('bench report', { skip, timeout: 120_000 }, () => {
  test('opens in the browser with no errors, fetches nothing and shows its plots', async () => {
    const { path, report } = await benchReport('report', ['--max-p99-ms', '1000', '--min-delivery-ratio', '0.99'])
    assert.ok(report.deliveries > 0, 'the bench delivered keystrokes')

    const { page, problems, context } = await openPage(browser, 'about:blank', { height: 1000 })
    const requests = []
    page.on('request', (request) => requests.push(request.url()))
    await page.goto(pathToFileURL(path).href)
    await page.locator('h1').getByText('coedit bench').waitFor()
    assert.equal(await page.locator('.verdict h2').textContent(), 'Passed')

    // Four plots, each with a drawn line of many points.
    const plots = page.locator('svg.plot')
    assert.equal(await plots.count(), 4)
    for (let index = 0; index < 4; index++) {
      const lines = await plots.nth(index).locator('path.line').evaluateAll(
        (paths) => paths.map((path) => path.getAttribute('d')))
      assert.ok(lines.some((d) => (d.match(/L/g) || []).length >= 2), `plot ${index} draws a line: ${lines}`)
      const box = await plots.nth(index).boundingBox()
      assert.ok(box.width > 300 && box.height > 100, `plot ${index} is ${JSON.stringify(box)}`)
    }
    const curve = page.locator('figure', { hasText: 'Fan-out latency by percentile' })
    for (const label of ['0%', '50%', '90%', '99%']) {
      await curve.locator('text.tick', { hasText: new RegExp(`^${label.replace('.', '\\.')}$`) }).first().waitFor()
    }
    // The figures match the JSON report of the same run.
    const p99 = report.latency_ms.p99.toFixed(2)
    assert.ok((await page.locator('.figures').textContent()).includes(p99), `p99 ${p99} shown`)
    assert.match(await page.locator('section', { hasText: 'Machine' }).textContent(), /cores\s*\d+/)

    await screenshot(page, 'bench-report')
    assert.deepEqual(problems, [])
    assert.deepEqual(requests, [pathToFileURL(path).href], 'the report loads nothing else')
    assert.ok(!readFileSync(path, 'utf8').includes('<script'), 'no script in the report')
    await context.close()
  })

  test('a missed threshold is the headline', async () => {
    const { path } = await benchReport('failed', ['--max-p99-ms', '0.000001']).catch((error) => {
      // Exit code 1 is the missed threshold; the report is written all the same.
      assert.equal(error.code, 1, error.stderr)
      return { path: join(SCREENSHOTS, '..', 'bench-report', 'failed.html') }
    })
    const { page, problems, context } = await openPage(browser, pathToFileURL(path).href)
    assert.equal(await page.locator('.verdict h2').textContent(), 'Failed')
    await page.locator('.verdict').getByText('--max-p99-ms').waitFor()
    await screenshot(page, 'bench-report-failed')
    assert.deepEqual(problems, [])
    await context.close()
  })
})
