/**
 * A SQLite database file as the daemons open it: the pragmas every one relies on (foreign keys,
 * waiting on a busy file instead of failing), then its migrations. Migrations only ever add, so a
 * file written by an older daemon migrates forward.
 */
import { Migrator, SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer } from "effect"

export type Migrations = Readonly<Record<string, Effect.Effect<void, SqlError, SqlClient.SqlClient>>>

export const layer = (options: {
  readonly filename: string
  readonly migrations: Migrations
  /** Applies only the first `upTo` migrations: for tests of migrating an older file. */
  readonly upTo?: number
  /** `NORMAL` trades the last transactions before a power cut for fewer fsyncs (WAL keeps the file consistent). */
  readonly synchronous?: "FULL" | "NORMAL"
}) => {
  const pragmas = Layer.effectDiscard(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`PRAGMA foreign_keys = ON`
      yield* sql`PRAGMA busy_timeout = 5000`
      if (options.synchronous !== undefined) yield* sql.unsafe(`PRAGMA synchronous = ${options.synchronous}`)
    })
  )
  const applied = options.upTo === undefined ? options.migrations : Object.fromEntries(Object.entries(options.migrations).slice(0, options.upTo))
  const migrated = Layer.effectDiscard(Migrator.make({})({ loader: Migrator.fromRecord(applied) }))
  return Layer.provideMerge(migrated, Layer.provideMerge(pragmas, SqliteClient.layer({ filename: options.filename })))
}
