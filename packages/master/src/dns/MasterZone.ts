/**
 * The zone the master's DNS server answers from: the records nodes registered (the master's
 * database) under ns.<zone>, the name server at the address the server listens on.
 *
 * Each query reads the serial, one row, and the records only when it changed since the last
 * read: every change to the records bumps the serial in the same transaction, so a change is
 * served at once, and a query does not read the whole zone (bench/serve-by-name.ts). A change
 * landing between the two reads leaves newer records under an older serial, read again next time.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { MasterDb } from "../db/MasterDb.js"
import type { ZoneState } from "./Zone.js"

export const zoneFromDb = (db: MasterDb, internalZone: string, nameserverAddress: string): Effect.Effect<ZoneState, SqlError> => {
  const origin = internalZone.toLowerCase().replace(/\.$/, "")
  // This zone's last read, reused while the serial stays the same.
  let last: ZoneState | undefined
  return Effect.flatMap(db.zoneSerial, (serial) =>
    last !== undefined && last.serial === serial
      ? Effect.succeed(last)
      : Effect.map(db.zoneRecords, (records) => {
        last = {
          origin,
          serial,
          records: new Map(records.map((r) => [r.name, r.address])),
          nameserver: { name: `ns.${origin}`, address: nameserverAddress }
        }
        return last
      }))
}
