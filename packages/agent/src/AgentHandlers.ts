/**
 * The agent's side of AgentRpcs: decodes nothing itself (the contract's schemas already did),
 * routes each service command through its actor, and maps internal failures to wire errors.
 */
import { Deploy, Errors, Validation } from "@mcp/domain"
import { AgentRpcs, Protocol } from "@mcp/rpc"
import { Effect, Either, Mailbox, Option, Schedule, Stream } from "effect"
import { ContainerRuntime, LABEL_NODE } from "./ContainerRuntime.js"
import { NodeSettings } from "./ContainerPlan.js"
import { Lifecycle } from "./Lifecycle.js"
import * as NodeResources from "./NodeResources.js"
import { ProxyRoutes } from "./ProxyRoutes.js"
import { Registry } from "./Registry.js"
import { ServiceActors } from "./ServiceActors.js"

export interface AgentIdentity {
  readonly role: "master" | "worker" | "edge"
  readonly addresses: ReadonlyArray<string>
  readonly version: string
  readonly dataDir: string
}

const peer = (name: string, operation: string) => (e: { readonly message: string }) =>
  new Errors.PeerFailed({ peer: name, operation, reason: e.message, retryable: true })

export const layer = (identity: AgentIdentity) =>
  AgentRpcs.toLayer(
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      const actors = yield* ServiceActors
      const registry = yield* Registry
      const runtime = yield* ContainerRuntime
      const proxy = yield* ProxyRoutes
      const settings = yield* NodeSettings
      const registryDown = (e: { readonly message: string }) => peer("registry", "read")(e)

      return {
        Deploy: ({ definition: raw, dryRun }) =>
          Stream.unwrapScoped(
            Effect.gen(function* () {
              const decoded = Validation.decodeDefinition(raw, { internalZone: settings.internalZone })
              if (Either.isLeft(decoded)) {
                const name = typeof raw === "object" && raw !== null && "name" in raw ? String(raw.name) : "(unnamed)"
                return Stream.fail(new Errors.InvalidDefinition({ service: name, problems: decoded.left }))
              }
              const definition = decoded.right
              const events = yield* Mailbox.make<Deploy.DeployEvent, Errors.DeployFailed | Errors.PeerFailed | Errors.InvalidDefinition | Errors.PlacementFailed | Errors.NodeUnreachable>()
              const job = lifecycle.deploy(definition, { dryRun }, (e) => Effect.asVoid(events.offer(e))).pipe(
                Effect.flatMap(Option.match({
                  onNone: () => Effect.void,
                  onSome: (status) => Effect.asVoid(events.offer(new Deploy.DeployDone({ status })))
                })),
                Effect.catchTag("SqlError", (e) => Effect.fail(registryDown(e)))
              )
              yield* actors.submit(definition.name, job).pipe(Effect.exit, Effect.flatMap((exit) => events.done(exit)), Effect.forkScoped)
              return Mailbox.toStream(events)
            })
          ),
        Stop: ({ service }) => actors.submit(service, lifecycle.stop(service)),
        Start: ({ service }) => actors.submit(service, lifecycle.start(service)),
        Restart: ({ service }) => actors.submit(service, lifecycle.restart(service)),
        Undeploy: ({ service }) => actors.submit(service, lifecycle.undeploy(service)),
        Ps: () => Effect.orDie(lifecycle.ps),
        Status: ({ service }) => Effect.catchTag(lifecycle.status(service), "SqlError", Effect.die),
        Logs: ({ service, component, follow, tail }) =>
          Stream.unwrap(
            Effect.gen(function* () {
              const rows = (yield* Effect.orDie(registry.components(service))).filter((c) => component === undefined || c.name === component)
              if (rows.length === 0) return Stream.fail(new Errors.ServiceNotFound({ service })) as Stream.Stream<never, Errors.ServiceNotFound | Errors.PeerFailed>
              return Stream.mergeAll(
                rows.map((c) =>
                  runtime.logs(c.spec.name, { follow, tail }).pipe(
                    Stream.map((l) => ({ component: c.name, stream: l.stream, line: l.line })),
                    Stream.mapError(peer(runtime.describe, `read logs of ${c.spec.name}`))
                  )
                ),
                { concurrency: "unbounded" }
              )
            })
          ),
        SetupEdgeRoute: ({ hostname }) =>
          Effect.fail(new Errors.PeerFailed({ peer: settings.node, operation: `set up edge route ${hostname}`, reason: "this agent does not serve edge routes yet (edge routing is not built in this version)", retryable: false })),
        RemoveEdgeRoute: ({ hostname }) =>
          Effect.fail(new Errors.PeerFailed({ peer: settings.node, operation: `remove edge route ${hostname}`, reason: "this agent does not serve edge routes yet (edge routing is not built in this version)", retryable: false })),
        ListEdgeRoutes: () => Effect.succeed([]),
        ProxyRoutesAdd: ({ route }) => Effect.mapError(proxy.put(route), peer(proxy.name, `add route ${route.hostname}`)),
        ProxyRoutesRemove: ({ listener, hostname }) => Effect.mapError(proxy.remove(listener, hostname), peer(proxy.name, `remove route ${hostname}`)),
        ProxyRoutesList: () => Effect.mapError(proxy.list, peer(proxy.name, "list routes")),
        Recover: ({ force }) =>
          Effect.gen(function* () {
            const rows = yield* Effect.orDie(registry.allComponents)
            const actions = []
            for (const row of rows) {
              const present = yield* Effect.either(runtime.inspect(row.spec.name))
              if (present._tag === "Right" && !force) {
                actions.push({ service: row.service, component: row.name, action: "kept" as const, detail: `container ${row.spec.name} is ${present.right.state}` })
                continue
              }
              if (present._tag === "Right") yield* Effect.ignore(runtime.remove(row.spec.name))
              const outcome = yield* Effect.either(lifecycle.relaunchRecorded([row]))
              actions.push(
                outcome._tag === "Right"
                  ? { service: row.service, component: row.name, action: "recreated" as const, detail: `${row.spec.name} from ${row.image}` }
                  : { service: row.service, component: row.name, action: "failed" as const, detail: outcome.left.message }
              )
            }
            for (const service of new Set(rows.map((r) => r.service))) yield* Effect.ignore(lifecycle.bringUp(service))
            return { node: settings.node, actions }
          }),
        BootStatus: () => Effect.succeed({ node: settings.node, stages: [] }),
        Health: () => Effect.succeed({ node: settings.node, at: new Date().toISOString(), protocol: Protocol.PROTOCOL_VERSION }),
        NodeInfo: () =>
          Effect.gen(function* () {
            const containers = yield* runtime.list({ [LABEL_NODE]: settings.node }).pipe(
              Effect.map((cs) => cs.length),
              Effect.orElseSucceed(() => 0)
            )
            return {
              info: { name: settings.node as never, role: identity.role, addresses: identity.addresses, arch: NodeResources.arch(), version: identity.version },
              resources: yield* NodeResources.read(identity.dataDir, containers),
              protocol: Protocol.PROTOCOL_VERSION
            }
          }),
        Events: ({ follow, limit }) =>
          Stream.unwrap(
            Effect.gen(function* () {
              const initial = yield* Effect.orDie(registry.events(limit))
              const toWire = (e: (typeof initial)[number]) => ({
                at: e.at, node: settings.node, kind: e.kind as "deploy", message: e.message, ...(e.service === undefined ? {} : { service: e.service })
              })
              const first = Stream.fromIterable(initial.map(toWire))
              if (!follow) return first
              let last = initial.at(-1)?.id ?? 0
              const more = Stream.repeatEffectWithSchedule(
                Effect.map(Effect.orDie(registry.events(1000, last)), (rows) => {
                  last = rows.at(-1)?.id ?? last
                  return rows.map(toWire)
                }),
                Schedule.spaced("500 millis")
              ).pipe(Stream.flattenIterables)
              return Stream.concat(first, more)
            })
          )
      }
    })
  )
