/**
 * Watching the stages once they are up (rest_for_one): every interval each stage's checks run
 * again, in order; a service that fails `restartAfter` checks in a row is restarted, and the
 * stages after its own wait and are gated again behind it.
 *
 * Each round takes the stages over the registry's services as they are then: a service
 * deployed since the last round is checked from this one on (in its stage, or in the implicit
 * last stage, which is gated as at boot when it first appears); one undeployed is dropped, its
 * failed checks forgotten. A service a stage names but the registry lacks fails its
 * "registered" check as before, but is never counted towards a restart: there is nothing to
 * restart.
 */
import { Effect } from "effect"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import { ServiceActors } from "../lifecycle/ServiceActors.js"
import { checkStage } from "./Checks.js"
import { type BootSettings, describe, event, type Stage } from "./Model.js"
import { currentStages, gateFrom } from "./Stages.js"
import { follow, update } from "./Status.js"

/** Consecutive failed checks, by service; a passing check clears its service. */
type FailedChecks = Map<string, number>

/** Runs for as long as the sequence does. */
export const supervise = (boot: BootSettings) =>
  Effect.suspend(() => {
    const failures: FailedChecks = new Map()
    return Effect.forever(Effect.zipRight(Effect.sleep(boot.checkInterval), round(boot.stages, boot.restartAfter, failures)))
  })

/**
 * One pass over the stages as they are now; stops at the first that needed a restart, since
 * the later ones were re-gated, or at a stage new since the last pass, which is gated instead.
 */
const round = (configured: ReadonlyArray<Stage>, restartAfter: number, failures: FailedChecks) =>
  Effect.gen(function* () {
    const stages = yield* currentStages(configured)
    const added = new Set(yield* follow(stages))
    const named = new Set(stages.flatMap((s) => s.services))
    for (const service of [...failures.keys()]) if (!named.has(service)) failures.delete(service)
    for (const [index, stage] of stages.entries()) {
      if (added.has(stage.name)) {
        yield* gateFrom(stages, index)
        break
      }
      const due = yield* recheck(stage, restartAfter, failures)
      if (due.length === 0) continue
      yield* event(`stage ${stage.name}: ${due.join(", ")} failed ${restartAfter} checks in a row; restarting, then re-gating the later stages`)
      for (const later of stages.slice(index + 1)) yield* update(later.name, (s) => ({ ...s, state: "waiting" }))
      yield* restart(due, failures)
      yield* gateFrom(stages, index)
      break
    }
  })

/** Runs the stage's checks and counts its failures; returns the services due for a restart. */
const recheck = (stage: Stage, restartAfter: number, failures: FailedChecks) =>
  Effect.gen(function* () {
    const { notDeployed, results } = yield* checkStage(stage)
    yield* update(stage.name, (s) => ({ ...s, checks: results }))
    const absent = new Set(notDeployed)
    for (const service of absent) failures.delete(service)
    const broken = [...new Set(results.filter((r) => !r.ok && !absent.has(r.service)).map((r) => r.service))]
    for (const r of results) if (r.ok) failures.delete(r.service)
    for (const service of broken) failures.set(service, (failures.get(service) ?? 0) + 1)
    return broken.filter((s) => (failures.get(s) ?? 0) >= restartAfter)
  })

const restart = (services: ReadonlyArray<string>, failures: FailedChecks) =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    const actors = yield* ServiceActors
    for (const service of services) {
      failures.delete(service)
      yield* actors.submit(service, lifecycle.restart(service)).pipe(Effect.catchAll((e) => event(`restart of ${service} failed: ${describe(e)}`, service)))
    }
  })
