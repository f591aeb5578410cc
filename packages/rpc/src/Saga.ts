/**
 * A journaled saga: each step is recorded before it runs and after it succeeds, so that a
 * saga cut short (a failure, or its daemon killed) can be compensated from the journal alone.
 * The agent runs its deploys with it and the master its cross-node deploys and undeploys, each
 * over its own SQL journal (SagaJournal.ts).
 * Compensations are looked up by step name and get the step's journaled data, never a closure.
 *
 * Two ways to run one: `run` takes a fixed list of steps; `sequence` hands its body a function
 * that runs one step and returns the step's typed result, so a step can take what earlier
 * steps produced as plain arguments. Either way, the first failure compensates every step the
 * journal shows and fails with `StepFailed`.
 */
import { Context, Data, Effect, Either, Metric, ParseResult, Schedule, Schema } from "effect"
import type { SqlError } from "@effect/sql/SqlError"
import * as CallMetrics from "./CallMetrics.js"
import type { SagaJournal } from "./SagaJournal.js"

/** The part of a journal a running saga writes and a compensation reads (any kind of saga). */
export type Journal = Pick<SagaJournal, "journal" | "sagaSteps" | "endSaga">

export interface Step<E, R, A = unknown> {
  readonly name: string
  /** Journaled with "started": what compensation needs if the agent dies mid-step. Read when the step starts. */
  readonly intent: () => unknown
  readonly run: Effect.Effect<A, E, R>
  /** How the result is journaled with "done" (as it is, by default). */
  readonly journal?: (result: A) => unknown
  /**
   * Whether a failure leaves the step's outcome unknown (a peer asked to do it did not answer: it
   * may have done it). Such a failure halts the saga without compensating anything: the saga stays
   * open, to be finished from its journal by whoever knows how to ask again (see `inDoubtWhen`).
   */
  readonly inDoubt?: (error: E) => boolean
}

/** Undoes a step from its journaled data; must be idempotent (it may run more than once). */
export type Compensator<R> = (data: { readonly intent: unknown; readonly result: unknown }) => Effect.Effect<void, unknown, R>

export class StepFailed<E> extends Data.TaggedError("StepFailed")<{
  readonly step: string
  readonly error: E
  /** Compensations that failed even after retries: the saga stays open for the next start. */
  readonly compensationErrors: ReadonlyArray<string>
  /** The step's outcome is unknown: nothing was compensated and the saga stays open (Step.inDoubt). */
  readonly inDoubt?: true
}> {}

export const compensationRetry = Schedule.exponential("50 millis", 2).pipe(Schedule.intersect(Schedule.recurs(3)))

/**
 * How a failing compensation is retried before the saga is left open: `compensationRetry` unless
 * provided (a test on the TestClock provides one that does not sleep).
 */
export class CompensationRetry extends Context.Reference<CompensationRetry>()("@mcp/rpc/Saga/CompensationRetry", {
  defaultValue: (): Schedule.Schedule<unknown, unknown> => compensationRetry
}) {}

/** A step's name without the data some carry ("edge example.com" is an "edge" step): a bounded metric label. */
export const stepKind = (name: string): string => name.split(/[ :]/)[0]!

/** Compensations run, by step kind and result (ok, or failed after their retries). */
export const compensations = Metric.counter("mcp_saga_compensations", { incremental: true, description: "saga steps undone, by step and result (ok, or failed after retries)" })

const countCompensation = (step: string, result: "ok" | "failed") =>
  Metric.increment(Metric.tagged(Metric.tagged(compensations, "step", stepKind(step)), "result", result))

const describe = (e: unknown): string => (e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e))

/** Compensators by step name: a record, or a lookup for sagas whose step names carry data (one step per hostname). */
export type Compensators<R> = Readonly<Record<string, Compensator<R>>> | ((step: string) => Compensator<R> | undefined)

/** What the journal shows of one step. */
export interface StepProgress {
  readonly intent: unknown
  /** `undefined` until the step is done. */
  readonly result: unknown
  readonly done: boolean
  readonly compensated: boolean
}

/** The steps of `sagaId` in the order they started, each with what the journal shows of it. */
export const progress = (journal: Journal, sagaId: string) =>
  Effect.map(journal.sagaSteps(sagaId), (rows) => {
    const steps = new Map<string, StepProgress>()
    for (const row of rows) {
      const entry = steps.get(row.step) ?? { intent: undefined, result: undefined, done: false, compensated: false }
      steps.set(row.step, row.phase === "started" ? { ...entry, intent: row.data }
        : row.phase === "done" ? { ...entry, result: row.data, done: true }
        : { ...entry, compensated: true })
    }
    return steps as ReadonlyMap<string, StepProgress>
  })

