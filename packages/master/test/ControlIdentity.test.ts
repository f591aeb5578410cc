/**
 * The master's /control endpoint speaks only to nodes about themselves: Register and Heartbeat
 * go through the real auth middleware and handlers (in memory, RpcTest), and only the system
 * token named after the node the payload names gets through. Another node's token, the master's
 * own admin system token and a human admin's token are refused with a typed Forbidden naming the
 * rule, and the node's row, its placements and its events stay as they were. A registration writes
 * the node's row and its event together or neither.
 */
import { RpcTest } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Errors, type Names, type Node } from "@mcp/domain"
import { Authenticator, AuthMiddleware, ControlRpcs, Principal } from "@mcp/rpc"
import { SqlClient } from "@effect/sql"
import { Context, Duration, Effect, Exit, Layer, Option, Redacted, TestClock } from "effect"
import { handlers, immediateHeartbeat } from "../src/daemon/handlers/Control.js"
import * as InternalZone from "../src/daemon/handlers/InternalZone.js"
import { layerSqlite, MasterDb } from "../src/db/MasterDb.js"
import { HeartbeatRecords } from "../src/nodes/HeartbeatRecords.js"
import { NodeSupervisors, Prober, SupervisorSettings, TransitionSink } from "../src/nodes/NodeSupervisors.js"

const tokens = new Map([
  ["w1-token", new Principal.Principal({ name: "w1", kind: "system", role: "guest" })],
  ["w2-token", new Principal.Principal({ name: "w2", kind: "system", role: "user" })],
  ["w3-token", new Principal.Principal({ name: "w3", kind: "system", role: "guest" })],
  ["master-token", new Principal.Principal({ name: "master", kind: "system", role: "admin" })],
  ["alice-token", new Principal.Principal({ name: "alice", kind: "human", role: "admin" })]
])

const info = (name: string, addresses: ReadonlyArray<string>, role: Node.NodeRole = "worker"): Node.NodeInfo =>
  ({ name: name as Names.NodeName, role, addresses, arch: "x64", version: "test" })
const resources = { cpuCores: 1, load1: 0, memoryTotalBytes: 1, memoryFreeBytes: 1, diskTotalBytes: 1, diskFreeBytes: 1, containers: 0 }
const shop = [{ service: "shop", running: 1, expected: 1 }]

const harness = Effect.gen(function* () {
  const context = yield* Layer.build(
    Layer.mergeAll(
      ControlRpcs.toLayer(Effect.gen(function* () {
        return {
          ...(yield* handlers({ heartbeatInterval: Duration.seconds(1), missThreshold: 3 })),
          ...(yield* InternalZone.handlers({ internalZone: "svc.mcp.internal" })).control
        }
      })),
      AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(Authenticator.layerMemory(tokens)))
    ).pipe(
      Layer.provideMerge(NodeSupervisors.Default.pipe(Layer.provide(Layer.mergeAll(
        Layer.succeed(SupervisorSettings, { interval: "1 second", missThreshold: 3, probeTimeout: "500 millis" }),
        Layer.succeed(Prober, { probe: () => Effect.void }),
        Layer.succeed(TransitionSink, { record: () => Effect.void })
      )))),
      Layer.provideMerge(HeartbeatRecords.Default),
      Layer.provideMerge(MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(":memory:"))))
    )
  )
  const db = Context.get(context, MasterDb)
  /** A /control client presenting `token`. */
  const as = (token: string) =>
    RpcTest.makeClient(ControlRpcs).pipe(Effect.provide(Layer.merge(Layer.succeedContext(context), AuthMiddleware.layerClient(Redacted.make(token)))))
  const row = (name: string) => Effect.map(db.node(name), Option.map((r) => ({ role: r.info.role, addresses: r.info.addresses })))
  const messages = Effect.map(db.events(1000), (es) => es.map((e) => e.message))
  const now = yield* immediateHeartbeat({ heartbeatInterval: Duration.seconds(1), missThreshold: 3 }).pipe(Effect.provide(context))
  return { db, sql: Context.get(context, SqlClient.SqlClient), supervisors: Context.get(context, NodeSupervisors), records: Context.get(context, HeartbeatRecords), as, row, messages, now }
})

const forbidden = (e: unknown) => {
  expect(e).toBeInstanceOf(Errors.Forbidden)
  return e as Errors.Forbidden
}

