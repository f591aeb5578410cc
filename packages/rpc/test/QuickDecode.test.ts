/**
 * The compiled check (QuickDecode.ts) against the Schema parsers it stands in front of: whatever
 * the input (a valid value, one with a field changed to anything, one with a key added), decoding
 * and encoding through `quick` give what Schema gives, the same value or the same error; and where
 * the check vouches for a value, Schema would have given that value back unchanged.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Rpc } from "@effect/rpc"
import * as Status from "@mcp/domain/Status"
import { Arbitrary, Either, Exit, FastCheck as fc, ParseResult, Schema } from "effect"
import { AgentRpcs, ControlRpcs, MasterRpcs } from "../src/Contracts.js"
import * as QuickDecode from "../src/QuickDecode.js"

/** Every object and array inside `value` (itself included), as [container, key] places to change. */
const placesIn = (value: unknown): Array<[Record<string, unknown> | Array<unknown>, string | number]> => {
  if (typeof value !== "object" || value === null) return []
  const container = value as Record<string, unknown>
  return Object.keys(container).flatMap((k) => [[container, Array.isArray(value) ? Number(k) : k] as [Record<string, unknown>, string], ...placesIn(container[k])])
}

/** Plain schemas of the contracts and the domain, and a few shapes they do not hold yet. */
const Shapes = Schema.Struct({
  tuple: Schema.Tuple(Schema.String, Schema.Int),
  literal: Schema.Literal("a", "b", 1),
  maybe: Schema.optional(Schema.Struct({ inner: Schema.NonEmptyString })),
  exact: Schema.optionalWith(Schema.Number, { exact: true }),
  list: Schema.NonEmptyArray(Schema.Boolean),
  anything: Schema.Unknown
})
const heartbeat = ControlRpcs.requests.get("Heartbeat")! as unknown as Rpc.AnyWithProps
const register = ControlRpcs.requests.get("Register")! as unknown as Rpc.AnyWithProps
const plain: ReadonlyArray<[string, Schema.Schema<unknown, unknown>]> = [
  ["ServiceStatus[]", Schema.Array(Status.ServiceStatus) as Schema.Schema<unknown, unknown>],
  ["FleetStatus", Status.FleetStatus as Schema.Schema<unknown, unknown>],
  ["Heartbeat payload", heartbeat.payloadSchema as Schema.Schema<unknown, unknown>],
  ["Register payload", register.payloadSchema as Schema.Schema<unknown, unknown>],
  ["Heartbeat answer", heartbeat.successSchema as Schema.Schema<unknown, unknown>],
  ["shapes", Shapes as unknown as Schema.Schema<unknown, unknown>]
]

/** Schemas with parts that transform, whose other parts the check still follows (DirectCall uses it so). */
const PartlyPlain = Schema.Struct({
  count: Schema.Int,
  since: Schema.optionalWith(Schema.NumberFromString, { exact: true }),
  either: Schema.optional(Schema.Union(Schema.Literal("1"), Schema.NumberFromString)),
  items: Schema.Array(Schema.Struct({ at: Schema.Date }))
})
const partlyPlain: ReadonlyArray<[string, Schema.Schema<unknown, unknown>]> = [
  ["Register answer (the policy transforms)", register.successSchema as Schema.Schema<unknown, unknown>],
  ["a struct with fields that transform", PartlyPlain as unknown as Schema.Schema<unknown, unknown>]
]

/** An input drawn from the schema's valid values, then perhaps one field changed to anything or one key added. */
const inputs = (schema: Schema.Schema<unknown, unknown>) =>
  fc.tuple(Arbitrary.make(schema), fc.nat(), fc.oneof(fc.constant("keep"), fc.constant("add"), fc.constant("change")), fc.jsonValue(), fc.string({ minLength: 1, maxLength: 6 })).map(
    ([value, at, how, replacement, key]) => {
      const input = JSON.parse(JSON.stringify(value)) as unknown
      const places = placesIn(input)
      if (how === "keep" || places.length === 0) return input
      const [container, k] = places[at % places.length]!
      if (how === "change") (container as Record<string, unknown>)[k] = replacement
      else if (!Array.isArray(container) && !(key in container)) container[key] = "added"
      return input
    }
  )

const sameResult = (quick: Either.Either<unknown, ParseResult.ParseError>, full: Either.Either<unknown, ParseResult.ParseError>) => {
  expect(quick._tag).toBe(full._tag)
  if (Either.isRight(quick) && Either.isRight(full)) expect(quick.right).toEqual(full.right)
  if (Either.isLeft(quick) && Either.isLeft(full)) expect(quick.left.message).toBe(full.left.message)
}

