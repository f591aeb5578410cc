/**
 * Deploys as they happen, for whoever watches (the dashboard): each step as the saga reports it,
 * live, and each finished deploy's duration and result for the last hour. The deploy handler
 * reports into the `DeployActivity` reference; without a watcher (tests, tools) it goes nowhere.
 */
import type { Deploy } from "@mcp/domain"
import { Clock, Context, Effect, PubSub, type Scope } from "effect"

/** One step of a running deploy, or its end. */
export type DeployUpdate =
  | { readonly _tag: "Step"; readonly service: string; readonly node: string; readonly step: string; readonly status: string; readonly detail: string; readonly at: number }
  | { readonly _tag: "Ended"; readonly service: string; readonly result: string; readonly durationMs: number; readonly at: number }

/** A finished deploy, for the chart of durations. */
export interface DeployRecord {
  readonly service: string
  readonly endedAt: number
  readonly durationMs: number
  /** "ok", or the error's tag. */
  readonly result: string
}

export interface DeployActivityService {
  readonly step: (service: string, event: Deploy.DeployStep) => Effect.Effect<void>
  readonly ended: (service: string, startedAt: number, result: string) => Effect.Effect<void>
}

export class DeployActivity extends Context.Reference<DeployActivity>()("@mcp/master/DeployActivity", {
  defaultValue: (): DeployActivityService => ({ step: () => Effect.void, ended: () => Effect.void })
}) {}

const HOUR_MS = 3_600_000
/** Deploys kept for the chart: an hour's worth, and never more than this many. */
const MAX_RECORDS = 2_000

/** The real one: a hub of updates (a slow watcher loses the oldest, never blocks a deploy) and the last hour's deploys. */
export const make = Effect.gen(function* () {
  const updates = yield* PubSub.sliding<DeployUpdate>(512)
  const records: Array<DeployRecord> = []
  const service: DeployActivityService = {
    step: (name, event) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) =>
        PubSub.publish(updates, { _tag: "Step", service: name, node: event.node, step: event.step, status: event.status, detail: event.detail, at })),
    ended: (name, startedAt, result) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        records.push({ service: name, endedAt: at, durationMs: at - startedAt, result })
        while (records.length > MAX_RECORDS || (records.length > 0 && records[0]!.endedAt < at - HOUR_MS)) records.shift()
        return PubSub.publish(updates, { _tag: "Ended", service: name, result, durationMs: at - startedAt, at })
      })
  }
  return {
    service,
    subscribe: PubSub.subscribe(updates) satisfies Effect.Effect<unknown, never, Scope.Scope>,
    /** The deploys that ended in the last hour, oldest first. */
    lastHour: Effect.map(Clock.currentTimeMillis, (now) => records.filter((r) => r.endedAt >= now - HOUR_MS))
  }
})

export type DeployWatch = Effect.Effect.Success<typeof make>
