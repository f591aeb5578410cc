/**
 * Making the engine, the proxy and DNS hold what the registry records for a service. Deploy
 * steps, their compensations, service operations, start-up recovery and certificate renewal
 * all build on these.
 */
import { Effect, Either, Option, Schema } from "effect"
import { ContainerRuntime, type ContainerSpec } from "../engine/ContainerRuntime.js"
import { DnsRecords } from "../dns/DnsRecords.js"
import { NodeSettings } from "../NodeSettings.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { type ComponentRow, Registry, type RouteRow } from "../registry/Registry.js"
import { backendHost } from "./ContainerPlan.js"

/** A route as the proxy holds it; journaled by the routes step, so it has a Schema. */
export const RouteSnapshot = Schema.Struct({
  listener: Schema.Number,
  hostname: Schema.String,
  backend: Schema.String,
  mode: Schema.Literal("l4", "l7"),
  backendTls: Schema.Boolean,
  tlsCert: Schema.optional(Schema.String),
  tlsKey: Schema.optional(Schema.String)
})
export type RouteSnapshot = typeof RouteSnapshot.Type

/** Where a certificate's files are, by hostname. */
export type CertPaths = ReadonlyMap<string, { readonly certPath: string; readonly keyPath: string }>

/** Creates and starts a component's container from its recorded spec. */
export const launch = (spec: ContainerSpec) =>
  Effect.gen(function* () {
    const runtime = yield* ContainerRuntime
    yield* runtime.remove(spec.name) // a leftover with the same name (a crash between create and record)
    const id = yield* runtime.create(spec)
    yield* runtime.start(id)
    return id
  })

/** The route a host port is served by: the proxy reaches the container on the node's bind address. */
export const routeSnapshot = (
  settings: NodeSettings,
  r: { readonly listener: number; readonly hostname: string; readonly hostPort: number; readonly mode: "l4" | "l7"; readonly backendTls: boolean },
  certByHost: CertPaths
): RouteSnapshot => ({
  listener: r.listener,
  hostname: r.hostname,
  backend: `${backendHost(settings)}:${r.hostPort}`,
  mode: r.mode,
  backendTls: r.backendTls,
  tlsCert: certByHost.get(r.hostname)?.certPath,
  tlsKey: certByHost.get(r.hostname)?.keyPath
})

export const putRoute = (service: string, r: RouteSnapshot) =>
  Effect.flatMap(ProxyRoutes, (proxy) =>
    proxy.put({
      listener: r.listener,
      hostname: r.hostname as never,
      backend: r.backend,
      mode: r.mode,
      backendTls: r.backendTls,
      service,
      ...(r.tlsCert === undefined ? {} : { tlsCert: r.tlsCert }),
      ...(r.tlsKey === undefined ? {} : { tlsKey: r.tlsKey })
    })
  )

export const recordedCerts = Effect.flatMap(Registry, (registry) =>
  Effect.map(registry.certificates, (rows) => new Map(rows.map((c) => [c.hostname, c] as const)))
)

/** The routes recorded for a service, as the proxy should have them. */
export const recordedRoutes = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const settings = yield* NodeSettings
    const rows: ReadonlyArray<RouteRow> = yield* registry.serviceRoutes(service)
    const certByHost = yield* recordedCerts
    return rows.map((r) => routeSnapshot(settings, r, certByHost))
  })

/** Makes the proxy hold exactly `next` for the service, given it held `previous`. */
export const switchRoutes = (service: string, previous: ReadonlyArray<RouteSnapshot>, next: ReadonlyArray<RouteSnapshot>) =>
  Effect.gen(function* () {
    const proxy = yield* ProxyRoutes
    for (const r of next) yield* putRoute(service, r)
    const kept = new Set(next.map((r) => `${r.listener} ${r.hostname}`))
    for (const r of previous) if (!kept.has(`${r.listener} ${r.hostname}`)) yield* proxy.remove(r.listener, r.hostname)
  })

/** Makes DNS hold `next` (at the node's address), given it held `previous`. */
export const switchDns = (previous: ReadonlyArray<string>, next: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const dns = yield* DnsRecords
    const settings = yield* NodeSettings
    for (const name of next) yield* dns.put(name, settings.nodeAddress)
    for (const name of previous) if (!next.includes(name)) yield* dns.remove(name)
  })

/** The DNS names recorded for a service. */
export const recordedDns = (service: string) =>
  Effect.flatMap(Registry, (registry) => Effect.map(registry.dnsRecords, (rows) => rows.filter((d) => d.service === service).map((d) => d.name)))

/** Recreates and starts the recorded containers of a service that the engine lacks. */
export const relaunchRecorded = (rows: ReadonlyArray<ComponentRow>) =>
  Effect.gen(function* () {
    const runtime = yield* ContainerRuntime
    const registry = yield* Registry
    yield* Effect.forEach(rows, (row) =>
      Effect.gen(function* () {
        const current = yield* Effect.either(runtime.inspect(row.spec.name))
        if (Either.isRight(current)) {
          if (current.right.state !== "running") yield* runtime.start(current.right.id)
          return
        }
        const id = yield* launch(row.spec)
        yield* registry.setContainer(row.service, row.name, id)
      })
    )
  })

/** Whether the registry has the service and it should be serving (not stopped). */
export const isActive = (service: string) =>
  Effect.flatMap(Registry, (registry) => Effect.map(registry.service(service), (row) => Option.isSome(row) && row.value.active))

/** Brings a recorded service up: its containers, then its routes, then its DNS names. */
export const bringUp = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    yield* relaunchRecorded(yield* registry.components(service))
    yield* switchRoutes(service, [], yield* recordedRoutes(service))
    yield* switchDns([], yield* recordedDns(service))
  })

/** Takes a recorded service down: DNS first, then routes, so clients stop arriving before the containers go. */
export const takeDown = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const proxy = yield* ProxyRoutes
    const dns = yield* DnsRecords
    const settings = yield* NodeSettings
    for (const name of yield* recordedDns(service)) yield* dns.remove(name)
    for (const r of yield* registry.serviceRoutes(service)) yield* proxy.remove(r.listener, r.hostname)
    for (const c of yield* registry.components(service)) {
      yield* runtime.stop(c.spec.name, settings.stopTimeoutSeconds).pipe(Effect.catchTag("ContainerNotFound", () => Effect.void))
    }
  })
