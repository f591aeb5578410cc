/**
 * Rows read through Schemas (`SqlSchema`), shared by the agent's registry and the master's
 * database. A row that does not decode was written by us and then damaged, so it fails as a
 * `SqlError` naming the table and the field (the database is what is wrong), not as a parse
 * error every caller would have to know about.
 */
import { SqlSchema } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Option, ParseResult, Schema } from "effect"

const damaged = (table: string) => (e: ParseResult.ParseError) =>
  new SqlError({ cause: e, message: `a row of ${table} cannot be read: ${ParseResult.TreeFormatter.formatErrorSync(e)}` })

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

/** A TEXT column holding JSON, decoded with `schema`. */
export const JsonText = <A, I>(schema: Schema.Schema<A, I>) => Schema.parseJson(schema)

/** SQLite's nullable column: NULL is `undefined` to the program. */
export const Nullable = <A, I>(schema: Schema.Schema<A, I>) => Schema.optionalWith(schema, { nullable: true })

/** SQLite's 0/1 INTEGER as a boolean. */
export const IntBoolean = Schema.transform(Schema.Number, Schema.Boolean, {
  strict: true,
  decode: (n) => n !== 0,
  encode: (b) => (b ? 1 : 0)
})
