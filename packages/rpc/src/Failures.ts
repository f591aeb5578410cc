/**
 * The two ways a failure that no caller can act on (the node's own database failing, say) leaves
 * typed code: logged with what was being done and counted, then either a defect (`fatal`, the
 * request cannot complete) or carried on past with less (`reported`, the work goes on without
 * what failed).
 */
import { Effect, Metric } from "effect"

/** How many such failures happened, by what was being done. */
export const unrecoverable = Metric.counter("mcp_unrecoverable_failures", {
  incremental: true,
  description: "failures turned into defects after being logged, by operation"
})

/** How many failures were logged and carried on past, by what was being done. */
export const carriedOn = Metric.counter("mcp_carried_on_failures", {
  incremental: true,
  description: "failures logged and then worked around with less than was wanted, by operation"
})

export const fatal = (what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, never, R> =>
  effect.pipe(
    Effect.tapError((error) =>
      Effect.zipRight(
        Effect.logError(`${what} failed; the request cannot complete`, error),
        Metric.increment(Metric.tagged(unrecoverable, "operation", what))
      )
    ),
    Effect.orDieWith((error) => error)
  )

/** Logs `error` as a warning with what was being done, and counts it; the caller goes on. */
export const reported = (what: string, error: unknown): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.logWarning(`${what} failed; carrying on without it`, error),
    Metric.increment(Metric.tagged(carriedOn, "operation", what))
  )

/**
 * Runs a clean-up that must not hide the failure it follows (a temporary file removed after a
 * failed write): its own failure is logged and counted with `what`, never swallowed silently.
 */
export const bestEffort = (what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<void, never, R> =>
  Effect.catchAll(Effect.asVoid(effect), (error) => reported(what, error))
