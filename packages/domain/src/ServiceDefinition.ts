/**
 * The service definition an operator writes in TOML: what to run, where, and how it is reached.
 * Field names are the file's own (snake_case) so that decode and encode are one schema.
 */
import { Duration as EffectDuration, FastCheck, ParseResult, Schema } from "effect"
import { choice, formatActual } from "./Choice.js"
import { Hostname } from "./Hostname.js"
import { ImageRef, parseImage } from "./Image.js"
import { ComponentName, NodeName, RouteName, ServiceName } from "./Names.js"
import { RouteMode } from "./RouteMode.js"
import { VOLUME_OPTIONS } from "./VolumeOptions.js"

/** An optional key that may be absent but never `undefined`, like a TOML key. */
const optional = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })


// ---------------------------------------------------------------------------------------------
// Field-level schemas. Each refinement's message names what is wrong and how to write it.

export const Port = Schema.Int.pipe(
  Schema.between(1, 65535),
  Schema.annotations({
    identifier: "Port",
    message: (issue) => `must be a whole number from 1 to 65535, got ${formatActual(issue.actual)}`
  })
)

export { RouteMode } from "./RouteMode.js"

export const Tier = choice(["core", "worker"], `"core" (runs on the master node) or "worker" (placed on a worker)`)
export type Tier = typeof Tier.Type

export const RestartPolicy = choice(["no", "always", "on-failure", "unless-stopped"], `one of "no", "always", "on-failure", "unless-stopped"`)
export type RestartPolicy = typeof RestartPolicy.Type

/** A duration written as a number and a unit: `500ms`, `10s`, `2m`, `1h`. */
export const DurationText = Schema.String.pipe(
  Schema.pattern(/^[1-9][0-9]{0,5}(ms|s|m|h)$/, {
    message: (issue) => `must be a duration such as "500ms", "10s" or "2m", got ${formatActual(issue.actual)}`
  }),
  Schema.annotations({ identifier: "DurationText" })
)

const UNIT_MILLIS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const
const LARGEST_UNIT_FIRST = (Object.entries(UNIT_MILLIS) as Array<[keyof typeof UNIT_MILLIS, number]>).sort(([, a], [, b]) => b - a)

export const durationMillis = (d: string): number => {
  const m = /^([0-9]+)(ms|s|m|h)$/.exec(d)
  if (m === null) throw new Error(`not a duration: ${d}`)
  return Number(m[1]) * UNIT_MILLIS[m[2] as keyof typeof UNIT_MILLIS]
}

/**
 * A written duration decoded once into an Effect `Duration`, so the code that waits never parses
 * text. It encodes in the largest unit that divides it ("60s" comes back as "1m"); one no unit
 * writes in six digits, which decoding never yields, cannot be encoded.
 */
export const Duration = Schema.transformOrFail(DurationText, Schema.DurationFromSelf, {
  strict: true,
  decode: (text) => ParseResult.succeed(EffectDuration.millis(durationMillis(text))),
  encode: (duration, _, ast) => {
    const millis = EffectDuration.toMillis(duration)
    const unit = Number.isSafeInteger(millis) && millis > 0
      ? LARGEST_UNIT_FIRST.find(([, size]) => millis % size === 0 && millis / size <= 999_999)
      : undefined
    return unit === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, duration, `${EffectDuration.format(duration)} is not a whole number of ms, s, m or h below a million`))
      : ParseResult.succeed(`${millis / unit[1]}${unit[0]}`)
  }
}).annotations({
  identifier: "Duration",
  arbitrary: () => (fc) =>
    fc.tuple(fc.integer({ min: 1, max: 999_999 }), fc.constantFrom(...Object.values(UNIT_MILLIS))).map(([n, size]) => EffectDuration.millis(n * size))
})

const relativePathProblem = (p: string): string | undefined => {
  if (p.length === 0) return "is empty"
  if (p.startsWith("/")) return `"${p}" is absolute; give a path relative to the workspace`
  if (p.split("/").includes("..")) return `"${p}" climbs out with ".."; give a path inside the workspace`
  return undefined
}

