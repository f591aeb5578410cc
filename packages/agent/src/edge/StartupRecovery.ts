/**
 * At agent start, before any RPC arrives: every row is settled in its hostname's actor (a setup
 * cut short undone, a removal finished, retired certificates deleted) and every active route is
 * put again. A row that cannot be closed now is logged, counted and recorded, and stays for the
 * next start (and the next operation on its hostname); the others still go ahead.
 */
import { Effect, Either, Metric, Option } from "effect"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { inActor, proxyRoute } from "./Model.js"
import { cleanupFailures, describe, event } from "./Peers.js"
import { rows } from "./Queries.js"
import { settle } from "./Settle.js"

export const resumeOpenWork = Effect.gen(function* () {
  for (const row of yield* rows) {
    const outcome = yield* Effect.either(inActor(row.hostname, Effect.gen(function* () {
      const proxy = yield* ProxyRoutes
      const settled = yield* settle(row.hostname)
      // Re-put too: a proxy that lost its state (record-only, a wiped config dir) serves it again.
      if (Option.isSome(settled)) yield* proxy.put(proxyRoute(row.hostname, settled.value))
    })))
    if (Either.isLeft(outcome)) {
      yield* Metric.increment(cleanupFailures)
      yield* Effect.logWarning(`could not close or restore the ${row.state} edge route ${row.hostname}; retried at the next start`).pipe(
        Effect.annotateLogs({ error: describe(outcome.left) })
      )
      yield* event("recover", row.service, `could not close or restore the ${row.state} edge route ${row.hostname} (${describe(outcome.left)}); retried at the next start`)
    } else if (row.state !== "active") {
      yield* Effect.logInfo(`closed the unfinished ${row.state} of edge route ${row.hostname}`)
    }
  }
})