describe("/control: a node speaks only for itself", () => {
  it.scoped("another node's token cannot register as w1: Forbidden naming the rule, w1's row unchanged", () =>
    Effect.gen(function* () {
      const { as, row, messages } = yield* harness
      yield* (yield* as("w1-token")).Register({ info: info("w1", ["10.0.0.1:7443"]), resources })
      const eventsBefore = yield* messages

      // w2 tries to move w1 to its own address (the master would then send w1's orders there).
      const error = forbidden(yield* Effect.flip((yield* as("w2-token")).Register({ info: info("w1", ["10.6.6.6:7443"], "edge"), resources })))
      expect(error).toMatchObject({ principal: "w2", role: "user", rpc: "Register" })
      expect(error.message).toBe(
        "w2 (role user) may not call Register: the token w2 may not speak for node w1: a node calls Register with its own system token, named after it; " +
          "create one with `mcp token create --file <token file> --kind system --role guest --name w1` and give it to that node's agent ([master] token_file)"
      )
      expect(yield* row("w1")).toEqual(Option.some({ role: "worker", addresses: ["10.0.0.1:7443"] }))
      expect(yield* messages).toEqual(eventsBefore)
    }))

  it.scoped("another node's heartbeat for w1 is refused and records no placement; w1's own does", () =>
    Effect.gen(function* () {
      const { as, db, records } = yield* harness
      const w1 = yield* as("w1-token")
      yield* w1.Register({ info: info("w1", ["10.0.0.1:7443"]), resources })

      const error = forbidden(yield* Effect.flip((yield* as("w2-token")).Heartbeat({ node: "w1" as Names.NodeName, resources, services: shop })))
      expect(error.rule).toContain("may not speak for node w1")
      yield* records.flush
      expect(yield* db.placements).toEqual([])
      expect(Option.getOrUndefined(yield* db.node("w1"))?.lastHeartbeat).toBeUndefined()

      // The same heartbeat from w1 itself is how the master learns the placement: the refusal above is the token's.
      expect(yield* w1.Heartbeat({ node: "w1" as Names.NodeName, resources, services: shop })).toEqual({ known: true, heartbeatIntervalMs: 1000 })
      yield* records.flush
      expect((yield* db.placements).map((p) => [p.service, p.node])).toEqual([["shop", "w1"]])
    }))

  it.scoped("a heartbeat learns what its node runs, at the next write, except a service with a saga under way: that saga decides", () =>
    Effect.gen(function* () {
      const { as, db, messages, records } = yield* harness
      const w1 = yield* as("w1-token")
      yield* w1.Register({ info: info("w1", ["10.0.0.1:7443"]), resources })
      yield* db.beginSaga("s-busy", "busy", "deploy")
      const services = ["busy", "free", "shop"].map((service) => ({ service, running: 1, expected: 1 }))
      yield* w1.Heartbeat({ node: "w1" as Names.NodeName, resources, services })
      expect(yield* db.placements).toEqual([])
      yield* records.flush
      expect((yield* db.placements).map((p) => [p.service, p.node])).toEqual([["free", "w1"], ["shop", "w1"]])
      expect((yield* messages).filter((m) => m.startsWith("placement learned"))).toEqual(["placement learned from w1's heartbeat", "placement learned from w1's heartbeat"])
    }))

  it.scoped("humans, admins included, and the master's own admin system token are refused both RPCs", () =>
    Effect.gen(function* () {
      const { as, row, db } = yield* harness
      for (const token of ["alice-token", "master-token"]) {
        const client = yield* as(token)
        const register = forbidden(yield* Effect.flip(client.Register({ info: info("w1", ["10.6.6.6:7443"]), resources })))
        const heartbeat = forbidden(yield* Effect.flip(client.Heartbeat({ node: "w1" as Names.NodeName, resources, services: shop })))
        expect(register.role).toBe("admin")
        expect(heartbeat.role).toBe("admin")
      }
      expect(forbidden(yield* Effect.flip((yield* as("alice-token")).Register({ info: info("w1", ["10.6.6.6:7443"]), resources }))).rule).toMatch(
        /^Register is for agents only: a node calls it with its own system token, named after the node \(a human token never may\); create one with `mcp token create/
      )
      expect(yield* row("w1")).toEqual(Option.none())
      expect(yield* db.placements).toEqual([])
    }))

  it.scoped("a node re-registering with its own token may change its addresses and role, and the event says what changed", () =>
    Effect.gen(function* () {
      const { as, row, messages } = yield* harness
      const w1 = yield* as("w1-token")
      yield* w1.Register({ info: info("w1", ["10.0.0.1:7443"]), resources })
      yield* w1.Register({ info: info("w1", ["10.0.0.2:7443", "w1.internal:7443"], "edge"), resources })
      expect(yield* row("w1")).toEqual(Option.some({ role: "edge", addresses: ["10.0.0.2:7443", "w1.internal:7443"] }))
      expect((yield* messages).at(-1)).toBe("registered (edge, x64, version test); was worker at 10.0.0.1:7443, now edge at 10.0.0.2:7443, w1.internal:7443")
    }))

  it.scoped("a node the master does not know is enrolled by a Register with the token named after it", () =>
    Effect.gen(function* () {
      const { as, row } = yield* harness
      const ack = yield* (yield* as("w3-token")).Register({ info: info("w3", ["10.0.0.3:7443"]), resources })
      expect(ack.heartbeatIntervalMs).toBe(1000)
      expect(yield* row("w3")).toEqual(Option.some({ role: "worker", addresses: ["10.0.0.3:7443"] }))
    }))

  it.scoped("a Register whose event cannot be written leaves no row behind and watches nothing: row and event commit together", () =>
    Effect.gen(function* () {
      const { as, row, sql, supervisors } = yield* harness
      // The events table gone, the event's insert fails after the row's upsert ran.
      yield* sql`DROP TABLE events`
      const exit = yield* Effect.exit((yield* as("w3-token")).Register({ info: info("w3", ["10.0.0.3:7443"]), resources }))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* row("w3")).toEqual(Option.none())
      expect(yield* supervisors.health("w3")).toEqual(Option.none())
    }))
})

describe("a heartbeat answered at once (immediateHeartbeat)", () => {
  const principal = (token: string) => tokens.get(token)!
  const hb = (node: string, services = shop) => ({ node: node as Names.NodeName, resources, services })

  it.scoped("answers a node's own heartbeat, stepping its supervisor, keeping its resources and noting its services for the next write", () =>
    Effect.gen(function* () {
      const { as, db, messages, now, records, supervisors } = yield* harness
      const w1 = yield* as("w1-token")
      yield* w1.Register({ info: info("w1", ["10.0.0.1:7443"]), resources })
      const registered = Option.getOrUndefined(yield* supervisors.health("w1"))?.lastHeartbeat
      yield* TestClock.adjust("200 millis")
      // "shop" is placed nowhere: the answer does not wait for the master to learn it.
      expect(now(hb("w1"), principal("w1-token"))).toEqual({ known: true, heartbeatIntervalMs: 1000 })
      const after = Option.getOrUndefined(yield* supervisors.health("w1"))?.lastHeartbeat
      expect(after!.getTime()).toBe(registered!.getTime() + 200)
      expect(yield* db.placements).toEqual([])
      yield* records.flush
      expect(Option.getOrUndefined(yield* db.node("w1"))?.lastHeartbeat).toBe(after!.toISOString())
      expect((yield* db.placements).map((p) => [p.service, p.node])).toEqual([["shop", "w1"]])
      expect((yield* messages).filter((m) => m.startsWith("placement learned"))).toEqual(["placement learned from w1's heartbeat"])
      // Known placed now: the next heartbeats note nothing, and nothing more is learned.
      yield* db.placedAmong(["shop"])
      expect(now(hb("w1"), principal("w1-token"))).toEqual({ known: true, heartbeatIntervalMs: 1000 })
      yield* records.flush
      expect((yield* messages).filter((m) => m.startsWith("placement learned"))).toHaveLength(1)
    }))

  it.scoped("leaves to the handler a heartbeat for another node, stepping and noting nothing; says unknown of a node not watched", () =>
    Effect.gen(function* () {
      const { as, db, now, records, supervisors } = yield* harness
      const w1 = yield* as("w1-token")
      yield* w1.Register({ info: info("w1", ["10.0.0.1:7443"]), resources })
      const before = Option.getOrUndefined(yield* supervisors.health("w1"))?.lastHeartbeat
      yield* TestClock.adjust("200 millis")
      expect(now(hb("w1"), principal("w2-token"))).toBeUndefined()
      expect(now(hb("w1"), principal("alice-token"))).toBeUndefined()
      expect(Option.getOrUndefined(yield* supervisors.health("w1"))?.lastHeartbeat).toEqual(before)
      expect(now(hb("w3", []), principal("w3-token"))).toEqual({ known: false })
      expect(now(hb("w3"), principal("w3-token"))).toEqual({ known: false })
      yield* records.flush
      expect(yield* db.placements).toEqual([])
    }))
})