describe("QuickDecode", () => {
  for (const [name, schema] of plain) {
    const check = QuickDecode.checkOf(schema.ast)
    const wrapped = QuickDecode.quick(schema)

    it(`${name}: the schema is plain, so it has a check`, () => {
      expect(check).toBeTypeOf("function")
    })

    it.prop(`${name}: a value the check vouches for is what Schema decodes it to; quick decodes and encodes as Schema does`, [inputs(schema)], ([input]) => {
      const full = Schema.decodeUnknownEither(schema)(input)
      if (check!(input)) {
        expect(Either.isRight(full)).toBe(true)
        expect(Either.getOrThrow(full)).toEqual(input)
      }
      sameResult(Schema.decodeUnknownEither(wrapped)(input), full)
      sameResult(QuickDecode.decodeUnknownEither(schema)(input), full)
      sameResult(Schema.encodeUnknownEither(wrapped)(input), Schema.encodeUnknownEither(schema)(input))
    }, { timeout: 20_000, fastCheck: { numRuns: 200 } })
  }

  for (const [name, schema] of partlyPlain) {
    const check = QuickDecode.checkOf(schema.ast)!
    const exitSchema = Schema.Exit({ success: schema, failure: Schema.String, defect: Schema.Defect }) as unknown as Schema.Schema<Exit.Exit<unknown, unknown>, unknown>
    const encodeExit = QuickDecode.encodeExitEither(schema, exitSchema)

    it.prop(`${name}: decodes as Schema does, the check vouching only where Schema gives the input back`, [inputs(Schema.encodedSchema(schema) as Schema.Schema<unknown, unknown>)], ([input]) => {
      const full = Schema.decodeUnknownEither(schema)(input)
      if (check(input)) expect(Either.getOrThrow(full)).toEqual(input)
      sameResult(QuickDecode.decodeUnknownEither(schema)(input), full)
    }, { timeout: 20_000, fastCheck: { numRuns: 200 } })

    it.prop(`${name}: a success's Exit encodes as Schema encodes it`, [Arbitrary.make(schema)], ([value]) => {
      sameResult(encodeExit(Exit.succeed(value)), Schema.encodeEither(exitSchema)(Exit.succeed(value)))
    }, { fastCheck: { numRuns: 100 } })
  }

  it("where the transforming fields are left out, the check still vouches; where one is there, it leaves it to Schema", () => {
    const check = QuickDecode.checkOf(PartlyPlain.ast)!
    expect(check({ count: 1, items: [] })).toBe(true)
    expect(check({ count: 1, items: [], since: "5" })).toBe(false)
    expect(check({ count: 1, items: [], either: "1" })).toBe(false)
    expect(check({ count: 1, items: [{ at: "2026-12-03T00:00:00.000Z" }] })).toBe(false)
    expect(() => QuickDecode.quick(PartlyPlain)).toThrow(/only plain schemas/)
  })

  it.prop("an RPC's Exit: a success's encoding is Schema's, and a failure goes through Schema", [inputs(heartbeat.successSchema as Schema.Schema<unknown, unknown>)], ([value]) => {
    const exitSchema = Schema.Exit({ success: heartbeat.successSchema, failure: Schema.String, defect: Schema.Defect }) as unknown as Schema.Schema<Exit.Exit<unknown, unknown>, unknown>
    const encodeExit = QuickDecode.encodeExitEither(heartbeat.successSchema as Schema.Schema<unknown, unknown>, exitSchema)
    for (const exit of [Exit.succeed(value), Exit.fail("refused")]) sameResult(encodeExit(exit), Schema.encodeEither(exitSchema)(exit))
  }, { fastCheck: { numRuns: 100 } })

  it("a valid answer is taken as it is, not copied: what makes it quick", () => {
    const answer = [{ service: "web", node: "n1", active: true, components: [], warnings: [] }]
    const schema = Schema.Array(Status.ServiceStatus)
    expect(Schema.decodeUnknownSync(QuickDecode.quick(schema))(answer)).toBe(answer)
    expect(Schema.decodeUnknownSync(schema)(answer)).not.toBe(answer)
  })

  it("a symbol key, or an object that is not a plain one with an undeclared key, is Schema's to decide", () => {
    const check = QuickDecode.checkOf(Status.UnreachableNode.ast)!
    const plainValue = { node: "n1", reason: "down" }
    expect(check(plainValue)).toBe(true)
    expect(check(Object.assign(Object.create(null), plainValue))).toBe(true)
    expect(check({ ...plainValue, [Symbol("extra")]: 1 })).toBe(false)
    class Unreachable {
      constructor(readonly node: string, readonly reason: string) {}
    }
    expect(check(new Unreachable("n1", "down"))).toBe(true)
    expect(check(Object.assign(new Unreachable("n1", "down"), { extra: 1 }))).toBe(false)
    expect(check(Object.defineProperty(new Unreachable("n1", "down"), "hidden", { value: 1, enumerable: false }))).toBe(false)
    expect(check({ node: "n1" })).toBe(false)
  })

  it("the contracts' large answers (Ps of the agent and of the master) take the check", () => {
    for (const group of [AgentRpcs, MasterRpcs]) {
      const ps = group.requests.get("Ps")! as unknown as Rpc.AnyWithProps
      expect(QuickDecode.checkOf(ps.successSchema.ast)).toBeTypeOf("function")
    }
  })

  it("refuses a schema that transforms, or holds what the check does not follow, when the contract is built", () => {
    expect(() => QuickDecode.quick(Schema.NumberFromString)).toThrow(/only plain schemas/)
    expect(() => QuickDecode.quick(Schema.Struct({ at: Schema.Date }))).toThrow(/Transformation/)
    expect(() => QuickDecode.quick(Schema.Record({ key: Schema.String, value: Schema.Number }))).toThrow(/index signature/)
    expect(() => QuickDecode.quick(Schema.Union(Schema.Struct({ a: Schema.String }), Schema.Struct({ a: Schema.String, b: Schema.String })))).toThrow(/union of several/)
    // Without the quick path, decoding runs Schema alone.
    expect(QuickDecode.checkOf(Schema.NumberFromString.ast)).toBeUndefined()
    expect(Either.getOrThrow(QuickDecode.decodeUnknownEither(Schema.NumberFromString)("7"))).toBe(7)
  })
})