/**
 * Compensates the journaled steps of `sagaId` in reverse order. Returns the failures; the
 * saga is marked compensated only when there are none.
 */
export const compensate = <R>(
  journal: Journal,
  sagaId: string,
  compensators: Compensators<R>
) =>
  Effect.gen(function* () {
    const steps = yield* progress(journal, sagaId)
    const retry = yield* CompensationRetry
    const failures: Array<string> = []
    for (const [step, entry] of [...steps.entries()].reverse()) {
      if (entry.compensated) continue
      const undo = typeof compensators === "function" ? compensators(step) : compensators[step]
      if (undo === undefined) continue
      const outcome = yield* Effect.either(Effect.retry(undo(entry), retry).pipe(
        Effect.withSpan(`saga.compensate ${stepKind(step)}`, { attributes: { "saga.id": sagaId, "saga.step": step } })
      ))
      yield* countCompensation(step, Either.isLeft(outcome) ? "failed" : "ok")
      if (Either.isLeft(outcome)) {
        failures.push(`${step}: ${describe(outcome.left)}`)
        yield* Effect.logWarning(`saga ${sagaId}: compensating ${step} failed: ${describe(outcome.left)}`)
      } else {
        // Undone but not recorded (a full disk): the saga stays open and the next start undoes it
        // again, which compensations allow. The other steps are still undone now.
        const recorded = yield* Effect.either(journal.journal(sagaId, step, "compensated", null))
        if (Either.isLeft(recorded)) {
          failures.push(`${step}: undone, but the journal could not record it (${describe(recorded.left)})`)
          yield* Effect.logWarning(`saga ${sagaId}: ${step} undone, but the journal could not record it: ${describe(recorded.left)}`)
        }
      }
    }
    if (failures.length === 0) {
      const ended = yield* Effect.either(journal.endSaga(sagaId, "compensated"))
      if (Either.isLeft(ended)) {
        failures.push(`the journal could not record the end of the rollback (${describe(ended.left)})`)
        yield* Effect.logWarning(`saga ${sagaId}: undone, but the journal could not record its end: ${describe(ended.left)}`)
      }
    }
    return failures
  })

/** A step failed: what `sequence` stops with before it compensates. */
class Halted<E> extends Data.TaggedError("SagaHalted")<{ readonly step: string; readonly error: E; readonly inDoubt?: true }> {}

/** The errors of the steps behind the `Halted` failures in `EB`. */
type HaltedError<EB> = EB extends Halted<infer E> ? E : never

/**
 * Runs one step of a saga: journals it, reports it, and returns its result. A journal that
 * cannot be written (a full disk) halts the saga like a failed step: without "started" the step
 * never runs; without "done" it ran, and is undone from its intent, as after a crash mid-step.
 */
export type RunStep = <A, E, R>(step: Step<E, R, A>) => Effect.Effect<A, Halted<E | SqlError>, R>

/**
 * Runs `body`, which runs its steps through the `RunStep` it is given. When a step fails, the
 * steps the journal shows are compensated (newest first) and the saga fails with `StepFailed`;
 * when its failure leaves its outcome unknown (Step.inDoubt), nothing is compensated, the saga
 * stays open and the failure is `StepFailed` with `inDoubt`.
 */
export const sequence = <A, EB, R, RC>(
  journal: Journal,
  sagaId: string,
  compensators: Compensators<RC>,
  onStep: (step: string, status: "started" | "done" | "failed") => Effect.Effect<void>,
  body: (runStep: RunStep) => Effect.Effect<A, EB, R>
) => {
  const runStep: RunStep = (step) =>
    Effect.gen(function* () {
      const halt = (error: SqlError) => Effect.zipRight(onStep(step.name, "failed"), Effect.fail(new Halted({ step: step.name, error })))
      yield* journal.journal(sagaId, step.name, "started", step.intent()).pipe(Effect.catchAll(halt))
      yield* onStep(step.name, "started")
      const outcome = yield* Effect.either(step.run.pipe(
        CallMetrics.timed(CallMetrics.sagaStepDuration, { step: stepKind(step.name) }),
        Effect.withSpan(`saga.step ${stepKind(step.name)}`, { attributes: { "saga.id": sagaId, "saga.step": step.name } })
      ))
      if (Either.isLeft(outcome)) {
        yield* onStep(step.name, "failed")
        return yield* new Halted({ step: step.name, error: outcome.left, ...(step.inDoubt?.(outcome.left) === true ? { inDoubt: true as const } : {}) })
      }
      yield* journal.journal(sagaId, step.name, "done", step.journal === undefined ? outcome.right ?? null : step.journal(outcome.right)).pipe(Effect.catchAll(halt))
      yield* onStep(step.name, "done")
      return outcome.right
    })
  return body(runStep).pipe(
    Effect.catchIf(
      (e): e is Extract<EB, Halted<unknown>> => e instanceof Halted,
      (halted) =>
        halted.inDoubt === true
          ? Effect.fail(new StepFailed({ step: halted.step, error: halted.error as HaltedError<EB>, compensationErrors: [], inDoubt: true }))
          : Effect.flatMap(compensate(journal, sagaId, compensators), (compensationErrors) =>
            Effect.fail(new StepFailed({ step: halted.step, error: halted.error as HaltedError<EB>, compensationErrors }))
          )
    )
  )
}

