/**
 * Watching the stages once they are up (rest_for_one): every interval each stage's checks run
 * again, in order; a service that fails `restartAfter` checks in a row is restarted, and the
 * stages after its own wait and are gated again behind it.
 */
import { Effect } from "effect"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import { ServiceActors } from "../lifecycle/ServiceActors.js"
import { checkStage } from "./Checks.js"
import { type BootSettings, describe, event, type Stage } from "./Model.js"
import { gateFrom } from "./Stages.js"
import { update } from "./Status.js"

/** Consecutive failed checks, by service; a passing check clears its service. */
type FailedChecks = Map<string, number>

/** Runs for as long as the sequence does. */
export const supervise = (stages: ReadonlyArray<Stage>, boot: BootSettings) =>
  Effect.suspend(() => {
    const failures: FailedChecks = new Map()
    return Effect.forever(Effect.zipRight(Effect.sleep(boot.checkInterval), round(stages, boot.restartAfter, failures)))
  })

/** One pass over the stages; stops at the first that needed a restart, since the later ones were re-gated. */
const round = (stages: ReadonlyArray<Stage>, restartAfter: number, failures: FailedChecks) =>
  Effect.gen(function* () {
    for (const [index, stage] of stages.entries()) {
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
    const results = yield* checkStage(stage)
    yield* update(stage.name, (s) => ({ ...s, checks: results }))
    const broken = [...new Set(results.filter((r) => !r.ok).map((r) => r.service))]
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
