// coedit's dashboard: reads the REST API of the server that serves it and redraws
// once a second. No framework and no build step; every call carries the admin
// token when one was entered (kept for this tab only, in sessionStorage).
'use strict'

const TOKEN_KEY = 'coedit.adminToken'
const POLL_MS = 1000
const WINDOW_MS = 15 * 60 * 1000
/** A young server's charts span at least this much, so a few points are not a sliver. */
const MIN_SPAN_MS = 60 * 1000
const MAX_CHIPS = 8
const SVG = 'http://www.w3.org/2000/svg'

const state = {
  samples: [],
  locked: false,
  tokenRefused: false,
  offline: false,
  rooms: [],
  filter: '',
  room: null, // the room page's id, or null on the overview
  stream: null, // AbortController of the room page's event stream
  roomText: null,
  roomUsers: [],
  loadArmed: null,
  routed: false,
  tokenRequired: null
}

const $ = (id) => document.getElementById(id)

/** An element with attributes and children (strings become text, never HTML). */
function el (tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (key === 'class') node.className = value
    else if (key.startsWith('--')) node.style.setProperty(key, value)
    else node.setAttribute(key, value === true ? '' : value)
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child)
  }
  return node
}

// ---- talking to the server ----

class Locked extends Error {}

async function api (path, options = {}) {
  const headers = { ...(options.headers || {}) }
  const token = sessionStorage.getItem(TOKEN_KEY)
  if (token) headers.Authorization = `Bearer ${token}`
  const response = await fetch(path, { ...options, headers, cache: 'no-store' })
  if (response.status === 401) {
    if (token) state.tokenRefused = true
    setLocked(true)
    throw new Locked()
  }
  return response
}

