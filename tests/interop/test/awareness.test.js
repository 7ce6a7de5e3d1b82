// Presence through coedit's y-protocols endpoint: awareness states relayed between
// providers, answered on query, removed when their owner leaves, and listed by REST.

import assert from 'node:assert/strict'
import { after, afterEach, before, test } from 'node:test'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import WebSocket from 'ws'
import { messageAwareness, messageQueryAwareness } from 'y-websocket'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'

import { Coedit } from '../lib/coedit.js'
import { ProviderEditor, uniqueRoom, waitFor } from '../lib/clients.js'

const TEST_TIMEOUT_MS = 30_000
// Time for messages already sent to arrive on loopback.
const SETTLE_MS = 300

const ADA = { name: 'Ada', color: '#F43F5E' }
const BEA = { name: 'Bea', color: '#3B82F6' }

let server
const open = []

function provider (room) {
  const editor = new ProviderEditor(server, room)
  open.push(editor)
  return editor
}

before(async () => {
  server = await Coedit.start()
})

afterEach(async () => {
  await Promise.all(open.splice(0).map((editor) => editor.destroy()))
})

after(async () => {
  await server?.cleanup()
})

const userSeenBy = (editor, clientId) => editor.awareness.getStates().get(clientId)?.user

async function roomUsers (room) {
  return server.getJson(`/api/rooms/${encodeURIComponent(room)}/users`)
}

async function waitForListedNames (room, expected) {
  let users = []
  await waitFor(`GET /api/rooms/${room}/users to list ${JSON.stringify(expected)}`, async () => {
    users = await roomUsers(room)
    const names = users.map((user) => user.name).sort()
    return JSON.stringify(names) === JSON.stringify([...expected].sort())
  }, { describe: () => JSON.stringify(users) })
  return users
}

/**
 * Asks the room for every awareness state over a bare socket, as y-protocols does.
 * Only answers that arrive after the query count: whatever the server pushes on
 * connect is left to settle first.
 */
async function queryAwareness (room) {
  const socket = new WebSocket(`${server.yjsUrl}/${room}`)
  socket.binaryType = 'arraybuffer'
  const doc = new Y.Doc()
  const awareness = new awarenessProtocol.Awareness(doc)
  awareness.setLocalState(null)
  let queried = false
  socket.on('error', () => {}) // A failure shows as the missing answer below.
  try {
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('error', reject)
    })
    socket.on('message', (data) => {
      const decoder = decoding.createDecoder(new Uint8Array(data))
      if (queried && decoding.readVarUint(decoder) === messageAwareness) {
        awarenessProtocol.applyAwarenessUpdate(awareness, decoding.readVarUint8Array(decoder), 'server')
      }
    })
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const query = encoding.createEncoder()
    encoding.writeVarUint(query, messageQueryAwareness)
    queried = true
    socket.send(encoding.toUint8Array(query))
    await waitFor(`an awareness answer to query-awareness in ${room}`,
      () => awareness.getStates().size >= 2, { describe: () => JSON.stringify([...awareness.getStates()]) })
    return new Map(awareness.getStates())
  } finally {
    socket.terminate()
    awareness.destroy()
    doc.destroy()
  }
}

