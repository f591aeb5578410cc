/**
 * The journaled saga over a real SQLite journal: what the journal records for each step, the
 * order compensations run in and the data they get, what a failing compensation reports (error,
 * log, a saga left open), and a later compensation run that finishes only what is left.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Layer, Logger, Metric, Schema } from "effect"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Saga from "../src/Saga.js"
import * as SagaJournal from "../src/SagaJournal.js"

const scratch = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "mcp-saga-"))
let files = 0
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

type Registry = SagaJournal.SagaJournal<"deploy">

/** Runs `body` against a journal in a fresh database file, with warnings logged to `logs`. */
const withRegistry = <A, E>(logs: Array<string>, body: (registry: Registry) => Effect.Effect<A, E>) =>
  Effect.scoped(
    Effect.provide(
      Effect.flatMap(Effect.zipRight(SagaJournal.createTables, SagaJournal.make(Schema.Literal("deploy"))), body),
      Layer.mergeAll(
        SqliteClient.layer({ filename: join(scratch, `journal-${files++}.db`) }),
        Logger.replace(
          Logger.defaultLogger,
          Logger.make(({ logLevel, message }) => void logs.push(`${logLevel.label}: ${Array.isArray(message) ? message.join(" ") : String(message)}`))
        )
      )
    )
  )

/** A step that journals `intent` and returns `result` (or fails with `error`). */
const step = (name: string, intent: unknown, outcome: { readonly result: unknown } | { readonly error: unknown }): Saga.Step<unknown, never> => ({
  name,
  intent: () => intent,
  run: "error" in outcome ? Effect.fail(outcome.error) : Effect.succeed(outcome.result)
})

/** The StepFailed a saga must fail with (a success or an SQL error fails the test). */
const stepFailed = <A, E, R>(saga: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.flip(saga), (e) => (e instanceof Saga.StepFailed ? Effect.succeed(e) : Effect.dieMessage(`expected StepFailed, got ${String(e)}`)))

const journalOf = (registry: Registry, sagaId: string) =>
  Effect.map(registry.sagaSteps(sagaId), (rows) => rows.map((r) => [r.step, r.phase, r.data]))

const stateOf = (registry: Registry, sagaId: string) =>
  Effect.gen(function* () {
    for (const state of ["running", "committed", "compensated", "failed"] as const) {
      if ((yield* registry.sagasIn(state)).some((s) => s.id === sagaId)) return state
    }
    return "absent"
  })

describe("Saga.run", () => {
  it.live("a failed step undoes the steps that ran, newest first, each from its journaled intent and result, and the saga ends compensated", () => {
    const logs: Array<string> = []
    return withRegistry(logs, (registry) =>
      Effect.gen(function* () {
        yield* registry.beginSaga("s1", "shop", "deploy")
        const undone: Array<[string, unknown]> = []
        const undo = (name: string): Saga.Compensator<never> => ({ intent, result }) => Effect.sync(() => void undone.push([name, { intent, result }]))
        const seen: Array<string> = []
        const error = yield* stepFailed(
          Saga.run(
            registry,
            "s1",
            [
              step("cert", { hostname: "shop.example" }, { result: { serial: "01" } }),
              step("container", { name: "shop-web" }, { result: { id: "c-1" } }),
              step("proxy", { route: "shop" }, { error: "proxy refused" })
            ],
            { cert: undo("cert"), container: undo("container"), proxy: undo("proxy") },
            (name, status) => Effect.sync(() => void seen.push(`${name} ${status}`))
          )
        )
        expect({ step: error.step, error: error.error, compensationErrors: error.compensationErrors }).toEqual({
          step: "proxy",
          error: "proxy refused",
          compensationErrors: []
        })
        // The step that failed mid-way gets its intent only; it may have half-happened.
        expect(undone).toEqual([
          ["proxy", { intent: { route: "shop" }, result: undefined }],
          ["container", { intent: { name: "shop-web" }, result: { id: "c-1" } }],
          ["cert", { intent: { hostname: "shop.example" }, result: { serial: "01" } }]
        ])
        expect(seen).toEqual(["cert started", "cert done", "container started", "container done", "proxy started", "proxy failed"])
        expect(yield* journalOf(registry, "s1")).toEqual([
          ["cert", "started", { hostname: "shop.example" }],
          ["cert", "done", { serial: "01" }],
          ["container", "started", { name: "shop-web" }],
          ["container", "done", { id: "c-1" }],
          ["proxy", "started", { route: "shop" }],
          ["proxy", "compensated", null],
          ["container", "compensated", null],
          ["cert", "compensated", null]
        ])
        expect(yield* stateOf(registry, "s1")).toBe("compensated")
        expect(logs.filter((l) => l.startsWith("WARN"))).toEqual([])
      })
    )
  })
})

