import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Option, Queue, Ref, TestClock } from "effect"
import * as OpenWorkRetry from "../src/services/OpenWorkRetry.js"
import { settle } from "./ClockSteps.js"

/** The clock moved in half-second steps (the loop's times are whole seconds), each woken fiber run. */
const advance = (millis: number) =>
  Effect.gen(function* () {
    for (let done = 0; done < millis; done += 500) {
      yield* TestClock.adjust(Math.min(500, millis - done))
      yield* settle
    }
  })

/** The clock is moved in small steps, each letting the loop run: slow on a loaded machine (CI runs beside the integration tests). */
const TIMEOUT = 30_000

const settings: OpenWorkRetry.RetrySettings = {
  heartbeatInterval: Duration.seconds(1),
  reconcileInterval: Duration.seconds(10),
  fastWindow: Duration.seconds(5),
  wakeSpacing: Duration.millis(250)
}
const spacing = Duration.toMillis(settings.wakeSpacing)

const saga = (id: string, service: string) => ({ id, service, kind: "deploy", state: "running" as const, startedAt: "2026-01-01T00:00:00Z", error: undefined })

/** The loop over a fake journal: `open` is what it reads, `rounds` the clock time of each retry and the services asked. */
const harness = Effect.gen(function* () {
  const open = yield* Ref.make<ReadonlyArray<ReturnType<typeof saga>>>([])
  const rounds = yield* Ref.make<ReadonlyArray<{ readonly at: number; readonly services: ReadonlyArray<string> }>>([])
  const failReads = yield* Ref.make(0)
  const work: OpenWorkRetry.OpenWork = {
    pending: Effect.flatMap(Ref.getAndUpdate(failReads, (n) => Math.max(0, n - 1)), (n) => (n > 0 ? Effect.fail("journal unreadable") : Ref.get(open))),
    retryServices: (services) =>
      Effect.flatMap(TestClock.currentTimeMillis, (at) => Ref.update(rounds, (r) => [...r, { at, services }]))
  }
  const wakeups = yield* Queue.sliding<void>(1)
  const fiber = yield* Effect.fork(Effect.provideService(OpenWorkRetry.run(work, settings), OpenWorkRetry.OpenWorkWakeups, wakeups))
  yield* settle
  const times = Effect.map(Ref.get(rounds), (r) => r.map((x) => x.at))
  return { open, rounds, times, failReads, wakeups, fiber }
})

describe("asking again about sagas left open", () => {
  it.scoped("asks nothing while no saga is open", () =>
    Effect.gen(function* () {
      const h = yield* harness
      yield* advance(30_000)
      expect(yield* Ref.get(h.rounds)).toEqual([])
      yield* Fiber.interrupt(h.fiber)
    }), TIMEOUT)

  it.scoped("asks every heartbeat interval while a saga is young, then every reconcile interval", () =>
    Effect.gen(function* () {
      const h = yield* harness
      yield* Ref.set(h.open, [saga("s1", "web")])
      yield* advance(30_000)
      // Seen at 1 s; asked at 1..5 s (younger than 5 s), then at 11, 21 s.
      expect(yield* h.times).toEqual([1_000, 2_000, 3_000, 4_000, 5_000, 15_000, 25_000])
      expect((yield* Ref.get(h.rounds))[0]!.services).toEqual(["web"])
      // Once it is closed, nothing more.
      yield* Ref.set(h.open, [])
      yield* Ref.set(h.rounds, [])
      yield* advance(30_000)
      expect(yield* Ref.get(h.rounds)).toEqual([])
      yield* Fiber.interrupt(h.fiber)
    }), TIMEOUT)

  it.scoped("asks at once when a node's heartbeats resume, even about an old saga", () =>
    Effect.gen(function* () {
      const h = yield* harness
      yield* Ref.set(h.open, [saga("s1", "web"), saga("s2", "web"), saga("s3", "db")])
      yield* advance(20_000)
      yield* Ref.set(h.rounds, [])
      yield* TestClock.adjust(300)
      yield* h.wakeups.offer(undefined)
      yield* settle
      const rounds = yield* Ref.get(h.rounds)
      expect(rounds.map((r) => r.at)).toEqual([20_300])
      // Each service once, though it has two open sagas.
      expect([...rounds[0]!.services].sort()).toEqual(["db", "web"])
      // A wake-up with nothing open asks nothing.
      yield* Ref.set(h.open, [])
      yield* h.wakeups.offer(undefined)
      yield* settle
      expect(yield* Ref.get(h.rounds)).toHaveLength(1)
      yield* Fiber.interrupt(h.fiber)
    }), TIMEOUT)

  it.scoped("wake-ups in a burst (a fleet coming back) make one round at once and one after the spacing, not one each", () =>
    Effect.gen(function* () {
      const h = yield* harness
      yield* Ref.set(h.open, [saga("s1", "web")])
      yield* advance(20_000)
      yield* Ref.set(h.rounds, [])
      yield* TestClock.adjust(300)
      for (let i = 0; i < 5; i++) {
        yield* h.wakeups.offer(undefined)
        yield* settle
      }
      expect(yield* h.times).toEqual([20_300])
      yield* TestClock.adjust(spacing)
      yield* settle
      // The four later wake-ups, answered together.
      expect(yield* h.times).toEqual([20_300, 20_300 + spacing])
      yield* TestClock.adjust(spacing)
      yield* settle
      expect(yield* h.times).toEqual([20_300, 20_300 + spacing])
      // A wake-up after a quiet spell is answered at once again.
      yield* TestClock.adjust(2_000)
      yield* settle
      yield* h.wakeups.offer(undefined)
      yield* settle
      expect(yield* h.times).toEqual([20_300, 20_300 + spacing, 22_300 + 2 * spacing])
      yield* Fiber.interrupt(h.fiber)
    }), TIMEOUT)

  it.scoped("a newly open saga is asked about every heartbeat interval though an older one is not", () =>
    Effect.gen(function* () {
      const h = yield* harness
      yield* Ref.set(h.open, [saga("old", "web")])
      yield* advance(8_000)
      yield* Ref.set(h.rounds, [])
      yield* Ref.set(h.open, [saga("old", "web"), saga("new", "db")])
      yield* advance(3_000)
      expect(yield* h.times).toEqual([9_000, 10_000, 11_000])
      yield* Fiber.interrupt(h.fiber)
    }), TIMEOUT)

  it.scoped("a round that cannot read the journal is counted and the loop goes on", () =>
    Effect.gen(function* () {
      const h = yield* harness
      yield* Ref.set(h.open, [saga("s1", "web")])
      yield* Ref.set(h.failReads, 2)
      yield* advance(3_000)
      // The reads at 1 and 2 s failed; the saga is first seen at 3 s and asked about then.
      expect(yield* h.times).toEqual([3_000])
      expect(Option.isNone(yield* Fiber.poll(h.fiber))).toBe(true)
      yield* Fiber.interrupt(h.fiber)
    }), TIMEOUT)
})
