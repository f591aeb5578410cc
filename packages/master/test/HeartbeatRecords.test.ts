import { describe, expect, it } from "@effect/vitest"
import { Names, type Node } from "@mcp/domain"
import { Clock, Context, Effect, FastCheck as fc, Layer, Option, TestClock } from "effect"
import { SqlClient } from "@effect/sql"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { layerSqlite, MasterDb, WAL_AUTOCHECKPOINT_PAGES } from "../src/db/MasterDb.js"
import { HeartbeatRecords } from "../src/nodes/HeartbeatRecords.js"
import { settle } from "./ClockSteps.js"

const resources = (containers: number): Node.Resources => ({
  cpuCores: 2,
  load1: 0.5,
  memoryTotalBytes: 1e9,
  memoryFreeBytes: 5e8,
  diskTotalBytes: 1e10,
  diskFreeBytes: 5e9,
  containers
})
const info = (name: string): Node.NodeInfo => ({ name: Names.NodeName.make(name), role: "worker", addresses: ["10.0.0.1:7443"], arch: "x64", version: "t" })

/** A database with nodes n1 and n2, and the records writer over it, in a scope of its own (closing it flushes). */
const harness = Effect.gen(function* () {
  const dbContext = yield* Layer.build(MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(":memory:"))))
  const db = Context.get(dbContext, MasterDb)
  for (const n of ["n1", "n2"]) yield* db.upsertNode(info(n), "register")
  const stored = (name: string) => Effect.map(db.node(name), Option.map((r) => ({ containers: r.resources?.containers, lastHeartbeat: r.lastHeartbeat })))
  return { db, dbContext, stored }
})

