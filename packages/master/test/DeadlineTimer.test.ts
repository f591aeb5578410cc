import { describe, expect, it } from "@effect/vitest"
import * as Failures from "@mcp/rpc/Failures"
import { Effect, FastCheck as fc, Logger, LogLevel, Metric, TestClock } from "effect"
import * as DeadlineTimer from "../src/nodes/DeadlineTimer.js"
import { settle } from "./ClockSteps.js"

/** The clock moves this much at a time; an entry is handed on within one step of its time (rounds are ROUND_MS apart). */
const STEP = DeadlineTimer.ROUND_MS

interface Fired {
  readonly item: number
  readonly at: number
  readonly now: number
}

const harness = (onDue?: (item: number) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const fired: Array<Fired> = []
    const timer = yield* DeadlineTimer.make<number>((item, at) =>
      Effect.flatMap(TestClock.currentTimeMillis, (now) => {
        fired.push({ item, at, now })
        return onDue === undefined ? Effect.void : onDue(item)
      }))
    yield* settle
    return { timer, fired }
  })

const step = Effect.zipRight(TestClock.adjust(STEP), settle)

describe("DeadlineTimer", () => {
  it.effect.prop(
    "every entry is handed on once, never before its time and within a step after it, whatever the order and times of scheduling (earlier ones while the timer sleeps for a later one)",
    [fc.array(
      fc.record({
        // When it is scheduled (in steps from the start) and how far ahead of then it falls due.
        scheduledStep: fc.integer({ min: 0, max: 20 }),
        ahead: fc.integer({ min: -100, max: 1_500 })
      }),
      { maxLength: 30 }
    )],
    ([entries]) =>
      Effect.gen(function* () {
        const { timer, fired } = yield* harness()
        const scheduledAt = new Map<number, number>()
        for (let s = 0; s <= 20 + 1_500 / STEP + 2; s++) {
          const now = yield* TestClock.currentTimeMillis
          entries.forEach((e, item) => {
            if (e.scheduledStep !== s) return
            scheduledAt.set(item, now)
            timer.schedule(now + e.ahead, item)
          })
          yield* settle
          yield* step
        }
        expect(fired.map((f) => f.item).sort((a, b) => a - b)).toEqual(entries.map((_, i) => i))
        for (const f of fired) {
          const due = Math.max(f.at, scheduledAt.get(f.item)!)
          expect(f.at).toBe(scheduledAt.get(f.item)! + entries[f.item]!.ahead)
          expect(f.now).toBeGreaterThanOrEqual(f.at)
          expect(f.now - due).toBeLessThanOrEqual(STEP)
        }
        expect(timer.size()).toBe(0)
      }).pipe(Effect.scoped),
    { timeout: 120_000, fastCheck: { numRuns: 12 } }
  )

  it.effect("an entry earlier than the one the timer sleeps for wakes it: handed on at its own time, not the later one's", () =>
    Effect.gen(function* () {
      const { timer, fired } = yield* harness()
      timer.schedule(10_000, 1)
      yield* settle
      yield* step
      timer.schedule(200, 2)
      for (let i = 0; i < 10; i++) yield* step
      expect(fired).toEqual([{ item: 2, at: 200, now: 200 }])
    }).pipe(Effect.scoped))

  it.effect("entries falling due a millisecond apart are handed on in rounds ROUND_MS apart, not one wake-up each", () =>
    Effect.gen(function* () {
      const { timer, fired } = yield* harness()
      for (let item = 1; item <= 200; item++) timer.schedule(item, item)
      for (let i = 0; i < 200 / STEP + 2; i++) yield* step
      expect(fired.map((f) => f.item)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
      for (const f of fired) {
        expect(f.now).toBeGreaterThanOrEqual(f.at)
        expect(f.now - f.at).toBeLessThanOrEqual(DeadlineTimer.ROUND_MS)
      }
      // A 10,000-node fleet has some deadline due every millisecond or so: one round (and the
      // fibers of its race) for each was what such a master spent most of its time on at rest.
      expect(new Set(fired.map((f) => f.now)).size).toBeLessThanOrEqual(200 / DeadlineTimer.ROUND_MS + 1)
    }).pipe(Effect.scoped))

  it.effect("a defect in handing one entry on is logged and counted, and the timer goes on with the others", () =>
    Effect.gen(function* () {
      const counted = Metric.value(Metric.tagged(Failures.carriedOn, "operation", "handing a deadline on (a bug)"))
      const before = (yield* counted).count
      const { timer, fired } = yield* harness((item) => (item === 1 ? Effect.die(new Error("bug")) : Effect.void))
      timer.schedule(100, 1)
      timer.schedule(100, 2)
      timer.schedule(300, 3)
      for (let i = 0; i < 10; i++) yield* step
      expect(fired.map((f) => f.item)).toEqual([1, 2, 3])
      expect((yield* counted).count - before).toBe(1)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.None)))
})