async function getJson (path) {
  const response = await api(path)
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`)
  return response.json()
}

/** True when the server wants a token and none was entered: protected calls wait. */
function needsToken () {
  if (state.tokenRequired && !sessionStorage.getItem(TOKEN_KEY)) {
    setLocked(true)
    return true
  }
  return false
}

/** Protected calls: null while locked, so callers show nothing. */
async function protectedJson (path) {
  if (needsToken()) return null
  try {
    const body = await getJson(path)
    setLocked(false)
    return body
  } catch (error) {
    if (error instanceof Locked) return null
    throw error
  }
}

const roomPath = (id) => `/api/rooms/${encodeURIComponent(id)}`

// ---- formatting ----

function duration (seconds) {
  seconds = Math.floor(seconds)
  const d = Math.floor(seconds / 86400)
  const h = Math.floor(seconds / 3600) % 24
  const m = Math.floor(seconds / 60) % 60
  const s = seconds % 60
  if (d) return `${d} d ${h} h`
  if (h) return `${h} h ${m} min`
  if (m) return `${m} min ${s} s`
  return `${s} s`
}

function bytes (n) {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

function number (value, digits = 0) {
  return Number(value).toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

function ago (iso) {
  if (!iso) return '–'
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000)
  if (seconds < 5) return 'just now'
  return `${duration(seconds)} ago`
}

const clock = (iso) => new Date(iso).toLocaleTimeString('en-GB')
const ms = (value) => value >= 10 ? `${number(value, 0)} ms` : `${number(value, 2)} ms`

// ---- the node ----

function storeInWords (store) {
  if (!store) return 'unknown'
  const name = { sqlite: 'Embedded SQLite', mongodb: 'MongoDB' }[store.backend] || store.backend
  const waiting = store.backlog > 0 ? `, ${number(store.backlog)} updates waiting to be written` : ', everything written'
  if (store.state === 'healthy') return [name, ': ', el('span', { class: 'good-text' }, 'healthy'), waiting]
  return [name, ': ', el('span', { class: 'bad-text' }, 'degraded'), ` — ${store.reason || 'failing'}${waiting}. Editing goes on from memory; writes are retried.`]
}

async function refreshNode () {
  const [metrics, health] = await Promise.all([getJson('/api/metrics'), getJson('/api/health')])
  $('stat-connections').textContent = number(metrics.active_connections)
  $('stat-rooms').textContent = `${number(metrics.rooms_active)} / ${number(metrics.rooms_loaded)}`
  $('stat-rate').textContent = number(metrics.messages_per_sec, 1)
  // Nothing processed in the last minute leaves no latency to show, not a zero.
  $('stat-latency').textContent = metrics.p99_latency_ms > 0 ? `${ms(metrics.p50_latency_ms)} / ${ms(metrics.p99_latency_ms)}` : '–'
  $('stat-uptime').textContent = duration(metrics.uptime_seconds)
  $('stat-store').replaceChildren(...[storeInWords(health.store)].flat())
  const status = $('status')
  const healthy = health.status === 'healthy'
  status.textContent = healthy ? 'healthy' : 'degraded'
  status.className = `pill ${healthy ? 'good' : 'bad'}`
}

async function refreshInfo () {
  const info = await getJson('/api/')
  $('version').textContent = info.version ? `v${info.version}` : ''
  state.tokenRequired = Boolean(info.admin_token_required)
  if (!state.tokenRequired) setLocked(false)
}

// ---- charts ----

async function refreshHistory () {
  const last = state.samples[state.samples.length - 1]
  const query = last ? `?since=${last.timestamp_ms}` : ''
  const history = await getJson(`/api/metrics/history${query}`)
  // A restarted server starts a new history; anything newer than ours is kept.
  state.samples.push(...history.samples)
  const oldest = Date.now() - WINDOW_MS
  while (state.samples.length && state.samples[0].timestamp_ms < oldest) state.samples.shift()
  drawCharts()
}

/** A rounded-up axis maximum: 1, 2, 5 × 10^n. */
function niceMax (value) {
  if (!(value > 0)) return 1
  const power = 10 ** Math.floor(Math.log10(value))
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power
  return 10 * power
}

function drawChart (figure, title, series, unit, format) {
  const width = Math.max(200, figure.clientWidth || 300)
  const height = 150
  const left = 44
  const right = 6
  const top = 8
  const bottom = 20
  const now = Date.now()
  const samples = state.samples
  const span = samples.length ? Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, now - samples[0].timestamp_ms)) : WINDOW_MS
  const x = (t) => left + (width - left - right) * (1 - (now - t) / span)
  const max = niceMax(Math.max(0, ...series.flatMap((s) => samples.map(s.value).filter((v) => v !== null))))
  const y = (v) => top + (height - top - bottom) * (1 - v / max)
  const svg = document.createElementNS(SVG, 'svg')
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag)
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v)
    if (text !== undefined) node.textContent = text
    svg.append(node)
    return node
  }
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`)
  svg.setAttribute('role', 'img')
  svg.dataset.points = String(samples.length)
  const axis = (v) => number(v, max >= 10 ? 0 : max >= 1 ? 1 : 2)
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction
    add('line', { class: 'grid', x1: left, x2: width - right, y1: y(value), y2: y(value) })
    add('text', { class: 'axis', x: left - 6, y: y(value) + 4, 'text-anchor': 'end' }, axis(value))
  }
  for (const fraction of [1, 2 / 3, 1 / 3, 0]) {
    const ago = span * fraction
    const label = fraction === 0 ? 'now' : span > 3 * 60000 ? `−${Math.round(ago / 60000)} min` : `−${Math.round(ago / 1000)} s`
    add('text', {
      class: 'axis',
      x: x(now - ago),
      y: height - 4,
      'text-anchor': fraction === 1 ? 'start' : fraction === 0 ? 'end' : 'middle'
    }, label)
  }
  const latest = samples[samples.length - 1]
  const shown = (sample, s) => sample && s.value(sample) !== null ? format(s.value(sample)) : '–'
  for (const s of series) {
    // A missing value or a gap of more than 3 s (a restart, a stall) breaks the
    // line instead of bridging it.
    const runs = []
    let run = []
    let previous = null
    for (const sample of samples) {
      const value = s.value(sample)
      if (value === null || (previous !== null && sample.timestamp_ms - previous > 3000)) {
        if (run.length) runs.push(run)
        run = []
      }
      if (value !== null) run.push([x(sample.timestamp_ms), y(value)])
      previous = sample.timestamp_ms
    }
    if (run.length) runs.push(run)
    for (const points of runs) {
      const d = points.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join('')
      if (s.fill) {
        add('path', { class: `area ${s.class}`, d: `${d}L${points[points.length - 1][0].toFixed(1)},${y(0)}L${points[0][0].toFixed(1)},${y(0)}Z` })
      }
      add('path', { class: `line ${s.class}`, d })
    }
    const last = runs[runs.length - 1]?.at(-1)
    if (last) add('circle', { class: `dot ${s.class}`, cx: last[0].toFixed(1), cy: last[1].toFixed(1), r: 3 })
  }
  const summary = series.map((s) => `${s.name} ${shown(latest, s)}`).join(', ')
  svg.setAttribute('aria-label', `${title} over the last 15 minutes; now ${summary}`)
  const caption = el('figcaption', {},
    el('span', {}, title, series.length > 1 ? series.map((s) => el('span', { class: 'key' }, el('i', { class: s.class }), s.name)) : null),
    el('b', {}, series.map((s) => shown(latest, s) + (shown(latest, s) === '–' ? '' : unit)).join(' / ')))
  figure.replaceChildren(caption, svg)
}