test('awareness states travel between providers and show up as room users', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('awareness')
  const ada = provider(room)
  await ada.waitUntilSynced()
  ada.awareness.setLocalStateField('user', ADA)
  const listed = await waitForListedNames(room, ['Ada'])
  assert.equal(listed[0].color, ADA.color)

  // Bea joins after Ada's state was set: she gets it from the server, not from a
  // renewal of Ada's (those come every 15 s).
  const bea = provider(room)
  await waitFor('Ada\'s state at Bea', () => userSeenBy(bea, ada.doc.clientID)?.name === 'Ada',
    { describe: () => bea.diagnosis() })
  assert.deepEqual(userSeenBy(bea, ada.doc.clientID), ADA)

  bea.awareness.setLocalStateField('user', BEA)
  await waitFor('Bea\'s state at Ada', () => userSeenBy(ada, bea.doc.clientID)?.name === 'Bea',
    { describe: () => ada.diagnosis() })
  ada.awareness.setLocalStateField('cursor', { index: 3 })
  await waitFor('Ada\'s changed state at Bea',
    () => bea.awareness.getStates().get(ada.doc.clientID)?.cursor?.index === 3,
    { describe: () => JSON.stringify([...bea.awareness.getStates()]) })

  // A renewal (same state, next clock) is what keeps a quiet peer from being timed
  // out by the others after 30 s, so it has to be relayed although nothing changed.
  const clockAtBea = () => bea.awareness.meta.get(ada.doc.clientID)?.clock
  const before = clockAtBea()
  ada.awareness.setLocalState(ada.awareness.getLocalState())
  await waitFor('Ada\'s renewal at Bea', () => clockAtBea() > before,
    { describe: () => `clock ${clockAtBea()}, was ${before}` })

  const users = await waitForListedNames(room, ['Ada', 'Bea'])
  assert.deepEqual(users.map(({ name, color }) => ({ name, color })).sort((a, b) => a.name.localeCompare(b.name)),
    [ADA, BEA])

  const answered = await queryAwareness(room)
  assert.deepEqual(answered.get(ada.doc.clientID)?.user, ADA)
  assert.deepEqual(answered.get(bea.doc.clientID)?.user, BEA)
})

/** Ada and Bea in one room, both known to the server by name. */
async function adaAndBea (room) {
  const ada = provider(room)
  const bea = provider(room)
  ada.awareness.setLocalStateField('user', ADA)
  bea.awareness.setLocalStateField('user', BEA)
  await waitFor('Ada\'s state at Bea', () => userSeenBy(bea, ada.doc.clientID), { describe: () => bea.diagnosis() })
  await waitForListedNames(room, ['Ada', 'Bea'])
  return { ada, bea }
}

/** Destroys a provider the test opened, as a closing browser tab does. */
async function leave (editor) {
  open.splice(open.indexOf(editor), 1)
  await editor.destroy()
}

test('a provider that leaves is removed from the others\' awareness and from the room users', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('leave')
  const { ada, bea } = await adaAndBea(room)
  const adaId = ada.doc.clientID
  await leave(ada)
  // Bea's own timeout for a silent peer is 30 s, so a quick removal is the server's.
  await waitFor('Ada removed at Bea', () => !bea.awareness.getStates().has(adaId),
    { describe: () => JSON.stringify([...bea.awareness.getStates()]) })
  await waitForListedNames(room, ['Bea'])
})

test('a provider that leaves is announced gone once, as the y-websocket server does', {
  timeout: TEST_TIMEOUT_MS
}, async () => {
  const room = uniqueRoom('leave-once')
  const { ada, bea } = await adaAndBea(room)
  const adaId = ada.doc.clientID
  const removals = []
  bea.awareness.on('change', ({ removed }) => removals.push(...removed))
  await leave(ada)
  await waitFor('Ada removed at Bea', () => !bea.awareness.getStates().has(adaId))
  // The users list changes when the server has closed Ada's connection, which is
  // when a second announcement would be sent; give it time to arrive.
  await waitForListedNames(room, ['Bea'])
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
  assert.deepEqual([...removals], [adaId], 'Bea\'s awareness reports Ada\'s departure once')
})

test('a provider whose connection drops without a goodbye is removed as well', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = uniqueRoom('drop')
  const { ada, bea } = await adaAndBea(room)

  // Cut the TCP connection: no null-state update is sent, and no reconnect follows.
  ada.provider.shouldConnect = false
  ada.provider.ws.terminate()
  await waitFor('Ada removed at Bea after her connection dropped',
    () => !bea.awareness.getStates().has(ada.doc.clientID),
    { describe: () => JSON.stringify([...bea.awareness.getStates()]) })
  await waitForListedNames(room, ['Bea'])
})
