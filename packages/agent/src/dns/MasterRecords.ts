/**
 * DnsRecords on the master's internal zone (`[dns] kind = "master"`): the node sets and removes
 * its A records through the master's /control endpoint (ZonePut, ZoneRemove, ZoneRecords), with
 * its own system token, and the master answers DNS queries for them ([dns] listen in its config).
 * The fleet then has one zone without any external DNS server. Tries the master addresses in
 * order, like the agent's link; `list` is the records this node set.
 */
import { Effect, Layer } from "effect"
import { makeControl, type MasterControlOptions } from "../daemon/MasterControl.js"
import { DnsError, DnsRecords, nameInZone, resolveIPv4 } from "./DnsRecords.js"

export interface MasterRecordsOptions extends MasterControlOptions {
  readonly node: string
  readonly zone: string
}

export const make = (options: MasterRecordsOptions) =>
  Effect.gen(function* () {
    const server = `the master's zone (${options.masters.join(", ")})`
    const { firstAnswer } = yield* makeControl(options)
    /** A typed refusal (InvalidRequest, Forbidden) is the answer: the next master would say the same. */
    const refused = (e: unknown) => ["InvalidRequest", "Forbidden"].includes((e as { readonly _tag?: string })._tag ?? "")
    const call = <A, E>(operation: string, f: Parameters<typeof firstAnswer<A, E>>[1]) =>
      Effect.mapError(firstAnswer(operation, f, refused), (e) => new DnsError({ server, operation, reason: e instanceof Error ? e.message : String(e) }))
    const node = options.node as never
    const records: DnsRecords = {
      name: server,
      put: (name, address) =>
        Effect.gen(function* () {
          const record = yield* nameInZone(server, "put", name, options.zone)
          const ip = yield* resolveIPv4(server, record, address)
          yield* call(`put ${record}`, (c) => c.ZonePut({ node, name: record, address: ip }))
        }),
      remove: (name) =>
        Effect.gen(function* () {
          const record = yield* nameInZone(server, "remove", name, options.zone)
          yield* call(`remove ${record}`, (c) => c.ZoneRemove({ node, name: record }))
        }),
      list: Effect.map(call("list", (c) => c.ZoneRecords({ node })), (rs) => new Map(rs.map((r) => [r.name, r.address])))
    }
    return records
  })

export const layer = (options: MasterRecordsOptions) => Layer.scoped(DnsRecords, make(options))
