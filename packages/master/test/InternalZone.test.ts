/**
 * The internal zone the master keeps and answers for: nodes set records through /control
 * (ZonePut, ZoneRemove) with the real auth middleware and handlers, the master's database keeps
 * them across a restart, and its DNS server answers from them (asked with Node's resolver).
 */
import { RpcTest } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Authenticator, AuthMiddleware, ControlRpcs, Principal } from "@mcp/rpc"
import { Context, Effect, Layer, Redacted } from "effect"
import { mkdtempSync } from "node:fs"
import { Resolver } from "node:dns/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { checkRecord } from "../src/daemon/handlers/InternalZone.js"
import * as InternalZone from "../src/daemon/handlers/InternalZone.js"
import { layerSqlite, MasterDb } from "../src/db/MasterDb.js"
import { zoneFromDb } from "../src/dns/MasterZone.js"
import { serve } from "../src/dns/ZoneServer.js"

const ZONE = "svc.mcp.internal"
const tokens = new Map([
  ["w1-token", new Principal.Principal({ name: "w1", kind: "system", role: "guest" })],
  ["w2-token", new Principal.Principal({ name: "w2", kind: "system", role: "guest" })],
  ["alice-token", new Principal.Principal({ name: "alice", kind: "human", role: "admin" })]
])

/** The master's zone handlers on the database file `file`, and /control clients by token. */
const harness = (file: string) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      Layer.mergeAll(
        ControlRpcs.toLayer(Effect.gen(function* () {
          const zone = (yield* InternalZone.handlers({ internalZone: ZONE })).control
          const unused = () => Effect.die("not used by this test")
          return { Register: unused, Heartbeat: unused, ...zone }
        })),
        AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(Authenticator.layerMemory(tokens)))
      ).pipe(Layer.provideMerge(MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(file)))))
    )
    const db = Context.get(context, MasterDb)
    const as = (token: string) =>
      RpcTest.makeClient(ControlRpcs).pipe(Effect.provide(Layer.merge(Layer.succeedContext(context), AuthMiddleware.layerClient(Redacted.make(token)))))
    const list = Effect.map(db.zoneRecords, (rs) => rs.map((r) => `${r.name} ${r.address} ${r.node}`))
    return { db, as, list }
  })

const dbFile = () => join(mkdtempSync(join(tmpdir(), "mcp-master-zone-")), "master.db")

