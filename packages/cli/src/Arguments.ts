/**
 * Command-line values decoded with the domain's Schemas, so a name reaches the wire already
 * branded and a bad one is refused before anything is contacted, naming the argument it came
 * from and the rule it broke (exit 2).
 */
import { Effect, Either, type Option, ParseResult, Schema } from "effect"
import { UsageError } from "./Report.js"

const decodeNamed = <A, I>(schema: Schema.Schema<A, I>, nameOf: (path: ReadonlyArray<PropertyKey>) => string) => (value: I) =>
  Either.match(Schema.decodeEither(schema, { errors: "all" })(value), {
    onLeft: (e): Effect.Effect<A, UsageError> =>
      Effect.fail(
        new UsageError({
          message: ParseResult.ArrayFormatter.formatErrorSync(e).map((p) => `${nameOf(p.path)}: ${p.message}`).join("; ")
        })
      ),
    onRight: (a) => Effect.succeed(a)
  })

/** Decodes one value; `argument` is how the user wrote it: `<service>`, `--node`. */
export const decode = <A, I>(schema: Schema.Schema<A, I>, argument: string) => decodeNamed(schema, () => argument)

/** Decodes an optional value (an `Options.optional`). */
export const decodeOption = <A, I>(schema: Schema.Schema<A, I>, argument: string) => (value: Option.Option<I>) =>
  Effect.transposeMapOption(value, decode(schema, argument))

/**
 * Decodes a struct assembled from several arguments; a problem is named by the argument its
 * field came from (`argumentOf` maps field names to how the user wrote them).
 */
export const decodeFields = <A, I>(schema: Schema.Schema<A, I>, argumentOf: Readonly<Record<string, string>>) =>
  decodeNamed(schema, (path) => argumentOf[String(path[0])] ?? path.join("."))
