/**
 * The port allocator over a real SQLite registry (a file in a scratch directory): tiny ranges,
 * ports held by other services, by the same service or by deploys in progress, several requests
 * in one call, kept ports, the bind probe, exhaustion only when every port was examined,
 * reservations recorded with the saga id, and concurrent calls. A property checks that for
 * random ranges, held sets, refused ports and request counts the allocator succeeds exactly when
 * enough ports are free, and then only with free, distinct ports of the range.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc, Layer } from "effect"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as PortAllocator from "../src/lifecycle/PortAllocator.js"
import { PortsExhausted, type PortRange, type PortRequest } from "../src/lifecycle/PortAllocator.js"
import { layerSqlite, type PortRow, Registry } from "../src/registry/Registry.js"

/** Registry files go to a RAM disk where there is one (the property test opens many). */
const scratch = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "mcp-ports-"))
let files = 0
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** Runs `body` against a fresh registry file. */
const withRegistry = <A, E>(body: (registry: Registry) => Effect.Effect<A, E>) =>
  Effect.scoped(
    Effect.provide(Effect.flatMap(Registry, body), Registry.Default.pipe(Layer.provideMerge(layerSqlite(join(scratch, `registry-${files++}.db`)))))
  )

const everyPortBinds = () => Effect.succeed(true)

const allocator = (registry: Registry, range: PortRange, probe: (port: number) => Effect.Effect<boolean> = everyPortBinds) =>
  PortAllocator.make(registry, range, probe)

/** A committed port of another service (or, with `sagaId`, one a deploy in progress reserved). */
const hold = (registry: Registry, port: number, service = "other", sagaId?: string) =>
  registry.reservePort({ port, service, component: "web", route: undefined, sagaId })

const web: PortRequest = { component: "web", route: undefined }
const requests = (n: number): Array<PortRequest> => Array.from({ length: n }, (_, i) => ({ component: `c${i}`, route: undefined }))
const noKeep = new Map<string, number>()

/** Pins the walk's random starting offset, so every start of a small range can be checked. */
const fromStart = (start: number) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withRandomFixed(effect, [start])

/** An error for a failure message, with its cause (an SqlError's says which constraint failed). */
const show = (e: unknown) => (e instanceof Error && e.cause !== undefined ? `${String(e)} (${String(e.cause)})` : String(e))

/** The PortsExhausted a call must fail with (a success or an SQL error fails the test). */
const exhausted = <A, E, R>(call: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.flip(call), (e) => (e instanceof PortsExhausted ? Effect.succeed(e) : Effect.dieMessage(`expected PortsExhausted, got ${show(e)}`)))

const portsOf = (registry: Registry) => Effect.map(registry.ports, (rows) => rows.map((r) => r.port))

const range = (min: number, max: number): Array<number> => Array.from({ length: max - min + 1 }, (_, i) => min + i)

