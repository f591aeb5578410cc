/**
 * The DnsRecords port: A records for service names in the internal zone. Real layers
 * (PowerDNS, RFC 2136) come with the integrations; `layerNone` is the default when no DNS
 * server is configured, `layerMemory` serves tests.
 */
import { Context, Data, Effect, Layer, Ref } from "effect"
import { type Faults, noFaults } from "./Faults.js"

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
            : Ref.update(records, (m) => new Map(m).set(record, address))
        ),
      remove: (record) =>
        Effect.flatMap(faults.take("dns.remove"), (f) =>
          f ? Effect.fail(new DnsError({ server: name, operation: `remove ${record}`, reason: "injected fault" }))
            : Ref.update(records, (m) => {
                const next = new Map(m)
                next.delete(record)
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
