/**
 * The quick excess-key check (ExcessKeys.ts) against the full validation it stands in front of:
 * for every payload of every RPC, "clean" is only ever said of a payload the validation finds no
 * undeclared field in, also after a field is added anywhere in it.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Rpc } from "@effect/rpc"
import { Arbitrary, Effect, Either, FastCheck as fc, ParseResult, Schema, SchemaAST } from "effect"
import * as AuthMiddleware from "../src/AuthMiddleware.js"
import { AgentRpcs, ControlRpcs, MasterRpcs } from "../src/Contracts.js"
import * as ExcessKeys from "../src/ExcessKeys.js"

const rpcs = [...AgentRpcs.requests.values(), ...MasterRpcs.requests.values(), ...ControlRpcs.requests.values()] as unknown as ReadonlyArray<Rpc.AnyWithProps>
const payloadType = (rpc: Rpc.AnyWithProps) => SchemaAST.typeAST(rpc.payloadSchema.ast)
const withPayloads = rpcs.filter((rpc) => {
  const ast = payloadType(rpc)
  return SchemaAST.isTypeLiteral(ast) && ast.propertySignatures.length > 0
})

/**
 * The payload's Type side without its refinements: values of the right shape that need not pass
 * every filter (a PEM certificate, a hostname pattern), which fast-check could never draw. Keys
 * are all that the checks compare.
 */
const loose = (ast: SchemaAST.AST): SchemaAST.AST => {
  switch (ast._tag) {
    case "Refinement":
      return loose(ast.from)
    case "TypeLiteral":
      return new SchemaAST.TypeLiteral(ast.propertySignatures.map((ps) => new SchemaAST.PropertySignature(ps.name, loose(ps.type), ps.isOptional, ps.isReadonly)), ast.indexSignatures)
    case "TupleType":
      return new SchemaAST.TupleType(ast.elements.map((e) => new SchemaAST.OptionalType(loose(e.type), e.isOptional)), ast.rest.map((r) => new SchemaAST.Type(loose(r.type))), ast.isReadonly)
    case "Union":
      return SchemaAST.Union.make(ast.types.map(loose))
    case "Declaration":
      return new SchemaAST.Declaration(ast.typeParameters.map(loose), ast.decodeUnknown, ast.encodeUnknown, ast.annotations)
    default:
      return ast
  }
}
const shapedLike = (rpc: Rpc.AnyWithProps) => Arbitrary.make(Schema.make<unknown>(loose(SchemaAST.typeAST(rpc.payloadSchema.ast))))

/** Every object inside `value` (itself included), for adding a key to one of them. */
const objectsIn = (value: unknown): Array<Record<string, unknown>> => {
  if (typeof value !== "object" || value === null) return []
  const inner = Object.values(value).flatMap(objectsIn)
  return Array.isArray(value) ? inner : [value as Record<string, unknown>, ...inner]
}

/** The fields the full check names (what the middleware refuses with UnknownFields). */
const unknownFields = (rpc: Rpc.AnyWithProps, payload: unknown) =>
  Either.match(ParseResult.validateEither(Schema.make<unknown>(new SchemaAST.TypeLiteral((SchemaAST.typeAST(rpc.payloadSchema.ast) as unknown as SchemaAST.TypeLiteral).propertySignatures, [])), { onExcessProperty: "error", errors: "all" })(payload), {
    onLeft: (issue) => ParseResult.ArrayFormatter.formatIssueSync(issue).filter((i) => i._tag === "Unexpected").length,
    onRight: () => 0
  })

describe("the quick excess-key check", () => {
  it("covers the contracts: there are payloads to check", () => {
    expect(withPayloads.map((r) => r._tag)).toEqual(expect.arrayContaining(["Heartbeat", "Register", "Deploy", "NodesAdd"]))
  })

  for (const rpc of withPayloads) {
    const clean = ExcessKeys.cleanCheck(SchemaAST.typeAST(rpc.payloadSchema.ast))
    const values = shapedLike(rpc)
    it.prop(`${rpc._tag}: clean only when the full check finds nothing, never with a field added`, [values, fc.nat(), fc.string({ minLength: 1, maxLength: 8 })], ([value, at, key]) => {
      if (clean(value)) expect(unknownFields(rpc, value)).toBe(0)
      const objects = objectsIn(value)
      if (objects.length === 0) return
      const target = objects[at % objects.length]!
      if (key in target) return
      target[key] = "added"
      // Inside a field of unknown type (a Deploy's definition) any key is declared; elsewhere the
      // full check names the added one, and the quick check must then not call the payload clean.
      if (unknownFields(rpc, value) > 0) expect(clean(value)).toBe(false)
    }, { timeout: 10_000, fastCheck: { numRuns: 30 } })
  }

  it("heartbeats and registrations, nearly every call of a master, take the quick answer", () => {
    for (const tag of ["Heartbeat", "Register"]) {
      const rpc = withPayloads.find((r) => r._tag === tag)!
      const clean = ExcessKeys.cleanCheck(SchemaAST.typeAST(rpc.payloadSchema.ast))
      fc.assert(fc.property(shapedLike(rpc), (value) => clean(value)), { numRuns: 50 })
    }
  })

  it("the middleware still names every unknown field the quick check sends on", () => {
    const rpc = withPayloads.find((r) => r._tag === "Heartbeat")!
    const payload = { node: "n1", resources: { cpuCores: 1, load1: 0, memoryTotalBytes: 1, memoryFreeBytes: 1, diskTotalBytes: 1, diskFreeBytes: 1, containers: 0, gpu: 1 }, services: [{ service: "web", running: 1, expected: 1, extra: true }] }
    const failure = Effect.runSync(Effect.flip(AuthMiddleware.excessFields(rpc, payload)))
    expect(failure.fields).toEqual(["resources.gpu", "services.0.extra"])
  })
})
