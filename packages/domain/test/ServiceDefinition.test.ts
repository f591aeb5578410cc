/**
 * The service definition's field checks as the operator reads them: every problem at its path,
 * naming what is wrong and how to write it instead.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, FastCheck as fc } from "effect"
import {
  ServiceDefinition as ServiceDefinitionSchema,
  durationMillis, imageRepository, portMappingProblem, resolveImage, type ServiceDefinition, volumeProblem
} from "../src/ServiceDefinition.js"
import { decodeDefinition, type Problem } from "../src/Validation.js"

const ctx = { internalZone: "svc.mcp.internal" }
const IMAGE = "localhost/web:v1.0.0"

/** Decodes a service named "web" with the given fields, its component "api" taking `component`. */
const decode = (component: Record<string, unknown>, service: Record<string, unknown> = {}) =>
  decodeDefinition({ name: "web", ...service, components: [{ name: "api", image: IMAGE, ...component }] }, ctx)

const problems = (component: Record<string, unknown>, service: Record<string, unknown> = {}): ReadonlyArray<Problem> => {
  const result = decode(component, service)
  return Either.isLeft(result) ? result.left : []
}

const decoded = (component: Record<string, unknown>, service: Record<string, unknown> = {}): ServiceDefinition =>
  Either.getOrThrowWith(decode(component, service), (p) => new Error(JSON.stringify(p)))

const ENV_HELP = `must be "KEY=VALUE" with KEY made of letters, digits and "_", e.g. "LOG_LEVEL=info"`

describe("env entries", () => {
  it("a key that does not start the entry, or holds anything but letters, digits and \"_\", is refused at its index", () => {
    expect(problems({ env: ["LOG_LEVEL=info", "1A=x", "A-B=x", "=x", " A=x", "AB"] })).toEqual([
      { path: "components[0].env[1]", message: `env entry "1A=x" ${ENV_HELP}` },
      { path: "components[0].env[2]", message: `env entry "A-B=x" ${ENV_HELP}` },
      { path: "components[0].env[3]", message: `env entry "=x" ${ENV_HELP}` },
      { path: "components[0].env[4]", message: `env entry " A=x" ${ENV_HELP}` },
      { path: "components[0].env[5]", message: `env entry "AB" ${ENV_HELP}` }
    ])
  })

  it("accepts any letters-digits-underscore key, with any value (empty, or containing \"=\")", () => {
    expect(problems({ env: ["A=", "_x=1", "a1=b=c", "LOG_LEVEL=info", "HTTP_PORT_2=8080"] })).toEqual([])
  })
})

describe("port mappings", () => {
  it("accepts [ip:]host:container[/tcp|/udp], IPv4 or bracketed IPv6, ports 1 to 65535", () => {
    for (const p of ["8080:80", "127.0.0.1:8080:80", "[::1]:8080:80", "[fe80::1]:53:53/udp", "80:80/tcp", "1:1", "65535:65535"]) {
      expect(portMappingProblem(p), p).toBeUndefined()
    }
  })

  it("names the port outside 1-65535", () => {
    expect(portMappingProblem("0:80")).toBe(`port mapping "0:80" has port 0 outside 1-65535`)
    expect(portMappingProblem("8080:65536")).toBe(`port mapping "8080:65536" has port 65536 outside 1-65535`)
    expect(portMappingProblem("65536:80")).toBe(`port mapping "65536:80" has port 65536 outside 1-65535`)
  })

  it("refuses anything else with the format and an example, at the entry's path", () => {
    const format = (p: string) =>
      `port mapping "${p}" must be "[ip:]host-port:container-port[/tcp|udp]", e.g. "127.0.0.1:8080:80"`
    for (const p of ["x8080:80", "8080", "::1:8080:80", "8080:80/sctp", "8080:80 ", " 8080:80", "localhost:8080:80", "1.2.3:80:80"]) {
      expect(portMappingProblem(p), p).toBe(format(p))
    }
    expect(problems({ ports: ["8080:80", "x8080:80"] })).toEqual([{ path: "components[0].ports[1]", message: format("x8080:80") }])
  })
})

