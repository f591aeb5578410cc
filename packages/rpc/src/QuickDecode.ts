/**
 * Decoding and encoding plain values (a schema with no transformation anywhere: JSON-shaped
 * structs, arrays, strings, numbers, literals and filters on them) by a check compiled once from
 * the schema's AST. For such a schema Schema's parser gives back a copy equal to its input
 * whenever the input is valid and holds no undeclared key, so where the check vouches for a value
 * (valid, every key declared) the value itself is the result; for anything else (an invalid
 * value, an undeclared key) Schema's own parser runs as before and decides, with its own errors.
 *
 * Why: Schema's parser builds an Either per field and a copy of every struct and array, and
 * @effect/rpc runs it twice per answer in each direction (the Exit's encoded side, then its type
 * side). For `mcp ps` over 100 nodes x 30 services that was about a quarter of the master's CPU
 * (decoding the agents' answers, encoding its own) and a third of the CLI's, plus the garbage it
 * left (bench/heartbeats.ts --profile).
 *
 * `quick(schema)` is a plain schema as a Declaration whose decode and encode take the check
 * first; the contracts use it for the fleet views whose answers grow with the fleet (Ps,
 * NodesList, AgentStatus). `decodeUnknownEither` and `encodeExitEither` do the same for
 * DirectCall, which runs the parsers itself on every heartbeat and registration; there a schema
 * may also be partly plain (a field that transforms is Schema's whenever a value holds it).
 */
import { Either, Exit, Option, ParseResult, Schema, SchemaAST } from "effect"

/** True only for a valid value with no undeclared key anywhere; false leaves the answer to Schema. */
export type Check = (u: unknown) => boolean

const never: Check = () => false

const isRecord = (u: unknown): u is Record<PropertyKey, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Values with no keys, which no other member of a union could also take with some keys dropped. */
const isPrimitive = (ast: SchemaAST.AST): boolean => {
  switch (ast._tag) {
    case "Literal":
    case "UndefinedKeyword":
    case "StringKeyword":
    case "NumberKeyword":
    case "BooleanKeyword":
    case "Enums":
      return true
    case "Refinement":
      return isPrimitive(ast.from)
    default:
      return false
  }
}

const NO_OPTIONS: SchemaAST.ParseOptions = {}

/** The checks of the declarations `quick` made, so that a plain schema may hold one. */
const quickChecks = new WeakMap<SchemaAST.AST, Check>()

/**
 * The check for `ast`. What it does not follow (a transformation, a declaration, a record, a
 * union of several structs) never vouches, and is named in `gaps`: a value that holds one of
 * those goes to Schema, a value that does not (an optional field left out) may still be vouched for.
 */
const compile = (ast: SchemaAST.AST, gaps: Array<string>): Check => {
  const gap = (what: string): Check => {
    gaps.push(what)
    return never
  }
  switch (ast._tag) {
    case "StringKeyword":
      return (u) => typeof u === "string"
    case "NumberKeyword":
      return (u) => typeof u === "number"
    case "BooleanKeyword":
      return (u) => typeof u === "boolean"
    case "UndefinedKeyword":
      return (u) => u === undefined
    case "UnknownKeyword":
    case "AnyKeyword":
      return () => true
    case "Literal": {
      const literal = ast.literal
      return (u) => u === literal
    }
    case "Enums": {
      const values = ast.enums.map(([, value]) => value)
      return (u) => values.includes(u as string | number)
    }
    case "Refinement": {
      const from = compile(ast.from, gaps)
      const filter = ast.filter
      return (u) => from(u) && Option.isNone(filter(u, NO_OPTIONS, ast))
    }
    case "TypeLiteral": {
      if (ast.indexSignatures.length > 0) return gap("a record (index signature)")
      const names = ast.propertySignatures.map((ps) => ps.name)
      const optional = ast.propertySignatures.map((ps) => ps.isOptional)
      const fieldChecks = ast.propertySignatures.map((ps) => compile(ps.type, gaps))
      const declared = new Set<PropertyKey>(names)
      // The exact walk: every own key, symbols and non-enumerable ones too.
      const exact: Check = (u) => {
        if (!isRecord(u)) return false
        for (let i = 0; i < names.length; i++) {
          if (Object.prototype.hasOwnProperty.call(u, names[i]!)) {
            if (!fieldChecks[i]!(u[names[i]!])) return false
          } else if (!optional[i]) return false
        }
        // An undeclared key: Schema drops it (or keeps or refuses it, as the options say); it decides.
        for (const key of Reflect.ownKeys(u)) if (!declared.has(key)) return false
        return true
      }
      if (names.some((name) => typeof name !== "string" || name in Object.prototype)) return exact
      // The walk without allocating, for plain objects (what JSON.parse gives and literals are):
      // their keys are enumerable strings, so counting them with for-in and finding as many
      // declared fields present means there is no other key. (A non-enumerable key, which only
      // defineProperty makes, is not looked for there: JSON neither carries nor writes one.)
      const stringNames = names as ReadonlyArray<string>
      return (u) => {
        if (!isRecord(u)) return false
        const proto = Object.getPrototypeOf(u)
        if (proto !== Object.prototype && proto !== null) return exact(u)
        let present = 0
        for (let i = 0; i < stringNames.length; i++) {
          const value = u[stringNames[i]!]
          if (value === undefined && !Object.prototype.hasOwnProperty.call(u, stringNames[i]!)) {
            if (!optional[i]) return false
            continue
          }
          if (!fieldChecks[i]!(value)) return false
          present++
        }
        let keys = 0
        for (const _ in u) keys++
        return keys === present && Object.getOwnPropertySymbols(u).length === 0
      }
    }
    case "TupleType": {
      if (ast.elements.some((e) => e.isOptional)) return gap("a tuple with optional elements")
      if (ast.rest.length > 1) return gap("a tuple with elements after its rest")
      const elements = ast.elements.map((e) => compile(e.type, gaps))
      const rest = ast.rest.length === 1 ? compile(ast.rest[0]!.type, gaps) : undefined
      return (u) => {
        if (!Array.isArray(u)) return false
        if (rest === undefined ? u.length !== elements.length : u.length < elements.length) return false
        for (let i = 0; i < u.length; i++) {
          if (!(i < elements.length ? elements[i]! : rest!)(u[i])) return false
        }
        return true
      }
    }
    case "Union": {
      // Schema decodes a value with the member its own order of trying picks (not always the
      // first listed), dropping the keys that member does not declare; with at most one member
      // that has keys, only that member can take an object.
      if (ast.types.filter((t) => !isPrimitive(t)).length > 1) return gap("a union of several structs or arrays")
      // A member it does not follow might be the one Schema picks (Union(Literal("1"),
      // NumberFromString) decodes "1" to the number 1): no vouching for such a union.
      const memberGaps: Array<string> = []
      const members = ast.types.map((t) => compile(t, memberGaps))
      if (memberGaps.length > 0) return gap(`a union holding ${memberGaps.join(", ")}`)
      return (u) => members.some((m) => m(u))
    }
    case "Declaration": {
      const own = quickChecks.get(ast)
      if (own === undefined) return gap(`a declaration (${String(ast)})`)
      return own
    }
    default:
      return gap(`a ${ast._tag} (${String(ast)})`)
  }
}

