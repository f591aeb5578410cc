/**
 * The zone the master's DNS server answers from: the records nodes registered (the master's
 * database, read at each query, so a change is served at once) under ns.<zone>, the name server
 * at the address the server listens on.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { MasterDb } from "../db/MasterDb.js"
import type { ZoneState } from "./Zone.js"

export const zoneFromDb = (db: MasterDb, internalZone: string, nameserverAddress: string): Effect.Effect<ZoneState, SqlError> => {
  const origin = internalZone.toLowerCase().replace(/\.$/, "")
  return Effect.map(Effect.all([db.zoneRecords, db.zoneSerial]), ([records, serial]) => ({
    origin,
    serial,
    records: new Map(records.map((r) => [r.name, r.address])),
    nameserver: { name: `ns.${origin}`, address: nameserverAddress }
  }))
}