function drawCharts () {
  const plain = (v) => number(v, v < 10 && v % 1 ? 1 : 0)
  // Received from clients, and delivered to them: the fan-out shows as the gap.
  drawChart($('chart-rate'), 'Messages per second', [
    { name: 'received', class: 's1', fill: true, value: (s) => s.messages },
    { name: 'delivered', class: 's3', value: (s) => s.deliveries }
  ], '', plain)
  drawChart($('chart-latency'), 'Latency (ms)', [
    // A second without messages has no latency: a gap, not a zero.
    { name: 'p50', class: 's1', value: (s) => s.messages ? s.p50_latency_ms : null },
    { name: 'p99', class: 's2', value: (s) => s.messages ? s.p99_latency_ms : null }
  ], ' ms', (v) => number(v, v < 10 ? 2 : 0))
  drawChart($('chart-connections'), 'Connections', [{ name: 'connections', class: 's3', fill: true, value: (s) => s.connections }], '', plain)
}

// ---- the admin token ----

function setLocked (locked) {
  if (state.locked === locked) return
  state.locked = locked
  const lock = $('lock')
  if (!locked) {
    lock.hidden = true
    lock.replaceChildren()
    $('forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY)
    return
  }
  const form = $('token-form').content.firstElementChild.cloneNode(true)
  if (state.tokenRefused) form.querySelector('.error').textContent = 'The server refused that token.'
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    sessionStorage.setItem(TOKEN_KEY, form.token.value.trim())
    state.tokenRefused = false
    setLocked(false)
    tick()
  })
  lock.replaceChildren(form)
  lock.hidden = false
  $('forget-token').hidden = true
  for (const id of ['rooms', 'events', 'room-users', 'room-events']) {
    $(id).replaceChildren(el('p', { class: 'empty' }, 'Shown once the admin token is entered.'))
  }
  $('room-text').replaceChildren()
  lastEventId = null
  stopStream()
}

$('forget-token').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY)
  location.reload()
})

// ---- rooms ----

function userChips (users) {
  if (!users.length) return el('span', { class: 'muted' }, 'nobody')
  const shown = users.slice(0, MAX_CHIPS).map((user) => el('span', {
    class: user.simulated ? 'chip sim' : 'chip',
    '--c': user.color || null,
    title: user.simulated ? `${user.name} (simulated user)` : user.name
  }, user.name || user.id, user.simulated ? el('span', { class: 'tag' }, ' sim') : null))
  if (users.length > MAX_CHIPS) shown.push(el('span', { class: 'muted' }, `+${users.length - MAX_CHIPS} more`))
  return el('div', { class: 'chips' }, shown)
}

