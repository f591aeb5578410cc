/**
 * Rows read and written through Schemas (`SqlSchema`), shared by the agent's registry and the
 * master's database: one schema per row says both how its columns decode and how they are
 * written. A row that does not decode was written by us and then damaged, so it fails as a
 * `SqlError` naming the table and the field (the database is what is wrong), not as a parse
 * error every caller would have to know about.
 */
import { SqlSchema } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Option, ParseResult, Schema } from "effect"

const damaged = (table: string) => (e: ParseResult.ParseError) =>
  new SqlError({ cause: e, message: `a row of ${table} cannot be read: ${ParseResult.TreeFormatter.formatErrorSync(e)}` })

const unwritable = (table: string) => (e: ParseResult.ParseError) =>
  new SqlError({ cause: e, message: `a row of ${table} cannot be written: ${ParseResult.TreeFormatter.formatErrorSync(e)}` })

/** Every row `execute` returns, decoded with `Result`. */
export const findAll = <IA, II, A, AI, R>(table: string, options: {
  readonly Request: Schema.Schema<IA, II>
  readonly Result: Schema.Schema<A, AI>
  readonly execute: (request: II) => Effect.Effect<ReadonlyArray<unknown>, SqlError, R>
}) => {
  const query = SqlSchema.findAll(options)
  return (request: IA): Effect.Effect<ReadonlyArray<A>, SqlError, R> =>
    query(request).pipe(Effect.catchIf(ParseResult.isParseError, (e) => Effect.fail(damaged(table)(e))))
}

/** The first row `execute` returns, if any, decoded with `Result`. */
export const findOne = <IA, II, A, AI, R>(table: string, options: {
  readonly Request: Schema.Schema<IA, II>
  readonly Result: Schema.Schema<A, AI>
  readonly execute: (request: II) => Effect.Effect<ReadonlyArray<unknown>, SqlError, R>
}) => {
  const query = SqlSchema.findOne(options)
  return (request: IA): Effect.Effect<Option.Option<A>, SqlError, R> =>
    query(request).pipe(Effect.catchIf(ParseResult.isParseError, (e) => Effect.fail(damaged(table)(e))))
}

/**
 * Runs `execute` with `request` encoded by `Request`, the row as its columns: what is written is
 * what the same schema reads back. A value the schema refuses fails as a `SqlError` naming the
 * table, before anything is written.
 */
export const write = <IA, II, R>(table: string, options: {
  readonly Request: Schema.Schema<IA, II>
  readonly execute: (request: II) => Effect.Effect<unknown, SqlError, R>
}) => {
  const query = SqlSchema.void(options)
  return (request: IA): Effect.Effect<void, SqlError, R> =>
    query(request).pipe(Effect.catchIf(ParseResult.isParseError, (e) => Effect.fail(unwritable(table)(e))))
}

/** A field read from the column `name` (snake_case in SQL, camelCase in the program). */
export const column = <A, I>(name: string, schema: Schema.Schema<A, I>) => Schema.propertySignature(schema).pipe(Schema.fromKey(name))

/** A TEXT column holding JSON, decoded with `schema`. */
export const JsonText = <A, I>(schema: Schema.Schema<A, I>) => Schema.parseJson(schema)

/** SQLite's nullable column: NULL is `undefined` to the program, and `undefined` is written as NULL. */
export const Nullable = <A, I>(schema: Schema.Schema<A, I>) =>
  Schema.transform(Schema.NullOr(schema), Schema.UndefinedOr(Schema.typeSchema(schema)), {
    strict: true,
    decode: (a) => a ?? undefined,
    encode: (a) => a ?? null
  })

/** SQLite's 0/1 INTEGER as a boolean. */
export const IntBoolean = Schema.transform(Schema.Number, Schema.Boolean, {
  strict: true,
  decode: (n) => n !== 0,
  encode: (b) => (b ? 1 : 0)
})
