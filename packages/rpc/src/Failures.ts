/**
 * The one way a failure that no caller can act on (the node's own database failing, say) leaves
 * typed code: it is logged with what was being done, counted, and then becomes a defect.
 */
import { Effect, Metric } from "effect"

/** How many such failures happened, by what was being done. */
export const unrecoverable = Metric.counter("mcp_unrecoverable_failures", {
  description: "failures turned into defects after being logged, by operation"
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