/** Runs `steps` in order, journaling each; on a failure compensates what ran and fails. */
export const run = <E, R, RC>(
  journal: Journal,
  sagaId: string,
  steps: ReadonlyArray<Step<E, R>>,
  compensators: Compensators<RC>,
  onStep: (step: string, status: "started" | "done" | "failed") => Effect.Effect<void> = () => Effect.void
) => sequence(journal, sagaId, compensators, onStep, (runStep) => Effect.forEach(steps, runStep, { discard: true }))

// ---------------------------------------------------------------------------------------------
// Typed steps: the intent and the result are journaled through their Schemas and decoded again
// for compensation, so a compensation works with the types the step wrote.

/** What a step journals and how it is undone. The step's `run` is built by its module. */
export interface Journaled<I, IE, O, OE, CR> {
  readonly name: string
  readonly Intent: Schema.Schema<I, IE>
  readonly Result: Schema.Schema<O, OE>
  /** Undoes the step from its journaled intent and result (`undefined` if it never finished); idempotent. */
  readonly compensate: (journaled: { readonly intent: I; readonly result: O | undefined }) => Effect.Effect<void, unknown, CR>
}

/** Defines a typed step's journal (the types are inferred from the Schemas). */
export const journaled = <I, IE, O, OE, CR>(definition: Journaled<I, IE, O, OE, CR>): Journaled<I, IE, O, OE, CR> => definition

/**
 * A step of a typed journal: its intent is journaled when it starts, its result when it ends.
 * `toResult` picks what is journaled when the step gives its caller more than that.
 */
export function step<I, IE, O, OE, CR, E, R>(definition: Journaled<I, IE, O, OE, CR>, intent: I, run: Effect.Effect<O, E, R>): Step<E, R, O>
export function step<I, IE, O, OE, CR, A, E, R>(definition: Journaled<I, IE, O, OE, CR>, intent: I, run: Effect.Effect<A, E, R>, toResult: (a: A) => O): Step<E, R, A>
export function step<I, IE, O, OE, CR, A, E, R>(definition: Journaled<I, IE, O, OE, CR>, intent: I, run: Effect.Effect<A, E, R>, toResult?: (a: A) => O): Step<E, R, A> {
  const encode = Schema.encodeSync(definition.Result)
  return {
    name: definition.name,
    intent: () => Schema.encodeSync(definition.Intent)(intent),
    run,
    journal: (a) => encode(toResult === undefined ? (a as unknown as O) : toResult(a))
  }
}

/** The step, with the failures `inDoubt` picks leaving the saga open instead of compensated (Step.inDoubt). */
export const inDoubtWhen = <E, R, A>(step: Step<E, R, A>, inDoubt: (error: E) => boolean): Step<E, R, A> => ({ ...step, inDoubt })

/** A step with nothing to undo: the journal only shows that it ran. */
export const plain = <A, E, R>(name: string, run: Effect.Effect<A, E, R>): Step<E, R, A> => ({ name, intent: () => null, run, journal: () => null })

/** The compensator of a typed step: decodes what the journal holds, then undoes the step. */
export const compensator = <I, IE, O, OE, CR>(definition: Journaled<I, IE, O, OE, CR>): Compensator<CR> =>
  ({ intent, result }) =>
    Effect.gen(function* () {
      const decodedIntent = yield* Schema.decodeUnknown(definition.Intent)(intent)
      const decodedResult = result === undefined ? undefined : yield* Schema.decodeUnknown(definition.Result)(result)
      yield* definition.compensate({ intent: decodedIntent, result: decodedResult })
    }).pipe(
      Effect.catchIf(ParseResult.isParseError, (e) =>
        Effect.fail(new Error(`the journal of step ${definition.name} cannot be read: ${ParseResult.TreeFormatter.formatErrorSync(e)}`))
      )
    )
