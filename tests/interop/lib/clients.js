// The two kinds of editor that meet in a coedit room, built from the real JavaScript
// libraries: a y-websocket `WebsocketProvider` (binary y-protocols) and the original
// browser page (JSON messages with hex-encoded full Yjs states). Plus `waitFor`, the
// one way these tests wait for something that arrives over the network.

import { randomUUID } from 'node:crypto'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

/** The shared text of every coedit document, as the original page names it. */
export const TEXT_NAME = 'content'

const WAIT_TIMEOUT_MS = 8_000
const POLL_INTERVAL_MS = 20

/** A room name no other test uses. */
export function uniqueRoom (prefix = 'interop') {
  return `${prefix}-${randomUUID().slice(0, 8)}`
}

/**
 * Polls `check` until it returns something truthy and returns that. On timeout fails
 * with `what` and, when given, `describe()` of the state it saw last.
 */
export async function waitFor (what, check, { timeoutMs = WAIT_TIMEOUT_MS, describe } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const result = await check()
    if (result) return result
    if (Date.now() > deadline) {
      const seen = describe ? `; last seen: ${describe()}` : ''
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${seen}`)
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS))
  }
}

export const hex = (bytes) => Buffer.from(bytes).toString('hex')
export const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'))

/** The text a Yjs document would hold after applying every given full state. */
export function mergedText (...states) {
  const doc = new Y.Doc()
  for (const state of states) Y.applyUpdate(doc, state)
  const text = doc.getText(TEXT_NAME).toString()
  doc.destroy()
  return text
}

/** Closes a `ws` socket and waits for it; a peer that never answers is cut off. */
async function closeSocket (socket, timeoutMs = 1_000) {
  if (!socket || socket.readyState === WebSocket.CLOSED) return
  const closed = new Promise((resolve) => socket.once('close', resolve))
  if (socket.readyState === WebSocket.OPEN) socket.close()
  const timer = setTimeout(() => socket.terminate(), timeoutMs)
  await closed
  clearTimeout(timer)
}

/**
 * A y-websocket editor: its own `Y.Doc` synced through a real `WebsocketProvider`.
 * The cross-tab BroadcastChannel is off: in one Node process it would carry updates
 * between providers directly and hide whatever the server does.
 */
export class ProviderEditor {
  constructor (server, room, { doc = new Y.Doc(), connect = true } = {}) {
    this.room = room
    this.doc = doc
    this.text = doc.getText(TEXT_NAME)
    this.errors = []
    this.closes = []
    this.provider = new WebsocketProvider(server.yjsUrl, room, doc, {
      WebSocketPolyfill: WebSocket,
      disableBc: true,
      connect
    })
    this.awareness = this.provider.awareness
    this.provider.on('connection-error', (event) => {
      this.errors.push(event?.message ?? event?.error?.message ?? String(event))
    })
    this.provider.on('connection-close', (event) => {
      if (event) this.closes.push(`${event.code} ${event.reason ?? ''}`.trim())
    })
  }

  /** What went wrong with the connection so far, for failure messages. */
  diagnosis () {
    return `provider ${this.room} (connected=${this.provider.wsconnected}, synced=${this.provider.synced}, ` +
      `errors=${JSON.stringify(this.errors.slice(-3))}, closes=${JSON.stringify(this.closes.slice(-3))}, ` +
      `text=${JSON.stringify(this.text.toString())})`
  }

  async waitUntilSynced () {
    await waitFor(`${this.room}: provider synced`, () => this.provider.synced, {
      describe: () => this.diagnosis()
    })
  }

  async waitForText (expected) {
    await waitFor(`${this.room}: provider text ${JSON.stringify(expected)}`,
      () => this.text.toString() === expected, { describe: () => this.diagnosis() })
  }

  /** Disconnects (announcing the awareness state's removal) and frees every timer. */
  async destroy () {
    const socket = this.provider.ws
    this.provider.destroy()
    this.awareness.destroy()
    this.doc.destroy()
    await closeSocket(socket)
  }
}

/**
 * The original browser page, message for message: connects to
 * `/api/ws/{room}?client_id=`, sends `join` and `sync_request`, and on every keystroke
 * sends the FULL document state, hex-encoded, followed by a `cursor`. It applies
 * `sync` and `update` messages with `Y.applyUpdate`, skips updates it sent itself, and
 * treats a binary frame as a raw Yjs update.
 */
export class JsonPage {
  static async open (server, room, { name, color }) {
    const page = new JsonPage(server, room, name, color)
    await page.opened
    return page
  }

  constructor (server, room, name, color) {
    this.room = room
    this.name = name
    this.color = color
    this.clientId = randomUUID()
    this.doc = new Y.Doc()
    this.text = this.doc.getText(TEXT_NAME)
    /** Every JSON message received, in order. */
    this.received = []
    /** The full states this page sent, in order. */
    this.sentStates = []
    this.socket = new WebSocket(
      `${server.wsUrl}/api/ws/${encodeURIComponent(room)}?client_id=${this.clientId}`
    )
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', resolve)
      this.socket.once('error', reject)
    })
    this.socket.on('open', () => {
      this.send({ type: 'join', name, color })
      this.send({ type: 'sync_request' })
    })
    this.socket.on('message', (data, isBinary) => this.onMessage(data, isBinary))
    // Kept for diagnosis; an unhandled 'error' event would end the test process.
    this.socketErrors = []
    this.socket.on('error', (error) => this.socketErrors.push(error.message))
  }

  onMessage (data, isBinary) {
    if (isBinary) {
      Y.applyUpdate(this.doc, new Uint8Array(data))
      return
    }
    const message = JSON.parse(data.toString())
    this.received.push(message)
    if (message.type === 'sync' && message.data) {
      Y.applyUpdate(this.doc, unhex(message.data))
    } else if (message.type === 'update' && message.from !== this.clientId && message.data) {
      Y.applyUpdate(this.doc, unhex(message.data))
    }
  }

  send (message) {
    this.socket.send(JSON.stringify(message))
  }

  /** What the page sends after its textarea changed: full state, then cursor. */
  sendKeystroke (cursor) {
    const state = Y.encodeStateAsUpdate(this.doc)
    this.sentStates.push(state)
    this.send({ type: 'update', data: hex(state) })
    this.send({ type: 'cursor', userId: this.clientId, name: this.name, color: this.color, position: cursor })
  }

  /** Types `characters` one keystroke at a time, starting at `index`. */
  type (index, characters) {
    for (const [offset, character] of [...characters].entries()) {
      this.text.insert(index + offset, character)
      this.sendKeystroke(index + offset + 1)
    }
  }

  /** Presses backspace with the cursor at `index`. */
  backspace (index) {
    this.text.delete(index - 1, 1)
    this.sendKeystroke(index - 1)
  }

  messagesOfType (type) {
    return this.received.filter((message) => message.type === type)
  }

  diagnosis () {
    const types = this.received.map((message) => message.type)
    const errors = this.messagesOfType('error').map((message) => message.message)
    return `page ${this.name} in ${this.room} (received=${JSON.stringify(types.slice(-12))}, ` +
      `errors=${JSON.stringify(errors)}, socket errors=${JSON.stringify(this.socketErrors)}, ` +
      `text=${JSON.stringify(this.text.toString())})`
  }

  async waitForText (expected) {
    await waitFor(`${this.name}: page text ${JSON.stringify(expected)}`,
      () => this.text.toString() === expected, { describe: () => this.diagnosis() })
  }

  async destroy () {
    await closeSocket(this.socket)
    this.doc.destroy()
  }
}
