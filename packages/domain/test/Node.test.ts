import { describe, expect, it } from "@effect/vitest"
import { Either, ParseResult, Schema } from "effect"
import { NodeAddress } from "../src/Node.js"

const messages = <A, I>(schema: Schema.Schema<A, I>, value: unknown) => {
  const result = Schema.decodeUnknownEither(schema, { errors: "all" })(value)
  return Either.isLeft(result) ? ParseResult.ArrayFormatter.formatErrorSync(result.left).map((i) => ({ path: i.path, message: i.message })) : []
}

describe("node addresses", () => {
  it("must be host:port, quoting what was given", () => {
    expect(messages(NodeAddress, "10.0.0.5")).toEqual([{ path: [], message: `address "10.0.0.5" must be "host:port", e.g. "10.0.0.5:9444"` }])
    for (const ok of ["10.0.0.5:9444", "[fd00::5]:9444", "orion.lan:9444"]) expect(messages(NodeAddress, ok), ok).toEqual([])
  })
})
