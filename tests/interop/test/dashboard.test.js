// The dashboard at `/`, in real headless Chromium, against the real binary, with
// editors that are real Yjs clients speaking the original page's JSON protocol.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { Coedit } from '../lib/coedit.js'
import { JsonPage, uniqueRoom, waitFor } from '../lib/clients.js'
import { browserMissing, launchBrowser, openPage, screenshot } from '../lib/browser.js'

const TEST_TIMEOUT_MS = 60_000
/** The promises: a joiner is listed within 2 s, typed text shows within 1 s. */
const JOIN_VISIBLE_MS = 2_000
const TEXT_VISIBLE_MS = 1_000
/** The page, its script and style sheet together stay below this. */
const PAGE_BUDGET_BYTES = 64 * 1024

const skip = browserMissing()
let browser
const cleanups = []

before(async () => {
  if (!skip) browser = await launchBrowser()
})

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  await browser?.close()
})

async function startServer (options) {
  const server = await Coedit.start(options)
  cleanups.push(() => server.cleanup())
  return server
}

async function editor (server, room, name, color) {
  const page = await JsonPage.open(server, room, { name, color })
  cleanups.push(() => page.destroy())
  await waitFor(`${name}: users_list`, () => page.messagesOfType('users_list').length > 0,
    { describe: () => page.diagnosis() })
  return page
}

/** Waits until the dashboard has drawn the node's figures once. */
async function waitUntilLive (page) {
  await page.locator('#status.good').waitFor({ timeout: 10_000 })
  await page.waitForFunction(() => document.getElementById('stat-connections').textContent !== '–')
}

/** How many samples a chart draws. */
async function chartPoints (page, id) {
  return Number(await page.locator(`#${id} svg`).getAttribute('data-points'))
}