describe("health checks", () => {
  it("an exec check needs a non-empty command", () => {
    const message = `an exec check needs a command, e.g. command = ["cat", "/tmp/ready"]`
    expect(problems({ health: { kind: "exec" } })).toEqual([{ path: "components[0].health.command", message }])
    expect(problems({ health: { kind: "exec", command: [] } })).toEqual([{ path: "components[0].health.command", message }])
    expect(problems({ health: { kind: "exec", command: ["cat", "/tmp/ready"] } })).toEqual([])
  })

  it("an http or tcp check must know which port: the only route, a named route, or port =", () => {
    expect(problems({ health: { kind: "tcp" } })).toEqual([
      { path: "components[0].health", message: `a tcp check on a component without routes needs port = <host port>` }
    ])
    const routes = [{ name: "https", port: 8443, mode: "l7" }, { name: "grpc", port: 9443, mode: "l4" }]
    expect(problems({ routes, health: { kind: "http", path: "/healthz" } })).toEqual([
      { path: "components[0].health", message: `component "api" has 2 routes; say which one to check with route = "<name>"` }
    ])
    expect(problems({ routes, health: { kind: "http", path: "/healthz", route: "grpc" } })).toEqual([])
    expect(problems({ ports: ["127.0.0.1:5432:5432"], health: { kind: "tcp", port: 5432 } })).toEqual([])
    expect(problems({ routes: routes.slice(0, 1), health: { kind: "tcp" } })).toEqual([])
  })

  it("port = names one of the component's published host ports, nothing else on the node", () => {
    // Any other port would make the agent's probe a scanner of the node's other services.
    expect(problems({ health: { kind: "tcp", port: 22 } })).toEqual([{
      path: "components[0].health.port",
      message: `port 22 is not published by component "api"; a check probes only the component's own ports: publish it in ports (e.g. "127.0.0.1:22:<container port>"), or check a route with route = "<name>"`
    }])
    expect(problems({ ports: ["127.0.0.1:8080:80", "9090:90/udp"], health: { kind: "http", path: "/", port: 80 } })).toEqual([{
      path: "components[0].health.port",
      message: `port 80 is not one of component "api"'s published host ports (8080, 9090); check one of them, or a route with route = "<name>"`
    }])
    // The container port is not the host port: only host ports count.
    expect(problems({ ports: ["8080:80"], health: { kind: "tcp", port: 8080 } })).toEqual([])
    expect(problems({ ports: ["[::1]:8081:80"], health: { kind: "tcp", port: 8081 } })).toEqual([])
    // With routes too: port = still has to be the component's own.
    expect(problems({ routes: [{ name: "https", port: 8443, mode: "l7" }], health: { kind: "tcp", port: 6379 } }).map((p) => p.path)).toEqual(["components[0].health.port"])
  })

  it("an http path starts with \"/\" and durations are a number and a unit", () => {
    expect(problems({ ports: ["80:80"], health: { kind: "http", path: "healthz", port: 80, interval: "10", timeout: "1d" } })).toEqual([
      { path: "components[0].health.path", message: `must start with "/", e.g. "/healthz"` },
      { path: "components[0].health.interval", message: `must be a duration such as "500ms", "10s" or "2m", got "10"` },
      { path: "components[0].health.timeout", message: `must be a duration such as "500ms", "10s" or "2m", got "1d"` }
    ])
  })

  it("durationMillis converts each unit", () => {
    expect(durationMillis("500ms")).toBe(500)
    expect(durationMillis("10s")).toBe(10_000)
    expect(durationMillis("2m")).toBe(120_000)
    expect(durationMillis("1h")).toBe(3_600_000)
    expect(durationMillis("25s")).toBe(25_000)
    for (const d of ["10", "x10s", "10sx", "s", "1.5s"]) expect(() => durationMillis(d), d).toThrow(`not a duration: ${d}`)
  })
})

describe("names", () => {
  it("a duplicate component or route name points at the first use", () => {
    const result = decodeDefinition({
      name: "web",
      components: [{ name: "api", image: IMAGE }, { name: "db", image: IMAGE }, { name: "api", image: IMAGE }]
    }, ctx)
    expect(result).toEqual(Either.left([
      { path: "components[2].name", message: `component name "api" is already used at index 0; give each component its own name` }
    ]))
    const routes = [{ name: "grpc", port: 9443, mode: "l4" }, { port: 8443, mode: "l7" }, { name: "grpc", port: 9444, mode: "l4" }]
    expect(problems({ routes })).toEqual([
      { path: "components[0].routes[2].name", message: `route name "grpc" is already used at index 0; give each route its own name` }
    ])
  })
})