// Generators for property tests: filtering random strings would almost never hit these formats.
const segment = (fc: typeof FastCheck) => fc.stringMatching(/^[a-z][a-z0-9-]{0,7}$/)
const absolutePath = (fc: typeof FastCheck) => fc.array(segment(fc), { minLength: 1, maxLength: 3 }).map((s) => `/${s.join("/")}`)

const RelativePath = Schema.String.pipe(
  Schema.filter((p) => relativePathProblem(p) ?? true),
  Schema.annotations({ arbitrary: () => (fc) => fc.array(segment(fc), { minLength: 1, maxLength: 3 }).map((s) => s.join("/")) })
)

export { VOLUME_OPTIONS } from "./VolumeOptions.js"

const volumeOptionKind = (option: string): string | undefined =>
  Object.entries(VOLUME_OPTIONS).find(([, options]) => (options as ReadonlyArray<string>).includes(option))?.[0]

const VOLUME_OPTIONS_HELP =
  `options are a comma-separated list of at most one of each: "ro" or "rw" (read-only, read-write), ` +
  `"z" or "Z" (SELinux label shared between containers, private to this one), and a mount propagation ` +
  `(${VOLUME_OPTIONS.propagation.map((o) => `"${o}"`).join(", ")}) and "U" (chown the host directory to the container's user), e.g. "/srv/app:/srv/app:ro,Z"`

const volumeOptionsProblem = (v: string, options: string): string | undefined => {
  if (options.length === 0) return `volume "${v}" ends with an empty options field; drop the trailing ":" or give options: ${VOLUME_OPTIONS_HELP}`
  const seen = new Map<string, string>()
  for (const option of options.split(",")) {
    const kind = volumeOptionKind(option)
    if (kind === undefined) {
      return option.length === 0
        ? `volume "${v}" has an empty option in "${options}"; ${VOLUME_OPTIONS_HELP}`
        : `volume "${v}" has an unknown option "${option}"; ${VOLUME_OPTIONS_HELP}`
    }
    const earlier = seen.get(kind)
    if (earlier === option) return `volume "${v}" repeats the option "${option}"; give it once`
    if (earlier !== undefined) return `volume "${v}" has contradictory options "${earlier}" and "${option}" (both set the ${kind}); keep one of them`
    seen.set(kind, option)
  }
  return undefined
}

/**
 * `host-path:container-path[:options]`; both paths are absolute and never climb out with `..`,
 * and the options are ones a bind mount accepts (see `VOLUME_OPTIONS`), none contradicting another.
 */
export const volumeProblem = (v: string): string | undefined => {
  const parts = v.split(":")
  if (parts.length < 2 || parts.length > 3) {
    return `volume "${v}" must be "host-path:container-path" or "host-path:container-path:options", e.g. "/srv/app:/srv/app:ro"` +
      (parts.length > 3 ? `; it has ${parts.length} ":"-separated fields` : "")
  }
  const [host, container, options] = parts as [string, string, string | undefined]
  if (!host.startsWith("/")) return `volume "${v}" has a relative host path "${host}"; use an absolute path such as "/srv/${host.replace(/^\.?\/*/, "")}"`
  if (host.split("/").includes("..")) return `volume "${v}" climbs out of its host path with ".."; name the directory directly`
  if (!container.startsWith("/")) {
    const named = container.split("/").filter((s) => s !== "" && s !== "." && s !== "..").join("/")
    return `volume "${v}" has a relative container path "${container}"; use an absolute path such as "/${named === "" ? "data" : named}"`
  }
  if (container.split("/").includes("..")) return `volume "${v}" has ".." in its container path; name the directory directly`
  return options === undefined ? undefined : volumeOptionsProblem(v, options)
}

export const Volume = Schema.String.pipe(
  Schema.filter((v) => volumeProblem(v) ?? true),
  Schema.annotations({
    arbitrary: () => (fc) =>
      fc
        .tuple(absolutePath(fc), absolutePath(fc), fc.constantFrom("", ":ro", ":rw", ":z", ":Z", ":ro,Z", ":rw,z,rslave", ":private"))
        .map(([h, c, o]) => `${h}:${c}${o}`)
  })
)