function drawRooms () {
  const filter = state.filter.toLowerCase()
  const rooms = state.rooms.filter((room) => room.name.toLowerCase().includes(filter))
  if (!rooms.length) {
    $('rooms').replaceChildren(el('p', { class: 'empty' }, state.rooms.length ? 'No room matches the filter.' : 'No rooms in memory. Rooms appear when someone joins.'))
    return
  }
  const rows = rooms.map((room) => el('tr', { 'data-room': room.id },
    el('td', {}, el('a', { href: `#/room/${encodeURIComponent(room.id)}` }, room.name)),
    el('td', {}, userChips(room.users)),
    el('td', { class: 'num' }, number(room.connections)),
    el('td', { class: 'num' }, bytes(room.doc_size)),
    el('td', { class: 'num' }, ago(room.last_activity))))
  $('rooms').replaceChildren(el('div', { class: 'scroll' }, el('table', {},
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Room'), el('th', { scope: 'col' }, 'Users'),
      el('th', { scope: 'col', class: 'num' }, 'Connections'), el('th', { scope: 'col', class: 'num' }, 'Document'),
      el('th', { scope: 'col', class: 'num' }, 'Last activity'))),
    el('tbody', {}, rows))))
}

async function refreshRooms () {
  const rooms = await protectedJson('/api/rooms')
  if (rooms === null) return
  // Busiest first, then by name.
  rooms.sort((a, b) => (b.connections - a.connections) || a.name.localeCompare(b.name))
  state.rooms = rooms
  for (const room of rooms) remember(room.users)
  drawRooms()
}

$('room-filter').addEventListener('input', (event) => {
  state.filter = event.target.value
  drawRooms()
})

// ---- events ----

/** Names and colours of users seen in listings, so events can name their users:
 * the most recently seen ones (the original page takes a new id at every load,
 * and a wall-mounted dashboard would otherwise keep every id it ever saw). */
const knownUsers = new Map()
const KNOWN_USERS_MAX = 2000
/** Counts names learnt, so the event table is redrawn when one is. */
let namesLearnt = 0
function remember (users) {
  for (const user of users) {
    if (!user.name) continue
    if (!knownUsers.delete(user.id)) namesLearnt++
    knownUsers.set(user.id, user)
  }
  for (const id of knownUsers.keys()) {
    if (knownUsers.size <= KNOWN_USERS_MAX) break
    knownUsers.delete(id)
  }
}

function eventUser (id) {
  if (!id) return ''
  const user = knownUsers.get(id)
  if (user) return userChips([user])
  return el('span', { class: 'muted', title: id }, id.length > 12 ? `${id.slice(0, 8)}…` : id)
}

function eventTable (events, withRoom) {
  if (!events.length) return el('p', { class: 'empty' }, 'No events yet.')
  const rows = events.slice().reverse().map((event) => el('tr', {},
    el('td', { class: 'num' }, clock(event.timestamp)),
    el('td', { class: 'type' }, event.type),
    withRoom ? el('td', {}, event.room_id ? el('a', { href: `#/room/${encodeURIComponent(event.room_id)}` }, event.room_id) : '') : null,
    el('td', {}, eventUser(event.user_id)),
    el('td', {}, event.details)))
  return el('div', { class: 'scroll' }, el('table', {},
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', class: 'num' }, 'Time'), el('th', { scope: 'col' }, 'Event'),
      withRoom ? el('th', { scope: 'col' }, 'Room') : null, el('th', { scope: 'col' }, 'User'), el('th', { scope: 'col' }, 'Details'))),
    el('tbody', {}, rows)))
}

let lastEventId = null
async function refreshEvents () {
  const events = await protectedJson('/api/metrics/events?limit=100')
  if (events === null) return
  // Redrawn when there is something new to say (a new event, a newly known name),
  // so a reader's scroll position is not reset every second.
  const newest = `${events.length ? events[events.length - 1].id : ''}/${namesLearnt}`
  if (newest === lastEventId) return
  lastEventId = newest
  $('events').replaceChildren(eventTable(events, true))
}

// ---- one room ----

