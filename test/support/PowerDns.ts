/**
 * Test harness for PowerDNS Authoritative (sqlite3 backend, HTTP API): a private directory with a
 * fresh database, pdns_server as a foreground child on free 127.0.0.1 ports, killed by pid.
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { freeDnsPort, freeTcpPort, type ManagedProcess, privateDir, removeDir, requireBinary, startManagedProcess } from "./ManagedProcess.js"

/** Shared with Knot.ts: the DNS peers are installed by the same script. */
export const SETUP_HINT = "Fix: run: bash scripts/setup-peers.sh (as root; it apt-installs the DNS test peers)"
const SQLITE_SCHEMA = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"

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

export const startPowerDns = async (options: {
  readonly timeoutMs?: number
  /** The address the API listens on (default 127.0.0.1), and the networks besides loopback it answers. */
  readonly api?: { readonly address: string; readonly allowFrom: ReadonlyArray<string> }
} = {}): Promise<PowerDnsServer> => {
  const pdns = requireBinary("pdns_server", "the PowerDNS tests", SETUP_HINT)
  const sqlite3 = requireBinary("sqlite3", "creating the PowerDNS database", SETUP_HINT)
  if (!existsSync(SQLITE_SCHEMA)) throw new Error(`${SQLITE_SCHEMA} is missing (package pdns-backend-sqlite3). ${SETUP_HINT}`)

  const dir = privateDir("pdns")
  const database = path.join(dir, "pdns.sqlite3")
  const init = spawnSync(sqlite3, [database], { input: readFileSync(SQLITE_SCHEMA), encoding: "utf8" })
  if (init.status !== 0) {
    removeDir(dir)
    throw new Error(`sqlite3 could not create ${database} (exit ${init.status}): ${init.stderr}`)
  }
  const dnsPort = await freeDnsPort()
  const webPort = await freeTcpPort()
  const apiKey = randomBytes(18).toString("base64url")
  const apiUrl = `http://${options.api?.address ?? "127.0.0.1"}:${webPort}`
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
      `webserver-address=${options.api?.address ?? "127.0.0.1"}`,
      `webserver-port=${webPort}`,
      `webserver-allow-from=${["127.0.0.0/8", "::1/128", ...(options.api?.allowFrom ?? [])].join(",")}`,
      // Empty: otherwise pdns looks up its security status off loopback at start.
      "security-poll-suffix=",
      ""
    ].join("\n"),
    { mode: 0o600 }
  )

  // The directory and database outlive one process: `stop` then `start` brings the same records back.
  let daemon: ManagedProcess | undefined
  const stop = async (): Promise<void> => {
    const current = daemon
    daemon = undefined
    await current?.stop()
  }
  const start = async (): Promise<void> => {
    if (daemon !== undefined) return
    daemon = await startManagedProcess({
      name: `pdns_server (API ${apiUrl}, DNS 127.0.0.1:${dnsPort})`,
      command: pdns,
      args: [`--config-dir=${dir}`, "--daemon=no", "--guardian=no", "--disable-syslog", "--write-pid=no"],
      ready: { awaiting: `its API to answer GET ${apiUrl}/api/v1/servers/localhost with 200`, check: () => apiAnswers(apiUrl, apiKey) },
      timeoutMs: options.timeoutMs ?? 30_000
    })
  }
  const close = async (): Promise<void> => {
    await stop()
    removeDir(dir)
  }
  try {
    await start()
  } catch (e) {
    await close()
    throw e
  }
  return { apiUrl, apiKey, dnsPort, dir, pid: () => daemon?.pid, stop, start, close }
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
