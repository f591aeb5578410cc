/**
 * The DnsRecords port: A records for service names in the internal zone. Real layers
 * (PowerDNS, RFC 2136) come with the integrations; `layerNone` is the default when no DNS
 * server is configured, `layerMemory` serves tests.
 */
import { Context, Data, Effect, Layer, Ref } from "effect"
import * as dns from "node:dns"
import * as net from "node:net"
import { type Faults, noFaults } from "../Faults.js"

export class DnsError extends Data.TaggedError("DnsError")<{
  readonly server: string
  readonly operation: string
  readonly reason: string
}> {
  override get message() {
    return `${this.server}: ${this.operation} failed: ${this.reason}`
  }
}

export interface DnsRecords {
  readonly name: string
  /** Sets the A record `name` to exactly `address`, replacing what was there. */
  readonly put: (name: string, address: string) => Effect.Effect<void, DnsError>
  /** Deletes the A record; deleting a missing record succeeds. */
  readonly remove: (name: string) => Effect.Effect<void, DnsError>
  readonly list: Effect.Effect<ReadonlyMap<string, string>, DnsError>
}

export const DnsRecords = Context.GenericTag<DnsRecords>("@mcp/agent/DnsRecords")

/** DNS names compare case-insensitively: every layer keys records by lowercase, without the trailing dot. */
export const normalizeName = (name: string): string => name.trim().toLowerCase().replace(/\.$/, "")

/** `name` normalized, when it is `zone` or below it; records outside the zone are refused before any request. */
export const nameInZone = (server: string, operation: string, name: string, zone: string): Effect.Effect<string, DnsError> => {
  const record = normalizeName(name)
  const origin = normalizeName(zone)
  return record === origin || record.endsWith(`.${origin}`)
    ? Effect.succeed(record)
    : Effect.fail(new DnsError({ server, operation: `${operation} ${name}`, reason: `"${record}" is outside the zone ${origin}` }))
}

/**
 * The IPv4 address an A record for `address` must carry: an IPv4 literal as is, a hostname
 * resolved through the system resolver (an A record holding a name is useless to clients).
 */
export const resolveIPv4 = (server: string, record: string, address: string): Effect.Effect<string, DnsError> => {
  const fail = (reason: string) => new DnsError({ server, operation: `put ${record}`, reason })
  const trimmed = address.trim()
  if (net.isIPv4(trimmed)) return Effect.succeed(trimmed)
  if (net.isIPv6(trimmed)) return Effect.fail(fail(`an A record needs an IPv4 address, got the IPv6 address ${trimmed}`))
  if (trimmed === "") return Effect.fail(fail("the node address is empty"))
  return Effect.async<string, DnsError>((resume) => {
    dns.lookup(trimmed, { family: 4 }, (error, resolved) => {
      if (error !== null) {
        resume(Effect.fail(fail(`the node address "${trimmed}" is not an IPv4 address and does not resolve to one (${error.code ?? error.message})`)))
      } else resume(Effect.succeed(resolved))
    })
  })
}

export const makeMemory = (options: { readonly faults?: Faults; readonly name?: string } = {}) =>
  Effect.gen(function* () {
    const records = yield* Ref.make(new Map<string, string>())
    const faults = options.faults ?? noFaults
    const name = options.name ?? "memory DNS"
    const dns: DnsRecords = {
      name,
      put: (record, address) =>
        Effect.flatMap(faults.take("dns.put"), (f) =>
          f ? Effect.fail(new DnsError({ server: name, operation: `put ${record}`, reason: "injected fault" }))
            : Ref.update(records, (m) => new Map(m).set(normalizeName(record), address))
        ),
      remove: (record) =>
        Effect.flatMap(faults.take("dns.remove"), (f) =>
          f ? Effect.fail(new DnsError({ server: name, operation: `remove ${record}`, reason: "injected fault" }))
            : Ref.update(records, (m) => {
                const next = new Map(m)
                next.delete(normalizeName(record))
                return next
              })
        ),
      list: Ref.get(records)
    }
    return dns
  })

export const layerMemory = (options: { readonly faults?: Faults } = {}) => Layer.effect(DnsRecords, makeMemory(options))

/** No DNS server configured: records are kept in memory only, for listing. */
export const layerNone = Layer.effect(DnsRecords, makeMemory({ name: "no DNS server (records kept locally)" }))
