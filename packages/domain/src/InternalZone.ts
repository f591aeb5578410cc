/**
 * The internal zone as the master keeps it: one A record per name, registered by the node that
 * serves it, and the zone's serial, bumped on every change. What `mcp dns list` shows.
 */
import { Schema } from "effect"

export const ZoneRecord = Schema.Struct({
  /** Lowercase, without the trailing dot. */
  name: Schema.String,
  /** IPv4. */
  address: Schema.String,
  /** The node that registered it (only that node may remove it). */
  node: Schema.String,
  /** ISO 8601, the master's clock. */
  updatedAt: Schema.String
})
export type ZoneRecord = typeof ZoneRecord.Type

export const ZoneView = Schema.Struct({
  zone: Schema.String,
  serial: Schema.Int,
  records: Schema.Array(ZoneRecord),
  /** Where the master answers for the zone (`[dns] listen`), if it does. */
  listen: Schema.optionalWith(Schema.String, { exact: true })
})
export type ZoneView = typeof ZoneView.Type
