// Restoring a checkpoint (`load`) is a new change: y-websocket providers and the
// original page show the checkpoint at once, and what they had does not merge back
// as they keep editing.

import assert from 'node:assert/strict'
import { afterEach, test } from 'node:test'

import { Coedit } from '../lib/coedit.js'
import { JsonPage, ProviderEditor, uniqueRoom } from '../lib/clients.js'

const TEST_TIMEOUT_MS = 60_000

const servers = []
const open = []

afterEach(async () => {
  await Promise.all(open.splice(0).map((client) => client.destroy()))
  for (const server of servers.splice(0)) await server.cleanup()
})

async function call (server, method, path) {
  const response = await fetch(`${server.httpUrl}/api${path}`, { method })
  assert.equal(response.status, 200, `${method} ${path}`)
  return response.json()
}

test('after a load every provider and page shows the checkpoint, then keeps converging', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await Coedit.start()
  servers.push(server)
  const room = uniqueRoom('restore')
  const provider = new ProviderEditor(server, room)
  open.push(provider)
  await provider.waitUntilSynced()
  const page = await JsonPage.open(server, room, { name: 'Page', color: '#10B981' })
  open.push(page)

  provider.text.insert(0, 'the good version')
  await page.waitForText('the good version')
  assert.equal((await call(server, 'POST', `/rooms/${room}/persist`)).success, true)

  // Someone wipes the document and writes something else.
  provider.text.delete(0, provider.text.length)
  provider.text.insert(0, 'wiped')
  await page.waitForText('wiped')

  assert.equal((await call(server, 'GET', `/rooms/${room}/load`)).success, true)
  await provider.waitForText('the good version')
  await page.waitForText('the good version')

  // Both keep editing; the page sends its whole state with every keystroke, and
  // nothing of "wiped" comes back.
  page.type(16, '!')
  await provider.waitForText('the good version!')
  provider.text.insert(0, '>')
  await page.waitForText('>the good version!')

  const late = new ProviderEditor(server, room)
  open.push(late)
  await late.waitForText('>the good version!')
})
