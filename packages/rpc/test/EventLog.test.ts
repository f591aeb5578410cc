// Reading the event log by kind, by who caused an event and by service (`mcp events --kind audit
// --who ursula`): the filter is applied before the limit, so the newest matching events come
// back however many others were written since. Over a real SQLite file.
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as EventLog from "../src/EventLog.js"
import * as SqliteFile from "../src/SqliteFile.js"

const migrations: SqliteFile.Migrations = {
  "0001_events": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, node TEXT NOT NULL, service TEXT, kind TEXT NOT NULL, message TEXT NOT NULL, who TEXT)`)
}

describe("EventLog", () => {
  it.scoped("filters by kind, by the caller's name and by service before taking the newest `limit`", () => {
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "mcp-eventlog-"))
    return Effect.gen(function* () {
      const log = yield* EventLog.make(EventLog.NodeEvent)
      const ursula = { name: "ursula", kind: "human", role: "user" }
      const gina = { name: "gina", kind: "human", role: "admin" }
      yield* log.append({ node: "master", kind: "audit", service: "web", message: "Deploy web: ok", who: ursula })
      yield* log.append({ node: "master", kind: "audit", service: "db", message: "Deploy db: ok", who: gina })
      yield* log.append({ node: "w1", kind: "health", service: undefined, message: "healthy -> suspect" })
      yield* log.append({ node: "master", kind: "audit", service: "web", message: "Stop web: ok", who: ursula })
      for (let i = 0; i < 5; i++) yield* log.append({ node: "w1", kind: "drift", service: "web", message: `drift ${i}` })

      const messages = (rows: ReadonlyArray<{ readonly message: string }>) => rows.map((r) => r.message)
      expect(messages(yield* log.events(2, 0, { who: "ursula" }))).toEqual(["Deploy web: ok", "Stop web: ok"])
      expect(messages(yield* log.events(10, 0, { kind: "audit", service: "db" }))).toEqual(["Deploy db: ok"])
      expect(messages(yield* log.events(1, 0, { kind: "health" }))).toEqual(["healthy -> suspect"])
      expect(messages(yield* log.events(2, 0, { service: "web" }))).toEqual(["drift 3", "drift 4"])
      expect(yield* log.events(10, 0, { who: "nobody" })).toEqual([])
      // A name is matched whole, as a value (never as SQL or a pattern).
      expect(yield* log.events(10, 0, { who: "ursula' OR '1'='1" })).toEqual([])
      expect(yield* log.events(10, 0, { who: "urs%" })).toEqual([])
      // Following: only matching events after the last one read.
      const lastRead = (yield* log.events(10, 0, { who: "ursula" })).at(-1)!.id
      yield* log.append({ node: "master", kind: "audit", service: "web", message: "Start web: ok", who: ursula })
      yield* log.append({ node: "master", kind: "audit", service: "web", message: "Start web: ok", who: gina })
      expect((yield* log.events(10, lastRead, { who: "ursula" })).map((r) => [r.message, r.who?.name])).toEqual([["Start web: ok", "ursula"]])
    }).pipe(
      Effect.provide(SqliteFile.layer({ filename: nodePath.join(dir, "events.db"), migrations })),
      Effect.ensuring(Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
    )
  })
})