describe("volumes", () => {
  it("a relative host path gets an absolute suggestion under /srv", () => {
    expect(problems({ volumes: ["data:/data"] })).toEqual([
      { path: "components[0].volumes[0]", message: `volume "data:/data" has a relative host path "data"; use an absolute path such as "/srv/data"` }
    ])
    expect(volumeProblem("./data:/data")).toBe(`volume "./data:/data" has a relative host path "./data"; use an absolute path such as "/srv/data"`)
    expect(volumeProblem(".//data:/data")).toContain(`use an absolute path such as "/srv/data"`)
    expect(volumeProblem("data/./x:/data")).toContain(`use an absolute path such as "/srv/data/./x"`)
  })

  it("a relative container path gets its named segments as the suggestion, or /data when it has none", () => {
    expect(volumeProblem("/srv/x:var/log/")).toBe(`volume "/srv/x:var/log/" has a relative container path "var/log/"; use an absolute path such as "/var/log"`)
    expect(volumeProblem("/srv/x:./logs/")).toContain(`use an absolute path such as "/logs"`)
    expect(volumeProblem("/srv/x:./")).toBe(`volume "/srv/x:./" has a relative container path "./"; use an absolute path such as "/data"`)
    expect(volumeProblem("/srv/x:")).toContain(`use an absolute path such as "/data"`)
  })

  it("one field, or more than three, is the format error; only too many fields are counted", () => {
    const format = (v: string) =>
      `volume "${v}" must be "host-path:container-path" or "host-path:container-path:options", e.g. "/srv/app:/srv/app:ro"`
    expect(volumeProblem("/srv/vol")).toBe(format("/srv/vol"))
    expect(volumeProblem("/a:/b:ro:Z:x")).toBe(`${format("/a:/b:ro:Z:x")}; it has 5 ":"-separated fields`)
    expect(volumeProblem("/a:/b:ro")).toBeUndefined()
  })
})

describe("relative paths (path =, [build.images])", () => {
  it("must be non-empty, relative, and stay inside the workspace", () => {
    expect(problems({}, { path: "" })).toEqual([{ path: "path", message: "is empty" }])
    expect(problems({}, { path: "/srv/web" })).toEqual([{ path: "path", message: `"/srv/web" is absolute; give a path relative to the workspace` }])
    expect(problems({}, { path: "a/../../b" })).toEqual([{ path: "path", message: `"a/../../b" climbs out with ".."; give a path inside the workspace` }])
    expect(problems({}, { path: ".." })).toEqual([{ path: "path", message: `".." climbs out with ".."; give a path inside the workspace` }])
    expect(problems({}, { build: { images: { web: "../Dockerfile" } } })).toEqual([
      { path: "build.images.web", message: `"../Dockerfile" climbs out with ".."; give a path inside the workspace` }
    ])
    // Dots inside a name are not a climb.
    expect(problems({}, { path: "web/..x/y..", build: { images: { web: "docker/Dockerfile" } } })).toEqual([])
  })
})

describe("service fields", () => {
  it("active defaults to true and tier to worker; both can be set", () => {
    expect(decoded({}).active).toBe(true)
    expect(decoded({}).tier).toBe("worker")
    expect(decoded({}, { active: false, tier: "core" })).toMatchObject({ active: false, tier: "core" })
  })

  it("a [build.images] key must name a component's image repository, and the message lists them", () => {
    const result = decodeDefinition({
      name: "web",
      version: "v1.0.0",
      build: { images: { other: "Dockerfile", web: "Dockerfile", pg: "db/Dockerfile" } },
      components: [{ name: "api" }, { name: "db", image: "reg:5000/team/pg:v2" }, { name: "cache" }]
    }, ctx)
    expect(result).toEqual(Either.left([{
      path: "build.images.other",
      message: `no component runs an image named "other"; the key is the repository part of a component's image ("web", "pg", "web-cache")`
    }]))
  })

  it("network, user and version are checked with the value quoted back", () => {
    expect(problems({ network: "-x", user: "A B" }, { version: "latest" })).toEqual([
      { path: "version", message: `"latest" is not a version; pin one, e.g. "v1.0.0"` },
      { path: "components[0].network", message: `network "-x" is not a valid network name (letters, digits, "_", ".", "-")` },
      { path: "components[0].user", message: `user "A B" must be "uid", "uid:gid" or a user name, e.g. "0:0"` }
    ])
    expect(problems({ network: "mcpnet", user: "1000:1000" }, { version: "v2.1.0" })).toEqual([])
  })

  it("the actual value is shown as the operator wrote it: strings quoted, numbers bare, absence as nothing", () => {
    const modeOf = (mode: unknown) => problems({ routes: [{ port: 8443, mode }] })
    const expected = `must be "l4" (TLS passed through to the service) or "l7" (TLS terminated by the proxy), got`
    expect(modeOf("L7")).toEqual([{ path: "components[0].routes[0].mode", message: `${expected} "L7"` }])
    expect(modeOf(7)).toEqual([{ path: "components[0].routes[0].mode", message: `${expected} 7` }])
    expect(modeOf(true)).toEqual([{ path: "components[0].routes[0].mode", message: `${expected} true` }])
    expect(modeOf(undefined)).toEqual([{ path: "components[0].routes[0].mode", message: `${expected} nothing` }])
    expect(problems({ routes: [{ port: 0, mode: "l4" }] })).toEqual([
      { path: "components[0].routes[0].port", message: `must be a whole number from 1 to 65535, got 0` }
    ])
  })
})

