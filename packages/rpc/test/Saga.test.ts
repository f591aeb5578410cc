/**
 * The journaled saga over a real SQLite journal: what the journal records for each step, the
 * order compensations run in and the data they get, what a failing compensation reports (error,
 * log, a saga left open), and a later compensation run that finishes only what is left.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, Logger, Schema } from "effect"
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
