/**
 * One timer for the deadlines of every watched node: a min-heap of (time, item) and one fiber
 * that sleeps until the earliest and hands each item that falls due to `onDue`.
 *
 * Why not a timer fiber per node: a sleeping fiber holds about 4.7 KiB of heap, which at 10,000
 * nodes is 47 MiB for timers alone, and each node's deadline passes once per interval, so the
 * master forked a new one per node per interval. Here a node's deadline is a heap entry.
 *
 * It runs on Effect's Clock (so TestClock drives it in tests): the fiber races its sleep against a
 * wake-up that `schedule` sends only for a time earlier than the one it sleeps until.
 *
 * While entries keep falling due, rounds are ROUND_MS apart: what falls due sooner than that after
 * a round waits for the next, so an entry is handed on at most ROUND_MS after its time (an entry
 * earlier than the one the timer sleeps for still wakes it at once). In a large fleet some node's
 * deadline falls due every few milliseconds (10,000 nodes at a 10 s interval: 1,000 a second),
 * and a round for each, with the two fibers its race forks, was most of what a master at rest cost
 * (bench/heartbeats.ts, its paced phase). A sleep that short is not raced: an entry scheduled
 * meanwhile is handed on at the end of it, within ROUND_MS all the same.
 */
import * as Failures from "@mcp/rpc/Failures"
import { Clock, Duration, Effect, type Scope } from "effect"

/** The time between two rounds of the timer while entries keep falling due, and so the most an entry is handed on after its time. */
export const ROUND_MS = 50

export interface DeadlineTimer<A> {
  /**
   * `onDue(item, at)` runs once the clock reaches `at`, within ROUND_MS of it (of the call, for an
   * `at` already past), plus whatever holds the event loop. Several entries of one item may be pending.
   */
  readonly schedule: (at: number, item: A) => void
  /** Entries waiting, for tests and figures. */
  readonly size: () => number
}

/**
 * The timer, its fiber in the current scope. `onDue` runs on the timer's fiber, one item after
 * another, so it must not wait long: it decides and hands work on (a node fiber's mail).
 */
export const make = <A>(onDue: (item: A, at: number) => Effect.Effect<void>): Effect.Effect<DeadlineTimer<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    // A binary min-heap on `ats`, `items` alongside.
    const ats: Array<number> = []
    const items: Array<A> = []
    const swap = (i: number, j: number) => {
      const at = ats[i]!
      const item = items[i]!
      ats[i] = ats[j]!
      items[i] = items[j]!
      ats[j] = at
      items[j] = item
    }
    const push = (at: number, item: A) => {
      ats.push(at)
      items.push(item)
      let i = ats.length - 1
      while (i > 0) {
        const parent = (i - 1) >> 1
        if (ats[parent]! <= ats[i]!) break
        swap(i, parent)
        i = parent
      }
    }
    const pop = (): readonly [number, A] => {
      const top = [ats[0]!, items[0]!] as const
      const lastAt = ats.pop()!
      const lastItem = items.pop()!
      if (ats.length > 0) {
        ats[0] = lastAt
        items[0] = lastItem
        let i = 0
        for (;;) {
          const left = 2 * i + 1
          const right = left + 1
          let least = i
          if (left < ats.length && ats[left]! < ats[least]!) least = left
          if (right < ats.length && ats[right]! < ats[least]!) least = right
          if (least === i) break
          swap(i, least)
          i = least
        }
      }
      return top
    }

    /**
     * Until when the fiber sleeps (-Infinity while it runs), and its wake-up: `schedule` asks for
     * one when it adds an earlier time. Asked before the fiber is ready to be woken, it is kept
     * (`wakeAsked`), so it cannot be lost between the decision to sleep and the sleep.
     */
    let sleepingUntil = -Infinity
    let wakeAsked = false
    let wake: (() => void) | undefined
    const woken = Effect.async<void>((resume) => {
      if (wakeAsked) return resume(Effect.void)
      const mine = () => resume(Effect.void)
      wake = mine
      return Effect.sync(() => {
        if (wake === mine) wake = undefined
      })
    })
    const askWake = () => {
      sleepingUntil = -Infinity
      wakeAsked = true
      const w = wake
      wake = undefined
      w?.()
    }

    const round = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      while (ats.length > 0 && ats[0]! <= now) {
        const [at, item] = pop()
        // A defect in one item's hand-over must not stop the timer for every other node.
        yield* Effect.catchAllDefect(onDue(item, at), (defect) => Failures.reported("handing a deadline on (a bug)", defect))
      }
      const next = ats.length > 0 ? ats[0]! : Infinity
      if (next < now + ROUND_MS) {
        // Not woken meanwhile (sleepingUntil stays -Infinity): whatever is scheduled is looked at
        // when this ends, ROUND_MS after this round began (the hand-overs took some of it).
        const after = yield* Clock.currentTimeMillis
        yield* Effect.sleep(Duration.millis(Math.max(0, now + ROUND_MS - after)))
        return
      }
      wakeAsked = false
      sleepingUntil = next
      yield* next === Infinity ? woken : Effect.race(Effect.sleep(Duration.millis(next - now)), woken)
      sleepingUntil = -Infinity
    })
    yield* Effect.forkScoped(Effect.forever(round))

    return {
      schedule: (at, item) => {
        push(at, item)
        if (at < sleepingUntil) askWake()
      },
      size: () => ats.length
    }
  })