export const EnvEntry = Schema.String.pipe(
  Schema.filter((e) =>
    /^[A-Za-z_][A-Za-z0-9_]*=/.test(e)
      ? true
      : `env entry ${JSON.stringify(e)} must be "KEY=VALUE" with KEY made of letters, digits and "_", e.g. "LOG_LEVEL=info"`
  ),
  Schema.annotations({
    arbitrary: () => (fc) => fc.tuple(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,8}$/), fc.string({ maxLength: 12 })).map(([k, v]) => `${k}=${v}`)
  })
)

/** Docker-style port publishing: `[ip:]host-port:container-port[/tcp|/udp]`. */
export const portMappingProblem = (p: string): string | undefined => {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(p)
  if (m === null) return `port mapping "${p}" must be "[ip:]host-port:container-port[/tcp|udp]", e.g. "127.0.0.1:8080:80"`
  for (const n of [m[2]!, m[3]!]) {
    const port = Number(n)
    if (port < 1 || port > 65535) return `port mapping "${p}" has port ${n} outside 1-65535`
  }
  return undefined
}

/** The host port of a valid port mapping, or undefined. */
const hostPortOf = (p: string): number | undefined => {
  const m = /^(?:(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d+):\d+(?:\/(?:tcp|udp))?$/.exec(p)
  return m === null ? undefined : Number(m[1])
}

export const PortMapping = Schema.String.pipe(
  Schema.filter((p) => portMappingProblem(p) ?? true),
  Schema.annotations({
    arbitrary: () => (fc) =>
      fc
        .tuple(fc.constantFrom("", "127.0.0.1:"), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }), fc.constantFrom("", "/tcp", "/udp"))
        .map(([ip, h, c, proto]) => `${ip}${h}:${c}${proto}`)
  })
)

const NetworkName = Schema.String.pipe(
  Schema.annotations({ arbitrary: () => (fc) => fc.constantFrom("bridge", "host", "none", "mcpnet") }),
  Schema.pattern(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, {
    message: (issue) => `network ${formatActual(issue.actual)} is not a valid network name (letters, digits, "_", ".", "-")`
  })
)

const UserSpec = Schema.String.pipe(
  Schema.pattern(/^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})(:([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10}))?$/, {
    message: (issue) => `user ${formatActual(issue.actual)} must be "uid", "uid:gid" or a user name, e.g. "0:0"`
  }),
  Schema.annotations({ arbitrary: () => (fc) => fc.constantFrom("0:0", "1000", "1000:1000", "www-data") })
)

const ImageTag = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/),
  Schema.filter((t) => (t === "latest" ? `"latest" is not a version; pin one, e.g. "v1.0.0"` : true)),
  Schema.annotations({ arbitrary: () => (fc) => fc.tuple(fc.nat(9), fc.nat(30)).map(([a, b]) => `v${a}.${b}.0`) })
)

// ---------------------------------------------------------------------------------------------
// Limits. A definition travels in one RPC and is decoded, validated, stored and rendered into
// container and proxy configuration on every deploy; these bound that work and what one file
// can make the daemons do. Each is far above what a service written by hand needs.

/** Components per service: a service is a few cooperating containers, not a fleet. */
export const MAX_COMPONENTS_PER_SERVICE = 64
/** Routes per component: each opens a proxy listener and allocates a port on the node. */
export const MAX_ROUTES_PER_COMPONENT = 32
/** Bind mounts per component. */
export const MAX_VOLUMES_PER_COMPONENT = 64
/** Environment entries per component: generous for twelve-factor configuration. */
export const MAX_ENV_PER_COMPONENT = 256
/** Published port mappings per component: each binds a host port. */
export const MAX_PORTS_PER_COMPONENT = 64

/** An array of at most `limit` entries, refused by a message naming the limit and the count. */
const atMost = (limit: number, what: string, where: string, fix: string) =>
  <S extends Schema.Schema.Any, A extends ReadonlyArray<unknown>>(
    self: S & Schema.Schema<A, Schema.Schema.Encoded<S>, Schema.Schema.Context<S>>
  ): Schema.filter<S> =>
    Schema.maxItems<S>(limit, {
      message: (issue) => {
        const n = Array.isArray(issue.actual) ? issue.actual.length : "more"
        return `has ${n} ${what}; ${where} may have at most ${limit}: ${fix}`
      }
    })(self)

