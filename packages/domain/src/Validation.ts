/**
 * Turns a service definition file into a decoded definition or every problem in it at once,
 * each as `path: message` naming the field and the fix. Nothing here writes anything.
 */
import { Either, ParseResult, Schema } from "effect"
import * as TOML from "smol-toml"
import { isUnder } from "./Hostname.js"
import { formatPath, Problem } from "./Problem.js"
import { BuildSection, Component, HealthCheck, Route, ServiceDefinition } from "./ServiceDefinition.js"
import { parseToml } from "./Toml.js"

export { Problem } from "./Problem.js"

export interface DefinitionContext {
  /** The zone internal hostnames live under, e.g. `svc.mcp.internal`. */
  readonly internalZone: string
  /**
   * The fleet's allowed public domains (`[edge] allowed_domains`). When given, a non-public
   * route's hostname must fall under the internal zone or one of them: the route CA signs
   * nothing else. Left out, such hostnames are not checked (callers without the fleet's policy).
   */
  readonly allowedDomains?: ReadonlyArray<string>
}

export { formatPath } from "./Problem.js"

// ---------------------------------------------------------------------------------------------
// Unknown keys. The original system's parser silently dropped fields it did not know (and with
// them `public = true`); every key here must be one the schema declares.

type KeySpec = { readonly keys: ReadonlyArray<string>; readonly children: Readonly<Record<string, Nested>> }
type Nested = { readonly kind: "table" | "tables"; readonly spec: KeySpec } | { readonly kind: "map" }

const fieldsOf = (s: { readonly fields: Readonly<Record<string, unknown>> }) => Object.keys(s.fields)

const HEALTH_KEYS: KeySpec = { keys: fieldsOf(HealthCheck), children: {} }
const ROUTE_KEYS: KeySpec = { keys: fieldsOf(Route), children: {} }
const COMPONENT_KEYS: KeySpec = {
  keys: fieldsOf(Component.from),
  children: { health: { kind: "table", spec: HEALTH_KEYS }, routes: { kind: "tables", spec: ROUTE_KEYS } }
}
const BUILD_KEYS: KeySpec = { keys: fieldsOf(BuildSection), children: { images: { kind: "map" } } }
const SERVICE_KEYS: KeySpec = {
  keys: fieldsOf(ServiceDefinition.from),
  children: { build: { kind: "table", spec: BUILD_KEYS }, components: { kind: "tables", spec: COMPONENT_KEYS } }
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const unknownKeys = (value: unknown, spec: KeySpec, path: ReadonlyArray<PropertyKey>): Array<Problem> => {
  if (!isRecord(value)) return [] // the schema reports the wrong type
  const problems: Array<Problem> = []
  for (const [key, child] of Object.entries(value)) {
    if (!spec.keys.includes(key)) {
      const suggestion = closest(key, spec.keys)
      problems.push({
        path: formatPath([...path, key]),
        message: `unknown field` + (suggestion ? `; did you mean "${suggestion}"?` : `; known fields here: ${spec.keys.join(", ")}`)
      })
      continue
    }
    const nested = spec.children[key]
    if (nested === undefined || nested.kind === "map") continue
    if (nested.kind === "table") problems.push(...unknownKeys(child, nested.spec, [...path, key]))
    else if (Array.isArray(child)) child.forEach((item, i) => problems.push(...unknownKeys(item, nested.spec, [...path, key, i])))
  }
  return problems
}

/** Levenshtein distance, for did-you-mean on near-miss keys (`hostame`, `backendTls`). */
const distance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1))
      diagonal = above
    }
  }
  return row[b.length]!
}

const normalize = (k: string) => k.toLowerCase().replace(/[-_]/g, "")

const closest = (key: string, known: ReadonlyArray<string>): string | undefined => {
  let best: { name: string; d: number } | undefined
  for (const name of known) {
    const d = normalize(name) === normalize(key) ? 0 : distance(key.toLowerCase(), name)
    if (best === undefined || d < best.d) best = { name, d }
  }
  return best !== undefined && best.d <= Math.max(2, Math.floor(key.length / 3)) ? best.name : undefined
}

