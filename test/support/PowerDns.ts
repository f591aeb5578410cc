/**
 * Test harness for PowerDNS Authoritative (sqlite3 backend, HTTP API): a private directory with a
 * fresh database, pdns_server as a foreground child on free 127.0.0.1 ports, killed by pid.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as dgram from "node:dgram"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"

const SETUP_HINT = "Fix: run: bash scripts/setup-peers.sh (as root; it apt-installs the DNS test peers)"
const SQLITE_SCHEMA = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"

/** Throws a message naming the setup script when `binary` is not on this machine. */
export const requireBinary = (binary: string, purpose: string): string => {
  for (const dir of (process.env["PATH"] ?? "").split(":").concat(["/usr/sbin", "/usr/bin"])) {
    const candidate = path.join(dir, binary)
    if (dir !== "" && existsSync(candidate)) return candidate
  }
  throw new Error(`${binary} is not installed (needed for ${purpose}). ${SETUP_HINT}`)
}

const bindsTcp = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.createServer()
    s.once("error", () => resolve(false))
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)))
  })

const bindsUdp = (port: number): Promise<number | undefined> =>
  new Promise((resolve) => {
    const s = dgram.createSocket("udp4")
    s.once("error", () => {
      s.close()
      resolve(undefined)
    })
    s.bind(port, "127.0.0.1", () => {
      const bound = s.address().port
      s.close(() => resolve(bound))
    })
  })

/** A port free on 127.0.0.1 for both UDP and TCP (a DNS server listens on both). */
export const freeDnsPort = async (): Promise<number> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await bindsUdp(0)
    if (port !== undefined && (await bindsTcp(port))) return port
  }
  throw new Error("no port on 127.0.0.1 is free for both UDP and TCP")
}

/** A TCP port free on 127.0.0.1. */
export const freeTcpPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

export const exited = (child: ChildProcess, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
    const timer = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/** SIGTERM, then SIGKILL after 5 s; only ever the child's own pid. */
export const killChild = async (child: ChildProcess): Promise<void> => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  child.kill("SIGTERM")
  if (!(await exited(child, 5000))) {
    child.kill("SIGKILL")
    await exited(child, 5000)
  }
}

/** A spawned daemon with its output captured for error messages. */
export interface Daemon {
  readonly child: ChildProcess
  readonly output: () => string
  readonly spawnError: Promise<Error>
}

export const spawnDaemon = (binary: string, args: ReadonlyArray<string>): Daemon => {
  const child = spawn(binary, [...args], { stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout?.on("data", (b: Buffer) => (output += b.toString()))
  child.stderr?.on("data", (b: Buffer) => (output += b.toString()))
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve))
  return { child, output: () => output, spawnError }
}

/** Polls `ready` until it resolves true; fails with the daemon's output when it exits or the time is up. */
export const waitReady = async (daemon: Daemon, what: string, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const failed = await Promise.race([daemon.spawnError, new Promise<undefined>((r) => setTimeout(() => r(undefined), 0))])
    if (failed !== undefined) throw new Error(`could not spawn ${what}: ${failed.message}`)
    const { child } = daemon
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready; its output:\n${daemon.output()}`)
    }
    if (await ready()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  await killChild(daemon.child)
  throw new Error(`${what} was not ready within ${timeoutMs} ms; its output:\n${daemon.output()}`)
}

export interface PowerDnsServer {
  /** `http://127.0.0.1:<port>`, the `apiUrl` PowerDnsRecords takes. */
  readonly apiUrl: string
  readonly apiKey: string
  /** DNS over UDP and TCP on 127.0.0.1. */
  readonly dnsPort: number
  readonly dir: string
  readonly pid: () => number | undefined
  /** Kills pdns_server; the database stays, so `start` brings the same records back. */
  readonly stop: () => Promise<void>
  /** Starts pdns_server again on the same ports and database. */
  readonly start: () => Promise<void>
  /** Stops and deletes the directory. */
  readonly close: () => Promise<void>
}

/** Answers true once the API answers an authenticated GET with 200. */
const apiAnswers = async (apiUrl: string, apiKey: string): Promise<boolean> => {
  try {
    const res = await fetch(`${apiUrl}/api/v1/servers/localhost`, { headers: { "X-API-Key": apiKey }, signal: AbortSignal.timeout(1000) })
    await res.text()
    return res.status === 200
  } catch {
    return false
  }
}

