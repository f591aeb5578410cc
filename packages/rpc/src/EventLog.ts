/**
 * The event log in SQL, shared by the agent's registry and the master's database: one `events`
 * row per event, numbered in the order written, read a page at a time and followed by polling.
 * The two logs differ by one column: the master's rows name the node an event happened on, an
 * agent's all happened on its own node. Events a caller caused (the audit trail, Audit.ts) also
 * name who.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Events } from "@mcp/domain"
import { Chunk, Effect, Option, Schema, Stream } from "effect"
import * as SqlRows from "./SqlRows.js"

const Fields = {
  service: SqlRows.Nullable(Schema.String),
  kind: Events.EventKind,
  message: Schema.String,
  /**
   * Who caused it (the audit trail's events), as JSON; absent for the daemons' own events, which
   * leave the column NULL. The column came later (a migration on each side), so old rows are NULL.
   */
  who: Schema.optionalWith(SqlRows.JsonText(Events.Who), { nullable: true })
}

/** An event as an agent writes it: everything in its log happened on its node. */
export const Event = Schema.Struct(Fields)

/** An event as the master writes it: on the node it names. */
export const NodeEvent = Schema.Struct({ ...Fields, node: Schema.String })

/** What every event row holds, whichever of the two it is. */
export interface EventRow {
  readonly id: number
  readonly at: string
  readonly service: string | undefined
  readonly kind: Events.EventKind
  readonly message: string
  readonly who?: Events.Who | undefined
}

/** Which events to read: of one kind, caused by one caller (its token's name), about one service; each optional. */
export interface EventFilter {
  readonly kind?: Events.EventKind | undefined
  readonly who?: string | undefined
  readonly service?: string | undefined
}

/** Written by the log itself: the number that orders the rows, and the time. */
const Stamp = Schema.Struct({ id: Schema.Number, at: Schema.String })

/** Rows a follower reads per poll: enough to catch up on a burst, bounded for a slow client. */
const FOLLOW_BATCH = 1000
const FOLLOW_EVERY = "500 millis"

/** The log over the current SQL client, of `Event` or `NodeEvent` rows (`Columns`). */
export const make = <A, I extends Readonly<Record<string, unknown>>>(Columns: Schema.Schema<A, I>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const insert = SqlRows.write("events", {
      Request: Schema.Struct({ at: Schema.String, event: Columns }),
      execute: ({ at, event }) => sql`INSERT INTO events ${sql.insert({ ...event, at })}`
    })
    // Many events in one statement, at one time (the master learning hundreds of placements at once).
    const insertAll = SqlRows.write("events", {
      Request: Schema.Struct({ at: Schema.String, events: Schema.Array(Columns) }),
      execute: ({ at, events }) => sql`INSERT INTO events ${sql.insert(events.map((event) => ({ ...event, at })))}`
    })
    // The newest `limit` after `afterId` that pass the filter, in the order written.
    const page = SqlRows.findAll("events", {
      Request: Schema.Struct({
        limit: Schema.Number,
        afterId: Schema.Number,
        kind: Schema.UndefinedOr(Schema.String),
        who: Schema.UndefinedOr(Schema.String),
        service: Schema.UndefinedOr(Schema.String)
      }),
      Result: Schema.extend(Stamp, Columns),
      execute: ({ afterId, kind, limit, service, who }) => {
        const where = sql.and([
          sql`id > ${afterId}`,
          ...(kind === undefined ? [] : [sql`kind = ${kind}`]),
          ...(who === undefined ? [] : [sql`json_extract(who, '$.name') = ${who}`]),
          ...(service === undefined ? [] : [sql`service = ${service}`])
        ])
        return sql`SELECT * FROM (SELECT * FROM events WHERE ${where} ORDER BY id DESC LIMIT ${limit}) ORDER BY id`
      }
    })
    return {
      append: (event: A): Effect.Effect<void, SqlError> => insert({ at: new Date().toISOString(), event }),
      /** `append` for each of `events`, in one statement (keep a call under SQLite's parameter limit). */
      appendAll: (events: ReadonlyArray<A>): Effect.Effect<void, SqlError> =>
        events.length === 0 ? Effect.void : insertAll({ at: new Date().toISOString(), events }),
      events: (limit: number, afterId = 0, filter: EventFilter = {}) => page({ limit, afterId, kind: filter.kind, who: filter.who, service: filter.service })
    }
  })

/**
 * The newest `limit` events, then with `follow` every later one as it is written. The log is
 * polled: every part of the daemon writes its events straight into the table, and the table is
 * the only thing they share.
 */
export const stream = <A extends { readonly id: number }, E, R>(
  page: (limit: number, afterId: number) => Effect.Effect<ReadonlyArray<A>, E, R>,
  options: { readonly limit: number; readonly follow: boolean }
): Stream.Stream<A, E, R> =>
  Stream.unwrap(
    Effect.map(page(options.limit, 0), (initial) => {
      const first = Stream.fromIterable(initial)
      if (!options.follow) return first
      const later = Stream.unfoldChunkEffect(initial.at(-1)?.id ?? 0, (afterId) =>
        Effect.map(Effect.delay(page(FOLLOW_BATCH, afterId), FOLLOW_EVERY), (rows) =>
          Option.some([Chunk.fromIterable(rows), rows.at(-1)?.id ?? afterId] as const)
        )
      )
      return Stream.concat(first, later)
    })
  )

/** An event as the RPC contracts carry it; `node` is where it happened. */
export const toFleetEvent = (row: EventRow, node: string): Events.FleetEvent => ({
  at: row.at,
  node,
  kind: row.kind,
  message: row.message,
  ...(row.service === undefined ? {} : { service: row.service }),
  ...(row.who === undefined ? {} : { who: row.who })
})

/** The column `who` on an `events` table made before the audit trail: for each side's migration. */
export const addWhoColumn = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`ALTER TABLE events ADD COLUMN who TEXT`)