// ---------------------------------------------------------------------------------------------
// Schema issues and checks that need the fleet's context.

const decodeAll = Schema.decodeUnknownEither(ServiceDefinition, { errors: "all", onExcessProperty: "ignore" })

const schemaProblems = (error: ParseResult.ParseError): Array<Problem> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    path: formatPath(issue.path),
    message: issue._tag === "Missing" ? "is missing; this field is required" : issue.message
  }))

/** Checks that depend on the fleet's internal zone rather than on the file alone. */
export const contextProblems = (def: ServiceDefinition, ctx: DefinitionContext): Array<Problem> => {
  const problems: Array<Problem> = []
  def.components.forEach((c, ci) =>
    (c.routes ?? []).forEach((r, ri) => {
      const path = formatPath(["components", ci, "routes", ri, "hostname"])
      if (!r.public) {
        // A name without a hostname gets `<service>.<internal zone>`; public names are checked
        // against the allowed domains where the master publishes them (PublicRoutes).
        const allowed = ctx.allowedDomains
        if (allowed === undefined || r.hostname === undefined) return
        if (isUnder(r.hostname, ctx.internalZone) || allowed.some((d) => isUnder(r.hostname!, d))) return
        const domains = allowed.length === 0 ? "none are allowed" : `the allowed domains are ${allowed.map((d) => `"${d}"`).join(", ")}`
        problems.push({
          path,
          message:
            `"${r.hostname}" is neither under the internal zone "${ctx.internalZone}" nor under an allowed domain (${domains}), ` +
            `so no route certificate can be issued for it; use a name under one of them, leave hostname out for "${def.name}.${ctx.internalZone}", ` +
            `or add the domain to [edge] allowed_domains in mcp-master.toml`
        })
        return
      }
      if (r.hostname === undefined) {
        problems.push({ path, message: `a public route needs a hostname outside "${ctx.internalZone}", e.g. hostname = "${def.name}.example.com"` })
      } else if (isUnder(r.hostname, ctx.internalZone)) {
        problems.push({
          path,
          message: `"${r.hostname}" is inside the internal zone "${ctx.internalZone}" and cannot be public; use a public name, or drop public = true`
        })
      }
    })
  )
  return problems
}

/** Decodes an already-parsed definition (a TOML table or an RPC payload). */
export const decodeDefinition = (
  raw: unknown,
  ctx: DefinitionContext
): Either.Either<ServiceDefinition, ReadonlyArray<Problem>> => {
  const keyProblems = unknownKeys(raw, SERVICE_KEYS, [])
  const decoded = decodeAll(raw)
  if (Either.isLeft(decoded)) return Either.left([...keyProblems, ...schemaProblems(decoded.left)])
  const problems = [...keyProblems, ...contextProblems(decoded.right, ctx)]
  return problems.length > 0 ? Either.left(problems) : Either.right(decoded.right)
}

/**
 * Decodes a definition stored after its deploy, by the schema alone: the fleet's context was
 * checked at the deploy. A stored one this schema now refuses (an older agent wrote it) comes
 * back as its problems, each naming the field, for the reader to report.
 */
export const decodeStoredDefinition = (raw: unknown): Either.Either<ServiceDefinition, ReadonlyArray<Problem>> =>
  Either.mapLeft(decodeAll(raw), schemaProblems)

export { parseToml } from "./Toml.js"

export const decodeDefinitionToml = (
  text: string,
  ctx: DefinitionContext
): Either.Either<ServiceDefinition, ReadonlyArray<Problem>> =>
  Either.flatMap(parseToml(text), (raw) => decodeDefinition(raw, ctx))

/** The definition as TOML text, the inverse of `decodeDefinitionToml`. */
export const encodeDefinitionToml = (def: ServiceDefinition): string =>
  TOML.stringify(Schema.encodeSync(ServiceDefinition)(def) as Record<string, unknown>)