describe("images", () => {
  it("a component's repository is its image's, or <service> for the first and <service>-<component> for others", () => {
    expect(imageRepository("web", { name: "db", image: "reg:5000/team/pg:v2" }, 1)).toBe("pg")
    expect(imageRepository("web", { name: "api", image: "localhost/app:v1.0.0" }, 0)).toBe("app")
    expect(imageRepository("web", { name: "api" }, 0)).toBe("web")
    expect(imageRepository("web", { name: "cache" }, 2)).toBe("web-cache")
    // An image that does not parse falls back to the convention.
    expect(imageRepository("web", { name: "cache", image: "Not An Image" }, 2)).toBe("web-cache")
  })

  it("resolveImage uses the image written out, or derives <registry>/<repository>:<version>", () => {
    const def = Either.getOrThrow(decodeDefinition({
      name: "web",
      version: "v1.2.3",
      components: [{ name: "api" }, { name: "db" }, { name: "pg", image: "reg:5000/pg:v9" }]
    }, ctx))
    expect(resolveImage(def, 0, "registry.example.com:5000")).toBe("registry.example.com:5000/web:v1.2.3")
    expect(resolveImage(def, 1, "registry.example.com:5000")).toBe("registry.example.com:5000/web-db:v1.2.3")
    expect(resolveImage(def, 2, "registry.example.com:5000")).toBe("reg:5000/pg:v9")
  })
})

/**
 * The schema's generator (used by RoundTrip.test.ts) repairs random definitions into valid ones.
 * The round trip only covers the shapes the generator yields, so it must keep yielding the
 * variety operators write, not just whatever survives the schema's own filters.
 */
describe("generated definitions", () => {
  const defs = fc.sample(Arbitrary.make(ServiceDefinitionSchema), { numRuns: 300, seed: 42 })
  const components = defs.flatMap((d) => d.components)
  const routes = components.flatMap((c) => c.routes ?? [])
  const checks = components.flatMap((c) => (c.health === undefined ? [] : [{ c, h: c.health }]))

  it("cover services with and without [build], components with and without routes, named and unnamed routes", () => {
    expect(defs.some((d) => d.build === undefined)).toBe(true)
    expect(defs.some((d) => d.build !== undefined && Object.keys(d.build.images ?? {}).length > 0)).toBe(true)
    expect(components.some((c) => c.routes === undefined)).toBe(true)
    expect(routes.some((r) => r.name === undefined)).toBe(true)
    expect(routes.some((r) => r.name !== undefined)).toBe(true)
  })

  it("cover internal routes without a hostname and public routes with their own", () => {
    expect(routes.some((r) => !r.public && r.hostname === undefined)).toBe(true)
    expect(routes.some((r) => r.public && r.hostname !== undefined && r.hostname !== "public.example.com")).toBe(true)
  })

  it("give an http/tcp check the port it needs the way an operator would", () => {
    // The only route is implied; among several, a named route is checked; without one, a port.
    expect(checks.some(({ c, h }) => h.kind !== "exec" && c.routes?.length === 1 && h.route === undefined && h.port === undefined)).toBe(true)
    expect(checks.some(({ h }) => h.route !== undefined)).toBe(true)
    expect(checks.some(({ h }) => h.kind === "tcp" && h.path === undefined)).toBe(true)
    for (const { c, h } of checks) {
      const rs = c.routes ?? []
      if (h.kind === "exec" || rs.length === 1) continue
      if (rs.some((r) => r.name !== undefined)) expect(h.route).toBeDefined()
      else expect(h.port).toBeDefined()
    }
  })
})