/** A cursor is an offset (the original page), a line and column (simulated users), or not sent yet. */
function cursorInWords (position) {
  if (typeof position === 'number') return `cursor ${number(position)}`
  if (position && typeof position === 'object') return `line ${position.line}, column ${position.column}`
  return 'no cursor yet'
}

function drawRoomUsers () {
  const users = state.roomUsers
  if (!users.length) {
    $('room-users').replaceChildren(el('p', { class: 'empty' }, 'Nobody is here.'))
    return
  }
  $('room-users').replaceChildren(el('ul', { class: 'users' }, users.map((user) => el('li', { 'data-user': user.id },
    userChips([user]),
    el('span', { class: 'muted', title: 'cursor position' }, cursorInWords(user.cursor_position))))))
}

/** The text with a caret for each user whose cursor is inside it. */
function drawRoomText () {
  const room = state.roomText
  const pre = $('room-text')
  if (!room) return
  if (!room.loaded) {
    pre.replaceChildren(el('span', { class: 'empty' }, 'This room is not in memory; its text shows when someone joins it.'))
    $('text-meta').textContent = ''
    return
  }
  const text = room.text
  // Positions are as each editor last reported them; one past the end (text
  // deleted by someone else since) is drawn at the end.
  const carets = state.roomUsers
    .filter((user) => !user.simulated && typeof user.cursor_position === 'number' && user.cursor_position >= 0)
    .map((user) => ({ user, at: Math.min(user.cursor_position, text.length) }))
    .sort((a, b) => a.at - b.at)
  const parts = []
  let at = 0
  for (const caret of carets) {
    parts.push(text.slice(at, caret.at))
    parts.push(el('span', { class: 'caret', '--c': caret.user.color || '#888', 'data-name': caret.user.name || caret.user.id, 'aria-hidden': 'true' }))
    at = caret.at
  }
  parts.push(text.slice(at))
  if (!text) parts.push(el('span', { class: 'empty' }, 'The document is empty.'))
  pre.replaceChildren(...parts)
  $('text-meta').textContent = `${number([...text].length)} characters · changed ${room.at.toLocaleTimeString('en-GB')}`
}

function stopStream () {
  if (state.stream) state.stream.abort()
  state.stream = null
}

/** Reads the room's server-sent events; reconnects while the room page is open. */
async function followRoom (id) {
  stopStream()
  if (needsToken()) return
  const controller = new AbortController()
  state.stream = controller
  while (!controller.signal.aborted && state.room === id) {
    try {
      const response = await api(`${roomPath(id)}/stream`, { signal: controller.signal })
      if (!response.ok) throw new Error(`stream: HTTP ${response.status}`)
      setLocked(false)
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
      let buffer = ''
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buffer += value
        let end
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          // Another room's page may have opened since this chunk was read.
          if (state.room !== id) return
          handleStreamEvent(buffer.slice(0, end))
          buffer = buffer.slice(end + 2)
        }
      }
    } catch (error) {
      if (error instanceof Locked || controller.signal.aborted) return
    } finally {
      // A stream that ended for good leaves room for the next one.
      if (state.stream === controller && (controller.signal.aborted || state.room !== id)) state.stream = null
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
  if (state.stream === controller) state.stream = null
}

function handleStreamEvent (block) {
  let type = 'message'
  const data = []
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) type = line.slice(6).trim()
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
  }
  if (!data.length) return
  const body = JSON.parse(data.join('\n'))
  if (type === 'text') state.roomText = { ...body, at: new Date() }
  else if (type === 'users') {
    state.roomUsers = body
    remember(body)
    drawRoomUsers()
  }
  drawRoomText()
}

// From the listing of rooms in memory, not `GET /api/rooms/{id}`, which would load
// a stored room just because someone is looking at its page.
async function refreshRoomInfo () {
  const rooms = await protectedJson('/api/rooms')
  if (rooms === null) return
  remember(rooms.flatMap((room) => room.users))
  const room = rooms.find((each) => each.id === state.room)
  $('room-info').textContent = room
    ? `${number(room.connections)} connection${room.connections === 1 ? '' : 's'} · ` +
      `${number(room.user_count)} user${room.user_count === 1 ? '' : 's'} · document ${bytes(room.doc_size)} · ` +
      `last activity ${ago(room.last_activity)}`
    : 'Not in memory: nobody has joined since the server started, or everyone left a while ago.'
}

