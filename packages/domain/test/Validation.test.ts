/**
 * What an operator reads when a definition file is wrong: unknown keys with a did-you-mean (or the
 * list of keys allowed there), missing fields, and TOML syntax errors, each at its path.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { decodeDefinitionToml, parseToml, type Problem } from "../src/Validation.js"

const ctx = { internalZone: "svc.mcp.internal" }

const problemsOf = (toml: string): ReadonlyArray<Problem> => {
  const result = decodeDefinitionToml(toml, ctx)
  return Either.isLeft(result) ? result.left : []
}

/** The message for an unknown `key` at the service's top level. */
const topLevel = (key: string) =>
  problemsOf(`name = "web"\n${key} = 1\n[[components]]\nname = "api"\nimage = "localhost/web:v1.0.0"\n`)

/** The message for an unknown `key` in a route table. */
const inRoute = (key: string) =>
  problemsOf(`name = "web"\n[[components]]\nname = "api"\nimage = "localhost/web:v1.0.0"\n[[components.routes]]\nport = 8443\nmode = "l7"\n"${key}" = 1\n`)

/** The message for an unknown `key` in a component table. */
const inComponent = (key: string) =>
  problemsOf(`name = "web"\n[[components]]\nname = "api"\nimage = "localhost/web:v1.0.0"\n"${key}" = 1\n`)

const SERVICE_FIELDS = "name, node, tier, active, path, version, build, components"
const ROUTE_FIELDS = "name, port, mode, hostname, public, backend_tls"
const COMPONENT_FIELDS = "name, image, volumes, cmd, env, network, user, restart, ports, health, routes"

describe("unknown fields", () => {
  it("a near miss gets a did-you-mean at the key's own path", () => {
    expect(inRoute("hostame")).toEqual([
      { path: "components[0].routes[0].hostame", message: `unknown field; did you mean "hostname"?` }
    ])
    expect(inComponent("volumez")).toEqual([
      { path: "components[0].volumez", message: `unknown field; did you mean "volumes"?` }
    ])
  })

  it("case, \"-\" and \"_\" are ignored when matching, however far apart they make the spelling", () => {
    // Each is three edits from its field, more than the cut-off for a 7-character key.
    expect(inRoute("p-o-r-t")).toEqual([
      { path: "components[0].routes[0].p-o-r-t", message: `unknown field; did you mean "port"?` }
    ])
    expect(inRoute("N_A_M_E")).toEqual([
      { path: "components[0].routes[0].N_A_M_E", message: `unknown field; did you mean "name"?` }
    ])
    expect(inRoute("BackendTLS")[0]!.message).toBe(`unknown field; did you mean "backend_tls"?`)
    expect(inRoute("HOSTNAME")[0]!.message).toBe(`unknown field; did you mean "hostname"?`)
  })

  it("a key too far from every field lists the fields allowed there instead", () => {
    expect(topLevel("zzzzzzzz")).toEqual([
      { path: "zzzzzzzz", message: `unknown field; known fields here: ${SERVICE_FIELDS}` }
    ])
    expect(inComponent("environment")).toEqual([
      { path: "components[0].environment", message: `unknown field; known fields here: ${COMPONENT_FIELDS}` }
    ])
    // Three edits from "mode" (the last three letters count too), over the cut-off of 2.
    expect(inRoute("modexyz")).toEqual([
      { path: "components[0].routes[0].modexyz", message: `unknown field; known fields here: ${ROUTE_FIELDS}` }
    ])
  })

  it("the cut-off is max(2, floor(length / 3)) edits, inclusive", () => {
    // 7 characters: cut-off 2; "image" is exactly 2 edits away.
    expect(inComponent("imagexx")[0]!.message).toBe(`unknown field; did you mean "image"?`)
    expect(inComponent("imagexxx")[0]!.message).toBe(`unknown field; known fields here: ${COMPONENT_FIELDS}`)
    // 14 characters: cut-off 4; "components" is exactly 4 edits away.
    expect(topLevel("component_list")[0]!.message).toBe(`unknown field; did you mean "components"?`)
    // 13 characters: cut-off 4; 3 edits.
    expect(topLevel("componentsxyz")[0]!.message).toBe(`unknown field; did you mean "components"?`)
    // 4 characters: cut-off 2 (not floor(4 / 3) = 1).
    expect(topLevel("nxmx")[0]!.message).toBe(`unknown field; did you mean "name"?`)
  })

  it("on a tie the field declared first wins", () => {
    // "nome" is one edit from both "name" and "node"; "name" comes first.
    expect(topLevel("nome")).toEqual([{ path: "nome", message: `unknown field; did you mean "name"?` }])
    // "nade" is one edit from "name" and "node" too.
    expect(topLevel("nade")[0]!.message).toBe(`unknown field; did you mean "name"?`)
  })
})

