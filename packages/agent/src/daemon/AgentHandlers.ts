/**
 * The agent's side of AgentRpcs: decodes nothing itself (the contract's schemas already did),
 * routes each service command through its actor, and maps internal failures to wire errors.
 */
import { Deploy, Errors, type Operations, type Status, Validation } from "@mcp/domain"
import type { RpcGroup } from "@effect/rpc"
import { AgentRpcs, EventLog, Failures, Principal, Protocol } from "@mcp/rpc"
import { Clock, Effect, Either, Mailbox, Option, Stream } from "effect"
import { BootSequencer } from "../boot/BootSequencer.js"
import { ContainerRuntime, LABEL_NODE } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { EdgeRoutes } from "../edge/EdgeRoutes.js"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import { Monitor } from "../monitor/Monitor.js"
import * as DeployGuard from "./DeployGuard.js"
import { FleetPolicy } from "./FleetPolicy.js"
import * as NodeResources from "./NodeResources.js"
import { SupervisedChildren } from "./SupervisedChildren.js"
import * as ManualRoutes from "../proxy/ManualRoutes.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import * as HostnameOwners from "../registry/HostnameOwners.js"
import { Registry } from "../registry/Registry.js"
import { ServiceActors } from "../lifecycle/ServiceActors.js"

export interface AgentIdentity {
  readonly role: "master" | "worker" | "edge"
  readonly addresses: ReadonlyArray<string>
  /** The IP other nodes reach this node's proxy at (config `node_address`). */
  readonly nodeAddress: string
  readonly version: string
  readonly dataDir: string
  /**
   * The engine socket paths a container must never mount (the configured one and those the
   * engine is looked for at); the data dir is always forbidden too.
   */
  readonly engineSockets?: ReadonlyArray<string>
}

type RecoverAction = typeof Operations.RecoverAction.Type

const peer = (name: string, operation: string) => (e: { readonly message: string }) =>
  new Errors.PeerFailed({ peer: name, operation, reason: e.message, retryable: true })

/**
 * The caller's role for the deploy policy. Handlers run behind the auth middleware; one called
 * without a principal gets the least: guest.
 */
const callerRole = Effect.map(Effect.serviceOption(Principal.CurrentPrincipal), Option.match({ onNone: () => "guest" as const, onSome: (p) => p.role }))

/** Why an edge node refuses to run a service's containers, and the fix. */
const edgeRunsNoContainers = (node: string) =>
  `node "${node}" is an edge node; edge nodes only proxy public routes and never run containers: deploy through the master, which places services on workers (or masters for tier "core"), or set role = "worker" in this node's mcp-agent.toml`

/** A start or restart on an edge, refused before its actor runs: nothing was started, nothing to roll back. */
const edgeStartRefused = (service: string, step: string) =>
  new Errors.DeployFailed({ service, step, reason: `${edgeRunsNoContainers("this node")}; remove the service from it with mcp undeploy ${service} --direct (an admin token)`, retryable: false })

type AgentHandlerSet = RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof AgentRpcs>>

/** What the handlers need from the agent's layers. */
export type HandlersEnv = Effect.Effect.Context<ReturnType<typeof handlers>>

export const layer = (identity: AgentIdentity) => AgentRpcs.toLayer(handlers(identity))