export const startPowerDns = async (options: { readonly timeoutMs?: number } = {}): Promise<PowerDnsServer> => {
  const pdns = requireBinary("pdns_server", "the PowerDNS tests")
  const sqlite3 = requireBinary("sqlite3", "creating the PowerDNS database")
  if (!existsSync(SQLITE_SCHEMA)) throw new Error(`${SQLITE_SCHEMA} is missing (package pdns-backend-sqlite3). ${SETUP_HINT}`)

  const dir = mkdtempSync(path.join(tmpdir(), "mcp-pdns-"))
  const database = path.join(dir, "pdns.sqlite3")
  const init = spawnSync(sqlite3, [database], { input: readFileSync(SQLITE_SCHEMA), encoding: "utf8" })
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`sqlite3 could not create ${database} (exit ${init.status}): ${init.stderr}`)
  }
  const dnsPort = await freeDnsPort()
  const webPort = await freeTcpPort()
  const apiKey = randomBytes(18).toString("base64url")
  const apiUrl = `http://127.0.0.1:${webPort}`
  writeFileSync(
    path.join(dir, "pdns.conf"),
    [
      "launch=gsqlite3",
      `gsqlite3-database=${database}`,
      "local-address=127.0.0.1",
      `local-port=${dnsPort}`,
      `socket-dir=${dir}`,
      "api=yes",
      `api-key=${apiKey}`,
      "webserver=yes",
      "webserver-address=127.0.0.1",
      `webserver-port=${webPort}`,
      "webserver-allow-from=127.0.0.0/8,::1/128",
      // Empty: otherwise pdns looks up its security status off loopback at start.
      "security-poll-suffix=",
      ""
    ].join("\n"),
    { mode: 0o600 }
  )

  let daemon: Daemon | undefined
  const stop = async (): Promise<void> => {
    if (daemon !== undefined) await killChild(daemon.child)
    daemon = undefined
  }
  const start = async (): Promise<void> => {
    if (daemon !== undefined) return
    daemon = spawnDaemon(pdns, [`--config-dir=${dir}`, "--daemon=no", "--guardian=no", "--disable-syslog", "--write-pid=no"])
    await waitReady(daemon, `pdns_server (API ${apiUrl}, DNS 127.0.0.1:${dnsPort})`, () => apiAnswers(apiUrl, apiKey), options.timeoutMs ?? 30_000)
  }
  const close = async (): Promise<void> => {
    await stop()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await start()
  } catch (e) {
    await close()
    throw e
  }
  return { apiUrl, apiKey, dnsPort, dir, pid: () => daemon?.child.pid, stop, start, close }
}

/** One record for `createZone`: names without the trailing dot; a CNAME's content is a name too. */
export interface ZoneRecord {
  readonly name: string
  readonly type: "A" | "AAAA" | "CNAME"
  readonly content: string
}

/**
 * Creates the Native zone `zone` with `records` (one rrset per name and type) through the API;
 * throws with PowerDNS's answer when it refuses, so a test never runs against a missing zone.
 */
export const createZone = async (server: PowerDnsServer, zone: string, records: ReadonlyArray<ZoneRecord>): Promise<void> => {
  const fqdn = (name: string) => `${name.replace(/\.$/, "")}.`
  const rrsets = new Map<string, { name: string; type: string; ttl: number; records: Array<{ content: string; disabled: boolean }> }>()
  for (const r of records) {
    const key = `${fqdn(r.name)} ${r.type}`
    const rrset = rrsets.get(key) ?? { name: fqdn(r.name), type: r.type, ttl: 60, records: [] }
    rrset.records.push({ content: r.type === "CNAME" ? fqdn(r.content) : r.content, disabled: false })
    rrsets.set(key, rrset)
  }
  const res = await fetch(`${server.apiUrl}/api/v1/servers/localhost/zones`, {
    method: "POST",
    headers: { "X-API-Key": server.apiKey, "Content-Type": "application/json" },
    body: JSON.stringify({ name: fqdn(zone), kind: "Native", nameservers: [`ns1.${fqdn(zone)}`], rrsets: [...rrsets.values()] }),
    signal: AbortSignal.timeout(10_000)
  })
  if (res.status !== 201) throw new Error(`PowerDNS refused to create the zone ${zone} (HTTP ${res.status}): ${await res.text()}`)
}
