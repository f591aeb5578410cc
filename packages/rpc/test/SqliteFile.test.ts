/** The daemons' database files are created 0600, their WAL companions too, whatever the umask. */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as SqliteFile from "../src/SqliteFile.js"

const scratch = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(nodePath.join(os.tmpdir(), "mcp-sqlite-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const migrations: SqliteFile.Migrations = {
  "0001_things": Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE things (id INTEGER PRIMARY KEY)`)
}

const modeOf = (path: string) => fs.statSync(path).mode & 0o777

describe("SqliteFile", () => {
  it.scoped("creates the database and its -wal/-shm files with mode 0600 under a permissive umask", () =>
    Effect.gen(function* () {
      const dir = yield* scratch
      const filename = nodePath.join(dir, "registry.db")
      const previous = process.umask(0o000)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.umask(previous)))
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO things (id) VALUES (1)`
        for (const file of [filename, `${filename}-wal`, `${filename}-shm`]) {
          expect(fs.existsSync(file), file).toBe(true)
          expect(modeOf(file), file).toBe(0o600)
        }
      }).pipe(Effect.provide(SqliteFile.layer({ filename, migrations })))
    }))

  it.scoped("narrows a file an older daemon left readable by others", () =>
    Effect.gen(function* () {
      const dir = yield* scratch
      const filename = nodePath.join(dir, "master.db")
      fs.writeFileSync(filename, "", { mode: 0o644 })
      fs.chmodSync(filename, 0o644)
      fs.writeFileSync(`${filename}-wal`, "", { mode: 0o644 })
      fs.chmodSync(`${filename}-wal`, 0o644)
      yield* Effect.provide(
        Effect.sync(() => {
          expect(modeOf(filename)).toBe(0o600)
          expect(modeOf(`${filename}-wal`)).toBe(0o600)
        }),
        SqliteFile.layer({ filename, migrations })
      )
    }))
})
