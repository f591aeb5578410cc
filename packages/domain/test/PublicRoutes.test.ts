import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { disallowedProblems, publicRoutes } from "../src/PublicRoutes.js"
import { decodeDefinition } from "../src/Validation.js"

const zone = "svc.mcp.internal"

const def = Either.getOrThrow(decodeDefinition({
  name: "web",
  components: [
    { name: "api", image: "localhost/web:v1.0.0", routes: [{ name: "internal", port: 8443, mode: "l7" }, { name: "www", port: 8444, mode: "l7", public: true, hostname: "www.example.com" }] },
    { name: "static", image: "localhost/static:v1.0.0" },
    { name: "cdn", image: "localhost/cdn:v1.0.0", routes: [{ port: 9443, mode: "l4", public: true, hostname: "cdn.example.org" }] }
  ]
}, { internalZone: zone }))

describe("public routes", () => {
  it("lists the public routes in file order, with the proxy listener and the route's path", () => {
    expect(publicRoutes(def)).toEqual([
      { hostname: "www.example.com", listener: 8444, component: "api", path: "components[0].routes[1]" },
      { hostname: "cdn.example.org", listener: 9443, component: "cdn", path: "components[2].routes[0]" }
    ])
  })

  it("a hostname outside every allowed domain is a problem at its hostname, listing the allowed domains", () => {
    expect(disallowedProblems(publicRoutes(def), zone, ["example.com", "apps.example.net"])).toEqual([{
      path: "components[2].routes[0].hostname",
      message: `public hostname "cdn.example.org" is not under an allowed domain; allowed domains are "example.com", "apps.example.net": use a name under one of them, or add the domain to [edge] allowed_domains in mcp-master.toml`
    }])
  })

  it("with no allowed domain at all, every public hostname is a problem and the message says the master publishes nothing", () => {
    const message = (h: string) =>
      `public hostname "${h}" is not under an allowed domain; this master allows no public domains: add the domain to [edge] allowed_domains in mcp-master.toml`
    expect(disallowedProblems(publicRoutes(def), zone, [])).toEqual([
      { path: "components[0].routes[1].hostname", message: message("www.example.com") },
      { path: "components[2].routes[0].hostname", message: message("cdn.example.org") }
    ])
  })

  it("allowed and internal hostnames are no problem", () => {
    expect(disallowedProblems(publicRoutes(def), zone, ["example.com", "example.org"])).toEqual([])
    expect(disallowedProblems([{ hostname: "web.svc.mcp.internal", listener: 1, component: "api", path: "components[0].routes[0]" }], zone, [])).toEqual([])
  })
})