describe("Saga.compensate", () => {
  it.live("a compensation that keeps failing is retried, reported and logged, and the saga stays open; the next run undoes only what is left", () => {
    const logs: Array<string> = []
    return withRegistry(logs, (registry) =>
      Effect.gen(function* () {
        yield* registry.beginSaga("s2", "shop", "deploy")
        const calls: Record<string, number> = { cert: 0, container: 0, proxy: 0 }
        let containerFails = true
        const compensators: Record<string, Saga.Compensator<never>> = {
          cert: () => Effect.sync(() => void calls["cert"]!++),
          container: () =>
            Effect.suspend(() => {
              calls["container"]!++
              return containerFails ? Effect.fail(new Error("engine unreachable")) : Effect.void
            }),
          proxy: () => Effect.sync(() => void calls["proxy"]!++)
        }
        const error = yield* stepFailed(
          Saga.run(
            registry,
            "s2",
            [
              step("cert", "cert-intent", { result: "serial-1" }),
              step("container", "web", { result: "c-1" }),
              step("proxy", "route", { error: new Error("proxy refused") })
            ],
            compensators
          )
        )
        expect(error.compensationErrors).toEqual(["container: engine unreachable"])
        expect(logs.filter((l) => l.startsWith("WARN"))).toEqual(["WARN: saga s2: compensating container failed: engine unreachable"])
        // Retried (compensationRetry: three retries), and the steps before it are still undone.
        expect(calls).toEqual({ cert: 1, container: 4, proxy: 1 })
        expect(yield* stateOf(registry, "s2")).toBe("running")

        // The next agent start: the engine is back. Only the container is undone this time.
        containerFails = false
        expect(yield* Saga.compensate(registry, "s2", compensators)).toEqual([])
        expect(calls).toEqual({ cert: 1, container: 5, proxy: 1 })
        expect((yield* journalOf(registry, "s2")).slice(5)).toEqual([
          ["proxy", "compensated", null],
          ["cert", "compensated", null],
          ["container", "compensated", null]
        ])
        expect(yield* stateOf(registry, "s2")).toBe("compensated")
      })
    )
  })
})

/** The registry's journal, whose writes fail (as on a full disk) once `full()` says so. */
const fillable = (registry: Registry, full: (step: string, phase: string) => boolean): Saga.Journal => ({
  sagaSteps: registry.sagaSteps,
  endSaga: (id, state) => (full("", `end ${state}`) ? Effect.fail(new SqlError({ message: "database or disk is full" })) : registry.endSaga(id, state)),
  journal: (id, step, phase, data) => (full(step, phase) ? Effect.fail(new SqlError({ message: "database or disk is full" })) : registry.journal(id, step, phase, data))
})