async function refreshRoomEvents () {
  const events = await protectedJson(`/api/metrics/events?limit=30&room=${encodeURIComponent(state.room)}`)
  if (events !== null) $('room-events').replaceChildren(eventTable(events, false))
}

async function roomAction (button, run) {
  button.disabled = true
  try {
    $('action-result').textContent = await run()
  } catch (error) {
    if (!(error instanceof Locked)) $('action-result').textContent = `Failed: ${error.message}`
  } finally {
    button.disabled = false
  }
}

$('persist').addEventListener('click', (event) => roomAction(event.currentTarget, async () => {
  const body = await (await api(`${roomPath(state.room)}/persist`, { method: 'POST' })).json()
  return body.success ? `Checkpoint saved (${number(body.size / 2)} bytes).` : `Not saved: ${body.error}`
}))

// Restoring replaces the live document, so it takes a second, deliberate press.
$('load').addEventListener('click', (event) => {
  const button = event.currentTarget
  if (!state.loadArmed) {
    button.textContent = 'Press again to replace the live document'
    button.classList.add('danger')
    state.loadArmed = setTimeout(disarmLoad, 5000)
    return
  }
  disarmLoad()
  roomAction(button, async () => {
    const body = await (await api(`${roomPath(state.room)}/load`)).json()
    return body.success ? `Restored the checkpoint (${number(body.size / 2)} bytes).` : `Not restored: ${body.error}`
  })
})

function disarmLoad () {
  clearTimeout(state.loadArmed)
  state.loadArmed = null
  $('load').textContent = 'Restore checkpoint…'
  $('load').classList.remove('danger')
}

// ---- pages ----

function route () {
  const match = location.hash.match(/^#\/room\/(.+)$/)
  const room = match ? decodeURIComponent(match[1]) : null
  if (state.routed && room === state.room) return
  // Moving between pages puts keyboard focus at the new content; the first load
  // leaves it where the browser starts, before the skip link.
  const navigated = state.routed
  state.routed = true
  state.room = room
  $('overview-view').hidden = room !== null
  $('room-view').hidden = room === null
  $('action-result').textContent = ''
  disarmLoad()
  // Whatever page comes next, the last room's stream is not its.
  stopStream()
  if (room === null) {
    document.title = 'coedit'
  } else {
    $('room-title').textContent = room
    document.title = `${room} · coedit`
    state.roomText = null
    state.roomUsers = []
    $('room-text').replaceChildren()
    $('room-users').replaceChildren()
    $('room-events').replaceChildren()
  }
  if (navigated) $('main').focus({ preventScroll: true })
  tick()
}

window.addEventListener('hashchange', route)

let ticking = false
async function tick () {
  if (ticking) return
  ticking = true
  try {
    // First whether a token is needed, so no protected call is made without one.
    let failed = false
    try {
      await refreshInfo()
    } catch {
      failed = true
    }
    const jobs = [refreshNode(), refreshHistory()]
    if (!failed && state.room === null) jobs.push(refreshRooms(), refreshEvents())
    else if (!failed && !needsToken()) jobs.push(refreshRoomEvents(), refreshRoomInfo())
    const results = await Promise.allSettled(jobs)
    failed = failed || results.some((result) => result.status === 'rejected')
    setOffline(failed)
    if (!failed && state.room !== null && !state.stream && !state.locked) followRoom(state.room)
  } finally {
    ticking = false
  }
}

function setOffline (offline) {
  if (offline === state.offline) return
  state.offline = offline
  $('offline').hidden = !offline
  // What is on the page is from before the server went away: shown, but faded.
  document.body.classList.toggle('offline', offline)
  if (offline) {
    $('status').textContent = 'unreachable'
    $('status').className = 'pill bad'
  }
}

$('forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY)
route()
tick()
setInterval(tick, POLL_MS)
window.addEventListener('resize', drawCharts)