// ---------------------------------------------------------------------------------------------
// Structure.

export const HealthCheck = Schema.Struct({
  kind: choice(["http", "tcp", "exec"], `"http", "tcp" or "exec"`),
  /** http: the path to GET; any 2xx or 3xx answer is healthy. */
  path: optional(Schema.String.pipe(Schema.pattern(/^\//, { message: () => `must start with "/", e.g. "/healthz"` }))),
  /** http/tcp: the route whose port is checked (default: the component's only route). */
  route: optional(RouteName),
  /** http/tcp for components without routes: the host port to check. */
  port: optional(Port),
  /** exec: the command run inside the container; exit 0 is healthy. */
  command: optional(Schema.Array(Schema.String)),
  interval: Schema.optionalWith(Duration, { exact: true, default: () => EffectDuration.seconds(10) }),
  timeout: Schema.optionalWith(Duration, { exact: true, default: () => EffectDuration.seconds(2) }),
  retries: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 100)), { exact: true, default: () => 3 })
})
export type HealthCheck = typeof HealthCheck.Type

export const Route = Schema.Struct({
  /** Names the route and its env var `$PORT_<NAME>`; at most one route per component is unnamed (`$PORT`). */
  name: optional(RouteName),
  /** The listener port on the node's proxy. */
  port: Port,
  mode: RouteMode,
  /** Default `<service>.<internal zone>`. */
  hostname: optional(Hostname),
  /** Publish through an edge node; the hostname must be outside the internal zone. */
  public: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => false }),
  /** L7 only: the proxy re-encrypts to a backend that speaks TLS itself. */
  backend_tls: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => false })
})
export type Route = typeof Route.Type

/** For `[components]` written where `[[components]]` is meant: the value is a table, not a list of them. */
const tablesMessage = (header: string) => `must be a list of tables; start each entry with ${header} (double brackets)`

const uniqueNames = <A>(
  items: ReadonlyArray<A>,
  nameOf: (a: A) => string | undefined,
  what: string
): Array<{ index: number; message: string }> => {
  const seen = new Map<string, number>()
  const problems: Array<{ index: number; message: string }> = []
  items.forEach((item, index) => {
    const name = nameOf(item)
    if (name === undefined) return
    const first = seen.get(name)
    if (first !== undefined) problems.push({ index, message: `${what} "${name}" is already used at index ${first}; give each ${what.replace(/ name$/, "")} its own name` })
    else seen.set(name, index)
  })
  return problems
}

const ComponentFields = Schema.Struct({
  name: ComponentName,
  /** Required unless the service sets `version`, in which case it is derived from the registry. */
  image: optional(ImageRef),
  volumes: optional(Schema.Array(Volume).pipe(atMost(MAX_VOLUMES_PER_COMPONENT, "volumes", "a component", "mount a common parent directory instead of each one"))),
  cmd: optional(Schema.Array(Schema.String)),
  env: optional(Schema.Array(EnvEntry).pipe(atMost(MAX_ENV_PER_COMPONENT, "env entries", "a component", "move configuration into a file mounted with volumes"))),
  network: optional(NetworkName),
  user: optional(UserSpec),
  restart: optional(RestartPolicy),
  /** Published as given, in addition to the ports the agent allocates for routes. */
  ports: optional(Schema.Array(PortMapping).pipe(atMost(MAX_PORTS_PER_COMPONENT, "port mappings", "a component", "publish a range through a route, or split the component"))),
  health: optional(HealthCheck),
  routes: optional(
    Schema.Array(Route).annotations({ message: () => tablesMessage("[[components.routes]]") }).pipe(
      atMost(MAX_ROUTES_PER_COMPONENT, "routes", "a component", "split the component into several")
    )
  )
})
type ComponentShape = typeof ComponentFields.Type

