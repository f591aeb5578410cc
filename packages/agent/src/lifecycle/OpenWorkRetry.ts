/**
 * Work a failure left open while the agent runs, closed again without waiting for the next start:
 * a deploy whose rollback met its engine down keeps its containers and ports until its saga is
 * compensated. Every round takes each open saga into its service's actor, so it waits for
 * whatever runs on the service; a saga still open there is left over (an operation in flight
 * holds the actor), and is closed as at start. Orphaned containers are not swept here: a deploy
 * under way may have made containers it has not recorded yet.
 */
import { Effect, Either, Metric } from "effect"
import { Registry } from "../registry/Registry.js"
import { Lifecycle } from "./Lifecycle.js"
import { ServiceActors } from "./ServiceActors.js"
import * as ServiceEvents from "./ServiceEvents.js"
import { closed, notClosed } from "./StartupRecovery.js"

/** Tries that left a saga open (an engine still down), and rounds that failed whole: each is logged too. */
export const openWorkLeft = Metric.counter("mcp_agent_open_work_left", { incremental: true, description: "Rounds that could not close an open saga while the agent runs" })

/** One round over the open sagas; each closed one becomes an event, each left one a warning. */
export const retryRound = Effect.gen(function* () {
  const lifecycle = yield* Lifecycle
  const actors = yield* ServiceActors
  const registry = yield* Registry
  for (const saga of yield* lifecycle.openSagas) {
    yield* actors.submit(saga.service, Effect.gen(function* () {
      if (!(yield* lifecycle.openSagas).some((s) => s.id === saga.id)) return
      const outcome = yield* Effect.either(lifecycle.closeOpenSaga(saga))
      if (Either.isRight(outcome)) return yield* Effect.provideService(ServiceEvents.record("recover", saga.service, closed[saga.kind]), Registry, registry)
      yield* Metric.increment(openWorkLeft)
      yield* Effect.logWarning(`${notClosed(saga, outcome.left)}; tried again next round`).pipe(Effect.annotateLogs({ service: saga.service }))
    }))
  }
})
