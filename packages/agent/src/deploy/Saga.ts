/**
 * A journaled saga: each step is recorded before it runs and after it succeeds, so that a
 * saga cut short (a failure, or the agent killed) can be compensated from the journal alone.
 * Compensations are looked up by step name and get the step's journaled data, never a closure.
 */
import { Data, Effect, Either, Schedule } from "effect"
import type { Registry } from "../registry/Registry.js"

export interface StepResult {
  /** What compensation needs to undo the step, journaled with "done". */
  readonly data: unknown
}

export interface Step<E, R> {
  readonly name: string
  /** Journaled with "started": what compensation needs if the agent dies mid-step. Read when the step starts. */
  readonly intent: () => unknown
  readonly run: Effect.Effect<unknown, E, R>
}

/** Undoes a step from its journaled data; must be idempotent (it may run more than once). */
export type Compensator<R> = (data: { readonly intent: unknown; readonly result: unknown }) => Effect.Effect<void, unknown, R>

export class StepFailed<E> extends Data.TaggedError("StepFailed")<{
  readonly step: string
  readonly error: E
  /** Compensations that failed even after retries: the saga stays open for the next start. */
  readonly compensationErrors: ReadonlyArray<string>
}> {}

export const compensationRetry = Schedule.exponential("50 millis", 2).pipe(Schedule.intersect(Schedule.recurs(3)))

const describe = (e: unknown): string => (e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e))

/**
 * Compensates the journaled steps of `sagaId` in reverse order. Returns the failures; the
 * saga is marked compensated only when there are none.
 */
export const compensate = <R>(
  registry: Registry,
  sagaId: string,
  compensators: Readonly<Record<string, Compensator<R>>>
) =>
  Effect.gen(function* () {
    const journal = yield* registry.sagaSteps(sagaId)
    const steps = new Map<string, { intent: unknown; result: unknown; compensated: boolean }>()
    for (const row of journal) {
      const entry = steps.get(row.step) ?? { intent: undefined, result: undefined, compensated: false }
      if (row.phase === "started") entry.intent = row.data
      else if (row.phase === "done") entry.result = row.data
      else entry.compensated = true
      steps.set(row.step, entry)
    }
    const failures: Array<string> = []
    for (const [step, entry] of [...steps.entries()].reverse()) {
      if (entry.compensated) continue
      const undo = compensators[step]
      if (undo === undefined) continue
      const outcome = yield* Effect.either(Effect.retry(undo(entry), compensationRetry))
      if (Either.isLeft(outcome)) {
        failures.push(`${step}: ${describe(outcome.left)}`)
        yield* Effect.logWarning(`saga ${sagaId}: compensating ${step} failed: ${describe(outcome.left)}`)
      } else {
        yield* registry.journal(sagaId, step, "compensated", null)
      }
    }
    if (failures.length === 0) yield* registry.endSaga(sagaId, "compensated")
    return failures
  })

/** Runs `steps` in order, journaling each; on a failure compensates what ran and fails. */
export const run = <E, R, RC>(
  registry: Registry,
  sagaId: string,
  steps: ReadonlyArray<Step<E, R>>,
  compensators: Readonly<Record<string, Compensator<RC>>>,
  onStep: (step: string, status: "started" | "done" | "failed") => Effect.Effect<void> = () => Effect.void
) =>
  Effect.gen(function* () {
    for (const step of steps) {
      yield* registry.journal(sagaId, step.name, "started", step.intent())
      yield* onStep(step.name, "started")
      const outcome = yield* Effect.either(step.run)
      if (Either.isLeft(outcome)) {
        yield* onStep(step.name, "failed")
        const compensationErrors = yield* compensate(registry, sagaId, compensators)
        return yield* Effect.fail(new StepFailed({ step: step.name, error: outcome.left, compensationErrors }))
      }
      yield* registry.journal(sagaId, step.name, "done", outcome.right ?? null)
      yield* onStep(step.name, "done")
    }
  })