export const Component = ComponentFields.pipe(
  Schema.filter((c) => {
    const routes = c.routes ?? []
    const issues: Array<Schema.FilterIssue> = uniqueNames(routes, (r) => r.name, "route name").map((p) => ({
      path: ["routes", p.index, "name"],
      message: p.message
    }))
    const unnamed = routes.flatMap((r, i) => (r.name === undefined ? [i] : []))
    for (const i of unnamed.slice(1)) {
      issues.push({
        path: ["routes", i],
        message: `component "${c.name}" has ${unnamed.length} routes without a name; name them (e.g. name = "grpc", which sets $PORT_GRPC), only one may use $PORT`
      })
    }
    routes.forEach((r, i) => {
      if (r.backend_tls && r.mode === "l4") {
        issues.push({ path: ["routes", i, "backend_tls"], message: `backend_tls applies to l7 routes; an l4 route already passes TLS through to the service` })
      }
    })
    const h = c.health
    if (h !== undefined) {
      if (h.kind === "http" && h.path === undefined) issues.push({ path: ["health", "path"], message: `an http check needs a path, e.g. path = "/healthz"` })
      if (h.kind === "exec" && (h.command === undefined || h.command.length === 0)) {
        issues.push({ path: ["health", "command"], message: `an exec check needs a command, e.g. command = ["cat", "/tmp/ready"]` })
      }
      if (h.kind !== "exec") {
        if (h.route !== undefined && !routes.some((r) => r.name === h.route)) {
          issues.push({ path: ["health", "route"], message: `no route named "${h.route}" in component "${c.name}"; name one of its routes` })
        }
        // The agent probes from the node and reports what it found: only a port this component
        // publishes itself, or it would be a scanner of the node's other services.
        const published = (c.ports ?? []).flatMap((p) => {
          const host = hostPortOf(p)
          return host === undefined ? [] : [host]
        })
        if (h.port !== undefined && !published.includes(h.port)) {
          issues.push({
            path: ["health", "port"],
            message: published.length === 0
              ? `port ${h.port} is not published by component "${c.name}"; a check probes only the component's own ports: publish it in ports (e.g. "127.0.0.1:${h.port}:<container port>"), or check a route with route = "<name>"`
              : `port ${h.port} is not one of component "${c.name}"'s published host ports (${published.join(", ")}); check one of them, or a route with route = "<name>"`
          })
        }
        if (h.route === undefined && h.port === undefined && routes.length !== 1) {
          issues.push({
            path: ["health"],
            message: routes.length === 0
              ? `a ${h.kind} check on a component without routes needs port = <host port>`
              : `component "${c.name}" has ${routes.length} routes; say which one to check with route = "<name>"`
          })
        }
      }
    }
    return issues
  }),
  Schema.annotations({ arbitrary: (from) => (fc) => from(fc).map(repairComponent) })
)
export type Component = typeof Component.Type

/** Makes a generated component consistent, for property tests: what the filter above checks. */
const repairComponent = (c: ComponentShape): ComponentShape => {
  const used = new Set<string>()
  let unnamedSeen = false
  const routes = (c.routes ?? []).map((r, i) => {
    let name = r.name
    if (name === undefined ? unnamedSeen : used.has(name)) name = `r${i}` as RouteName
    if (name === undefined) unnamedSeen = true
    else used.add(name)
    const { name: _dropped, ...rest } = r
    // A public route needs a hostname outside the internal zone; generated labels never form one.
    const hostname = r.public && r.hostname === undefined ? { hostname: "public.example.com" as Hostname } : {}
    return { ...rest, ...hostname, ...(name === undefined ? {} : { name }), backend_tls: r.mode === "l4" ? false : r.backend_tls }
  })
  const repaired: ComponentShape = { ...c, ...(c.routes === undefined ? {} : { routes }) }
  const h = c.health
  if (h === undefined) return repaired
  const { path: _p, route: _r, port: _q, command: _c, ...base } = h
  const target = routes.find((r) => r.name !== undefined)
  const health: HealthCheck =
    h.kind === "exec"
      ? { ...base, command: h.command !== undefined && h.command.length > 0 ? h.command : ["true"] }
      : {
          ...base,
          ...(h.kind === "http" ? { path: h.path ?? "/" } : {}),
          ...(routes.length === 1 ? {} : target?.name !== undefined ? { route: target.name } : { port: h.port ?? 8080 })
        }
  // A checked port must be one the component publishes: publish it when it does not.
  const port = health.port
  const ports = port === undefined || (c.ports ?? []).some((p) => hostPortOf(p) === port) ? c.ports : [...(c.ports ?? []).slice(0, MAX_PORTS_PER_COMPONENT - 1), `127.0.0.1:${port}:${port}`]
  return { ...repaired, ...(ports === undefined ? {} : { ports }), health }
}

