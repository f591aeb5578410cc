/**
 * Moving the TestClock for fibers that are not the test's children (node supervisors, the edge
 * reconciler): TestClock cannot wait for them, so the clock moves in small steps and every
 * woken fiber runs before the next one.
 */
import { Effect, TestClock } from "effect"

export const settle = Effect.gen(function* () {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
  yield* TestClock.adjust(0)
})

export const advance = (millis: number) =>
  Effect.gen(function* () {
    for (let done = 0; done < millis; done += 100) {
      yield* TestClock.adjust(Math.min(100, millis - done))
      yield* settle
    }
  })
