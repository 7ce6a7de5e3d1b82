// The original browser page's JSON protocol (`/api/ws/{room}`), driven with the real
// yjs library exactly as the page drives it, alone and side by side with y-websocket.

import assert from 'node:assert/strict'
import { after, afterEach, before, test } from 'node:test'
import * as Y from 'yjs'

import { Coedit } from '../lib/coedit.js'
import { JsonPage, mergedText, ProviderEditor, uniqueRoom, unhex, waitFor } from '../lib/clients.js'

const TEST_TIMEOUT_MS = 30_000

let server
const open = []

async function page (room, name, color) {
  const opened = await JsonPage.open(server, room, { name, color })
  open.push(opened)
  // `users_list` answers `join`, so the server has seen this page's join by then.
  await waitFor(`${name}: users_list`, () => opened.messagesOfType('users_list').length > 0,
    { describe: () => opened.diagnosis() })
  return opened
}

function provider (room) {
  const editor = new ProviderEditor(server, room)
  open.push(editor)
  return editor
}

function assertNoErrors (...pages) {
  for (const each of pages) {
    assert.deepEqual(each.messagesOfType('error'), [], `${each.name} was sent errors`)
  }
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

test('a JSON page and a y-websocket provider in one room converge both ways', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('mixed')
  const alice = await page(room, 'Alice', '#F43F5E')
  const editor = provider(room)
  await editor.waitUntilSynced()

  alice.type(0, 'Hi')
  await editor.waitForText('Hi')
  editor.text.insert(2, ' there')
  await alice.waitForText('Hi there')

  // Both at once: neither has seen the other's edit when making its own.
  alice.type(0, '>> ')
  editor.text.insert(editor.text.length, '!')
  const expected = mergedText(alice.sentStates.at(-1), Y.encodeStateAsUpdate(editor.doc))
  assert.equal(expected, '>> Hi there!')
  await alice.waitForText(expected)
  await editor.waitForText(expected)

  // Deletions both ways: the provider's is an incremental update, the page's a full state.
  editor.text.delete(0, 3)
  await alice.waitForText('Hi there!')
  alice.backspace(alice.text.length)
  await editor.waitForText('Hi there')
  assertNoErrors(alice)
})

test('two original pages typing at once converge, and a late page gets the merged text in its first sync', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('pages')
  const alice = await page(room, 'Alice', '#F43F5E')
  const bob = await page(room, 'Bob', '#10B981')

  // Every keystroke sends the page's full state; all of these are typed before either
  // page has read anything from the other.
  alice.type(0, 'Hello')
  bob.type(0, 'World')
  alice.backspace(5)
  alice.type(4, 'p!')
  bob.type(5, '?')
  const expected = mergedText(alice.sentStates.at(-1), bob.sentStates.at(-1))
  assert.equal(expected.length, 'Hellp!'.length + 'World?'.length)
  assert.ok(expected.includes('Hellp!') && expected.includes('World?'), expected)
  await alice.waitForText(expected)
  await bob.waitForText(expected)

  // Then in turn, with a backspace on text the other one typed.
  bob.type(bob.text.length, ' again')
  await alice.waitForText(`${expected} again`)
  alice.backspace(alice.text.length)
  const final = `${expected} agai`
  await bob.waitForText(final)
  assert.equal(alice.text.toString(), final)

  const carol = await JsonPage.open(server, room, { name: 'Carol', color: '#3B82F6' })
  open.push(carol)
  await waitFor('Carol\'s first sync', () => carol.messagesOfType('sync').length > 0,
    { describe: () => carol.diagnosis() })
  const firstSync = carol.messagesOfType('sync')[0]
  assert.equal(mergedText(unhex(firstSync.data)), final)
  assert.equal(carol.text.toString(), final)
  assertNoErrors(alice, bob, carol)
})
