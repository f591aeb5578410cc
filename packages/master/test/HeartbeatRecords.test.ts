import { describe, expect, it } from "@effect/vitest"
import { Names, type Node } from "@mcp/domain"
import { Context, Effect, FastCheck as fc, Layer, Option, TestClock } from "effect"
import { layerSqlite, MasterDb } from "../src/db/MasterDb.js"
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
      for (let i = 1; i <= 5; i++) yield* records.record("n1", resources(i))
      yield* TestClock.adjust(400)
      yield* records.record("n2", resources(7))
      yield* settle
      expect(yield* stored("n1")).toEqual(Option.some({ containers: undefined, lastHeartbeat: undefined }))
      yield* TestClock.adjust(600)
      yield* settle
      expect(yield* stored("n1")).toEqual(Option.some({ containers: 5, lastHeartbeat: new Date(0).toISOString() }))
      expect(yield* stored("n2")).toEqual(Option.some({ containers: 7, lastHeartbeat: new Date(400).toISOString() }))
    }))

  it.scoped("what is pending when the master stops is written on the way out", () =>
    Effect.gen(function* () {
      const { dbContext, stored } = yield* harness
      yield* Effect.scoped(Effect.gen(function* () {
        const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
        yield* records.record("n2", resources(3))
      }))
      expect(Option.map(yield* stored("n2"), (r) => r.containers)).toEqual(Option.some(3))
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
      expect(db.allPlacedNow(["web", "cart"])).toBe(false) // not looked up yet
      yield* db.placedAmong(["web", "cart", "shop"])
      expect(db.allPlacedNow(["web", "cart"])).toBe(true)
      yield* db.place("shop", "n2")
      expect(db.allPlacedNow(["web", "cart"])).toBe(true)
      expect(db.allPlacedNow(["shop"])).toBe(false) // its own entry is forgotten, and read again
      yield* db.unplace("web")
      expect(db.allPlacedNow(["cart"])).toBe(true)
      expect(db.allPlacedNow(["web"])).toBe(false)
      expect([...(yield* db.placedAmong(["web", "cart", "shop"]))].sort()).toEqual(["cart", "shop"])
    }))

  it.effect.prop(
    "placedAmong, answered from what it read before, always agrees with the table: through places, unplaces and writes rolled back",
    [fc.array(
      fc.oneof(
        fc.record({ op: fc.constant("place" as const), service: fc.integer({ min: 0, max: 5 }) }),
        fc.record({ op: fc.constant("unplace" as const), service: fc.integer({ min: 0, max: 5 }) }),
        fc.record({ op: fc.constant("rolledBack" as const), service: fc.integer({ min: 0, max: 5 }) }),
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
          else if (o.op === "rolledBack") {
            // A write inside a transaction that fails: the table is as before, and so must the answers be.
            yield* Effect.either(db.withTransaction(Effect.zipRight(db.place(svc(o.service), "n2"), Effect.fail("undone" as const))))
          } else {
            const asked = o.services.map(svc)
            const table = new Set((yield* db.placements).map((p) => p.service))
            // Known placed at once (the immediate heartbeat path) only when the table says so.
            if (db.allPlacedNow(asked)) expect(asked.filter((s) => !table.has(s))).toEqual([])
            expect([...(yield* db.placedAmong(asked))].sort()).toEqual(asked.filter((s) => table.has(s)).sort())
            // Once looked up, every one is known.
            expect(db.allPlacedNow(asked)).toBe(asked.every((s) => table.has(s)))
          }
        }
      }).pipe(Effect.scoped, Effect.orDie),
    { timeout: 120_000, fastCheck: { numRuns: 60 } }
  )
})
