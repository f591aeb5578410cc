/**
 * The saga journal in SQL: one row per saga (its kind and state) and one per step phase
 * ("started" with the step's intent, "done" with its result, "compensated"). The agent keeps it
 * in its registry and the master in its database, in the same two tables, so one saga runner
 * (Saga.ts) and one start-up rule serve both: a saga still `running` at start was cut short.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Schema } from "effect"
import * as SqlRows from "./SqlRows.js"

export const SagaState = Schema.Literal("running", "committed", "compensated", "failed")
export type SagaState = typeof SagaState.Type

export const StepPhase = Schema.Literal("started", "done", "compensated")
export type StepPhase = typeof StepPhase.Type

export interface SagaRow<K extends string> {
  readonly id: string
  readonly service: string
  readonly kind: K
  readonly state: SagaState
  readonly startedAt: string
  readonly error: string | undefined
}

export interface SagaStepRow {
  readonly sagaId: string
  readonly seq: number
  readonly step: string
  readonly phase: StepPhase
  /** The journaled intent or result, as JSON. */
  readonly data: unknown
}

/** What the saga runner needs of a journal; `K` is the literal union of the owner's saga kinds. */
export interface SagaJournal<K extends string = string> {
  readonly beginSaga: (id: string, service: string, kind: K) => Effect.Effect<void, SqlError>
  readonly journal: (sagaId: string, step: string, phase: StepPhase, data: unknown) => Effect.Effect<void, SqlError>
  readonly endSaga: (id: string, state: Exclude<SagaState, "running">, error?: string) => Effect.Effect<void, SqlError>
  readonly sagasIn: (state: SagaState) => Effect.Effect<ReadonlyArray<SagaRow<K>>, SqlError>
  readonly sagaSteps: (sagaId: string) => Effect.Effect<ReadonlyArray<SagaStepRow>, SqlError>
  /**
   * Which of the services asked are busy: a saga of it is open, or ended at or after the `since`
   * asked with it. One query for them all (keep each call under SQLite's parameter limit).
   */
  readonly busyAmong: (asked: ReadonlyArray<{ readonly service: string; readonly since: Date }>) => Effect.Effect<ReadonlySet<string>, SqlError>
}

/** The two tables, for a database that does not have them yet (the agent's registry has had them since its first migration). */
export const createTables = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE sagas (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    error TEXT
  )`
  yield* sql`CREATE TABLE saga_steps (
    saga_id TEXT NOT NULL REFERENCES sagas(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    phase TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (saga_id, seq)
  )`
  yield* sql`CREATE INDEX IF NOT EXISTS sagas_state ON sagas(state)`
})

/** The journal over the current SQL client; `Kind` decodes the kinds its owner runs. */
export const make = <K extends string>(Kind: Schema.Schema<K, K>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const now = () => new Date().toISOString()

    const SagaRow = Schema.Struct({
      id: Schema.String,
      service: Schema.String,
      kind: Kind,
      state: SagaState,
      startedAt: Schema.propertySignature(Schema.String).pipe(Schema.fromKey("started_at")),
      error: SqlRows.Nullable(Schema.String)
    })
    const StepRow = Schema.Struct({
      sagaId: Schema.propertySignature(Schema.String).pipe(Schema.fromKey("saga_id")),
      seq: Schema.Number,
      step: Schema.String,
      phase: StepPhase,
      data: SqlRows.JsonText(Schema.Unknown)
    })

    const sagasIn = SqlRows.findAll("sagas", {
      Request: SagaState,
      Result: SagaRow,
      execute: (state) => sql`SELECT * FROM sagas WHERE state = ${state} ORDER BY started_at`
    })
    const sagaSteps = SqlRows.findAll("saga_steps", {
      Request: Schema.String,
      Result: StepRow,
      execute: (sagaId) => sql`SELECT * FROM saga_steps WHERE saga_id = ${sagaId} ORDER BY seq`
    })

    const journal: SagaJournal<K> = {
      beginSaga: (id, service, kind) =>
        sql`INSERT INTO sagas (id, service, kind, state, started_at) VALUES (${id}, ${service}, ${kind}, 'running', ${now()})`.pipe(Effect.asVoid),
      journal: (sagaId, step, phase, data) =>
        sql`INSERT INTO saga_steps (saga_id, seq, step, phase, data, at)
          VALUES (${sagaId}, (SELECT COALESCE(MAX(seq), 0) + 1 FROM saga_steps WHERE saga_id = ${sagaId}), ${step}, ${phase}, ${JSON.stringify(data ?? null)}, ${now()})`.pipe(Effect.asVoid),
      endSaga: (id, state, error) =>
        sql`UPDATE sagas SET state = ${state}, ended_at = ${now()}, error = ${error ?? null} WHERE id = ${id}`.pipe(Effect.asVoid),
      sagasIn,
      sagaSteps,
      busyAmong: (asked) => {
        if (asked.length === 0) return Effect.succeed(new Set<string>())
        // The earliest `since` selects every saga that may matter; each service's own is then
        // applied here (ended_at is ISO text, so it compares as the query compares it).
        const sinceOf = new Map(asked.map((a) => [a.service, a.since.toISOString()]))
        const earliest = [...sinceOf.values()].reduce((a, b) => (a < b ? a : b))
        return sql<{ service: string; state: string; ended_at: string | null }>`SELECT service, state, ended_at FROM sagas
          WHERE ${sql.in("service", [...sinceOf.keys()])} AND (state = 'running' OR ended_at >= ${earliest})`.pipe(
          Effect.map((rows) =>
            new Set(rows.filter((r) => r.state === "running" || (r.ended_at !== null && r.ended_at >= sinceOf.get(r.service)!)).map((r) => r.service))
          )
        )
      }
    }
    return journal
  })
