// y-websocket providers editing through coedit's y-protocols endpoint `/api/yjs/{room}`.

import assert from 'node:assert/strict'
import { after, afterEach, before, test } from 'node:test'
import * as Y from 'yjs'

import { Coedit } from '../lib/coedit.js'
import { JsonPage, mergedText, ProviderEditor, TEXT_NAME, uniqueRoom, waitFor } from '../lib/clients.js'

const TEST_TIMEOUT_MS = 30_000

let server
const open = []

function provider (room, options) {
  const editor = new ProviderEditor(server, room, options)
  open.push(editor)
  return editor
}

before(async () => {
  server = await Coedit.start()
})

afterEach(async () => {
  await Promise.all(open.splice(0).map((client) => client.destroy()))
})

after(async () => {
  await server?.cleanup()
})

test('two providers in one room converge while both type, at once, and delete', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('converge')
  const ada = provider(room)
  const bea = provider(room)
  await ada.waitUntilSynced()
  await bea.waitUntilSynced()

  ada.text.insert(0, 'Hello world')
  await bea.waitForText('Hello world')
  bea.text.insert(11, '!')
  await ada.waitForText('Hello world!')

  // Edits made in one tick cannot have seen each other: the providers only read
  // their sockets once this function yields.
  ada.text.insert(0, 'A: ')
  ada.text.insert(8, ' there')
  bea.text.insert(5, ' again')
  bea.text.insert(bea.text.length, ' :B')
  const expected = mergedText(Y.encodeStateAsUpdate(ada.doc), Y.encodeStateAsUpdate(bea.doc))
  assert.equal(expected.length, 'A: Hello world! :B'.length + ' there'.length + ' again'.length)
  await ada.waitForText(expected)
  await bea.waitForText(expected)

  const world = bea.text.toString().indexOf('world')
  bea.text.delete(world, 'world'.length)
  const afterDelete = bea.text.toString()
  assert.ok(!afterDelete.includes('world'))
  await ada.waitForText(afterDelete)

  // A deletion racing an insertion elsewhere.
  ada.text.delete(0, 'A: '.length)
  bea.text.insert(bea.text.length, '?')
  const raced = mergedText(Y.encodeStateAsUpdate(ada.doc), Y.encodeStateAsUpdate(bea.doc))
  assert.ok(!raced.startsWith('A: ') && raced.endsWith('?'), raced)
  await ada.waitForText(raced)
  await bea.waitForText(raced)
})

test('a provider that joins late gets the whole text in sync step 2 and is marked synced', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('late')
  const writer = provider(room)
  const witness = provider(room)
  await writer.waitUntilSynced()
  writer.text.insert(0, 'The quick brown fox')
  writer.text.delete(4, 'quick '.length)
  writer.text.insert(writer.text.length, ' jumps over the lazy dog')
  const written = writer.text.toString()
  assert.equal(written, 'The brown fox jumps over the lazy dog')
  // The server relays an update only after applying it, so once the witness has the
  // text the room has it too.
  await witness.waitForText(written)

  const late = provider(room, { connect: false })
  const syncEvents = []
  late.provider.on('sync', (state) => {
    syncEvents.push({ state, text: late.text.toString() })
  })
  assert.equal(late.provider.synced, false)
  late.provider.connect()
  await late.waitUntilSynced()
  assert.equal(late.provider.synced, true)
  assert.deepEqual(syncEvents, [{ state: true, text: written }],
    'the provider is marked synced once, when sync step 2 has brought the whole text')
})

test('a provider with edits made before it connected hands them to the room', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('offline')
  const online = provider(room)
  await online.waitUntilSynced()
  online.text.insert(0, 'online text')

  // y-websocket sends only sync step 1 on connect; the offline edits reach the room
  // only if the server asks for them with its own sync step 1.
  const offlineDoc = new Y.Doc()
  offlineDoc.getText(TEXT_NAME).insert(0, 'offline text ')
  const offline = provider(room, { doc: offlineDoc })
  await offline.waitUntilSynced()
  const expected = mergedText(Y.encodeStateAsUpdate(online.doc), Y.encodeStateAsUpdate(offlineDoc))
  assert.ok(expected.includes('offline text ') && expected.includes('online text'), expected)
  await offline.waitForText(expected)
  await online.waitForText(expected)
})

test('room names with slashes work for providers and name one room everywhere', { timeout: TEST_TIMEOUT_MS }, async () => {
  const prefix = uniqueRoom('team')
  const room = `${prefix}/notes/2024`
  const ada = provider(room)
  const bea = provider(room)
  await ada.waitUntilSynced()
  await bea.waitUntilSynced()
  ada.text.insert(0, 'slashes are part of the name')
  await bea.waitForText('slashes are part of the name')
  bea.text.insert(0, '/')
  await ada.waitForText('/slashes are part of the name')

  // The rooms named by a prefix of the path are other, empty rooms.
  for (const other of [prefix, `${prefix}/notes`]) {
    const outsider = provider(other)
    await outsider.waitUntilSynced()
    assert.equal(outsider.text.toString(), '', `room ${other} must not see ${room}'s text`)
  }

  // The same room through the REST API and the original JSON endpoint, where the
  // slashes are percent-encoded into one path segment.
  const info = await server.getJson(`/api/rooms/${encodeURIComponent(room)}`)
  assert.equal(info.id, room)
  const page = await JsonPage.open(server, room, { name: 'Reader', color: '#10B981' })
  open.push(page)
  await page.waitForText('/slashes are part of the name')
})
