/**
 * The limits on how much one service definition may hold: each refused just over its limit
 * with a message naming the limit, the count and the fix, and accepted at the limit.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, FastCheck as fc } from "effect"
import {
  MAX_COMPONENTS_PER_SERVICE,
  MAX_ENV_PER_COMPONENT,
  MAX_PORTS_PER_COMPONENT,
  MAX_ROUTES_PER_COMPONENT,
  MAX_VOLUMES_PER_COMPONENT,
  ServiceDefinition
} from "../src/ServiceDefinition.js"
import { decodeDefinition, type Problem } from "../src/Validation.js"

const ctx = { internalZone: "svc.mcp.internal" }
const IMAGE = "localhost/web:v1.0.0"

const problems = (raw: Record<string, unknown>): ReadonlyArray<Problem> => {
  const result = decodeDefinition(raw, ctx)
  return Either.isLeft(result) ? result.left : []
}
const withComponent = (fields: Record<string, unknown>) => ({ name: "web", components: [{ name: "api", image: IMAGE, ...fields }] })

const components = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `c${i}`, image: IMAGE }))
const routes = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `r${i}`, port: 1000 + i, mode: "l7" }))
const volumes = (n: number) => Array.from({ length: n }, (_, i) => `/srv/v${i}:/data/v${i}`)
const env = (n: number) => Array.from({ length: n }, (_, i) => `K${i}=v`)
const ports = (n: number) => Array.from({ length: n }, (_, i) => `${2000 + i}:80`)

describe("definition size limits", () => {
  it("components per service: the limit is accepted, one more is refused naming the limit and the fix", () => {
    expect(problems({ name: "web", components: components(MAX_COMPONENTS_PER_SERVICE) })).toEqual([])
    expect(problems({ name: "web", components: components(MAX_COMPONENTS_PER_SERVICE + 1) })).toEqual([
      { path: "components", message: `has ${MAX_COMPONENTS_PER_SERVICE + 1} components; a service may have at most ${MAX_COMPONENTS_PER_SERVICE}: split it into several services` }
    ])
  })

  const perComponent = [
    ["routes", MAX_ROUTES_PER_COMPONENT, routes, "routes", "split the component into several"],
    ["volumes", MAX_VOLUMES_PER_COMPONENT, volumes, "volumes", "mount a common parent directory instead of each one"],
    ["env", MAX_ENV_PER_COMPONENT, env, "env entries", "move configuration into a file mounted with volumes"],
    ["ports", MAX_PORTS_PER_COMPONENT, ports, "port mappings", "publish a range through a route, or split the component"]
  ] as const

  for (const [field, limit, make, what, fix] of perComponent) {
    it(`${field} per component: ${limit} accepted, ${limit + 1} refused at components[0].${field}`, () => {
      // Routes without a health check need no port choice; the rest stand alone.
      expect(problems(withComponent({ [field]: make(limit) }))).toEqual([])
      expect(problems(withComponent({ [field]: make(limit + 1) }))).toEqual([
        { path: `components[0].${field}`, message: `has ${limit + 1} ${what}; a component may have at most ${limit}: ${fix}` }
      ])
    })
  }

  it("generated definitions stay within the limits", () => {
    for (const d of fc.sample(Arbitrary.make(ServiceDefinition), { numRuns: 200, seed: 7 })) {
      expect(d.components.length).toBeLessThanOrEqual(MAX_COMPONENTS_PER_SERVICE)
      for (const c of d.components) {
        expect(c.routes?.length ?? 0).toBeLessThanOrEqual(MAX_ROUTES_PER_COMPONENT)
        expect(c.volumes?.length ?? 0).toBeLessThanOrEqual(MAX_VOLUMES_PER_COMPONENT)
        expect(c.env?.length ?? 0).toBeLessThanOrEqual(MAX_ENV_PER_COMPONENT)
        expect(c.ports?.length ?? 0).toBeLessThanOrEqual(MAX_PORTS_PER_COMPONENT)
      }
    }
  })
})
