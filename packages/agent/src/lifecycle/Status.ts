/**
 * A service's status as the agent sees it: the registry's record joined with what the engine
 * says of each container (running, starting, stopped or missing), its routes and restarts.
 */
import { Errors, Image, type Status } from "@mcp/domain"
import { Failures } from "@mcp/rpc"
import { Effect, Either, Option } from "effect"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { Registry } from "../registry/Registry.js"

export const status = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const settings = yield* NodeSettings
    const row = yield* registry.service(service)
    if (Option.isNone(row)) return yield* Effect.fail(new Errors.ServiceNotFound({ service }))
    const components = yield* registry.components(service)
    const routes = yield* registry.serviceRoutes(service)
    const comps = yield* Effect.forEach(components, (c) =>
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
    )
    return { service, node: settings.node as never, active: row.value.active, components: comps, warnings: [] } satisfies Status.ServiceStatus
  })

/** Every service's status; the registry failing here is fatal (the caller cannot act on it). */
export const ps = Effect.flatMap(Registry, (registry) =>
  Effect.flatMap(registry.services, (rows) => Effect.forEach(rows, (s) => Failures.fatal("the agent registry")(status(s.name))))
)
