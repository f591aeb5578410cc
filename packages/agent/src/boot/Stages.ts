/**
 * Bringing stages up in order: a stage's services are started (recreated from the registry if
 * the engine lost them), then its checks must all pass within the stage's timeout. A stage
 * that fails with `wait` is tried again with backoff before the next starts; one with
 * `continue` lets the next start anyway.
 */
import { Duration, Effect, Either, Option, Schedule } from "effect"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import { ServiceActors } from "../lifecycle/ServiceActors.js"
import { Registry, type ServiceRow } from "../registry/Registry.js"
import { checkStage } from "./Checks.js"
import { describe, event, now, registryFatal, type Stage, summarize } from "./Model.js"
import { stageState, update } from "./Status.js"

const startServices = (services: ReadonlyArray<string>) =>
  Effect.forEach(services, (service) =>
    Effect.gen(function* () {
      const row = yield* registryFatal(Effect.flatMap(Registry, (registry) => registry.service(service)))
      // Only what should run: an operator's stop survives a reboot.
      if (Option.isNone(row) || !row.value.active) return
      const lifecycle = yield* Lifecycle
      const actors = yield* ServiceActors
      yield* actors.submit(service, lifecycle.bringUp(service)).pipe(
        Effect.catchAll((e) => event(`could not start ${service}: ${describe(e)}`, service))
      )
    })
  , { discard: true })

/** Re-runs the stage's checks until all pass or the stage's timeout; the status shows each round. */
const awaitChecks = (stage: Stage) =>
  Effect.gen(function* () {
    const { results } = yield* checkStage(stage)
    yield* update(stage.name, (s) => ({ ...s, checks: results }))
    if (results.some((r) => !r.ok)) return yield* Effect.fail(summarize(results))
  }).pipe(
    Effect.retry(Schedule.spaced("500 millis")),
    Effect.timeoutFail({ duration: stage.timeout, onTimeout: () => "" }),
    Effect.either
  )

/** Starts a stage's services and waits for its checks, within the stage's timeout. */
const gateStage = (stage: Stage) =>
  Effect.gen(function* () {
    yield* update(stage.name, (s) => ({ ...s, state: s.attempts > 0 ? "retrying" : "starting", startedAt: now(), attempts: s.attempts + 1 }))
    yield* startServices(stage.services)
    if (Either.isRight(yield* awaitChecks(stage))) {
      yield* update(stage.name, (s) => {
        const { lastError: _, ...rest } = s
        return { ...rest, state: "up", upAt: now() }
      })
      yield* event(`stage ${stage.name} is up`)
      return true
    }
    // The last round's failures, not the timeout's empty reason, say why.
    const current = yield* stageState(stage.name)
    const why = (current === undefined ? "" : summarize(current.checks)) || "checks did not pass"
    yield* update(stage.name, (s) => ({ ...s, state: "failed", lastError: `not up within ${Duration.format(stage.timeout)}: ${why}` }))
    yield* event(`stage ${stage.name} failed: ${why}`)
    return false
  })

/** Services in no stage come up last, as an implicit final stage. */
export const withUnstaged = (stages: ReadonlyArray<Stage>, rows: ReadonlyArray<ServiceRow>): ReadonlyArray<Stage> => {
  const staged = new Set(stages.flatMap((s) => s.services))
  const rest = rows.map((s) => s.name).filter((s) => !staged.has(s))
  return [
    ...stages,
    ...(rest.length > 0 ? [{ name: "unstaged", services: rest, timeout: Duration.minutes(5), onFailure: "continue" as const, checks: [] }] : [])
  ]
}

/** The configured stages and the implicit last one, over the services the registry has now. */
export const currentStages = (configured: ReadonlyArray<Stage>) =>
  Effect.map(registryFatal(Effect.flatMap(Registry, (registry) => registry.services)), (rows) => withUnstaged(configured, rows))

/** Gates stages from `from` on, in order; a stage that fails and must be waited for is retried with backoff. */
export const gateFrom = (stages: ReadonlyArray<Stage>, from: number) =>
  Effect.gen(function* () {
    for (const stage of stages.slice(from)) {
      const up = yield* gateStage(stage).pipe(
        Effect.flatMap((ok) => (ok || stage.onFailure === "continue" ? Effect.succeed(ok) : Effect.fail("retry"))),
        Effect.retry(Schedule.exponential("2 seconds", 2).pipe(Schedule.union(Schedule.spaced("60 seconds")))),
        Effect.orElseSucceed(() => false)
      )
      if (!up) yield* event(`stage ${stage.name} did not come up; continuing as configured`)
    }
  })
