/**
 * Test harness for Knot DNS 3.2 as an RFC 2136 peer: one zone, a TSIG key allowed to update and
 * transfer it, a second key allowed only to send NOTIFY; knotd as a child, killed by pid.
 */
import { randomBytes } from "node:crypto"
import * as dns from "node:dns"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import { freeDnsPort, type ManagedProcess, privateDir, removeDir, requireBinary, startManagedProcess } from "./ManagedProcess.js"
import { SETUP_HINT } from "./PowerDns.js"

export interface TsigKeyFixture {
  readonly name: string
  /** base64, as in knot.conf. */
  readonly secret: string
}

export interface KnotServer {
  /** `127.0.0.1:<port>`, the `server` Rfc2136Records takes. */
  readonly server: string
  readonly port: number
  readonly zone: string
  /** Allowed to update and transfer the zone. */
  readonly key: TsigKeyFixture
  /**
   * Allowed only NOTIFY: Knot matches TSIG keys through the zone's ACLs, so a key no ACL of the
   * zone names is BADKEY even for queries; this one is known but may neither update nor transfer.
   */
  readonly outsiderKey: TsigKeyFixture
  readonly pid: () => number | undefined
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
  readonly close: () => Promise<void>
}

const soaAnswers = async (port: number, zone: string): Promise<boolean> => {
  const resolver = new dns.promises.Resolver({ timeout: 500, tries: 1 })
  resolver.setServers([`127.0.0.1:${port}`])
  try {
    await resolver.resolveSoa(zone)
    return true
  } catch {
    return false
  }
}

export const startKnot = async (options: {
  readonly zone: string
  /** Extra A records in the initial zone file, as [relative name, address]. */
  readonly records?: ReadonlyArray<readonly [string, string]>
  readonly timeoutMs?: number
}): Promise<KnotServer> => {
  const knotd = requireBinary("knotd", "the RFC 2136 tests against Knot", SETUP_HINT)
  const zone = options.zone.replace(/\.$/, "")
  const dir = privateDir("knot")
  const port = await freeDnsPort()
  const key = { name: "mcp-test-key", secret: randomBytes(32).toString("base64") }
  const outsiderKey = { name: "mcp-outsider-key", secret: randomBytes(32).toString("base64") }
  const config = path.join(dir, "knot.conf")
  writeFileSync(
    config,
    `server:
    rundir: "${dir}"
    listen: 127.0.0.1@${port}
log:
  - target: stderr
    any: info
database:
    storage: "${dir}"
key:
  - id: ${key.name}
    algorithm: hmac-sha256
    secret: ${key.secret}
  - id: ${outsiderKey.name}
    algorithm: hmac-sha256
    secret: ${outsiderKey.secret}
acl:
  - id: mcp-update
    key: ${key.name}
    action: [update, transfer]
  - id: mcp-notify-only
    key: ${outsiderKey.name}
    action: notify
template:
  - id: default
    storage: "${dir}"
    file: "%s.zone"
zone:
  - domain: ${zone}
    acl: [mcp-update, mcp-notify-only]
`,
    { mode: 0o600 }
  )
  writeFileSync(
    path.join(dir, `${zone}.zone`),
    `$ORIGIN ${zone}.
$TTL 60
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
ns1 A 127.0.0.1
${(options.records ?? []).map(([name, address]) => `${name} A ${address}\n`).join("")}`
  )

  // The directory outlives one process: `stop` then `start` serves the same zone again.
  let daemon: ManagedProcess | undefined
  const stop = async (): Promise<void> => {
    const current = daemon
    daemon = undefined
    await current?.stop()
  }
  const start = async (): Promise<void> => {
    if (daemon !== undefined) return
    daemon = await startManagedProcess({
      name: `knotd (127.0.0.1:${port})`,
      command: knotd,
      args: ["-c", config],
      ready: { awaiting: `an SOA answer for ${zone} from 127.0.0.1:${port}`, check: () => soaAnswers(port, zone) },
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
  return { server: `127.0.0.1:${port}`, port, zone, key, outsiderKey, pid: () => daemon?.pid, stop, start, close }
}
