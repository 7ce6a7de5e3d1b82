// A graceful restart of coedit: documents typed through y-websocket survive it, and
// providers connected through it carry on.

import assert from 'node:assert/strict'
import { afterEach, test } from 'node:test'

import { Coedit } from '../lib/coedit.js'
import { JsonPage, ProviderEditor, uniqueRoom, waitFor } from '../lib/clients.js'

const TEST_TIMEOUT_MS = 60_000

const servers = []
const open = []

afterEach(async () => {
  await Promise.all(open.splice(0).map((client) => client.destroy()))
  // Later servers first: the first one owns (and removes) the shared data directory.
  for (const server of servers.splice(0).reverse()) await server.cleanup()
})

test('text typed through a provider is there after coedit restarts on the same data', { timeout: TEST_TIMEOUT_MS }, async () => {
  const first = await Coedit.start()
  servers.push(first)
  const room = uniqueRoom('restart')
  const writer = new ProviderEditor(first, room)
  const witness = new ProviderEditor(first, room)
  open.push(writer, witness)
  await writer.waitUntilSynced()
  writer.text.insert(0, 'kept across a restart')
  writer.text.delete(0, 'kept '.length)
  writer.text.insert(0, 'still ')
  const written = writer.text.toString()
  assert.equal(written, 'still across a restart')
  // Relayed means accepted by the server: that is what has to survive.
  await witness.waitForText(written)
  await Promise.all(open.splice(0).map((editor) => editor.destroy()))

  assert.equal(await first.stopGracefully(), 0, `coedit exits cleanly on SIGTERM:\n${first.log}`)

  const second = await Coedit.start({ dataDir: first.dataDir })
  servers.push(second)
  const reader = new ProviderEditor(second, room, { connect: false })
  open.push(reader)
  let textAtSync
  reader.provider.on('sync', (synced) => {
    if (synced) textAtSync = reader.text.toString()
  })
  reader.provider.connect()
  await reader.waitUntilSynced()
  assert.equal(textAtSync, written)

  const page = await JsonPage.open(second, room, { name: 'Reader', color: '#10B981' })
  open.push(page)
  await page.waitForText(written)
})

test('a provider connected through a restart reconnects, resyncs and hands over what was typed meanwhile', { timeout: TEST_TIMEOUT_MS }, async () => {
  const first = await Coedit.start()
  servers.push(first)
  const room = uniqueRoom('reconnect')
  const editor = new ProviderEditor(first, room)
  open.push(editor)
  await editor.waitUntilSynced()
  editor.text.insert(0, 'before the restart.')
  const witness = new ProviderEditor(first, room)
  open.push(witness)
  await witness.waitForText('before the restart.')
  open.splice(open.indexOf(witness), 1)
  await witness.destroy()

  assert.equal(await first.stopGracefully(), 0, `coedit exits cleanly on SIGTERM:\n${first.log}`)
  await waitFor('the provider to notice the server is gone', () => !editor.provider.wsconnected,
    { describe: () => editor.diagnosis() })
  editor.text.insert(editor.text.length, ' While it was down.')

  // Same port, so the provider finds the new server by itself (it retries with
  // backoff up to 2.5 s).
  const second = await Coedit.start({ dataDir: first.dataDir, port: first.port })
  servers.push(second)
  await waitFor('the provider to reconnect and resync', () => editor.provider.synced,
    { timeoutMs: 15_000, describe: () => editor.diagnosis() })
  const reader = new ProviderEditor(second, room)
  open.push(reader)
  await reader.waitForText('before the restart. While it was down.')
})
