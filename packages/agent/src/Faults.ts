/**
 * Fault injection for the memory layers: a test arms a failure for a named operation, and the
 * layer fails the next call to it. Real layers never consult this.
 */
import { Effect, Ref } from "effect"

export interface Faults {
  /** Fail the next `count` calls to `operation`. */
  readonly arm: (operation: string, count?: number) => Effect.Effect<void>
  /** Consumes one armed failure for `operation`, if any. */
  readonly take: (operation: string) => Effect.Effect<boolean>
  readonly clear: Effect.Effect<void>
}

export const makeFaults = Effect.map(Ref.make(new Map<string, number>()), (armed): Faults => ({
  arm: (operation, count = 1) => Ref.update(armed, (m) => new Map(m).set(operation, (m.get(operation) ?? 0) + count)),
  take: (operation) =>
    Ref.modify(armed, (m) => {
      const left = m.get(operation) ?? 0
      if (left === 0) return [false, m]
      const next = new Map(m)
      if (left === 1) next.delete(operation)
      else next.set(operation, left - 1)
      return [true, next]
    }),
  clear: Ref.set(armed, new Map())
}))

export const noFaults: Faults = {
  arm: () => Effect.void,
  take: () => Effect.succeed(false),
  clear: Effect.void
}
