/**
 * How many streaming RPCs (Logs and Events follows, deploys) one caller may hold open at once on
 * a daemon. Each open stream holds a fiber, an HTTP response and, on an agent, a container log
 * follow or a deploy; without a bound one token could open them until the daemon runs out.
 * The auth middleware wraps every call with `limit`, so the permit is held exactly as long as
 * the stream runs (the middleware's `next` is the whole stream) and released however it ends.
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Errors from "@mcp/domain/Errors"
import { Effect } from "effect"
import type { Principal } from "./Principal.js"

/**
 * Streams one human (or any non-system) caller may hold open: an operator following the logs
 * of a few services in a few terminals while a deploy runs uses a handful; 16 leaves room for
 * that and refuses a script that opens them in a loop.
 */
export const MAX_STREAMS_PER_PRINCIPAL = 16

/**
 * Streams one system caller may hold open. The master proxies every operator's Logs follow and
 * every deploy to an agent under its single system token, so on an agent that token stands for
 * all operators at once: 16 operators at their own limit, each bounded on the master.
 */
export const MAX_STREAMS_PER_SYSTEM_PRINCIPAL = 16 * MAX_STREAMS_PER_PRINCIPAL

export interface StreamLimits {
  /** Default MAX_STREAMS_PER_PRINCIPAL. */
  readonly perPrincipal?: number
  /** Default MAX_STREAMS_PER_SYSTEM_PRINCIPAL. */
  readonly perSystemPrincipal?: number
}

export const isStream = (rpc: Rpc.AnyWithProps): boolean => RpcSchema.isStreamSchema(rpc.successSchema)

export interface StreamLimiter {
  /** Runs `call`, holding one of the principal's stream permits while it runs if `rpc` streams. */
  readonly limit: <A, E, R>(principal: Principal, rpc: Rpc.AnyWithProps, call: Effect.Effect<A, E, R>) => Effect.Effect<A, E | Errors.TooBusy, R>
  /** Streams each principal holds open now (for tests and diagnostics). */
  readonly open: () => ReadonlyMap<string, number>
}

/** One limiter per server: the counts are this daemon's, per principal. */
export const make = (limits: StreamLimits = {}): StreamLimiter => {
  const perPrincipal = limits.perPrincipal ?? MAX_STREAMS_PER_PRINCIPAL
  const perSystem = limits.perSystemPrincipal ?? MAX_STREAMS_PER_SYSTEM_PRINCIPAL
  const open = new Map<string, number>()
  return {
    open: () => new Map(open),
    limit: (principal, rpc, call) => {
      if (!isStream(rpc)) return call
      const key = `${principal.kind}:${principal.name}`
      const limit = principal.kind === "system" ? perSystem : perPrincipal
      return Effect.acquireUseRelease(
        Effect.suspend(() => {
          const n = open.get(key) ?? 0
          if (n >= limit) return Effect.fail(new Errors.TooBusy({ principal: principal.name, rpc: rpc._tag, limit }))
          open.set(key, n + 1)
          return Effect.void
        }),
        () => call,
        () =>
          Effect.sync(() => {
            const n = (open.get(key) ?? 1) - 1
            if (n <= 0) open.delete(key)
            else open.set(key, n)
          })
      )
    }
  }
}