export const BuildSection = Schema.Struct({
  /** Image repository name -> Dockerfile path relative to the service's source directory. */
  images: optional(Schema.Record({ key: Schema.String, value: RelativePath }))
})

const ServiceFields = Schema.Struct({
  name: ServiceName,
  /** Pin to a node; otherwise placement decides from the tier. */
  node: optional(NodeName),
  tier: Schema.optionalWith(Tier, { exact: true, default: () => "worker" as const }),
  /** Whether MCP keeps the service running. */
  active: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => true }),
  /** Source directory relative to the workspace (default: the service name). */
  path: optional(RelativePath),
  /** Version applied to components whose image is derived rather than written out. */
  version: optional(ImageTag),
  build: optional(BuildSection),
  components: Schema.Array(Component).annotations({ message: () => tablesMessage("[[components]]") }).pipe(
    Schema.minItems(1, { message: () => `a service needs at least one [[components]] table with a name and an image` }),
    atMost(MAX_COMPONENTS_PER_SERVICE, "components", "a service", "split it into several services")
  )
})
type ServiceShape = typeof ServiceFields.Type

export const ServiceDefinition = ServiceFields.pipe(
  Schema.filter((s) => {
    const issues: Array<Schema.FilterIssue> = uniqueNames(s.components, (c) => c.name, "component name").map((p) => ({
      path: ["components", p.index, "name"],
      message: p.message
    }))
    s.components.forEach((c, i) => {
      if (c.image === undefined && s.version === undefined) {
        issues.push({
          path: ["components", i, "image"],
          message: `is missing; write image = "registry/name:v1.0.0", or set a service-level version so the image is derived`
        })
      }
    })
    const repositories = new Set(s.components.map((c, i) => imageRepository(s.name, c, i)))
    for (const key of Object.keys(s.build?.images ?? {})) {
      if (!repositories.has(key)) {
        issues.push({
          path: ["build", "images", key],
          message: `no component runs an image named "${key}"; the key is the repository part of a component's image (${[...repositories].map((r) => `"${r}"`).join(", ")})`
        })
      }
    }
    return issues
  }),
  Schema.annotations({ arbitrary: (from) => (fc) => from(fc).map(repairService) })
)
export type ServiceDefinition = typeof ServiceDefinition.Type

/** Makes a generated definition consistent, for property tests: unique names, known build keys. */
const repairService = (s: ServiceShape): ServiceShape => {
  const components = s.components.map((c, i) => ({ ...c, name: `${c.name.slice(0, 55)}-${i}` as ComponentName }))
  const repositories = components.map((c, i) => imageRepository(s.name, c, i))
  const images = Object.values(s.build?.images ?? {})
  const build = s.build === undefined ? {} : { build: { images: Object.fromEntries(images.map((path, i) => [repositories[i % repositories.length]!, path])) } }
  const { build: _b, ...rest } = s
  return { ...rest, ...build, components }
}
/**
 * The repository a component's image comes from: the one in its image, or by convention
 * `<service>` for the first component and `<service>-<component>` for the others.
 */
export const imageRepository = (
  service: string,
  component: { readonly name: string; readonly image?: string },
  index: number
): string => {
  if (component.image !== undefined) {
    const parsed = parseImage(component.image)
    if (typeof parsed !== "string") return parsed.repository
  }
  return index === 0 ? service : `${service}-${component.name}`
}

/** The image a component runs: the one it names, or `<registry>/<repository>:<version>`. */
export const resolveImage = (def: ServiceDefinition, index: number, registry: string): string => {
  const component = def.components[index]!
  if (component.image !== undefined) return component.image
  return `${registry}/${imageRepository(def.name, component, index)}:${def.version}`
}

