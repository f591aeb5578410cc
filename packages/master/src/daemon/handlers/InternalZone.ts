/**
 * The internal zone's records: nodes set and remove the A records of the names they serve
 * (ControlRpcs ZonePut and ZoneRemove, each a node speaking for itself), operators list them
 * (MasterRpcs ZoneList, `mcp dns list`). The master answers DNS queries from the same table
 * (dns/ZoneServer.ts). A name outside the zone or an address that is not IPv4 is refused before
 * anything is stored; a node removes only the records it set.
 */
import { Errors } from "@mcp/domain"
import * as AuthMiddleware from "@mcp/rpc/AuthMiddleware"
import * as Failures from "@mcp/rpc/Failures"
import * as Principal from "@mcp/rpc/Principal"
import { Effect } from "effect"
import * as net from "node:net"
import { MasterDb } from "../../db/MasterDb.js"
import { type MasterSettings, type SomeControlHandlers, type SomeMasterHandlers, viaDb } from "./Common.js"

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** The record's name, normalized, or the problems with it and the address. */
export const checkRecord = (zone: string, rawName: string, address?: string): ReadonlyArray<{ path: string; message: string }> | string => {
  const name = rawName.trim().toLowerCase().replace(/\.$/, "")
  const problems: Array<{ path: string; message: string }> = []
  if (!(name === zone || name.endsWith(`.${zone}`))) {
    problems.push({ path: "name", message: `"${name}" is outside the internal zone ${zone}; the master answers only for names ending in .${zone}` })
  } else if (name.length > 253 || !name.split(".").every((l) => LABEL.test(l))) {
    problems.push({ path: "name", message: `"${name}" is not a host name (labels of letters, digits and hyphens, at most 63 characters each)` })
  }
  if (address !== undefined && !net.isIPv4(address)) problems.push({ path: "address", message: `an A record needs an IPv4 address, got ${JSON.stringify(address)}` })
  return problems.length > 0 ? problems : name
}

export const handlers = (settings: Pick<MasterSettings, "internalZone" | "dnsListen">) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const zone = settings.internalZone.toLowerCase().replace(/\.$/, "")
    /** The middleware's rule, re-checked where the payload is acted on (see Control.ts). */
    const asNode = (rpc: string, node: string) =>
      Effect.flatMap(Principal.CurrentPrincipal, (principal) => AuthMiddleware.authorize(principal, "node", rpc, { guestMayRead: false }, node)).pipe(Failures.fatal(`the node identity check of ${rpc} (the auth middleware should have refused this caller)`))
    const checked = (rawName: string, address?: string) => {
      const result = checkRecord(zone, rawName, address)
      return typeof result === "string" ? Effect.succeed(result) : Effect.fail(new Errors.InvalidRequest({ problems: result }))
    }

    const control = {
      ZonePut: ({ node, name, address }) =>
        Effect.gen(function* () {
          yield* asNode("ZonePut", node)
          const record = yield* checked(name, address)
          const result = yield* viaDb(db.putZoneRecord(record, address, node))
          if (result.changed) yield* viaDb(db.addEvent(node, "dns", undefined, `zone record ${record} -> ${address} (serial ${result.serial})`))
          return result
        }),
      ZoneRemove: ({ node, name }) =>
        Effect.gen(function* () {
          yield* asNode("ZoneRemove", node)
          const record = yield* checked(name)
          const result = yield* viaDb(db.removeZoneRecord(record, node))
          if (result.removed) yield* viaDb(db.addEvent(node, "dns", undefined, `zone record ${record} removed (serial ${result.serial})`))
          else if (result.owner !== undefined) {
            yield* viaDb(db.addEvent(node, "dns", undefined, `zone record ${record} kept: ${result.owner} set it, not ${node}`))
          }
          return { removed: result.removed, serial: result.serial }
        }),
      ZoneRecords: ({ node }) =>
        Effect.gen(function* () {
          yield* asNode("ZoneRecords", node)
          const records = yield* viaDb(db.zoneRecords)
          return records.filter((r) => r.node === node).map((r) => ({ name: r.name, address: r.address }))
        })
    } satisfies SomeControlHandlers

    const master = {
      ZoneList: () =>
        Effect.gen(function* () {
          const records = yield* viaDb(db.zoneRecords)
          const serial = yield* viaDb(db.zoneSerial)
          return { zone, serial, records, ...(settings.dnsListen === undefined ? {} : { listen: settings.dnsListen }) }
        })
    } satisfies SomeMasterHandlers

    return { control, master }
  })