describe("a journal that cannot be written (a full disk)", () => {
  it.live("a step whose end cannot be journaled halts the saga: it and the steps before it are undone, the later ones never run", () => {
    const logs: Array<string> = []
    return withRegistry(logs, (registry) =>
      Effect.gen(function* () {
        yield* registry.beginSaga("s1", "shop", "deploy")
        const undone: Array<[string, unknown]> = []
        const undo = (name: string): Saga.Compensator<never> => ({ result }) => Effect.sync(() => void undone.push([name, result]))
        const ran: Array<string> = []
        const runs = (name: string, result: unknown): Saga.Step<unknown, never> => ({ name, intent: () => ({ name }), run: Effect.sync(() => (ran.push(name), result)) })
        const error = yield* stepFailed(Saga.run(
          fillable(registry, (step, phase) => step === "container" && phase === "done"),
          "s1",
          [runs("cert", { serial: "01" }), runs("container", { id: "c-1" }), runs("proxy", { route: "shop" })],
          { cert: undo("cert"), container: undo("container"), proxy: undo("proxy") }
        ))
        expect(error.step).toBe("container")
        expect((error.error as { _tag: string })._tag).toBe("SqlError")
        expect(ran).toEqual(["cert", "container"])
        // The container ran but its result was never journaled: undone from its intent, as after a crash mid-step.
        expect(undone).toEqual([["container", undefined], ["cert", { serial: "01" }]])
        expect(error.compensationErrors).toEqual([])
        expect(yield* stateOf(registry, "s1")).toBe("compensated")
      })
    )
  })

  it.live("a step whose start cannot be journaled never runs; compensations that cannot be recorded still undo every step and leave the saga open", () => {
    const logs: Array<string> = []
    return withRegistry(logs, (registry) =>
      Effect.gen(function* () {
        yield* registry.beginSaga("s2", "shop", "deploy")
        const undone: Array<string> = []
        const undo = (name: string): Saga.Compensator<never> => () => Effect.sync(() => void undone.push(name))
        const ran: Array<string> = []
        let diskFull = false
        const runs = (name: string): Saga.Step<unknown, never> => ({ name, intent: () => ({ name }), run: Effect.sync(() => void ran.push(name)) })
        const fills: Saga.Step<unknown, never> = { name: "fill", intent: () => ({}), run: Effect.sync(() => void (diskFull = true)) }
        const error = yield* stepFailed(Saga.run(
          fillable(registry, () => diskFull),
          "s2",
          [runs("cert"), runs("container"), fills, runs("proxy")],
          { cert: undo("cert"), container: undo("container"), fill: undo("fill"), proxy: undo("proxy") }
        ))
        // "fill" ran (its start was written), then nothing could be written any more.
        expect(error.step).toBe("fill")
        expect(ran).toEqual(["cert", "container"])
        expect(undone).toEqual(["fill", "container", "cert"])
        expect(error.compensationErrors).toEqual([
          "fill: undone, but the journal could not record it (database or disk is full)",
          "container: undone, but the journal could not record it (database or disk is full)",
          "cert: undone, but the journal could not record it (database or disk is full)"
        ])
        // Open: the next start undoes it again (compensations are idempotent), and records it then.
        expect(yield* stateOf(registry, "s2")).toBe("running")
        expect(logs.filter((l) => l.includes("undone, but the journal could not record it"))).toHaveLength(3)
        diskFull = false
        expect(yield* Saga.compensate(registry, "s2", { cert: undo("cert"), container: undo("container"), fill: undo("fill"), proxy: undo("proxy") })).toEqual([])
        expect(yield* stateOf(registry, "s2")).toBe("compensated")
      })
    )
  })
})

describe("Saga spans and metrics", () => {
  it.live("each step runs in a span `saga.step <kind>` and each compensation in `saga.compensate <kind>`, and both are counted", () =>
    withRegistry([], (registry) =>
      Effect.gen(function* () {
        yield* registry.beginSaga("s-spans", "shop", "deploy")
        const spans: Array<string> = []
        const spanName = Effect.flatMap(Effect.currentSpan, (span) => Effect.sync(() => void spans.push(span.name)))
        const undo: Saga.Compensator<never> = () => Effect.orDie(spanName)
        yield* stepFailed(Saga.run(
          registry,
          "s-spans",
          [
            { name: "edge shop.example", intent: () => null, run: Effect.orDie(spanName) },
            { name: "proxy", intent: () => null, run: Effect.zipRight(Effect.orDie(spanName), Effect.fail("proxy refused")) }
          ],
          (name: string) => (name.startsWith("edge ") ? undo : undefined)
        ))
        // The step's name without its data ("edge shop.example" is an "edge" step).
        expect(spans).toEqual(["saga.step edge", "saga.step proxy", "saga.compensate edge"])
        const compensated = yield* Metric.value(Metric.tagged(Metric.tagged(Saga.compensations, "step", "edge"), "result", "ok"))
        expect(compensated.count).toBeGreaterThanOrEqual(1)
      })
    ))
})
