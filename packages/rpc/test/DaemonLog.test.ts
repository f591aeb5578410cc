// `[log] format = "json"`: one JSON object per entry, with the message, level, annotations, log
// spans, the cause when there is one, and the trace and span ids of the span it was written in.
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Logger, Schema } from "effect"
import * as DaemonLog from "../src/DaemonLog.js"

/** Runs `effect` with a logger that keeps each entry as the JSON logger would write it. */
const entriesOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const entries: Array<Record<string, unknown>> = []
    const capture = Logger.make((options) => entries.push(JSON.parse(JSON.stringify(DaemonLog.jsonEntry(options)))))
    yield* Effect.ignore(effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture))))
    return entries
  })

describe("DaemonLog", () => {
  it.effect("writes the message, level, annotations and the ids of the span the entry was written in", () =>
    Effect.gen(function* () {
      const entries = yield* entriesOf(
        Effect.gen(function* () {
          yield* Effect.logInfo("deploying web")
          const span = yield* Effect.currentSpan
          yield* Effect.logWarning("the engine is slow").pipe(Effect.annotateLogs({ service: "web" }))
          return span
        }).pipe(Effect.withSpan("Deploy"), Effect.withLogSpan("deploy"))
      )
      expect(entries).toHaveLength(2)
      const [first, second] = entries
      expect(first).toMatchObject({ level: "INFO", message: "deploying web" })
      expect(second).toMatchObject({ level: "WARN", message: "the engine is slow", service: "web" })
      expect(first!["trace_id"]).toMatch(/^[0-9a-f]{32}$/)
      expect(second!["trace_id"]).toBe(first!["trace_id"])
      expect(first!["span_id"]).toMatch(/^[0-9a-f]{16}$/)
      expect(first!["span.deploy"]).toMatch(/^\d+ms$/)
      expect(Date.parse(String(first!["time"]))).not.toBeNaN()
    }))

  it.effect("carries the cause of an error entry, and no trace id outside a span", () =>
    Effect.gen(function* () {
      const [entry, withError] = yield* entriesOf(Effect.zipRight(
        Effect.logError("deploy failed", Cause.fail(new Error("port 8443 taken"))),
        Effect.logWarning("retrying after", new Error("ECONNRESET"), { attempt: 2 })
      ))
      expect(entry).toMatchObject({ level: "ERROR", message: "deploy failed" })
      expect(entry!["cause"]).toContain("port 8443 taken")
      expect(entry).not.toHaveProperty("trace_id")
      expect(withError!["message"]).toEqual(["retrying after", "Error: ECONNRESET", { attempt: 2 }])
    }))

  it("defaults to logfmt and accepts json, refusing anything else", () => {
    const decode = Schema.decodeUnknownEither(DaemonLog.LogSection)
    expect(decode({})).toMatchObject({ right: { format: "logfmt" } })
    expect(decode({ format: "json" })).toMatchObject({ right: { format: "json" } })
    expect(decode({ format: "yaml" })._tag).toBe("Left")
  })
})