/** The handler object, exported so tests can call one handler with a principal of their choosing. */
export const handlers = (identity: AgentIdentity) =>
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      const actors = yield* ServiceActors
      const registry = yield* Registry
      const runtime = yield* ContainerRuntime
      const proxy = yield* ProxyRoutes
      const settings = yield* NodeSettings
      const boot = yield* BootSequencer
      const edge = yield* EdgeRoutes
      const fleet = yield* FleetPolicy
      // What the agent supervises besides itself (the managed proxy), for `mcp tree`; none when not provided.
      const supervised = Option.match(yield* Effect.serviceOption(SupervisedChildren), { onNone: () => Effect.succeed([]), onSome: (c) => c.list })
      // The agent's start, for its uptime (NodeInfo): these handlers are built as the daemon starts.
      const startedAt = new Date(yield* Clock.currentTimeMillis).toISOString()
      /** Refuses a start or restart on an edge before its actor runs: that would run containers. */
      const notOnEdge = (service: string, step: string): Effect.Effect<void, Errors.DeployFailed> =>
        identity.role === "edge" ? Effect.fail(edgeStartRefused(service, step)) : Effect.void
      const node: DeployGuard.NodeFacts = { bindAddress: settings.bindAddress, forbidden: [identity.dataDir, ...(identity.engineSockets ?? [])] }
      // The monitor's findings become warnings; an agent assembled without one shows none.
      const monitor = yield* Effect.serviceOption(Monitor)
      const withWarnings = (s: Status.ServiceStatus): Effect.Effect<Status.ServiceStatus> =>
        Option.match(monitor, {
          onNone: () => Effect.succeed(s),
          onSome: (m) => Effect.map(m.warnings(s.service), (w) => (w.length === 0 ? s : { ...s, warnings: [...s.warnings, ...w] }))
        })
      /** Each service with its routes' certificates and their expiry (the dashboard shows them). */
      const withCertificates = (services: ReadonlyArray<Status.ServiceStatus>) =>
        Effect.map(Failures.fatal("the agent registry")(registry.certificates), (certs) =>
          services.map((s): Status.ServiceStatus => ({ ...s, certificates: certs.filter((c) => c.service === s.service).map((c) => ({ hostname: c.hostname, notAfter: c.notAfter })) })))

      /**
       * Recreates the recorded containers of one service that the engine lacks (all of them with
       * `force`) and re-registers its routes and DNS. A stopped service stays down: its containers
       * are not recreated (its next start does that) and its routes are not put back.
       */
      const recoverService = (service: string, force: boolean) =>
        Effect.gen(function* () {
          const row = yield* registry.service(service)
          if (Option.isNone(row)) return [] // undeployed since the list was read
          const rows = yield* registry.components(service)
          if (identity.role === "edge") {
            return rows.map((r): RecoverAction => ({
              service, component: r.name, action: "failed", detail: `not recreated: ${edgeRunsNoContainers(settings.node)}; remove it with mcp undeploy ${service} --direct (an admin token)`
            }))
          }
          if (!row.value.active) {
            return rows.map((r): RecoverAction => ({
              service, component: r.name, action: "kept", detail: `service is stopped: not recreated (mcp start ${service} recreates it)`
            }))
          }
          const actions: Array<RecoverAction> = []
          for (const r of rows) {
            const present = yield* Effect.either(runtime.inspect(r.spec.name))
            if (present._tag === "Right" && !force) {
              actions.push({ service, component: r.name, action: "kept", detail: `container ${r.spec.name} is ${present.right.state}` })
              continue
            }
            if (present._tag === "Right") {
              // If this fails, the relaunch below fails on the name and reports it.
              yield* runtime.remove(r.spec.name).pipe(Effect.catchAll((e) => Effect.logWarning(`recover --force: cannot remove ${r.spec.name}: ${e.message}`)))
            }
            const outcome = yield* Effect.either(lifecycle.relaunchRecorded([r]))
            actions.push(
              outcome._tag === "Right"
                ? { service, component: r.name, action: "recreated", detail: `${r.spec.name} from ${r.image}` }
                : { service, component: r.name, action: "failed", detail: outcome.left.message }
            )
          }
          // Routes and DNS come back with the containers; a failure there is reported, not fatal.
          const routed = yield* Effect.either(lifecycle.bringUp(service))
          if (routed._tag === "Left") {
            const reason = `containers recovered, but routes or DNS were not restored: ${routed.left.message}`
            yield* Effect.logWarning(`recover ${service}: ${reason}`)
            yield* registry.addEvent("recover", service, reason)
            return actions.map((a) => (a.action === "recreated" ? { ...a, action: "failed" as const, detail: `${a.detail}; ${reason}` } : a))
          }
          return actions
        }).pipe(Failures.fatal("the agent registry"))

      return {
        Deploy: ({ definition: raw, dryRun, onBehalfOf }) =>
          Stream.unwrapScoped(
            Effect.gen(function* () {
              // Non-public hostnames must fall under the internal zone or a domain the master
              // pushed (none until it has): the route CA signs nothing else.
              const { allowedDomains, policy } = yield* fleet.get
              const decoded = Validation.decodeDefinition(raw, { internalZone: settings.internalZone, allowedDomains })
              if (Either.isLeft(decoded)) {
                const name = typeof raw === "object" && raw !== null && "name" in raw ? String(raw.name) : "(unnamed)"
                return Stream.fail(new Errors.InvalidDefinition({ service: name, problems: decoded.left }))
              }
              const definition = decoded.right
              // Before the actor, the saga or any container: an edge runs none, and what the policy
              // refuses this caller on this node (as the master pushed it, or the strict defaults)
              // never starts.
              if (identity.role === "edge") return Stream.fail(new Errors.PlacementFailed({ service: definition.name, reason: edgeRunsNoContainers(settings.node) }))
              const caller = yield* callerRole
              const role = onBehalfOf === undefined ? caller : Principal.lesserRole(caller, onBehalfOf)
              const violations = DeployGuard.check(definition, policy, role, node)
              if (violations.length > 0) return Stream.fail(new Errors.PolicyViolation({ service: definition.name, violations }))
              const taken = yield* Failures.fatal("the agent registry")(HostnameOwners.taken(definition, settings.internalZone))
              if (taken.length > 0) return Stream.fail(new Errors.InvalidDefinition({ service: definition.name, problems: taken }))
              const events = yield* Mailbox.make<Deploy.DeployEvent, Errors.DeployFailed | Errors.PeerFailed | Errors.InvalidDefinition | Errors.PolicyViolation | Errors.PlacementFailed | Errors.NodeUnreachable>()
              const job = lifecycle.deploy(definition, { dryRun }, (e) => Effect.asVoid(events.offer(e))).pipe(
                Effect.flatMap(Option.match({
                  onNone: () => Effect.void,
                  onSome: (status) => Effect.asVoid(events.offer(new Deploy.DeployDone({ status })))
                }))
              )
              yield* actors.submit(definition.name, job).pipe(Effect.exit, Effect.flatMap((exit) => events.done(exit)), Effect.forkScoped)
              return Mailbox.toStream(events)
            })
          ),
        Stop: ({ service }) => actors.submit(service, lifecycle.stop(service)),
        // Stop and Undeploy stay open on an edge: they are how a service recorded there by an
        // older agent is taken away. Starting one would run its containers.
        Start: ({ service }) => Effect.zipRight(notOnEdge(service, "start"), actors.submit(service, lifecycle.start(service))),
        Restart: ({ service }) => Effect.zipRight(notOnEdge(service, "restart"), actors.submit(service, lifecycle.restart(service))),
        Undeploy: ({ service }) => actors.submit(service, lifecycle.undeploy(service)),
        Ps: () => Effect.flatMap(Effect.flatMap(Failures.fatal("the agent registry")(lifecycle.ps), Effect.forEach(withWarnings)), withCertificates),
        Status: ({ service }) => Effect.flatMap(Effect.catchTag(lifecycle.status(service), "SqlError", Effect.die), withWarnings),
        Logs: ({ service, component, follow, tail }) =>
          Stream.unwrap(
            Effect.gen(function* () {
              const rows = (yield* Failures.fatal("the agent registry")(registry.components(service))).filter((c) => component === undefined || c.name === component)
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
        // EdgeRoutes refuses setups on a node that is not an edge, validates, serializes per hostname
        // and compensates; its failures are already the wire's (PeerFailed, InvalidRequest).
        SetupEdgeRoute: (request) => edge.setup(request),
        RemoveEdgeRoute: ({ hostname }) => edge.remove(hostname),
        ListEdgeRoutes: () => edge.list,
        // Checked first (certificate files and backend addresses are never the caller's choice).
        ProxyRoutesAdd: ({ route }) => ManualRoutes.add(route, { proxy, settings, dataDir: identity.dataDir }),
        ProxyRoutesRemove: ({ listener, hostname }) => ManualRoutes.remove(listener, hostname, { proxy, dataDir: identity.dataDir }),
        ProxyRoutesList: () => Effect.mapError(proxy.list, peer(proxy.name, "list routes")),
        Recover: ({ force }) =>
          Effect.gen(function* () {
            const services = yield* Failures.fatal("the agent registry")(registry.services)
            const actions: Array<RecoverAction> = []
            // Each service in its actor, like every other command: a deploy, stop or undeploy
            // under way finishes first, and the recorded spec is read after it.
            for (const s of services) actions.push(...(yield* actors.submit(s.name, recoverService(s.name, force))))
            return { node: settings.node, actions }
          }),
        BootStatus: () => boot.status,
        Health: () => Effect.succeed({ node: settings.node, at: new Date().toISOString(), protocol: Protocol.PROTOCOL_VERSION }),
        NodeInfo: () =>
          Effect.gen(function* () {
            const containers = yield* runtime.list({ [LABEL_NODE]: settings.node }).pipe(
              Effect.map((cs) => cs.length),
              Effect.tapError((e) => Effect.logWarning(`node info: cannot count containers: ${e.message}`)),
              Effect.orElseSucceed(() => 0)
            )
            return {
              info: { name: settings.node as never, role: identity.role, addresses: identity.addresses, arch: NodeResources.arch(), version: identity.version, nodeAddress: identity.nodeAddress },
              resources: yield* NodeResources.read(identity.dataDir, containers),
              protocol: Protocol.PROTOCOL_VERSION,
              startedAt,
              supervised: yield* supervised
            }
          }),
        Events: ({ follow, limit, ...filter }) =>
          EventLog.stream((n, afterId) => Failures.fatal("the agent registry")(registry.events(n, afterId, filter)), { limit, follow }).pipe(
            Stream.map((e) => EventLog.toFleetEvent(e, settings.node))
          )
      } satisfies AgentHandlerSet
    })
