/**
 * A service's status as the agent sees it: the registry's record joined with what the engine
 * says of each container (running, starting, stopped or missing), its routes and restarts.
 */
import { Errors, Image, type Status } from "@mcp/domain"
import { Failures } from "@mcp/rpc"
import { Effect, Either, Option } from "effect"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { type ComponentRow, Registry, type RouteRow } from "../registry/Registry.js"

/** One component's status: its registry row joined with what the engine says of its container. */
const componentStatus = (
  runtime: ContainerRuntime,
  c: ComponentRow,
  routes: ReadonlyArray<RouteRow>
): Effect.Effect<Status.ComponentStatus> =>
  Effect.map(Effect.either(runtime.inspect(c.spec.name)), (info): Status.ComponentStatus => ({
    name: c.name,
    image: c.image,
    version: Image.imageVersion(c.image),
    state: Either.isLeft(info) ? "missing" : info.right.state === "running" ? "running" : info.right.state === "created" || info.right.state === "restarting" ? "starting" : "stopped",
    ...(Either.isRight(info) ? { containerId: info.right.id.slice(0, 12) } : {}),
    routes: routes.filter((r) => r.component === c.name).map((r) => ({ ...(r.route === undefined ? {} : { route: r.route }), hostname: r.hostname, listener: r.listener, mode: r.mode, hostPort: r.hostPort })),
    restarts: c.restarts + (Either.isRight(info) ? info.right.restartCount : 0),
    ...(Either.isRight(info) && info.right.startedAt !== undefined ? { startedAt: info.right.startedAt } : {})
  }))

// Containers asked of the engine at once by ps: enough to overlap the engine's answers, few
// enough not to crowd it (the runtime's list uses the same).
const INSPECT_CONCURRENCY = 4

export const status = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const settings = yield* NodeSettings
    const row = yield* registry.service(service)
    if (Option.isNone(row)) return yield* Effect.fail(new Errors.ServiceNotFound({ service }))
    const components = yield* registry.components(service)
    const routes = yield* registry.serviceRoutes(service)
    const comps = yield* Effect.forEach(components, (c) => componentStatus(runtime, c, routes))
    return { service, node: settings.node as never, active: row.value.active, components: comps, warnings: [] } satisfies Status.ServiceStatus
  })

/**
 * Every service's status, as `status` gives each: the registry read in three queries (services,
 * components, routes) whatever the number of services, and the containers inspected a few at a
 * time. The registry failing to list the services is the caller's to handle; failing after that
 * is fatal (the caller cannot act on it).
 */
export const ps = Effect.gen(function* () {
  const registry = yield* Registry
  const runtime = yield* ContainerRuntime
  const settings = yield* NodeSettings
  const rows = yield* registry.serviceStates
  if (rows.length === 0) return []
  const [components, routes] = yield* Failures.fatal("the agent registry")(Effect.all([registry.allComponents, registry.routesByRowid]))
  const listed = new Set(rows.map((r) => r.name))
  const routesOf = new Map<string, Array<RouteRow>>()
  for (const r of routes) if (listed.has(r.service)) (routesOf.get(r.service) ?? routesOf.set(r.service, []).get(r.service)!).push(r)
  const mine = components.filter((c) => listed.has(c.service))
  const statuses = yield* Effect.forEach(mine, (c) => componentStatus(runtime, c, routesOf.get(c.service) ?? []), { concurrency: INSPECT_CONCURRENCY })
  const componentsOf = new Map<string, Array<Status.ComponentStatus>>()
  mine.forEach((c, i) => (componentsOf.get(c.service) ?? componentsOf.set(c.service, []).get(c.service)!).push(statuses[i]!))
  return rows.map((row): Status.ServiceStatus => ({
    service: row.name,
    node: settings.node as never,
    active: row.active,
    components: componentsOf.get(row.name) ?? [],
    warnings: []
  }))
})
