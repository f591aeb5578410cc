import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Logger, Metric, MetricState } from "effect"
import { fatal, unrecoverable } from "../src/Failures.js"

describe("fatal failures", () => {
  it.effect("are logged with what was being done, counted by operation, and become the same defect", () =>
    Effect.gen(function* () {
      const logs: Array<{ level: string; message: unknown }> = []
      const capture = Logger.make(({ logLevel, message }) => {
        logs.push({ level: logLevel.label, message })
      })
      const error = new Error("disk I/O error")
      const what = "the test registry (Failures.test)"
      const counter = Metric.tagged(unrecoverable, "operation", what)
      const before = (yield* Metric.value(counter)).count
      const exit = yield* Effect.exit(fatal(what)(Effect.fail(error))).pipe(Effect.provide(Logger.add(capture)))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      if (Exit.isFailure(exit)) expect(Cause.squash(exit.cause)).toBe(error)
      expect(logs).toEqual([{ level: "ERROR", message: [`${what} failed; the request cannot complete`, error] }])
      expect((yield* Metric.value(counter)) satisfies MetricState.MetricState.Counter<number>).toEqual(
        MetricState.counter(Number(before) + 1)
      )
    }))

  it.effect("a success passes through untouched, and nothing is logged or counted", () =>
    Effect.gen(function* () {
      const what = "the quiet registry (Failures.test)"
      const counter = Metric.tagged(unrecoverable, "operation", what)
      expect(yield* fatal(what)(Effect.succeed(7))).toBe(7)
      expect((yield* Metric.value(counter)).count).toBe(0)
    }))
})