interface Compiled {
  readonly check: Check
  readonly gaps: ReadonlyArray<string>
}
const checks = new WeakMap<SchemaAST.AST, Compiled>()

const compiled = (ast: SchemaAST.AST): Compiled => {
  let found = checks.get(ast)
  if (found === undefined) {
    const gaps: Array<string> = []
    found = { check: compile(ast, gaps), gaps }
    checks.set(ast, found)
  }
  return found
}

/**
 * The check for a schema's values, also where parts of it transform (those parts never vouch);
 * undefined when it could never vouch for anything.
 */
export const checkOf = (ast: SchemaAST.AST): Check | undefined => {
  const { check } = compiled(ast)
  return check === never ? undefined : check
}

/**
 * `schema`, with its decode and encode answered by the check where it vouches for the value.
 * Only for plain schemas: anything else throws here, when the contract is built.
 */
export const quick = <A, I>(schema: Schema.Schema<A, I, never>) => {
  const { check, gaps } = compiled(schema.ast)
  if (gaps.length > 0) throw new Error(`QuickDecode.quick: ${String(schema.ast)} holds ${gaps.join(", ")}; only plain schemas have a quick check`)
  const declared = Schema.declare<A, I, readonly [Schema.Schema<A, I, never>]>(
    [schema],
    {
      decode: (inner) => (u, options) => (check(u) ? ParseResult.succeed(u as A) : ParseResult.decodeUnknown(inner)(u, options)),
      encode: (inner) => (u, options) => (check(u) ? ParseResult.succeed(u as I) : ParseResult.encodeUnknown(inner)(u, options))
    },
    {
      // What errors and descriptions name: the schema itself, as they did without the wrapper.
      title: String(schema.ast),
      arbitrary: (inner) => inner,
      pretty: (inner) => inner,
      equivalence: (inner) => inner
    }
  )
  quickChecks.set(declared.ast, check)
  return declared
}

/** Schema.decodeUnknownEither(schema), the check first unless it could never vouch (checkOf). */
export const decodeUnknownEither = <A, I>(schema: Schema.Schema<A, I, never>): (u: unknown) => Either.Either<A, ParseResult.ParseError> => {
  const full = Schema.decodeUnknownEither(schema)
  const check = checkOf(schema.ast)
  return check === undefined ? full : (u) => (check(u) ? Either.right(u as A) : full(u))
}

/**
 * Schema.encodeEither(exitSchema) for an RPC's Exit, given its success schema: a success whose
 * value the check vouches for is encoded as Schema.Exit encodes it, `{ _tag: "Success", value }`.
 */
export const encodeExitEither = <A, E>(
  success: Schema.Schema<A, unknown, never>,
  exitSchema: Schema.Schema<Exit.Exit<A, E>, unknown, never>
): (exit: Exit.Exit<A, E>) => Either.Either<unknown, ParseResult.ParseError> => {
  const full = Schema.encodeEither(exitSchema)
  const check = checkOf(success.ast)
  return check === undefined ? full : (exit) => (Exit.isSuccess(exit) && check(exit.value) ? Either.right({ _tag: "Success", value: exit.value }) : full(exit))
}