describe('dashboard', { skip, timeout: TEST_TIMEOUT_MS }, () => {
  test('loads with no console errors, shows the node, and stays small', async () => {
    const server = await startServer()
    const { page, problems, context } = await openPage(browser, `${server.httpUrl}/`)
    await waitUntilLive(page)
    assert.match(await page.locator('#version').textContent(), /^v\d+\.\d+/)
    assert.match(await page.locator('#stat-store').textContent(), /Embedded SQLite: healthy, everything written/)
    await page.locator('#rooms').getByText('No rooms in memory').waitFor()

    let weight = 0
    for (const path of ['/', '/dashboard/dashboard.js', '/dashboard/dashboard.css']) {
      const response = await fetch(`${server.httpUrl}${path}`)
      assert.equal(response.status, 200, path)
      weight += (await response.arrayBuffer()).byteLength
    }
    assert.ok(weight < PAGE_BUDGET_BYTES, `page weighs ${weight} bytes`)
    await screenshot(page, 'dashboard-empty')

    // Keyboard: the first Tab shows the skip link, Enter moves into the content,
    // and the next Tab reaches the room filter.
    await page.keyboard.press('Tab')
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content')
    assert.ok((await page.locator('.skip').boundingBox()).x >= 0, 'the focused skip link is on screen')
    await page.keyboard.press('Enter')
    assert.equal(await page.evaluate(() => document.activeElement.id), 'main')
    await page.keyboard.press('Tab')
    assert.equal(await page.evaluate(() => document.activeElement.id), 'room-filter')

    const dark = await openPage(browser, `${server.httpUrl}/`, { colorScheme: 'dark' })
    await waitUntilLive(dark.page)
    await screenshot(dark.page, 'dashboard-dark')
    assert.deepEqual([...problems, ...dark.problems], [])
    await context.close()
    await dark.context.close()
  })

  test('a client joining a room makes the room and its user appear within 2 s', async () => {
    const server = await startServer()
    const { page, problems, context } = await openPage(browser, `${server.httpUrl}/`)
    await waitUntilLive(page)
    const room = uniqueRoom('dash')
    await editor(server, room, 'Ada Lovelace', '#8B5CF6')
    const joined = Date.now()
    const row = page.locator(`#rooms tr[data-room="${room}"]`)
    await row.getByText('Ada Lovelace').waitFor({ timeout: JOIN_VISIBLE_MS })
    const seenAfter = Date.now() - joined
    assert.ok(seenAfter <= JOIN_VISIBLE_MS, `listed after ${seenAfter} ms`)

    // Simulated users are marked as such; the filter narrows the table by name.
    await fetch(`${server.httpUrl}/api/simulate/users/${room}?count=2`, { method: 'POST' })
    await row.locator('.chip.sim').first().waitFor({ timeout: 3_000 })
    await editor(server, uniqueRoom('other'), 'Grace Hopper', '#10B981')
    await page.locator('#rooms').getByText('Grace Hopper').waitFor({ timeout: 3_000 })
    await page.locator('#room-filter').fill(room)
    await page.locator('#rooms').getByText('Grace Hopper').waitFor({ state: 'detached', timeout: 2_000 })
    assert.equal(await row.count(), 1)
    assert.match(await row.textContent(), /just now|\d+ s ago/)

    // The event log shows the join.
    await page.locator('#events').getByText('User Ada Lovelace joined').waitFor({ timeout: 3_000 })
    await page.locator('#room-filter').fill('')
    await screenshot(page, 'dashboard-rooms')
    assert.deepEqual(problems, [])
    await context.close()
  })

  test("typed text appears on the room page within 1 s, without the viewer joining", async () => {
    const server = await startServer()
    const room = uniqueRoom('typing')
    const ada = await editor(server, room, 'Ada', '#EF4444')
    const { page, problems, context } = await openPage(browser, `${server.httpUrl}/`)
    await waitUntilLive(page)

    // Keyboard only: focus the room's link and press Enter.
    const link = page.locator(`#rooms tr[data-room="${room}"] a`)
    await link.waitFor({ timeout: 3_000 })
    await link.focus()
    await page.keyboard.press('Enter')
    await page.locator('#room-title').getByText(room).waitFor()
    await page.locator('#room-users').getByText('Ada').waitFor({ timeout: 3_000 })

    const sentence = 'Hello from Ada'
    ada.type(0, sentence)
    const typed = Date.now()
    await page.locator('#room-text').getByText(sentence).waitFor({ timeout: TEXT_VISIBLE_MS })
    const seenAfter = Date.now() - typed
    assert.ok(seenAfter <= TEXT_VISIBLE_MS, `text shown after ${seenAfter} ms`)
    // Her cursor is listed and drawn where she left it.
    await page.locator('#room-users').getByText(`cursor ${sentence.length}`).waitFor({ timeout: 3_000 })
    await page.locator('#room-text .caret[data-name="Ada"]').waitFor({ timeout: 3_000 })

    // A second editor's edit merges in, and deletions show too.
    const grace = await editor(server, room, 'Grace', '#10B981')
    await waitFor('Grace has the text', () => grace.text.toString() === sentence, { describe: () => grace.diagnosis() })
    grace.type(sentence.length, '!')
    ada.backspace(5) // "Hell from Ada" once both edits are in
    await page.locator('#room-text').getByText('Hell from Ada!').waitFor({ timeout: 3_000 })

    // Watching is not joining: the server lists only the two editors.
    const users = await server.getJson(`/api/rooms/${room}/users`)
    assert.deepEqual(users.map((user) => user.name).sort(), ['Ada', 'Grace'])
    const info = await server.getJson(`/api/rooms/${room}`)
    assert.equal(info.connections, 2)

    // Recent events of this room, and the checkpoint buttons.
    await page.locator('#room-events').getByText('User Grace joined').waitFor({ timeout: 3_000 })
    await page.locator('#persist').click()
    await page.locator('#action-result').getByText(/Checkpoint saved \(\d+ bytes\)/).waitFor({ timeout: 3_000 })
    await screenshot(page, 'dashboard-room')
    ada.type(0, 'X')
    await page.locator('#room-text').getByText('XHell from Ada!').waitFor({ timeout: 3_000 })
    // Restoring asks for a second press; the room then holds the checkpoint again.
    await page.locator('#load').click()
    await page.locator('#load').getByText('Press again').waitFor()
    await page.locator('#load').click()
    await page.locator('#action-result').getByText(/Restored the checkpoint/).waitFor({ timeout: 3_000 })
    await page.locator('#room-text').getByText('Hell from Ada!', { exact: true }).waitFor({ timeout: 3_000 })

    await page.locator('a', { hasText: 'All rooms' }).click()
    await page.locator(`#rooms tr[data-room="${room}"]`).waitFor({ timeout: 3_000 })
    assert.deepEqual(problems, [])
    await context.close()
  })

  test("changing the address from one room's page to another's shows the other room", async () => {
    const server = await startServer()
    const first = uniqueRoom('first')
    const second = uniqueRoom('second')
    const ada = await editor(server, first, 'Ada', '#EF4444')
    const grace = await editor(server, second, 'Grace', '#10B981')
    ada.type(0, 'text of the first room')
    grace.type(0, 'text of the second room')
    const { page, problems, context } = await openPage(browser, `${server.httpUrl}/#/room/${first}`)
    await page.locator('#room-text').getByText('text of the first room').waitFor({ timeout: 3_000 })

    // Typed into the address bar (or a bookmark): no stop at the overview between.
    await page.evaluate((room) => { location.hash = `#/room/${room}` }, second)
    await page.locator('#room-title').getByText(second).waitFor()
    await page.locator('#room-text').getByText('text of the second room').waitFor({ timeout: 3_000 })
    await page.locator('#room-users').getByText('Grace').waitFor({ timeout: 3_000 })
    // The first room's stream is gone: its edits do not reach this page.
    ada.type(0, 'more of the first ')
    grace.type(0, 'more ')
    await page.locator('#room-text').getByText('more text of the second room').waitFor({ timeout: 3_000 })
    assert.equal(await page.locator('#room-text').textContent(), 'more text of the second room')
    assert.equal(await page.locator('#room-users').getByText('Ada').count(), 0)
    assert.deepEqual(problems, [])
    await context.close()
  })

  test('charts gain a point every second', async () => {
    const server = await startServer()
    const { page, problems, context } = await openPage(browser, `${server.httpUrl}/`)
    await waitUntilLive(page)
    await page.locator('#chart-rate svg').waitFor()
    const before = await chartPoints(page, 'chart-rate')
    const room = uniqueRoom('charts')
    const ada = await editor(server, room, 'Ada', '#3B82F6')
    ada.type(0, 'some typing for the charts')
    await waitFor('two more points', async () => await chartPoints(page, 'chart-rate') >= before + 2)
    await waitFor('the connection on the chart', async () =>
      /^1\b/.test(await page.locator('#chart-connections figcaption b').textContent()))
    for (const id of ['chart-latency', 'chart-connections']) {
      assert.ok(await chartPoints(page, id) >= before + 2, id)
      assert.ok(await page.locator(`#${id} path.line`).count() >= 1, `${id} draws a line`)
    }
    // The typing shows as messages per second in the history the charts draw.
    const history = await server.getJson('/api/metrics/history')
    assert.ok(history.samples.some((sample) => sample.messages > 0), JSON.stringify(history.samples.slice(-5)))
    await screenshot(page, 'dashboard-charts')
    assert.deepEqual(problems, [])
    await context.close()
  })

  test('with --admin-token, protected data appears only after the token is entered', async () => {
    const token = 'dashboard-s3cret'
    const server = await startServer({ args: ['--admin-token', token] })
    const room = uniqueRoom('secret')
    await editor(server, room, 'Hidden Hopper', '#F59E0B')
    const { page, problems, context } = await openPage(browser, `${server.httpUrl}/`)
    await waitUntilLive(page)
    const form = page.locator('#lock form')
    await form.waitFor({ timeout: 3_000 })
    // Public figures show; rooms, users and events do not, even after a few refreshes.
    await page.waitForTimeout(2_500)
    assert.equal(await page.locator('#stat-connections').textContent(), '1')
    const before = await page.locator('body').textContent()
    assert.ok(!before.includes(room) && !before.includes('Hidden Hopper'), 'protected data shown without the token')
    await screenshot(page, 'dashboard-locked')

    // A wrong token is refused and asked for again.
    await form.locator('input[name=token]').fill('wrong')
    await form.locator('input[name=token]').press('Enter')
    await page.locator('#lock').getByText('refused').waitFor({ timeout: 3_000 })
    assert.ok(!(await page.locator('body').textContent()).includes('Hidden Hopper'))

    await page.locator('#lock input[name=token]').fill(token)
    await page.locator('#lock button[type=submit]').click()
    await page.locator(`#rooms tr[data-room="${room}"]`).getByText('Hidden Hopper').waitFor({ timeout: 3_000 })
    await page.locator('#events').getByText('User Hidden Hopper joined').waitFor({ timeout: 3_000 })
    assert.equal(await page.evaluate(() => sessionStorage.getItem('coedit.adminToken')), token)

    // Asked once: a reload in the same tab keeps it; the room page streams with it.
    await page.reload()
    await page.locator(`#rooms tr[data-room="${room}"]`).waitFor({ timeout: 3_000 })
    assert.equal(await page.locator('#lock form').count(), 0)
    await page.goto(`${server.httpUrl}/#/room/${room}`)
    await page.locator('#room-users').getByText('Hidden Hopper').waitFor({ timeout: 3_000 })
    await screenshot(page, 'dashboard-unlocked')

    // The only console errors are the refused wrong token's 401s.
    const unexpected = problems.filter((problem) => !problem.includes('401'))
    assert.deepEqual(unexpected, [])
    await context.close()
  })

  test('a busy server: people typing in several rooms (the README screenshots)', async () => {
    const server = await startServer()
    const { page, problems, context } = await openPage(browser, `${server.httpUrl}/`, { height: 1000 })
    await waitUntilLive(page)
    const review = [
      await editor(server, 'design-review', 'Ada', '#8B5CF6'),
      await editor(server, 'design-review', 'Grace', '#10B981'),
      await editor(server, 'design-review', 'Linus', '#F97316')
    ]
    const notes = [
      await editor(server, 'team/standup-notes', 'Margaret', '#EC4899'),
      await editor(server, 'team/standup-notes', 'Alan', '#3B82F6')
    ]
    await editor(server, 'roadmap-2027', 'Barbara', '#14B8A6')
    await fetch(`${server.httpUrl}/api/simulate/users/team%2Fstandup-notes?count=4`, { method: 'POST' })

    /** Editors take turns, each typing a line at the end, one key every 60 ms. */
    async function takeTurns (editors, lines) {
      for (const [index, line] of lines.entries()) {
        const typist = editors[index % editors.length]
        for (const character of line) {
          typist.type(typist.text.length, character)
          await new Promise((resolve) => setTimeout(resolve, 60))
        }
        const expected = typist.text.toString()
        for (const other of editors) await other.waitForText(expected)
      }
    }
    await Promise.all([
      takeTurns(review, [
        'Design review: the dashboard',
        '\n- charts: messages/s, p50/p99, connections',
        '\n- rooms table with coloured user chips',
        '\n- room page streams the text as we type'
      ]),
      takeTurns(notes, ['Yesterday: bench report with HDR curve', '\nToday: screenshots for the README'])
    ])
    await page.locator('#rooms tr[data-room="design-review"]').getByText('Linus').waitFor({ timeout: 3_000 })
    await waitFor('ten seconds of history', async () => await chartPoints(page, 'chart-rate') >= 10)
    assert.equal(await page.locator('#rooms tbody tr').count(), 3)
    await screenshot(page, 'dashboard-busy')

    await page.locator('#rooms a', { hasText: 'design-review' }).click()
    const expected = review[0].text.toString()
    await waitFor('the room page shows the merged text', async () =>
      (await page.locator('#room-text').textContent()) === expected)
    await page.locator('#room-users').getByText('Linus').waitFor()
    await screenshot(page, 'dashboard-busy-room')
    assert.deepEqual(problems, [])
    await context.close()
  })

  test('the page carries on after the server restarts on the same port', async () => {
    const first = await Coedit.start()
    cleanups.push(() => first.cleanup())
    const { page, context } = await openPage(browser, `${first.httpUrl}/`)
    await waitUntilLive(page)
    const before = await chartPoints(page, 'chart-rate')

    assert.equal(await first.stopGracefully(), 0)
    await page.locator('#offline').waitFor({ state: 'visible', timeout: 5_000 })
    await page.locator('#status').getByText('unreachable').waitFor()
    await screenshot(page, 'dashboard-offline')

    const second = await startServer({ dataDir: first.dataDir, port: first.port })
    await page.locator('#offline').waitFor({ state: 'hidden', timeout: 5_000 })
    await page.locator('#status.good').waitFor({ timeout: 5_000 })
    const room = uniqueRoom('after-restart')
    await editor(second, room, 'Back Again', '#14B8A6')
    await page.locator(`#rooms tr[data-room="${room}"]`).getByText('Back Again').waitFor({ timeout: 3_000 })
    await waitFor('charts go on', async () => await chartPoints(page, 'chart-rate') > before + 1)
    assert.equal(await page.locator('#stat-connections').textContent(), '1')
    await screenshot(page, 'dashboard-restarted')
    await context.close()
  })
})
