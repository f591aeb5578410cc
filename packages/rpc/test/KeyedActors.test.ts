import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Ref, Supervisor, TestClock } from "effect"
import * as KeyedActors from "../src/KeyedActors.js"

describe("keyed actors", () => {
  it.scoped("runs one key's jobs one at a time, in order", () =>
    Effect.gen(function* () {
      const actors = yield* KeyedActors.make()
      const log = yield* Ref.make<Array<string>>([])
      const job = (name: string) =>
        Effect.gen(function* () {
          yield* Ref.update(log, (l) => [...l, `${name} start`])
          yield* Effect.sleep("1 second")
          yield* Ref.update(log, (l) => [...l, `${name} end`])
          return name
        })
      const fibers = yield* Effect.forEach(["a", "b", "c"], (n) => Effect.fork(actors.submit("web", job(n))))
      yield* TestClock.adjust("3 seconds")
      expect(yield* Effect.forEach(fibers, Fiber.join)).toEqual(["a", "b", "c"])
      expect(yield* Ref.get(log)).toEqual(["a start", "a end", "b start", "b end", "c start", "c end"])
    }))

  it.scopedLive("runs different keys in parallel", () =>
    Effect.gen(function* () {
      const actors = yield* KeyedActors.make()
      const bothStarted = yield* Deferred.make<void>()
      const started = yield* Ref.make(0)
      const job = Effect.gen(function* () {
        if ((yield* Ref.updateAndGet(started, (n) => n + 1)) === 2) yield* Deferred.succeed(bothStarted, undefined)
        yield* Deferred.await(bothStarted) // would deadlock if the keys were serialized
      })
      // Serialized keys deadlock: say so as a failed assertion, well before vitest's own timeout.
      const outcome = yield* Effect.all([actors.submit("web", job), actors.submit("db", job)], { concurrency: "unbounded" }).pipe(
        Effect.timeoutFail({
          duration: "2 seconds",
          onTimeout: () => "deadlocked: the jobs for web and db did not both start within 2 s (different keys were serialized)"
        }),
        Effect.either
      )
      expect(outcome).toEqual(Either.right([undefined, undefined]))
      expect(yield* Ref.get(started)).toBe(2)
    }))

  it.scoped("a failing job fails its caller only; the actor goes on", () =>
    Effect.gen(function* () {
      const actors = yield* KeyedActors.make()
      const failed = yield* Effect.flip(actors.submit("web", Effect.fail("boom")))
      expect(failed).toBe("boom")
      const died = yield* Effect.exit(actors.submit("web", Effect.die("defect")))
      expect(died._tag).toBe("Failure")
      expect(yield* actors.submit("web", Effect.succeed(42))).toBe(42)
    }))

  it.scoped("an idle actor retires and a new one starts on demand", () =>
    Effect.gen(function* () {
      const actors = yield* KeyedActors.make({ idleAfter: "10 seconds" })
      yield* actors.submit("web", Effect.void)
      expect((yield* actors.stats).map((s) => s.key)).toEqual(["web"])
      yield* TestClock.adjust("11 seconds")
      expect(yield* actors.stats).toEqual([])
      expect(yield* actors.submit("web", Effect.succeed("again"))).toBe("again")
    }))

  it.scoped("stats counts the jobs waiting behind the running one, per key", () =>
    Effect.gen(function* () {
      const actors = yield* KeyedActors.make()
      const release = yield* Deferred.make<void>()
      const running = yield* Deferred.make<void>()
      const first = yield* Effect.fork(actors.submit("web", Effect.zipRight(Deferred.succeed(running, undefined), Deferred.await(release))))
      yield* Deferred.await(running)
      const queued = yield* Effect.forEach([1, 2], (n) => Effect.fork(actors.submit("web", Effect.succeed(n))))
      yield* actors.submit("db", Effect.void)
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      const stats = yield* actors.stats
      expect([...stats].sort((a, b) => a.key.localeCompare(b.key))).toEqual([
        { key: "db", pending: 0, restarts: 0 },
        { key: "web", pending: 2, restarts: 0 }
      ])
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(first)
      expect(yield* Effect.forEach(queued, Fiber.join)).toEqual([1, 2])
      expect((yield* actors.stats).map((s) => s.pending)).toEqual([0, 0])
    }))

  it.scoped("a retired actor's fiber ends, and a busy actor is not retired", () =>
    Effect.gen(function* () {
      const supervisor = yield* Supervisor.track
      yield* Effect.gen(function* () {
        const actors = yield* KeyedActors.make({ idleAfter: "10 seconds" })
        // A job longer than idleAfter: the actor is busy, not idle.
        const slow = yield* Effect.fork(actors.submit("web", Effect.as(Effect.sleep("15 seconds"), "slow")))
        yield* TestClock.adjust("12 seconds")
        expect((yield* actors.stats).map((s) => s.key)).toEqual(["web"])
        yield* TestClock.adjust("3 seconds")
        expect(yield* Fiber.join(slow)).toBe("slow")
        expect((yield* supervisor.value).length).toBeGreaterThan(0)
        yield* TestClock.adjust("11 seconds")
        for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
        expect(yield* actors.stats).toEqual([])
        // Nothing of the actor is left running (no loop on a mailbox nobody can reach).
        expect(yield* supervisor.value).toEqual([])
        expect(yield* actors.submit("web", Effect.succeed("again"))).toBe("again")
      }).pipe(Effect.supervised(supervisor))
    }))
})
