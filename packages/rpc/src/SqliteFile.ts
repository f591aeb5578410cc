/**
 * A SQLite database file as the daemons open it: the pragmas every one relies on (foreign keys,
 * waiting on a busy file instead of failing), then its migrations. Migrations only ever add, so a
 * file written by an older daemon migrates forward. The file and its -wal/-shm companions are
 * mode 0600: they hold the node's or fleet's state, secrets' digests included.
 */
import { Migrator, SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { SqlError as SqlFailure } from "@effect/sql/SqlError"
import { Effect, Layer } from "effect"
import { chmodSync, closeSync, constants, fchmodSync, openSync } from "node:fs"

export type Migrations = Readonly<Record<string, Effect.Effect<void, SqlError, SqlClient.SqlClient>>>

/** What SQLite may create beside a database file; it gives them the database file's mode. */
const COMPANIONS = ["-wal", "-shm", "-journal"]

/**
 * Creates the file with mode 0600 before SQLite opens it (so its companions get 0600 too, whatever
 * the umask), and narrows a file an older daemon left open to read.
 */
export const secure = (filename: string): Effect.Effect<void, SqlError> =>
  Effect.try({
    try: () => {
      if (filename === ":memory:" || filename === "" || filename.startsWith("file:")) return
      const fd = openSync(filename, constants.O_RDWR | constants.O_CREAT, 0o600)
      try {
        fchmodSync(fd, 0o600)
      } finally {
        closeSync(fd)
      }
      for (const suffix of COMPANIONS) {
        try {
          chmodSync(filename + suffix, 0o600)
        } catch (e) {
          if ((e as { code?: unknown }).code !== "ENOENT") throw e
        }
      }
    },
    catch: (cause) => new SqlFailure({ cause, message: `cannot create ${filename} with mode 0600` })
  })

export const layer = (options: {
  readonly filename: string
  readonly migrations: Migrations
  /** Applies only the first `upTo` migrations: for tests of migrating an older file. */
  readonly upTo?: number
  /** `NORMAL` trades the last transactions before a power cut for fewer fsyncs (WAL keeps the file consistent). */
  readonly synchronous?: "FULL" | "NORMAL"
  /**
   * The write-ahead log's size, in pages, at which a commit also copies it into the database
   * (SQLite's default: 1,000). That commit holds the event loop for all of the copy: a smaller log
   * is copied more often, each time for less.
   */
  readonly walAutocheckpointPages?: number
}) => {
  const pragmas = Layer.effectDiscard(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`PRAGMA foreign_keys = ON`
      yield* sql`PRAGMA busy_timeout = 5000`
      if (options.synchronous !== undefined) yield* sql.unsafe(`PRAGMA synchronous = ${options.synchronous}`)
      if (options.walAutocheckpointPages !== undefined) yield* sql.unsafe(`PRAGMA wal_autocheckpoint = ${Math.floor(options.walAutocheckpointPages)}`)
    })
  )
  const applied = options.upTo === undefined ? options.migrations : Object.fromEntries(Object.entries(options.migrations).slice(0, options.upTo))
  const migrated = Layer.effectDiscard(Migrator.make({})({ loader: Migrator.fromRecord(applied) }))
  return Layer.provideMerge(migrated, Layer.provideMerge(pragmas, Layer.unwrapEffect(Effect.as(secure(options.filename), SqliteClient.layer({ filename: options.filename })))))
}
