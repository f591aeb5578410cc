/**
 * A service's definition as the registry keeps it: the domain schema's encoded JSON, decoded
 * with the same schema when read, so readers get durations as `Duration` and every default
 * applied. A definition an older agent stored that this schema refuses does not make the
 * registry unreadable: it is read as `UnreadableDefinition`, naming each field, for the reader
 * to report, while the service's other rows (its containers, routes) still serve.
 */
import { ServiceDefinition, Validation } from "@mcp/domain"
import { SqlRows } from "@mcp/rpc"
import { Data, Either, ParseResult, Schema } from "effect"

export class UnreadableDefinition extends Data.TaggedClass("UnreadableDefinition")<{
  readonly problems: ReadonlyArray<Validation.Problem>
}> {
  /** The fields this agent's schema refuses, and why. */
  get reason(): string {
    return this.problems.map((p) => `${p.path}: ${p.message}`).join("; ")
  }
}

const Definition = Schema.typeSchema(ServiceDefinition.ServiceDefinition)
const encodeDefinition = ParseResult.encode(ServiceDefinition.ServiceDefinition)

/** The `definition` column. Only a definition that decoded is ever written. */
export const StoredDefinition = Schema.transformOrFail(
  SqlRows.JsonText(Schema.Unknown),
  Schema.Union(Definition, Schema.instanceOf(UnreadableDefinition)),
  {
    strict: true,
    decode: (json) =>
      ParseResult.succeed(
        Either.match(Validation.decodeStoredDefinition(json), {
          onLeft: (problems) => new UnreadableDefinition({ problems }),
          onRight: (definition) => definition
        })
      ),
    encode: (stored, _, ast) =>
      stored instanceof UnreadableDefinition
        ? ParseResult.fail(new ParseResult.Forbidden(ast, stored, "a definition that cannot be read is never written back"))
        : encodeDefinition(stored)
  }
)
