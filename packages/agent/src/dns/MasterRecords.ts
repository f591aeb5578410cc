/**
 * DnsRecords on the master's internal zone (`[dns] kind = "master"`): the node sets and removes
 * its A records through the master's /control endpoint (ZonePut, ZoneRemove, ZoneRecords), with
 * its own system token, and the master answers DNS queries for them ([dns] listen in its config).
 * The fleet then has one zone without any external DNS server. Tries the master addresses in
 * order, like the agent's link; `list` is the records this node set.
 */
import { ControlRpcs, Transport } from "@mcp/rpc"
import { Effect, Either, Layer } from "effect"
import { DnsError, DnsRecords, nameInZone, resolveIPv4 } from "./DnsRecords.js"

export interface MasterRecordsOptions {
  readonly node: string
  readonly zone: string
  readonly masters: ReadonlyArray<string>
  readonly ca: string
  readonly token: Transport.ClientOptions["token"]
  readonly clientCert?: Transport.ClientOptions["clientCert"]
}

const reasonOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

export const make = (options: MasterRecordsOptions) =>
  Effect.gen(function* () {
    const server = `the master's zone (${options.masters.join(", ")})`
    const clients = yield* Effect.forEach(options.masters, (address) =>
      Effect.map(
        Transport.makeClient(ControlRpcs, {
          url: `https://${address}/control`,
          ca: options.ca,
          token: options.token,
          ...(options.clientCert === undefined ? {} : { clientCert: options.clientCert })
        }),
        (client) => ({ address, client })
      ))
    /** The first master that answers; a typed refusal (InvalidRequest, Forbidden) is an answer too. */
    const call = <A>(operation: string, f: (client: (typeof clients)[number]["client"]) => Effect.Effect<A, unknown>) =>
      Effect.gen(function* () {
        const reasons: Array<string> = []
        for (const { address, client } of clients) {
          const result = yield* Effect.either(f(client))
          if (Either.isRight(result)) return result.right
          const e = result.left as { readonly _tag?: string }
          if (e._tag === "InvalidRequest" || e._tag === "Forbidden") return yield* new DnsError({ server, operation, reason: reasonOf(e) })
          reasons.push(`${address}: ${reasonOf(e)}`)
        }
        return yield* new DnsError({ server, operation, reason: `no master answered (${reasons.join("; ")})` })
      })
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