describe("missing fields and syntax errors", () => {
  it("a missing required field says so at its path", () => {
    expect(problemsOf(`[[components]]\nname = "api"\nimage = "localhost/web:v1.0.0"\n`)).toEqual([
      { path: "name", message: "is missing; this field is required" }
    ])
    expect(problemsOf(`name = "web"\n[[components]]\nimage = "localhost/web:v1.0.0"\n`)).toEqual([
      { path: "components[0].name", message: "is missing; this field is required" }
    ])
    expect(problemsOf(`name = "web"\n[[components]]\nname = "api"\nimage = "localhost/web:v1.0.0"\n[[components.routes]]\nport = 8443\n`)).toEqual([
      { path: "components[0].routes[0].mode", message: "is missing; this field is required" }
    ])
  })

  it("a TOML syntax error gives the line, the column and the parser's first line only", () => {
    expect(parseToml(`name = "web"\nversion = \n`)).toEqual(
      Either.left([{ path: "toml", message: "syntax error at line 2, column 11: Invalid TOML document: invalid value" }])
    )
    expect(problemsOf(`name = \n`)).toEqual([
      { path: "toml", message: "syntax error at line 1, column 8: Invalid TOML document: invalid value" }
    ])
  })

  it("input the parser chokes on (not text at all) is a problem, not an exception", () => {
    const result = parseToml(42 as unknown as string)
    expect(Either.isLeft(result)).toBe(true)
    const problems = Either.isLeft(result) ? result.left : []
    expect(problems).toHaveLength(1)
    expect(problems[0]!.path).toBe("toml")
    expect(problems[0]!.message).toMatch(/^cannot parse: TypeError: ./)
  })
})

describe("route hostnames and the allowed domains", () => {
  const withRoute = (route: string) =>
    `name = "web"\n[[components]]\nname = "api"\nimage = "localhost/web:v1.0.0"\n[[components.routes]]\nport = 8443\nmode = "l7"\n${route}\n`
  const problemsWith = (toml: string, allowedDomains: ReadonlyArray<string> | undefined) => {
    const result = decodeDefinitionToml(toml, allowedDomains === undefined ? ctx : { ...ctx, allowedDomains })
    return Either.isLeft(result) ? result.left : []
  }

  it("a non-public hostname outside the zone and every allowed domain is a problem naming all three and the fix", () => {
    expect(problemsWith(withRoute(`hostname = "master.corp.example"`), ["example.com", "apps.example.net"])).toEqual([{
      path: "components[0].routes[0].hostname",
      message: `"master.corp.example" is neither under the internal zone "svc.mcp.internal" nor under an allowed domain ` +
        `(the allowed domains are "example.com", "apps.example.net"), so no route certificate can be issued for it; ` +
        `use a name under one of them, leave hostname out for "web.svc.mcp.internal", or add the domain to [edge] allowed_domains in mcp-master.toml`
    }])
    expect(problemsWith(withRoute(`hostname = "notexample.com"`), ["example.com"])).toHaveLength(1)
    expect(problemsWith(withRoute(`hostname = "api.example.com"`), [])[0]!.message).toContain("(none are allowed)")
  })

  it("names under the zone or an allowed domain, and routes without a hostname, pass", () => {
    for (const route of [`hostname = "api.svc.mcp.internal"`, `hostname = "example.com"`, `hostname = "a.b.example.com"`, ``]) {
      expect(problemsWith(withRoute(route), ["example.com"]), route).toEqual([])
    }
  })

  it("without allowedDomains the rule does not apply (callers that do not know the fleet's domains)", () => {
    expect(problemsWith(withRoute(`hostname = "master.corp.example"`), undefined)).toEqual([])
  })
})
