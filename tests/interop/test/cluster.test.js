// Two coedit nodes of one cluster (a real redis-server and the MongoDB test server):
// a y-websocket provider on one node and the original JSON page on the other edit
// one document, see each other's presence, and a late provider on either node gets
// everything. scripts/test.sh exports COEDIT_TEST_REDIS and COEDIT_TEST_MONGO_URL;
// under CI a missing one fails the test instead of skipping it.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'

import { Coedit } from '../lib/coedit.js'
import { JsonPage, ProviderEditor, uniqueRoom, waitFor } from '../lib/clients.js'

const TEST_TIMEOUT_MS = 60_000
const REDIS = process.env.COEDIT_TEST_REDIS
const MONGO_URL = process.env.COEDIT_TEST_MONGO_URL

function missing () {
  const absent = [!REDIS && 'COEDIT_TEST_REDIS', !MONGO_URL && 'COEDIT_TEST_MONGO_URL'].filter(Boolean)
  if (absent.length === 0) return false
  if (process.env.CI === 'true') throw new Error(`${absent.join(' and ')} not set: under CI the cluster tests must run`)
  return `${absent.join(' and ')} not set (scripts/test.sh sets them)`
}
const skip = missing()

async function freePort () {
  const probe = createServer()
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address()
  await new Promise((resolve) => probe.close(resolve))
  return port
}

async function listening (port) {
  await waitFor(`something listening on ${port}`, () => new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  }), { timeoutMs: 15_000 })
}

let redis
let redisDir
const nodes = []
const open = []

before(async () => {
  if (skip) return
  redisDir = mkdtempSync(join(tmpdir(), 'coedit-interop-redis-'))
  const port = await freePort()
  redis = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir,
    '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', ''], { stdio: 'ignore' })
  await listening(port)
  const database = `coedit_interop_${Date.now()}`
  for (const name of ['n1', 'n2']) {
    nodes.push(await Coedit.start({
      args: ['--mongo-url', MONGO_URL, '--db-name', database,
        '--redis-url', `redis://127.0.0.1:${port}`, '--node-id', name]
    }))
  }
})

after(async () => {
  await Promise.all(open.splice(0).map((client) => client.destroy()))
  await Promise.all(nodes.map((node) => node.cleanup()))
  redis?.kill('SIGKILL')
  if (redisDir) rmSync(redisDir, { recursive: true, force: true })
})

test('a provider on one node and the original page on another share a document and presence', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [n1, n2] = nodes
  const room = uniqueRoom('cluster')
  const provider = new ProviderEditor(n1, room)
  open.push(provider)
  await provider.waitUntilSynced()
  provider.awareness.setLocalStateField('user', { name: 'Ada', color: '#F43F5E' })
  const page = await JsonPage.open(n2, room, { name: 'Bea', color: '#3B82F6' })
  open.push(page)

  provider.text.insert(0, 'from the provider')
  await page.waitForText('from the provider')
  page.type(page.text.length, ' and the page')
  await provider.waitForText('from the provider and the page')

  // Presence crosses nodes both ways: the page hears of Ada (her awareness user),
  // the provider sees Bea among the users REST lists on its own node.
  // Ada was there first: the page finds her in the users it is greeted with.
  await waitFor('the page to list Ada', () =>
    page.messagesOfType('users_list').concat(page.messagesOfType('users'))
      .some((message) => message.users.some((user) => user.name === 'Ada')),
  { describe: () => JSON.stringify(page.received.filter((message) => message.type !== 'update')) })
  await waitFor('n1 to list Bea', async () => {
    const users = await n1.getJson(`/api/rooms/${encodeURIComponent(room)}/users`)
    return users.some((user) => user.name === 'Bea')
  })

  // Awareness from a provider reaches a provider on the other node.
  const other = new ProviderEditor(n2, room)
  open.push(other)
  await other.waitUntilSynced()
  assert.equal(other.text.toString(), 'from the provider and the page')
  await waitFor('Ada\'s awareness state on the other node', () =>
    [...other.awareness.getStates().values()].some((state) => state.user?.name === 'Ada'))
})