describe("the internal zone's records", () => {
  it.scoped("a node sets a record; the same again changes nothing; the serial counts changes", () =>
    Effect.gen(function* () {
      const { as, list, db } = yield* harness(dbFile())
      const w1 = yield* as("w1-token")
      expect(yield* db.zoneSerial).toBe(1)
      expect(yield* w1.ZonePut({ node: "w1" as never, name: "Hello.svc.mcp.internal.", address: "10.0.0.5" })).toEqual({ changed: true, serial: 2 })
      expect(yield* w1.ZonePut({ node: "w1" as never, name: "hello.svc.mcp.internal", address: "10.0.0.5" })).toEqual({ changed: false, serial: 2 })
      expect(yield* w1.ZonePut({ node: "w1" as never, name: "hello.svc.mcp.internal", address: "10.0.0.7" })).toEqual({ changed: true, serial: 3 })
      expect(yield* list).toEqual(["hello.svc.mcp.internal 10.0.0.7 w1"])
    }))

  it.scoped("a name outside the zone, a bad name or an address that is not IPv4 is refused, naming the field, and nothing is stored", () =>
    Effect.gen(function* () {
      const { as, list, db } = yield* harness(dbFile())
      const w1 = yield* as("w1-token")
      for (const [name, address, field] of [
        ["hello.example.com", "10.0.0.5", "name"],
        ["evilsvc.mcp.internal", "10.0.0.5", "name"],
        ["bad_name.svc.mcp.internal", "10.0.0.5", "name"],
        ["hello.svc.mcp.internal", "fd00::5", "address"],
        ["hello.svc.mcp.internal", "hello", "address"]
      ] as const) {
        const error = yield* Effect.flip(w1.ZonePut({ node: "w1" as never, name, address }))
        expect(error).toBeInstanceOf(Errors.InvalidRequest)
        expect((error as Errors.InvalidRequest).problems.map((p) => p.path)).toEqual([field])
      }
      expect((yield* Effect.flip(w1.ZonePut({ node: "w1" as never, name: "x.example.com", address: "10.0.0.5" }))).message)
        .toBe(`invalid request: name: "x.example.com" is outside the internal zone ${ZONE}; the master answers only for names ending in .${ZONE}`)
      expect(yield* list).toEqual([])
      expect(yield* db.zoneSerial).toBe(1)
    }))

  it.scoped("a node speaks only for itself, and removes only what it set: a service that moved keeps its name", () =>
    Effect.gen(function* () {
      const { as, list } = yield* harness(dbFile())
      const w1 = yield* as("w1-token")
      const w2 = yield* as("w2-token")
      const forbidden = yield* Effect.flip(w2.ZonePut({ node: "w1" as never, name: "hello.svc.mcp.internal", address: "10.6.6.6" }))
      expect(forbidden).toBeInstanceOf(Errors.Forbidden)
      expect(yield* Effect.flip((yield* as("alice-token")).ZonePut({ node: "w1" as never, name: "hello.svc.mcp.internal", address: "10.6.6.6" }))).toBeInstanceOf(Errors.Forbidden)
      expect(yield* list).toEqual([])

      yield* w1.ZonePut({ node: "w1" as never, name: "hello.svc.mcp.internal", address: "10.0.0.5" })
      // The service moves to w2, which registers the name; w1 then cleans up after it.
      yield* w2.ZonePut({ node: "w2" as never, name: "hello.svc.mcp.internal", address: "10.0.0.6" })
      expect(yield* w1.ZoneRemove({ node: "w1" as never, name: "hello.svc.mcp.internal" })).toMatchObject({ removed: false })
      expect(yield* list).toEqual(["hello.svc.mcp.internal 10.0.0.6 w2"])
      // Each node lists only what it set.
      yield* w1.ZonePut({ node: "w1" as never, name: "api.svc.mcp.internal", address: "10.0.0.5" })
      expect(yield* w1.ZoneRecords({ node: "w1" as never })).toEqual([{ name: "api.svc.mcp.internal", address: "10.0.0.5" }])
      expect(yield* w2.ZoneRecords({ node: "w2" as never })).toEqual([{ name: "hello.svc.mcp.internal", address: "10.0.0.6" }])
      expect(yield* Effect.flip(w2.ZoneRecords({ node: "w1" as never }))).toBeInstanceOf(Errors.Forbidden)
      yield* w1.ZoneRemove({ node: "w1" as never, name: "api.svc.mcp.internal" })
      expect(yield* w2.ZoneRemove({ node: "w2" as never, name: "hello.svc.mcp.internal" })).toMatchObject({ removed: true })
      expect(yield* list).toEqual([])
    }))

  it.live("the records and the serial survive a master restart, and its DNS server answers from them", () =>
    Effect.gen(function* () {
      const file = dbFile()
      yield* Effect.scoped(Effect.gen(function* () {
        const w1 = yield* (yield* harness(file)).as("w1-token")
        yield* w1.ZonePut({ node: "w1" as never, name: "hello.svc.mcp.internal", address: "10.0.0.5" })
        yield* w1.ZonePut({ node: "w1" as never, name: "api.svc.mcp.internal", address: "10.0.0.6" })
      }))
      // A new master on the same database file.
      yield* Effect.scoped(Effect.gen(function* () {
        const { db, as } = yield* harness(file)
        expect(yield* db.zoneSerial).toBe(3)
        const server = yield* serve({ host: "127.0.0.1", port: 0, zone: zoneFromDb(db, ZONE, "127.0.0.1") })
        const resolver = new Resolver({ timeout: 2000, tries: 1 })
        resolver.setServers([`127.0.0.1:${server.port}`])
        expect(yield* Effect.promise(() => resolver.resolve4("hello.svc.mcp.internal"))).toEqual(["10.0.0.5"])
        expect(yield* Effect.promise(() => resolver.resolveSoa(ZONE))).toMatchObject({ nsname: `ns.${ZONE}`, serial: 3 })
        // A change is answered at once: the server reads the zone at each query.
        yield* (yield* as("w1-token")).ZoneRemove({ node: "w1" as never, name: "api.svc.mcp.internal" })
        const gone = yield* Effect.promise(() => resolver.resolve4("api.svc.mcp.internal").then(() => "found", (e: NodeJS.ErrnoException) => e.code))
        expect(gone).toBe("ENOTFOUND")
        expect(yield* Effect.promise(() => resolver.resolveSoa(ZONE))).toMatchObject({ serial: 4 })
      }))
    }))

  it("checkRecord normalizes names and names every problem", () => {
    expect(checkRecord(ZONE, " API.Svc.MCP.internal. ", "10.0.0.1")).toBe("api.svc.mcp.internal")
    expect(checkRecord(ZONE, ZONE)).toBe(ZONE)
    expect(checkRecord(ZONE, `${"a".repeat(64)}.${ZONE}`, "1.2.3.4")).toEqual([{ path: "name", message: expect.stringContaining("is not a host name") }])
    expect(checkRecord(ZONE, "x.other", "x")).toEqual([
      { path: "name", message: expect.stringContaining("outside the internal zone") },
      { path: "address", message: `an A record needs an IPv4 address, got "x"` }
    ])
  })
})