describe("port allocator", () => {
  it.effect("a one-port range hands out its port, then reports PortsExhausted naming the range, the count and the fix", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        const ports = yield* allocator(registry, { min: 20000, max: 20000 })
        expect(yield* ports.allocate("saga-1", "web", [web], noKeep)).toEqual([20000])
        const error = yield* exhausted(ports.allocate("saga-2", "api", [web], noKeep))
        expect({ wanted: error.wanted, range: error.range, tried: error.tried }).toEqual({ wanted: 1, range: [20000, 20000], tried: 1 })
        expect(error.message).toContain("20000-20000")
        expect(error.message).toContain("widen [ports] in the agent config")
        expect(yield* portsOf(registry)).toEqual([20000])
      })
    ))

  it.effect("the walk starts at a random offset and takes the next free ports in order, wrapping around", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        yield* hold(registry, 20008)
        const ports = yield* allocator(registry, { min: 20000, max: 20009 }, (p) => Effect.succeed(p !== 20000))
        expect(yield* ports.allocate("saga-1", "web", requests(4), noKeep).pipe(fromStart(7))).toEqual([20007, 20009, 20001, 20002])
        // Live random starts spread over the range instead of piling onto its low end.
        const firsts = new Set<number>()
        for (let i = 0; i < 40; i++) {
          firsts.add((yield* ports.allocate(`saga-live-${i}`, "web", [web], noKeep))[0]!)
          yield* registry.releaseSagaPorts(`saga-live-${i}`)
        }
        expect(firsts.size).toBeGreaterThan(1)
      })
    ), 30_000)

  it.effect("a two-port range serves two requests in one call with both ports, from either start", () =>
    Effect.gen(function* () {
      for (const start of [0, 1]) {
        yield* withRegistry((registry) =>
          Effect.gen(function* () {
            const ports = yield* allocator(registry, { min: 20000, max: 20001 })
            const got = yield* ports.allocate("saga-1", "web", requests(2), noKeep).pipe(fromStart(start))
            expect([...got].sort()).toEqual([20000, 20001])
            const error = yield* exhausted(ports.allocate("saga-2", "api", [web], noKeep))
            expect({ wanted: error.wanted, range: error.range, tried: error.tried }).toEqual({ wanted: 1, range: [20000, 20001], tried: 2 })
          })
        )
      }
    }))

  it.effect("with all but one port of the range held by other services, the free one is chosen from every start", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        const all = range(20000, 20009)
        for (const free of all) {
          yield* registry.sql`DELETE FROM ports`
          for (const p of all) if (p !== free) yield* hold(registry, p, `svc-${p}`)
          const ports = yield* allocator(registry, { min: 20000, max: 20009 })
          for (const start of range(0, 9)) {
            const sagaId = `saga-${free}-${start}`
            expect(yield* ports.allocate(sagaId, "web", [web], noKeep).pipe(fromStart(start)), `free ${free}, start ${start}`).toEqual([free])
            yield* registry.releaseSagaPorts(sagaId)
          }
          // With the live random start as well, many times.
          for (let i = 0; i < 50; i++) {
            expect(yield* ports.allocate(`saga-${free}-live-${i}`, "web", [web], noKeep)).toEqual([free])
            yield* registry.releaseSagaPorts(`saga-${free}-live-${i}`)
          }
        }
      })
    ), 30_000)

  it.effect("ports the same service holds, committed or reserved by another of its sagas, are not handed out unless kept", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        yield* hold(registry, 20000, "web") // committed, not in keep (e.g. a blue-green deploy)
        yield* hold(registry, 20001, "web", "saga-old") // a deploy of the same service still in progress
        const ports = yield* allocator(registry, { min: 20000, max: 20002 })
        for (const start of [0, 1, 2]) {
          expect(yield* ports.allocate(`saga-${start}`, "web", [web], noKeep).pipe(fromStart(start))).toEqual([20002])
          yield* registry.releaseSagaPorts(`saga-${start}`)
        }
        const error = yield* exhausted(ports.allocate("saga-3", "web", requests(2), noKeep))
        expect({ wanted: error.wanted, tried: error.tried }).toEqual({ wanted: 2, tried: 3 })
      })
    ))

  it.effect("several requests in one call get distinct ports, each reserved once", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        const ports = yield* allocator(registry, { min: 20000, max: 20004 })
        for (const start of range(0, 4)) {
          const got = yield* ports.allocate(`saga-${start}`, "web", requests(5), noKeep).pipe(fromStart(start))
          expect([...got].sort(), `start ${start}`).toEqual(range(20000, 20004))
          expect(yield* portsOf(registry)).toEqual(range(20000, 20004))
          yield* registry.releaseSagaPorts(`saga-${start}`)
        }
      })
    ))

  it.effect("a kept port comes back to its request, is not reserved again, and is given to no other request", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        yield* hold(registry, 20001, "web") // the service's committed port for web/
        const ports = yield* allocator(registry, { min: 20000, max: 20002 })
        const keep = new Map([[PortAllocator.portKey("web", undefined), 20001]])
        for (const start of [0, 1, 2]) {
          const got = yield* ports.allocate(`saga-${start}`, "web", [{ component: "api", route: undefined }, web, { component: "db", route: "admin" }], keep).pipe(fromStart(start))
          expect(got[1]).toBe(20001)
          expect([...got].sort()).toEqual([20000, 20001, 20002])
          const rows = yield* registry.ports
          expect(rows.find((r) => r.port === 20001)).toEqual({ port: 20001, service: "web", component: "web", route: undefined, sagaId: undefined })
          yield* registry.releaseSagaPorts(`saga-${start}`)
        }
        // A kept port outside the registry (a row lost) is still not handed to another request.
        yield* registry.sql`DELETE FROM ports`
        const alone = yield* allocator(registry, { min: 20001, max: 20001 })
        const error = yield* exhausted(alone.allocate("saga-x", "web", [web, { component: "api", route: undefined }], keep))
        expect({ wanted: error.wanted, tried: error.tried }).toEqual({ wanted: 2, tried: 1 })
        // A redeploy whose every request is kept needs no free port at all.
        expect(yield* alone.allocate("saga-y", "web", [web], keep)).toEqual([20001])
        expect(yield* registry.ports).toEqual([])
      })
    ))

  it.effect("a fully held range fails with PortsExhausted (wanted, range, tried = every port) and reserves nothing", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        for (const p of range(20000, 20007)) yield* hold(registry, p, p % 2 === 0 ? "other" : "third", p === 20003 ? "saga-other" : undefined)
        const probed: Array<number> = []
        const ports = yield* allocator(registry, { min: 20000, max: 20007 }, (p) => Effect.sync(() => probed.push(p) > 0))
        const error = yield* exhausted(ports.allocate("saga-1", "web", requests(3), noKeep))
        expect({ wanted: error.wanted, range: error.range, tried: error.tried }).toEqual({ wanted: 3, range: [20000, 20007], tried: 8 })
        expect(error.message).toBe(
          "no free host port in 20000-20007: all 8 ports are held by services, reserved by deploys in progress or bound by other processes (wanted 3); widen [ports] in the agent config or undeploy unused services"
        )
        expect(probed).toEqual([])
        // Two free ports for three requests: still exhausted, and the two found are not kept reserved.
        yield* registry.sql`DELETE FROM ports WHERE port IN (20002, 20005)`
        const short = yield* exhausted(ports.allocate("saga-2", "web", requests(3), noKeep))
        expect({ wanted: short.wanted, tried: short.tried }).toEqual({ wanted: 3, tried: 8 })
        expect((yield* registry.ports).filter((r) => r.sagaId === "saga-2")).toEqual([])
      })
    ))

  it.effect.prop(
    "with exactly one free port in the range, allocation succeeds every time and returns it",
    { span: fc.integer({ min: 1, max: 40 }), seed: fc.integer({ min: 0, max: 1_000_000 }) },
    ({ span, seed }) =>
      withRegistry((registry) =>
          Effect.gen(function* () {
            const min = 30000
            const free = min + (seed % span)
            for (const p of range(min, min + span - 1)) if (p !== free) yield* hold(registry, p, `svc-${p % 3}`, p % 5 === 0 ? `saga-${p}` : undefined)
            const ports = yield* allocator(registry, { min, max: min + span - 1 })
            expect(yield* ports.allocate("saga-1", "web", [web], noKeep).pipe(fromStart(seed % span))).toEqual([free])
            yield* registry.releaseSagaPorts("saga-1")
            expect(yield* ports.allocate("saga-2", "web", [web], noKeep)).toEqual([free])
          })
      ),
    // Each run opens a registry file: allow for a loaded machine.
    { fastCheck: { numRuns: 50 }, timeout: 60_000 }
  )

  it.effect("ports the bind probe refuses are skipped, each port is probed at most once, and exhaustion waits for the whole range", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        const all = range(20000, 20009)
        for (const bindable of all) {
          for (const start of range(0, 9)) {
            const probed: Array<number> = []
            const probe = (p: number) => Effect.sync(() => (probed.push(p), p === bindable))
            const ports = yield* allocator(registry, { min: 20000, max: 20009 }, probe)
            const sagaId = `saga-${bindable}-${start}`
            expect(yield* ports.allocate(sagaId, "web", [web], noKeep).pipe(fromStart(start)), `bindable ${bindable}, start ${start}`).toEqual([bindable])
            expect(new Set(probed).size).toBe(probed.length)
            yield* registry.releaseSagaPorts(sagaId)
          }
        }
        // Nothing binds: every port is probed once, then PortsExhausted.
        const probed: Array<number> = []
        const none = yield* allocator(registry, { min: 20000, max: 20009 }, (p) => Effect.sync(() => (probed.push(p), false)))
        const error = yield* exhausted(none.allocate("saga-n", "web", [web], noKeep))
        expect({ wanted: error.wanted, range: error.range, tried: error.tried }).toEqual({ wanted: 1, range: [20000, 20009], tried: 10 })
        expect([...probed].sort()).toEqual(all)
        // Held ports are never probed; probe-refused ports are not reserved.
        yield* hold(registry, 20004)
        const seen: Array<number> = []
        const odd = yield* allocator(registry, { min: 20000, max: 20009 }, (p) => Effect.sync(() => (seen.push(p), p % 2 === 1)))
        const got = yield* odd.allocate("saga-o", "web", requests(5), noKeep)
        expect([...got].sort()).toEqual([20001, 20003, 20005, 20007, 20009])
        expect(seen).not.toContain(20004)
        expect(yield* portsOf(registry)).toEqual([20001, 20003, 20004, 20005, 20007, 20009])
      })
    ), 30_000)

  it.effect("reservations are recorded with the saga id, the service, the component and the route", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        const ports = yield* allocator(registry, { min: 20000, max: 20009 })
        const got = yield* ports.allocate("saga-42", "shop", [{ component: "web", route: undefined }, { component: "web", route: "admin" }, { component: "api", route: "grpc" }], noKeep)
        const rows = yield* registry.ports
        expect([...rows].sort((a, b) => got.indexOf(a.port) - got.indexOf(b.port))).toEqual([
          { port: got[0], service: "shop", component: "web", route: undefined, sagaId: "saga-42" },
          { port: got[1], service: "shop", component: "web", route: "admin", sagaId: "saga-42" },
          { port: got[2], service: "shop", component: "api", route: "grpc", sagaId: "saga-42" }
        ] satisfies Array<PortRow>)
        yield* registry.releaseSagaPorts("saga-42")
        expect(yield* registry.ports).toEqual([])
      })
    ))

  it.live("concurrent allocations never get the same port", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        // The probe yields, so without the lock the calls would interleave between choosing and reserving.
        const probe = () => Effect.as(Effect.sleep("1 millis"), true)
        const ports = yield* allocator(registry, { min: 20000, max: 20015 }, probe)
        const results = yield* Effect.all(
          Array.from({ length: 8 }, (_, i) => ports.allocate(`saga-${i}`, `svc-${i}`, requests(2), noKeep)),
          { concurrency: "unbounded" }
        )
        const all = results.flat()
        expect(new Set(all).size).toBe(16)
        expect(yield* portsOf(registry)).toEqual(range(20000, 20015))
        // The range is full now: two more at once both fail, and neither takes a port.
        const more = yield* Effect.all([ports.allocate("saga-a", "a", [web], noKeep), ports.allocate("saga-b", "b", [web], noKeep)].map(Effect.either), { concurrency: "unbounded" })
        expect(more.map((e) => Either.isLeft(e))).toEqual([true, true])
      })
    ), 30_000)

  const scenario = fc
    .integer({ min: 1, max: 12 })
    .chain((span) =>
      fc.record({
        span: fc.constant(span),
        // Held by other services (some by deploys in progress), and one port outside the range.
        held: fc.subarray(range(0, span - 1)),
        refused: fc.subarray(range(0, span - 1)),
        wanted: fc.integer({ min: 1, max: 6 }),
        kept: fc.integer({ min: 0, max: 2 }),
        start: fc.option(fc.integer({ min: 0, max: span - 1 }), { nil: undefined })
      })
    )

  it.effect.prop(
    "succeeds iff enough ports are free (not held, bindable), and never returns a held, refused, duplicate or out-of-range port",
    [scenario],
    ([{ span, held, refused, wanted, kept, start }]) =>
      withRegistry((registry) =>
          Effect.gen(function* () {
            const min = 40000
            const max = min + span - 1
            const heldPorts = new Set(held.map((o) => min + o))
            const refusedPorts = new Set(refused.map((o) => min + o))
            let i = 0
            for (const p of heldPorts) yield* hold(registry, p, `svc-${i}`, i++ % 3 === 0 ? `saga-${p}` : undefined)
            yield* hold(registry, max + 1, "outside")
            // The service's own committed ports, kept for its first `kept` requests (outside the range, as after a range change).
            const keep = new Map<string, number>()
            for (let k = 0; k < Math.min(kept, wanted); k++) {
              yield* hold(registry, min - 1 - k, "web")
              keep.set(PortAllocator.portKey(`c${k}`, undefined), min - 1 - k)
            }
            const ports = yield* allocator(registry, { min, max }, (p) => Effect.succeed(!refusedPorts.has(p)))
            const call = ports.allocate("saga-p", "web", requests(wanted), keep)
            const result = yield* Effect.either(start === undefined ? call : call.pipe(fromStart(start)))
            const free = range(min, max).filter((p) => !heldPorts.has(p) && !refusedPorts.has(p)).length
            const needed = wanted - keep.size
            const reserved = (yield* registry.ports).filter((r) => r.sagaId === "saga-p").map((r) => r.port)
            if (Either.isLeft(result)) {
              const e = result.left
              // (Checked as a boolean: chai cannot print Effect's error objects.)
              expect(e instanceof PortsExhausted, `failed with ${show(e)}`).toBe(true)
              expect(free, `PortsExhausted with ${free} free for ${needed}`).toBeLessThan(needed)
              if (e instanceof PortsExhausted) expect({ wanted: e.wanted, range: e.range, tried: e.tried }).toEqual({ wanted, range: [min, max], tried: span })
              expect(reserved).toEqual([])
              return
            }
            expect(free, `succeeded with ${free} free for ${needed}`).toBeGreaterThanOrEqual(needed)
            const got = result.right
            expect(got).toHaveLength(wanted)
            expect(new Set(got).size).toBe(wanted)
            // Request i < keep.size is c<i>, kept at min - 1 - i.
            for (let k = 0; k < keep.size; k++) expect(got[k], `kept port of c${k}`).toBe(min - 1 - k)
            const fresh = got.slice(keep.size)
            for (const p of fresh) {
              expect(p).toBeGreaterThanOrEqual(min)
              expect(p).toBeLessThanOrEqual(max)
              expect(heldPorts.has(p), `${p} is held`).toBe(false)
              expect(refusedPorts.has(p), `${p} was refused by the probe`).toBe(false)
            }
            expect([...reserved].sort()).toEqual([...fresh].sort())
          })
      ),
    { fastCheck: { numRuns: 120 }, timeout: 60_000 }
  )

  it.effect("a redeploy gets back each route's own kept port, also for several routes of one component", () =>
    withRegistry((registry) =>
      Effect.gen(function* () {
        // As a redeploy sees them: the service's committed ports, keyed the way Lifecycle keys them.
        const owned = [
          { component: "web", route: undefined, port: 20001 },
          { component: "web", route: "admin", port: 20002 },
          { component: "web", route: "metrics", port: 20003 },
          { component: "api", route: undefined, port: 20004 }
        ]
        for (const o of owned) yield* registry.reservePort({ port: o.port, service: "shop", component: o.component, route: o.route, sagaId: undefined })
        const keep = new Map(owned.map((o) => [PortAllocator.portKey(o.component, o.route), o.port]))
        const ports = yield* allocator(registry, { min: 20000, max: 20009 })
        const got = yield* ports.allocate("saga-2", "shop", [...owned.map(({ component, route }) => ({ component, route })), { component: "api", route: "grpc" }], keep)
        expect(got.slice(0, 4)).toEqual([20001, 20002, 20003, 20004])
        // The new route gets a fresh port, the only one reserved by this saga.
        expect(owned.map((o) => o.port)).not.toContain(got[4])
        expect((yield* registry.ports).filter((r) => r.sagaId === "saga-2")).toEqual([
          { port: got[4], service: "shop", component: "api", route: "grpc", sagaId: "saga-2" }
        ])
      })
    ))
})

