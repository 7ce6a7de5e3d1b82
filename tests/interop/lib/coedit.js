// Starts the real `coedit serve` binary on a free loopback port with its own data
// directory, waits until `/api/health` answers, and stops it again. The binary is the
// debug build cargo test leaves behind, or whatever COEDIT_BIN points at.

import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const DEFAULT_BINARY = join(REPOSITORY_ROOT, 'target', 'debug', 'coedit')
const STARTUP_TIMEOUT_MS = 15_000
const SHUTDOWN_TIMEOUT_MS = 10_000
// Enough of the server's log to explain a failure without flooding the test output.
const LOG_TAIL_CHARS = 8_000

/** Every server started by this process, so a crashing test run still kills them. */
const running = new Set()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export function coeditBinary () {
  return process.env.COEDIT_BIN || DEFAULT_BINARY
}

async function freePort () {
  const probe = createServer()
  await new Promise((resolve, reject) => {
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', resolve)
  })
  const { port } = probe.address()
  await new Promise((resolve) => probe.close(resolve))
  return port
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** One running `coedit serve` process. */
export class Coedit {
  /**
   * Starts coedit. Without `dataDir` a fresh temporary directory is used and removed
   * by `cleanup()`; pass the `dataDir` (and `port`, for clients that reconnect) of an
   * earlier server to restart on its data. `args` are added to `coedit serve`'s.
   */
  static async start ({ dataDir, port, args = [] } = {}) {
    const binary = coeditBinary()
    if (!existsSync(binary)) {
      throw new Error(`coedit binary not found at ${binary}: run \`cargo build\` first or set COEDIT_BIN`)
    }
    const ownsDataDir = dataDir === undefined
    const directory = dataDir ?? mkdtempSync(join(tmpdir(), 'coedit-interop-'))
    // A port found free can be taken before coedit binds it; try again on another.
    let lastError
    for (let attempt = 0; attempt < (port ? 1 : 3); attempt++) {
      const server = new Coedit(binary, port ?? await freePort(), directory, ownsDataDir, args)
      try {
        await server.waitUntilHealthy()
        return server
      } catch (error) {
        lastError = error
        const exitedByItself = server.exitCode !== null
        await server.kill()
        if (!exitedByItself) break
      }
    }
    if (ownsDataDir) rmSync(directory, { recursive: true, force: true })
    throw lastError
  }

  constructor (binary, port, dataDir, ownsDataDir, args) {
    this.port = port
    this.dataDir = dataDir
    this.ownsDataDir = ownsDataDir
    this.args = args
    this.log = ''
    this.exitCode = null
    this.child = spawn(binary, [
      'serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir, ...args
    ], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, COEDIT_LOG: process.env.COEDIT_LOG || 'info', NO_COLOR: '1' }
    })
    running.add(this.child)
    const keepLog = (chunk) => {
      this.log = (this.log + chunk.toString()).slice(-LOG_TAIL_CHARS)
    }
    this.child.stdout.on('data', keepLog)
    this.child.stderr.on('data', keepLog)
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        running.delete(this.child)
        this.exitCode = code ?? signal
        resolve(this.exitCode)
      })
    })
  }

  /** `http://127.0.0.1:PORT` */
  get httpUrl () {
    return `http://127.0.0.1:${this.port}`
  }

  /** `ws://127.0.0.1:PORT` */
  get wsUrl () {
    return `ws://127.0.0.1:${this.port}`
  }

  /** The base URL a y-websocket `WebsocketProvider` is given; the room name follows it. */
  get yjsUrl () {
    return `${this.wsUrl}/api/yjs`
  }

  async waitUntilHealthy () {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS
    while (Date.now() < deadline) {
      if (this.exitCode !== null) {
        throw new Error(`coedit exited with ${this.exitCode} before answering /api/health:\n${this.log}`)
      }
      try {
        const response = await fetch(`${this.httpUrl}/api/health`, { signal: AbortSignal.timeout(1_000) })
        if (response.ok) return
      } catch {
        // Not listening yet.
      }
      await sleep(50)
    }
    throw new Error(`coedit did not answer /api/health within ${STARTUP_TIMEOUT_MS} ms:\n${this.log}`)
  }

  /** GET a JSON document from the REST API; throws on a non-2xx answer. */
  async getJson (path) {
    const response = await fetch(`${this.httpUrl}${path}`, { signal: AbortSignal.timeout(5_000) })
    const body = await response.text()
    if (!response.ok) throw new Error(`GET ${path} answered ${response.status}: ${body}`)
    return JSON.parse(body)
  }

  /**
   * Asks coedit to shut down as an operator would (SIGTERM) and waits for it; returns
   * the exit code. Fails if it does not stop in time (it is then killed).
   */
  async stopGracefully () {
    if (this.exitCode !== null) return this.exitCode
    this.child.kill('SIGTERM')
    const timedOut = Symbol('timed out')
    const outcome = await Promise.race([this.exited, sleep(SHUTDOWN_TIMEOUT_MS).then(() => timedOut)])
    if (outcome === timedOut) {
      await this.kill()
      throw new Error(`coedit did not stop within ${SHUTDOWN_TIMEOUT_MS} ms of SIGTERM:\n${this.log}`)
    }
    return outcome
  }

  async kill () {
    if (this.exitCode === null) {
      this.child.kill('SIGKILL')
      await this.exited
    }
  }

  /** Kills the process if it still runs and removes a data directory it created. */
  async cleanup () {
    await this.kill()
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true })
  }
}