describe("HeartbeatRecords: heartbeats written in batches", () => {
  it.scoped("many heartbeats of a node are one write of its latest, a second later; nothing is written before", () =>
    Effect.gen(function* () {
      const { dbContext, stored } = yield* harness
      const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
      for (let i = 1; i <= 5; i++) records.recordAt("n1", resources(i), yield* Clock.currentTimeMillis)
      yield* TestClock.adjust(400)
      records.recordAt("n2", resources(7), yield* Clock.currentTimeMillis)
      yield* settle
      expect(yield* stored("n1")).toEqual(Option.some({ containers: undefined, lastHeartbeat: undefined }))
      yield* TestClock.adjust(600)
      yield* settle
      expect(yield* stored("n1")).toEqual(Option.some({ containers: 5, lastHeartbeat: new Date(0).toISOString() }))
      expect(yield* stored("n2")).toEqual(Option.some({ containers: 7, lastHeartbeat: new Date(400).toISOString() }))
    }))

  it.scoped("a node's later heartbeats are written by later writes, every resource as the heartbeat said it, not as its object became", () =>
    Effect.gen(function* () {
      const { db, dbContext, stored } = yield* harness
      const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
      records.recordAt("n1", resources(1), 100)
      yield* records.flush
      expect(yield* stored("n1")).toEqual(Option.some({ containers: 1, lastHeartbeat: new Date(100).toISOString() }))
      // Each field different from the first heartbeat's, and the object changed after it was given.
      const later = { cpuCores: 4, load1: 1.5, memoryTotalBytes: 2e9, memoryFreeBytes: 1e9, diskTotalBytes: 2e10, diskFreeBytes: 1e10, containers: 2 }
      records.recordAt("n1", later, 1_500)
      const said = { ...later }
      later.containers = 99
      later.load1 = 9
      yield* records.flush
      const row = (yield* db.nodes).find((r) => r.info.name === "n1")
      expect(row?.resources).toEqual(said)
      expect(row?.lastHeartbeat).toBe(new Date(1_500).toISOString())
    }))

  it.scoped("a write holds every node's latest, in statements of many rows; a node removed since its heartbeat is not written back", () =>
    Effect.gen(function* () {
      const { db, dbContext, stored } = yield* harness
      const names = Array.from({ length: 1_234 }, (_, i) => `m${i}`)
      for (const n of names) yield* db.upsertNode(info(n), "register")
      const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
      names.forEach((n, i) => records.recordAt(n, resources(i), 1_000 + i))
      records.recordAt("n1", resources(9), 5_000)
      records.recordAt("n2", resources(8), 5_000)
      yield* db.removeNode("n2")
      yield* records.flush
      const rows = new Map((yield* db.nodes).map((r) => [r.info.name as string, r]))
      expect(names.every((n, i) => rows.get(n)?.resources?.containers === i && rows.get(n)?.lastHeartbeat === new Date(1_000 + i).toISOString())).toBe(true)
      expect(yield* stored("n1")).toEqual(Option.some({ containers: 9, lastHeartbeat: new Date(5_000).toISOString() }))
      expect(yield* stored("n2")).toEqual(Option.none())
      expect(rows.size).toBe(names.length + 1)
      // What the dashboard reads for nodes not heard from since the start: names and times only.
      const times = yield* db.lastHeartbeats
      expect(times.size).toBe(names.length + 1)
      expect([times.get("m7"), times.get("n1")]).toEqual([new Date(1_007).toISOString(), new Date(5_000).toISOString()])
    }))

  it.scoped("a large write gives the event loop back between its transactions, so heartbeats are answered during it", () =>
    Effect.gen(function* () {
      const { db, dbContext } = yield* harness
      const names = Array.from({ length: 2_000 }, (_, i) => `m${i}`)
      for (const n of names) yield* db.upsertNode(info(n), "register")
      const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
      names.forEach((n, i) => records.recordAt(n, resources(i), 1_000 + i))
      // Turns of the loop (each would serve the I/O waiting) while the write runs: at least one
      // between each two of its 10 transactions of 200 rows.
      let turns = 0
      let writing = true
      const turn = () => {
        if (!writing) return
        turns++
        setImmediate(turn)
      }
      setImmediate(turn)
      yield* records.flush
      writing = false
      expect(turns).toBeGreaterThanOrEqual(9)
      expect((yield* db.nodes).filter((r) => r.lastHeartbeat !== undefined).length).toBe(names.length)
    }))

  it.scoped("the master's database copies its write-ahead log back every 250 pages, not SQLite's 1,000: the commit that does it holds the event loop", () =>
    Effect.gen(function* () {
      const file = join(mkdtempSync(join(tmpdir(), "mcp-master-wal-")), "master.db")
      const context = yield* Layer.build(layerSqlite(file))
      const sql = Context.get(context, SqlClient.SqlClient)
      const [journal] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
      const [checkpoint] = yield* sql<{ wal_autocheckpoint: number }>`PRAGMA wal_autocheckpoint`
      expect([journal?.journal_mode, checkpoint?.wal_autocheckpoint]).toEqual(["wal", WAL_AUTOCHECKPOINT_PAGES])
      expect(WAL_AUTOCHECKPOINT_PAGES).toBe(250)
    }))

  it.scoped("what is pending when the master stops is written on the way out", () =>
    Effect.gen(function* () {
      const { dbContext, stored } = yield* harness
      yield* Effect.scoped(Effect.gen(function* () {
        const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
        records.recordAt("n2", resources(3), yield* Clock.currentTimeMillis)
      }))
      expect(Option.map(yield* stored("n2"), (r) => r.containers)).toEqual(Option.some(3))
    }))

  it.scoped("services noted by heartbeats are learned a second later, in one write: each on the node that last reported it, not one placed already or with a saga since the note", () =>
    Effect.gen(function* () {
      const { db, dbContext } = yield* harness
      const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
      const report = (...services: ReadonlyArray<string>) => services.map((service) => ({ service }))
      const placements = Effect.map(db.placements, (ps) => ps.map((p) => [p.service, p.node]).sort())
      const learned = Effect.map(db.events(10_000), (es) => es.filter((e) => e.message.startsWith("placement learned")).length)
      yield* db.place("elsewhere", "n2")
      yield* db.beginSaga("s-open", "deploying", "deploy")
      yield* db.beginSaga("s-done", "deployed", "deploy")
      yield* db.endSaga("s-done", "committed")
      const afterItEnded = Date.now() + 60_000
      records.noteServices("n1", report("web", "cart", "elsewhere", "deploying", "deployed"), 0)
      records.noteServices("n2", report("cart"), 0)
      yield* TestClock.adjust(999)
      yield* settle
      expect(yield* placements).toEqual([["elsewhere", "n2"]])
      yield* TestClock.adjust(1)
      yield* settle
      expect(yield* placements).toEqual([["cart", "n2"], ["elsewhere", "n2"], ["web", "n1"]])
      expect(yield* learned).toBe(2)

      // The ended saga decides only for heartbeats that may predate it; the open one always. Each
      // service is held to its own note's time, in the same write.
      yield* db.beginSaga("s-done-too", "deployed-too", "deploy")
      yield* db.endSaga("s-done-too", "committed")
      records.noteServices("n1", report("deployed", "deploying"), afterItEnded)
      records.noteServices("n1", report("deployed-too"), 0)
      yield* records.flush
      expect(yield* placements).toEqual([["cart", "n2"], ["deployed", "n1"], ["elsewhere", "n2"], ["web", "n1"]])

      // More services than one lookup holds, in the same write.
      const many = Array.from({ length: 1_234 }, (_, i) => `svc-${i}`)
      records.noteServices("n2", report(...many), 0)
      yield* records.flush
      expect((yield* placements).length).toBe(4 + many.length)
      expect(yield* learned).toBe(3 + many.length)
      // Known placed once that write committed, without reading them back: noting them again notes nothing.
      expect(many.every(db.placedNow)).toBe(true)
      records.noteServices("n1", report(...many), 0)
      yield* records.flush
      expect(yield* learned).toBe(3 + many.length)
      expect((yield* placements).filter(([, node]) => node === "n1")).toEqual([["deployed", "n1"], ["web", "n1"]])
    }))

  it.scoped("placedAmong finds which of a node's services are placed, among many placements", () =>
    Effect.gen(function* () {
      const { db } = yield* harness
      for (let i = 0; i < 500; i++) yield* db.place(`svc-${i}`, i % 2 === 0 ? "n1" : "n2")
      expect([...(yield* db.placedAmong(["svc-3", "svc-499", "svc-500", "other"]))].sort()).toEqual(["svc-3", "svc-499"])
      expect((yield* db.placedAmong([])).size).toBe(0)
    }))

  it.scoped("a write forgets only what was known of its own service: placing one learnt from a heartbeat leaves the rest known", () =>
    Effect.gen(function* () {
      const { db } = yield* harness
      yield* db.place("web", "n1")
      yield* db.place("cart", "n1")
      expect(["web", "cart"].every(db.placedNow)).toBe(false) // not looked up yet
      yield* db.placedAmong(["web", "cart", "shop"])
      expect(["web", "cart"].every(db.placedNow)).toBe(true)
      yield* db.place("shop", "n2")
      expect(["web", "cart"].every(db.placedNow)).toBe(true)
      expect(["shop"].every(db.placedNow)).toBe(false) // its own entry is forgotten, and read again
      yield* db.unplace("web")
      expect(["cart"].every(db.placedNow)).toBe(true)
      expect(["web"].every(db.placedNow)).toBe(false)
      expect([...(yield* db.placedAmong(["web", "cart", "shop"]))].sort()).toEqual(["cart", "shop"])
    }))

  it.effect.prop(
    "placedAmong, answered from what it read before or was told after a commit, always agrees with the table: through places (one or many at once), unplaces, learning and writes rolled back",
    [fc.array(
      fc.oneof(
        fc.record({ op: fc.constant("place" as const), service: fc.integer({ min: 0, max: 5 }) }),
        fc.record({ op: fc.constant("unplace" as const), service: fc.integer({ min: 0, max: 5 }) }),
        fc.record({ op: fc.constant("rolledBack" as const), service: fc.integer({ min: 0, max: 5 }) }),
        fc.record({ op: fc.constant("placeAll" as const), services: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { maxLength: 4 }) }),
        // As HeartbeatRecords learns: placeAll in a transaction, remembered once it committed (or not, when it failed after).
        // `meddles`: another write of a learnt service's row inside that transaction after placeAll,
        // or after the commit and before the remember: what is remembered must not outlive it.
        fc.record({
          op: fc.constant("learn" as const),
          services: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { maxLength: 4 }),
          commits: fc.boolean(),
          meddles: fc.constantFrom("no" as const, "inside" as const, "after commit" as const)
        }),
        fc.record({ op: fc.constant("ask" as const), services: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { maxLength: 4 }) })
      ),
      { maxLength: 40 }
    )],
    ([ops]) =>
      Effect.gen(function* () {
        const { db } = yield* harness
        const svc = (i: number) => `svc-${i}`
        for (const o of ops) {
          if (o.op === "place") yield* db.place(svc(o.service), "n1")
          else if (o.op === "unplace") yield* db.unplace(svc(o.service))
          else if (o.op === "placeAll") yield* db.placeAll(o.services.map((i) => ({ service: svc(i), node: "n2" })))
          else if (o.op === "learn") {
            const services = o.services.map(svc)
            const meddle = services.length === 0 ? Effect.void : db.unplace(services[0]!)
            const write = Effect.gen(function* () {
              const mark = yield* db.placeAll(services.map((service) => ({ service, node: "n2" })))
              if (o.meddles === "inside") yield* meddle
              if (!o.commits) return yield* Effect.fail("undone" as const)
              return mark
            })
            const committed = yield* Effect.either(db.withTransaction(write))
            if (committed._tag === "Right") {
              if (o.meddles === "after commit") yield* meddle
              db.rememberPlaced(committed.right, services)
            }
          } else if (o.op === "rolledBack") {
            // A write inside a transaction that fails: the table is as before, and so must the answers be.
            yield* Effect.either(db.withTransaction(Effect.zipRight(db.place(svc(o.service), "n2"), Effect.fail("undone" as const))))
          } else {
            const asked = o.services.map(svc)
            const table = new Set((yield* db.placements).map((p) => p.service))
            // Known placed at once (the immediate heartbeat path) only when the table says so.
            if (asked.every(db.placedNow)) expect(asked.filter((s) => !table.has(s))).toEqual([])
            expect([...(yield* db.placedAmong(asked))].sort()).toEqual(asked.filter((s) => table.has(s)).sort())
            // Once looked up, every one is known.
            expect(asked.every(db.placedNow)).toBe(asked.every((s) => table.has(s)))
          }
        }
      }).pipe(Effect.scoped, Effect.orDie),
    { timeout: 120_000, fastCheck: { numRuns: 60 } }
  )
})