/** A TCP listener on `host` (port 0: an ephemeral one), closed with the scope. */
const listener = (host: string, port = 0) =>
  Effect.acquireRelease(
    Effect.async<net.Server>((resume) => {
      const server = net.createServer()
      server.listen(port, host, () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )

const portOf = (server: net.Server) => (server.address() as net.AddressInfo).port

/** canBind must answer (a hung probe would stall every deploy): a hang fails the test quickly. */
const answered = (port: number) =>
  PortAllocator.canBind(port).pipe(Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error(`canBind(${port}) never answered`) }))

describe("canBind", () => {
  it.scopedLive("a port another process listens on (on loopback or all interfaces) cannot be bound", () =>
    Effect.gen(function* () {
      expect(yield* answered(portOf(yield* listener("127.0.0.1")))).toBe(false)
      expect(yield* answered(portOf(yield* listener("0.0.0.0")))).toBe(false)
    }))

  it.scopedLive("a free port can be bound, and the probe releases it again at once", () =>
    Effect.gen(function* () {
      const port = yield* Effect.scoped(Effect.map(listener("127.0.0.1"), portOf))
      expect(yield* answered(port)).toBe(true)
      // Released: probing again succeeds, and a container (here: a listener) can take it.
      expect(yield* answered(port)).toBe(true)
      expect(portOf(yield* listener("0.0.0.0", port))).toBe(port)
    }))
})
